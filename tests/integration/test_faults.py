"""Faults, bad input and secrets: every failure is clear, names the node, changes nothing,
and a re-run after the fault converges. No password ever appears in any output."""

from __future__ import annotations

import threading

from ansible_collections.dany.slony.plugins.module_utils.cluster import Cluster
from ansible_collections.dany.slony.plugins.module_utils.nodes import plan_node_present
from ansible_collections.dany.slony.plugins.module_utils.plan import CALLBACK, Plan, execute_plan

from ansible_run import run_module
from catalog_dump import assert_unchanged, dump
from test_bringup import CLUSTER, common, mesh

WEIRD_PASSWORD = "Wq7 'x\\z!"   # a space, a quote and a backslash


def small_cluster(db, slons, nodes=(1, 2, 3)):
    for node in nodes:
        run_module("slony_node", common(db, id=node))
    slons.start(*nodes)
    run_module("slony_path", common(db, paths=mesh(db, nodes)))
    run_module("slony_set", common(db, id=1, origin=1, comment="app"))
    run_module("slony_table", common(db, set_id=1, tables=["public.customers", "public.orders"]))


def test_node_down_names_the_node_and_a_rerun_after_restart_converges(fresh_db, slons):
    db, lab = fresh_db, fresh_db.lab
    small_cluster(db, slons, nodes=(1, 2))
    lab.stop_server(3)
    try:
        failed = run_module("slony_node", common(db, id=3, connect_timeout=3), expect_failure=True)
        assert failed.msg.startswith("cannot connect to node 3 (")
        assert "password=********" in failed.msg
        assert lab.password not in failed.everything()
    finally:
        lab.start_server(3)
    run_module("slony_node", common(db, id=3))
    slons.start(3)
    run_module("slony_path", common(db, paths=mesh(db, (1, 2, 3))))
    assert db.query(3, 'select no_id from "_lab".sl_node order by 1') == [(1,), (2,), (3,)]


def test_stopped_slon_makes_the_wait_time_out_naming_it(fresh_db, slons):
    db = fresh_db
    small_cluster(db, slons)
    slons.stop(3)
    failed = run_module("slony_set", common(db, id=2, origin=1, wait_timeout=5), expect_failure=True)
    assert "timed out after 5s" in failed.msg
    assert "node 3 (confirmed up to" in failed.msg and "slon not running" in failed.msg
    assert failed.result["node"] == 3
    # The event itself was committed: once the slon is back, a re-run has nothing to do.
    slons.start(3)
    again = run_module("slony_set", common(db, id=2, origin=1))
    assert not again.changed


def test_interrupted_store_node_is_finished_by_the_next_run(fresh_db):
    db = fresh_db
    run_module("slony_node", common(db, id=1))
    with Cluster(CLUSTER, db.admin_conninfo) as cluster:
        plan = plan_node_present(cluster, 2)[0]
        # Only the new node's half (schema loaded and initialised), as if killed right after.
        local = [s for s in plan.steps if s.kind == CALLBACK]
        execute_plan(cluster, Plan(local))
    assert db.scalar(2, 'select last_value from "_lab".sl_local_node_id') == 2
    assert db.query(1, 'select no_id from "_lab".sl_node') == [(1,)]
    resumed = run_module("slony_node", common(db, id=2))
    assert resumed.changed
    assert "uninstall node (id = 2);" in resumed.result["slonik"]
    assert db.query(1, 'select no_id, no_active from "_lab".sl_node order by 1') == [(1, True), (2, True)]
    assert db.query(2, 'select no_id, no_active from "_lab".sl_node order by 1') == [(1, True), (2, True)]
    assert not run_module("slony_node", common(db, id=2)).changed


def test_two_runs_at_once_are_serialized(fresh_db, slons):
    db = fresh_db
    small_cluster(db, slons)
    wanted = ["public.products", "billing.invoices", "billing.payments"]
    results = []

    def add():
        results.append(run_module("slony_table", common(db, set_id=1, tables=wanted)))

    threads = [threading.Thread(target=add), threading.Thread(target=add)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.changed for r in results) == [False, True]
    for node in (1, 2, 3):
        rows = db.query(node, 'select tab_id, tab_nspname || \'.\' || tab_relname from "_lab".sl_table '
                              'order by 1')
        if node == 1:
            assert len(rows) == 5 and len(set(r[0] for r in rows)) == 5
    events = db.query(1, 'select count(*) from "_lab".sl_event where ev_type = \'SET_ADD_TABLE\'')
    assert events == [(5,)]


BAD_INPUTS = [
    # (module, args, expected message fragment)
    ("slony_subscription", {"set_id": 1, "receiver": 9}, "no entry in admin_conninfo"),
    ("slony_table", {"set_id": 1, "tables": ["public.audit_log"]},
     "public.audit_log has no primary key and no unique index"),
    ("slony_table", {"set_id": 1, "tables": ["public.nope"]}, "public.nope does not exist"),
    ("slony_table", {"set_id": 1, "tables": ["public.events"]}, "public.events is a partitioned table"),
    ("slony_table", {"set_id": 1, "tables": [{"name": "public.products", "id": 7},
                                             {"name": "billing.invoices", "id": 7}]}, "id 7"),
    ("slony_table", {"set_id": 1, "tables": [{"name": "public.settings", "key": "settings_pkey"}]},
     "settings_pkey"),
    ("slony_table", {"set_id": 1, "tables": ["customers"]}, "must be schema-qualified"),
    ("slony_table", {"set_id": 5, "tables": ["public.products"]}, "set 5"),
    ("slony_sequence", {"set_id": 1, "sequences": ["public.products"]}, "not a sequence"),
    ("slony_set", {"id": 1, "origin": 2}, "use dany.slony.slony_switchover"),
    ("slony_subscription", {"set_id": 1, "receiver": 3, "provider": 2},
     "provider node 2 does not forward set 1"),
    ("slony_subscription", {"set_id": 1, "receiver": 2, "provider": 3},
     "provider node 3 does not subscribe to set 1"),
    ("slony_subscription", {"set_id": 1, "receiver": 1}, "the origin cannot subscribe"),
    ("slony_path", {"server": 9, "client": 1, "conninfo": "host=nowhere"}, "node 9 is not a node"),
    ("slony_path", {"server": 1, "client": 1, "conninfo": "host=x"}, "server and client are both node 1"),
    ("slony_node", {"id": 1, "state": "absent"}, "node 1 is the origin of set(s) 1"),
    ("slony_node", {"id": 2, "event_node": 2}, "event_node must differ"),
]


def test_bad_input_fails_clearly_and_changes_nothing(fresh_db, slons):
    db = fresh_db
    small_cluster(db, slons)
    run_module("slony_subscription", common(db, set_id=1, receiver=2, forward=False))
    before = dump(db, CLUSTER)
    seen = set()
    for module, args, fragment in BAD_INPUTS:
        failed = run_module(module, common(db, **args), expect_failure=True)
        assert fragment in failed.msg, f"{module} {args}: {failed.msg}"
        assert failed.result.get("queries", []) == [], f"{module} {args} ran {failed.result['queries']}"
        assert db.lab.password not in failed.everything()
        seen.add(failed.msg)
    # Connection-level bad input.
    swapped = common(db, id=1)
    swapped["admin_conninfo"] = {"1": db.conninfo(2), "2": db.conninfo(1)}
    failed = run_module("slony_node", swapped, expect_failure=True)
    assert ("admin_conninfo for node 1 (" in failed.msg and "reaches the database of node 2 "
            in failed.msg) or ("admin_conninfo for node 2 (" in failed.msg
                               and "reaches the database of node 1 " in failed.msg)
    failed = run_module("slony_set", dict(common(db, id=1, origin=1), cluster_name="9lives"),
                        expect_failure=True)
    assert "invalid cluster_name '9lives'" in failed.msg
    bad = common(db, id=1, origin=1)
    bad["admin_conninfo"] = {"1": db.conninfo(1) + " sslmode"}
    failed = run_module("slony_set", bad, expect_failure=True)
    assert "admin_conninfo for node 1 is not a valid libpq conninfo" in failed.msg
    assert db.lab.password not in failed.everything()
    other = common(db, id=1, origin=1)
    other["cluster_name"] = "other"   # the databases hold no schema of cluster "other"
    failed = run_module("slony_set", other, expect_failure=True)
    assert "is not a node of Slony cluster other" in failed.msg
    seen.update(["swapped", "name", "conninfo", "other"])
    assert len(seen) >= 20
    assert_unchanged(dump(db, CLUSTER), before)


def test_no_password_anywhere_even_with_weird_passwords_and_vvv(fresh_db, slons):
    db = fresh_db
    quoted = WEIRD_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    for node in db.node_ids:
        db.query(node, "drop role if exists weird")
        db.query(node, "create role weird superuser login password %s", (WEIRD_PASSWORD,))
    try:
        admin = {str(n): "host=127.0.0.1 port=%d dbname=%s user=weird password='%s'"
                         % (db.lab.port(n), db.dbname, quoted) for n in db.node_ids}
        runs = []
        for node in (1, 2, 3):
            runs.append(run_module("slony_node", dict(common(db, id=node), admin_conninfo=admin),
                                   verbosity=3))
        slons.start()
        paths = [{"server": s, "client": c, "conninfo": admin[str(s)]}
                 for s in (1, 2, 3) for c in (1, 2, 3) if s != c]
        runs.append(run_module("slony_path", dict(common(db, paths=paths), admin_conninfo=admin),
                               check=True, diff=True, verbosity=3))
        runs.append(run_module("slony_path", dict(common(db, paths=paths), admin_conninfo=admin),
                               diff=True, verbosity=3))
        failing = dict(admin, **{"3": admin["3"].replace("port=%d" % db.lab.port(3), "port=1")})
        runs.append(run_module("slony_set", dict(common(db, id=1, origin=3, connect_timeout=2),
                                                 admin_conninfo=failing),
                               expect_failure=True, verbosity=3))
        assert "store path (server = 1, client = 2" in runs[4].result["slonik"]
        for run in runs:
            text = run.everything()
            for secret in ("Wq7", WEIRD_PASSWORD, quoted, db.lab.password):
                assert secret not in text, f"{run.module} leaked {secret!r}"
        # The paths really carry the password (slon uses them).
        assert db.scalar(2, 'select pa_conninfo from "_lab".sl_path where pa_server = 1') == admin["1"]
    finally:
        slons.kill_all()
        for node in db.node_ids:
            db.query(node, "drop owned by weird cascade")
            db.query(node, "drop role weird")
