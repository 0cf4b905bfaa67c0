"""events.py: bounded waits for confirmations, with a scripted cluster and a fake clock."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import (
    Event, event_dict, lagging_nodes, slon_state, wait_for_event)
from ansible_collections.dany.slony.plugins.module_utils.waits import FIRST_POLL
from fakes import FakeClock

EVENT = Event(1, 5000000010, "STORE_NODE")


class FakeCluster:
    """fetch() answers the lag query with scripted rows and the slon query per node.

    ``lag`` is a list of row lists, one per poll; the last one repeats. ``slon`` maps a
    node to True/False (its slon holds sl_nodelock or not) or to a SlonyError to raise.
    """

    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def __init__(self, lag, slon=None, admin_nodes=(1, 2, 3)):
        self.lag = list(lag)
        self.slon = dict(slon or {})
        self.admin_nodes = set(admin_nodes)
        self.polls = []
        self.slon_checks = []
        self.queries = [{"node": 1, "sql": "select \"_shop\".storenode(2, 'x')"}]

    def has_node(self, node):
        return node in self.admin_nodes

    def fetch(self, node, query, params=None, check_identity=True):
        assert isinstance(query, sql.Composable)
        if isinstance(params, dict):  # lagging_nodes
            self.polls.append((node, dict(params)))
            rows = self.lag[0] if len(self.lag) == 1 else self.lag.pop(0)
            return [list(r) for r in rows]
        self.slon_checks.append((node, params))
        state = self.slon[node]
        if isinstance(state, Exception):
            raise state
        return [(state,)]


def test_event_dict():
    assert event_dict(EVENT) == {"origin": 1, "seqno": 5000000010, "type": "STORE_NODE"}


def test_confirmed_at_once_does_not_sleep():
    cluster, clock = FakeCluster([[]]), FakeClock()
    wait_for_event(cluster, EVENT, timeout=30, clock=clock)
    assert clock.sleeps == []
    assert cluster.polls == [(1, {"origin": 1, "seqno": 5000000010})]
    assert cluster.slon_checks == []


def test_waits_until_confirmed_polling_at_the_default_interval():
    cluster = FakeCluster([[(2, 5000000009), (3, 0)], [(3, 5000000009)], [(3, 5000000009)], []])
    clock = FakeClock()
    wait_for_event(cluster, EVENT, timeout=30, clock=clock)
    assert len(cluster.polls) == 4
    # Short pauses first, growing towards POLL_INTERVAL.
    assert clock.sleeps == pytest.approx([FIRST_POLL, FIRST_POLL * 1.5, FIRST_POLL * 2.25])
    assert all(s <= 0.2 for s in clock.sleeps)
    assert cluster.slon_checks == []


def test_timeout_names_every_lagging_node_and_its_slon():
    cluster = FakeCluster([[(2, 5000000009), (3, 0)]], slon={1: True, 2: True, 3: False})
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        wait_for_event(cluster, EVENT, timeout=2, clock=clock)
    error = info.value
    assert str(error) == (
        "timed out after 2s waiting for event 5000000010 (STORE_NODE) of node 1 to be "
        "confirmed; behind: node 2 (confirmed up to 5000000009; slon running), "
        "node 3 (confirmed up to nothing; slon not running)")
    assert error.node == 3  # the node whose slon does not run (waits.culprit)
    assert error.queries == cluster.queries
    # The origin's own slon is looked up first, then each lagging node's, on that node.
    assert [node for node, dummy in cluster.slon_checks] == [1, 2, 3]
    assert all(params == ("_shop",) for dummy, params in cluster.slon_checks)


def test_timeout_is_respected_with_short_polls():
    cluster = FakeCluster([[(2, 1)]], slon={1: True, 2: True})
    clock = FakeClock()
    with pytest.raises(SlonyError):
        wait_for_event(cluster, EVENT, timeout=3, clock=clock)
    assert clock.waited == pytest.approx(3)
    assert max(clock.sleeps) <= 0.2
    # Polled all along, not once at the end.
    assert len(cluster.polls) >= 3 / 0.2


def test_zero_timeout_polls_once():
    cluster = FakeCluster([[(3, 0)]], slon={1: True, 3: False})
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        wait_for_event(cluster, EVENT, timeout=0, clock=clock)
    assert len(cluster.polls) == 1
    assert clock.sleeps == []
    assert "node 3 (confirmed up to nothing; slon not running)" in str(info.value)


def test_confirmed_just_before_the_deadline():
    cluster = FakeCluster([[(2, 1)]] * 5 + [[]], slon={2: True})
    clock = FakeClock()
    wait_for_event(cluster, EVENT, timeout=0.5, clock=clock)
    assert len(cluster.polls) == 6


def test_slon_state_unknown_node_and_unreachable_node():
    cluster = FakeCluster([[(4, 0), (3, 7)]],
                          slon={1: True, 3: SlonyError("cannot connect to node 3 (host=db3)")},
                          admin_nodes=(1, 2, 3))
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        wait_for_event(cluster, EVENT, timeout=0, clock=clock)
    message = str(info.value)
    assert "node 4 (confirmed up to nothing; slon unknown (no admin_conninfo for node 4))" \
        in message
    assert "node 3 (confirmed up to 7; slon unknown (cannot connect to node 3 (host=db3)))" \
        in message
    assert info.value.node == 4


def test_timeout_says_when_the_origins_own_slon_is_down():
    cluster = FakeCluster([[(2, 1)]], slon={1: False, 2: True})
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        wait_for_event(cluster, EVENT, timeout=0, clock=clock)
    assert str(info.value).endswith(
        "node 2 (confirmed up to 1; slon running); the slon of node 1, which collects "
        "the confirmations, is not running")


def test_slon_state_direct():
    cluster = FakeCluster([[]], slon={1: True, 2: False})
    assert slon_state(cluster, 1) == "running"
    assert slon_state(cluster, 2) == "not running"
    assert slon_state(cluster, 9) == "unknown (no admin_conninfo for node 9)"


def test_listed_confirmers_exclude_the_origin_and_are_sorted():
    cluster = FakeCluster([[]])
    assert lagging_nodes(cluster, EVENT, confirmers=[3, 1, 2]) == []
    assert cluster.polls == [(1, {"origin": 1, "seqno": 5000000010, "nodes": [2, 3]})]


def test_only_the_origin_as_confirmer_needs_no_query():
    cluster = FakeCluster([[(2, 0)]])
    clock = FakeClock()
    wait_for_event(cluster, EVENT, confirmers=[1], timeout=0, clock=clock)
    assert cluster.polls == []


def test_wait_on_another_node():
    cluster = FakeCluster([[]])
    wait_for_event(cluster, EVENT, wait_on=3, timeout=0, clock=FakeClock())
    assert cluster.polls[0][0] == 3


def test_lagging_nodes_rows_are_tuples():
    cluster = FakeCluster([[(2, 4), (3, 0)]])
    assert lagging_nodes(cluster, EVENT) == [(2, 4), (3, 0)]
    assert "nodes" not in cluster.polls[0][1]
