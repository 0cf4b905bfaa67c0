# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes: INIT CLUSTER, STORE NODE, DROP NODE, UNINSTALL NODE and REPAIR CONFIG, planned
from the catalog."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .slonik import quote as slonik_quote
from .pg import psycopg2, sql

from .catalog import Node, Snapshot, read_snapshot
from .cluster import NODE_INITIALIZED, NODE_NO_SCHEMA, NODE_UNINITIALIZED
from .errors import SlonyError
from .events import submit_event
from .plan import CALLBACK, EVENT, EXEC, INIT_NODE, WAIT, Plan, Planned, Step, call, wait
from .setmove import slon_backends, wait_for_new_slons
from .waits import Behind, Pending, retry, timeout_error


# What the node planners need besides the read data: the cluster's names (plain data).
Names = namedtuple("Names", "name namespace ns")

# What a node planner reads before it decides: {admin node: (state, local id) or
# ("unreachable", message)}, {node: Snapshot} of the nodes it may plan through, and
# why the explicit event node cannot be used (a SlonyError), if it cannot.
NodesRead = namedtuple("NodesRead", "names states snapshots event_error")


def node_view(snapshot, node):
    """The state of ``node`` as the event node sees it (for before/after)."""
    if snapshot is None or node not in snapshot.nodes:
        return {"id": node, "state": "absent"}
    entry = snapshot.nodes[node]
    return {"id": node, "state": "present", "comment": entry.comment,
            "active": entry.active, "failed": entry.failed}


def probe_states(cluster, nodes, tolerate_unreachable=True):
    """{node: (state, local_id) or ('unreachable', message)} for the given admin nodes."""
    states = {}
    cluster.open_all(nodes)
    for node in nodes:
        try:
            states[node] = cluster.state(node)
        except SlonyError as exc:
            if not tolerate_unreachable:
                raise
            states[node] = ("unreachable", exc.message)
    return states


# -- reading ------------------------------------------------------------------------

def _initialized(states):
    return sorted(n for n, s in states.items() if s[0] == NODE_INITIALIZED)


def snapshot_nodes(states, targets):
    """The nodes whose catalog the planning of ``targets`` may need: for each target,
    the lowest other initialised node (its event node), or the target itself when it
    is the only initialised node (it is the cluster's first node)."""
    initialized = _initialized(states)
    wanted = set()
    for node in targets:
        others = [n for n in initialized if n != node]
        if others:
            wanted.add(others[0])
        elif node in initialized:
            wanted.add(node)
    return sorted(wanted)


def _check_event_node(cluster, event_node, planned=()):
    """The checks of an explicit ``event_node`` that need the database: the error
    they raise, or None (the planner raises it when it comes to choosing)."""
    try:
        cluster.require_node(event_node, "event_node")
        if event_node not in planned:
            cluster.require_initialized(event_node)
    except SlonyError as exc:
        return exc
    return None


def read_nodes(cluster, targets, event_node=None, planned=()):
    """Everything the planning of ``targets`` reads, read at once (:data:`NodesRead`)."""
    states = probe_states(cluster, cluster.nodes())
    event_error = None
    if event_node is not None:
        event_error = _check_event_node(cluster, event_node, planned)
        wanted = [event_node] if event_error is None and event_node not in planned else []
    else:
        wanted = snapshot_nodes(states, targets)
    snapshots = dict((n, read_snapshot(cluster, n)) for n in wanted)
    return NodesRead(Names(cluster.name, cluster.namespace, cluster.ns), states, snapshots,
                     event_error)


def _snapshot(read, planned, node):
    """The catalog of ``node``: read, or the one a node this plan creates will have."""
    if node in planned:
        return planned[node]
    if node not in read.snapshots:
        raise SlonyError("internal error: the catalog of node %d was not read" % node)
    return read.snapshots[node]


# -- deciding (pure) ----------------------------------------------------------------

def pick_event_node(node, states, event_node=None, planned=(), event_error=None):
    """The node through which the cluster is told about ``node``.

    The given ``event_node`` (``event_error``: why it cannot be, as :func:`read_nodes`
    found), else the lowest admin node, other than ``node``, whose database is an
    initialised node of the cluster or that an earlier step of the plan initialises
    (``planned``). None if there is none (``node`` is, or will be, the first node).
    """
    if event_node is not None:
        if event_node == node:
            raise SlonyError("event_node must differ from the node being added or dropped "
                             "(both are %d)" % node)
        if event_error is not None:
            raise event_error
        return event_node
    for other in sorted(set(states) | set(planned)):
        if other != node and (other in planned or states[other][0] == NODE_INITIALIZED):
            return other
    return None


def _store_node_slonik(node, comment, event):
    return "store node (id = %d, comment = %s, event node = %d);" % (
        node, slonik_quote(comment), event)


def decide_node_present(read, node, comment=None, event_node=None, planned=None):
    """Plan for ``node`` being an active node of the cluster with ``comment``, from
    ``read`` alone. ``planned``: {node: Snapshot} of the nodes that earlier steps of
    the same plan initialise, with the catalog they will have. Returns (Planned, the
    event node or None)."""
    planned = planned or {}
    state = read.states[node]
    if state[0] == "unreachable":
        raise SlonyError(state[1], node=node)
    event = pick_event_node(node, read.states, event_node, planned, read.event_error)
    if event is None:
        return _decide_first_node(read, node, comment, state), None
    return _decide_joining_node(read, node, comment, state, event, planned), event


def _decide_first_node(read, node, comment, state):
    """No other node exists: ``node`` is (or becomes) the cluster's first node."""
    ns = read.names.ns
    plan = Plan()
    comment = comment if comment is not None else "Initial Node"
    if state[0] == NODE_INITIALIZED:
        before = node_view(_snapshot(read, {}, node), node)
        if before["comment"] != comment:
            plan.add(call(ns, node, "storeNode", (node, comment),
                          "set the comment of node %d" % node,
                          slonik=_store_node_slonik(node, comment, node)))
        return Planned(plan, before, dict(before, comment=comment))
    if state[0] == NODE_UNINITIALIZED:
        plan.add(_uninstall_step(
            ns, node, "remove the half-loaded schema of an interrupted initialisation"))
    plan.add(Step(INIT_NODE, node, "initialise node %d as the first node of cluster %s"
                  % (node, read.names.name),
                  slonik="init cluster (id = %d, comment = %s);" % (node, slonik_quote(comment)),
                  query=sql.SQL("select {ns}.initializeLocalNode(%s, %s); "
                                "select {ns}.enableNode(%s)").format(ns=ns),
                  params=(node, comment, node),
                  function="initializeLocalNode", args=(node, comment)))
    return Planned(plan, {"id": node, "state": "absent"},
                   {"id": node, "state": "present", "comment": comment, "active": True,
                    "failed": False})


def _decide_joining_node(read, node, comment, state, event, planned):
    """``node`` joins (or is already part of) a cluster that ``event`` belongs to."""
    ns = read.names.ns
    plan = Plan()
    snap = _snapshot(read, planned, event)
    before = node_view(snap, node)
    comment = comment if comment is not None else (
        snap.nodes[node].comment if node in snap.nodes else "Node %d" % node)
    after = {"id": node, "state": "present", "comment": comment, "active": True,
             "failed": False}
    known = node in snap.nodes

    if known and state[0] == NODE_INITIALIZED:
        entry = snap.nodes[node]
        if entry.failed or not entry.active:
            raise SlonyError("node %d is known to the cluster but %s; a failed node cannot "
                             "rejoin: drop it (state=absent) and add it again"
                             % (node, "failed" if entry.failed else "inactive"), node=node)
        if entry.comment != comment:
            plan.add(call(ns, event, "storeNode", (node, comment),
                          "set the comment of node %d" % node,
                          slonik=_store_node_slonik(node, comment, event)))
        return Planned(plan, before, after)

    if known:
        raise SlonyError(
            "node %d is known to the cluster (on node %d) but its database %s; drop the node "
            "(state=absent) before adding it again" % (
                node, event, "has no Slony schema" if state[0] == NODE_NO_SCHEMA
                else "holds an uninitialised schema"), node=node)

    # The cluster does not know the node: STORE NODE. A schema already on the new
    # database is the remains of an interrupted attempt; it is removed first.
    if state[0] != NODE_NO_SCHEMA:
        plan.add(_uninstall_step(ns, node, "remove the schema left on node %d by an "
                                           "interrupted STORE NODE" % node))
    for other in _initialized(read.states):
        # (A node this plan creates has no configuration events of its own yet.)
        if other not in (node, event) and other not in planned:
            # slonik's "config caught up" wait: the event node has seen every
            # other node's configuration changes before it describes them.
            plan.add(wait(other, "wait until node %d has confirmed the last configuration "
                                 "event of node %d" % (event, other), confirmers=[event],
                          required=True, wait_on=event))
    plan.extend(_store_node_steps(read.names, node, comment, event))
    # No wait afterwards: the other nodes learn about the new node through the event
    # node's slon, which needs the paths that are stored next (slony_path waits).
    return Planned(plan, before, after)


def _store_node_steps(names, node, comment, event):
    """STORE NODE: the new node's own schema and catalog, then the event."""
    ns = names.ns
    return [
        Step(CALLBACK, node, "create schema %s on node %d, initialise it as node %d and "
             "copy the configuration of node %d into it" % (names.namespace, node, node, event),
             query=sql.SQL("select {ns}.initializeLocalNode(%s, %s); "
                           "select {ns}.enableNode_int(%s)").format(ns=ns),
             params=(node, comment, node), function="initializeLocalNode",
             args=(node, comment, event), run=_store_node_locally, loads_schema=True),
        Step(EVENT, event, "tell the cluster about node %d through node %d" % (node, event),
             slonik=_store_node_slonik(node, comment, event),
             query=sql.SQL("select {ns}.storeNode(%s, %s); select {ns}.enableNode(%s)")
             .format(ns=ns), params=(node, comment, node),
             function="storeNode", args=(node, comment)),
    ]


def catalog_after(read, planned, node, comment, event):
    """The catalog (its nodes) that ``node``, which the plan creates, will have: its
    event node's, and itself; only itself when it is the first node."""
    known = list(_snapshot(read, planned, event).nodes.values()) if event is not None else []
    others = [n for n in known if n.id != node]
    return Snapshot(node, node, nodes=others + [Node(node, True, comment, False)])


# -- present ------------------------------------------------------------------------

def plan_node_present(cluster, node, comment=None, event_node=None, planned=()):
    """Plan for ``node`` being an active node of the cluster with ``comment``.

    ``planned``: nodes that earlier steps of the same plan initialise (see
    :func:`plan_nodes_present`); they count as nodes of the cluster.
    Returns :class:`plan.Planned`.
    """
    cluster.require_node(node, "adding a node")
    read = read_nodes(cluster, [node], event_node, planned)
    catalogs = dict((p, Snapshot(p)) for p in planned)
    return decide_node_present(read, node, comment, event_node, catalogs)[0]


def _entry_ids(entries):
    if not entries:
        raise SlonyError("nodes: give at least one node")
    ids = []
    for index, entry in enumerate(entries):
        node = entry.get("id")
        if node is None:
            raise SlonyError("nodes[%d]: id is required" % index)
        if node in ids:
            raise SlonyError("nodes[%d]: node %d is listed twice" % (index, node))
        ids.append(node)
    return ids


def plan_nodes_present(cluster, entries, event_node=None):
    """Several nodes in one plan, in id order: the lowest becomes the first node when
    the cluster has none; the others are stored through the event node, even when
    that node is itself created earlier in the plan (so check mode shows the real
    order). New nodes load their schema at the same time (:func:`plan.execute_plan`).

    ``entries``: dicts with ``id`` and optional ``comment``. Returns
    :class:`plan.Planned`; before/after are lists in the order of ``entries``.
    """
    ids = _entry_ids(entries)
    for node in sorted(ids):
        cluster.require_node(node, "adding a node")
    read = read_nodes(cluster, sorted(ids), event_node)
    return decide_nodes_present(read, entries, event_node)


def decide_nodes_present(read, entries, event_node=None):
    """:func:`plan_nodes_present` from ``read`` alone."""
    ids = _entry_ids(entries)
    by_id = dict((entry["id"], entry) for entry in entries)
    plan, views, planned = Plan(), {}, {}
    for node in sorted(ids):
        one, event = decide_node_present(read, node, by_id[node].get("comment"), event_node,
                                         planned)
        plan.extend(one.plan.steps)
        views[node] = (one.before, one.after)
        if any(s.loads_schema for s in one.plan.steps):
            planned[node] = catalog_after(read, planned, node, one.after["comment"], event)
    return Planned(plan, [views[n][0] for n in ids], [views[n][1] for n in ids])


def _uninstall_step(ns, node, description):
    return Step(CALLBACK, node, description, slonik="uninstall node (id = %d);" % node,
                query=sql.SQL("drop schema {} cascade").format(ns),
                function="uninstallNode", args=(node,), run=_uninstall_if_present)


_EVENT_HEADS = "select ev_origin, max(ev_seqno) from {ns}.sl_event group by ev_origin"


def _store_node_locally(cluster, step, ctx):
    """STORE NODE's work on the new node, in one transaction (slonik's order)."""
    from .schema import install_schema
    node, comment, event = step.args
    snap = read_snapshot(cluster, event)
    heads = cluster.fetch(event, sql.SQL(_EVENT_HEADS).format(ns=cluster.ns))
    ns = cluster.ns
    conn = cluster.connection(node, check_identity=False)
    statements = [(step.query, step.params)]
    for entry in sorted(snap.nodes.values()):
        statements.append((sql.SQL("select {}.storeNode_int(%s, %s)").format(ns),
                           (entry.id, entry.comment)))
        if entry.active:
            statements.append((sql.SQL("select {}.enableNode_int(%s)").format(ns), (entry.id,)))
    for path in sorted(snap.paths.values()):
        statements.append((sql.SQL("select {}.storePath_int(%s, %s, %s, %s)").format(ns),
                           (path.server, path.client, path.conninfo, path.connretry)))
    for listen in snap.listens:
        statements.append((sql.SQL("select {}.storeListen_int(%s, %s, %s)").format(ns),
                           (listen.origin, listen.provider, listen.receiver)))
    for set_ in sorted(snap.sets.values()):
        statements.append((sql.SQL("select {}.storeSet_int(%s, %s, %s)").format(ns),
                           (set_.id, set_.origin, set_.comment)))
    for sub in sorted(snap.subscriptions.values()):
        statements.append((sql.SQL("select {}.subscribeSet_int(%s, %s, %s, %s, false)")
                           .format(ns), (sub.set, sub.provider, sub.receiver, sub.forward)))
        if sub.active:
            statements.append((sql.SQL("select {}.enableSubscription_int(%s, %s, %s)")
                               .format(ns), (sub.set, sub.provider, sub.receiver)))
    for origin, seqno in heads:
        if origin == node:
            # The id is being reused: continue its event numbering.
            statements.append((sql.SQL("select pg_catalog.setval(%s::regclass, %s)"),
                               (cluster.quoted_namespace(node) + ".sl_event_seq", seqno + 1)))
        else:
            # The new node has "seen" all existing events and does not replay history.
            statements.append((sql.SQL(
                "insert into {}.sl_confirm (con_origin, con_received, con_seqno, con_timestamp)"
                " values (%s, %s, %s, current_timestamp)").format(ns), (origin, node, seqno)))
    try:
        loaded = install_schema(cluster, node, ctx.share_dir)
        texts = [loaded]
        with conn.cursor() as cur:
            cur.execute(sql.SQL("lock table {ns}.sl_event_lock, {ns}.sl_config_lock")
                        .format(ns=ns))
            for query, params in statements:
                texts.append(cur.mogrify(query, params).decode("utf-8"))
                cur.execute(query, params)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        cluster.discard(node)
        if isinstance(exc, SlonyError):
            raise
        raise cluster.error(node, exc, doing="STORE NODE on the new node")
    cluster.discard(node)
    for text in texts:
        cluster.log(node, text)
    return []


# -- absent -------------------------------------------------------------------------

def plan_node_absent(cluster, node, event_node=None, wake_nodes=(), slons_woken=None):
    """Plan for ``node`` not being part of the cluster (DROP NODE + UNINSTALL NODE):
    :func:`plan_nodes_absent` with one node; before/after are the node's views."""
    return _one(plan_nodes_absent(cluster, [node], event_node, wake_nodes, slons_woken))


def decide_node_absent(read, node, event_node=None, wake_nodes=(), slons_woken=None):
    """:func:`plan_node_absent` from ``read`` alone."""
    return _one(decide_nodes_absent(read, [node], event_node, wake_nodes, slons_woken))


def _one(planned):
    return planned._replace(before=planned.before[0], after=planned.after[0])


class DropRestarts:
    """The slons of ``nodes`` restart their worker after DROP NODE: the event node's local
    listener and every other node's remote worker ask for a restart, and slon's watchdog
    sleeps 20 s before it forks the new worker, unless woken (``slon_pid_files``). Their
    backends are noted before the drop (:meth:`note`) and the run waits until each has
    registered anew (:meth:`wait`), so that it returns when they replicate again."""

    def __init__(self, nodes):
        self.nodes = sorted(nodes)
        self.backends = {}

    def note(self, cluster, step, ctx):
        del step, ctx
        self.backends = slon_backends(cluster, self.nodes)

    def wait(self, cluster, step, ctx):
        del step
        wait_for_new_slons(
            cluster, self.backends, ctx.timeout,
            "the slons of node(s) %s to run again after DROP NODE"
            % ", ".join(map(str, self.nodes)), clock=ctx.clock,
            note="slon's watchdog restarts the worker 20 s after DROP NODE, earlier when "
                 "woken (slon_pid_files)")


def plan_nodes_absent(cluster, ids, event_node=None, wake_nodes=(), slons_woken=None):
    """Plan for several nodes leaving the cluster together: one DROP NODE event with
    every id (slonik's ``drop node (id = '2,3', ...)``), then UNINSTALL NODE on each.

    One event, not one per node: Slony drops the subscriptions of every listed node
    first, so a node that feeds only other listed nodes can go in the same event,
    and no surviving node ever sees a half-dropped chain. A listed node that is the
    origin of a set, or that feeds a node which stays, is refused (every problem
    named at once) before anything changes. Nodes already gone are left alone; when
    every node of the cluster is listed, each is simply uninstalled.
    ``wake_nodes``: the nodes whose slon the run can wake (``slon_pid_files``); those that
    stay are waited for after the drop (:class:`DropRestarts`); ``slons_woken``, the list
    their waker fills, is ``extra['slons_woken']``.
    Returns :class:`plan.Planned`; before/after are lists in the order of ``ids``.
    """
    ids = _absent_ids(ids)
    states = probe_states(cluster, cluster.nodes())
    event_error = None
    if event_node is not None:
        event_error = _check_event_node(cluster, event_node)
        wanted = [event_node] if event_error is None and event_node not in ids else []
    else:
        others = [n for n in _initialized(states) if n not in ids]
        wanted = others[:1] or [n for n in _initialized(states) if n in ids][:1]
    snapshots = dict((n, read_snapshot(cluster, n)) for n in wanted)
    read = NodesRead(Names(cluster.name, cluster.namespace, cluster.ns), states, snapshots,
                     event_error)
    return decide_nodes_absent(read, ids, event_node, wake_nodes, slons_woken)


def _absent_ids(ids):
    if not ids:
        raise SlonyError("nodes: give at least one node")
    seen = []
    for index, node in enumerate(ids):
        if node in seen:
            raise SlonyError("nodes[%d]: node %d is listed twice" % (index, node))
        seen.append(node)
    return seen


def _pick_outside(ids, states, event_node, event_error):
    """The event node of a drop of ``ids``: the given one, else the lowest initialised
    admin node that is not dropped (None when every node goes)."""
    if event_node is not None:
        if event_node in ids:
            raise SlonyError("event_node must differ from the node(s) being dropped "
                             "(%d is dropped)" % event_node)
        if event_error is not None:
            raise event_error
        return event_node
    others = [n for n in _initialized(states) if n not in ids]
    return others[0] if others else None


def decide_nodes_absent(read, ids, event_node=None, wake_nodes=(), slons_woken=None):
    """:func:`plan_nodes_absent` from ``read`` alone."""
    ids = _absent_ids(ids)
    ns = read.names.ns
    event = _pick_outside(ids, read.states, event_node, read.event_error)
    extra = {}
    if slons_woken is not None:
        extra["slons_woken"] = slons_woken
    plan = Plan()
    if event is None:
        # Every node of the cluster goes: nobody is left to tell, uninstall each.
        snap = read.snapshots[min(read.snapshots)] if read.snapshots else None
        before = [_absent_before(read, snap, n) for n in ids]
        for node in ids:
            if read.states.get(node, ("absent",))[0] in (NODE_INITIALIZED, NODE_UNINITIALIZED):
                plan.add(_uninstall_step(ns, node, "uninstall Slony from node %d" % node))
        return Planned(plan, before, [{"id": n, "state": "absent"} for n in ids], extra)

    snap = _snapshot(read, {}, event)
    before = [_absent_before(read, snap, n) for n in ids]
    known = [n for n in ids if n in snap.nodes]
    problems = _undroppable(snap, ids)
    if problems:
        raise SlonyError("cannot drop node(s) %s: %s" % (
            ", ".join(map(str, known)), "; ".join(problems)))
    for node in known:
        if read.states.get(node, ("absent",))[0] == NODE_INITIALIZED:
            plan.add(wait(node, "wait until node %d has confirmed the last configuration "
                                "event of node %d" % (event, node), confirmers=[event],
                          required=True, wait_on=event))
    restarts = None
    if known:
        staying = sorted(n for n, e in snap.nodes.items() if e.active and n not in ids)
        waking = sorted(set(wake_nodes) & set(staying))
        if waking:
            restarts = DropRestarts(waking)
            plan.add(Step(WAIT, event, "note the slons of node(s) %s, which restart after "
                                       "DROP NODE" % ", ".join(map(str, waking)),
                          run=restarts.note))
        listed = ",".join(map(str, known))
        plan.add(call(ns, event, "dropNode", (known,),
                      "drop node(s) %s from the cluster through node %d" % (listed, event),
                      slonik="drop node (id = %s, event node = %d);" % (
                          known[0] if len(known) == 1 else "'%s'" % listed, event)))
        survivors = sorted(n for n, e in snap.nodes.items()
                           if e.active and n not in ids and n != event)
        if survivors:
            plan.add(wait(event, "wait until the remaining nodes have dropped node(s) %s"
                          % listed, confirmers=survivors))
        if restarts is not None:
            plan.add(Step(WAIT, event, "wait until the slons of node(s) %s, which restart "
                                       "after DROP NODE, run again (woken from the "
                                       "watchdog's sleep)" % ", ".join(map(str, restarts.nodes)),
                          run=restarts.wait))
    for node in ids:
        # (A node without admin_conninfo - a dead node after a failover - is not read.)
        state = read.states.get(node, ("no admin conninfo",))[0]
        if node in known and state not in ("unreachable", "no admin conninfo"):
            plan.add(_uninstall_step(ns, node, "uninstall Slony from node %d if its slon "
                                               "has not already done so" % node))
        elif node not in known and state in (NODE_INITIALIZED, NODE_UNINITIALIZED):
            plan.add(_uninstall_step(ns, node, "uninstall Slony from node %d" % node))
    return Planned(plan, before, [{"id": n, "state": "absent"} for n in ids], extra)


def _absent_before(read, snap, node):
    """``node`` as the event node sees it; a database that still holds the cluster's
    schema although the cluster does not know it is shown as an orphan schema."""
    view = node_view(snap, node)
    if view["state"] == "absent" and read.states.get(node, ("absent",))[0] in (
            NODE_INITIALIZED, NODE_UNINITIALIZED):
        view = {"id": node, "state": "present", "comment": None, "active": False,
                "failed": False, "orphan_schema": True}
    return view


def _undroppable(snap, ids):
    """Why the nodes ``ids`` cannot leave together: the sets they are the origin of,
    and the nodes that stay which they feed (one message per node)."""
    problems = []
    for node in ids:
        origin_of = sorted(s.id for s in snap.sets.values() if s.origin == node)
        if origin_of:
            problems.append("node %d is the origin of set(s) %s; move them away first "
                            "(dany.slony.slony_switchover or slony_failover)"
                            % (node, ", ".join(map(str, origin_of))))
        feeding = sorted((s.set, s.receiver) for s in snap.subscriptions.values()
                         if s.provider == node and s.receiver not in ids)
        if feeding:
            problems.append("node %d is still the data provider of %s; subscribe those "
                            "receivers from another provider first" % (node, ", ".join(
                                "node %d for set %d" % (r, s) for s, r in feeding)))
    return problems


# -- REPAIR CONFIG ------------------------------------------------------------------

# The tables and sequences of the sets a node holds (as origin or subscriber) whose
# recorded oid is not the oid of the relation of that name any more (the database was
# restored from a dump), and the lowest of those sets.
_STALE_RELATIONS = """
with held as (
  select s.set_id from {ns}.sl_set s
   where s.set_origin = {ns}.getLocalNodeId(%(cluster)s)
      or exists (select 1 from {ns}.sl_subscribe b
                  where b.sub_set = s.set_id and b.sub_receiver = {ns}.getLocalNodeId(%(cluster)s))),
rel as (
  select t.tab_set as set_id, t.tab_nspname as nsp, t.tab_relname as rel, t.tab_reloid as oid
    from {ns}.sl_table t
  union all
  select q.seq_set, q.seq_nspname, q.seq_relname, q.seq_reloid from {ns}.sl_sequence q)
select coalesce(json_agg(r.nsp || '.' || r.rel order by r.nsp, r.rel), '[]'),
       (select min(set_id) from held)
  from rel r join held h on h.set_id = r.set_id
 where r.oid is distinct from (
   select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.relname = r.rel and n.nspname = r.nsp)
"""

# What REPAIR CONFIG reads on the node: the relations whose oid is stale, and a set the
# node holds (updateReloid repairs every table of the node, but only on a node that is
# the origin or a subscriber of the set it is given).
RepairRead = namedtuple("RepairRead", "stale set_id")


def read_repair(cluster, node):
    """The reads of :func:`decide_repair` on ``node`` (an initialised node)."""
    cluster.require_initialized(node)
    rows = cluster.fetch(node, sql.SQL(_STALE_RELATIONS).format(ns=cluster.ns),
                         {"cluster": cluster.namespace})
    stale, set_id = rows[0] if rows else ([], None)
    return RepairRead(list(stale or []), set_id)


def decide_repair(ns, node, read):
    """REPAIR CONFIG on ``node`` when the oids it records are stale (after its database
    was restored from a dump), else nothing. Pure. Returns the steps."""
    if not read.stale:
        return []
    return [Step(EXEC, node, "repair the oids of %d relation(s) recorded on node %d (%s)"
                 % (len(read.stale), node, ", ".join(read.stale)),
                 slonik="repair config (set id = %d, event node = %d, execute only on = %d);"
                        % (read.set_id, node, node),
                 query=sql.SQL("lock table {ns}.sl_config_lock; select {ns}.updatereloid(%s, %s)")
                 .format(ns=ns), params=(read.set_id, node),
                 function="updateReloid", args=(read.set_id, node))]


def plan_repair_config(cluster, node):
    """Plan for the oids of the relations recorded on ``node`` to be current (slonik's
    REPAIR CONFIG, run on that node only, as it only ever repairs the node it runs on).
    Returns :class:`plan.Planned`; before/after: the stale relations."""
    read = read_repair(cluster, node)
    plan = Plan(decide_repair(cluster.ns, node, read))
    return Planned(plan, {"id": node, "stale_relations": read.stale},
                   {"id": node, "stale_relations": []})


# SQLSTATEs of the race with the node's own slon uninstalling it: deadlock, lock
# timeout, and the schema, a table or a function vanishing under us.
_UNINSTALL_RACE = ("40P01", "55P03", "3F000", "42P01", "42883")


class _UninstallRace(SlonyError):
    """An UNINSTALL NODE attempt lost the race with the node's slon."""


def _uninstall_if_present(cluster, step, ctx):
    """UNINSTALL NODE, unless the node's own slon has already done it.

    A slon that processes DROP NODE for its own node uninstalls Slony itself, at the
    same time as we may: whoever loses the race gets a deadlock or a lock timeout, and
    simply looks again, once a second, for at most ``ctx.timeout`` seconds.
    """
    node = step.node

    def on_timeout(last):
        return timeout_error(cluster, "node %d to be uninstalled (its slon may be "
                                      "uninstalling it at the same time)" % node, ctx.timeout,
                             Pending([Behind(node, last.message)]), node=node)

    return retry(lambda: _uninstall_once(cluster, node), ctx.timeout,
                 lambda exc: isinstance(exc, _UninstallRace), on_timeout, clock=ctx.clock)


# Reading the node's state while its slon drops the schema: a catalog row of the schema
# vanishes under the query ("could not open relation with OID ...", internal error).
_STATE_RACE = _UNINSTALL_RACE + ("XX000",)


def _uninstall_once(cluster, node):
    cluster.discard(node)
    try:
        state = cluster.state(node)[0]
    except SlonyError as exc:
        cluster.discard(node)
        if exc.sqlstate in _STATE_RACE:
            raise _UninstallRace(exc.message, node=node, queries=exc.queries)
        raise
    if state == NODE_NO_SCHEMA:
        cluster.discard(node)
        return []
    conn = cluster.connection(node, check_identity=False)
    texts = []
    try:
        with conn.cursor() as cur:
            cur.execute("set local lock_timeout = '5s'")
            if state == NODE_INITIALIZED:
                query = sql.SQL("lock table {ns}.sl_event_lock, {ns}.sl_config_lock; "
                                "select {ns}.uninstallNode()").format(ns=cluster.ns)
                texts.append(cur.mogrify(query).decode("utf-8"))
                cur.execute(query)
            query = sql.SQL("drop schema {} cascade").format(cluster.ns)
            texts.append(cur.mogrify(query).decode("utf-8"))
            cur.execute(query)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        cluster.discard(node)
        error = cluster.error(node, exc, doing="UNINSTALL NODE")
        if exc.pgcode in _UNINSTALL_RACE:
            # The node's slon is uninstalling it: look again.
            raise _UninstallRace(error.message, node=node, queries=error.queries)
        raise error
    cluster.discard(node)
    for text in texts:
        cluster.log(node, text)
    return []


__all__ = ["plan_node_present", "plan_nodes_present", "plan_node_absent", "plan_nodes_absent",
           "read_nodes", "decide_nodes_absent", "plan_repair_config", "decide_repair",
           "decide_node_present", "decide_nodes_present", "decide_node_absent",
           "submit_event"]
