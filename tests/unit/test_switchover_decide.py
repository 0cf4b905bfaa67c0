"""switchover.py: the plan decided from plain data (no database), and every wait of a
switchover run with a fake clock."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from ansible_collections.dany.slony.plugins.module_utils.plan import CALLBACK, WAIT, RunContext
from ansible_collections.dany.slony.plugins.module_utils.switchover import (
    DONE, IN_FLIGHT, MOVE, RESUME, PreflightRead, SwitchoverRead, candidate_sets,
    decide_switchover, holding_origin, locate_moves, wait_accepted, wait_origin)
from fakes import FakeClock
from test_switchover_planning import NS, healthy, snapshot

MOVE_TO_2 = Event(1, 5000000300, "MOVE_SET")


def read(views=None, preflight=None, set_id=1, from_node=None, move_rows=None,
         admin=(1, 2, 3)):
    """What read_switchover returns for moving set 1 (or from_node's sets) to node 2."""
    views = views if views is not None else {1: snapshot(1), 2: snapshot(2)}
    return SwitchoverRead(2, set_id=set_id, from_node=from_node, views=views,
                          move_rows=move_rows or {}, admin_nodes=admin, preflight=preflight)


def ready(snaps=None, in_progress=None):
    return PreflightRead(1, snaps or healthy(), in_progress or {})


# -- what is located ---------------------------------------------------------------------

def test_a_set_on_its_old_origin_moves_and_its_preflight_is_needed():
    data = read(preflight=ready())
    assert holding_origin(data) == (1, [1])
    assert [(m.set_id, m.action, m.old_origin) for m in locate_moves(data)] == [(1, MOVE, 1)]


def test_a_locked_set_resumes_with_its_lock():
    views = {1: snapshot(1, sets=((1, 1, 4711),)), 2: snapshot(2)}
    moves = locate_moves(read(views))
    assert [(m.action, m.locked) for m in moves] == [(RESUME, 4711)]


def test_done_and_in_flight_sets_need_no_preflight():
    done = {2: snapshot(2, sets=((1, 2, None),))}
    data = read(done, move_rows={2: [(1, Event(1, 5000000200, "MOVE_SET")), (1, MOVE_TO_2)]})
    assert holding_origin(data) == (None, [])
    assert [(m.action, m.event) for m in locate_moves(data)] == [(DONE, MOVE_TO_2)]
    in_flight = read({1: snapshot(1, sets=((1, 2, None),)), 2: snapshot(2)},
                     move_rows={1: [(1, MOVE_TO_2)]})
    assert holding_origin(in_flight) == (None, [])
    assert [(m.action, m.event) for m in locate_moves(in_flight)] == [(IN_FLIGHT, MOVE_TO_2)]


def test_from_node_candidates_include_sets_an_earlier_run_moved():
    views = {1: snapshot(1, sets=((1, 1, None), (2, 2, None), (3, 3, None))),
             2: snapshot(2, sets=((1, 1, None), (2, 2, None), (3, 3, None)))}
    data = read(views, set_id=None, from_node=1, move_rows={2: [(2, MOVE_TO_2)]})
    assert candidate_sets(data) == [1, 2]  # set 3 is node 3's, not node 1's
    assert holding_origin(data) == (1, [1])


# -- the decision -------------------------------------------------------------------------

def test_a_ready_cluster_gives_lock_wait_move_wait_and_no_slon_wait():
    planned = decide_switchover(read(preflight=ready()), NS, timeout=90)
    assert [(s.kind, s.function) for s in planned.plan.steps] == [
        (CALLBACK, "lockSet"), (CALLBACK, None), (CALLBACK, "moveSet"), (WAIT, None)]
    assert planned.extra["slon_wait"] is None
    assert planned.extra["sets"][0]["action"] == MOVE
    assert planned.before == {"sets": [{"id": 1, "origin": 1, "locked": False}]}
    assert planned.after == {"sets": [{"id": 1, "origin": 2, "locked": False}]}


def test_a_stopped_slon_alone_becomes_a_precondition_wait_and_planning_never_sleeps():
    data = read(preflight=ready(healthy({3: snapshot(3, slon=False)})))
    planned = decide_switchover(data, NS, timeout=90)
    first = planned.plan.steps[0]
    assert first.kind == WAIT and first.required and first.run is not None
    assert "wait up to 30s for the slon daemon of node 3 to run again" in first.description
    assert planned.extra["slon_wait"]["nodes"] == [3]
    assert planned.extra["slon_wait"]["timeout"] == 30
    assert [s.function for s in planned.plan.steps[1:]] == ["lockSet", None, "moveSet", None]
    # The grace never exceeds the timeout.
    assert decide_switchover(data, NS, timeout=4).extra["slon_wait"]["timeout"] == 4


def test_a_stopped_slon_with_another_problem_is_refused_at_once():
    snaps = healthy({2: snapshot(2, slon=False, setsyncs=[])})
    with pytest.raises(SlonyError) as err:
        decide_switchover(read(preflight=ready(snaps)), NS, timeout=90)
    message = str(err.value)
    assert message.startswith("switchover of set 1 from node 1 to node 2 refused, nothing was "
                              "changed: the slon daemon of node 2 is not running (no live "
                              "sl_nodelock entry on node 2); ")
    assert "node 2 has not finished copying set 1" in message


def test_an_unreadable_node_is_not_waited_for():
    with pytest.raises(SlonyError, match="node 3 cannot be checked: connection refused"):
        decide_switchover(read(preflight=ready(healthy({3: "connection refused"}))), NS)


def test_lag_refuses_and_a_locked_set_is_named_in_the_refusal():
    views = {1: snapshot(1, sets=((1, 1, 4711),)), 2: snapshot(2)}
    with pytest.raises(SlonyError) as err:
        decide_switchover(read(views, preflight=ready()), NS, max_lag_events=0)
    assert "node 2 is 2 events behind node 1 (max_lag_events = 0)" in str(err.value)
    assert "Set 1 is still locked by an interrupted switchover" in str(err.value)


def test_done_without_event_is_a_no_op():
    planned = decide_switchover(read({2: snapshot(2, sets=((1, 2, None),))}), NS)
    assert len(planned.plan) == 0 and not planned.plan.changes()
    assert planned.extra["timings"] == {}


# -- the waits, with a fake clock ----------------------------------------------------------

class Scripted:
    """fetch() answers by query text; the slon probe answers from ``slon``."""

    ns = NS
    namespace = "_shop"

    def __init__(self, answers, slon=None):
        self.answers = answers
        self.slon = slon or {}
        self.queries = []
        self.fetches = 0

    def has_node(self, node):
        return True

    def fetch(self, node, query, params=None, check_identity=True):
        self.fetches += 1
        text = repr(query)
        for needle, answer in self.answers:
            if needle in text:
                return answer(node, params)
        if "sl_nodelock" in text:
            return [(self.slon.get(node, True),)]
        raise AssertionError("unexpected query: %s" % text)


def test_slon_wait_step_honours_its_grace_and_refuses_in_both_formats():
    data = read(preflight=ready(healthy({3: snapshot(3, slon=False)})))
    step = decide_switchover(data, NS, timeout=4).plan.steps[0]
    clock = FakeClock()
    cluster = Scripted([], slon={3: False})
    with pytest.raises(SlonyError) as err:
        step.run(cluster, step, RunContext(timeout=4, clock=clock))
    assert clock.waited == pytest.approx(4)
    assert str(err.value) == (
        "switchover of set 1 from node 1 to node 2 refused, nothing was changed: the slon "
        "daemon of node 3 is not running (no live sl_nodelock entry on node 3 for 4s); every "
        "node's slon must process MOVE_SET; timed out after 4s waiting for the slon daemon of "
        "node 3 to run; behind: node 3 (no live sl_nodelock entry on node 3; slon not running)")
    assert err.value.node == 3


def test_slon_wait_step_ends_when_the_slon_is_back():
    data = read(preflight=ready(healthy({3: snapshot(3, slon=False)})))
    step = decide_switchover(data, NS, timeout=60).plan.steps[0]
    clock = FakeClock()
    answers = iter([False, False, True])
    cluster = Scripted([("sl_nodelock", lambda node, params: [(next(answers),)])])
    step.run(cluster, step, RunContext(timeout=60, clock=clock))
    assert clock.waited == pytest.approx(1.0)  # two polls, 0.5 s apart


def test_wait_origin_honours_the_timeout():
    clock = FakeClock()
    cluster = Scripted([("sl_set", lambda node, params: [(1, 1), (3, 2)])])
    with pytest.raises(SlonyError) as err:
        wait_origin(cluster, [1, 3], 2, 7, clock)
    assert clock.waited == pytest.approx(7)
    assert str(err.value) == ("timed out after 7s waiting for node 2 to become the origin of "
                              "sets 1, 3; behind: node 2 (its sl_set names node 1 as the origin "
                              "of set 1; slon running)")


def test_wait_accepted_honours_the_timeout():
    clock = FakeClock()
    cluster = Scripted([
        ("ACCEPT_SET", lambda node, params: [(2, 5000000400, "ACCEPT_SET")]),
        ("sl_confirm", lambda node, params: [(3, 5000000399)]),
    ])
    with pytest.raises(SlonyError) as err:
        wait_accepted(cluster, MOVE_TO_2, 1, 2, 5, clock)
    assert clock.waited == pytest.approx(5)
    assert str(err.value).startswith(
        "timed out after 5s waiting for event 5000000400 (ACCEPT_SET) of node 2 to be "
        "confirmed; behind: node 3 (confirmed up to 5000000399; slon running)")


def test_wait_accepted_without_accept_event_returns_at_once():
    clock = FakeClock()
    assert wait_accepted(Scripted([("ACCEPT_SET", lambda n, p: [])]), MOVE_TO_2, 1, 2, 5,
                         clock) is None
    assert clock.sleeps == []


def test_the_final_wait_passes_the_clock_and_times_the_confirmation(monkeypatch):
    planned = decide_switchover(read(preflight=ready()), NS, timeout=90)
    runner_wait = planned.plan.steps[-1]
    runner = runner_wait.run.__self__
    runner.handover.moved[1] = MOVE_TO_2
    clock = FakeClock()
    confirmed = iter([[(3, 5000000299)], []])
    cluster = Scripted([
        ("ACCEPT_SET", lambda node, params: []),
        ("sl_confirm", lambda node, params: next(confirmed)),
        ("sl_set", lambda node, params: [(1, 2)]),
    ])
    runner_wait.run(cluster, runner_wait, RunContext(timeout=90, clock=clock))
    assert runner.report["confirmed_seconds"] == pytest.approx(clock.waited)
    assert clock.waited > 0
