# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Switchover: a controlled move of sets to a new origin (LOCK SET, MOVE SET, WAIT FOR EVENT).

Planning first reads (:func:`read_switchover`: the catalogs of the new origin T, of the
old origin X and of every node, X's ``sl_status``, the MOVE_SET events, whether a
subscription is in progress), then decides from that data alone
(:func:`decide_switchover`, pure). Order of work, per old origin X and new origin T:

1. **Preflight**, from what was read, before anything changes: every node's slon is
   alive, paths exist both ways between X and T, T subscribes to each set with forward and
   has finished copying it, T is not lagging behind X by more than the thresholds, and no
   subscription to the set is in progress. Every problem found is reported in one error.
2. **LOCK SET** on X for each set (its own transaction, as slonik): from now on writes to
   the set's tables fail on X. The transaction's ``txid_snapshot_xmax`` is remembered.
3. Wait (bounded, :mod:`waits`) until ``txid_snapshot_xmin`` on X has passed that xmax:
   every transaction that could still write to the set without the lock trigger has
   ended. ``moveSet`` refuses to run before that.
4. **MOVE SET** on X as an event (``moveSet`` creates a SYNC and MOVE_SET).
5. Wait until every node has confirmed MOVE_SET, T's own catalog shows T as origin, and
   every node has confirmed the ACCEPT_SET that T created when it took over.
Steps 2-4 are :class:`setmove.SetHandover`, which the failover uses too.

After ACCEPT_SET, the slon of every node other than X and T restarts its worker (slon's
watchdog waits 10 s before starting it again). A slon that is not running is therefore
given a grace period (``SLON_GRACE``, at most the timeout) before it counts as stopped,
so that switchovers can follow each other: when a stopped slon is the only problem, the
plan starts with a precondition WAIT step for it. Check mode never runs it (it reports it
in ``slon_wait``); the real run refuses, nothing changed, when the slon does not come
back in time. With any other problem the switchover is refused at once.

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

from collections import namedtuple

from .pg import sql

from .catalog import PENDING_CONNINFO, read_snapshot
from .cluster import NODE_INITIALIZED
from .errors import SlonyError
from .events import Event, event_dict, wait_for_event
from .plan import CALLBACK, WAIT, Plan, Planned, Step, function_call
from .setmove import (SetHandover, plural, slon_backends, wait_for_new_slons,
                      wait_for_slons)
from .slonwake import Stuck, can_kick, kick
from .waits import SYSTEM_CLOCK, Behind, Pending, poll_until, timeout_error

DEFAULT_MAX_LAG_EVENTS = 100
DEFAULT_MAX_LAG_SECONDS = 60
# How long a slon that is not running is waited for before the switchover is refused
# (slon's watchdog restarts a worker 10 s after it exited; 30 s leaves room for a loaded
# machine, where 15 s proved too short).
SLON_GRACE = 30

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

def _slon_message(node, slon_grace=None):
    return ("the slon daemon of node %d is not running (no live sl_nodelock entry on node %d%s); "
            "every node's slon must process MOVE_SET"
            % (node, node, "" if slon_grace is None else " for %ss" % slon_grace))


def node_problems(old, snapshots, admin_nodes, slon_grace=None):
    """[(node, message, slon_down)] for the active nodes (as ``old`` knows them) whose
    slon cannot be seen running; ``slon_down`` marks a node that was read and whose slon
    is not running (the one problem a wait can cure)."""
    found = []
    for node in sorted(n.id for n in snapshots[old].nodes.values() if n.active):
        if node not in admin_nodes:
            found.append((node, "node %d has no entry in admin_conninfo, so whether its slon "
                                "runs cannot be checked (every node's slon must process "
                                "MOVE_SET)" % node, False))
            continue
        snap = snapshots.get(node)
        if snap is None:
            found.append((node, "node %d was not read" % node, False))
        elif isinstance(snap, str):
            found.append((node, "node %d cannot be checked: %s" % (node, snap), False))
        elif not snap.slon_running:
            found.append((node, _slon_message(node, slon_grace), True))
    return found


def _target_problems(old, to_node, set_ids, osnap, tsnap, in_progress):
    problems = []
    target = osnap.nodes.get(to_node)
    if target is None:
        problems.append("node %d is not a node of the cluster (node %d does not know it)"
                        % (to_node, old))
    elif not target.active:
        problems.append("node %d is not an active node" % to_node)
    if not hasattr(tsnap, "subscriptions"):
        return problems  # the target's catalog is unreadable (reported with the nodes)

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
    return problems


def _lag_problems(old, to_node, osnap, max_lag_events, max_lag_seconds):
    if max_lag_events is None and max_lag_seconds is None:
        return []
    rows = [s for s in osnap.status if s.received == to_node]
    if not rows:
        return ["node %d's sl_status has no row for node %d, so its lag is unknown"
                % (old, to_node)]
    status, problems = rows[0], []
    if max_lag_events is not None and (status.lag_events or 0) > max_lag_events:
        problems.append("node %d is %d events behind node %d (max_lag_events = %d)"
                        % (to_node, status.lag_events, old, max_lag_events))
    if max_lag_seconds is not None and (status.lag_seconds or 0) > max_lag_seconds:
        problems.append("node %d is %.1f seconds behind node %d (max_lag_seconds = %s)"
                        % (to_node, status.lag_seconds, old, max_lag_seconds))
    return problems


def _preflight(old, to_node, set_ids, snapshots, in_progress, admin_nodes, max_lag_events,
               max_lag_seconds, slon_grace=None):
    """(node problems as :func:`node_problems`, every other problem)."""
    osnap, tsnap = snapshots[old], snapshots.get(to_node)
    others = _target_problems(old, to_node, set_ids, osnap, tsnap, in_progress)
    if hasattr(tsnap, "subscriptions"):
        others += _lag_problems(old, to_node, osnap, max_lag_events, max_lag_seconds)
    return node_problems(old, snapshots, admin_nodes, slon_grace), others


def preflight_problems(old, to_node, set_ids, snapshots, in_progress, admin_nodes,
                       max_lag_events=DEFAULT_MAX_LAG_EVENTS,
                       max_lag_seconds=DEFAULT_MAX_LAG_SECONDS, slon_grace=None):
    """Everything that stops moving ``set_ids`` from ``old`` to ``to_node``, as messages.

    ``snapshots`` maps node id -> Snapshot (the old origin's read with status) or an
    error message for a node that could not be read; ``in_progress`` maps set id ->
    the old origin's ``isSubscriptionInProgress(set)``; ``admin_nodes`` are the nodes
    of admin_conninfo. An empty list means the switchover may go ahead. ``slon_grace``
    is only quoted in the messages (how long a stopped slon was waited for).
    """
    found, others = _preflight(old, to_node, set_ids, snapshots, in_progress, admin_nodes,
                               max_lag_events, max_lag_seconds, slon_grace)
    return [message for dummy, message, dummy2 in found] + others


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


def check_preflight(pre, to_node, moves, admin_nodes, max_lag_events=DEFAULT_MAX_LAG_EVENTS,
                    max_lag_seconds=DEFAULT_MAX_LAG_SECONDS):
    """Decide the preflight from what was read (``pre``: :class:`PreflightRead`).

    Raises the refusal when anything but stopped slons stands in the way (a wait would
    not help); returns the nodes whose slon is not running, to be waited for ([] when
    everything is ready).
    """
    found, others = _preflight(pre.old, to_node, [m.set_id for m in moves], pre.snapshots,
                               pre.in_progress, admin_nodes, max_lag_events, max_lag_seconds)
    if others or not all(down for dummy, dummy2, down in found):
        raise SlonyError(refusal_message(pre.old, to_node, moves,
                                         [message for dummy, message, dummy2 in found] + others),
                         node=pre.old)
    return [node for node, dummy, dummy2 in found]


def slon_wait_step(old, to_node, moves, nodes, grace):
    """The precondition WAIT for stopped slons: refused, nothing changed, on timeout."""
    def run(cluster, step, ctx):
        def refusal(down, waited):
            return refusal_message(old, to_node, moves,
                                   [_slon_message(n, grace) for n in down] + [waited])
        wait_for_slons(cluster, nodes, grace, refusal, clock=ctx.clock)

    return Step(WAIT, old, "wait up to %ss for the slon daemon of node%s %s to run again (slon "
                           "restarts its worker 10 s after an ACCEPT_SET); refuse the "
                           "switchover, nothing changed, if it does not"
                % (grace, plural(nodes, "", "s"), ", ".join(map(str, nodes))),
                required=True, run=run)


# -- reading the cluster ------------------------------------------------------------

_MOVE_EVENTS = """
select ev_origin, ev_seqno, ev_data1 from {ns}.sl_event
 where ev_type = 'MOVE_SET' and ev_data3 = %s
 order by ev_timestamp, ev_origin, ev_seqno
"""

# What the preflight read on the old origin (plain data): ``snapshots`` maps node id ->
# Snapshot (the old origin's with sl_status) or the error that kept it from being read;
# ``in_progress`` maps set id -> isSubscriptionInProgress(set) on the old origin.
PreflightRead = namedtuple("PreflightRead", "old snapshots in_progress")


class SwitchoverRead:
    """Everything :func:`decide_switchover` needs, read by :func:`read_switchover`.

    ``views``: node id -> that node's own catalog (Snapshot); ``move_rows``: node id ->
    the MOVE_SET events towards ``to_node`` in its sl_event, oldest first, as
    ``(set id, Event)``; ``preflight``: a :class:`PreflightRead` when sets are still on
    their old origin, else None.
    """

    def __init__(self, to_node, set_id=None, from_node=None, views=None, move_rows=None,
                 admin_nodes=(), preflight=None):
        self.to_node = to_node
        self.set_id = set_id
        self.from_node = from_node
        self.views = dict(views or {})
        self.move_rows = dict(move_rows or {})
        self.admin_nodes = list(admin_nodes)
        self.preflight = preflight


def newest_moves(rows, old=None):
    """{set id: the newest MOVE_SET in ``rows`` (from ``old`` only, when given)}."""
    found = {}
    for set_id, event in rows:
        if old is None or event.origin == old:
            found[set_id] = event
    return found


def _origin_on(snapshot, set_id, node):
    """Whether ``snapshot`` already shows ``node`` as the origin of ``set_id``."""
    entry = snapshot.sets.get(set_id)
    return entry is not None and entry.origin == node


def candidate_sets(data):
    """The sets to consider: ``set_id``, or the sets of ``from_node`` (in its own catalog)
    and those an earlier run already moved from it to ``to_node``."""
    if data.from_node is None:
        return [data.set_id]
    to_node, tsnap = data.to_node, data.views[data.to_node]
    done_events = newest_moves(data.move_rows.get(to_node, ()), old=data.from_node)
    candidates = []
    for entry in sorted(data.views[data.from_node].sets.values()):
        if entry.origin == data.from_node:
            candidates.append(entry.id)
        elif entry.origin == to_node:
            # Moved by an earlier run: finish it unless the new origin already knows.
            if entry.id in done_events or not _origin_on(tsnap, entry.id, to_node):
                candidates.append(entry.id)
    return candidates


def named_origin(views, set_id, to_node):
    """The origin of ``set_id`` according to ``to_node``, or to the first node that
    knows the set when ``to_node`` does not."""
    seen = dict((n, s.sets[set_id].origin) for n, s in views.items() if set_id in s.sets)
    if to_node in seen:
        return seen[to_node]
    return next((seen[n] for n in sorted(seen)), None)


def holding_origin(data):
    """(X, sets) when the catalog of the old origin X still names X as the origin of
    some of the sets (they are still to move: the preflight is needed), else (None, [])."""
    candidates = candidate_sets(data)
    if data.from_node is not None:
        old = data.from_node
    else:
        old = named_origin(data.views, data.set_id, data.to_node)
    view = data.views.get(old)
    if old is None or old == data.to_node or view is None:
        return None, []
    held = [s for s in candidates if s in view.sets and view.sets[s].origin == old]
    return (old, held) if held else (None, [])


def read_move_events(cluster, node, to_node):
    rows = cluster.fetch(node, sql.SQL(_MOVE_EVENTS).format(ns=cluster.ns), (str(to_node),))
    return [(int(set_text), Event(origin, seqno, "MOVE_SET")) for origin, seqno, set_text in rows]


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


def subscription_in_progress(cluster, origin, set_id):
    rows = cluster.fetch(origin, sql.SQL("select {}.{}(%s)").format(
        cluster.ns, sql.Identifier("issubscriptioninprogress")), (set_id,))
    return bool(rows[0][0])


def _read_views(cluster, data):
    """The catalogs of to_node, from_node (or of the first node that knows set_id) and
    of the origin they name for each set; the MOVE_SET events of those origins."""
    to_node, views = data.to_node, data.views
    views[to_node] = read_snapshot(cluster, to_node)
    if data.from_node is not None:
        if data.from_node == to_node:
            raise SlonyError("from_node and to_node are both node %d" % to_node, node=to_node)
        cluster.require_node(data.from_node, "the old origin (from_node)")
        cluster.require_initialized(data.from_node)
        views[data.from_node] = read_snapshot(cluster, data.from_node)
    elif data.set_id not in views[to_node].sets:
        # to_node does not know the set: find a node that does.
        for node in cluster.initialized_nodes():
            if node != to_node:
                views[node] = read_snapshot(cluster, node)
                if data.set_id in views[node].sets:
                    break
    data.move_rows[to_node] = read_move_events(cluster, to_node, to_node)
    for set_id in candidate_sets(data):
        named = named_origin(views, set_id, to_node)
        if named is not None and named != to_node and named not in views \
                and cluster.has_node(named) and _initialized(cluster, named):
            views[named] = read_snapshot(cluster, named)
    for node in sorted(views):
        if node != to_node and node not in data.move_rows and any(
                named_origin(views, s, to_node) == node for s in candidate_sets(data)):
            data.move_rows[node] = read_move_events(cluster, node, to_node)


def read_preflight(cluster, old, to_node, set_ids):
    """What the preflight decides from: every node's catalog (errors kept as messages),
    the old origin's with sl_status, and whether a subscription is in progress."""
    osnap = read_snapshot(cluster, old, status=True)
    snapshots = {old: osnap}
    for node in sorted(osnap.nodes):
        if node != old and cluster.has_node(node):
            snapshots[node] = _snapshot_or_error(cluster, node)
    if to_node not in snapshots:
        snapshots[to_node] = _snapshot_or_error(cluster, to_node)
    in_progress = dict((s, subscription_in_progress(cluster, old, s)) for s in set_ids)
    return PreflightRead(old, snapshots, in_progress)


def read_switchover(cluster, to_node, set_id=None, from_node=None):
    """Read everything the switchover of ``set_id`` (or of every set of ``from_node``) to
    ``to_node`` is decided from; a :class:`SwitchoverRead`."""
    cluster.require_node(to_node, "the new origin (to_node)")
    cluster.require_initialized(to_node)
    data = SwitchoverRead(to_node, set_id, from_node, admin_nodes=cluster.nodes())
    _read_views(cluster, data)
    old, held = holding_origin(data)
    if held:
        data.preflight = read_preflight(cluster, old, to_node, held)
    return data


# -- deciding (pure) ------------------------------------------------------------------

def locate_moves(data):
    """[SetMove] for the sets to consider, from what was read."""
    to_node, views = data.to_node, data.views
    moves = []
    for sid in candidate_sets(data):
        seen = dict((n, s.sets[sid].origin if sid in s.sets else None) for n, s in views.items())
        state, old = set_position(sid, to_node, seen)
        if data.from_node is not None and old is not None and old != data.from_node:
            raise SlonyError("set %d's origin is node %d, not from_node %d"
                             % (sid, old, data.from_node), node=old)
        locked = views[old].sets[sid].locked if state == MOVE else None
        if state == MOVE and locked is not None:
            state = RESUME
        event = None
        if state == IN_FLIGHT:
            event = newest_moves(data.move_rows.get(old, ()), old=old).get(sid)
        elif state == DONE:
            event = newest_moves(data.move_rows.get(to_node, ())).get(sid)
        moves.append(SetMove(sid, state, old, to_node, locked, event))
    return moves


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

    The steps of the plan call its methods; the LOCK SET / wait / MOVE SET sequence is
    a :class:`setmove.SetHandover`, which remembers the lock xmax of each set and the
    MOVE_SET events, so that a failure can unlock what it must and the final wait
    knows what to wait for. ``report`` is returned to the user (filled while running).
    """

    def __init__(self, ns, old, to_node, moves, timeout, restarting=()):
        self.ns = ns
        self.old = old
        self.to_node = to_node
        self.moves = list(moves)
        self.timeout = timeout
        # the nodes whose slon restarts after ACCEPT_SET and is waited for (and woken)
        self.restarting = sorted(n for n in restarting if n not in (old, to_node))
        self.backends = {}
        # inherited locks (set id -> xmax) are known from the start
        self.handover = SetHandover(old, to_node, locks=dict(
            (m.set_id, m.locked) for m in self.moves if m.locked is not None))
        self.report = {"locked_seconds": None, "confirmed_seconds": None}
        self._locked_at = None

    @property
    def locks(self):
        return self.handover.locks

    @property
    def moved(self):
        return self.handover.moved

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
        description = ("wait until every node has confirmed MOVE_SET, node %d's catalog shows "
                       "it as the origin, and every node has confirmed its ACCEPT_SET" % to_node)
        if self.restarting:
            description += ("; then until the slon%s of node%s %s, which restart%s after "
                            "ACCEPT_SET, run%s again (woken from the watchdog's sleep)" % (
                                plural(self.restarting, "", "s"),
                                plural(self.restarting, "", "s"),
                                ", ".join(map(str, self.restarting)),
                                plural(self.restarting, "s", ""),
                                plural(self.restarting, "s", "")))
        steps.append(Step(WAIT, old, description, slonik=slonik_wait(old, self.timeout),
                          run=self._wait_moved))
        return steps

    def _lock_runner(self, set_id):
        def run(cluster, step, ctx):
            self.lock(cluster, set_id, ctx.clock)
            return []
        return run

    def _move_runner(self, set_id):
        def run(cluster, step, ctx):
            return self.move(cluster, set_id, ctx.clock)
        return run

    def _wait_transactions(self, cluster, step, ctx):
        self.wait_transactions(cluster, ctx.clock)
        return []

    def _wait_moved(self, cluster, step, ctx):
        self.wait_moved(cluster, ctx.timeout, ctx.clock)

    # -- actions --------------------------------------------------------------------
    def lock(self, cluster, set_id, clock=SYSTEM_CLOCK):
        """LOCK SET as slonik: its own transaction, sl_config_lock, lockSet, read the xmax."""
        self.handover.lock(cluster, set_id, self.timeout)
        if self._locked_at is None:
            self._locked_at = clock.now()

    def wait_transactions(self, cluster, clock=SYSTEM_CLOCK):
        """Wait until txid_snapshot_xmin on the old origin has passed every lock's xmax;
        on timeout unlock the sets and fail, naming the transactions still running."""
        if not self.locks:
            return
        if self._locked_at is None:
            self._locked_at = clock.now()
        self.handover.wait_transactions(cluster, self.timeout, clock)

    def move(self, cluster, set_id, clock=SYSTEM_CLOCK):
        """MOVE SET: moveSet under sl_event_lock and sl_config_lock; returns its events.
        The backends of the slons that will restart are noted before the first move."""
        if self.restarting and not self.moved and not self.backends:
            self.backends = slon_backends(cluster, self.restarting)
        events = self.handover.move(cluster, set_id)
        if len(self.moved) == len(self.moves) and self._locked_at is not None:
            self.report["locked_seconds"] = round(clock.now() - self._locked_at, 3)
        return events

    def undo(self, cluster, error):
        """Unlock every set still locked and not moved; return ``error`` saying so."""
        return self.handover.failed(cluster, error)

    def wait_moved(self, cluster, timeout, clock=SYSTEM_CLOCK):
        if not self.moved:
            return
        started = clock.now()
        last = max(self.moved.values(), key=lambda e: e.seqno)
        wait_for_event(cluster, last, None, timeout=timeout, clock=clock)
        wait_origin(cluster, sorted(self.moved), self.to_node, timeout, clock)
        self.report["confirmed_seconds"] = round(clock.now() - started, 3)
        for set_id, event in sorted(self.moved.items()):
            wait_accepted(cluster, event, set_id, self.to_node, timeout, clock,
                          restarting=self.restarting)
        if self.backends:
            wait_for_new_slons(
                cluster, self.backends, timeout,
                "the slons that restart after ACCEPT_SET to run again", clock=clock,
                note="slon's watchdog restarts the worker 10-20 s after it exited, earlier "
                     "when woken (slon_pid_files)")
            self.report["restarted_seconds"] = round(clock.now() - started, 3)


_ORIGINS = "select set_id, set_origin from {ns}.sl_set where set_id = any(%s)"


def wait_origin(cluster, set_ids, to_node, timeout, clock=None):
    """Wait until ``to_node``'s own sl_set shows it as the origin of every set."""
    query = sql.SQL(_ORIGINS).format(ns=cluster.ns)

    def probe():
        rows = cluster.fetch(to_node, query, (list(set_ids),))
        pending = sorted((s, origin) for s, origin in rows if origin != to_node)
        if not pending:
            return True
        return Pending([Behind(to_node, "its sl_set names %s" % ", ".join(
            "node %s as the origin of set %d" % (origin, s) for s, origin in pending))])

    goal = "node %d to become the origin of set%s %s" % (
        to_node, plural(set_ids, "", "s"), ", ".join(map(str, sorted(set_ids))))
    poll_until(probe, timeout, lambda pending: timeout_error(cluster, goal, timeout, pending),
               clock=clock)


_ACCEPT_EVENT = """
select ev_origin, ev_seqno, ev_type from {ns}.sl_event
 where ev_origin = %s and ev_type = 'ACCEPT_SET' and ev_data1 = %s and ev_data4 = %s
 order by ev_seqno desc limit 1
"""


_OWN_EVENT = "select count(*) from {ns}.sl_event where ev_origin = %s and ev_seqno = %s"
_OWN_CONFIRM = """
select coalesce(max(con_seqno), 0) >= %s from {ns}.sl_confirm
 where con_origin = %s and con_received = {ns}.getLocalNodeId(%s)
"""


def accept_before_move(cluster, node, move_event, accept):
    """Whether ``node``, asked itself, processed MOVE_SET and has not processed the
    ACCEPT_SET that follows it: its worker met ACCEPT_SET first and sleeps 10 s in slon's
    retry loop ("ACCEPT_SET - MOVE_SET not received yet")... or is about to process it."""
    moved = cluster.fetch(node, sql.SQL(_OWN_EVENT).format(ns=cluster.ns),
                          (move_event.origin, move_event.seqno))[0][0]
    if not moved:
        return False
    accepted = cluster.fetch(node, sql.SQL(_OWN_CONFIRM).format(ns=cluster.ns),
                             (accept.seqno, accept.origin, cluster.namespace))[0][0]
    return not accepted


def stuck_accept_kicker(cluster, move_event, accept, nodes, clock):
    """``on_behind`` of the ACCEPT_SET wait: a node of ``nodes`` found (by asking it) in
    the state of :func:`accept_before_move` for :data:`slonwake.STUCK_AFTER` seconds has
    its slon worker restarted (:func:`slonwake.kick`), which then finds MOVE_SET at once."""
    stuck = Stuck()

    def on_behind(behind):
        for node, dummy in behind:
            if node not in nodes:
                continue
            if accept_before_move(cluster, node, move_event, accept):
                if stuck.seen(node, clock.now()):
                    kick(clock, node, "ACCEPT_SET %s before MOVE_SET %s" % (
                        accept.seqno, move_event.seqno))
            else:
                stuck.clear(node)
    return on_behind


def wait_accepted(cluster, move_event, set_id, to_node, timeout, clock=None, restarting=()):
    """Wait until every node has confirmed the new origin's ACCEPT_SET for ``move_event``.

    The new origin creates ACCEPT_SET when it processes MOVE_SET; the other nodes fix
    their sync position for the set when they process it (and their slon then restarts
    its worker, which takes about 10 s). Once it is confirmed, every node has finished
    the move. Returns the ACCEPT_SET event (None if it is gone: cleaned up, so confirmed).
    When the run can restart the slons of ``restarting`` (``slon_pid_files``), one found
    stuck in slon's ACCEPT_SET retry loop is restarted (:func:`stuck_accept_kicker`).
    """
    rows = cluster.fetch(to_node, sql.SQL(_ACCEPT_EVENT).format(ns=cluster.ns),
                         (to_node, str(set_id), str(move_event.seqno)))
    if not rows:
        return None
    accept = Event(*rows[0])
    on_behind = None
    if restarting and can_kick(clock):
        on_behind = stuck_accept_kicker(cluster, move_event, accept, set(restarting), clock)
    wait_for_event(cluster, accept, None, timeout=timeout, wait_on=to_node, clock=clock,
                   on_behind=on_behind)
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
        wait_origin(cluster, [move.set_id], to_node, timeout, ctx.clock)
        if event is not None:
            wait_accepted(cluster, event, move.set_id, to_node, timeout, ctx.clock)
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


def build_plan(ns, moves, timeout, admin_nodes, restarting=()):
    """Plan from located sets (pure): (plan, Switchover or None). ``restarting``: the
    nodes whose slon the run waits for after ACCEPT_SET (those it can wake)."""
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
        runner = Switchover(ns, olds[0], to_move[0].new_origin, to_move, timeout,
                            restarting)
        plan.extend(runner.plan())
    return plan, runner


def restarting_nodes(data, wake_nodes):
    """The nodes whose slon restarts after ACCEPT_SET and that the run can wake (pure):
    the active nodes of the old origin's catalog, in admin_conninfo, among ``wake_nodes``
    (the nodes of ``slon_pid_files``), but the old and the new origin."""
    if not wake_nodes or data.preflight is None:
        return []
    osnap = data.preflight.snapshots.get(data.preflight.old)
    if not hasattr(osnap, "nodes"):
        return []
    active = set(n.id for n in osnap.nodes.values() if n.active)
    return sorted(n for n in set(wake_nodes) & active & set(data.admin_nodes)
                  if n not in (data.preflight.old, data.to_node))


def decide_switchover(data, ns, max_lag_events=DEFAULT_MAX_LAG_EVENTS,
                      max_lag_seconds=DEFAULT_MAX_LAG_SECONDS, timeout=300, slon_grace=None,
                      wake_nodes=(), slons_woken=None):
    """The Planned switchover, decided from ``data`` (a :class:`SwitchoverRead`) alone.

    ``slon_grace`` (default: ``min(SLON_GRACE, timeout)``) is how long the plan's first
    step waits for a stopped slon when that is the only problem. ``wake_nodes``: the
    nodes whose slon the run can wake (``slon_pid_files``); the final wait then also
    waits until those that restart after ACCEPT_SET run again. ``slons_woken`` (a list the
    waker fills while the plan runs) is returned as ``extra['slons_woken']``.
    """
    moves = locate_moves(data)
    to_move = [m for m in moves if m.action in (MOVE, RESUME)]
    down = []
    if to_move:
        if data.preflight is None or data.preflight.old != to_move[0].old_origin:
            raise SlonyError("internal error: the preflight of node %d was not read"
                             % to_move[0].old_origin)
        down = check_preflight(data.preflight, data.to_node, to_move, data.admin_nodes,
                               max_lag_events, max_lag_seconds)
    plan, runner = build_plan(ns, moves, timeout, data.admin_nodes,
                              restarting_nodes(data, wake_nodes) if to_move else ())
    slon_wait = None
    if down:
        grace = min(SLON_GRACE, timeout) if slon_grace is None else slon_grace
        step = slon_wait_step(to_move[0].old_origin, data.to_node, to_move, down, grace)
        plan.steps.insert(0, step)
        slon_wait = {"nodes": down, "timeout": grace, "description": step.description}
    extra = {
        "sets": [{"id": m.set_id, "old_origin": m.old_origin, "new_origin": m.new_origin,
                  "action": m.action,
                  "move_event": event_dict(m.event) if m.event is not None else None}
                 for m in moves],
        "timings": runner.report if runner is not None else {},
        "slon_wait": slon_wait,
        "slons_woken": [] if slons_woken is None else slons_woken,
    }
    return Planned(plan, {"sets": set_views(moves)}, {"sets": set_views(moves, after=True)},
                   extra)


def plan_switchover(cluster, to_node, set_id=None, from_node=None,
                    max_lag_events=DEFAULT_MAX_LAG_EVENTS,
                    max_lag_seconds=DEFAULT_MAX_LAG_SECONDS, timeout=300, wake_nodes=(),
                    slons_woken=None):
    """Plan moving ``set_id`` (or every set of ``from_node``) to ``to_node``: read, then
    decide (``wake_nodes``: see :func:`decide_switchover`). Returns a Planned: ``extra['sets']`` says what happens to each set,
    ``extra['timings']`` is filled while the plan runs, ``extra['slon_wait']`` names
    the stopped slons the run would first wait for (None when there are none).
    """
    if (set_id is None) == (from_node is None):
        raise SlonyError("give exactly one of set_id and from_node")
    data = read_switchover(cluster, to_node, set_id=set_id, from_node=from_node)
    return decide_switchover(data, cluster.ns, max_lag_events, max_lag_seconds, timeout,
                             wake_nodes=wake_nodes, slons_woken=slons_woken)


__all__ = ["plan_switchover", "read_switchover", "decide_switchover", "SwitchoverRead",
           "PreflightRead", "Switchover", "preflight_problems", "refusal_message",
           "set_position", "wait_origin", "wait_accepted"]
