# -*- coding: utf-8 -*-
"""plan_subscriptions: several receivers of one set in one plan, without a database."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import subscriptions as subs
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Path, Set, Snapshot, Subscription)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import EVENT, WAIT, RunContext
from fakes import FakeClock
from scripted import ScriptedCluster

NODES = (1, 2, 3, 4)


class FakeCluster:
    name = "shop"
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def __init__(self, uninitialized=()):
        self.uninitialized = set(uninitialized)
        self.node_reads = 0

    def nodes(self):
        return list(NODES)

    def initialized_nodes(self):
        self.node_reads += 1
        return list(NODES)

    def require_node(self, node, what=None):
        if node not in NODES:
            raise SlonyError("node %d has no admin_conninfo" % node)

    def require_initialized(self, node):
        if node in self.uninitialized:
            raise SlonyError("node %d (host=n%d) is not a node of Slony cluster shop" % (
                node, node))


def snapshot(node, subscriptions=()):
    paths = [Path(s, c, "host=n%d" % s, 10) for s in NODES for c in NODES if s != c]
    return Snapshot(node, node, nodes=[Node(n, True, "n%d" % n, False) for n in NODES],
                    paths=paths, sets=[Set(1, 1, None, "set 1")], subscriptions=subscriptions)


@pytest.fixture
def catalog(monkeypatch):
    """The origin's catalog; every node sees the same one."""
    state = {"subscriptions": []}
    monkeypatch.setattr(subs, "read_snapshot",
                        lambda cluster, node: snapshot(node, state["subscriptions"]))
    monkeypatch.setattr(subs, "find_set_origin",
                        lambda cluster, set_id: (1, snapshot(1, state["subscriptions"])))
    monkeypatch.setattr(subs, "subscription_complete", lambda *args: True)
    return state


def calls(plan):
    return [(s.function, s.args) for s in plan.steps if s.kind == EVENT]


def test_every_subscription_is_submitted_before_any_completion_wait(catalog):
    plan, before, after, dummy_extra = subs.plan_subscriptions(
        FakeCluster(), 1, [{"receiver": 2}, {"receiver": 3}, {"receiver": 4}])
    assert calls(plan) == [("subscribeSet", (1, 1, r, True, False)) for r in (2, 3, 4)]
    kinds = [s.kind for s in plan.steps]
    last_event = max(i for i, k in enumerate(kinds) if k == EVENT)
    tail = plan.steps[last_event + 1:]
    assert [s.description for s in tail] == [
        "wait until node %d has copied set 1 from node 1" % r for r in (2, 3, 4)]
    assert all(s.kind == WAIT and not s.required for s in tail)
    # Before each subscription: the "config caught up" preconditions, which always run.
    head = plan.steps[:last_event]
    assert [s for s in head if s.kind == WAIT] and all(s.required for s in head
                                                       if s.kind == WAIT)
    assert [v["receiver"] for v in before] == [2, 3, 4]
    assert all(v["state"] == "absent" for v in before)
    assert [(v["receiver"], v["provider"]) for v in after] == [(2, 1), (3, 1), (4, 1)]


def test_a_provider_subscribed_in_the_same_call_feeds_the_next_one(catalog):
    # Listed leaf first: the plan still subscribes the provider first.
    plan, before, after, dummy_extra = subs.plan_subscriptions(
        FakeCluster(), 1, [{"receiver": 3, "provider": 2}, {"receiver": 2}])
    assert calls(plan) == [("subscribeSet", (1, 1, 2, True, False)),
                           ("subscribeSet", (1, 2, 3, True, False))]
    # Node 3 can only copy from node 2 once node 2 has the data: a precondition.
    cascade = [s for s in plan.steps if s.description.startswith(
        "wait until node 2 has copied set 1")]
    assert cascade[0].required
    assert [v["receiver"] for v in after] == [3, 2]


def test_a_provider_that_does_not_forward_is_refused(catalog):
    with pytest.raises(SlonyError) as info:
        subs.plan_subscriptions(FakeCluster(), 1, [{"receiver": 2, "forward": False},
                                                   {"receiver": 3, "provider": 2}])
    assert "provider node 2 does not forward set 1" in str(info.value)


def test_unsubscribing_a_provider_with_its_receivers_goes_leaf_first(catalog):
    catalog["subscriptions"] = [Subscription(1, 1, 2, True, True),
                                Subscription(1, 2, 3, True, True)]
    plan, before, after, dummy_extra = subs.plan_subscriptions(
        FakeCluster(), 1, [{"receiver": 2}, {"receiver": 3, "provider": 2}], state="absent")
    assert calls(plan) == [("unsubscribeSet", (1, 3, False)), ("unsubscribeSet", (1, 2, False))]
    assert [v["state"] for v in after] == ["absent", "absent"]
    # Node 2 refuses to leave while it still sees node 3 fed by it: that wait always runs.
    first_wait, last_wait = [s for s in plan.steps if s.kind == WAIT]
    assert first_wait.node == 3 and first_wait.required
    assert last_wait.node == 2 and not last_wait.required
    assert plan.steps.index(first_wait) < plan.steps.index(
        [s for s in plan.steps if s.kind == EVENT][1])


def test_unsubscribing_a_provider_alone_is_still_refused(catalog):
    catalog["subscriptions"] = [Subscription(1, 1, 2, True, True),
                                Subscription(1, 2, 3, True, True)]
    with pytest.raises(SlonyError) as info:
        subs.plan_subscriptions(FakeCluster(), 1, [{"receiver": 2}], state="absent")
    assert "node 2 is the provider of set 1 for node(s) 3" in str(info.value)


def test_converged_receivers_plan_only_the_completion_waits(catalog):
    catalog["subscriptions"] = [Subscription(1, 1, 2, True, True),
                                Subscription(1, 1, 3, True, True)]
    plan, before, after, dummy_extra = subs.plan_subscriptions(FakeCluster(), 1,
                                                               [{"receiver": 2}, {"receiver": 3}])
    assert not plan.changes()
    assert [s.kind for s in plan.steps] == [WAIT, WAIT]
    assert before == after


@pytest.mark.parametrize("entries, message", [
    ([], "give at least one receiver"),
    ([{"receiver": 2}, {"receiver": 2}], "receivers[1]: node 2 is listed twice"),
    ([{"provider": 1}], "receivers[0]: receiver is required"),
])
def test_bad_lists(catalog, entries, message):
    with pytest.raises(SlonyError) as info:
        subs.plan_subscriptions(FakeCluster(), 1, entries)
    assert message in str(info.value)


# -- reading, then deciding ------------------------------------------------------------------

def test_converged_receivers_read_no_node_list_and_submit_nothing(catalog):
    catalog["subscriptions"] = [Subscription(1, 1, 2, True, True)]
    cluster = FakeCluster()
    facts = subs.read_subscriptions(cluster, 1, [
        {"receiver": 2, "provider": 1, "forward": True, "omit_copy": False}])
    assert cluster.node_reads == 0 and facts.nodes == []
    assert facts.receivers[2].complete is True and (1, 2) in facts.receivers[2].paths
    # A forward change submits an event: then the "config caught up" waits need the nodes.
    facts = subs.read_subscriptions(cluster, 1, [
        {"receiver": 2, "provider": 1, "forward": False, "omit_copy": False}])
    assert cluster.node_reads == 1 and facts.nodes == list(NODES)
    plan = subs.decide_subscription(cluster.ns, "shop", 1, {
        "receiver": 2, "provider": 1, "forward": False, "omit_copy": False}, facts).plan
    assert calls(plan) == [("subscribeSet", (1, 1, 2, False, False))]


def test_a_receiver_that_cannot_be_read_fails_where_the_check_comes(catalog):
    # Node 3 is not initialised, but node 2's entry, decided first, is wrong: its error
    # wins, as when the reads were made while deciding.
    catalog["subscriptions"] = [Subscription(1, 4, 2, True, True),
                                Subscription(1, 1, 4, True, True)]
    cluster = FakeCluster(uninitialized=[3])
    with pytest.raises(SlonyError, match="changing the provider and forward at once"):
        subs.plan_subscriptions(cluster, 1, [{"receiver": 2, "forward": False},
                                             {"receiver": 3}])
    with pytest.raises(SlonyError, match="node 3 .* is not a node of Slony cluster shop"):
        subs.plan_subscriptions(cluster, 1, [{"receiver": 3}, {"receiver": 4}])
    with pytest.raises(SlonyError, match="node 1 is the origin of set 1"):
        subs.plan_subscription(cluster, 1, 1)
    with pytest.raises(SlonyError, match="node 9 has no admin_conninfo"):
        subs.plan_subscription(cluster, 1, 9)


def test_unsubscribing_reads_no_receiver_catalog(catalog, monkeypatch):
    catalog["subscriptions"] = [Subscription(1, 1, 2, True, True)]
    monkeypatch.setattr(subs, "read_snapshot", lambda cluster, node: pytest.fail("read"))
    monkeypatch.setattr(subs, "subscription_complete", lambda *args: pytest.fail("read"))
    plan = subs.plan_subscription(FakeCluster(), 1, 2, state="absent").plan
    assert calls(plan) == [("unsubscribeSet", (1, 2, False))]


# -- the copy wait, with a fake clock -------------------------------------------------------

def copy_cluster(rows, slon=None, copy_xmax=None, blockers=()):
    """The receiver's sl_subscribe / sl_setsync: ``rows`` per poll, the last repeats; on
    the provider, the ENABLE_SUBSCRIPTION's xmax (None: the provider is not the origin)
    and the backends of ``pg_stat_activity`` older than it."""
    rows = list(rows)
    return ScriptedCluster([
        ("sl_setsync", lambda node, params: list(rows[0] if len(rows) == 1 else rows.pop(0))),
        ("ENABLE_SUBSCRIPTION", lambda node, params: [] if copy_xmax is None else [(copy_xmax,)]),
        ("pg_stat_activity", lambda node, params: list(blockers)),
    ], slon=slon)


def test_wait_subscription_honours_the_timeout_and_names_both_slons():
    cluster, clock = copy_cluster([[(2, False, False)]], slon={2: False, 3: True}), FakeClock()
    with pytest.raises(SlonyError) as info:
        subs.wait_subscription(cluster, 1, 3, 2, 9, clock=clock)
    assert clock.waited == pytest.approx(9)
    assert str(info.value) == (
        "timed out after 9s waiting for node 3 to finish subscribing to set 1 from node 2; "
        "behind: node 3 (copy of set 1 from node 2 not finished; slon running); the slon of "
        "provider node 2 is not running; the receiver's slon log says why the copy does not "
        "finish")
    assert info.value.node == 3


def test_a_copy_held_by_old_transactions_on_the_origin_names_them_on_timeout():
    cluster = copy_cluster([[(1, True, False)]], copy_xmax=1234, blockers=[
        (4711, "app", "batch", "nightly", 600), (4712, "other_db", "dba", "psql", 30)])
    with pytest.raises(SlonyError) as info:
        subs.wait_subscription(cluster, 1, 3, 1, 9, clock=FakeClock())
    assert str(info.value) == (
        "timed out after 9s waiting for node 3 to finish subscribing to set 1 from node 1; "
        "behind: node 3 (copy of set 1 from node 1 not finished; slon running); the slon of "
        "provider node 1 is running; slon copies only once the transactions on the origin "
        "(node 1) that are older than the subscription have ended, and these still run: "
        "pid 4711 (database app, user batch, application 'nightly', open for 600s); "
        "pid 4712 (database other_db, user dba, application 'psql', open for 30s); the "
        "receiver's slon log says why the copy does not finish")
    # Read on the provider: its ENABLE_SUBSCRIPTION for (set 1, receiver 3), then the
    # transactions below that event's xmax.
    event = [f for f in cluster.fetches if "ENABLE_SUBSCRIPTION" in f[1]]
    assert [(f[0], f[2]) for f in event] == [(1, (1, 1, "1", "3"))]
    assert [(f[0], f[2]) for f in cluster.fetches if "txid_snapshot_xip" in f[1]] == [(1, (1234,))]


def test_the_completion_step_waits_with_the_run_timeout_until_the_copy_is_there():
    step = subs.completion_wait(1, 3, 2)
    assert step.kind == WAIT and not step.required and step.node == 3
    # No row yet, then a row from another provider, then active without setsync, then done.
    cluster = copy_cluster([[], [(1, True, True)], [(2, True, False)], [(2, True, True)]])
    clock = FakeClock()
    step.run(cluster, step, RunContext(timeout=9, clock=clock))
    assert cluster.count("sl_setsync") == 4 and len(clock.sleeps) == 3
    assert cluster.fetches[0][0] == 3 and cluster.fetches[0][2] == (1, 3)
    with pytest.raises(SlonyError, match="^timed out after 0s waiting for node 3 "):
        step.run(copy_cluster([[]]), step, RunContext(timeout=0, clock=clock))
