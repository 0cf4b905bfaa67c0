# -*- coding: utf-8 -*-
"""plan_nodes_present: several nodes in one plan, without a database."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import nodes as nodes_mod
from ansible_collections.dany.slony.plugins.module_utils.catalog import Node, Snapshot
from ansible_collections.dany.slony.plugins.module_utils.cluster import (
    NODE_INITIALIZED, NODE_NO_SCHEMA)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import CALLBACK, EVENT, INIT_NODE


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
    plan, before, after, _ = nodes_mod.plan_nodes_present(
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
    plan, before, after, _ = nodes_mod.plan_nodes_present(cluster, [{"id": 1}, {"id": 2},
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
