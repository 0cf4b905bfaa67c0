# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Switchover: a controlled move of sets to a new origin (LOCK SET, MOVE SET, WAIT FOR EVENT).

Order of work, per old origin X and new origin T:

1. **Preflight**, reading only, before anything changes: every node's slon is alive,
   paths exist both ways between X and T, T subscribes to each set with forward and has
   finished copying it, T is not lagging behind X by more than the thresholds, and no
   subscription to the set is in progress. Every problem found is reported in one error.
2. **LOCK SET** on X for each set (its own transaction, as slonik): from now on writes to
   the set's tables fail on X. The transaction's ``txid_snapshot_xmax`` is remembered.
3. Wait (bounded, 0.1 s polls) until ``txid_snapshot_xmin`` on X has passed that xmax:
   every transaction that could still write to the set without the lock trigger has
   ended. ``moveSet`` refuses to run before that.
4. **MOVE SET** on X as an event (``moveSet`` creates a SYNC and MOVE_SET).
5. Wait until every node has confirmed MOVE_SET, T's own catalog shows T as origin, and
   every node has confirmed the ACCEPT_SET that T created when it took over.

After ACCEPT_SET, the slon of every node other than X and T restarts its worker (slon's
watchdog waits 10 s before starting it again). The preflight therefore watches a slon
that is not running for a while (``SLON_GRACE``) before it calls it stopped, so that
switchovers can follow each other.

Interrupted runs. A re-run looks at where the set stands, from T's catalog and from the
catalog of the node T names as origin:

* T is the origin: nothing to do (``changed=false``); the last MOVE_SET to T is still
  waited for, so a run interrupted during step 5 is finished by the next one.
* X already handed the set to T (MOVE SET committed on X) and T has not processed it
  yet: nothing to change either, only the wait.
* The set is still **locked** on X (a run died between steps 2 and 4): the re-run
  *finishes* the switchover. It reuses the lock (it does not lock again), waits for the
  transactions older than the lock, and moves the set. The lock only exists to move the
  set, and writes are already refused, so finishing is the shortest way back to a
  writable cluster.
* When this run locked (or inherited the lock of) a set and cannot move it (the
  transaction wait timed out, ``moveSet`` failed), it **unlocks** the set again before it
  fails, so the old origin accepts writes again and the error says so. A failing
  preflight changes nothing, not even a left-over lock; its error says the set is locked
  and how to unlock it by hand.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from collections import namedtuple

from .pg import psycopg2, sql

from .catalog import PENDING_CONNINFO, read_snapshot
from .cluster import NODE_INITIALIZED
from .errors import SlonyError
from .events import Event, event_dict, submit_event, wait_for_event
from .waits import POLL_INTERVAL
from .plan import CALLBACK, WAIT, Plan, Planned, Step, function_call

DEFAULT_MAX_LAG_EVENTS = 100
DEFAULT_MAX_LAG_SECONDS = 60
# How long a slon that is not running is watched before the preflight gives up on it
# (slon's watchdog restarts a worker 10 s after it exited), and how often.
SLON_GRACE = 15
SLON_POLL = 0.5

# What a set needs.
MOVE = "move"            # lock, wait for older transactions, move, wait for confirmations
RESUME = "resume"        # locked by an interrupted run: reuse the lock, then as MOVE
IN_FLIGHT = "in_flight"  # MOVE SET committed on the old origin, T has not processed it
DONE = "done"            # T is the origin already

SetMove = namedtuple("SetMove", "set_id action old_origin new_origin locked event")


# -- where a set stands (pure) ------------------------------------------------------

def set_position(set_id, to_node, seen):
    """Where set ``set_id`` stands with respect to ``to_node``.

    ``seen`` maps node id -> the set's origin in that node's own catalog (None when the
    node does not know the set). It holds ``to_node``; when ``to_node``'s catalog names
    another node X as origin, X's view must be in ``seen`` too.

    Returns (state, old origin): (DONE, None) when ``to_node`` is the origin in its own
    catalog; (MOVE, X) when X's own catalog says X is the origin; (IN_FLIGHT, X) when X
    already moved the set to ``to_node`` (MOVE SET committed on X) and ``to_node`` has
    not processed that yet. Anything else is an error: the set is being moved elsewhere.
    """
    named = seen.get(to_node)
    if named is None:
        # to_node does not know the set (yet): believe the first node that does.
        knowers = sorted(n for n, o in seen.items() if o is not None)
        if not knowers:
            raise SlonyError("set %d does not exist on any node in admin_conninfo" % set_id)
        named = seen[knowers[0]]
    if named == to_node:
        return DONE, None
    if named not in seen:
        raise SlonyError("set %d's origin is node %d, which has no entry in admin_conninfo; "
                         "the switchover runs LOCK SET and MOVE SET there" % (set_id, named),
                         node=named)
    says = seen[named]
    if says == named:
        return MOVE, named
    if says == to_node:
        return IN_FLIGHT, named
    raise SlonyError(
        "set %d is in the middle of another move: node %d's catalog names node %s as its "
        "origin and node %d's catalog names node %s; re-run once that move has finished"
        % (set_id, to_node, seen.get(to_node), named, says), node=named)


# -- preflight (pure) ---------------------------------------------------------------

def preflight_problems(old, to_node, set_ids, snapshots, in_progress, admin_nodes,
                       max_lag_events=DEFAULT_MAX_LAG_EVENTS,
                       max_lag_seconds=DEFAULT_MAX_LAG_SECONDS, slon_grace=None):
    """Everything that stops moving ``set_ids`` from ``old`` to ``to_node``, as messages.

    ``snapshots`` maps node id -> Snapshot (the old origin's read with status) or an
    error message for a node that could not be read; ``in_progress`` maps set id ->
    the old origin's ``isSubscriptionInProgress(set)``; ``admin_nodes`` are the nodes
    of admin_conninfo. An empty list means the switchover may go ahead. ``slon_grace``
    is only quoted in the messages (how long a stopped slon was watched).
    """
    problems = []
    osnap = snapshots[old]
    tsnap = snapshots.get(to_node)

    # Every node's slon processes MOVE_SET: a stopped one blocks the switchover half-way.
    for node in sorted(n.id for n in osnap.nodes.values() if n.active):
        if node not in admin_nodes:
            problems.append("node %d has no entry in admin_conninfo, so whether its slon runs "
                            "cannot be checked (every node's slon must process MOVE_SET)" % node)
            continue
        snap = snapshots.get(node)
        if snap is None:
            problems.append("node %d was not read" % node)
        elif isinstance(snap, str):
            problems.append("node %d cannot be checked: %s" % (node, snap))
        elif not snap.slon_running:
            problems.append("the slon daemon of node %d is not running (no live sl_nodelock "
                            "entry on node %d%s); every node's slon must process MOVE_SET"
                            % (node, node, "" if slon_grace is None else
                               " for %ss" % slon_grace))

    target = osnap.nodes.get(to_node)
    if target is None:
        problems.append("node %d is not a node of the cluster (node %d does not know it)"
                        % (to_node, old))
    elif not target.active:
        problems.append("node %d is not an active node" % to_node)
    if not hasattr(tsnap, "subscriptions"):
        return problems  # the target's catalog is unreadable (reported above)

    # Paths both ways: the new origin is fed by nobody, the old one becomes its subscriber.
    for server, client, snap in ((to_node, old, osnap), (old, to_node, tsnap)):
        path = snap.paths.get((server, client))
        if path is None or path.conninfo == PENDING_CONNINFO:
            problems.append("there is no path from node %d to node %d in node %d's catalog "
                            "(server %d, client %d); store it with dany.slony.slony_path"
                            % (server, client, client, server, client))

    for set_id in set_ids:
        if in_progress.get(set_id):
            problems.append("a subscription to set %d is still in progress (node %d's "
                            "isSubscriptionInProgress); wait until it has finished"
                            % (set_id, old))
        sub = osnap.subscriptions.get((set_id, to_node))
        if sub is None:
            problems.append("node %d does not subscribe to set %d; only a subscriber of a set "
                            "can become its origin" % (to_node, set_id))
            continue
        if not sub.forward:
            problems.append("node %d subscribes to set %d without forward; subscribe it with "
                            "forward: true first" % (to_node, set_id))
        own = tsnap.subscriptions.get((set_id, to_node))
        if own is None or not own.active or set_id not in tsnap.setsyncs:
            problems.append("node %d has not finished copying set %d (its own catalog shows "
                            "no active, synchronised subscription)" % (to_node, set_id))

    if max_lag_events is not None or max_lag_seconds is not None:
        rows = [s for s in osnap.status if s.received == to_node]
        if not rows:
            problems.append("node %d's sl_status has no row for node %d, so its lag is "
                            "unknown" % (old, to_node))
        else:
            status = rows[0]
            if max_lag_events is not None and (status.lag_events or 0) > max_lag_events:
                problems.append("node %d is %d events behind node %d (max_lag_events = %d)"
                                % (to_node, status.lag_events, old, max_lag_events))
            if max_lag_seconds is not None and (status.lag_seconds or 0) > max_lag_seconds:
                problems.append("node %d is %.1f seconds behind node %d (max_lag_seconds = %s)"
                                % (to_node, status.lag_seconds, old, max_lag_seconds))
    return problems


def refusal_message(old, to_node, moves, problems):
    """The one error a failing preflight raises."""
    ids = ", ".join(str(m.set_id) for m in moves)
    text = "switchover of set%s %s from node %d to node %d refused, nothing was changed: %s" % (
        "s" if len(moves) > 1 else "", ids, old, to_node, "; ".join(problems))
    locked = [m.set_id for m in moves if m.locked is not None]
    if locked:
        text += (". Set%s %s %s still locked by an interrupted switchover, so writes to %s "
                 "tables fail on node %d: fix the problems above and run again to finish the "
                 "move, or unlock by hand with slonik %s" % (
                     "s" if len(locked) > 1 else "", ", ".join(map(str, locked)),
                     "are" if len(locked) > 1 else "is", "their" if len(locked) > 1 else "its",
                     old, " ".join("'unlock set (id = %d, origin = %d);'" % (s, old)
                                   for s in locked)))
    return text


# -- reading the cluster ------------------------------------------------------------

_MOVE_EVENTS = """
select ev_origin, ev_seqno, ev_data1 from {ns}.sl_event
 where ev_type = 'MOVE_SET' and ev_data3 = %s
 order by ev_timestamp, ev_origin, ev_seqno
"""


def move_events(cluster, node, to_node, old=None):
    """{set id: the newest MOVE_SET towards ``to_node`` in ``node``'s sl_event}."""
    found = {}
    rows = cluster.fetch(node, sql.SQL(_MOVE_EVENTS).format(ns=cluster.ns), (str(to_node),))
    for origin, seqno, set_text in rows:
        if old is None or origin == old:
            found[int(set_text)] = Event(origin, seqno, "MOVE_SET")
    return found


def _snapshot_or_error(cluster, node, status=False):
    try:
        return read_snapshot(cluster, node, status=status)
    except SlonyError as exc:
        return exc.message


def _initialized(cluster, node):
    try:
        return cluster.state(node)[0] == NODE_INITIALIZED
    except SlonyError:
        return False


def locate_sets(cluster, to_node, set_id=None, from_node=None):
    """[SetMove] for the sets to consider, from the catalogs of ``to_node`` and the origin.

    ``set_id`` names one set; ``from_node`` means every set whose origin is ``from_node``
    (plus those an earlier run already moved from it to ``to_node``).
    """
    cluster.require_node(to_node, "the new origin (to_node)")
    cluster.require_initialized(to_node)
    tsnap = read_snapshot(cluster, to_node)
    views = {to_node: tsnap}

    def view(node):
        if node not in views:
            cluster.require_node(node)
            views[node] = read_snapshot(cluster, node)
        return views[node]

    if from_node is not None:
        if from_node == to_node:
            raise SlonyError("from_node and to_node are both node %d" % to_node, node=to_node)
        cluster.require_node(from_node, "the old origin (from_node)")
        cluster.require_initialized(from_node)
        fsnap = view(from_node)
        done_events = move_events(cluster, to_node, to_node, old=from_node)
        candidates = []
        for entry in sorted(fsnap.sets.values()):
            if entry.origin == from_node:
                candidates.append(entry.id)
            elif entry.origin == to_node and (
                    entry.id in done_events or tsnap.sets.get(entry.id) is None
                    or tsnap.sets[entry.id].origin != to_node):
                candidates.append(entry.id)
    else:
        candidates = [set_id]
        if set_id not in tsnap.sets:
            # to_node does not know the set: find a node that does.
            for node in cluster.initialized_nodes():
                if node != to_node and set_id in view(node).sets:
                    break

    moves = []
    for sid in candidates:
        seen = dict((n, s.sets[sid].origin if sid in s.sets else None) for n, s in views.items())
        named = seen.get(to_node)
        if named is None:
            named = next((seen[n] for n in sorted(seen) if seen[n] is not None), None)
        if named is not None and named != to_node and named not in seen \
                and cluster.has_node(named) and _initialized(cluster, named):
            view(named)
            seen[named] = views[named].sets[sid].origin if sid in views[named].sets else None
        state, old = set_position(sid, to_node, seen)
        if from_node is not None and old is not None and old != from_node:
            raise SlonyError("set %d's origin is node %d, not from_node %d"
                             % (sid, old, from_node), node=old)
        locked = views[old].sets[sid].locked if state == MOVE else None
        if state == MOVE and locked is not None:
            state = RESUME
        event = None
        if state == IN_FLIGHT:
            event = move_events(cluster, old, to_node, old=old).get(sid)
        elif state == DONE:
            event = move_events(cluster, to_node, to_node).get(sid)
        moves.append(SetMove(sid, state, old, to_node, locked, event))
    return moves


def subscription_in_progress(cluster, origin, set_id):
    rows = cluster.fetch(origin, sql.SQL("select {}.{}(%s)").format(
        cluster.ns, sql.Identifier("issubscriptioninprogress")), (set_id,))
    return bool(rows[0][0])


def slons_down(snapshots):
    """Nodes whose snapshot says their slon holds no live sl_nodelock entry."""
    return sorted(n for n, s in snapshots.items()
                  if not isinstance(s, str) and not s.slon_running)


def preflight(cluster, old, to_node, moves, max_lag_events, max_lag_seconds,
              slon_grace=SLON_GRACE, clock=time.monotonic, sleep=time.sleep):
    """Read what the preflight needs and raise one SlonyError listing every problem.

    A slon restarts its worker after some events (a third node after ACCEPT_SET, which
    every switchover creates), and its watchdog waits 10 s before it starts the worker
    again; so a slon that is not running is looked at again for up to ``slon_grace``
    seconds before it counts as a problem.
    """
    osnap = read_snapshot(cluster, old, status=True)
    snapshots = {old: osnap}
    for node in sorted(osnap.nodes):
        if node != old and cluster.has_node(node):
            snapshots[node] = _snapshot_or_error(cluster, node)
    if to_node not in snapshots:
        snapshots[to_node] = _snapshot_or_error(cluster, to_node)
    deadline = clock() + slon_grace
    while slons_down(snapshots) and clock() < deadline:
        sleep(SLON_POLL)
        for node in slons_down(snapshots):
            fresh = _snapshot_or_error(cluster, node, status=node == old)
            if node != old or not isinstance(fresh, str):
                snapshots[node] = fresh
    osnap = snapshots[old]
    set_ids = [m.set_id for m in moves]
    in_progress = dict((s, subscription_in_progress(cluster, old, s)) for s in set_ids)
    problems = preflight_problems(old, to_node, set_ids, snapshots, in_progress,
                                  cluster.nodes(), max_lag_events, max_lag_seconds,
                                  slon_grace=slon_grace)
    if problems:
        raise SlonyError(refusal_message(old, to_node, moves, problems), node=old)
    return osnap


# -- the plan -----------------------------------------------------------------------

def slonik_lock(set_id, origin):
    return "lock set (id = %d, origin = %d);" % (set_id, origin)


def slonik_move(set_id, old, new):
    return "move set (id = %d, old origin = %d, new origin = %d);" % (set_id, old, new)


def slonik_wait(origin, timeout, confirmed="all", wait_on=None):
    return "wait for event (origin = %d, confirmed = %s, wait on = %d, timeout = %d);" % (
        origin, confirmed, origin if wait_on is None else wait_on, timeout)


class Switchover:
    """The run-time side of a planned switchover: what was locked and moved so far.

    The steps of the plan call its methods; it remembers the lock xmax of each set and
    the MOVE_SET events, so that a failure can unlock what it must and the final wait
    knows what to wait for. ``report`` is returned to the user (filled while running).
    """

    def __init__(self, ns, old, to_node, moves, timeout, interval=POLL_INTERVAL,
                 clock=time.monotonic, sleep=time.sleep):
        self.ns = ns
        self.old = old
        self.to_node = to_node
        self.moves = list(moves)
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        # set id -> xmax of the lock (inherited locks are known from the start)
        self.locks = dict((m.set_id, m.locked) for m in self.moves if m.locked is not None)
        self.moved = {}  # set id -> MOVE_SET Event
        self.report = {"locked_seconds": None, "confirmed_seconds": None}
        self._locked_at = None
        self._moved_at = None

    # -- steps ----------------------------------------------------------------------
    def plan(self):
        """The steps: LOCK SET per set, the transaction wait, MOVE SET per set, the wait."""
        ns, old, to_node = self.ns, self.old, self.to_node
        steps = []
        for move in self.moves:
            if move.action == MOVE:
                steps.append(Step(
                    CALLBACK, old, "lock set %d on its origin node %d (from now on writes to its "
                                   "tables fail there until the move commits)" % (move.set_id, old),
                    slonik=slonik_lock(move.set_id, old),
                    query=function_call(ns, "lockSet", (move.set_id,)), params=(move.set_id,),
                    function="lockSet", args=(move.set_id,), run=self._lock_runner(move.set_id)))
        inherited = ", ".join("set %d (set_locked = %s)" % (m.set_id, m.locked)
                              for m in self.moves if m.action == RESUME)
        description = ("wait on node %d until every transaction that was running when the "
                       "set%s locked has ended" % (old, "s were" if len(self.moves) > 1 else " was"))
        if inherited:
            description += "; reuse the lock an interrupted switchover left on " + inherited
        steps.append(Step(CALLBACK, old, description, run=self._wait_transactions))
        for move in self.moves:
            steps.append(Step(
                CALLBACK, old, "move set %d from node %d to node %d (creates SYNC and MOVE_SET)"
                % (move.set_id, old, to_node),
                slonik=slonik_move(move.set_id, old, to_node),
                query=function_call(ns, "moveSet", (move.set_id, to_node)),
                params=(move.set_id, to_node), function="moveSet",
                args=(move.set_id, to_node), run=self._move_runner(move.set_id)))
        steps.append(Step(
            WAIT, old, "wait until every node has confirmed MOVE_SET, node %d's catalog shows "
                       "it as the origin, and every node has confirmed its ACCEPT_SET" % to_node,
            slonik=slonik_wait(old, self.timeout), run=self._wait_moved))
        return steps

    def _lock_runner(self, set_id):
        def run(cluster, step, ctx):
            self.lock(cluster, set_id)
            return []
        return run

    def _move_runner(self, set_id):
        def run(cluster, step, ctx):
            return self.move(cluster, set_id)
        return run

    def _wait_transactions(self, cluster, step, ctx):
        self.wait_transactions(cluster)
        return []

    def _wait_moved(self, cluster, step, ctx):
        self.wait_moved(cluster, ctx.timeout)

    # -- actions --------------------------------------------------------------------
    def lock(self, cluster, set_id):
        """LOCK SET as slonik: its own transaction, sl_config_lock, lockSet, read the xmax."""
        conn = cluster.connection(self.old)
        lock_config = sql.SQL("lock table {}.{}").format(self.ns, sql.Identifier("sl_config_lock"))
        call = function_call(self.ns, "lockSet", (set_id,))
        xmax_query = ("select pg_catalog.txid_snapshot_xmax("
                      "pg_catalog.txid_current_snapshot())")
        try:
            with conn.cursor() as cur:
                cur.execute(lock_config)
                cur.execute(call, (set_id,))
                cur.execute(xmax_query)
                xmax = cur.fetchone()[0]
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            error = cluster.error(self.old, exc, doing="lockSet(%d)" % set_id)
            raise self.undo(cluster, error)
        for text in (cluster.render(self.old, lock_config), cluster.render(self.old, call, (set_id,)),
                     xmax_query):
            cluster.log(self.old, text)
        self.locks[set_id] = xmax
        if self._locked_at is None:
            self._locked_at = self.clock()

    def wait_transactions(self, cluster):
        """Wait until txid_snapshot_xmin on the old origin has passed every lock's xmax."""
        if not self.locks:
            return
        if self._locked_at is None:
            self._locked_at = self.clock()
        target = max(self.locks.values())
        query = sql.SQL("select pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())"
                        " >= %s")
        deadline = self.clock() + self.timeout
        while not cluster.fetch(self.old, query, (target,))[0][0]:
            if self.clock() >= deadline:
                blockers = old_transactions(cluster, self.old, target)
                error = SlonyError(
                    "timed out after %ss on node %d waiting for the transactions that were "
                    "running when set%s %s %s locked to end%s; long transactions in any "
                    "database of node %d's PostgreSQL instance delay a switchover" % (
                        self.timeout, self.old, "s" if len(self.locks) > 1 else "",
                        ", ".join(map(str, sorted(self.locks))),
                        "were" if len(self.locks) > 1 else "was",
                        " (still running: %s)" % "; ".join(blockers) if blockers else "",
                        self.old), node=self.old)
                raise self.undo(cluster, error)
            self.sleep(self.interval)

    def move(self, cluster, set_id):
        """MOVE SET: moveSet under sl_event_lock and sl_config_lock; returns its events."""
        query = function_call(self.ns, "moveSet", (set_id, self.to_node))
        try:
            events = submit_event(cluster, self.old, query, (set_id, self.to_node))
        except SlonyError as exc:
            raise self.undo(cluster, exc)
        self.locks.pop(set_id, None)
        self.moved[set_id] = [e for e in events if e.type == "MOVE_SET"][-1]
        if len(self.moved) == len(self.moves):
            self._moved_at = self.clock()
            if self._locked_at is not None:
                self.report["locked_seconds"] = round(self._moved_at - self._locked_at, 3)
        return events

    def undo(self, cluster, error):
        """Unlock every set still locked and not moved; return ``error`` saying so."""
        unlocked, failed = [], []
        for set_id in sorted(self.locks):
            query = function_call(self.ns, "unlockSet", (set_id,))
            try:
                submit_event(cluster, self.old, query, (set_id,))
                unlocked.append(set_id)
            except SlonyError as exc:
                failed.append("set %d (%s)" % (set_id, exc.message))
        self.locks = {}
        message = error.message
        if self.moved:
            message += ("; set%s %s had already been moved to node %d" % (
                "s" if len(self.moved) > 1 else "", ", ".join(map(str, sorted(self.moved))),
                self.to_node))
        if unlocked:
            message += ("; set%s %s unlocked again on node %d (writes accepted there again), "
                        "not moved" % ("s" if len(unlocked) > 1 else "",
                                       ", ".join(map(str, unlocked)), self.old))
        if failed:
            message += ("; could not unlock %s: unlock by hand with slonik 'unlock set (id = N, "
                        "origin = %d);'" % (", ".join(failed), self.old))
        return SlonyError(message, node=error.node, queries=cluster.queries)

    def wait_moved(self, cluster, timeout):
        if not self.moved:
            return
        started = self.clock()
        last = max(self.moved.values(), key=lambda e: e.seqno)
        wait_for_event(cluster, last, None, timeout=timeout, interval=self.interval,
                       clock=self.clock, sleep=self.sleep)
        wait_origin(cluster, sorted(self.moved), self.to_node, timeout, self.interval,
                    self.clock, self.sleep)
        self.report["confirmed_seconds"] = round(self.clock() - started, 3)
        for set_id, event in sorted(self.moved.items()):
            wait_accepted(cluster, event, set_id, self.to_node, timeout)


_OLD_TRANSACTIONS = """
select a.pid, a.datname, a.usename, a.application_name,
       extract(epoch from now() - a.xact_start)::int
  from pg_catalog.pg_stat_activity a
 where a.backend_xid is not null
   and a.backend_xid::text::bigint in (
       select x %% 4294967296
         from pg_catalog.txid_snapshot_xip(pg_catalog.txid_current_snapshot()) as x
        where x < %s)
 order by a.xact_start limit 5
"""


def old_transactions(cluster, node, xmax):
    """Descriptions of the transactions on ``node`` older than ``xmax`` (best effort)."""
    try:
        rows = cluster.fetch(node, sql.SQL(_OLD_TRANSACTIONS), (xmax,))
    except SlonyError:
        return []
    return ["pid %s (database %s, user %s, application %r, open for %ss)" % tuple(r) for r in rows]


_ORIGINS = "select set_id, set_origin from {ns}.sl_set where set_id = any(%s)"


def wait_origin(cluster, set_ids, to_node, timeout, interval=POLL_INTERVAL,
                clock=time.monotonic, sleep=time.sleep):
    """Wait until ``to_node``'s own sl_set shows it as the origin of every set."""
    deadline = clock() + timeout
    query = sql.SQL(_ORIGINS).format(ns=cluster.ns)
    while True:
        rows = cluster.fetch(to_node, query, (list(set_ids),))
        pending = sorted(s for s, origin in rows if origin != to_node)
        if not pending:
            return
        if clock() >= deadline:
            raise SlonyError("timed out after %ss waiting for node %d to become the origin of "
                             "set(s) %s" % (timeout, to_node, ", ".join(map(str, pending))),
                             node=to_node, queries=cluster.queries)
        sleep(interval)


_ACCEPT_EVENT = """
select ev_origin, ev_seqno, ev_type from {ns}.sl_event
 where ev_origin = %s and ev_type = 'ACCEPT_SET' and ev_data1 = %s and ev_data4 = %s
 order by ev_seqno desc limit 1
"""


def wait_accepted(cluster, move_event, set_id, to_node, timeout):
    """Wait until every node has confirmed the new origin's ACCEPT_SET for ``move_event``.

    The new origin creates ACCEPT_SET when it processes MOVE_SET; the other nodes fix
    their sync position for the set when they process it (and their slon then restarts
    its worker, which takes about 10 s). Once it is confirmed, every node has finished
    the move. Returns the ACCEPT_SET event (None if it is gone: cleaned up, so confirmed).
    """
    rows = cluster.fetch(to_node, sql.SQL(_ACCEPT_EVENT).format(ns=cluster.ns),
                         (to_node, str(set_id), str(move_event.seqno)))
    if not rows:
        return None
    accept = Event(*rows[0])
    wait_for_event(cluster, accept, None, timeout=timeout, wait_on=to_node)
    return accept


def finish_wait(move, admin_nodes):
    """A WAIT step for a set an earlier run moved (or started moving) to ``new_origin``."""
    event, to_node = move.event, move.new_origin
    wait_on = event.origin if event is not None and event.origin in admin_nodes else to_node

    def run(cluster, step, ctx):
        timeout = ctx.timeout
        if event is not None:
            wait_for_event(cluster, event, None, timeout=timeout, wait_on=wait_on,
                           clock=ctx.clock)
        wait_origin(cluster, [move.set_id], to_node, timeout)
        if event is not None:
            wait_accepted(cluster, event, move.set_id, to_node, timeout)
    what = ("MOVE_SET %s of node %d" % (event.seqno, event.origin)) if event else "the move"
    return Step(WAIT, to_node, "wait until every node has confirmed %s (set %d to node %d)"
                % (what, move.set_id, to_node), run=run)


def set_views(moves, after=False):
    """before/after: [{id, origin}] (after: as the plan leaves them)."""
    views = []
    for move in moves:
        if after or move.action == DONE:
            views.append({"id": move.set_id, "origin": move.new_origin, "locked": False})
        elif move.action == IN_FLIGHT:
            views.append({"id": move.set_id, "origin": move.old_origin, "locked": False,
                          "moving_to": move.new_origin})
        else:
            views.append({"id": move.set_id, "origin": move.old_origin,
                          "locked": move.locked is not None})
    return views


def build_plan(ns, moves, timeout, admin_nodes, **kwargs):
    """Plan from located sets (pure): (plan, Switchover or None)."""
    plan = Plan()
    for move in moves:
        if move.action == IN_FLIGHT or (move.action == DONE and move.event is not None):
            plan.add(finish_wait(move, admin_nodes))
    to_move = [m for m in moves if m.action in (MOVE, RESUME)]
    runner = None
    if to_move:
        olds = sorted(set(m.old_origin for m in to_move))
        if len(olds) > 1:  # only possible with set_id, i.e. one set
            raise SlonyError("internal error: sets from several origins %s" % olds)
        runner = Switchover(ns, olds[0], to_move[0].new_origin, to_move, timeout, **kwargs)
        plan.extend(runner.plan())
    return plan, runner


def plan_switchover(cluster, to_node, set_id=None, from_node=None,
                    max_lag_events=DEFAULT_MAX_LAG_EVENTS,
                    max_lag_seconds=DEFAULT_MAX_LAG_SECONDS, timeout=300):
    """Plan moving ``set_id`` (or every set of ``from_node``) to ``to_node``.

    Returns (plan, before, after, extra). ``extra['sets']`` says what happens to each
    set; ``extra['timings']`` is filled while the plan runs.
    """
    if (set_id is None) == (from_node is None):
        raise SlonyError("give exactly one of set_id and from_node")
    moves = locate_sets(cluster, to_node, set_id=set_id, from_node=from_node)
    to_move = [m for m in moves if m.action in (MOVE, RESUME)]
    if to_move:
        preflight(cluster, to_move[0].old_origin, to_node, to_move, max_lag_events,
                  max_lag_seconds, slon_grace=min(SLON_GRACE, timeout))
    plan, runner = build_plan(cluster.ns, moves, timeout, cluster.nodes())
    extra = {
        "sets": [{"id": m.set_id, "old_origin": m.old_origin, "new_origin": m.new_origin,
                  "action": m.action,
                  "move_event": event_dict(m.event) if m.event is not None else None}
                 for m in moves],
        "timings": runner.report if runner is not None else {},
    }
    before = {"sets": set_views(moves)}
    after = {"sets": set_views(moves, after=True)}
    return Planned(plan, before, after, extra)
