# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CLONE PREPARE and CLONE FINISH: a new node made from a copy of a subscriber's database.

Prepare (on the provider, the subscriber that is copied): ``cloneNodePrepare`` gives
the cluster a node N that is a twin of the provider P (P's node row under N, P's paths
with a pending conninfo, P's subscriptions and confirmations as N's). Then the
provider's database is copied (pg_dump and restore, outside this module), and Finish,
on the restored copy, makes it node N (``cloneNodeFinish``: the local node id, the oids
of the replicated relations, the confirmations). The copy keeps the provider's
``sl_setsync``: it goes on replicating from where the provider was when it was dumped,
without copying a table again.

Both phases read first and decide in pure functions: a prepared clone is not prepared
again, a finished one not finished again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .pg import psycopg2, sql

from .catalog import catalog_query, read_snapshot, snapshot_from_row
from .cluster import NODE_INITIALIZED, NODE_NO_SCHEMA
from .errors import SlonyError
from .nodes import Names, probe_states
from .plan import CALLBACK, EVENT, Plan, Planned, Step, call, wait
from .slonik import quote as slonik_quote

PREPARE = "prepare"
FINISH = "finish"

# Phases of a clone, as the before/after views show them.
ABSENT = "absent"          # the cluster does not know node N
PREPARED = "prepared"      # node N is a twin of the provider; its database is not N yet
RESTORED = "restored"      # node N's database is a copy of the provider's (local id P)
FINISHED = "finished"      # node N's database is node N

# What prepare reads: the names, {admin node: (state, local id) or ("unreachable",
# message)} and the provider's catalog.
PrepareRead = namedtuple("PrepareRead", "names states snapshot")

# What finish reads: node N's database state, its catalog when it has one (read
# without the identity check: a restored copy says it is the provider), and the
# physical identity (system identifier, database name) behind N's and P's conninfo.
FinishRead = namedtuple("FinishRead", "names state snapshot identity provider_identity")


def _subscriptions(snap, receiver):
    """(set, provider, forward) of ``receiver``'s subscriptions in ``snap``, sorted."""
    return sorted((s.set, s.provider, bool(s.forward)) for s in snap.subscriptions.values()
                  if s.receiver == receiver)


def _view(node, provider, phase, comment=None, sets=(), local_id=None, setsync=None):
    view = {"id": node, "clone_of": provider, "phase": phase}
    if comment is not None:
        view["comment"] = comment
    if sets:
        view["sets"] = list(sets)
    if local_id is not None:
        view["local_node_id"] = local_id
    if setsync is not None:
        view["setsync"] = setsync
    return view


# -- CLONE PREPARE --------------------------------------------------------------------

def read_clone_prepare(cluster, node, provider):
    """The reads of :func:`decide_clone_prepare`: every admin node's state (node N's
    database may not exist yet) and the provider's catalog."""
    cluster.require_node(provider, "clone_from (the subscriber that is cloned)")
    states = probe_states(cluster, cluster.nodes())
    cluster.require_initialized(provider)
    snapshot = read_snapshot(cluster, provider)
    return PrepareRead(Names(cluster.name, cluster.namespace, cluster.ns), states, snapshot)


def _check_provider(snap, node, provider):
    """The reasons node ``provider`` cannot be cloned as ``node`` (pure)."""
    if node == provider:
        raise SlonyError("clone_from must be another node than the clone (both are %d)" % node)
    entry = snap.nodes.get(provider)
    if entry is None or not entry.active or entry.failed:
        raise SlonyError("node %d cannot be cloned: it is %s" % (
            provider, "not a node of the cluster" if entry is None else
            "failed" if entry.failed else "inactive"), node=provider)
    origin_of = sorted(s.id for s in snap.sets.values() if s.origin == provider)
    if origin_of:
        raise SlonyError("node %d is the origin of set(s) %s: only a subscriber can be cloned "
                         "(CLONE PREPARE copies its subscriptions); clone one of its receivers, "
                         "or add the node with STORE NODE and subscribe it"
                         % (provider, ", ".join(map(str, origin_of))), node=provider)
    if not _subscriptions(snap, provider):
        raise SlonyError("node %d subscribes to no set: there is nothing to clone; add the "
                         "node with STORE NODE instead" % provider, node=provider)


def decide_clone_prepare(read, node, provider, comment=None):
    """The plan for node ``node`` to be a prepared clone of ``provider``, from ``read``
    alone. Returns :class:`plan.Planned`; before/after are clone views."""
    snap = read.snapshot
    _check_provider(snap, node, provider)
    ns = read.names.ns
    wanted = _subscriptions(snap, provider)
    sets = sorted(set(s[0] for s in wanted))
    others = sorted(n for n, e in snap.nodes.items()
                    if e.active and n not in (provider, node))
    plan = Plan()
    if node in snap.nodes:
        state = read.states.get(node, ("no admin conninfo", None))
        entry = snap.nodes[node]
        if state[0] == NODE_INITIALIZED and state[1] == node:
            view = _view(node, provider, FINISHED, entry.comment, sets, local_id=node)
            return Planned(plan, view, view)
        if _subscriptions(snap, node) != wanted:
            raise SlonyError(
                "node %d is already a node of the cluster, and not a clone of node %d (it "
                "subscribes %s, node %d subscribes %s): choose another id for the clone"
                % (node, provider, _describe(_subscriptions(snap, node)), provider,
                   _describe(wanted)), node=node)
        phase = RESTORED if state[0] == NODE_INITIALIZED and state[1] == provider else PREPARED
        view = _view(node, provider, phase, entry.comment, sets)
        # Prepared earlier: only the completion wait (a run interrupted after the event).
        plan.add(wait(provider, "wait until every node has processed the CLONE_NODE event "
                                "of node %d" % node, confirmers=others))
        return Planned(plan, view, view)

    comment = comment if comment is not None else "Node %d" % node
    for other in sorted(n for n, s in read.states.items()
                        if s[0] == NODE_INITIALIZED and s[1] == n and n in others):
        # slonik's "config caught up" wait before CLONE PREPARE (target: the provider).
        plan.add(wait(other, "wait until node %d has confirmed the last configuration event "
                             "of node %d" % (provider, other), confirmers=[provider],
                      required=True, wait_on=provider))
    plan.add(call(ns, provider, "cloneNodePrepare", (node, provider, comment),
                  "make node %d a clone of node %d (its node row, paths, subscriptions and "
                  "confirmations, on every node)" % (node, provider),
                  slonik="clone prepare (id = %d, provider = %d, comment = %s);"
                         % (node, provider, slonik_quote(comment)), batch="clone"))
    # The provider's slon learns of its own CLONE_NODE event without enabling the new
    # node (slon 2.2's local listener only stores it), so it would never read the clone's
    # events: it restarts, in the same transaction, as slonik's RESTART NODE makes it.
    plan.add(Step(EVENT, provider, "restart the slon of node %d so that it enables node %d"
                  % (provider, node), slonik="restart node %d;" % provider,
                  query=sql.SQL("notify {}").format(
                      sql.Identifier(read.names.namespace + "_Restart")),
                  function="notify", args=(read.names.namespace + "_Restart",), batch="clone"))
    plan.add(wait(provider, "wait until every node has processed the CLONE_NODE event of "
                            "node %d" % node, confirmers=others))
    # The procedure of Slony's manual: a SYNC on every other node, confirmed by the
    # provider, before its database is copied.
    synced = [n for n in others if read.states.get(n, ("",))[0] == NODE_INITIALIZED]
    for other in synced:
        plan.add(call(ns, other, "createEvent", (read.names.namespace, "SYNC"),
                      "create a SYNC on node %d (the provider must have it before it is "
                      "copied)" % other, slonik="sync (id = %d);" % other))
    for other in synced:
        plan.add(wait(other, "wait until node %d has confirmed the SYNC of node %d"
                      % (provider, other), confirmers=[provider], wait_on=provider,
                      slonik="wait for event (origin = %d, confirmed = %d, wait on = %d);"
                             % (other, provider, provider)))
    return Planned(plan, _view(node, provider, ABSENT),
                   _view(node, provider, PREPARED, comment, sets))


def _describe(subs):
    if not subs:
        return "no set"
    return ", ".join("set %d from node %d" % (s, p) for s, p, dummy in subs)


def plan_clone_prepare(cluster, node, provider, comment=None):
    """Plan for node ``node`` to be a prepared clone of the subscriber ``provider``
    (slonik's CLONE PREPARE, then the SYNC barrier of Slony's manual). Returns
    :class:`plan.Planned`."""
    return decide_clone_prepare(read_clone_prepare(cluster, node, provider), node, provider,
                                comment)


# -- CLONE FINISH ---------------------------------------------------------------------

_IDENTITY = "select system_identifier::text, current_database() from pg_catalog.pg_control_system()"


def read_clone_finish(cluster, node, provider):
    """The reads of :func:`decide_clone_finish` (node N's database is read without the
    identity check: before the finish it is a copy that says it is the provider)."""
    cluster.require_node(node, "clone_phase=finish (the restored copy)")
    cluster.require_node(provider, "clone_phase=finish (to make sure that the conninfo of "
                                   "node %d does not reach the database of node %d)"
                         % (node, provider))
    state = cluster.state(node)
    snapshot = None
    if state[0] == NODE_INITIALIZED:
        row = cluster.fetch(node, catalog_query(cluster), check_identity=False)[0]
        snapshot = snapshot_from_row(node, row)
    identity = tuple(cluster.fetch(node, _IDENTITY, check_identity=False)[0])
    provider_identity = tuple(cluster.fetch(provider, _IDENTITY, check_identity=False)[0])
    return FinishRead(Names(cluster.name, cluster.namespace, cluster.ns), state, snapshot,
                      identity, provider_identity)


def decide_clone_finish(read, node, provider):
    """The plan for node ``node``'s database to be node ``node`` (CLONE FINISH on the
    restored copy of ``provider``), from ``read`` alone. Returns :class:`plan.Planned`."""
    if node == provider:
        raise SlonyError("clone_from must be another node than the clone (both are %d)" % node)
    if read.identity == read.provider_identity:
        raise SlonyError("the admin_conninfo of node %d reaches the database of node %d "
                         "itself (database %s of the same server): restore the copy into "
                         "another database" % (node, provider, read.identity[1]), node=node)
    state, local_id = read.state
    if state != NODE_INITIALIZED:
        raise SlonyError(
            "the database of node %d %s: restore a dump of node %d's database there first "
            "(taken after clone_phase=prepare)" % (
                node, "has no schema %s" % read.names.namespace if state == NODE_NO_SCHEMA
                else "holds a Slony schema that was never initialised", provider), node=node)
    snap = read.snapshot
    sets = sorted(set(s[0] for s in _subscriptions(snap, node)))
    setsync = dict((str(s.set), s.seqno) for s in sorted(snap.setsyncs.values()))
    if local_id == node:
        missing = [s for s in sets if str(s) not in setsync]
        if missing:
            raise SlonyError("node %d is a node of the cluster but has no sl_setsync row for "
                             "set(s) %s: it is not a finished clone" % (
                                 node, ", ".join(map(str, missing))), node=node)
        view = _view(node, provider, FINISHED, sets=sets, local_id=node, setsync=setsync)
        return Planned(Plan(), view, view)
    if local_id != provider:
        raise SlonyError("the database of node %d is node %d of the cluster, not a copy of "
                         "node %d" % (node, local_id, provider), node=node)
    if node not in snap.nodes or not sets:
        raise SlonyError(
            "the database of node %d is a copy of node %d taken before the CLONE PREPARE of "
            "node %d had reached it (no node %d, or no subscription of it, in the copy): run "
            "clone_phase=prepare, then copy the database again" % (node, provider, node, node),
            node=node)
    missing = [s for s in sets if str(s) not in setsync]
    if missing:
        raise SlonyError("the copy of node %d has no sl_setsync row for set(s) %s: it was "
                         "taken while a subscription was still copying; copy it again once "
                         "the subscription is active" % (provider, ", ".join(map(str, missing))),
                         node=node)
    plan = Plan([Step(CALLBACK, node, "make the restored copy of node %d node %d (local node "
                      "id, relation oids, listens and confirmations)" % (provider, node),
                      slonik="clone finish (id = %d, provider = %d);" % (node, provider),
                      query=sql.SQL("select {}.clonenodefinish(%s, %s)").format(read.names.ns),
                      params=(node, provider), function="cloneNodeFinish",
                      args=(node, provider), run=_clone_finish)])
    return Planned(plan, _view(node, provider, RESTORED, sets=sets, local_id=provider,
                               setsync=setsync),
                   _view(node, provider, FINISHED, sets=sets, local_id=node, setsync=setsync))


def plan_clone_finish(cluster, node, provider):
    """Plan for the restored copy of ``provider``'s database to be node ``node``
    (slonik's CLONE FINISH). Returns :class:`plan.Planned`."""
    return decide_clone_finish(read_clone_finish(cluster, node, provider), node, provider)


def _clone_finish(cluster, step, ctx):
    """cloneNodeFinish on the copy, in its own transaction, on a connection that is
    closed afterwards (the C functions cache the local node id per session)."""
    del ctx
    node = step.node
    conn = cluster.connection(node, check_identity=False)
    text = cluster.render(node, step.query, step.params)
    try:
        with conn.cursor() as cur:
            cur.execute(step.query, step.params)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise cluster.error(node, exc, doing="CLONE FINISH")
    finally:
        cluster.discard(node)
    cluster.log(node, text)
    return []


__all__ = ["plan_clone_prepare", "plan_clone_finish", "decide_clone_prepare",
           "decide_clone_finish", "read_clone_prepare", "read_clone_finish", "PrepareRead",
           "FinishRead", "PREPARE", "FINISH", "ABSENT", "PREPARED", "RESTORED", "FINISHED"]
