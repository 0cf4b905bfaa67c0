"""Differential test: the same bring-up through slonik and through the modules, on twin
databases, must leave the same Slony catalogs on every node; then the same day-2 work
(a second set, SET MOVE TABLE and SET MOVE SEQUENCE into set 1, LOCK SET / UNLOCK SET,
MERGE SET of the emptied set) must too."""

from __future__ import annotations

import time

from catalog_dump import DIFFERENTIAL_TABLES, dump
from test_bringup import CLUSTER, common, converge, mesh
from ansible_run import run_module

NODES = (1, 2, 3)
# (id, name) of what set 1 replicates; ids given explicitly on both sides.
TABLES = [(1, "public.customers"), (2, "public.products"), (3, "public.orders"),
          (4, "billing.invoices"), (5, "public.settings")]
SETTINGS_KEY = "settings_name_key"
SEQUENCES = [(1, "public.invoice_number_seq")]


def slonik_bring_up(db, slons):
    paths = "\n".join(
        "store path (server = %d, client = %d, conninfo = '%s', connretry = 10);"
        % (s, c, db.conninfo(s)) for s in NODES for c in NODES if s != c)
    db.slonik("init cluster (id = 1, comment = 'origin');\n"
              "store node (id = 2, comment = 'replica 2', event node = 1);\n"
              "store node (id = 3, comment = 'replica 3', event node = 1);\n" + paths + "\n")
    slons.start()
    adds = []
    for tab_id, name in TABLES:
        key = ", key = '%s'" % SETTINGS_KEY if name == "public.settings" else ""
        adds.append("set add table (set id = 1, origin = 1, id = %d, fully qualified name = '%s'%s,"
                    " comment = '%s');" % (tab_id, name, key, name))
    for seq_id, name in SEQUENCES:
        adds.append("set add sequence (set id = 1, origin = 1, id = %d, fully qualified name = '%s',"
                    " comment = '%s');" % (seq_id, name, name))
    db.slonik("create set (id = 1, origin = 1, comment = 'app');\n" + "\n".join(adds) + "\n"
              "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes);\n"
              "subscribe set (id = 1, provider = 1, receiver = 3, forward = yes);\n")


def module_bring_up(db, slons):
    for node, comment in ((1, "origin"), (2, "replica 2"), (3, "replica 3")):
        run_module("slony_node", common(db, id=node, comment=comment))
    slons.start()
    run_module("slony_path", common(db, paths=mesh(db, NODES)))
    run_module("slony_set", common(db, id=1, origin=1, comment="app"))
    tables = []
    for tab_id, name in TABLES:
        entry = {"name": name, "id": tab_id, "comment": name}
        if name == "public.settings":
            entry["key"] = SETTINGS_KEY
        tables.append(entry)
    run_module("slony_table", common(db, set_id=1, tables=tables))
    run_module("slony_sequence", common(db, set_id=1, sequences=[
        {"name": name, "id": seq_id, "comment": name} for seq_id, name in SEQUENCES]))
    for receiver in (2, 3):
        run_module("slony_subscription", common(db, set_id=1, receiver=receiver))


MOVED = (6, "billing.payments")
MOVED_SEQ = (2, "billing.payments_id_seq")


def slonik_day_two(db):
    """Set 2 with billing.payments and its sequence, subscribed like set 1; once both
    copies are done, SET MOVE TABLE and SET MOVE SEQUENCE into set 1; then LOCK SET and
    UNLOCK SET on set 1."""
    db.slonik("create set (id = 2, origin = 1, comment = 'moving');\n"
              "set add table (set id = 2, origin = 1, id = %d, fully qualified name = '%s', "
              "comment = '%s');\n"
              "set add sequence (set id = 2, origin = 1, id = %d, fully qualified name = '%s', "
              "comment = '%s');\n"
              "subscribe set (id = 2, provider = 1, receiver = 2, forward = yes);\n"
              "subscribe set (id = 2, provider = 1, receiver = 3, forward = yes);\n"
              % (MOVED[0], MOVED[1], MOVED[1], MOVED_SEQ[0], MOVED_SEQ[1], MOVED_SEQ[1]))
    # What slonik leaves to the user before SET MOVE TABLE: both copies done.
    deadline = time.monotonic() + 90
    while db.scalar(1, 'select "_lab".isSubscriptionInProgress(2)') or any(
            db.scalar(n, 'select count(*) from "_lab".sl_setsync where ssy_setid = 2') == 0
            for n in (2, 3)):
        assert time.monotonic() < deadline, "set 2 was not copied"
        time.sleep(0.2)
    db.slonik("set move table (origin = 1, id = %d, new set = 1);\n"
              "set move sequence (origin = 1, id = %d, new set = 1);\n"
              "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = 90);\n"
              "lock set (id = 1, origin = 1);\n"
              "unlock set (id = 1, origin = 1);\n"
              "merge set (id = 1, add id = 2, origin = 1);\n"
              "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = 90);\n"
              % (MOVED[0], MOVED_SEQ[0]))


def module_day_two(db):
    run_module("slony_set", common(db, id=2, origin=1, comment="moving"))
    run_module("slony_table", common(db, set_id=2, tables=[
        {"name": MOVED[1], "id": MOVED[0], "comment": MOVED[1]}]))
    run_module("slony_sequence", common(db, set_id=2, sequences=[
        {"name": MOVED_SEQ[1], "id": MOVED_SEQ[0], "comment": MOVED_SEQ[1]}]))
    run_module("slony_subscription", common(db, set_id=2, receivers=[{"receiver": 2},
                                                                     {"receiver": 3}]))
    run_module("slony_table", common(db, set_id=1, tables=[MOVED[1]], move=True))
    converge(db, "slony_sequence", {"set_id": 1, "sequences": [MOVED_SEQ[1]], "move": True})
    run_module("slony_set", common(db, id=1, origin=1, locked=True))
    run_module("slony_set", common(db, id=1, origin=1, locked=False))
    # Check mode changes nothing, the merge, then a second run changes nothing.
    converge(db, "slony_set", {"id": 2, "origin": 1, "state": "absent", "merge_into": 1})


def normalized(db):
    """The compared catalogs, with the database name (the only legitimate difference,
    inside path conninfos) replaced."""
    out = {}
    for node, catalogs in dump(db, CLUSTER, DIFFERENTIAL_TABLES).items():
        assert catalogs is not None, f"node {node} has no cluster schema"
        out[node] = {name: [tuple(str(v).replace(db.dbname, "DB") if isinstance(v, str) else v
                                  for v in row) for row in rows]
                     for name, rows in catalogs.items()}
    return out


def settled(db, timeout=90, subscriptions=2, tables=len(TABLES), sequences=len(SEQUENCES)):
    """Wait until every node has every subscription active and every path (propagation)."""
    deadline = time.monotonic() + timeout
    while True:
        cats = normalized(db)
        if all(len(c["sl_path"]) == 6 and len(c["sl_subscribe"]) == subscriptions
               and all(row[4] for row in c["sl_subscribe"]) and len(c["sl_node"]) == 3
               and len(c["sl_table"]) == tables and len(c["sl_sequence"]) == sequences
               and all(row[0] != MOVED[0] or row[1] == 1 for row in c["sl_table"])
               and all(row[0] != MOVED_SEQ[0] or row[1] == 1 for row in c["sl_sequence"])
               for c in cats.values()):
            return cats
        if time.monotonic() > deadline:
            return cats
        time.sleep(0.5)


def compare(expected, actual):
    for node in NODES:
        for name in DIFFERENTIAL_TABLES:
            assert actual[node][name] == expected[node][name], (
                f"node {node} {name} differs:\nslonik:  {expected[node][name]}\n"
                f"modules: {actual[node][name]}")


def test_modules_leave_the_same_catalogs_as_slonik(make_fresh_db, make_slons):
    by_slonik = make_fresh_db("diff_slonik")
    by_modules = make_fresh_db("diff_modules")
    slonik_bring_up(by_slonik, make_slons(by_slonik))
    module_bring_up(by_modules, make_slons(by_modules))
    compare(settled(by_slonik), settled(by_modules))
    slonik_day_two(by_slonik)
    module_day_two(by_modules)
    grown = {"subscriptions": 2, "tables": len(TABLES) + 1, "sequences": len(SEQUENCES) + 1}
    after_slonik = settled(by_slonik, **grown)
    compare(after_slonik, settled(by_modules, **grown))
    for node in NODES:
        assert [row for row in after_slonik[node]["sl_table"] if row[0] == MOVED[0]][0][1] == 1
        assert [row for row in after_slonik[node]["sl_sequence"]
                if row[0] == MOVED_SEQ[0]][0][1] == 1
        assert [row[0] for row in after_slonik[node]["sl_set"]] == [1]
    # And both replicate: a row written on each origin arrives on node 3.
    for db in (by_slonik, by_modules):
        db.query(1, "insert into public.settings (name, value) values ('diff', 'x')")
        deadline = time.monotonic() + 60
        while db.scalar(3, "select count(*) from public.settings where name = 'diff'") != 1:
            assert time.monotonic() < deadline, f"{db.dbname}: write did not reach node 3"
            time.sleep(0.2)
