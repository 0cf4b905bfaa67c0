# -*- coding: utf-8 -*-
"""plan_subscriptions: several receivers of one set in one plan, without a database."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import subscriptions as subs
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Path, Set, Snapshot, Subscription)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import EVENT, WAIT

NODES = (1, 2, 3, 4)


class FakeCluster:
    name = "shop"
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def nodes(self):
        return list(NODES)

    def initialized_nodes(self):
        return list(NODES)

    def require_node(self, node, what=None):
        if node not in NODES:
            raise SlonyError("node %d has no admin_conninfo" % node)

    def require_initialized(self, node):
        return None


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
    plan, before, after, _ = subs.plan_subscriptions(
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
    plan, before, after, _ = subs.plan_subscriptions(
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
    plan, before, after, _ = subs.plan_subscriptions(
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
    plan, before, after, _ = subs.plan_subscriptions(FakeCluster(), 1,
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
