# -*- coding: utf-8 -*-
"""plan_nodes_present: several nodes in one plan, without a database."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from fake_conn import FakeConnection
from fakes import FakeClock

from ansible_collections.dany.slony.plugins.module_utils import nodes as nodes_mod
from ansible_collections.dany.slony.plugins.module_utils.catalog import Node, Snapshot
from ansible_collections.dany.slony.plugins.module_utils.cluster import (
    NODE_INITIALIZED, NODE_NO_SCHEMA)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import (
    CALLBACK, EVENT, INIT_NODE, RunContext)


class FakeCluster:
    name = "shop"
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def __init__(self, states):
        self.states = states

    def nodes(self):
        return sorted(self.states)

    def require_node(self, node, what=None):
        if node not in self.states:
            raise SlonyError("node %d has no admin_conninfo" % node)

    def require_initialized(self, node):
        if self.states[node][0] != NODE_INITIALIZED:
            raise SlonyError("node %d is not a node of cluster shop" % node)


@pytest.fixture
def fake(monkeypatch):
    def make(states, known=()):
        cluster = FakeCluster(states)
        monkeypatch.setattr(nodes_mod, "probe_states",
                            lambda c, nodes, tolerate_unreachable=True: dict(
                                (n, c.states[n]) for n in nodes))
        monkeypatch.setattr(nodes_mod, "read_snapshot", lambda c, node: Snapshot(
            node, node, nodes=[Node(n, True, "Node %d" % n, False) for n in known]))
        return cluster
    return make


def steps(plan):
    return [(s.kind, s.node, s.function, s.args) for s in plan.steps]


def test_a_new_cluster_is_initialised_by_the_lowest_id_and_the_others_stored_through_it(fake):
    cluster = fake({n: (NODE_NO_SCHEMA, None) for n in (1, 2, 3)})
    plan, before, after, dummy_extra = nodes_mod.plan_nodes_present(
        cluster, [{"id": 3}, {"id": 1, "comment": "origin"}, {"id": 2}])
    assert steps(plan) == [
        (INIT_NODE, 1, "initializeLocalNode", (1, "origin")),
        (CALLBACK, 2, "initializeLocalNode", (2, "Node 2", 1)),
        (EVENT, 1, "storeNode", (2, "Node 2")),
        (CALLBACK, 3, "initializeLocalNode", (3, "Node 3", 1)),
        (EVENT, 1, "storeNode", (3, "Node 3")),
    ]
    assert [v["id"] for v in before] == [3, 1, 2]
    assert all(v["state"] == "absent" for v in before)
    assert [(v["id"], v["comment"]) for v in after] == [(3, "Node 3"), (1, "origin"), (2, "Node 2")]


def test_an_existing_cluster_gets_only_the_missing_node(fake):
    cluster = fake({1: (NODE_INITIALIZED, 1), 2: (NODE_INITIALIZED, 2),
                    3: (NODE_NO_SCHEMA, None)}, known=(1, 2))
    plan, before, after, dummy_extra = nodes_mod.plan_nodes_present(cluster, [{"id": 1}, {"id": 2},
                                                                              {"id": 3}])
    kinds = [(s.kind, s.node, s.function) for s in plan.steps]
    # Node 2's last configuration event must be seen by node 1 first (always runs).
    assert kinds[0][0] == "wait" and plan.steps[0].required
    assert kinds[1:] == [(CALLBACK, 3, "initializeLocalNode"), (EVENT, 1, "storeNode")]
    assert [v["state"] for v in before] == ["present", "present", "absent"]


@pytest.mark.parametrize("entries, message", [
    ([], "give at least one node"),
    ([{"id": 1}, {"id": 1}], "nodes[1]: node 1 is listed twice"),
    ([{"comment": "x"}], "nodes[0]: id is required"),
])
def test_bad_lists(fake, entries, message):
    cluster = fake({1: (NODE_NO_SCHEMA, None)})
    with pytest.raises(SlonyError) as info:
        nodes_mod.plan_nodes_present(cluster, entries)
    assert message in str(info.value)


def test_existing_nodes_listed_after_a_new_lower_id_are_left_alone(fake):
    # Nodes 2 and 3 form the cluster; node 1 is new. Node 1 is stored through node 2;
    # nodes 2 and 3 are then judged on the catalog node 1 will have (a copy of node
    # 2's), not on an empty one: their schemas are not dropped and re-created.
    cluster = fake({1: (NODE_NO_SCHEMA, None), 2: (NODE_INITIALIZED, 2),
                    3: (NODE_INITIALIZED, 3)}, known=(2, 3))
    plan, before, after, dummy_extra = nodes_mod.plan_nodes_present(cluster, [{"id": 1}, {"id": 2},
                                                                              {"id": 3}])
    assert [(s.kind, s.node, s.function) for s in plan.steps] == [
        ("wait", 3, None), (CALLBACK, 1, "initializeLocalNode"), (EVENT, 2, "storeNode")]
    assert [v["state"] for v in before] == ["absent", "present", "present"]
    assert [v["comment"] for v in after] == ["Node 1", "Node 2", "Node 3"]


def test_the_nodes_are_read_once_then_decided_without_a_database(fake, monkeypatch):
    cluster = fake({1: (NODE_INITIALIZED, 1), 2: (NODE_INITIALIZED, 2),
                    3: (NODE_NO_SCHEMA, None)}, known=(1, 2))
    reads = []
    real = nodes_mod.read_snapshot
    monkeypatch.setattr(nodes_mod, "read_snapshot",
                        lambda c, node: reads.append(node) or real(c, node))
    read = nodes_mod.read_nodes(cluster, [1, 2, 3])
    # Node 1 is the event node of nodes 2 and 3; node 2 the one of node 1.
    assert sorted(reads) == [1, 2] and sorted(read.snapshots) == [1, 2]
    # Deciding needs nothing but what was read.
    decided = nodes_mod.decide_nodes_present(read, [{"id": 1}, {"id": 2}, {"id": 3}])
    assert [(s.kind, s.node, s.function) for s in decided.plan.steps][-2:] == [
        (CALLBACK, 3, "initializeLocalNode"), (EVENT, 1, "storeNode")]
    absent = nodes_mod.decide_node_absent(read, 2)
    assert [(s.kind, s.node, s.function) for s in absent.plan.steps] == [
        ("wait", 2, None), (EVENT, 1, "dropNode"), (CALLBACK, 2, "uninstallNode")]
    assert sorted(reads) == [1, 2]


def test_an_unusable_event_node_is_reported_when_it_comes_to_choosing(fake):
    cluster = fake({1: (NODE_NO_SCHEMA, None), 2: (NODE_NO_SCHEMA, None)})
    with pytest.raises(SlonyError) as info:
        nodes_mod.plan_node_present(cluster, 1, event_node=1)
    assert "event_node must differ" in str(info.value)
    with pytest.raises(SlonyError) as info:
        nodes_mod.plan_node_present(cluster, 1, event_node=2)
    assert "node 2 is not a node of cluster shop" in str(info.value)


# -- UNINSTALL NODE racing the node's own slon ------------------------------------------

class RaceError(psycopg2.OperationalError):
    pgcode = "55P03"


class DeniedError(psycopg2.OperationalError):
    pgcode = "42501"


class UninstallCluster:
    """A node whose schema goes away after ``races`` lost races (None: never)."""

    ns = sql.Identifier("_shop")
    queries = []

    def __init__(self, races=None, error=RaceError):
        self.races = races
        self.error_type = error
        self.attempts = 0
        self.logged = []

    def discard(self, node):
        pass

    def state(self, node):
        if self.races is not None and self.attempts >= self.races:
            return (NODE_NO_SCHEMA, None)
        return (NODE_INITIALIZED, node)

    def connection(self, node, check_identity=True):
        def on_execute(query, params):
            if not str(query).startswith("set local"):
                self.attempts += 1
                raise self.error_type("could not obtain lock")
        return FakeConnection(on_execute)

    def has_node(self, node):
        return False

    def error(self, node, exc, doing=None):
        return SlonyError("node %d: %s failed: %s" % (node, doing, exc), node=node)

    def log(self, node, text):
        self.logged.append(text)


def uninstall(cluster, timeout, clock):
    step = nodes_mod._uninstall_step(sql.Identifier("_shop"), 2, "uninstall node 2")
    return step.run(cluster, step, RunContext(timeout=timeout, clock=clock))


def test_uninstall_retries_a_lost_race_for_at_most_wait_timeout():
    clock = FakeClock()
    cluster = UninstallCluster()
    with pytest.raises(SlonyError) as info:
        uninstall(cluster, 7, clock)
    assert clock.waited == pytest.approx(7) and all(s <= 1.0 for s in clock.sleeps)
    assert cluster.attempts == 8  # at 0, 1, ..., 7 seconds
    assert str(info.value).startswith("timed out after 7s waiting for node 2 to be uninstalled")
    assert "behind: node 2 (node 2: UNINSTALL NODE failed: could not obtain lock" \
        in str(info.value)
    assert info.value.node == 2


def test_uninstall_looks_again_and_finds_the_slon_did_it():
    clock = FakeClock()
    assert uninstall(UninstallCluster(races=2), 300, clock) == []
    assert clock.waited == pytest.approx(2)


def test_uninstall_fails_at_once_on_other_errors():
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        uninstall(UninstallCluster(error=DeniedError), 300, clock)
    assert clock.sleeps == []
    assert str(info.value) == "node 2: UNINSTALL NODE failed: could not obtain lock"


# -- several nodes absent ---------------------------------------------------------

def _cascade_read(states=None, subscriptions=None):
    """Nodes 1..5, set 1 on node 1: 1 -> 2, 1 -> 3, 3 -> 4, 4 -> 5 (nodes 1 and 2 read)."""
    from ansible_collections.dany.slony.plugins.module_utils.catalog import Set, Subscription
    states = states or dict((n, (NODE_INITIALIZED, n)) for n in range(1, 6))
    subs = subscriptions or [(2, 1), (3, 1), (4, 3), (5, 4)]
    snap = Snapshot(1, 1, nodes=[Node(n, True, "Node %d" % n, False) for n in range(1, 6)],
                    sets=[Set(1, 1, None, "app")],
                    subscriptions=[Subscription(1, p, r, True, True) for r, p in subs])
    return nodes_mod.NodesRead(nodes_mod.Names("shop", "_shop", sql.Identifier("_shop")),
                               states, {1: snap, 2: snap}, None)


def test_a_chain_of_nodes_leaves_in_one_drop_node_event():
    decided = nodes_mod.decide_nodes_absent(_cascade_read(), [5, 4])
    kinds = [(s.kind, s.node, s.function, s.args) for s in decided.plan.steps]
    assert kinds == [
        ("wait", 5, None, ()), ("wait", 4, None, ()),
        (EVENT, 1, "dropNode", ([5, 4],)),
        ("wait", 1, None, ()),
        (CALLBACK, 5, "uninstallNode", (5,)), (CALLBACK, 4, "uninstallNode", (4,)),
    ]
    # The survivors that must see the drop: 2 and 3 (1 is the event node).
    assert decided.plan.steps[3].confirmers == [2, 3]
    assert decided.plan.steps[2].slonik == "drop node (id = '5,4', event node = 1);"
    assert [v["state"] for v in decided.before] == ["present", "present"]
    assert decided.after == [{"id": 5, "state": "absent"}, {"id": 4, "state": "absent"}]


def test_the_slons_that_restart_after_drop_node_are_noted_before_and_waited_for_after():
    woken = []
    decided = nodes_mod.decide_nodes_absent(_cascade_read(), [5, 4], wake_nodes=[1, 3, 4, 9],
                                            slons_woken=woken)
    steps = decided.plan.steps
    kinds = [(s.kind, s.node, s.function) for s in steps]
    assert kinds == [
        ("wait", 5, None), ("wait", 4, None),
        ("wait", 1, None),                 # note the slons of nodes 1 and 3 (4 leaves)
        (EVENT, 1, "dropNode"),
        ("wait", 1, None),                 # the survivors dropped nodes 5 and 4
        ("wait", 1, None),                 # the slons of 1 and 3 registered anew
        (CALLBACK, 5, "uninstallNode"), (CALLBACK, 4, "uninstallNode"),
    ]
    assert "slons of node(s) 1, 3" in steps[2].description
    assert "restart after DROP NODE, run again" in steps[5].description
    assert decided.extra == {"slons_woken": woken}
    # Without slons to wake the plan is the plain one, with no extra result.
    plain = nodes_mod.decide_nodes_absent(_cascade_read(), [5, 4], wake_nodes=[4, 5])
    assert len(plain.plan.steps) == 6 and plain.extra == {}


def test_drop_restarts_wait_for_a_new_registration_of_each_noted_slon():
    from ansible_collections.dany.slony.plugins.module_utils.plan import RunContext

    class Cluster:
        ns = sql.Identifier("_shop")
        namespace = "_shop"

        def __init__(self):
            self.registered = iter([[], [(31,)], [(11,)]])

        def fetch(self, node, query, params=None):
            if "nl_backendpid <>" in repr(query):
                return next(self.registered)
            return [({1: 10, 3: 30}[node],)]

    restarts = nodes_mod.DropRestarts([3, 1])
    cluster = Cluster()
    clock = FakeClock()
    restarts.note(cluster, None, RunContext(timeout=30, clock=clock))
    assert restarts.backends == {1: 10, 3: 30}
    restarts.wait(cluster, None, RunContext(timeout=30, clock=clock))
    assert clock.waited > 0
    # A slon that never registers again: the wait ends at the timeout and names it.
    stuck = nodes_mod.DropRestarts([3])
    stuck.backends = {3: 30}

    class Never(Cluster):
        def fetch(self, node, query, params=None):
            text = repr(query)
            return [(False,)] if "select exists" in text else []

        def has_node(self, node):
            return True

    with pytest.raises(SlonyError) as info:
        stuck.wait(Never(), None, RunContext(timeout=5, clock=FakeClock()))
    assert "node 3" in str(info.value) and "backend 30" in str(info.value)


def test_every_problem_is_named_and_nothing_planned():
    with pytest.raises(SlonyError) as info:
        nodes_mod.decide_nodes_absent(_cascade_read(), [1, 3])
    message = str(info.value)
    assert "node 1 is the origin of set(s) 1" in message
    # Node 3 feeds node 4, which stays; node 1 feeds 2 (node 3 is dropped with it).
    assert "node 3 is still the data provider of node 4 for set 1" in message
    assert "node 1 is still the data provider of node 2 for set 1" in message
    with pytest.raises(SlonyError) as info:
        nodes_mod.decide_nodes_absent(_cascade_read(), [3])
    assert "node 3 is still the data provider of node 4 for set 1" in str(info.value)
    with pytest.raises(SlonyError) as info:
        nodes_mod.decide_nodes_absent(_cascade_read(), [4, 5], event_node=4)
    assert "event_node must differ from the node(s) being dropped (4 is dropped)" in str(info.value)
    with pytest.raises(SlonyError) as info:
        nodes_mod.decide_nodes_absent(_cascade_read(), [4, 4])
    assert "nodes[1]: node 4 is listed twice" in str(info.value)


def test_nodes_already_gone_are_skipped_and_unreachable_ones_not_uninstalled():
    from ansible_collections.dany.slony.plugins.module_utils.catalog import Set
    states = {1: (NODE_INITIALIZED, 1), 2: (NODE_INITIALIZED, 2), 3: (NODE_NO_SCHEMA, None),
              4: ("unreachable", "cannot connect")}
    snap = Snapshot(1, 1, nodes=[Node(n, True, "Node %d" % n, False) for n in (1, 2, 4)],
                    sets=[Set(1, 1, None, "app")])
    read = nodes_mod.NodesRead(nodes_mod.Names("shop", "_shop", sql.Identifier("_shop")),
                               states, {1: snap}, None)
    decided = nodes_mod.decide_nodes_absent(read, [3, 4])
    assert [(s.kind, s.node, s.function, s.args) for s in decided.plan.steps] == [
        (EVENT, 1, "dropNode", ([4],)), ("wait", 1, None, ())]
    assert decided.plan.steps[0].slonik == "drop node (id = 4, event node = 1);"
    assert [v["state"] for v in decided.before] == ["absent", "present"]
    # Once node 4 is gone too, nothing is left to do.
    snap.nodes.pop(4)
    assert nodes_mod.decide_nodes_absent(read, [3, 4]).plan.steps == []


def test_when_every_node_goes_each_is_uninstalled():
    states = {1: (NODE_INITIALIZED, 1), 2: (NODE_INITIALIZED, 2)}
    snap = Snapshot(1, 1, nodes=[Node(n, True, "Node %d" % n, False) for n in (1, 2)])
    read = nodes_mod.NodesRead(nodes_mod.Names("shop", "_shop", sql.Identifier("_shop")),
                               states, {1: snap}, None)
    decided = nodes_mod.decide_nodes_absent(read, [2, 1])
    assert [(s.kind, s.node, s.function) for s in decided.plan.steps] == [
        (CALLBACK, 2, "uninstallNode"), (CALLBACK, 1, "uninstallNode")]


def test_plan_nodes_absent_reads_one_node_that_stays(fake, monkeypatch):
    cluster = fake({n: (NODE_INITIALIZED, n) for n in (1, 2, 3)}, known=(1, 2, 3))
    reads = []
    real = nodes_mod.read_snapshot
    monkeypatch.setattr(nodes_mod, "read_snapshot",
                        lambda c, node: reads.append(node) or real(c, node))
    decided = nodes_mod.plan_nodes_absent(cluster, [1, 2])
    assert reads == [3]
    assert [(s.kind, s.node, s.function) for s in decided.plan.steps][2] == (EVENT, 3, "dropNode")


# -- REPAIR CONFIG ------------------------------------------------------------------

def test_repair_config_only_when_recorded_oids_are_stale():
    ns = sql.Identifier("_shop")
    assert nodes_mod.decide_repair(ns, 3, nodes_mod.RepairRead([], 1)) == []
    steps = nodes_mod.decide_repair(ns, 3, nodes_mod.RepairRead(["public.a", "public.s"], 2))
    assert [(s.kind, s.node, s.function, s.args) for s in steps] == [
        ("exec", 3, "updateReloid", (2, 3))]
    assert steps[0].slonik == "repair config (set id = 2, event node = 3, execute only on = 3);"
    assert "2 relation(s) recorded on node 3 (public.a, public.s)" in steps[0].description


def test_uninstall_looks_again_when_reading_the_state_races_the_slon():
    class StateRace(UninstallCluster):
        def state(self, node):
            self.attempts += 1
            if self.attempts == 1:
                raise SlonyError("node 2: cannot read the state of cluster shop: could not open "
                                 "relation with OID 17011", node=2, sqlstate="XX000")
            return (NODE_NO_SCHEMA, None)

    clock = FakeClock()
    cluster = StateRace()
    assert uninstall(cluster, 300, clock) == [] and cluster.attempts == 2
    assert clock.waited == pytest.approx(1)

    class Refused(UninstallCluster):
        def state(self, node):
            raise SlonyError("node 2: cannot read the state: permission denied", node=2,
                             sqlstate="42501")

    with pytest.raises(SlonyError, match="permission denied"):
        uninstall(Refused(), 300, FakeClock())


def test_a_node_without_admin_conninfo_is_dropped_but_not_uninstalled():
    # After a failover the dead origin (node 1) may have no admin_conninfo entry.
    states = {2: (NODE_INITIALIZED, 2), 3: (NODE_INITIALIZED, 3)}
    snap = Snapshot(2, 2, nodes=[Node(n, n != 1, "Node %d" % n, n == 1) for n in (1, 2, 3)])
    read = nodes_mod.NodesRead(nodes_mod.Names("shop", "_shop", sql.Identifier("_shop")),
                               states, {2: snap}, None)
    decided = nodes_mod.decide_node_absent(read, 1, event_node=2)
    assert [(s.kind, s.node, s.function) for s in decided.plan.steps] == [
        (EVENT, 2, "dropNode"), ("wait", 2, None)]
