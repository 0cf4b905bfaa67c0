# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes: INIT CLUSTER, STORE NODE, DROP NODE and UNINSTALL NODE, planned from the catalog."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .slonik import quote as slonik_quote
from .pg import psycopg2, sql

from .catalog import Snapshot, read_snapshot
from .cluster import NODE_INITIALIZED, NODE_NO_SCHEMA, NODE_UNINITIALIZED
from .errors import SlonyError
from .events import submit_event
from .plan import CALLBACK, EVENT, INIT_NODE, Plan, Planned, Step, call, wait


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


def choose_event_node(cluster, node, states, event_node=None, planned=()):
    """The node through which the cluster is told about ``node``.

    The given ``event_node``, else the lowest admin node, other than ``node``,
    whose database is an initialised node of the cluster. None if there is none
    (``node`` is, or will be, the first node).
    """
    if event_node is not None:
        if event_node == node:
            raise SlonyError("event_node must differ from the node being added or dropped "
                             "(both are %d)" % node)
        cluster.require_node(event_node, "event_node")
        if event_node not in planned:
            cluster.require_initialized(event_node)
        return event_node
    for other in sorted(states):
        if other != node and states[other][0] == NODE_INITIALIZED:
            return other
    return None


# -- present ------------------------------------------------------------------------

def plan_node_present(cluster, node, comment=None, event_node=None, planned=()):
    """Plan for ``node`` being an active node of the cluster with ``comment``.

    ``planned``: nodes that earlier steps of the same plan initialise (see
    :func:`plan_nodes_present`); they count as nodes of the cluster.
    Returns (plan, before, after).
    """
    cluster.require_node(node, "adding a node")
    states = probe_states(cluster, cluster.nodes())
    state = states[node]
    if state[0] == "unreachable":
        raise SlonyError(state[1], node=node)
    for other in planned:
        states[other] = (NODE_INITIALIZED, other)
    event = choose_event_node(cluster, node, states, event_node, planned)
    ns = cluster.ns
    plan = Plan()

    if event is None:
        # No other node exists: this one is (or becomes) the cluster's first node.
        comment = comment if comment is not None else "Initial Node"
        if state[0] == NODE_INITIALIZED:
            snap = read_snapshot(cluster, node)
            before = node_view(snap, node)
            if snap.nodes[node].comment != comment:
                plan.add(call(ns, node, "storeNode", (node, comment),
                              "set the comment of node %d" % node,
                              slonik="store node (id = %d, comment = %s, event node = %d);"
                              % (node, slonik_quote(comment), node)))
            return Planned(plan, before, dict(before, comment=comment))
        if state[0] == NODE_UNINITIALIZED:
            plan.add(_drop_schema_step(
                cluster, node, "remove the half-loaded schema of an interrupted initialisation"))
        plan.add(Step(INIT_NODE, node, "initialise node %d as the first node of cluster %s"
                      % (node, cluster.name),
                      slonik="init cluster (id = %d, comment = %s);" % (node, slonik_quote(comment)),
                      query=sql.SQL("select {ns}.initializeLocalNode(%s, %s); "
                                    "select {ns}.enableNode(%s)").format(ns=ns),
                      params=(node, comment, node),
                      function="initializeLocalNode", args=(node, comment)))
        before = {"id": node, "state": "absent"}
        return Planned(plan, before, {"id": node, "state": "present", "comment": comment,
                              "active": True, "failed": False})

    # A node this plan creates first has nothing in its catalog yet but itself.
    snap = Snapshot(event) if event in planned else read_snapshot(cluster, event)
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
                          slonik="store node (id = %d, comment = %s, event node = %d);"
                          % (node, slonik_quote(comment), event)))
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
        plan.add(_drop_schema_step(cluster, node, "remove the schema left on node %d by an "
                                                  "interrupted STORE NODE" % node))
    for other in sorted(states):
        # (A node this plan creates has no configuration events of its own yet.)
        if other not in (node, event) and states[other][0] == NODE_INITIALIZED \
                and other not in planned:
            # slonik's "config caught up" wait: the event node has seen every
            # other node's configuration changes before it describes them.
            plan.add(wait(other, "wait until node %d has confirmed the last configuration "
                                 "event of node %d" % (event, other), confirmers=[event],
                          required=True, wait_on=event))
    plan.add(Step(CALLBACK, node, "create schema %s on node %d, initialise it as node %d and "
                  "copy the configuration of node %d into it" % (
                      cluster.namespace, node, node, event),
                  query=sql.SQL("select {ns}.initializeLocalNode(%s, %s); "
                                "select {ns}.enableNode_int(%s)").format(ns=ns),
                  params=(node, comment, node), function="initializeLocalNode",
                  args=(node, comment, event), run=_store_node_locally, loads_schema=True))
    plan.add(Step(EVENT, event, "tell the cluster about node %d through node %d" % (node, event),
                  slonik="store node (id = %d, comment = %s, event node = %d);"
                  % (node, slonik_quote(comment), event),
                  query=sql.SQL("select {ns}.storeNode(%s, %s); select {ns}.enableNode(%s)")
                  .format(ns=ns), params=(node, comment, node),
                  function="storeNode", args=(node, comment)))
    # No wait afterwards: the other nodes learn about the new node through the event
    # node's slon, which needs the paths that are stored next (slony_path waits).
    return Planned(plan, before, after)


def plan_nodes_present(cluster, entries, event_node=None):
    """Several nodes in one plan, in id order: the lowest becomes the first node when
    the cluster has none; the others are stored through the event node, even when
    that node is itself created earlier in the plan (so check mode shows the real
    order). New nodes load their schema at the same time (:func:`plan.execute_plan`).

    ``entries``: dicts with ``id`` and optional ``comment``. Returns
    (plan, before, after); before/after are lists in the order of ``entries``.
    """
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
    by_id = dict((entry["id"], entry) for entry in entries)
    plan, views, planned = Plan(), {}, []
    for node in sorted(ids):
        one, before, after, dummy = plan_node_present(cluster, node, by_id[node].get("comment"),
                                                      event_node, planned=tuple(planned))
        plan.extend(one.steps)
        views[node] = (before, after)
        if any(s.loads_schema for s in one.steps):
            planned.append(node)
    return Planned(plan, [views[n][0] for n in ids], [views[n][1] for n in ids])


def _drop_schema_step(cluster, node, description):
    return Step(CALLBACK, node, description, slonik="uninstall node (id = %d);" % node,
                query=sql.SQL("drop schema {} cascade").format(cluster.ns),
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

def plan_node_absent(cluster, node, event_node=None):
    """Plan for ``node`` not being part of the cluster (DROP NODE + UNINSTALL NODE)."""
    states = probe_states(cluster, cluster.nodes())
    own = states.get(node)
    event = choose_event_node(cluster, node, states, event_node)
    ns = cluster.ns
    plan = Plan()
    snap = read_snapshot(cluster, event) if event is not None else None
    if snap is None and own is not None and own[0] == NODE_INITIALIZED:
        before = node_view(read_snapshot(cluster, node), node)
    else:
        before = node_view(snap, node)
        if own is not None and own[0] in (NODE_INITIALIZED, NODE_UNINITIALIZED) \
                and before["state"] == "absent":
            before = {"id": node, "state": "present", "comment": None,
                      "active": False, "failed": False, "orphan_schema": True}
    after = {"id": node, "state": "absent"}

    if snap is not None and node in snap.nodes:
        origin_of = sorted(s.id for s in snap.sets.values() if s.origin == node)
        if origin_of:
            raise SlonyError("node %d is the origin of set(s) %s; move them away first "
                             "(dany.slony.slony_switchover or slony_failover)"
                             % (node, ", ".join(map(str, origin_of))), node=node)
        feeding = sorted((s.set, s.receiver) for s in snap.subscriptions.values()
                         if s.provider == node and s.receiver != node)
        if feeding:
            raise SlonyError("node %d is still the data provider of %s; subscribe those "
                             "receivers from another provider first" % (node, ", ".join(
                                 "node %d for set %d" % (r, s) for s, r in feeding)),
                             node=node)
        if own is not None and own[0] == NODE_INITIALIZED:
            plan.add(wait(node, "wait until node %d has confirmed the last configuration "
                                "event of node %d" % (event, node), confirmers=[event],
                          required=True, wait_on=event))
        plan.add(call(ns, event, "dropNode", ([node],),
                      "drop node %d from the cluster through node %d" % (node, event),
                      slonik="drop node (id = %d, event node = %d);" % (node, event)))
        survivors = sorted(n for n, e in snap.nodes.items()
                           if e.active and n not in (node, event))
        if survivors:
            plan.add(wait(event, "wait until the remaining nodes have dropped node %d" % node,
                          confirmers=survivors))
        if own is not None and own[0] != "unreachable":
            plan.add(Step(CALLBACK, node, "uninstall Slony from node %d if its slon has not "
                          "already done so" % node,
                          slonik="uninstall node (id = %d);" % node,
                          query=sql.SQL("drop schema {} cascade").format(ns),
                          function="uninstallNode", args=(node,), run=_uninstall_if_present))
        return Planned(plan, before, after)

    if own is not None and own[0] in (NODE_INITIALIZED, NODE_UNINITIALIZED):
        plan.add(Step(CALLBACK, node, "uninstall Slony from node %d" % node,
                      slonik="uninstall node (id = %d);" % node,
                      query=sql.SQL("drop schema {} cascade").format(ns),
                      function="uninstallNode", args=(node,), run=_uninstall_if_present))
    return Planned(plan, before, after)


def _uninstall_if_present(cluster, step, share_dir, attempts=30, pause=1.0):
    """UNINSTALL NODE, unless the node's own slon has already done it.

    A slon that processes DROP NODE for its own node uninstalls Slony itself, at the
    same time as we may: whoever loses the race gets a deadlock or a lock timeout, and
    simply looks again (bounded).
    """
    import time  # pylint: disable=import-outside-toplevel
    node = step.node
    for attempt in range(attempts):
        cluster.discard(node)
        state = cluster.state(node)[0]
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
            retry = exc.pgcode in ("40P01", "55P03", "3F000", "42P01", "42883")
            if retry and attempt + 1 < attempts:
                time.sleep(pause)  # the node's slon is uninstalling it: look again
                continue
            raise cluster.error(node, exc, doing="UNINSTALL NODE")
        cluster.discard(node)
        for text in texts:
            cluster.log(node, text)
        return []
    return []


__all__ = ["plan_node_present", "plan_node_absent", "submit_event"]
