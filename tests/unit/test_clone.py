# -*- coding: utf-8 -*-
"""CLONE PREPARE / CLONE FINISH decided from plain data, and the finish runner."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from fake_conn import FakeConnection

from ansible_collections.dany.slony.plugins.module_utils import clone
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Set, SetSync, Snapshot, Subscription)
from ansible_collections.dany.slony.plugins.module_utils.cluster import (
    NODE_INITIALIZED, NODE_NO_SCHEMA, NODE_UNINITIALIZED)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.nodes import Names
from ansible_collections.dany.slony.plugins.module_utils.plan import (
    CALLBACK, EVENT, WAIT, RunContext)

NAMES = Names("shop", "_shop", sql.Identifier("_shop"))


def cluster_snapshot(node, clone_of=None, extra_subs=()):
    """Node 1 origin of set 1 and 2, 2 and 3 subscribe from 1; ``clone_of``: node 4
    is a prepared clone of that node."""
    nodes = [Node(n, True, "Node %d" % n, False) for n in (1, 2, 3)]
    subs = [Subscription(s, 1, r, True, True) for s in (1, 2) for r in (2, 3)]
    if clone_of is not None:
        nodes.append(Node(4, True, "clone", False))
        subs += [Subscription(s, 1, 4, True, True) for s in (1, 2)]
    subs += list(extra_subs)
    return Snapshot(node, node, nodes=nodes, sets=[Set(1, 1, None, "a"), Set(2, 1, None, "b")],
                    subscriptions=subs)


def states(four=("unreachable", "database does not exist")):
    out = dict((n, (NODE_INITIALIZED, n)) for n in (1, 2, 3))
    out[4] = four
    return out


def steps(plan):
    return [(s.kind, s.node, s.function, s.args, s.confirmers, s.required) for s in plan.steps]


def test_prepare_waits_for_the_configuration_then_clones_then_syncs_every_other_node():
    read = clone.PrepareRead(NAMES, states(), cluster_snapshot(2))
    plan, before, after, dummy = clone.decide_clone_prepare(read, 4, 2, "clone")
    assert steps(plan) == [
        (WAIT, 1, None, (), [2], True),
        (WAIT, 3, None, (), [2], True),
        (EVENT, 2, "cloneNodePrepare", (4, 2, "clone"), None, False),
        (EVENT, 2, "notify", ("_shop_Restart",), None, False),
        (WAIT, 2, None, (), [1, 3], False),
        (EVENT, 1, "createEvent", ("_shop", "SYNC"), None, False),
        (EVENT, 3, "createEvent", ("_shop", "SYNC"), None, False),
        (WAIT, 1, None, (), [2], False),
        (WAIT, 3, None, (), [2], False),
    ]
    # (None: the origin, node 2, whose sl_confirm holds every confirmation of its event.)
    assert [s.wait_on for s in plan.steps if s.kind == WAIT] == [2, 2, None, 2, 2]
    assert before == {"id": 4, "clone_of": 2, "phase": "absent"}
    assert after == {"id": 4, "clone_of": 2, "phase": "prepared", "comment": "clone",
                     "sets": [1, 2]}
    assert plan.slonik()[0] == "clone prepare (id = 4, provider = 2, comment = 'clone');"
    assert "sync (id = 1);" in plan.slonik()
    # The event and the restart of the provider's slon commit together.
    assert [s.batch for s in plan.steps if s.node == 2 and s.kind == EVENT] == ["clone", "clone"]
    assert plan.slonik()[1] == "restart node 2;"


def test_prepare_default_comment_is_slonik_s():
    read = clone.PrepareRead(NAMES, states(), cluster_snapshot(2))
    plan = clone.decide_clone_prepare(read, 4, 2).plan
    assert [s.args for s in plan.steps if s.function == "cloneNodePrepare"] == [(4, 2, "Node 4")]


def test_a_prepared_clone_is_not_prepared_again_only_the_completion_wait_remains():
    read = clone.PrepareRead(NAMES, states(), cluster_snapshot(2, clone_of=2))
    planned = clone.decide_clone_prepare(read, 4, 2, "other comment")
    assert not planned.plan.changes()
    assert steps(planned.plan) == [(WAIT, 2, None, (), [1, 3], False)]
    assert planned.before == planned.after
    assert planned.before["phase"] == "prepared" and planned.before["comment"] == "clone"


def test_a_restored_copy_and_a_finished_clone_count_as_prepared():
    snap = cluster_snapshot(2, clone_of=2)
    restored = clone.decide_clone_prepare(
        clone.PrepareRead(NAMES, states((NODE_INITIALIZED, 2)), snap), 4, 2)
    assert restored.before["phase"] == "restored" and not restored.plan.changes()
    finished = clone.decide_clone_prepare(
        clone.PrepareRead(NAMES, states((NODE_INITIALIZED, 4)), snap), 4, 2)
    assert finished.before["phase"] == "finished" and len(finished.plan) == 0


def test_an_existing_node_that_is_no_clone_is_refused():
    snap = cluster_snapshot(2, clone_of=2)
    snap.subscriptions.pop((2, 4))
    with pytest.raises(SlonyError) as err:
        clone.decide_clone_prepare(clone.PrepareRead(NAMES, states(), snap), 4, 2)
    assert "node 4 is already a node of the cluster, and not a clone of node 2" in err.value.message
    assert "set 1 from node 1" in err.value.message


@pytest.mark.parametrize("provider, node, message", [
    (1, 4, "node 1 is the origin of set(s) 1, 2: only a subscriber can be cloned"),
    (2, 2, "clone_from must be another node than the clone (both are 2)"),
    (5, 4, "node 5 cannot be cloned: it is not a node of the cluster"),
])
def test_what_cannot_be_cloned_is_refused(provider, node, message):
    with pytest.raises(SlonyError) as err:
        clone.decide_clone_prepare(clone.PrepareRead(NAMES, states(), cluster_snapshot(2)),
                                   node, provider)
    assert message in err.value.message


def test_a_node_without_subscriptions_or_a_failed_one_is_refused():
    snap = cluster_snapshot(2)
    for key in [k for k in snap.subscriptions if k[1] == 3]:
        snap.subscriptions.pop(key)
    with pytest.raises(SlonyError) as err:
        clone.decide_clone_prepare(clone.PrepareRead(NAMES, states(), snap), 4, 3)
    assert "node 3 subscribes to no set: there is nothing to clone" in err.value.message
    snap.nodes[2] = Node(2, False, "x", True)
    with pytest.raises(SlonyError) as err:
        clone.decide_clone_prepare(clone.PrepareRead(NAMES, states(), snap), 4, 2)
    assert "node 2 cannot be cloned: it is failed" in err.value.message


# -- finish ---------------------------------------------------------------------------

def copy_snapshot(local_id, clone_of=2, setsyncs=((1, 1, 50), (2, 1, 50))):
    snap = cluster_snapshot(local_id, clone_of=clone_of)
    snap.local_id = local_id
    snap.setsyncs = dict((s[0], SetSync(*s)) for s in setsyncs)
    return snap


def finish_read(state, snap, identity=("7", "app"), provider_identity=("8", "app")):
    return clone.FinishRead(NAMES, state, snap, identity, provider_identity)


def test_finish_runs_clonenodefinish_on_the_restored_copy():
    planned = clone.decide_clone_finish(finish_read((NODE_INITIALIZED, 2), copy_snapshot(2)), 4, 2)
    assert [(s.kind, s.node, s.function, s.args) for s in planned.plan.steps] == [
        (CALLBACK, 4, "cloneNodeFinish", (4, 2))]
    assert planned.plan.slonik() == ["clone finish (id = 4, provider = 2);"]
    assert planned.before == {"id": 4, "clone_of": 2, "phase": "restored", "sets": [1, 2],
                              "local_node_id": 2, "setsync": {"1": 50, "2": 50}}
    assert planned.after["phase"] == "finished" and planned.after["local_node_id"] == 4


def test_a_finished_clone_is_not_finished_again():
    planned = clone.decide_clone_finish(finish_read((NODE_INITIALIZED, 4), copy_snapshot(4)), 4, 2)
    assert len(planned.plan) == 0 and planned.before == planned.after
    assert planned.before["phase"] == "finished"


@pytest.mark.parametrize("state, snap, identity, message", [
    ((NODE_NO_SCHEMA, None), None, ("7", "app"),
     "the database of node 4 has no schema _shop: restore a dump of node 2's database"),
    ((NODE_UNINITIALIZED, None), None, ("7", "app"), "never initialised"),
    ((NODE_INITIALIZED, 3), "copy3", ("7", "app"), "is node 3 of the cluster, not a copy of node 2"),
    ((NODE_INITIALIZED, 2), "early", ("7", "app"), "taken before the CLONE PREPARE of node 4"),
    ((NODE_INITIALIZED, 2), "nosync", ("7", "app"), "no sl_setsync row for set(s) 2"),
    ((NODE_INITIALIZED, 4), "nosync4", ("7", "app"), "not a finished clone"),
    ((NODE_INITIALIZED, 2), "copy2", ("8", "app"), "reaches the database of node 2 itself"),
])
def test_finish_refuses_what_is_not_a_restored_copy(state, snap, identity, message):
    snaps = {"copy3": copy_snapshot(3), "early": cluster_snapshot(2), "copy2": copy_snapshot(2),
             "nosync": copy_snapshot(2, setsyncs=((1, 1, 5),)),
             "nosync4": copy_snapshot(4, setsyncs=((1, 1, 5),))}
    with pytest.raises(SlonyError) as err:
        clone.decide_clone_finish(finish_read(state, snaps.get(snap), identity), 4, 2)
    assert message in err.value.message


class FinishCluster:
    name = "shop"
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def __init__(self, conn):
        self.conn = conn
        self.identity_checks = []
        self.discarded = []
        self.logged = []

    def connection(self, node, check_identity=True):
        self.identity_checks.append(check_identity)
        return self.conn

    def render(self, node, query, params=None):
        return "select clonenodefinish%r" % (params,)

    def discard(self, node):
        self.discarded.append(node)

    def log(self, node, text):
        self.logged.append((node, text))

    def error(self, node, exc, doing=None):
        return SlonyError("node %d: %s failed: %s" % (node, doing, exc), node=node)


def finish_step():
    planned = clone.decide_clone_finish(finish_read((NODE_INITIALIZED, 2), copy_snapshot(2)), 4, 2)
    return planned.plan.steps[0]


def test_the_finish_runner_commits_on_a_fresh_session_without_the_identity_check():
    conn = FakeConnection()
    cluster = FinishCluster(conn)
    step = finish_step()
    assert step.run(cluster, step, RunContext()) == []
    assert cluster.identity_checks == [False]
    assert conn.commits == 1 and cluster.discarded == [4]
    assert cluster.logged == [(4, "select clonenodefinish(4, 2)")]


def test_the_finish_runner_rolls_back_and_says_what_failed():
    def boom(query, params):
        raise psycopg2.Error("no such function")

    conn = FakeConnection(on_execute=boom)
    cluster = FinishCluster(conn)
    step = finish_step()
    with pytest.raises(SlonyError) as err:
        step.run(cluster, step, RunContext())
    assert "CLONE FINISH failed" in err.value.message
    assert conn.rollbacks == 1 and conn.commits == 0 and cluster.discarded == [4]
    assert cluster.logged == []
