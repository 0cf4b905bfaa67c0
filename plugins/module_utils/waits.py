# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one waiter: every poll, retry and deadline of the core goes through here.

A wait is a *probe* (a function that reads and says whether the goal is reached, and
if not, which nodes are behind on what) handed to :func:`poll_until`, with the
caller's timeout (the modules' ``wait_timeout``). The waiter owns the rhythm (fast
first polls, then every :data:`POLL_INTERVAL`), the deadline, and the one timeout
message format::

    timed out after 30s waiting for <goal>; behind: node 3 (<what>; slon not running)

Time comes from a :class:`Clock`, so that unit tests run every wait with a fake one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from collections import namedtuple

from .pg import sql

from .errors import SlonyError

# Slonik polls once a second; we poll faster so that short waits end sooner: the first
# poll again after FIRST_POLL seconds, then 1.5 times later each time, up to POLL_INTERVAL.
POLL_INTERVAL = 0.1
FIRST_POLL = 0.02
DEFAULT_TIMEOUT = 300

# One node that is behind: its id, and what it is behind on ("confirmed up to 12").
Behind = namedtuple("Behind", "node detail")


class Clock:
    """Monotonic time and sleeping; a test passes a fake one."""

    def now(self):
        return time.monotonic()

    def sleep(self, seconds):
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()


def poll_delays(interval=POLL_INTERVAL, first=FIRST_POLL):
    """The pauses between polls: short at first (most waits are short), then ``interval``."""
    delay = min(first, interval)
    while True:
        yield delay
        delay = min(delay * 1.5, interval)


class Pending:
    """What a probe returns while the goal is not reached: the nodes behind, and why."""

    def __init__(self, behind=(), note=None):
        self.behind = list(behind)
        self.note = note

    def __repr__(self):
        return "Pending(%r, note=%r)" % (self.behind, self.note)


def poll_until(probe, timeout, on_timeout, clock=None, interval=POLL_INTERVAL,
               first=FIRST_POLL):
    """Call ``probe()`` until the goal is reached, for at most ``timeout`` seconds.

    ``probe()`` returns a :class:`Pending` while the goal is not reached; anything
    else is the result, returned at once. The probe always runs at least once, so a
    timeout of 0 means "check once". After the deadline, ``on_timeout(pending)``
    (the last :class:`Pending`) gives the exception to raise, usually
    :func:`timeout_error`.
    """
    clock = clock or SYSTEM_CLOCK
    deadline = clock.now() + max(0, timeout)
    delays = poll_delays(interval, first)
    while True:
        outcome = probe()
        if not isinstance(outcome, Pending):
            return outcome
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise on_timeout(outcome)
        clock.sleep(min(next(delays), remaining))


def retry(action, timeout, retryable, on_timeout, clock=None, interval=1.0):
    """Run ``action()`` until it does not raise a ``retryable(exc)`` error.

    Non-retryable errors propagate at once; after ``timeout`` seconds,
    ``on_timeout(last_error)`` gives the exception to raise.
    """
    last = []

    def probe():
        try:
            return action()
        except SlonyError as exc:
            if not retryable(exc):
                raise
            last[:] = [exc]
            return Pending(note=exc.message)

    return poll_until(probe, timeout, lambda pending: on_timeout(last[0]), clock=clock,
                      interval=interval, first=interval)


_NODELOCK_QUERY = """
select exists (
  select 1 from {ns}.sl_nodelock
   where nl_nodeid = {ns}.getLocalNodeId(%s)
     and exists (select 1 from pg_catalog.pg_stat_activity where pid = nl_backendpid))
"""


def slon_state(cluster, node):
    """'running', 'not running', or why we could not tell, for ``node``'s slon.

    A slon registers its backend in ``sl_nodelock`` on its own node when it starts;
    the registration is live while that backend is (the test FAILOVER uses).
    """
    if not cluster.has_node(node):
        return "unknown (no admin_conninfo for node %d)" % node
    try:
        row = cluster.fetch(node, sql.SQL(_NODELOCK_QUERY).format(ns=cluster.ns),
                            (cluster.namespace,))
    except SlonyError as exc:
        return "unknown (%s)" % exc.message
    return "running" if row[0][0] else "not running"


def timeout_message(goal, timeout, behind=(), note=None, slon=None):
    """The one timeout message: the goal, then every node behind with what it is
    behind on and the state of its slon (``slon(node)``), then an optional note."""
    text = "timed out after %ss waiting for %s" % (timeout, goal)
    if behind:
        parts = []
        for entry in behind:
            state = "; slon %s" % slon(entry.node) if slon is not None else ""
            parts.append("node %d (%s%s)" % (entry.node, entry.detail, state))
        text += "; behind: " + ", ".join(parts)
    if note:
        text += "; " + note
    return text


def timeout_error(cluster, goal, timeout, pending, node=None):
    """:func:`timeout_message` as a SlonyError, with the slon states read from
    ``cluster`` and the statements already run."""
    behind = pending.behind if pending is not None else []
    note = pending.note if pending is not None else None
    states = dict((entry.node, slon_state(cluster, entry.node)) for entry in behind)
    message = timeout_message(goal, timeout, behind, note, slon=states.get)
    if node is None and behind:
        node = culprit(behind, states)
    return SlonyError(message, node=node, queries=getattr(cluster, "queries", None))


def culprit(behind, states):
    """The node a timeout is blamed on (pure): the first node behind whose slon does not
    run (the likely cause; the others may only be slow), else the first node behind."""
    stopped = [entry.node for entry in behind if states.get(entry.node) == "not running"]
    return stopped[0] if stopped else behind[0].node


__all__ = ["Behind", "Clock", "Pending", "SYSTEM_CLOCK", "POLL_INTERVAL", "FIRST_POLL",
           "DEFAULT_TIMEOUT", "poll_delays", "poll_until", "retry", "slon_state",
           "timeout_message", "timeout_error", "culprit"]
