"""failover.py: the plan decided from plain data (no database), and every wait of a
failover run with a fake clock."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import failover
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Set, Snapshot, Subscription)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from ansible_collections.dany.slony.plugins.module_utils.failover import (
    FailoverRead, FailoverRun, decide_failover)
from ansible_collections.dany.slony.plugins.module_utils.plan import (
    CALLBACK, EVENT, WAIT, Plan, RunContext, Step)
from fakes import FakeClock
from test_setmove import Cluster as LockCluster
from test_switchover_decide import Scripted

NS = sql.Identifier("_shop")
SUBS = (Subscription(1, 1, 2, True, True), Subscription(1, 1, 3, True, True))


def snapshot(node, failed_state=(True, False), set_origin=1, slon=True):
    """Node ``node``'s catalog: node 1 (active, failed as given) origin of set 1."""
    active, failed = failed_state
    return Snapshot(node, local_id=node,
                    nodes=[Node(1, active, "origin", failed), Node(2, True, "b", False),
                           Node(3, True, "c", False)],
                    sets=[Set(1, set_origin, None, "app")], subscriptions=SUBS,
                    slon_running=slon)


def read(snaps=None, reachable=False, promotion=None, seqnos=None, orphans=(),
         drop_plan=None):
    """What read_failover returns for failing node 1 over to node 2 (survivors 2 and 3)."""
    data = FailoverRead("shop", 1, 2, [2, 3], [2, 3],
                        snaps or {2: snapshot(2), 3: snapshot(3)}, admin_nodes=[2, 3])
    data.probe = (reachable, ["admin_conninfo (host=db1): %s" % (
        "the database answers" if reachable else "unreachable (refused)")])
    data.sets_rows = [1]
    data.promotion = promotion
    data.orphans = list(orphans)
    data.seqnos = seqnos if seqnos is not None else {2: 100, 3: 105}
    data.drop_plan = drop_plan
    return data


def shape(planned):
    return [(s.kind, s.node, s.function) for s in planned.plan.steps]


# -- the decision ---------------------------------------------------------------------------

def test_a_fresh_failover_is_slonik_order_with_the_most_ahead_candidate():
    planned = decide_failover(read(), NS, drop_failed=True, timeout=60, slon_wait=60)
    assert shape(planned) == [
        (CALLBACK, 2, "preFailover"), (CALLBACK, 3, "preFailover"),
        (CALLBACK, 3, "failedNode2"), (CALLBACK, 3, "failedNode3"),
        (CALLBACK, 2, "moveSet"), (CALLBACK, 2, "dropNode")]
    assert planned.plan.steps[0].slonik == "failover (id = 1, backup node = 2);"
    assert planned.extra["temporary_backup"] == 3
    assert planned.extra["failed_node_events"] == [{"node": 2, "max_seqno": 100},
                                                   {"node": 3, "max_seqno": 105}]
    assert planned.extra["failed_node_reachable"] is False
    assert planned.before["sets"] == [{"id": 1, "origin": 1}]
    assert planned.after == {"failed_node": 1, "backup_node": 2, "state": "absent",
                             "sets": [{"id": 1, "origin": 2}]}


def test_a_node_that_answers_is_refused_unless_forced():
    with pytest.raises(SlonyError, match="node 1 is not failed: admin_conninfo"):
        decide_failover(read(reachable=True), NS)
    assert decide_failover(read(reachable=True), NS, force=True).plan.changes()


def test_a_stopped_slon_is_refused_at_once_without_slon_wait():
    snaps = {2: snapshot(2), 3: snapshot(3, slon=False)}
    with pytest.raises(SlonyError) as err:
        decide_failover(read(snaps), NS, slon_wait=0)
    assert str(err.value).startswith(
        "the slon daemon of surviving node(s) 3 is not running; the failover of node 1 needs")
    assert "waited" not in str(err.value)


def test_a_stopped_slon_becomes_a_precondition_wait_and_planning_never_sleeps():
    snaps = {2: snapshot(2), 3: snapshot(3, slon=False)}
    planned = decide_failover(read(snaps), NS, slon_wait=20)
    first = planned.plan.steps[0]
    assert first.kind == WAIT and first.required
    assert first.description.startswith("wait up to 20s for the slon daemon of surviving "
                                        "node(s) 3 to run again")
    assert shape(planned)[1] == (CALLBACK, 2, "preFailover")


def test_validation_refuses_before_anything_is_planned():
    with pytest.raises(SlonyError, match="node 3 is fed by node 1 but has no path"):
        decide_failover(read(orphans=[3]), NS)
    with pytest.raises(SlonyError, match="no surviving node holds any event of node 1"):
        decide_failover(read(seqnos={2: None, 3: None}), NS)


def test_an_interrupted_promotion_is_resumed():
    promoted = Event(3, 5000000077, "FAILOVER_NODE")
    planned = decide_failover(read(promotion=(3, promoted, 105)), NS)
    assert shape(planned) == [(CALLBACK, 3, "failedNode3"), (CALLBACK, 2, "moveSet")]
    assert planned.plan.steps[0].args == (1, 3, 105)
    assert planned.extra["temporary_backup"] == 3
    assert "failed_node_events" not in planned.extra


def test_a_completed_failover_changes_nothing_or_only_drops():
    done = (False, True)
    snaps = {2: snapshot(2, done, set_origin=2), 3: snapshot(3, done, set_origin=2)}
    planned = decide_failover(read(snaps), NS)
    assert len(planned.plan) == 0 and planned.before["state"] == "failed"
    drop = Plan([Step(EVENT, 2, "drop node 1", function="dropNode")])
    planned = decide_failover(read(snaps, drop_plan=drop), NS, drop_failed=True)
    assert shape(planned) == [(EVENT, 2, "dropNode")]


# -- the waits, with a fake clock -------------------------------------------------------------

def run_of(**kwargs):
    run = FailoverRun(NS, 1, 2, [2, 3], [2, 3], [1], timeout=8)
    for key, value in kwargs.items():
        setattr(run, key, value)
    return run


def test_slon_wait_step_honours_slon_wait_and_keeps_the_refusal():
    snaps = {2: snapshot(2), 3: snapshot(3, slon=False)}
    step = decide_failover(read(snaps), NS, slon_wait=3).plan.steps[0]
    clock = FakeClock()
    with pytest.raises(SlonyError) as err:
        step.run(Scripted([], slon={3: False}), step, RunContext(timeout=300, clock=clock))
    assert clock.waited == pytest.approx(3)
    message = str(err.value)
    assert message.startswith("the slon daemon of surviving node(s) 3 is not running (waited "
                              "3s for it to come back); the failover of node 1 needs")
    assert "nothing was changed; timed out after 3s waiting for the slon daemon of node 3 to " \
           "run; behind: node 3 (no live sl_nodelock entry on node 3; slon not running)" in message


def test_wait_for_restarts_honours_the_timeout_and_names_the_hung_slon():
    run = run_of(slon_pids={2: 100, 3: 200})
    restarted = {2: [(101,)], 3: []}
    cluster = Scripted([("nl_backendpid <>", lambda node, params: restarted[node])])
    clock = FakeClock()
    with pytest.raises(SlonyError) as err:
        run.wait_for_restarts(cluster, clock)
    assert clock.waited == pytest.approx(8)
    message = str(err.value)
    assert message.startswith(
        "timed out after 8s waiting for the slon daemons to restart after preFailover; "
        "behind: node 3 (no new slon registration since backend 200; slon running); "
        "preFailover has run on node(s) 2, 3")
    assert "run the same failover again" in message
    assert err.value.node == 3


def test_wait_for_restarts_skips_nodes_without_a_slon():
    clock = FakeClock()
    run_of(slon_pids={2: None}).wait_for_restarts(Scripted([]), clock)
    assert clock.sleeps == []


def test_wait_failover_confirmed_honours_the_timeout(monkeypatch):
    monkeypatch.setattr(failover, "read_snapshot", lambda cluster, node: snapshot(node))
    run = run_of(temporary_backup=3, event=Event(3, 5000000080, "FAILOVER_NODE"), seqno=105)
    cluster = Scripted([("sl_confirm", lambda node, params: [(2, 5000000079)])])
    clock = FakeClock()
    with pytest.raises(SlonyError) as err:
        run.wait_failover_confirmed(cluster, clock)
    assert clock.waited == pytest.approx(8)
    assert str(err.value).startswith(
        "timed out after 8s waiting for event 5000000080 (FAILOVER_NODE) of node 3 to be "
        "confirmed; behind: node 2 (confirmed up to 5000000079; slon running). A node "
        "confirms FAILOVER_NODE")


def test_move_sets_lock_wait_honours_the_timeout_and_leaves_the_lock(monkeypatch):
    promoted = Snapshot(3, local_id=3, sets=[Set(1, 3, None, "app")])
    monkeypatch.setattr(failover, "read_snapshot", lambda cluster, node: promoted)
    run = run_of(temporary_backup=3)
    cluster = LockCluster()  # txid_snapshot_xmin never reaches the lock's xmax
    clock = FakeClock()
    with pytest.raises(SlonyError) as err:
        run.move_sets(cluster, None, RunContext(timeout=300, clock=clock))
    assert clock.waited == pytest.approx(8)
    message = str(err.value)
    assert message.startswith(
        "timed out after 8s waiting for the transactions that were running when set 1 was "
        "locked on node 3 to end; behind: node 3 (transactions older than txid 4711 still "
        "running: pid 42")
    assert message.endswith("; set(s) 1 stay locked on node 3 until the failover is run again")


def test_move_sets_has_nothing_to_do_when_the_backup_was_promoted():
    assert run_of(temporary_backup=2).move_sets(None, None, RunContext()) == []


def test_what_the_run_learns_reaches_the_returned_extra():
    planned = decide_failover(read(), NS)
    run = planned.plan.steps[-1].run.__self__
    run.report["temporary_backup"] = 2  # as promote() does when node 2 turns out ahead
    assert planned.extra["temporary_backup"] == 2


# -- the subscriptions FAILOVER dropped -------------------------------------------------------

def test_the_receivers_of_the_failed_nodes_sets_come_from_each_nodes_own_catalog():
    assert failover.receivers_of({2: snapshot(2), 3: snapshot(3)}, [(1, 1)]) == {2: [1], 3: [1]}
    # A node whose own catalog lacks its subscription is no receiver; other sets are ignored.
    lone = Snapshot(3, local_id=3, nodes=[], sets=[Set(1, 1, None, "app")], subscriptions=[])
    assert failover.receivers_of({2: snapshot(2), 3: lone}, [(1, 1), (7, 1)]) == {2: [1]}


def test_a_dropped_subscription_is_reported_and_warned_once():
    planned = decide_failover(read(), NS)
    assert planned.extra["dropped_subscriptions"] == [] and planned.extra["warnings"] == []
    run = FailoverRun(NS, 1, 2, [2, 3, 4], [2, 3], [1], receivers={2: [1], 3: [1], 4: [1, 5]},
                      dropped=planned.extra["dropped_subscriptions"],
                      warnings=planned.extra["warnings"])
    run.temporary_backup = 2
    # Node 4 was ahead of node 2: its own catalog has lost set 1, not set 5.
    still = {2: [(1,)], 3: [(1,)], 4: [(5,)]}
    cluster = Scripted([("sub_receiver", lambda node, params: still[node])])
    run.note_dropped(cluster)
    run.note_dropped(cluster)  # a second look (the next failed node's run) adds nothing
    assert planned.extra["dropped_subscriptions"] == [
        {"node": 4, "set": 1, "failed_node": 1, "promoted_node": 2}]
    assert planned.extra["warnings"] == [
        "node 4 no longer subscribes to set 1: it had applied more of failed node 1's events "
        "than node 2, which took over, and Slony's FAILOVER dropped its subscription; "
        "subscribe it again (a full copy)"]
