"""converge.py: a whole description as ordered planner steps, run one after the other."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils import converge
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import (
    EVENT, INIT_NODE, WAIT, Plan, Planned, Step)


def labels(steps):
    return [(s.label, s.kind, s.set_id, s.wait) for s in steps]


# -- the description (pure) -------------------------------------------------------------------

def test_steps_follow_a_slonik_bring_up_nodes_paths_then_each_set_in_order():
    steps = converge.converge_steps(
        nodes=[{"id": 1}, {"id": 2}], paths=[{"server": 1, "client": 2, "conninfo": "x"}],
        sets=[{"id": 2, "origin": 1, "schemas": ["public"], "sequence_schemas": ["public"],
               "subscribers": [{"receiver": 2}]},
              {"id": 1, "origin": 2, "tables": ["a.b"]}])
    assert labels(steps) == [
        ("nodes", "nodes", None, False), ("paths", "paths", None, False),
        ("set 2", "set", 2, False), ("set 2 tables", "tables", 2, False),
        ("set 2 sequences", "sequences", 2, False),
        ("set 2 subscriptions", "subscriptions", 2, True),
        ("set 1", "set", 1, False), ("set 1 tables", "tables", 1, False)]


def test_a_set_without_members_or_subscribers_is_only_the_set():
    assert labels(converge.converge_steps(sets=[{"id": 3, "origin": 1}])) == [
        ("set 3", "set", 3, False)]


def test_subscribers_default_to_the_origin_as_provider_and_forwarding():
    [entry] = converge.normalize_sets([{"id": 1, "origin": 1, "subscribers": [
        {"receiver": "2"}, {"receiver": 3, "provider": 2, "forward": False, "omit_copy": True}]}])
    assert entry["subscribers"] == [
        {"receiver": 2, "provider": 1, "forward": True, "omit_copy": False},
        {"receiver": 3, "provider": 2, "forward": False, "omit_copy": True}]
    assert entry["exclusive"] is False


def test_every_problem_of_a_description_is_named_at_once():
    with pytest.raises(SlonyError) as info:
        converge.normalize_sets([
            {"id": 1, "origin": 1, "tabels": ["x"], "subscribers": [{"receiver": 1}]},
            {"id": 1, "origin": 2, "subscribers": [{"receiver": 3}, {"receiver": 3}, {"provider": 1}]},
            {"id": "x", "origin": 1},
            "set 4"])
    message = info.value.message
    for part in ("sets[0]: unknown keys tabels", "node 1 is the origin of set 1",
                 "sets[1]: set 1 is described twice", "receiver 3 is listed twice",
                 "sets[1].subscribers[2] must be a mapping with a receiver",
                 "sets[2].id must be an integer", "sets[3] must be a mapping"):
        assert part in message, message


def test_booleans_are_not_node_ids():
    with pytest.raises(SlonyError, match="sets\\[0\\].origin must be an integer"):
        converge.normalize_sets([{"id": 1, "origin": True}])


# -- running --------------------------------------------------------------------------------------

class FakeCluster:
    def __init__(self):
        self.queries = []
        self.executed = []


def event(node, text):
    return Step(EVENT, node, text, slonik=text + ";")


def fake_step(label, kind, set_id, plan, before=None, wait=False, seen=None):
    def planner(cluster):
        if seen is not None:
            seen.append(label)
        return Planned(plan, before, {"after": label})
    return converge.ConvergeStep(label, kind, set_id, planner, wait)


@pytest.fixture
def fake_execution(monkeypatch):
    def execute_plan(cluster, plan, wait_enabled=True, **kwargs):
        cluster.executed.append((plan, wait_enabled))
        cluster.queries.extend({"node": s.node, "sql": s.description} for s in plan.changes())
        return ["event of %s" % s.description for s in plan.changes()]
    monkeypatch.setattr(converge, "execute_plan", execute_plan)
    monkeypatch.setattr(converge, "render_step", lambda cluster, step: "sql " + step.description)


def test_each_step_is_planned_after_the_one_before_ran(fake_execution):
    cluster, seen = FakeCluster(), []
    steps = [fake_step("nodes", "nodes", None, Plan([event(1, "store node")]), seen=seen),
             fake_step("set 1", "set", 1, Plan(), seen=seen),
             fake_step("set 1 subscriptions", "subscriptions", 1,
                       Plan([event(1, "subscribe"), Step(WAIT, 2, "copy")]),
                       wait=True, seen=seen)]
    results = converge.run_steps(cluster, steps, wait=True)
    assert seen == ["nodes", "set 1", "set 1 subscriptions"]
    assert [(r.step.label, r.changed, r.not_planned) for r in results] == [
        ("nodes", True, None), ("set 1", False, None), ("set 1 subscriptions", True, None)]
    # Only the queries and events of each step are its own.
    assert results[0].queries == [{"node": 1, "sql": "store node"}]
    assert results[2].events == ["event of subscribe"]
    assert [w for dummy, w in cluster.executed] == [False, False, True]


def test_wait_false_turns_every_completion_wait_off(fake_execution):
    cluster = FakeCluster()
    converge.run_steps(cluster, [fake_step("s", "subscriptions", 1, Plan(), wait=True)], wait=False)
    assert cluster.executed[0][1] is False


def test_a_dry_run_stops_planning_after_nodes_it_would_create(fake_execution):
    cluster, seen = FakeCluster(), []
    init = Step(INIT_NODE, 1, "init cluster")
    steps = [fake_step("nodes", "nodes", None, Plan([init]), seen=seen),
             fake_step("paths", "paths", None, Plan([event(2, "store path")]), seen=seen),
             fake_step("set 1", "set", 1, Plan(), seen=seen)]
    results = converge.run_steps(cluster, steps, dry_run=True)
    assert seen == ["nodes"] and cluster.executed == []
    assert results[0].queries == [{"node": 1, "sql": "sql init cluster"}]
    assert [r.not_planned for r in results[1:]] == [
        "not planned: nodes would be created first (run without check mode)"] * 2


def test_a_dry_run_does_not_plan_the_members_of_a_set_it_would_create(fake_execution):
    cluster, seen = FakeCluster(), []
    steps = [fake_step("set 1", "set", 1, Plan([event(1, "store set")]),
                       before={"id": 1, "state": "absent"}, seen=seen),
             fake_step("set 1 tables", "tables", 1, Plan(), seen=seen),
             fake_step("set 2", "set", 2, Plan([event(1, "set comment")]),
                       before={"id": 2, "origin": 1}, seen=seen),
             fake_step("set 2 tables", "tables", 2, Plan(), seen=seen)]
    results = converge.run_steps(cluster, steps, dry_run=True)
    assert seen == ["set 1", "set 2", "set 2 tables"]
    assert results[1].not_planned.startswith("not planned: set 1 would be created first")
    assert results[1].planned is None and results[3].not_planned is None


def test_a_failing_step_stops_the_run_after_the_steps_before_it(fake_execution):
    cluster = FakeCluster()

    def broken(cluster):
        raise SlonyError("set 1 has origin node 2, not node 1")
    steps = [fake_step("nodes", "nodes", None, Plan([event(1, "store node")])),
             converge.ConvergeStep("set 1", "set", 1, broken, False),
             fake_step("set 2", "set", 2, Plan([event(1, "store set")]))]
    with pytest.raises(SlonyError, match="origin node 2"):
        converge.run_steps(cluster, steps)
    assert len(cluster.executed) == 1
