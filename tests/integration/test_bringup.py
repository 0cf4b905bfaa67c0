"""A 3-node cluster built only with the modules, driven through `ansible`, checked on every node.

For every module: check mode first (the catalogs of every node are unchanged), then the
real run (changed), then the same run again (changed=false).
"""

from __future__ import annotations

import time

import pytest

from ansible_run import run_module
from catalog_dump import assert_unchanged, dump, settled_dump

CLUSTER = "lab"
TABLES = ["public.customers", "public.products", "public.orders", "billing.invoices"]


def common(db, **extra):
    args = {"cluster_name": CLUSTER, "admin_conninfo": {str(k): v for k, v in db.admin_conninfo.items()},
            "wait_timeout": 90}
    args.update(extra)
    return args


def converge(db, module, args, check_first=True):
    """check mode (nothing changes) -> real run (changed) -> again (changed=false)."""
    args = common(db, **args)
    if check_first:
        before = settled_dump(db, CLUSTER)
        checked = run_module(module, args, check=True, diff=True)
        assert checked.changed, f"check mode of {module} {args} reported no change"
        assert checked.result["queries"], f"check mode of {module} returned no queries"
        assert_unchanged(dump(db, CLUSTER), before, f"check mode of {module} changed the catalogs")
        assert checked.result["events"] == []
    real = run_module(module, args, diff=True)
    assert real.changed
    again = run_module(module, args)
    assert not again.changed, f"second run of {module} changed: {again.result['queries']}"
    assert again.result["queries"] == [] and again.result["slonik"] == ""
    return real


def mesh(db, nodes):
    return [{"server": s, "client": c, "conninfo": db.conninfo(s)}
            for s in nodes for c in nodes if s != c]


def wait_for_rows(db, node, query, expected, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        rows = db.query(node, query)
        if rows == expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def bring_up(db, slons, subscribers=(2, 3), providers=None):
    """Init 1, store 2 and 3, slons, full-mesh paths, set 1 with tables and a sequence,
    subscriptions. Returns the module results by step name."""
    providers = providers or {}
    out = {}
    out["node1"] = converge(db, "slony_node", {"id": 1, "comment": "origin"})
    out["node2"] = converge(db, "slony_node", {"id": 2, "comment": "replica 2"})
    out["node3"] = converge(db, "slony_node", {"id": 3, "comment": "replica 3"})
    slons.start()
    out["paths"] = converge(db, "slony_path", {"paths": mesh(db, (1, 2, 3))})
    out["set"] = converge(db, "slony_set", {"id": 1, "origin": 1, "comment": "app"})
    out["tables"] = converge(db, "slony_table", {"set_id": 1, "tables": TABLES})
    out["sequence"] = converge(db, "slony_sequence",
                               {"set_id": 1, "sequences": ["public.invoice_number_seq"]})
    for receiver in subscribers:
        args = {"set_id": 1, "receiver": receiver}
        if receiver in providers:
            args["provider"] = providers[receiver]
        out["sub%d" % receiver] = converge(db, "slony_subscription", args)
    return out


def test_three_node_bring_up_replicates_writes(fresh_db, slons):
    db = fresh_db
    results = bring_up(db, slons)

    # Catalogs agree on every node.
    for node in (1, 2, 3):
        assert db.query(node, 'select no_id, no_active from "_lab".sl_node order by 1') == [
            (1, True), (2, True), (3, True)]
        assert db.query(node, 'select set_id, set_origin from "_lab".sl_set') == [(1, 1)]
    for node in (2, 3):
        assert db.query(node, 'select sub_set, sub_provider, sub_active from "_lab".sl_subscribe '
                              'where sub_receiver = %s', (node,)) == [(1, 1, True)]
        replicated = db.query(node, 'select tab_nspname || \'.\' || tab_relname from "_lab".sl_table '
                                    'order by tab_id')
        assert sorted(r[0] for r in replicated) == sorted(TABLES)

    # Data written on the origin arrives on both replicas.
    db.query(1, "insert into public.customers (name) values ('replicated-1'), ('replicated-2')")
    db.query(1, "select setval('public.invoice_number_seq', 4242)")
    expected = db.query(1, "select id, name from public.customers order by id")
    for node in (2, 3):
        assert wait_for_rows(db, node, "select id, name from public.customers order by id",
                             expected) == expected
        deadline = time.monotonic() + 30
        while db.scalar(node, "select last_value from public.invoice_number_seq") != 4242:
            assert time.monotonic() < deadline, "sequence value did not replicate"
            time.sleep(0.2)
    # Replicas refuse local writes to replicated tables.
    with pytest.raises(Exception) as err:
        db.query(2, "insert into public.customers (name) values ('local')")
    assert "Slony-I" in str(err.value)

    # LOCK SET for a maintenance window: the origin refuses writes until UNLOCK SET.
    converge(db, "slony_set", {"id": 1, "origin": 1, "locked": True})
    assert db.scalar(1, 'select set_locked is not null from "_lab".sl_set') is True
    with pytest.raises(Exception) as err:
        db.query(1, "insert into public.customers (name) values ('while locked')")
    assert "is currently locked against updates" in str(err.value)
    converge(db, "slony_set", {"id": 1, "origin": 1, "locked": False})
    db.query(1, "insert into public.customers (name) values ('after the unlock')")
    # A transaction open since before the lock outlives wait_timeout: the lock is
    # refused, naming the backend, and the set is left unlocked.
    blocker = db.connect(1, autocommit=False)
    try:
        with blocker.cursor() as cur:
            cur.execute("select pg_catalog.txid_current(), pg_catalog.pg_backend_pid()")
            pid = cur.fetchone()[1]
        out = run_module("slony_set", common(db, id=1, origin=1, locked=True, wait_timeout=3),
                         expect_failure=True)
    finally:
        blocker.rollback()
        blocker.close()
    assert "timed out after 3s waiting for the transactions that were running when set 1 " \
           "was locked on node 1 to end" in out.msg
    assert "pid %d" % pid in out.msg and "set 1 unlocked again on node 1" in out.msg
    assert db.scalar(1, 'select set_locked is null from "_lab".sl_set') is True
    assert db.scalar(1, "select count(*) from pg_trigger where tgname = '_lab_lockedset'") == 0

    # Returned values: events, slonik text, diff, no password anywhere.
    sub = results["sub2"].result
    assert [e["type"] for e in sub["events"]] == ["SUBSCRIBE_SET", "ENABLE_SUBSCRIPTION"]
    assert "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes" in sub["slonik"]
    assert sub["before"]["state"] == "absent" and sub["after"]["complete"] is True
    # Diff mode: the callback shows the before/after of the subscription.
    assert "+++ after" in results["sub2"].stdout and "receiver: 2" in results["sub2"].stdout
    for run in results.values():
        assert db.lab.password not in run.everything()


def test_receivers_list_subscribes_a_cascade_in_one_task(fresh_db, slons):
    """One slony_subscription task for both receivers, the leaf listed first: the
    provider is subscribed first, node 3 copies from node 2, one run waits for both."""
    db = fresh_db
    bring_up(db, slons, subscribers=())
    receivers = [{"receiver": 3, "provider": 2}, {"receiver": 2}]
    real = converge(db, "slony_subscription", {"set_id": 1, "receivers": receivers})
    result = real.result
    assert [e["type"] for e in result["events"]] == ["SUBSCRIBE_SET", "ENABLE_SUBSCRIPTION"] * 2
    assert result["slonik"].index("receiver = 2") < result["slonik"].index("receiver = 3")
    assert [(v["receiver"], v["provider"], v["complete"]) for v in result["after"]] == [
        (3, 2, True), (2, 1, True)]
    assert [v["state"] for v in result["before"]] == ["absent", "absent"]
    # Returned only once both copies were done: each receiver's own catalog says so.
    for node, provider in ((2, 1), (3, 2)):
        assert db.query(node, 'select sub_provider, sub_forward, sub_active from '
                              '"_lab".sl_subscribe where sub_receiver = %s', (node,)) == [
            (provider, True, True)]
        assert db.scalar(node, 'select count(*) from "_lab".sl_setsync where ssy_setid = 1') == 1
    db.query(1, "insert into public.customers (name) values ('through node 2')")
    expected = db.query(1, "select id, name from public.customers order by id")
    assert wait_for_rows(db, 3, "select id, name from public.customers order by id",
                         expected) == expected
    # Unsubscribing node 2 alone is refused (it feeds node 3), and nothing changes.
    before = settled_dump(db, CLUSTER)
    out = run_module("slony_subscription", common(db, set_id=1, receivers=[{"receiver": 2}],
                                                  state="absent"), expect_failure=True)
    assert "node 2 is the provider of set 1 for node(s) 3" in out.result["msg"]
    assert_unchanged(dump(db, CLUSTER), before)
    # Both in one task: the leaf goes first.
    both = converge(db, "slony_subscription",
                    {"set_id": 1, "receivers": receivers, "state": "absent"})
    assert [e["type"] for e in both.result["events"]] == ["UNSUBSCRIBE_SET"] * 2
    assert both.result["slonik"].index("receiver = 3") < both.result["slonik"].index(
        "receiver = 2")
    for node in (1, 2, 3):
        assert db.scalar(node, 'select count(*) from "_lab".sl_subscribe') == 0


def test_cascade_unsubscribe_and_drop_node(fresh_db, slons):
    db = fresh_db
    bring_up(db, slons, subscribers=(2, 3), providers={3: 2})
    for node in (1, 2, 3):
        assert db.query(node, 'select sub_receiver, sub_provider from "_lab".sl_subscribe '
                              'where sub_receiver = 3') in ([(3, 2)], [])
    assert db.query(3, 'select sub_provider from "_lab".sl_subscribe where sub_receiver = 3') == [(2,)]
    db.query(1, "insert into public.products (sku, name, price) values ('C-1', 'cascaded', 1)")
    expected = db.query(1, "select id, name from public.products order by id")
    assert wait_for_rows(db, 3, "select id, name from public.products order by id",
                         expected) == expected

    # Node 2 feeds node 3: it can be neither unsubscribed nor dropped yet.
    refused = run_module("slony_subscription", common(db, set_id=1, receiver=2, state="absent"),
                         expect_failure=True)
    assert "provider of set 1 for node(s) 3" in refused.msg
    refused = run_module("slony_node", common(db, id=2, state="absent"), expect_failure=True)
    assert "still the data provider" in refused.msg

    # Move node 3 to the origin (RESUBSCRIBE NODE), then drop node 2.
    moved = converge(db, "slony_subscription", {"set_id": 1, "receiver": 3, "provider": 1})
    assert "resubscribe node (origin = 1, provider = 1, receiver = 3);" in moved.result["slonik"]
    assert db.query(3, 'select sub_provider from "_lab".sl_subscribe where sub_receiver = 3') == [(1,)]
    converge(db, "slony_subscription", {"set_id": 1, "receiver": 2, "state": "absent"})
    for node in (1, 3):
        assert db.query(node, 'select count(*) from "_lab".sl_subscribe where sub_receiver = 2') == [(0,)]
    # Node 2 kept its data but lost its triggers; node 3 still replicates.
    assert db.query(2, "select count(*) from pg_trigger where tgname like '_lab_%'") == [(0,)]
    db.query(1, "insert into public.products (sku, name, price) values ('C-2', 'after-unsubscribe', 2)")
    expected = db.query(1, "select id, name from public.products order by id")
    assert wait_for_rows(db, 3, "select id, name from public.products order by id",
                         expected) == expected

    # Every slon restarts after DROP NODE; given their pid files, the module wakes the
    # staying ones (node 2's file is ignored) and returns once they run again.
    removed = converge(db, "slony_node", {
        "id": 2, "state": "absent",
        "slon_pid_files": {str(n): str(slons[n].pid_path) for n in (1, 2, 3)}})
    assert set(e["node"] for e in removed.result["slons_woken"]) <= {1, 3}, removed.result
    for node in (1, 3):
        assert db.scalar(node, 'select exists (select 1 from "_lab".sl_nodelock where '
                               'nl_nodeid = "_lab".getLocalNodeId(\'_lab\') and exists (select 1 '
                               'from pg_stat_activity where pid = nl_backendpid))'), node
    for node in (1, 3):
        assert db.query(node, 'select no_id from "_lab".sl_node order by 1') == [(1,), (3,)]
        assert db.query(node, 'select count(*) from "_lab".sl_path where 2 in (pa_server, pa_client)') == [(0,)]
    assert db.scalar(2, "select count(*) from pg_namespace where nspname = '_lab'") == 0
