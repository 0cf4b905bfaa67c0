# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SYNC and WAIT FOR EVENT: a barrier that every (or some) node has caught up with a node.

A SYNC event created on node N is confirmed by node R once R's slon has applied every
change N logged before it. Waiting for the confirmation is the usual way to know that a
replica has everything (after EXECUTE SCRIPT, before a clone, to measure catch-up).

As slonik's SYNC, the event is created with ``createEvent(cluster, 'SYNC')`` under
``sl_event_lock`` only (the lock slon's own sync thread takes), not ``sl_config_lock``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .catalog import read_snapshot
from .errors import SlonyError
from .events import event_dict, submit_event, wait_for_event
from .names import validate_node_id
from .plan import CALLBACK, WAIT, Plan, Planned, Step, function_call


def normalize_confirmers(node, confirmers, known_nodes):
    """The sorted confirmers other than ``node`` itself; None means every active node.

    ``known_nodes`` maps node id -> Node as ``node``'s catalog has them. A confirmer that
    is not an active node of the cluster is an error (it would never confirm).
    """
    if confirmers is None:
        return None
    result = set()
    unknown, inactive = [], []
    for value in confirmers:
        other = validate_node_id(value, "confirmers entry")
        if other not in known_nodes:
            unknown.append(other)
        elif not known_nodes[other].active:
            inactive.append(other)
        elif other != node:
            result.add(other)
    problems = []
    if unknown:
        many = len(unknown) > 1
        problems.append("node%s %s %s of the cluster (node %d does not know %s)" % (
            "s" if many else "", ", ".join(map(str, sorted(unknown))),
            "are not nodes" if many else "is not a node", node, "them" if many else "it"))
    if inactive:
        problems.append("node%s %s %s not active and would never confirm" % (
            "s" if len(inactive) > 1 else "", ", ".join(map(str, sorted(inactive))),
            "are" if len(inactive) > 1 else "is"))
    if problems:
        raise SlonyError("confirmers: " + "; ".join(problems), node=node)
    return sorted(result)


def slonik_sync(node, confirmers, timeout):
    lines = ["sync (id = %d);" % node]
    for confirmed in (["all"] if confirmers is None else confirmers):
        lines.append("wait for event (origin = %d, confirmed = %s, wait on = %d, timeout = %d);"
                     % (node, confirmed, node, timeout))
    return lines


class SyncRun:
    """Creates the SYNC, then waits for it; ``report`` holds the event for the caller."""

    def __init__(self, ns, namespace, node, confirmers, timeout):
        self.ns = ns
        self.namespace = namespace
        self.node = node
        self.confirmers = confirmers
        self.timeout = timeout
        self.event = None
        self.report = {"event": None, "confirmed_by": None}

    def query(self):
        return function_call(self.ns, "createEvent", (self.namespace, "SYNC"))

    def steps(self):
        lines = slonik_sync(self.node, self.confirmers, self.timeout)
        who = "every node" if self.confirmers is None else \
            "node%s %s" % ("s" if len(self.confirmers) > 1 else "", ", ".join(map(str, self.confirmers)))
        return [
            Step(CALLBACK, self.node, "create a SYNC event on node %d" % self.node,
                 slonik=lines[0], query=self.query(), params=(self.namespace, "SYNC"),
                 function="createEvent", args=(self.namespace, "SYNC"), run=self.create),
            Step(WAIT, self.node, "wait until %s confirmed the SYNC of node %d" % (who, self.node),
                 slonik="\n".join(lines[1:]), run=self.wait),
        ]

    def create(self, cluster, step, ctx):
        events = submit_event(cluster, self.node, self.query(), (self.namespace, "SYNC"),
                              locks=("sl_event_lock",))
        self.event = [e for e in events if e.type == "SYNC"][-1]
        self.report["event"] = event_dict(self.event)
        return events

    def wait(self, cluster, step, ctx):
        # On a timeout the waiter also says when the origin's own slon, which
        # collects the confirmations, is down.
        wait_for_event(cluster, self.event, self.confirmers, timeout=ctx.timeout,
                       clock=ctx.clock)
        self.report["confirmed_by"] = self.confirmers if self.confirmers is not None else \
            sorted(n.id for n in read_snapshot(cluster, self.node).nodes.values()
                   if n.active and n.id != self.node)


def decide_sync(ns, namespace, cluster_name, node, known_nodes, confirmers=None,
                timeout=300):
    """The SYNC plan from ``node``'s catalog (``known_nodes``: node id -> Node). Pure."""
    if node not in known_nodes or not known_nodes[node].active:
        raise SlonyError("node %d is not an active node of cluster %s" % (node, cluster_name),
                         node=node)
    wanted = normalize_confirmers(node, confirmers, known_nodes)
    run = SyncRun(ns, namespace, node, wanted, timeout)
    return Planned(Plan(run.steps()), {}, {}, run.report)


def plan_sync(cluster, node, confirmers=None, timeout=300):
    """Plan a SYNC on ``node`` and the wait for its confirmation.

    Reads ``node``'s catalog, then decides (:func:`decide_sync`). Returns
    :class:`plan.Planned`; ``extra`` is filled while the plan runs (``event``: the SYNC
    created, ``confirmed_by``: the nodes that confirmed it). ``timeout`` only shows in
    the slonik equivalent; the wait itself gets the caller's timeout when it runs.
    """
    cluster.require_node(node, "the node that creates the SYNC")
    snap = read_snapshot(cluster, node)
    return decide_sync(cluster.ns, cluster.namespace, cluster.name, node, snap.nodes,
                       confirmers, timeout)
