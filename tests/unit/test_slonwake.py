"""slonwake.py: waking a slon watchdog that sleeps before restarting its worker, and
restarting a worker stuck in one of slon's retry loops; the switchover's and the
failover's use of it (decided from plain data, waits with a fake clock)."""

from __future__ import annotations

import signal

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import failover
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from ansible_collections.dany.slony.plugins.module_utils.failover import (
    FailoverRun, FinalRestarts, decide_failover)
from ansible_collections.dany.slony.plugins.module_utils.plan import WAIT, RunContext
from ansible_collections.dany.slony.plugins.module_utils.slonwake import (
    GONE, SLEEPING, WORKING, SlonWaker, Stuck, WakingClock, can_kick, decide, kick,
    pid_files_of, waker_of, waking_clock)
from ansible_collections.dany.slony.plugins.module_utils.switchover import (
    accept_before_move, decide_switchover, restarting_nodes, wait_accepted)
from fakes import FakeClock
from test_failover_decide import read as failover_read
from test_failover_decide import snapshot as failover_snapshot
from test_switchover_decide import MOVE_TO_2, Scripted, read, ready

NS = sql.Identifier("_shop")


class Procs:
    """A process table: ``table`` maps pid -> (parent pid, name)."""

    def __init__(self, table):
        self.table = dict(table)

    def name(self, pid):
        return self.table[pid][1] if pid in self.table else None

    def parents(self):
        return dict((pid, entry[0]) for pid, entry in self.table.items())


def waker(tmp_path, table, pids=None, **kwargs):
    files = {}
    for node, pid in (pids or {3: 300}).items():
        path = tmp_path / ("slon-%d.pid" % node)
        path.write_text("%d\n" % pid)
        files[node] = str(path)
    sent = []
    made = SlonWaker(files, procs=Procs(table), kill=lambda pid, sig: sent.append((pid, sig)),
                     **kwargs)
    return made, sent


# -- the decision (pure) -------------------------------------------------------------------

def test_a_watchdog_is_woken_only_after_it_was_seen_sleeping_long_enough():
    since = {}
    assert decide({3: (300, SLEEPING)}, since, 10.0) == []
    assert decide({3: (300, SLEEPING)}, since, 10.2) == []
    assert decide({3: (300, SLEEPING)}, since, 10.3) == [3]
    assert since == {}  # the next sleep is timed afresh


def test_a_worker_or_another_pid_starts_the_count_again():
    since = {}
    decide({3: (300, SLEEPING)}, since, 10.0)
    decide({3: (300, WORKING)}, since, 10.2)
    assert decide({3: (300, SLEEPING)}, since, 10.4) == []
    decide({3: (301, SLEEPING)}, since, 10.8)
    assert since[3] == (301, 10.8)
    assert decide({3: (301, GONE)}, since, 11.5) == [] and since == {}


# -- the process table ---------------------------------------------------------------------

def test_the_waker_signals_a_sleeping_slon_watchdog_and_reports_it(tmp_path):
    made, sent = waker(tmp_path, {300: (1, "slon"), 1: (0, "init")})
    assert made.tick(10.0) == []
    assert made.tick(10.1) == []  # looked at most every 0.2 s
    assert made.tick(10.3) == [3]
    assert sent == [(300, signal.SIGUSR1)]
    assert made.woken_report == [{"node": 3, "woken": 1}]


def test_a_watchdog_with_its_worker_or_a_process_that_is_not_slon_is_left_alone(tmp_path):
    made, sent = waker(tmp_path, {300: (1, "slon"), 301: (300, "slon")})
    for now in (10.0, 10.5, 11.0):
        made.tick(now)
    other, sent2 = waker(tmp_path, {300: (1, "postgres")})
    for now in (10.0, 10.5, 11.0):
        other.tick(now)
    assert sent == [] and sent2 == []
    assert other.states() == {3: (300, GONE)}


def test_a_missing_or_unreadable_pid_file_is_gone(tmp_path):
    made = SlonWaker({3: str(tmp_path / "none.pid")}, procs=Procs({}), kill=None)
    assert made.states() == {3: (None, GONE)}
    assert made.tick(1.0) == []


def test_narrow_keeps_the_running_slons_but_the_skipped_ones(tmp_path):
    made, sent = waker(tmp_path, {100: (1, "slon"), 200: (1, "slon"), 301: (1, "postgres")},
                       pids={1: 100, 2: 200, 3: 301})
    made.pid_files[4] = str(tmp_path / "elsewhere.pid")  # a slon of another host
    assert made.narrow(skip=[1]) == [1, 3, 4]
    assert made.nodes == [2]
    for now in (10.0, 10.2, 10.4):
        made.tick(now)
    assert sent == [(200, signal.SIGUSR1)]


def test_waker_of_reads_the_option_and_keeps_only_running_slons(tmp_path):
    assert waker_of({"3": str(tmp_path / "elsewhere.pid")}).nodes == []
    assert waker_of({}).nodes == []
    with pytest.raises(SlonyError):
        waker_of({"x": "/run/slon.pid"})


def test_kick_restarts_a_running_worker_at_most_every_few_seconds(tmp_path):
    made, sent = waker(tmp_path, {300: (1, "slon"), 301: (300, "slon")})
    assert made.kick(3, "stuck", 10.0)
    assert not made.kick(3, "stuck", 12.0)
    assert made.kick(3, "stuck", 15.0)
    assert not made.kick(4, "no pid file", 20.0)
    assert sent == [(300, signal.SIGUSR1)] * 2
    assert made.woken_report == [{"node": 3, "woken": 0, "restarted_stuck": 2}]


def test_kick_leaves_a_sleeping_watchdog_to_the_waker(tmp_path):
    made, sent = waker(tmp_path, {300: (1, "slon")})
    assert not made.kick(3, "stuck", 10.0) and sent == []


def test_the_waking_clock_looks_before_every_pause():
    seen = []

    class Waker:
        pid_files = {3: "x"}

        def tick(self, now):
            seen.append(now)

    clock = WakingClock(Waker(), FakeClock(start=5.0))
    clock.sleep(0.5)
    clock.sleep(0.25)
    assert seen == [5.0, 5.5] and clock.now() == 5.75
    assert can_kick(clock) and not can_kick(FakeClock())
    assert not kick(FakeClock(), 3, "no waker")


def test_without_pid_files_the_clock_is_the_callers():
    fake = FakeClock()
    assert waking_clock({}, fake) is fake
    assert isinstance(waking_clock({"3": "/run/slon-3.pid"}, fake), WakingClock)


def test_the_option_keys_are_node_ids():
    assert pid_files_of({"3": "/run/a.pid", 4: "/run/b.pid"}) == {3: "/run/a.pid",
                                                                  4: "/run/b.pid"}
    with pytest.raises(SlonyError, match="slon_pid_files: 'three' is not a node id"):
        pid_files_of({"three": "/run/a.pid"})


def test_stuck_counts_from_the_first_poll_that_saw_it():
    stuck = Stuck(after=2.0)
    assert not stuck.seen(3, 10.0)
    assert not stuck.seen(3, 11.9)
    assert stuck.seen(3, 12.0)
    stuck.clear(3)
    assert not stuck.seen(3, 12.5)


# -- the switchover ------------------------------------------------------------------------

def test_the_switchover_waits_for_the_slons_it_can_wake_and_only_those():
    data = read(preflight=ready())
    assert restarting_nodes(data, [1, 2, 3, 9]) == [3]
    assert restarting_nodes(data, []) == []
    plain = decide_switchover(data, NS, timeout=60)
    waking = decide_switchover(read(preflight=ready()), NS, timeout=60, wake_nodes=[3],
                               slons_woken=[])
    assert len(plain.plan) == len(waking.plan)
    assert "slon of node 3, which restarts after ACCEPT_SET" in waking.plan.steps[-1].description
    assert "run again" not in plain.plan.steps[-1].description
    assert waking.extra["slons_woken"] == [] and plain.extra["slons_woken"] == []


def test_the_final_wait_waits_for_the_new_registration_of_the_noted_slon():
    planned = decide_switchover(read(preflight=ready()), NS, timeout=30, wake_nodes=[3])
    final = planned.plan.steps[-1]
    runner = final.run.__self__
    runner.handover.moved[1] = MOVE_TO_2
    runner.backends = {3: 4711}
    registered = iter([[], [], [(4712,)]])
    cluster = Scripted([
        ("ACCEPT_SET", lambda node, params: []),
        ("sl_confirm", lambda node, params: []),
        ("sl_set", lambda node, params: [(1, 2)]),
        ("nl_backendpid <>", lambda node, params: next(registered)),
    ])
    clock = FakeClock()
    final.run(cluster, final, RunContext(timeout=30, clock=clock))
    assert runner.report["restarted_seconds"] == pytest.approx(clock.waited)
    assert clock.waited > 0


def test_the_restart_wait_honours_the_timeout_and_names_the_slon():
    planned = decide_switchover(read(preflight=ready()), NS, timeout=6, wake_nodes=[3])
    final = planned.plan.steps[-1]
    runner = final.run.__self__
    runner.handover.moved[1] = MOVE_TO_2
    runner.backends = {3: 4711}
    cluster = Scripted([
        ("ACCEPT_SET", lambda node, params: []),
        ("sl_confirm", lambda node, params: []),
        ("sl_set", lambda node, params: [(1, 2)]),
        ("nl_backendpid <>", lambda node, params: []),
    ])
    clock = FakeClock()
    with pytest.raises(SlonyError) as err:
        final.run(cluster, final, RunContext(timeout=6, clock=clock))
    assert clock.waited == pytest.approx(6)
    assert str(err.value).startswith(
        "timed out after 6s waiting for the slons that restart after ACCEPT_SET to run again; "
        "behind: node 3 (its slon has not registered again since backend 4711; slon running)")


class KickClock(FakeClock):
    """A FakeClock with a waker that records kicks."""

    def __init__(self):
        super().__init__()
        self.kicks = []
        clock = self

        class Waker:
            pid_files = {3: "x"}

            def kick(self, node, why, now):
                clock.kicks.append((node, why, now))
                return True

        self.waker = Waker()


def test_a_node_that_met_accept_set_before_move_set_is_restarted_after_two_seconds():
    accept = Event(2, 5000000400, "ACCEPT_SET")
    confirmed = {"done": False}

    def lagging(node, params):
        return [] if confirmed["done"] else [(3, 5000000399)]

    def own_confirm(node, params):
        return [(False,)]

    clock = KickClock()

    def sleeping_lagging(node, params):
        if clock.kicks:
            confirmed["done"] = True
        return lagging(node, params)

    cluster = Scripted([
        ("ACCEPT_SET", lambda node, params: [tuple(accept)]),
        ("count(*)", lambda node, params: [(1,)]),          # node 3 holds MOVE_SET
        (">= %s from", own_confirm),                          # and has not accepted
        ("sl_confirm", sleeping_lagging),
    ])
    assert accept_before_move(cluster, 3, MOVE_TO_2, accept)
    wait_accepted(cluster, MOVE_TO_2, 1, 2, 30, clock, restarting=[3])
    assert [k[0] for k in clock.kicks] == [3]
    assert clock.kicks[0][2] - 1000.0 >= 2.0


def test_no_kick_without_a_waker_or_for_a_node_that_did_not_process_move_set():
    accept = Event(2, 5000000400, "ACCEPT_SET")
    polls = iter([[(3, 5000000399)]] * 40 + [[]])
    clock = KickClock()
    cluster = Scripted([
        ("ACCEPT_SET", lambda node, params: [tuple(accept)]),
        ("count(*)", lambda node, params: [(0,)]),
        ("sl_confirm", lambda node, params: next(polls)),
    ])
    wait_accepted(cluster, MOVE_TO_2, 1, 2, 30, clock, restarting=[3])
    assert clock.kicks == []


# -- the failover --------------------------------------------------------------------------

def test_the_failover_ends_with_a_wait_for_the_slons_it_can_wake():
    plain = decide_failover(failover_read(), NS, timeout=60, slon_wait=60)
    waking = decide_failover(failover_read(), NS, timeout=60, slon_wait=60, wake_nodes=[2, 3, 9])
    assert len(waking.plan) == len(plain.plan) + 1
    last = waking.plan.steps[-1]
    assert last.kind == WAIT and "slons of node(s) 2, 3" in last.description
    assert waking.extra["slons_woken"] == []


def test_a_completed_failover_has_no_restart_wait():
    done = {2: failover_snapshot(2, failed_state=(False, True), set_origin=2),
            3: failover_snapshot(3, failed_state=(False, True), set_origin=2)}
    planned = decide_failover(failover_read(done), NS, wake_nodes=[2, 3])
    assert not [s for s in planned.plan.steps if "restart after FAILOVER_NODE" in s.description]


def test_the_drop_of_the_failed_node_waits_for_the_slons_that_restart_after_it():
    plain = decide_failover(failover_read(), NS, drop_failed=True, timeout=60, slon_wait=60)
    waking = decide_failover(failover_read(), NS, drop_failed=True, timeout=60, slon_wait=60,
                             wake_nodes=[2, 3, 9])
    assert "restart after it" not in plain.plan.steps[-1].description
    assert ("and the slons of node(s) 2, 3, which restart after it, run again"
            in waking.plan.steps[-1].description)


def test_final_restarts_note_the_promoted_node_again_before_failednode3():
    final = FinalRestarts([2, 3])
    backends = iter([[(20,)], [(30,)], [(21,)]])
    cluster = Scripted([("sl_nodelock", lambda node, params: next(backends))])
    final.note_first(cluster)
    final.note_again(cluster, 2)
    assert final.backends == {2: 21, 3: 30}


def failover_run(monkeypatch):
    monkeypatch.setattr(failover, "read_snapshot", lambda cluster, node: failover_snapshot(node))
    run = FailoverRun(NS, 1, 2, [2, 3], [2, 3], [1], timeout=30, final=FinalRestarts([2, 3]))
    run.temporary_backup, run.event, run.seqno = 2, Event(2, 5000000080, "FAILOVER_NODE"), 105
    return run


def test_a_survivor_holding_the_event_but_not_past_failover_node_is_restarted(monkeypatch):
    run = failover_run(monkeypatch)
    clock = KickClock()

    def lagging(node, params):
        return [] if clock.kicks else [(3, 5000000079)]  # the restarted worker confirms

    cluster = Scripted([
        (">= %s from", lambda node, params: [(False,)]),     # not confirmed by node 3 itself
        ("sl_confirm", lagging),
        ("sl_subscribe", lambda node, params: [(1,)]),
        ("exists (select 1 from", lambda node, params: [(True,)]),   # holds event 105
    ])
    run.wait_failover_confirmed(cluster, clock)
    assert [k[0] for k in clock.kicks] == [3]
    assert clock.kicks[0][1] == "FAILOVER_NODE 5000000080 after event 105 of node 1"
    assert clock.kicks[0][2] - 1000.0 >= 2.0


def test_a_survivor_without_the_event_or_that_confirmed_itself_is_left_alone(monkeypatch):
    for holds, own in ((False, False), (True, True)):
        run = failover_run(monkeypatch)
        clock = KickClock()
        polls = iter([[(3, 5000000079)]] * 40 + [[]])
        cluster = Scripted([
            (">= %s from", lambda node, params, own=own: [(own,)]),
            ("sl_confirm", lambda node, params: next(polls)),
            ("sl_subscribe", lambda node, params: [(1,)]),
            ("exists (select 1 from", lambda node, params, holds=holds: [(holds,)]),
        ])
        run.wait_failover_confirmed(cluster, clock)
        assert clock.kicks == []
