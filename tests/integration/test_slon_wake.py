"""slony_switchover and slony_failover with ``slon_pid_files``, through `ansible`, against a
real 3-node cluster whose slons run on this host (the harness's SlonFleet writes slon's
pid file: the watchdog's pid).

Switchover 1 -> 2 and back, then node 1 dies and fails over to node 2. Each run:
* wakes the watchdog of the slon that restarts after ACCEPT_SET (node 3) or after the
  failover's restart requests and the DROP NODE of the failed node (nodes 2 and 3), and
  says so in ``slons_woken``;
* returns only once those slons run again (a live registration on each node), so the
  next step can read any node: a row written on the new origin right after the run
  reaches every other node, and every row committed before the run is everywhere.
No time is asserted: the benchmark (bench/run.py) measures it.
"""

from __future__ import annotations

from lab import wait_until
from ansible_run import run_module
from test_bringup import CLUSTER, bring_up, common

NS = '"_%s"' % CLUSTER


def slon_running(db, node):
    return db.scalar(node, f"select exists (select 1 from {NS}.sl_nodelock "
                           f"where nl_nodeid = {NS}.getLocalNodeId('_{CLUSTER}') and exists "
                           "(select 1 from pg_stat_activity where pid = nl_backendpid))")


def origin_on(db, node):
    return db.scalar(node, f"select set_origin from {NS}.sl_set where set_id = 1")


_IDS = iter(range(500000, 600000))


def write(db, node, name):
    """One committed row on ``node`` (ids of our own: the serial is not replicated)."""
    return db.scalar(node, "insert into public.customers (id, name) values (%s, %s) returning id",
                     (next(_IDS), name))


def held(db, node, ids):
    return db.scalar(node, "select count(*) from public.customers where id = any(%s)",
                     (list(ids),))


def pid_files(slons, nodes):
    return {str(n): str(slons[n].pid_path) for n in nodes}


def test_switchover_and_failover_wake_the_slons_they_wait_for(fresh_db, slons):
    db = fresh_db
    bring_up(db, slons)
    committed = []
    for old, new in ((1, 2), (2, 1)):
        committed += [write(db, old, "before %d->%d" % (old, new)) for dummy in range(5)]
        moved = run_module("slony_switchover", common(
            db, set_id=1, to_node=new, slon_pid_files=pid_files(slons, (1, 2, 3))))
        assert moved.changed
        assert [e["node"] for e in moved.result["slons_woken"]] == [3], moved.result
        assert moved.result["timings"]["restarted_seconds"] is not None
        # Returned once node 3's slon runs again: every node can be read at once.
        assert all(slon_running(db, n) for n in (1, 2, 3))
        assert [origin_on(db, n) for n in (1, 2, 3)] == [new] * 3
        probe = write(db, new, "after %d->%d" % (old, new))
        wait_until(lambda: all(held(db, n, [probe]) for n in (1, 2, 3)), timeout=60,
                   message="a row written on node %d on every node" % new)
        assert all(held(db, n, committed) == len(committed) for n in (1, 2, 3))

    # Node 1 dies with rows that node 2 has.
    committed += [write(db, 1, "before failover") for dummy in range(5)]
    wait_until(lambda: held(db, 2, committed) == len(committed), timeout=60,
               message="the rows on node 2")
    db.lab.stop_server(1, mode="immediate")
    slons.kill(1)
    try:
        # Node 1's pid file is given too (a playbook gives every node's): it is ignored.
        args = common(db, failed_node=1, backup_node=2, drop_failed=True,
                      slon_pid_files=pid_files(slons, (1, 2, 3)))
        args["admin_conninfo"] = {k: v for k, v in args["admin_conninfo"].items() if k != "1"}
        failed = run_module("slony_failover", args)
        assert failed.changed
        woken = {e["node"]: e for e in failed.result["slons_woken"]}
        assert set(woken) == {2, 3}, failed.result
        # Every slon restarts after DROP NODE too: the run returned once they ran again.
        assert [db.scalar(n, f"select count(*) from {NS}.sl_node where no_id = 1")
                for n in (2, 3)] == [0, 0]
        assert all(slon_running(db, n) for n in (2, 3))
        assert [origin_on(db, n) for n in (2, 3)] == [2, 2]
        probe = write(db, 2, "after failover")
        wait_until(lambda: held(db, 3, [probe]), timeout=60, message="a row of node 2 on node 3")
        assert all(held(db, n, committed) == len(committed) for n in (2, 3))
    finally:
        db.lab.ensure_servers_running()
