"""slony_path planning: read (client catalogs, unknown servers), then decide, without a
database."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import paths
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    PENDING_CONNINFO, Node, Path, Snapshot, Subscription)
from ansible_collections.dany.slony.plugins.module_utils.conninfo import Redactor
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import EVENT, WAIT

NS = sql.Identifier("_shop")


def snap(node, known=(1, 2), paths_=(), subs=()):
    return Snapshot(node, node, nodes=[Node(n, True, "", False) for n in known],
                    paths=paths_, subscriptions=subs)


def decide(wanted, snaps, servers=None):
    normalized = paths.normalize_paths(wanted)
    return paths.decide_paths(NS, "shop", Redactor(), normalized,
                              paths.PathFacts(snaps, servers or {}))


def test_new_and_changed_paths_are_stored_on_their_client_then_waited_for():
    snaps = {1: snap(1, paths_=[Path(2, 1, "host=b", 10)]), 2: snap(2)}
    plan, before, after, extra = decide(
        [{"server": 1, "client": 2, "conninfo": "host=a"},
         {"server": 2, "client": 1, "conninfo": "host=b", "connretry": 5}], snaps)
    assert [(s.kind, s.node, s.function, s.args) for s in plan.steps] == [
        (EVENT, 2, "storePath", (1, 2, "host=a", 10)),
        (EVENT, 1, "storePath", (2, 1, "host=b", 5)),
        (WAIT, 1, None, ()), (WAIT, 2, None, ())]
    assert before == [{"server": 1, "client": 2, "state": "absent"},
                      {"server": 2, "client": 1, "conninfo": "host=b", "connretry": 10}]
    assert after[1] == {"server": 2, "client": 1, "conninfo": "host=b", "connretry": 5}


def test_converged_paths_plan_nothing_and_a_pending_conninfo_is_shown_as_none():
    snaps = {2: snap(2, paths_=[Path(1, 2, "host=a", 10), Path(3, 2, PENDING_CONNINFO, 10)])}
    plan, before, after, extra = decide(
        [{"server": 1, "client": 2, "conninfo": "host=a"},
         {"server": 3, "client": 2, "state": "absent"}], snaps)
    assert [s.function for s in plan.steps] == ["dropPath", None]
    assert before[1]["conninfo"] is None


def test_a_server_no_client_knows_is_decided_from_its_probe():
    snaps = {2: snap(2)}
    with pytest.raises(SlonyError, match="^node 5 is not a node of cluster shop$"):
        decide([{"server": 5, "client": 2, "conninfo": "host=e"}], snaps, {5: False})
    plan = decide([{"server": 5, "client": 2, "conninfo": "host=e"}], snaps, {5: True}).plan
    assert plan.steps[0].args == (5, 2, "host=e", 10)


def test_a_path_in_use_is_not_dropped_and_every_problem_is_listed():
    snaps = {2: snap(2, paths_=[Path(1, 2, "host=a", 10)],
                     subs=[Subscription(1, 1, 2, True, True)])}
    with pytest.raises(SlonyError) as info:
        decide([{"server": 1, "client": 2, "state": "absent"},
                {"server": 7, "client": 2, "conninfo": "host=g"}], snaps, {7: False})
    assert str(info.value) == (
        "the path from node 1 to node 2 is used by the subscription of set(s) 1; unsubscribe "
        "or change the provider first; node 7 is not a node of cluster shop")


class ReadCluster:
    name = "shop"
    ns = NS
    redactor = Redactor()

    def __init__(self):
        self.probed = []

    def require_node(self, node, why=None):
        return None

    def has_node(self, node):
        return node != 8

    def state(self, node):
        self.probed.append(node)
        return ("initialized", node)


def test_reading_probes_only_servers_that_no_client_knows(monkeypatch):
    reads = []
    monkeypatch.setattr(paths, "read_snapshot",
                        lambda cluster, node: reads.append(node) or snap(node))
    monkeypatch.setattr(paths, "NODE_INITIALIZED", "initialized")
    cluster = ReadCluster()
    facts = paths.read_paths(cluster, paths.normalize_paths([
        {"server": 1, "client": 2, "conninfo": "host=a"},
        {"server": 5, "client": 2, "conninfo": "host=e"},
        {"server": 5, "client": 1, "conninfo": "host=e"},
        {"server": 8, "client": 1, "conninfo": "host=h"},
        {"server": 6, "client": 1, "state": "absent"}]))
    assert reads == [1, 2]
    assert facts.servers == {5: True, 8: False}
    assert cluster.probed == [5]
