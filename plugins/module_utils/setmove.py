# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LOCK SET, the wait for the older transactions, MOVE SET: the one sequence that moves
a set's origin, used by the switchover and by the last step of a failover.

As slonik 2.2 does it (reference §2.21-2.23):

1. **LOCK SET** on the origin, in a transaction of its own: ``lock table
   sl_config_lock``, ``lockSet(set)``, read ``txid_snapshot_xmax`` of the current
   snapshot, commit. From then on writes to the set's tables fail on the origin.
2. Wait until ``txid_snapshot_xmin`` on the origin has reached that xmax: every
   transaction that could still write to the set without meeting the lock trigger has
   ended (``moveSet`` refuses to run before that). Long transactions in *any* database
   of the origin's PostgreSQL instance delay this; a timeout names them.
3. **MOVE SET** on the origin, as an event (``moveSet`` creates SYNC and MOVE_SET).

:class:`SetHandover` keeps what was locked and moved, so that a failure can unlock the
sets that were locked and not moved (the switchover does; a failover leaves them locked
for its next run, which resumes with the lock).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .pg import psycopg2, sql

from .errors import SlonyError
from .events import submit_event
from .plan import function_call
from .waits import Behind, Pending, poll_until, slon_state, timeout_error, timeout_message

# A stopped slon is looked at again this often while it is waited for.
SLON_POLL = 0.5

_XMAX = "select pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())"
_XMIN_REACHED = ("select pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())"
                 " >= %s")

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


def plural(items, one, many):
    return one if len(items) == 1 else many


def id_list(ids):
    return ", ".join(str(i) for i in sorted(ids))


def lock_set(cluster, origin, set_id, timeout=None):
    """LOCK SET: ``lockSet`` in its own transaction under sl_config_lock; returns the
    xmax the transaction wait must reach. ``timeout`` bounds the wait for the lock."""
    conn = cluster.connection(origin)
    lock_config = sql.SQL("lock table {}.{}").format(cluster.ns, sql.Identifier("sl_config_lock"))
    call = function_call(cluster.ns, "lockSet", (set_id,))
    try:
        with conn.cursor() as cur:
            if timeout is not None:
                cur.execute("select pg_catalog.set_config('lock_timeout', %s, true)",
                            ("%ds" % max(1, int(timeout)),))
            cur.execute(lock_config)
            cur.execute(call, (set_id,))
            cur.execute(_XMAX)
            xmax = cur.fetchone()[0]
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise cluster.error(origin, exc, doing="lockSet(%d)" % set_id)
    for text in (cluster.render(origin, lock_config), cluster.render(origin, call, (set_id,)),
                 _XMAX):
        cluster.log(origin, text)
    return xmax


def old_transactions(cluster, node, xmax):
    """Descriptions of the transactions on ``node`` older than ``xmax`` (best effort)."""
    try:
        rows = cluster.fetch(node, sql.SQL(_OLD_TRANSACTIONS), (xmax,))
    except SlonyError:
        return []
    return ["pid %s (database %s, user %s, application %r, open for %ss)" % tuple(r) for r in rows]


def wait_older_transactions(cluster, node, xmax, timeout, goal, clock=None, note=None):
    """Wait until every transaction on ``node`` older than ``xmax`` has ended.

    On timeout the error names ``goal`` and the backends still running (the
    :mod:`waits` format), then ``note``.
    """
    query = sql.SQL(_XMIN_REACHED)
    detail = "transactions older than txid %s still running" % xmax

    def probe():
        if cluster.fetch(node, query, (xmax,))[0][0]:
            return xmax
        return Pending([Behind(node, detail)], note=note)

    def on_timeout(pending):
        blockers = old_transactions(cluster, node, xmax)
        if blockers:
            pending = Pending([Behind(node, "%s: %s" % (detail, "; ".join(blockers)))],
                              note=note)
        return timeout_error(cluster, goal, timeout, pending, node=node)

    return poll_until(probe, timeout, on_timeout, clock=clock)


def move_set(cluster, origin, set_id, new_origin):
    """MOVE SET: ``moveSet`` under sl_event_lock and sl_config_lock; returns its events."""
    query = function_call(cluster.ns, "moveSet", (set_id, new_origin))
    return submit_event(cluster, origin, query, (set_id, new_origin))


def unlock_set(cluster, origin, set_id):
    """UNLOCK SET: ``unlockSet`` under sl_event_lock and sl_config_lock."""
    query = function_call(cluster.ns, "unlockSet", (set_id,))
    return submit_event(cluster, origin, query, (set_id,))


def wait_for_slons(cluster, nodes, timeout, refusal, clock=None):
    """Wait until the slon daemon of every node in ``nodes`` runs again (a live
    ``sl_nodelock`` entry on its node), for at most ``timeout`` seconds.

    Both operations give a stopped slon this grace before they change anything (a slon
    restarts its worker some seconds after ACCEPT_SET, FAILOVER_NODE...). On timeout the
    error is ``refusal(nodes still down, the waits timeout text)``.
    """
    down = sorted(nodes)

    def probe():
        down[:] = [n for n in down if slon_state(cluster, n) != "running"]
        if not down:
            return True
        return Pending([Behind(n, "no live sl_nodelock entry on node %d" % n) for n in down])

    def on_timeout(pending):
        waited = timeout_message("the slon daemon%s of node%s %s to run" % (
            plural(down, "", "s"), plural(down, "", "s"), id_list(down)), timeout,
            pending.behind, slon=lambda n: slon_state(cluster, n))
        return SlonyError(refusal(list(down), waited), node=down[0],
                          queries=getattr(cluster, "queries", None))

    return poll_until(probe, timeout, on_timeout, clock=clock, interval=SLON_POLL,
                      first=SLON_POLL)


# The backend of the node's running slon (its live sl_nodelock registration).
SLON_BACKEND = """
select nl_backendpid from {ns}.sl_nodelock
 where nl_nodeid = {ns}.getLocalNodeId(%s)
   and exists (select 1 from pg_catalog.pg_stat_activity where pid = nl_backendpid)
"""

_SLON_REGISTERED_AGAIN = """
select nl_backendpid from {ns}.sl_nodelock
 where nl_nodeid = {ns}.getLocalNodeId(%s) and nl_backendpid <> %s
   and exists (select 1 from pg_catalog.pg_stat_activity where pid = nl_backendpid)
"""


def slon_backends(cluster, nodes):
    """{node: the backend of its running slon (None when none runs)}, each read on the node."""
    query = sql.SQL(SLON_BACKEND).format(ns=cluster.ns)
    found = {}
    for node in sorted(nodes):
        rows = cluster.fetch(node, query, (cluster.namespace,))
        found[node] = rows[0][0] if rows else None
    return found


def wait_for_new_slons(cluster, backends, timeout, goal, clock=None, note=None):
    """Wait until the slon of every node of ``backends`` ({node: backend before}) runs
    with another backend than the one noted: it restarted its worker since. Nodes noted
    with no backend (no slon ran) are not waited for."""
    pending = dict((n, b) for n, b in backends.items() if b is not None)
    if not pending:
        return
    query = sql.SQL(_SLON_REGISTERED_AGAIN).format(ns=cluster.ns)

    def probe():
        for node in sorted(pending):
            if cluster.fetch(node, query, (cluster.namespace, pending[node])):
                del pending[node]
        if not pending:
            return True
        return Pending([Behind(n, "its slon has not registered again since backend %d" % b)
                        for n, b in sorted(pending.items())], note=note)

    poll_until(probe, timeout, lambda p: timeout_error(cluster, goal, timeout, p),
               clock=clock)


class SetHandover:
    """LOCK SET -> wait for the older transactions -> MOVE SET, for sets of one origin.

    ``locks`` are the locks found in the catalog (set id -> ``set_locked``, an
    interrupted run's): they are reused, not taken again. With ``unlock_on_failure``
    a failure unlocks every set locked and not moved, and its error says so.
    ``on_locked`` and ``on_moved`` are called (no argument) when the first lock is
    taken and when the last set is moved (for timings).
    """

    def __init__(self, origin, new_origin, locks=None, unlock_on_failure=True,
                 failure_note=None):
        self.origin = origin
        self.new_origin = new_origin
        self.locks = dict(locks or {})  # set id -> xmax of the lock not yet moved
        self.moved = {}                 # set id -> its MOVE_SET event
        self.unlock_on_failure = unlock_on_failure
        self.failure_note = failure_note

    def lock(self, cluster, set_id, timeout=None):
        """LOCK SET ``set_id``; returns the lock's xmax."""
        try:
            xmax = lock_set(cluster, self.origin, set_id, timeout)
        except SlonyError as exc:
            raise self.failed(cluster, exc)
        self.locks[set_id] = xmax
        return xmax

    def wait_transactions(self, cluster, timeout, clock=None, set_ids=None):
        """Wait until the transactions older than the locks of ``set_ids`` (default:
        every lock held) have ended on the origin."""
        held = sorted(s for s in self.locks if set_ids is None or s in set_ids)
        if not held:
            return
        goal = ("the transactions that were running when set%s %s %s locked on node %d to "
                "end" % (plural(held, "", "s"), id_list(held), plural(held, "was", "were"),
                         self.origin))
        note = ("long transactions in any database of node %d's PostgreSQL instance delay "
                "the move" % self.origin)
        try:
            wait_older_transactions(cluster, self.origin, max(self.locks[s] for s in held),
                                    timeout, goal, clock=clock, note=note)
        except SlonyError as exc:
            raise self.failed(cluster, exc)

    def move(self, cluster, set_id):
        """MOVE SET ``set_id`` to the new origin; returns its events (SYNC, MOVE_SET)."""
        try:
            events = move_set(cluster, self.origin, set_id, self.new_origin)
        except SlonyError as exc:
            raise self.failed(cluster, exc)
        self.locks.pop(set_id, None)
        self.moved[set_id] = [e for e in events if e.type == "MOVE_SET"][-1]
        return events

    def handover(self, cluster, set_id, timeout, clock=None):
        """The whole sequence for one set (its lock reused when it has one)."""
        if set_id not in self.locks:
            self.lock(cluster, set_id, timeout)
        self.wait_transactions(cluster, timeout, clock, set_ids=[set_id])
        return self.move(cluster, set_id)

    def failed(self, cluster, error):
        """``error``, completed with what was moved and (with ``unlock_on_failure``)
        after unlocking every set still locked and not moved."""
        message = error.message
        if self.moved:
            message += "; set%s %s had already been moved to node %d" % (
                plural(self.moved, "", "s"), id_list(self.moved), self.new_origin)
        if self.unlock_on_failure:
            message += self._unlock_all(cluster)
        elif self.failure_note and self.locks:
            message += "; " + self.failure_note % {"sets": id_list(self.locks),
                                                   "origin": self.origin}
        return SlonyError(message, node=error.node, queries=cluster.queries)

    def _unlock_all(self, cluster):
        unlocked, failed = [], []
        for set_id in sorted(self.locks):
            try:
                unlock_set(cluster, self.origin, set_id)
                unlocked.append(set_id)
            except SlonyError as exc:
                failed.append("set %d (%s)" % (set_id, exc.message))
        self.locks = {}
        text = ""
        if unlocked:
            text += ("; set%s %s unlocked again on node %d (writes accepted there again), "
                     "not moved" % (plural(unlocked, "", "s"), id_list(unlocked), self.origin))
        if failed:
            text += ("; could not unlock %s: unlock by hand with slonik 'unlock set (id = N, "
                     "origin = %d);'" % (", ".join(failed), self.origin))
        return text


__all__ = ["SetHandover", "wait_for_slons", "lock_set", "move_set", "unlock_set",
           "old_transactions", "wait_older_transactions"]
