# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication sets: CREATE SET, DROP SET, MERGE SET, LOCK SET and UNLOCK SET, planned
from the origin's catalog."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .slonik import quote as slonik_quote
from .pg import sql

from .catalog import read_snapshot
from .errors import SlonyError
from .events import Event, wait_for_event
from .plan import CALLBACK, EXEC, WAIT, Plan, Planned, Step, call, function_call, wait
from .setmove import lock_set, unlock_set, wait_older_transactions
from .tables import merge_steps

DEFAULT_COMMENT = "A replication set so boring no one thought to give it a name"


def set_view(entry):
    if entry is None:
        return None
    return {"id": entry.id, "origin": entry.origin, "comment": entry.comment,
            "locked": entry.locked is not None}


def caught_up_waits(nodes, target, exclude=()):
    """slonik's "config caught up": ``target`` has confirmed every other node's last
    configuration event before it acts on the configuration it sees. ``nodes``: the
    initialised admin nodes (read beforehand, ``cluster.initialized_nodes()``). Pure."""
    return [wait(other, "wait until node %d has confirmed the last configuration event of "
                        "node %d" % (target, other), confirmers=[target], required=True,
                 wait_on=target)
            for other in nodes if other != target and other not in exclude]


_LAST_DROP_SET = """
select max(ev_seqno) from {ns}.sl_event
 where ev_origin = {ns}.getLocalNodeId(%s) and ev_type = 'DROP_SET'
"""


def drop_sets_seen(nodes, origin):
    """slonik's wait before CREATE SET: ``origin`` has processed every DROP SET submitted
    on another node (else its slon could later drop a new set that reuses the id).
    Only DROP_SET events count, so a fresh cluster does not wait for anything.

    ``nodes``: the initialised admin nodes, read beforehand. Pure: the DROP SET events
    are read when the step runs (they may be submitted between planning and running)."""
    others = [n for n in nodes if n != origin]
    if not others:
        return []

    def run(cluster, step, ctx):
        query = sql.SQL(_LAST_DROP_SET).format(ns=cluster.ns)
        for other in others:
            seqno = cluster.fetch(other, query, (cluster.namespace,))[0][0]
            if seqno is not None:
                wait_for_event(cluster, Event(other, seqno, "DROP_SET"), [origin],
                               timeout=ctx.timeout, wait_on=origin, clock=ctx.clock)
    return [Step(WAIT, origin, "wait until node %d has processed the DROP SET events of "
                               "node(s) %s" % (origin, ", ".join(map(str, others))),
                 run=run, required=True)]


# What plan_set reads before deciding: the set as its origin sees it (None: unknown
# there), the initialised admin nodes, and the nodes where the set's comment is stored
# (the origin and every other initialised node that knows the set; only read when the
# comment is to change).
SetFacts = namedtuple("SetFacts", "current nodes comment_nodes merge")
SetFacts.__new__.__defaults__ = (None,)

# What MERGE SET decides from (read only with merge_into): the set merged into as the
# origin sees it (None: unknown), and the receivers of both sets.
MergeFacts = namedtuple("MergeFacts", "into receivers into_receivers")


def read_set(cluster, set_id, origin, comment=None, state="present", merge_into=None):
    """The reads of :func:`plan_set`, as :class:`SetFacts`."""
    cluster.require_node(origin, "the origin of set %d" % set_id)
    snap = read_snapshot(cluster, origin)
    current = snap.sets.get(set_id)
    nodes, comment_nodes = [], []
    if merge_into is not None:
        return SetFacts(current, nodes, comment_nodes, MergeFacts(
            snap.sets.get(merge_into), snap.receivers(set_id), snap.receivers(merge_into)))
    if state != "present" or (current is not None and current.origin != origin):
        return SetFacts(current, nodes, comment_nodes)
    renamed = current is not None and comment is not None and comment != current.comment
    if current is None or renamed:
        # Only a new set (its DROP SET wait) or a new comment involves the other nodes.
        nodes = cluster.initialized_nodes()
    if renamed:
        comment_nodes = [node for node in nodes
                         if node == origin or set_id in read_snapshot(cluster, node).sets]
    return SetFacts(current, nodes, comment_nodes)


def decide_set(ns, set_id, origin, facts, comment=None, state="present", locked=None,
               merge_into=None):
    """The plan for set ``set_id`` from :class:`SetFacts`. Pure.

    ``locked``: True locks the set (LOCK SET, then the wait for the transactions that
    were running when the lock triggers were created), False unlocks it (UNLOCK SET),
    None leaves it as it is. Only an existing set is locked or unlocked.

    ``merge_into`` (with state=absent): the set's tables and sequences go into that set
    (MERGE SET) rather than out of replication."""
    current = facts.current
    before = set_view(current) or {"id": set_id, "state": "absent"}
    plan = Plan()
    if current is not None and current.origin != origin:
        raise SlonyError(
            "set %d exists with origin node %d, not node %d; a set's origin is never moved "
            "silently: use dany.slony.slony_switchover (or slony_failover) to move it"
            % (set_id, current.origin, origin), node=origin)
    if state == "absent":
        after = {"id": set_id, "state": "absent"}
        if merge_into is not None:
            return Planned(_merge_plan(ns, set_id, origin, facts.merge, merge_into, current),
                           before, dict(after, merged_into=merge_into))
        if current is not None:
            plan.add(call(ns, origin, "dropSet", (set_id,), "drop set %d" % set_id,
                          slonik="drop set (id = %d, origin = %d);" % (set_id, origin)))
            plan.add(wait(origin, "wait until every node has dropped set %d" % set_id))
        return Planned(plan, before, after)

    if current is None:
        if locked:
            raise SlonyError("set %d does not exist yet: create it (and add its tables) "
                             "before locking it" % set_id, node=origin)
        comment = DEFAULT_COMMENT if comment is None else comment
        plan.extend(drop_sets_seen(facts.nodes, origin))
        plan.add(call(ns, origin, "storeSet", (set_id, comment),
                      "create set %d on origin node %d" % (set_id, origin),
                      slonik="create set (id = %d, origin = %d, comment = %s);"
                             % (set_id, origin, slonik_quote(comment))))
        plan.add(wait(origin, "wait until every node knows set %d" % set_id))
        after = {"id": set_id, "origin": origin, "comment": comment, "locked": False}
        return Planned(plan, before, after)

    after = dict(before)
    if comment is not None and comment != current.comment:
        # Slony has no event for a comment change; storeSet_int updates the row
        # where it runs, so it runs on every node we can reach that knows the set.
        after["comment"] = comment
        for node in facts.comment_nodes:
            plan.add(call(ns, node, "storeSet_int", (set_id, origin, comment),
                          "set the comment of set %d on node %d" % (set_id, node),
                          kind=EXEC))
    if locked is not None and locked != after["locked"]:
        after["locked"] = locked
        plan.add(lock_step(ns, set_id, origin) if locked else call(
            ns, origin, "unlockSet", (set_id,), "unlock set %d on node %d (writes to its "
            "tables accepted again)" % (set_id, origin),
            slonik="unlock set (id = %d, origin = %d);" % (set_id, origin)))
    return Planned(plan, before, after)


def _merge_plan(ns, set_id, origin, merge, merge_into, current):
    """MERGE SET of ``set_id`` into ``merge_into``, or nothing when it is already gone.
    Refused, naming every problem, unless both sets have the same origin and the same
    subscribers (Slony's own conditions). Pure."""
    plan = Plan()
    if current is None:
        if merge.into is None:
            raise SlonyError("set %d does not exist, nor set %d to merge it into" % (
                set_id, merge_into), node=origin)
        return plan
    problems = []
    if merge_into == set_id:
        problems.append("a set cannot be merged into itself")
    elif merge.into is None:
        problems.append("set %d does not exist (node %d does not know it)" % (merge_into, origin))
    elif merge.into.origin != origin:
        problems.append("set %d has origin node %d, set %d node %d: Slony merges only sets "
                        "of one origin" % (merge_into, merge.into.origin, set_id, origin))
    elif sorted(merge.receivers) != sorted(merge.into_receivers):
        problems.append("set %d is subscribed by node(s) %s and set %d by node(s) %s: Slony "
                        "merges only sets with the same subscribers" % (
                            set_id, ", ".join(map(str, merge.receivers)) or "none", merge_into,
                            ", ".join(map(str, merge.into_receivers)) or "none"))
    if problems:
        raise SlonyError("cannot merge set %d into set %d: %s"
                         % (set_id, merge_into, "; ".join(problems)), node=origin)
    plan.extend(merge_steps(ns, origin, merge_into, set_id))
    return plan


def lock_step(ns, set_id, origin):
    """LOCK SET as slonik runs it: ``lockSet`` in its own transaction, then a wait until
    every transaction that was running when the lock triggers were created has ended
    (bounded by ``wait_timeout``; on timeout the set is unlocked again and the error
    names the backends still running)."""
    return Step(CALLBACK, origin, "lock set %d on node %d (writes to its tables are refused), "
                "then wait until the transactions older than the lock have ended"
                % (set_id, origin),
                slonik="lock set (id = %d, origin = %d);" % (set_id, origin),
                query=function_call(ns, "lockSet", (set_id,)), params=(set_id,),
                function="lockSet", args=(set_id,), run=_lock_set)


def _lock_set(cluster, step, ctx):
    set_id, origin = step.args[0], step.node
    xmax = lock_set(cluster, origin, set_id, timeout=ctx.timeout)
    goal = ("the transactions that were running when set %d was locked on node %d to end"
            % (set_id, origin))
    note = ("long transactions in any database of node %d's PostgreSQL instance delay "
            "LOCK SET" % origin)
    try:
        wait_older_transactions(cluster, origin, xmax, ctx.timeout, goal, clock=ctx.clock,
                                note=note)
    except SlonyError as exc:
        try:
            unlock_set(cluster, origin, set_id)
        except SlonyError as unlock_error:
            raise SlonyError("%s; could not unlock set %d again (%s): unlock it by hand with "
                             "slonik 'unlock set (id = %d, origin = %d);'" % (
                                 exc.message, set_id, unlock_error.message, set_id, origin),
                             node=origin, queries=cluster.queries)
        raise SlonyError("%s; set %d unlocked again on node %d (writes accepted again)"
                         % (exc.message, set_id, origin), node=origin, queries=cluster.queries)
    return []


def plan_set(cluster, set_id, origin, comment=None, state="present", locked=None,
             merge_into=None):
    """Plan for set ``set_id`` with ``origin``: read (:func:`read_set`), then decide
    (:func:`decide_set`). Returns :class:`plan.Planned`."""
    if merge_into is not None and state != "absent":
        raise SlonyError("merge_into: only with state=absent (the set goes, its tables and "
                         "sequences join set %d)" % merge_into)
    facts = read_set(cluster, set_id, origin, comment, state, merge_into)
    return decide_set(cluster.ns, set_id, origin, facts, comment, state, locked, merge_into)
