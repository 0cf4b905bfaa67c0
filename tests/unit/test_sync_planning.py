"""slony_sync: the plan (read, then decide) and the wait for the SYNC, with a fake clock."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import sync
from ansible_collections.dany.slony.plugins.module_utils.catalog import Node, Snapshot
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from ansible_collections.dany.slony.plugins.module_utils.plan import CALLBACK, WAIT, RunContext
from fakes import FakeClock
from scripted import ScriptedCluster

NS = sql.Identifier("_shop")
NODES = {1: Node(1, True, "", False), 2: Node(2, True, "", False), 3: Node(3, True, "", False),
         4: Node(4, False, "", True)}
SYNC = Event(1, 5000000500, "SYNC")


def test_decide_sync_is_pure_and_always_a_change():
    plan, before, after, extra = sync.decide_sync(NS, "_shop", "shop", 1, NODES, [3, 1], 30)
    assert [s.kind for s in plan.steps] == [CALLBACK, WAIT]
    assert plan.changes() == plan.steps[:1]   # a SYNC is an event: always "changed"
    assert not plan.steps[1].required          # wait: false skips it
    assert (before, after) == ({}, {})
    assert extra == {"event": None, "confirmed_by": None}
    assert plan.slonik() == ["sync (id = 1);", "wait for event (origin = 1, confirmed = 3, "
                                               "wait on = 1, timeout = 30);"]


def test_decide_sync_refuses_an_inactive_or_unknown_node():
    with pytest.raises(SlonyError, match="node 4 is not an active node of cluster shop"):
        sync.decide_sync(NS, "_shop", "shop", 4, NODES)
    with pytest.raises(SlonyError, match="node 7 is not an active node"):
        sync.decide_sync(NS, "_shop", "shop", 7, NODES)


def lag_cluster(lag, slon=None):
    """The origin's sl_confirm: ``lag`` is a list of lagging rows per poll (last repeats)."""
    lag = list(lag)
    return ScriptedCluster([("sl_confirm", lambda node, params: list(
        lag[0] if len(lag) == 1 else lag.pop(0)))], slon=slon)


def started(confirmers):
    run = sync.SyncRun(NS, "_shop", 1, confirmers, 30)
    run.event = SYNC
    return run


def test_the_sync_wait_honours_the_callers_timeout_not_the_planned_one():
    run, clock = started([3]), FakeClock()
    cluster = lag_cluster([[(3, 5000000499)]], slon={1: True, 3: False})
    with pytest.raises(SlonyError) as info:
        run.wait(cluster, None, RunContext(timeout=4, clock=clock))
    assert clock.waited == pytest.approx(4)
    assert str(info.value) == (
        "timed out after 4s waiting for event 5000000500 (SYNC) of node 1 to be confirmed; "
        "behind: node 3 (confirmed up to 5000000499; slon not running)")
    assert run.report["confirmed_by"] is None


def test_the_sync_wait_reports_who_confirmed(monkeypatch):
    monkeypatch.setattr(sync, "read_snapshot",
                        lambda cluster, node: Snapshot(node, node, nodes=NODES.values()))
    run, clock = started(None), FakeClock()
    cluster = lag_cluster([[(2, 1), (3, 1)], [(3, 1)], []])
    run.wait(cluster, None, RunContext(timeout=4, clock=clock))
    assert cluster.count("sl_confirm") == 3 and len(clock.sleeps) == 2
    assert run.report["confirmed_by"] == [2, 3]
    listed, clock = started([2]), FakeClock()
    listed.wait(lag_cluster([[]]), None, RunContext(timeout=0, clock=clock))
    assert listed.report["confirmed_by"] == [2] and clock.sleeps == []
