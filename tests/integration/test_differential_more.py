"""Differential tests, continued (test_differential.py has the bring-up and the set work):
REPAIR CONFIG, UPDATE FUNCTIONS, FAILOVER (one failed node, and two in one command) and
DROP NODE of several ids in one command, each done through slonik on one twin database
and through the modules on the other, then sl_node, sl_path, sl_set, sl_table,
sl_sequence and sl_subscribe compared on every node that is left.

Before each comparison the test checks that the operation did happen on both twins (the
new origin in sl_set, the dropped nodes gone from sl_node, ...), so that two catalogs
cannot be equal because nothing happened. Every wait is for what slon does (two equal
dumps in a row once the expected state is reached), never a fixed sleep.

The twins live on the same servers, so a failed node cannot be a stopped server: its slon
is stopped, slonik is not given its admin conninfo and neither are the modules, which are
told ``force: true`` (the paths of the other nodes still reach its database, and
slony_failover refuses to fail over a node whose database answers unless forced).

test_failover_of_two_nodes_in_one_command_like_slonik needs a lab of 4 servers
(SLONY_LAB_NODES=4); it is skipped otherwise.
"""

from __future__ import annotations

import pytest

from ansible_run import run_module
from catalog_dump import DIFFERENTIAL_TABLES
from lab import FreshDatabase, wait_until
from test_bringup import CLUSTER, common, converge, mesh
from test_differential import SEQUENCES, SETTINGS_KEY, TABLES, module_bring_up, normalized, settled, slonik_bring_up

NS = '"_%s"' % CLUSTER
VERSION = "2.2.11"
OLDER_VERSION = "2.2.10"

# Whether each replicated table and sequence recorded on a node is the relation of its
# name there (REPAIR CONFIG's work; the oids themselves differ between twin databases).
RELOIDS = ("select 'table', tab_id, tab_reloid = to_regclass(quote_ident(tab_nspname) || '.' || "
           "quote_ident(tab_relname))::oid from {ns}.sl_table union all "
           "select 'sequence', seq_id, seq_reloid = to_regclass(quote_ident(seq_nspname) || '.' || "
           "quote_ident(seq_relname))::oid from {ns}.sl_sequence order by 1, 2").format(ns=NS)

# The Slony functions of a node: signature -> md5 of the definition.
FUNCTIONS = ("select p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)) from pg_proc p "
             "join pg_namespace n on n.oid = p.pronamespace where n.nspname = '_%s' "
             "and p.prokind <> 'a' order by 1" % CLUSTER)


def on_nodes(db, nodes) -> FreshDatabase:
    """The same database seen only on ``nodes``: dumps and queries there, slonik and the
    modules given the admin conninfo of those nodes only."""
    return FreshDatabase(db.lab, db.dbname, list(nodes), cluster_name=db.cluster_name)


def has_schema(db, node):
    return db.scalar(node, "select count(*) from pg_namespace where nspname = %s", ("_" + CLUSTER,)) == 1


def settle(db, nodes, ready, what, timeout=120):
    """The normalized catalogs of ``nodes`` once ``ready(catalogs)`` holds and two dumps
    in a row are equal (the slons have finished with the change)."""
    last = {}

    def stable():
        cats = normalized(on_nodes(db, nodes))
        done = ready(cats) and cats == last.get("cats")
        last["cats"] = cats
        return cats if done else None

    try:
        return wait_until(stable, timeout=timeout, interval=0.4, message=what)
    except TimeoutError:
        raise AssertionError("%s: %s not reached; catalogs: %s" % (db.dbname, what, last.get("cats"))) from None


def compare(by_slonik, by_modules, nodes, what):
    for node in nodes:
        for name in DIFFERENTIAL_TABLES:
            assert by_modules[node][name] == by_slonik[node][name], (
                "%s: node %d %s differs:\nslonik:  %s\nmodules: %s"
                % (what, node, name, by_slonik[node][name], by_modules[node][name]))


def twin_queries(twins, nodes, query):
    """{node: rows} of ``query`` on ``nodes`` of each twin: (by slonik, by the modules)."""
    return tuple({n: db.query(n, query) for n in nodes} for db, _fleet in twins)


def slon_backend(db, node):
    """The backend of the live registration of ``node``'s slon (None when it has none)."""
    return db.scalar(node, "select nl_backendpid from %s.sl_nodelock where nl_nodeid = %d and exists "
                           "(select 1 from pg_stat_activity where pid = nl_backendpid)" % (NS, node))


def wait_events_received(db, failed, survivors, sources=None):
    """Once the slons of ``failed`` are stopped: every survivor holds the last event of
    each failed node that it can still get, so that the failover does the same on both
    twins. A survivor reads a failed node's events from the database of that node
    (still running here), or, where ``sources[(survivor, failed node)]`` names another
    node, from that node's database: a node fed by a failed forwarder gets the origin's
    events through the forwarder, which holds only those its slon copied before it
    stopped."""
    sources = sources or {}
    for node in failed:
        for survivor in survivors:
            source = sources.get((survivor, node), node)
            last = db.scalar(source, "select max(ev_seqno) from %s.sl_event where ev_origin = %d" % (NS, node))
            wait_until(lambda s=survivor, n=node, last=last: db.scalar(
                s, "select coalesce(max(ev_seqno), 0) from %s.sl_event where ev_origin = %d" % (NS, n)) >= last,
                timeout=60, interval=0.1, message="%s: node %d holding node %d's last event (as node %d has it)"
                % (db.dbname, survivor, node, source))


def origins(cats):
    return [(row[0], row[1]) for row in cats["sl_set"]]


def subscriptions(cats):
    """(set, provider, receiver, active) of every subscription."""
    return [(row[0], row[1], row[2], row[4]) for row in cats["sl_subscribe"]]


def node_ids(cats):
    return [row[0] for row in cats["sl_node"]]


def test_repair_update_failover_and_drop_nodes_like_slonik(make_fresh_db, make_slons):
    """Nodes 1 (origin), 2 and 3 (subscribers of node 1), built by slonik and by the
    modules as in test_differential; then, on both twins in turn: REPAIR CONFIG on node 2,
    UPDATE FUNCTIONS on node 2, FAILOVER of node 1 to node 2, DROP NODE of nodes 1 and 3
    in one command."""
    by_slonik = make_fresh_db("diff_more_slonik", nodes=(1, 2, 3))
    by_modules = make_fresh_db("diff_more_modules", nodes=(1, 2, 3))
    twins = ((by_slonik, make_slons(by_slonik)), (by_modules, make_slons(by_modules)))
    slonik_bring_up(by_slonik, twins[0][1])
    module_bring_up(by_modules, twins[1][1])
    compare(settled(by_slonik), settled(by_modules), (1, 2, 3), "bring-up")

    # -- REPAIR CONFIG on node 2 -----------------------------------------------------------
    # What a dump and restore of node 2's database leaves, as far as Slony is concerned: the
    # oids recorded there no longer name the relations. Simulated identically on both twins
    # (rather than by a restore, which would make every other slon lose its connection to
    # node 2 for pa_connretry seconds), with node 2's slon stopped as the module says.
    stale = [("sequence", seq_id, False) for seq_id, _name in SEQUENCES] + [
        ("table", tab_id, False) for tab_id, _name in TABLES]
    for db, fleet in twins:
        fleet.stop(2)
        db.query(2, "update %s.sl_table set tab_reloid = (tab_reloid::int8 + 1000000000)::oid" % NS)
        db.query(2, "update %s.sl_sequence set seq_reloid = (seq_reloid::int8 + 1000000000)::oid" % NS)
        assert db.query(2, RELOIDS) == stale
    # slonik 2.2 runs REPAIR CONFIG (updateReloid(set, execute only on)) on the event node
    # alone, as no event: with another event node than the node to repair it does nothing.
    by_slonik.slonik("repair config (set id = 1, event node = 1, execute only on = 2);\n")
    assert by_slonik.query(2, RELOIDS) == stale
    by_slonik.slonik("repair config (set id = 1, event node = 2, execute only on = 2);\n")
    repaired = converge(by_modules, "slony_node", {"id": 2, "repair_config": True})
    assert "repair config (set id = 1, event node = 2, execute only on = 2);" in repaired.result["slonik"]
    for db, fleet in twins:
        assert db.query(2, RELOIDS) == [(kind, num, True) for kind, num, _ok in stale], db.dbname
        fleet.start(2)
    reloids_by_slonik, reloids_by_modules = twin_queries(twins, (1, 2, 3), RELOIDS)
    assert reloids_by_modules == reloids_by_slonik
    compare(settled(by_slonik), settled(by_modules), (1, 2, 3), "REPAIR CONFIG")

    # -- UPDATE FUNCTIONS on node 2 --------------------------------------------------------
    # One Slony-I version is installed: node 2's functions are made to report an older one,
    # the way test_maintenance does it, identically on both twins.
    registered = {}
    for db, _fleet in twins:
        db.query(2, "create or replace function %s.slonyversionpatchlevel() returns int4 "
                    "as $$ begin return 10; end; $$ language plpgsql" % NS)
        assert db.scalar(2, "select %s.slonyversion()" % NS) == OLDER_VERSION
        registered[db.dbname] = wait_until(lambda d=db: slon_backend(d, 2), timeout=30,
                                           message="the slon of node 2 registered")
    before_by_slonik, before_by_modules = twin_queries(twins, (1, 2, 3), FUNCTIONS)
    assert before_by_modules == before_by_slonik
    by_slonik.slonik("update functions (id = 2);\n")
    every_node = {"nodes": [{"id": 1}, {"id": 2}, {"id": 3}], "update_functions": True}
    updated = converge(by_modules, "slony_node", every_node)
    assert updated.result["slonik"].count("update functions") == 1
    for db, _fleet in twins:
        for node in (1, 2, 3):
            assert db.scalar(node, "select %s.slonyversion()" % NS) == VERSION, (db.dbname, node)
        # slon restarts itself with the new functions: it registers again, with another backend.
        wait_until(lambda d=db: slon_backend(d, 2) not in (None, registered[d.dbname]), timeout=60,
                   message="%s: the slon of node 2 restarted" % db.dbname)
    after_by_slonik, after_by_modules = twin_queries(twins, (1, 2, 3), FUNCTIONS)
    assert after_by_slonik[2] != before_by_slonik[2] and after_by_slonik[2] == after_by_slonik[1]
    assert after_by_modules == after_by_slonik
    compare(settled(by_slonik), settled(by_modules), (1, 2, 3), "UPDATE FUNCTIONS")

    # -- FAILOVER of node 1 to node 2 ------------------------------------------------------
    survivors = (2, 3)
    for db, fleet in twins:
        fleet.stop(1)
        wait_events_received(db, (1,), survivors)
    on_nodes(by_slonik, survivors).slonik("failover (id = 1, backup node = 2);\n")
    args = common(on_nodes(by_modules, survivors), failed_node=1, backup_node=2, force=True)
    failed_over = run_module("slony_failover", args)
    assert failed_over.changed and "failover (id = 1, backup node = 2);" in failed_over.result["slonik"]
    assert not run_module("slony_failover", args).changed

    def failed_over_to_2(cats):
        return all(origins(c) == [(1, 2)] and subscriptions(c) == [(1, 2, 3, True)] for c in cats.values())

    after_failover = [settle(db, survivors, failed_over_to_2, "the failover of node 1 to node 2")
                      for db, _fleet in twins]
    for cats in after_failover:
        for node in survivors:
            assert [row[:2] + row[3:] for row in cats[node]["sl_node"]] == [
                (1, False, True), (2, True, False), (3, True, False)], cats[node]["sl_node"]
    compare(*after_failover, survivors, "FAILOVER")

    # -- DROP NODE of nodes 1 and 3 in one command -----------------------------------------
    # Node 3 is decommissioned: its slon is stopped first, on both twins. By design the
    # module then also uninstalls Slony from node 3 (UNINSTALL NODE, it has an admin
    # conninfo), while slonik's DROP NODE leaves node 3's Slony schema in place (only a
    # slon running on a dropped node uninstalls it). The failed node 1, which neither is
    # given an admin conninfo for, keeps its schema on both twins.
    for _db, fleet in twins:
        fleet.stop(3)
    on_nodes(by_slonik, survivors).slonik("drop node (id = '1,3', event node = 2);\n")
    dropped = converge(on_nodes(by_modules, survivors), "slony_node",
                       {"nodes": [{"id": 1}, {"id": 3}], "state": "absent"})
    assert "drop node (id = '1,3', event node = 2);" in dropped.result["slonik"]
    assert [e["type"] for e in dropped.result["events"]] == ["DROP_NODE"]

    def only_node_2(cats):
        return node_ids(cats[2]) == [2] and not cats[2]["sl_path"] and not cats[2]["sl_subscribe"]

    after_drop = [settle(db, (2,), only_node_2, "nodes 1 and 3 dropped") for db, _fleet in twins]
    for cats in after_drop:
        assert origins(cats[2]) == [(1, 2)] and len(cats[2]["sl_table"]) == len(TABLES)
    compare(*after_drop, (2,), "DROP NODE")
    assert has_schema(by_slonik, 3), "slonik's DROP NODE uninstalled node 3 (its slon was stopped)"
    assert not has_schema(by_modules, 3), "slony_node state=absent left Slony installed on node 3"
    assert has_schema(by_slonik, 1) and has_schema(by_modules, 1)
    # Both new origins take writes, which the (former) subscribers no longer block.
    for db, _fleet in twins:
        db.query(2, "insert into public.settings (name, value) values ('alone', 'x')")


FOUR = (1, 2, 3, 4)


def slonik_cascade(db, slons):
    """Node 1 the origin, 2 and 3 its forwarding subscribers, 4 fed by 3; full mesh."""
    paths = "\n".join("store path (server = %d, client = %d, conninfo = '%s', connretry = 10);"
                      % (s, c, db.conninfo(s)) for s in FOUR for c in FOUR if s != c)
    db.slonik("init cluster (id = 1, comment = 'origin');\n"
              + "".join("store node (id = %d, comment = 'node %d', event node = 1);\n" % (n, n) for n in FOUR[1:])
              + paths + "\n")
    slons.start()
    adds = ["set add table (set id = 1, origin = 1, id = %d, fully qualified name = '%s'%s, comment = '%s');"
            % (tab_id, name, ", key = '%s'" % SETTINGS_KEY if name == "public.settings" else "", name)
            for tab_id, name in TABLES]
    adds += ["set add sequence (set id = 1, origin = 1, id = %d, fully qualified name = '%s', comment = '%s');"
             % (seq_id, name, name) for seq_id, name in SEQUENCES]
    db.slonik("create set (id = 1, origin = 1, comment = 'app');\n" + "\n".join(adds) + "\n"
              "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes);\n"
              "subscribe set (id = 1, provider = 1, receiver = 3, forward = yes);\n")
    # What slonik leaves to the user: node 3's copy done before node 4 subscribes from it.
    wait_until(lambda: db.scalar(3, "select sub_active from %s.sl_subscribe where sub_receiver = 3" % NS),
               timeout=90, interval=0.2, message="node 3's copy")
    db.slonik("subscribe set (id = 1, provider = 3, receiver = 4, forward = yes);\n")


def module_cascade(db, slons):
    run_module("slony_node", common(db, nodes=[{"id": 1, "comment": "origin"}] + [
        {"id": n, "comment": "node %d" % n} for n in FOUR[1:]]))
    slons.start()
    run_module("slony_path", common(db, paths=mesh(db, FOUR)))
    run_module("slony_set", common(db, id=1, origin=1, comment="app"))
    run_module("slony_table", common(db, set_id=1, tables=[
        dict({"name": name, "id": tab_id, "comment": name},
             **({"key": SETTINGS_KEY} if name == "public.settings" else {})) for tab_id, name in TABLES]))
    run_module("slony_sequence", common(db, set_id=1, sequences=[
        {"name": name, "id": seq_id, "comment": name} for seq_id, name in SEQUENCES]))
    run_module("slony_subscription", common(db, set_id=1, receivers=[{"receiver": 2}, {"receiver": 3}]))
    run_module("slony_subscription", common(db, set_id=1, receiver=4, provider=3))


@pytest.mark.four_servers
def test_failover_of_two_nodes_in_one_command_like_slonik(make_fresh_db, make_slons, lab):
    """The origin (node 1) and the forwarder feeding node 4 (node 3) fail together: slonik's
    ``failover (node = (id = 1, backup node = 2), node = (id = 3, backup node = 2))`` on
    one twin, slony_failover with ``nodes:`` on the other; nodes 2 and 4 must be left with
    equal catalogs, node 2 the origin and node 4 re-pointed to it."""
    if len(lab.node_ids) < 4:
        pytest.skip("needs a lab of 4 servers (SLONY_LAB_NODES=4)")
    by_slonik = make_fresh_db("diff_multi_slonik", nodes=FOUR)
    by_modules = make_fresh_db("diff_multi_modules", nodes=FOUR)
    twins = ((by_slonik, make_slons(by_slonik)), (by_modules, make_slons(by_modules)))
    slonik_cascade(by_slonik, twins[0][1])
    module_cascade(by_modules, twins[1][1])

    def cascaded(cats):
        return all(len(c["sl_path"]) == 12 and subscriptions(c) == [
            (1, 1, 2, True), (1, 1, 3, True), (1, 3, 4, True)] for c in cats.values())

    before = [settle(db, FOUR, cascaded, "the cascade 1 -> 2, 1 -> 3 -> 4") for db, _fleet in twins]
    compare(*before, FOUR, "bring-up of the cascade")

    survivors = (2, 4)
    for db, fleet in twins:
        fleet.stop(1, 3)
        wait_events_received(db, (1, 3), survivors, sources={(4, 1): 3})
    on_nodes(by_slonik, survivors).slonik(
        "failover (node = (id = 1, backup node = 2), node = (id = 3, backup node = 2));\n")
    pairs = [{"id": 1, "backup_node": 2}, {"id": 3, "backup_node": 2}]
    args = common(on_nodes(by_modules, survivors), nodes=pairs, force=True)
    # Leaving out one of the failed nodes is refused, naming it, and changes nothing.
    partial = run_module("slony_failover", dict(args, nodes=pairs[:1]), expect_failure=True)
    assert "3" in partial.result["msg"], partial.result["msg"]
    assert origins(normalized(on_nodes(by_modules, (2,)))[2]) == [(1, 1)]
    failed_over = run_module("slony_failover", args)
    assert failed_over.changed
    assert "failover (node = (id = 1, backup node = 2), node = (id = 3, backup node = 2));" in \
        failed_over.result["slonik"], failed_over.result["slonik"]
    assert not run_module("slony_failover", args).changed

    # Node 4 re-pointed to node 2; the failed node 3 keeps its row (it goes with DROP NODE).
    def failed_over_to_2(cats):
        return all(origins(c) == [(1, 2)] and subscriptions(c) == [(1, 1, 3, True), (1, 2, 4, True)]
                   for c in cats.values())

    after = [settle(db, survivors, failed_over_to_2, "the failover of nodes 1 and 3 to node 2")
             for db, _fleet in twins]
    for cats in after:
        for node in survivors:
            assert [row[:2] + row[3:] for row in cats[node]["sl_node"]] == [
                (1, False, True), (2, True, False), (3, False, True), (4, True, False)], cats[node]["sl_node"]
    compare(*after, survivors, "FAILOVER of two nodes")
    # Writes on the new origin reach node 4 on both twins.
    for db, _fleet in twins:
        db.query(2, "insert into public.settings (name, value) values ('after-failover', 'x')")
        wait_until(lambda d=db: d.scalar(4, "select count(*) from public.settings where name = 'after-failover'") == 1,
                   timeout=60, interval=0.2, message="%s: a row written on node 2 on node 4" % db.dbname)
