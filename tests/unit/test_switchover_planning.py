"""switchover.py and sync.py: where a set stands, the preflight, the plan (no database)."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import setmove
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Path, Set, SetSync, Snapshot, Status, Subscription)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from ansible_collections.dany.slony.plugins.module_utils.plan import CALLBACK, WAIT
from ansible_collections.dany.slony.plugins.module_utils.switchover import (
    DONE, IN_FLIGHT, MOVE, RESUME, SetMove, Switchover, build_plan, preflight_problems,
    refusal_message, set_position, slonik_lock, slonik_move, slonik_wait)
from ansible_collections.dany.slony.plugins.module_utils.sync import (
    SyncRun, normalize_confirmers, slonik_sync)
from ansible_collections.dany.slony.plugins.module_utils.waits import POLL_INTERVAL
from fakes import FakeClock

NS = sql.Identifier("_shop")
NODES = (Node(1, True, "origin", False), Node(2, True, "replica", False),
         Node(3, True, "replica", False))
MESH = tuple(Path(s, c, "host=n%d dbname=shop" % s, 10)
             for s in (1, 2, 3) for c in (1, 2, 3) if s != c)


def snapshot(node, sets=((1, 1, None),), subs=((1, 1, 2, True, True), (1, 1, 3, True, True)),
             setsyncs=None, status=(), slon=True, paths=MESH, nodes=NODES):
    """A node's catalog: set 1 of origin 1, subscribed by 2 and 3 with forward."""
    if setsyncs is None:
        setsyncs = [SetSync(s[0], s[1], 5000000100) for s in subs if s[2] == node]
    return Snapshot(node, local_id=node, nodes=nodes, paths=paths,
                    sets=[Set(i, o, locked, "c") for i, o, locked in sets],
                    subscriptions=[Subscription(*s) for s in subs], setsyncs=setsyncs,
                    status=status, slon_running=slon)


def healthy(overrides=None):
    """Snapshots of a 3-node cluster ready to move set 1 from 1 to 2."""
    status = [Status(1, 2, 5000000200, 5000000198, 2, 1.5),
              Status(1, 3, 5000000200, 5000000199, 1, 0.7)]
    snaps = {1: snapshot(1, status=status), 2: snapshot(2), 3: snapshot(3)}
    snaps.update(overrides or {})
    return snaps


def problems(snaps=None, set_ids=(1,), in_progress=None, admin=(1, 2, 3), **kwargs):
    return preflight_problems(1, 2, list(set_ids), snaps or healthy(), in_progress or {},
                              list(admin), **kwargs)


# -- set_position --------------------------------------------------------------------

def test_target_is_origin_already():
    assert set_position(1, 2, {2: 2, 1: 2}) == (DONE, None)
    assert set_position(1, 2, {2: 2}) == (DONE, None)


def test_origin_found_through_the_target_catalog():
    assert set_position(1, 2, {2: 1, 1: 1}) == (MOVE, 1)


def test_move_committed_on_the_old_origin_but_not_processed_by_the_target():
    # MOVE SET committed on 1 (it names 2), node 2 still names 1.
    assert set_position(1, 2, {2: 1, 1: 2}) == (IN_FLIGHT, 1)


def test_set_moving_elsewhere_is_an_error():
    with pytest.raises(SlonyError) as err:
        set_position(1, 2, {2: 1, 1: 3})
    assert "in the middle of another move" in str(err.value)


def test_origin_without_admin_conninfo_is_named():
    with pytest.raises(SlonyError) as err:
        set_position(1, 2, {2: 4})
    assert "origin is node 4, which has no entry in admin_conninfo" in str(err.value)
    assert err.value.node == 4


def test_unknown_set_and_target_that_does_not_know_it():
    with pytest.raises(SlonyError) as err:
        set_position(7, 2, {2: None, 1: None})
    assert "set 7 does not exist on any node" in str(err.value)
    # The target does not know the set yet: the first node that does is believed.
    assert set_position(1, 2, {2: None, 1: 1}) == (MOVE, 1)


# -- preflight -------------------------------------------------------------------------

def test_healthy_cluster_has_no_problem():
    assert problems() == []


def test_stopped_slon_is_named():
    found = problems(healthy({3: snapshot(3, slon=False)}), slon_grace=15)
    assert found == ["the slon daemon of node 3 is not running (no live sl_nodelock entry on "
                     "node 3 for 15s); every node's slon must process MOVE_SET"]


def test_unreadable_node_and_node_without_admin_conninfo():
    found = problems(healthy({3: "cannot connect to node 3"}))
    assert found == ["node 3 cannot be checked: cannot connect to node 3"]
    snaps = healthy()
    del snaps[3]
    assert problems(snaps, admin=(1, 2))[0].startswith(
        "node 3 has no entry in admin_conninfo, so whether its slon runs cannot be checked")


def test_inactive_nodes_need_no_slon():
    nodes = NODES[:2] + (Node(3, False, "failed", True),)
    snaps = healthy({1: snapshot(1, nodes=nodes, status=healthy()[1].status)})
    del snaps[3]
    assert problems(snaps, admin=(1, 2)) == []


def test_target_not_a_subscriber():
    subs = ((1, 1, 3, True, True),)
    snaps = healthy({
        1: snapshot(1, subs=subs, status=healthy()[1].status),
        2: snapshot(2, subs=subs)})
    assert problems(snaps) == ["node 2 does not subscribe to set 1; only a subscriber of a set "
                               "can become its origin"]


def test_target_without_forward_or_unfinished_copy():
    subs = ((1, 1, 2, False, True), (1, 1, 3, True, True))
    snaps = healthy({
        1: snapshot(1, subs=subs, status=healthy()[1].status),
        2: snapshot(2, subs=subs, setsyncs=[])})
    assert problems(snaps) == [
        "node 2 subscribes to set 1 without forward; subscribe it with forward: true first",
        "node 2 has not finished copying set 1 (its own catalog shows no active, synchronised "
        "subscription)"]


def test_subscription_in_progress():
    assert problems(in_progress={1: True}) == [
        "a subscription to set 1 is still in progress (node 1's isSubscriptionInProgress); wait "
        "until it has finished"]


def test_paths_both_ways_are_needed_and_pending_ones_do_not_count():
    paths = [p for p in MESH if (p.server, p.client) != (2, 1)]
    pending = [p if (p.server, p.client) != (1, 2) else Path(1, 2, "<event pending>", 10)
               for p in MESH]
    snaps = healthy({
        1: snapshot(1, paths=paths, status=healthy()[1].status),
        2: snapshot(2, paths=pending)})
    assert problems(snaps) == [
        "there is no path from node 2 to node 1 in node 1's catalog (server 2, client 1); store "
        "it with dany.slony.slony_path",
        "there is no path from node 1 to node 2 in node 2's catalog (server 1, client 2); store "
        "it with dany.slony.slony_path"]


def test_lag_thresholds_and_disabling_them():
    assert problems(max_lag_events=1) == ["node 2 is 2 events behind node 1 (max_lag_events = 1)"]
    assert problems(max_lag_seconds=1.0) == [
        "node 2 is 1.5 seconds behind node 1 (max_lag_seconds = 1.0)"]
    assert problems(max_lag_events=2, max_lag_seconds=1.5) == []
    no_status = healthy({1: snapshot(1)})
    assert problems(no_status) == ["node 1's sl_status has no row for node 2, so its lag is unknown"]
    assert problems(no_status, max_lag_events=None, max_lag_seconds=None) == []


def test_every_problem_is_reported_at_once():
    subs = ((1, 1, 3, True, True),)
    snaps = healthy({
        1: snapshot(1, subs=subs, status=healthy()[1].status),
        2: snapshot(2, subs=subs, slon=False), 3: snapshot(3, slon=False)})
    found = problems(snaps, set_ids=(1, 2), in_progress={2: True})
    assert len(found) == 5
    assert [f.split(" ")[:4] for f in found[:2]] == [["the", "slon", "daemon", "of"]] * 2
    message = refusal_message(1, 2, [SetMove(1, MOVE, 1, 2, None, None),
                                     SetMove(2, RESUME, 1, 2, 77, None)], found)
    assert message.startswith("switchover of sets 1, 2 from node 1 to node 2 refused, nothing "
                              "was changed: the slon daemon of node 2")
    # A set left locked by an interrupted run: the message says so and how to unlock it.
    assert "Set 2 is still locked by an interrupted switchover" in message
    assert "'unlock set (id = 2, origin = 1);'" in message


# -- plan ------------------------------------------------------------------------------

def test_plan_of_a_move():
    moves = [SetMove(1, MOVE, 1, 2, None, None)]
    plan, runner = build_plan(NS, moves, 120, [1, 2, 3])
    assert [(s.kind, s.node, s.function) for s in plan.steps] == [
        (CALLBACK, 1, "lockSet"), (CALLBACK, 1, None), (CALLBACK, 1, "moveSet"), (WAIT, 1, None)]
    assert plan.steps[0].args == (1,) and plan.steps[2].args == (1, 2)
    assert plan.slonik() == ["lock set (id = 1, origin = 1);",
                             "move set (id = 1, old origin = 1, new origin = 2);",
                             "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = 120);"]
    assert plan.changes() and runner.old == 1 and runner.to_node == 2


def test_plan_of_a_whole_node_locks_every_set_before_moving_any():
    moves = [SetMove(1, MOVE, 1, 2, None, None), SetMove(3, MOVE, 1, 2, None, None)]
    plan, dummy = build_plan(NS, moves, 60, [1, 2])
    assert [s.function for s in plan.steps] == ["lockSet", "lockSet", None, "moveSet", "moveSet",
                                                None]
    assert "sets were locked" in plan.steps[2].description


def test_plan_of_a_locked_set_reuses_the_lock():
    plan, runner = build_plan(NS, [SetMove(1, RESUME, 1, 2, 4711, None)], 60, [1, 2])
    assert [s.function for s in plan.steps] == [None, "moveSet", None]
    assert "reuse the lock an interrupted switchover left on set 1 (set_locked = 4711)" in \
        plan.steps[0].description
    assert runner.locks == {1: 4711}
    assert plan.slonik()[0] == "move set (id = 1, old origin = 1, new origin = 2);"


def test_done_and_in_flight_sets_only_wait():
    done_confirmed = SetMove(1, DONE, None, 2, None, None)
    assert len(build_plan(NS, [done_confirmed], 60, [1, 2])[0]) == 0
    done = SetMove(1, DONE, None, 2, None, Event(1, 5000000300, "MOVE_SET"))
    in_flight = SetMove(2, IN_FLIGHT, 1, 2, None, Event(1, 5000000301, "MOVE_SET"))
    plan, runner = build_plan(NS, [done, in_flight], 60, [1, 2])
    assert [s.kind for s in plan.steps] == [WAIT, WAIT] and runner is None
    assert not plan.changes()  # changed=false
    assert "MOVE_SET 5000000300 of node 1 (set 1 to node 2)" in plan.steps[0].description


def test_slonik_texts():
    assert slonik_lock(3, 1) == "lock set (id = 3, origin = 1);"
    assert slonik_move(3, 1, 2) == "move set (id = 3, old origin = 1, new origin = 2);"
    assert slonik_wait(1, 30) == \
        "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = 30);"


# -- run-time failure handling (scripted cluster) ------------------------------------------

class XminCluster:
    """Answers the txid_snapshot_xmin poll with False and the slon probe with "running"."""

    ns = NS
    namespace = "_shop"

    def __init__(self):
        self.queries = []
        self.polls = 0

    def has_node(self, node):
        return True

    def fetch(self, node, query, params=None, check_identity=True):
        if "sl_nodelock" in repr(query):
            return [(True,)]
        self.polls += 1
        return [(False,)]


def test_transaction_wait_timeout_unlocks_and_says_so(monkeypatch):
    unlocked = []
    monkeypatch.setattr(setmove, "submit_event",
                        lambda cluster, node, query, params=None, **kw: unlocked.append(
                            (node, params)) or [])
    monkeypatch.setattr(setmove, "old_transactions",
                        lambda cluster, node, xmax: ["pid 42 (database shop, user app, "
                                                     "application 'psql', open for 30s)"])
    clock = FakeClock()
    runner = Switchover(NS, 1, 2, [SetMove(1, RESUME, 1, 2, 900, None)], 3)
    cluster = XminCluster()
    with pytest.raises(SlonyError) as err:
        runner.wait_transactions(cluster, clock)
    message = str(err.value)
    assert message.startswith(
        "timed out after 3s waiting for the transactions that were running when set 1 was "
        "locked on node 1 to end; behind: node 1 (transactions older than txid 900 still "
        "running: pid 42 (database shop, user app, application 'psql', open for 30s); slon "
        "running); long transactions in any database of node 1's PostgreSQL instance delay "
        "the move")
    assert "set 1 unlocked again on node 1 (writes accepted there again), not moved" in message
    assert unlocked == [(1, (1,))]
    assert runner.locks == {}
    assert clock.waited == pytest.approx(3)  # the timeout, through the waiter's polls
    assert cluster.polls >= 3 / POLL_INTERVAL


def test_failed_move_unlocks_the_sets_not_moved(monkeypatch):
    calls = []

    def submit(cluster, node, query, params=None, **kw):
        calls.append(params)
        if params == (2, 2):
            raise SlonyError("node 1: moveSet failed: boom", node=1)
        if len(params) == 2:
            return [Event(1, 10 + params[0], "SYNC"), Event(1, 11 + params[0], "MOVE_SET")]
        return []

    monkeypatch.setattr(setmove, "submit_event", submit)
    runner = Switchover(NS, 1, 2, [SetMove(1, RESUME, 1, 2, 5, None),
                                   SetMove(2, RESUME, 1, 2, 5, None)], 3)
    cluster = XminCluster()
    runner.move(cluster, 1, FakeClock())
    with pytest.raises(SlonyError) as err:
        runner.move(cluster, 2, FakeClock())
    assert calls == [(1, 2), (2, 2), (2,)]  # set 2 unlocked, set 1 (moved) left alone
    assert str(err.value) == ("node 1: moveSet failed: boom; set 1 had already been moved to "
                              "node 2; set 2 unlocked again on node 1 (writes accepted there "
                              "again), not moved")
    assert runner.moved == {1: Event(1, 12, "MOVE_SET")}


# -- sync ------------------------------------------------------------------------------------

def test_confirmers_default_ignore_self_and_refuse_strangers():
    known = {n.id: n for n in NODES + (Node(4, False, "gone", True),)}
    assert normalize_confirmers(1, None, known) is None
    assert normalize_confirmers(1, [3, 1, "2"], known) == [2, 3]
    with pytest.raises(SlonyError) as err:
        normalize_confirmers(1, [4, 9, 8], known)
    assert str(err.value) == ("confirmers: nodes 8, 9 are not nodes of the cluster (node 1 does "
                              "not know them); node 4 is not active and would never confirm")
    with pytest.raises(SlonyError):
        normalize_confirmers(1, [0], known)


def test_sync_plan_and_slonik():
    assert slonik_sync(1, None, 30) == [
        "sync (id = 1);",
        "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = 30);"]
    assert slonik_sync(1, [2, 3], 30)[1:] == [
        "wait for event (origin = 1, confirmed = 2, wait on = 1, timeout = 30);",
        "wait for event (origin = 1, confirmed = 3, wait on = 1, timeout = 30);"]
    run = SyncRun(NS, "_shop", 1, [3], 30)
    steps = run.steps()
    assert [(s.kind, s.node, s.function, s.args) for s in steps] == [
        (CALLBACK, 1, "createEvent", ("_shop", "SYNC")), (WAIT, 1, None, ())]
    assert steps[1].description == "wait until node 3 confirmed the SYNC of node 1"
    assert run.report == {"event": None, "confirmed_by": None}


def test_sync_uses_only_the_event_lock(monkeypatch):
    from ansible_collections.dany.slony.plugins.module_utils import sync as sync_mod
    seen = {}

    def submit(cluster, node, query, params=None, locks=None):
        seen.update(node=node, params=params, locks=locks)
        return [Event(1, 5000000500, "SYNC")]

    monkeypatch.setattr(sync_mod, "submit_event", submit)
    run = SyncRun(NS, "_shop", 1, None, 30)
    assert run.create(None, None, None) == [Event(1, 5000000500, "SYNC")]
    assert seen == {"node": 1, "params": ("_shop", "SYNC"), "locks": ("sl_event_lock",)}
    assert run.report["event"] == {"origin": 1, "seqno": 5000000500, "type": "SYNC"}
