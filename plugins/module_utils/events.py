# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Submitting Slony events and waiting, boundedly, for their confirmation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from collections import namedtuple

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = sql = None

from .errors import SlonyError

Event = namedtuple("Event", "origin seqno type")

# Slonik polls once a second; we poll faster so that short waits end sooner: the first
# poll again after FIRST_POLL seconds, then 1.5 times later each time, up to POLL_INTERVAL.
POLL_INTERVAL = 0.1
FIRST_POLL = 0.02
DEFAULT_TIMEOUT = 300


def poll_delays(interval=POLL_INTERVAL, first=FIRST_POLL):
    """The pauses between polls: short at first (most waits are short), then ``interval``."""
    delay = min(first, interval)
    while True:
        yield delay
        delay = min(delay * 1.5, interval)


def event_dict(event):
    return {"origin": event.origin, "seqno": event.seqno, "type": event.type}


def submit_event(cluster, node, query, params=None, locks=("sl_event_lock", "sl_config_lock")):
    """Run one event-generating call on ``node`` as slonik does, return the events it made.

    One short transaction: lock ``sl_event_lock`` then ``sl_config_lock`` (the order
    slonik and slon use), call the function, read the events created, commit.
    The events are found from the event sequence read under the lock, not from the
    function's return value (``subscribeSet`` returns the set id, for instance),
    and a call that creates several events (``moveSet``: SYNC + MOVE_SET) reports
    all of them.
    """
    return submit_events(cluster, node, [(query, params)], locks=locks)


def submit_events(cluster, node, calls, locks=("sl_event_lock", "sl_config_lock")):
    """Run several event-generating calls ``[(query, params)]`` on ``node`` in one
    transaction under the locks (as slonik runs the SET ADD TABLE calls of one command):
    all of them commit, or none. Returns the events they made, in order."""
    conn = cluster.connection(node)
    ns = cluster.ns
    texts = []
    try:
        with conn.cursor() as cur:
            if locks:
                cur.execute(sql.SQL("lock table {}").format(
                    sql.SQL(", ").join(sql.SQL("{}.{}").format(ns, sql.Identifier(lk))
                                       for lk in locks)))
            cur.execute(sql.SQL("select last_value, is_called from {}.sl_event_seq").format(ns))
            last_value, is_called = cur.fetchone()
            before = last_value if is_called else last_value - 1
            for query, params in calls:
                texts.append(cluster.render(node, query, params))
                cur.execute(query, params)
            cur.execute(sql.SQL(
                "select ev_origin, ev_seqno, ev_type from {ns}.sl_event"
                " where ev_origin = {ns}.getLocalNodeId(%s) and ev_seqno > %s"
                " order by ev_seqno").format(ns=ns), (cluster.namespace, before))
            events = [Event(*row) for row in cur.fetchall()]
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        doing = _first_line(texts[-1]) if texts else "lock table"
        if len(calls) > 1:
            doing += " (call %d of %d in one transaction; none of them was committed)" % (
                len(texts), len(calls))
        raise cluster.error(node, exc, doing=doing)
    for text in texts:
        cluster.log(node, text)
    return events


def execute(cluster, node, query, params=None):
    """Run one statement on ``node`` in its own transaction (no event)."""
    conn = cluster.connection(node)
    text = cluster.render(node, query, params)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise cluster.error(node, exc, doing=_first_line(text))
    cluster.log(node, text)


def _first_line(text):
    line = text.strip().splitlines()[0] if text and text.strip() else ""
    return line if len(line) <= 200 else line[:197] + "..."


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


_LAGGING_ALL = """
select n.no_id, coalesce(max(c.con_seqno), 0)
  from {ns}.sl_node n
  left join {ns}.sl_confirm c on c.con_origin = %(origin)s and c.con_received = n.no_id
 where n.no_id <> %(origin)s and n.no_active
 group by n.no_id
having coalesce(max(c.con_seqno), 0) < %(seqno)s
 order by n.no_id
"""

# Listed nodes that the waiting node does not know yet count as not confirmed.
_LAGGING_LISTED = """
select w.no_id, coalesce(max(c.con_seqno), 0)
  from unnest(%(nodes)s::int4[]) as w(no_id)
  left join {ns}.sl_confirm c on c.con_origin = %(origin)s and c.con_received = w.no_id
 group by w.no_id
having coalesce(max(c.con_seqno), 0) < %(seqno)s
 order by w.no_id
"""


def lagging_nodes(cluster, event, confirmers=None, wait_on=None):
    """[(node, confirmed seqno)] of the nodes that have not confirmed ``event`` yet."""
    wait_on = event.origin if wait_on is None else wait_on
    params = {"origin": event.origin, "seqno": event.seqno}
    if confirmers is None:
        query = _LAGGING_ALL
    else:
        query = _LAGGING_LISTED
        params["nodes"] = sorted(n for n in confirmers if n != event.origin)
        if not params["nodes"]:
            return []
    return [tuple(r) for r in cluster.fetch(wait_on, sql.SQL(query).format(ns=cluster.ns), params)]


def wait_for_event(cluster, event, confirmers=None, timeout=DEFAULT_TIMEOUT, wait_on=None,
                   interval=POLL_INTERVAL, clock=time.monotonic, sleep=time.sleep):
    """Wait until ``event`` is confirmed by ``confirmers`` (default: every active node).

    Like slonik's WAIT FOR EVENT, but the poll is a LEFT JOIN (a node with no
    confirmation at all is behind, not done), it polls every ``interval`` seconds,
    and it gives up after ``timeout`` seconds with an error naming each node that
    is behind and the state of its slon daemon. Polls are short at first, then every
    ``interval`` seconds (:func:`poll_delays`).
    """
    deadline = clock() + timeout
    delays = poll_delays(interval)
    while True:
        behind = lagging_nodes(cluster, event, confirmers, wait_on)
        if not behind:
            return
        if clock() >= deadline:
            raise timeout_error(cluster, event, behind, timeout)
        sleep(next(delays))


def timeout_error(cluster, event, behind, timeout):
    parts = []
    for node, confirmed in behind:
        parts.append("node %d (confirmed up to %s; slon %s)" % (
            node, confirmed or "nothing", slon_state(cluster, node)))
    origin_slon = slon_state(cluster, event.origin)
    if origin_slon != "running":
        # The waiting node learns of confirmations through its own slon.
        parts.append("and node %d's own slon, which collects the confirmations, is %s"
                     % (event.origin, origin_slon))
    return SlonyError(
        "timed out after %ss waiting for event %s (%s) of node %d to be confirmed by %s" % (
            timeout, event.seqno, event.type, event.origin, ", ".join(parts)),
        node=behind[0][0], queries=cluster.queries)
