"""waits.py: the one waiter (poll_until, retry) and its timeout message, with a fake clock."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.waits import (
    FIRST_POLL, POLL_INTERVAL, Behind, Pending, culprit, poll_delays, poll_until, retry, timeout_error,
    timeout_message)
from fakes import FakeClock


def _fail(pending):
    return SlonyError("timeout: %r" % (pending,))


def test_a_probe_that_is_done_at_once_never_sleeps():
    clock = FakeClock()
    assert poll_until(lambda: "done", 30, _fail, clock=clock) == "done"
    assert clock.sleeps == []


def test_falsy_results_other_than_pending_are_results():
    clock = FakeClock()
    assert poll_until(lambda: [], 30, _fail, clock=clock) == []
    assert poll_until(lambda: None, 30, _fail, clock=clock) is None


def test_polls_fast_first_then_back_off_to_the_interval():
    answers = [Pending()] * 8 + ["ok"]
    clock = FakeClock()
    assert poll_until(lambda: answers.pop(0), 30, _fail, clock=clock) == "ok"
    assert clock.sleeps[0] == pytest.approx(FIRST_POLL)
    assert clock.sleeps[1] == pytest.approx(FIRST_POLL * 1.5)
    assert clock.sleeps == sorted(clock.sleeps)
    assert max(clock.sleeps) == pytest.approx(POLL_INTERVAL)
    assert POLL_INTERVAL <= 0.2


def test_the_timeout_is_honoured_exactly_and_the_last_pending_is_reported():
    clock = FakeClock()
    seen = []

    def probe():
        seen.append(clock.now())
        return Pending([Behind(2, "poll %d" % len(seen))])

    with pytest.raises(SlonyError) as info:
        poll_until(probe, 3, lambda pending: SlonyError(pending.behind[0].detail), clock=clock)
    assert clock.waited == pytest.approx(3)
    assert str(info.value) == "poll %d" % len(seen)
    assert len(seen) >= 3 / POLL_INTERVAL


def test_a_zero_timeout_probes_exactly_once():
    clock = FakeClock()
    calls = []
    with pytest.raises(SlonyError):
        poll_until(lambda: calls.append(1) or Pending(), 0, _fail, clock=clock)
    assert calls == [1]
    assert clock.sleeps == []


def test_an_error_raised_by_the_probe_propagates_at_once():
    clock = FakeClock()

    def probe():
        raise SlonyError("connection lost")

    with pytest.raises(SlonyError, match="connection lost"):
        poll_until(probe, 30, _fail, clock=clock)
    assert clock.sleeps == []


def test_a_custom_interval_is_used_from_the_start_when_asked():
    answers = [Pending(), Pending(), "ok"]
    clock = FakeClock()
    poll_until(lambda: answers.pop(0), 10, _fail, clock=clock, interval=1.0, first=1.0)
    assert clock.sleeps == [1.0, 1.0]


def test_poll_delays_never_exceed_the_interval():
    delays = poll_delays(0.1, first=0.02)
    values = [next(delays) for dummy in range(20)]
    assert values[0] == 0.02 and values[-1] == 0.1
    assert next(poll_delays(0.01, first=0.02)) == 0.01


def test_retry_retries_only_what_is_retryable_within_the_timeout():
    clock = FakeClock()
    attempts = []

    def action():
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise SlonyError("deadlock detected")
        return "uninstalled"

    assert retry(action, 30, lambda exc: "deadlock" in exc.message, _fail, clock=clock) \
        == "uninstalled"
    assert clock.sleeps == [1.0, 1.0]

    def refused():
        raise SlonyError("permission denied")

    with pytest.raises(SlonyError, match="permission denied"):
        retry(refused, 30, lambda exc: "deadlock" in exc.message, _fail, clock=clock)


def test_retry_gives_up_after_the_timeout_with_the_last_error():
    clock = FakeClock()

    def action():
        raise SlonyError("lock timeout")

    with pytest.raises(SlonyError) as info:
        retry(action, 5, lambda exc: True,
              lambda last: SlonyError("gave up: " + last.message), clock=clock)
    assert str(info.value) == "gave up: lock timeout"
    assert clock.waited == pytest.approx(5)


def test_the_one_timeout_message_format():
    states = {2: "running", 3: "not running"}
    text = timeout_message("event 7 (SYNC) of node 1 to be confirmed", 30,
                           [Behind(2, "confirmed up to 6"), Behind(3, "confirmed up to nothing")],
                           note="node 1's slon is not running", slon=states.get)
    assert text == ("timed out after 30s waiting for event 7 (SYNC) of node 1 to be confirmed; "
                    "behind: node 2 (confirmed up to 6; slon running), node 3 (confirmed up to "
                    "nothing; slon not running); node 1's slon is not running")
    assert timeout_message("the run lock", 5) == "timed out after 5s waiting for the run lock"


class _Cluster:
    queries = [{"node": 1, "sql": "select 1"}]
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def has_node(self, node):
        return node != 9

    def fetch(self, node, query, params=None):
        return [(node == 2,)]


def test_timeout_error_reads_the_slon_states_and_names_the_first_node_behind():
    error = timeout_error(_Cluster(), "the copy", 10,
                          Pending([Behind(3, "copy not finished"), Behind(9, "unknown")]))
    assert error.node == 3
    assert error.queries == _Cluster.queries
    assert str(error) == ("timed out after 10s waiting for the copy; behind: node 3 (copy not "
                          "finished; slon not running), node 9 (unknown; slon unknown (no "
                          "admin_conninfo for node 9))")


def test_a_timeout_is_blamed_on_the_first_node_whose_slon_does_not_run():
    # Node 2's slon runs (it is only slow), node 3's does not: node 3 is the one named.
    error = timeout_error(_Cluster(), "event 7", 5,
                          Pending([Behind(2, "confirmed up to 6"), Behind(3, "confirmed up to 5")]))
    assert error.node == 3
    assert culprit([Behind(2, "x"), Behind(4, "y")], {2: "running", 4: "running"}) == 2
    assert culprit([Behind(2, "x"), Behind(4, "y")], {}) == 2
