# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Submitting Slony events and waiting, boundedly, for their confirmation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .pg import psycopg2, sql

from .waits import (DEFAULT_TIMEOUT, Behind, Pending, poll_until, slon_state,  # noqa: F401
                    timeout_error)

Event = namedtuple("Event", "origin seqno type")


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
                   clock=None, on_behind=None):
    """Wait until ``event`` is confirmed by ``confirmers`` (default: every active node).

    Like slonik's WAIT FOR EVENT, but the poll is a LEFT JOIN (a node with no
    confirmation at all is behind, not done), it polls through the waiter
    (:func:`waits.poll_until`), and it gives up after ``timeout`` seconds with an
    error naming each node that is behind and the state of its slon daemon.
    ``on_behind([(node, confirmed seqno)])`` is called after each poll that finds nodes
    behind (a caller asks those nodes themselves what holds them up).
    """
    waiting = event.origin if wait_on is None else wait_on

    def probe():
        behind = lagging_nodes(cluster, event, confirmers, wait_on)
        if not behind:
            return event
        if on_behind is not None:
            on_behind(behind)
        return Pending([Behind(node, "confirmed up to %s" % (seqno or "nothing"))
                        for node, seqno in behind])

    def on_timeout(pending):
        own = slon_state(cluster, waiting)
        if own != "running":
            # The waiting node learns of confirmations through its own slon.
            pending.note = ("the slon of node %d, which collects the confirmations, is %s"
                            % (waiting, own))
        return timeout_error(cluster, goal, timeout, pending)

    goal = "event %s (%s) of node %d to be confirmed" % (event.seqno, event.type, event.origin)
    return poll_until(probe, timeout, on_timeout, clock=clock)
