# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waking a slon whose watchdog only sleeps before it restarts its worker.

slon runs as two processes: the watchdog (the process of slon's pid file) and the worker
it forks. When the worker asks for a restart (after ACCEPT_SET on a node that is neither
the old nor the new origin, after preFailover, failedNode, failedNode2, failedNode3: a
``NOTIFY "_<cluster>_Restart"``) or exits with an error, the watchdog reaps it and then
sleeps 10 s (20 s after a restart request) before it forks a new worker. During that sleep
the node does not replicate; a switchover or a failover waits for it once or several times.

slon's watchdog catches SIGUSR1: the signal cuts its sleep short (``sleep()`` returns
early) and it forks the new worker at once, as it would have done after the sleep.
The same signal sent while a worker runs would kill that worker (slon's own "retry"),
so it is only sent to a watchdog that has had no child process for
:data:`MIN_CHILDLESS` seconds, seen twice. That only works on the host where the slon
runs, for slons whose pid file is known (``slon_pid_files``): the collection's slon role
and ``slony_slon`` write it.

Some waits of slon's worker are inside the worker itself, 10 s each and repeated until
what it waits for is there: ACCEPT_SET processed before the MOVE_SET it follows
(``ACCEPT_SET - MOVE_SET not received yet - sleep``), FAILOVER_NODE processed before the
failed node's last event (``FAILOVER_NODE waiting for event``). A restarted worker reads
again what it listens to and finds the event at once. A wait that sees such a node
(:class:`Stuck`) *kicks* it: SIGUSR1 to its watchdog while the worker runs, which is
what slon sends itself on any error (the watchdog kills the worker and restarts it);
the watchdog's sleep that follows is then cut short as above.

What to do is decided from plain observations (:func:`decide`, pure); :class:`SlonWaker`
reads ``/proc`` and sends the signal; :class:`WakingClock` runs the waker between the
polls of every wait (:mod:`waits` sleeps through the clock it is given).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal

from .errors import SlonyError
from .waits import SYSTEM_CLOCK

# A watchdog is woken only after it was seen without a worker this long (twice): a
# worker it forks at that moment would otherwise be killed by the signal.
MIN_CHILDLESS = 0.3
# /proc is read at most this often.
LOOK_EVERY = 0.2
# A worker found stuck in one of slon's 10 s retry loops (see :func:`kick`) is restarted
# when it has been stuck this long, and at most once in KICK_EVERY seconds.
STUCK_AFTER = 2.0
KICK_EVERY = 5.0

SLEEPING = "sleeping"    # a slon watchdog without a worker
WORKING = "working"      # a slon watchdog with its worker
GONE = "gone"            # no such process, or not a slon


def decide(states, since, now, min_childless=MIN_CHILDLESS):
    """Which watchdogs to wake now (pure).

    ``states`` maps node -> (pid, SLEEPING / WORKING / GONE); ``since`` maps node ->
    (pid, when it was first seen SLEEPING), updated in place. Returns the nodes whose
    watchdog has been seen sleeping, the same pid, for at least ``min_childless`` s.
    """
    wake = []
    for node in sorted(states):
        pid, state = states[node]
        if state != SLEEPING:
            since.pop(node, None)
            continue
        first = since.get(node)
        if first is None or first[0] != pid:
            since[node] = (pid, now)
        elif now - first[1] >= min_childless:
            wake.append(node)
            since.pop(node, None)
    return wake


def read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (IOError, OSError, ValueError, IndexError):
        return None


class ProcTable:
    """The process table as the waker needs it, from ``/proc`` (Linux)."""

    def __init__(self, root="/proc"):
        self.root = root

    def name(self, pid):
        try:
            with open(os.path.join(self.root, str(pid), "comm")) as handle:
                return handle.read().strip()
        except (IOError, OSError):
            return None

    def parents(self):
        """{pid: parent pid} of every process."""
        found = {}
        for entry in os.listdir(self.root):
            if not entry.isdigit():
                continue
            try:
                with open(os.path.join(self.root, entry, "stat")) as handle:
                    text = handle.read()
            except (IOError, OSError):
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            fields = text[text.rfind(")") + 2:].split()
            if len(fields) > 1:
                found[int(entry)] = int(fields[1])
        return found


class SlonWaker:
    """Wakes the sleeping watchdogs of the slons of ``pid_files`` (node -> pid file)."""

    def __init__(self, pid_files, procs=None, kill=None, min_childless=MIN_CHILDLESS,
                 look_every=LOOK_EVERY):
        self.pid_files = dict((int(n), p) for n, p in (pid_files or {}).items())
        self.procs = procs or ProcTable()
        self.kill = kill or os.kill
        self.min_childless = min_childless
        self.look_every = look_every
        self.since = {}
        self.woken = []          # [(node, pid)] in order
        self.woken_report = []   # report(), kept up to date in place (a module's result)
        self.kicked = []         # [(node, pid, why)]
        self._kicked_at = {}
        self._looked = None

    @property
    def nodes(self):
        return sorted(self.pid_files)

    def narrow(self, skip=()):
        """Keep the pid files of the slons that run here now, but those of ``skip``.

        A pid file that is missing, or names no running slon, belongs to a slon that runs
        on another host (a playbook passes the pid files of every node it may run here) or
        to none: waking or waiting for it would only cost time. Returns the nodes dropped.
        """
        skip = set(int(n) for n in skip)
        states = self.states()
        dropped = sorted(n for n in self.pid_files if n in skip or states[n][1] == GONE)
        for node in dropped:
            del self.pid_files[node]
        return dropped

    def states(self):
        """node -> (pid, state) as the process table shows it now."""
        pids = dict((n, read_pid(p)) for n, p in self.pid_files.items())
        parents = self.procs.parents()
        busy = set(parents.values())
        states = {}
        for node, pid in pids.items():
            if pid is None or pid not in parents or not (self.procs.name(pid) or "").startswith(
                    "slon"):
                states[node] = (pid, GONE)
            else:
                states[node] = (pid, WORKING if pid in busy else SLEEPING)
        return states

    def tick(self, now):
        """Look (at most every ``look_every`` s) and wake what has slept long enough."""
        if not self.pid_files:
            return []
        if self._looked is not None and now - self._looked < self.look_every:
            return []
        self._looked = now
        states = self.states()
        woken = []
        for node in decide(states, self.since, now, self.min_childless):
            pid = states[node][0]
            try:
                self.kill(pid, signal.SIGUSR1)
            except OSError:
                continue
            self.woken.append((node, pid))
            woken.append(node)
        if woken:
            self.woken_report[:] = self.report()
        return woken

    def kick(self, node, why, now, kick_every=KICK_EVERY):
        """Restart the worker of ``node``'s slon (SIGUSR1 to its watchdog while the worker
        runs); at most once in ``kick_every`` seconds. Returns whether it was sent."""
        if node not in self.pid_files:
            return False
        last = self._kicked_at.get(node)
        if last is not None and now - last < kick_every:
            return False
        pid, state = self.states().get(node, (None, GONE))
        if state != WORKING:
            return False
        try:
            self.kill(pid, signal.SIGUSR1)
        except OSError:
            return False
        self._kicked_at[node] = now
        self.kicked.append((node, pid, why))
        self.woken_report[:] = self.report()
        return True

    def report(self):
        """How many times each node's slon was woken (and restarted while stuck)."""
        counts, kicks = {}, {}
        for node, dummy in self.woken:
            counts[node] = counts.get(node, 0) + 1
        for node, dummy, dummy2 in self.kicked:
            kicks[node] = kicks.get(node, 0) + 1
        return [dict({"node": n, "woken": counts.get(n, 0)},
                     **({"restarted_stuck": kicks[n]} if n in kicks else {}))
                for n in sorted(set(counts) | set(kicks))]


class WakingClock:
    """A :class:`waits.Clock` that runs ``waker.tick`` before every pause of a wait."""

    def __init__(self, waker, clock=None):
        self.waker = waker
        self.clock = clock or SYSTEM_CLOCK

    def now(self):
        return self.clock.now()

    def sleep(self, seconds):
        self.waker.tick(self.clock.now())
        self.clock.sleep(seconds)


class Stuck:
    """Which nodes have been stuck for ``after`` seconds (pure bookkeeping for a probe):
    ``seen(node, now)`` each poll the node looks stuck, ``clear(node)`` when it does not.
    """

    def __init__(self, after=STUCK_AFTER):
        self.after = after
        self.since = {}

    def seen(self, node, now):
        first = self.since.setdefault(node, now)
        return now - first >= self.after

    def clear(self, node):
        self.since.pop(node, None)


def kick(clock, node, why):
    """Restart ``node``'s stuck slon worker when ``clock`` is a :class:`WakingClock`
    that knows its pid file; False otherwise (nothing is sent)."""
    waker = getattr(clock, "waker", None)
    if waker is None:
        return False
    return waker.kick(node, why, clock.now())


def can_kick(clock):
    """Whether the waits of this run can restart slons (``kick``)."""
    waker = getattr(clock, "waker", None)
    return bool(waker is not None and waker.pid_files)


def pid_files_of(value):
    """The ``slon_pid_files`` option as {node id (int): path}; SlonyError when a key is
    not a node id."""
    found = {}
    for node, path in (value or {}).items():
        try:
            found[int(node)] = str(path)
        except (TypeError, ValueError):
            raise SlonyError("slon_pid_files: %r is not a node id" % (node,))
    return found


def waker_of(value, skip=()):
    """The :class:`SlonWaker` of a module's ``slon_pid_files`` option, narrowed to the
    slons that run here now, but those of ``skip`` (:meth:`SlonWaker.narrow`);
    SlonyError when a key is not a node id."""
    waker = SlonWaker(pid_files_of(value))
    waker.narrow(skip=skip)
    return waker


def waking_clock(pid_files, clock=None):
    """The clock of a run: waking the slons of ``pid_files`` when there are any."""
    if not pid_files:
        return clock or SYSTEM_CLOCK
    return WakingClock(SlonWaker(pid_files), clock)


__all__ = ["decide", "pid_files_of", "waker_of", "Stuck", "kick", "can_kick", "SlonWaker", "WakingClock", "waking_clock", "ProcTable", "MIN_CHILDLESS",
           "SLEEPING", "WORKING", "GONE"]
