# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subscriptions: SUBSCRIBE SET, RESUBSCRIBE NODE and UNSUBSCRIBE SET."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None

from .catalog import PENDING_CONNINFO, read_snapshot
from .errors import SlonyError
from .events import POLL_INTERVAL, slon_state
from .plan import EXEC, WAIT, Plan, Step, call, wait
from .sets import caught_up_waits


def _yn(flag):
    return "yes" if flag else "no"


def find_set_origin(cluster, set_id):
    """(origin, snapshot of the origin) for ``set_id``, looked up through the admin nodes."""
    seen_on = None
    for node in cluster.initialized_nodes():
        snap = read_snapshot(cluster, node)
        if set_id in snap.sets:
            origin = snap.sets[set_id].origin
            seen_on = node
            break
    else:
        raise SlonyError("set %d does not exist on any node in admin_conninfo" % set_id)
    if origin == seen_on:
        return origin, snap
    cluster.require_node(origin, "set %d's origin (node %d)" % (set_id, origin))
    return origin, read_snapshot(cluster, origin)


_COPY_DONE = """
select s.sub_provider, s.sub_active,
       exists (select 1 from {ns}.sl_setsync where ssy_setid = s.sub_set)
  from {ns}.sl_subscribe s where s.sub_set = %s and s.sub_receiver = %s
"""


def subscription_complete(cluster, set_id, receiver, provider=None):
    """True once ``receiver`` has copied the set: on the receiver itself its
    subscription is active and ``sl_setsync`` has a row for the set (both are written
    in the copy transaction). ``sub_active`` on the origin proves nothing."""
    rows = cluster.fetch(receiver, sql.SQL(_COPY_DONE).format(ns=cluster.ns), (set_id, receiver))
    if not rows:
        return False
    sub_provider, active, synced = rows[0]
    return bool(active and synced and (provider is None or sub_provider == provider))


def wait_subscription(cluster, set_id, receiver, provider, timeout, interval=POLL_INTERVAL):
    deadline = time.monotonic() + timeout
    while not subscription_complete(cluster, set_id, receiver, provider):
        if time.monotonic() >= deadline:
            raise SlonyError(
                "timed out after %ss waiting for node %d to finish subscribing to set %d from "
                "node %d (slon of node %d: %s, slon of node %d: %s); the receiver's slon log "
                "says why the copy does not finish" % (
                    timeout, receiver, set_id, provider, receiver, slon_state(cluster, receiver),
                    provider, slon_state(cluster, provider)),
                node=receiver, queries=cluster.queries)
        time.sleep(interval)


def completion_wait(set_id, receiver, provider):
    def run(cluster, step, timeout):
        wait_subscription(cluster, set_id, receiver, provider, timeout)
    return Step(WAIT, receiver, "wait until node %d has copied set %d from node %d"
                % (receiver, set_id, provider), run=run)


def sub_view(sub, complete=None):
    if sub is None:
        return None
    view = {"set": sub.set, "receiver": sub.receiver, "provider": sub.provider,
            "forward": sub.forward, "state": "present"}
    if complete is not None:
        view["complete"] = complete
    return view


def plan_subscription(cluster, set_id, receiver, provider=None, forward=True, omit_copy=False,
                      state="present"):
    """Plan for ``receiver`` subscribing to ``set_id``. Returns (plan, before, after)."""
    cluster.require_node(receiver, "the receiver")
    origin, osnap = find_set_origin(cluster, set_id)
    ns = cluster.ns
    plan = Plan()
    current = osnap.subscriptions.get((set_id, receiver))
    absent = {"set": set_id, "receiver": receiver, "state": "absent"}
    if receiver not in osnap.nodes:
        raise SlonyError("node %d is not a node of cluster %s" % (receiver, cluster.name),
                         node=receiver)
    if receiver == origin:
        raise SlonyError("node %d is the origin of set %d; the origin cannot subscribe to "
                         "its own set" % (receiver, set_id), node=receiver)
    cluster.require_initialized(receiver)

    if state == "absent":
        before = sub_view(current) or absent
        if current is None:
            return plan, before, absent
        fed = sorted(s.receiver for s in osnap.subscriptions.values()
                     if s.set == set_id and s.provider == receiver)
        if fed:
            raise SlonyError("node %d is the provider of set %d for node(s) %s; subscribe them "
                             "from another provider before unsubscribing node %d" % (
                                 receiver, set_id, ", ".join(map(str, fed)), receiver),
                             node=receiver)
        plan.add(call(ns, receiver, "unsubscribeSet", (set_id, receiver, False),
                      "unsubscribe node %d from set %d" % (receiver, set_id),
                      slonik="unsubscribe set (id = %d, receiver = %d);" % (set_id, receiver)))
        plan.add(wait(receiver, "wait until every node knows node %d left set %d"
                      % (receiver, set_id)))
        return plan, before, absent

    provider = origin if provider is None else provider
    if provider == receiver:
        raise SlonyError("provider and receiver are both node %d" % receiver, node=receiver)
    if provider not in osnap.nodes:
        raise SlonyError("provider node %d is not a node of cluster %s" % (provider, cluster.name),
                         node=provider)
    if provider != origin:
        psub = osnap.subscriptions.get((set_id, provider))
        if psub is None or not psub.forward:
            raise SlonyError(
                "provider node %d %s set %d, so it cannot feed node %d; subscribe it with "
                "forward: true first, or use the origin (node %d) as provider" % (
                    provider, "does not subscribe to" if psub is None else "does not forward",
                    set_id, receiver, origin), node=provider)
    rpath = read_snapshot(cluster, receiver).paths.get((provider, receiver))
    if rpath is None or rpath.conninfo == PENDING_CONNINFO:
        raise SlonyError("node %d has no path to its provider node %d; store it first "
                         "(dany.slony.slony_path, server %d, client %d)"
                         % (receiver, provider, provider, receiver), node=receiver)

    complete = subscription_complete(cluster, set_id, receiver) if current else False
    before = sub_view(current, complete) or absent
    after = {"set": set_id, "receiver": receiver, "provider": provider, "forward": forward,
             "state": "present", "complete": True}
    slonik = ("subscribe set (id = %d, provider = %d, receiver = %d, forward = %s, "
              "omit copy = %s);" % (set_id, provider, receiver, _yn(forward), _yn(omit_copy)))

    if provider != origin:
        # A cascaded receiver can only copy once its provider has the data.
        plan.add(completion_wait(set_id, provider, osnap.subscriptions[(set_id, provider)].provider))
    if current is None or current.provider == provider:
        if current is None or current.forward != forward:
            plan.extend(caught_up_waits(cluster, provider, exclude=(receiver,))
                        if provider != origin else caught_up_waits(cluster, origin))
            plan.add(call(ns, origin, "subscribeSet",
                          (set_id, provider, receiver, forward, omit_copy),
                          "subscribe node %d to set %d from node %d" % (receiver, set_id, provider)
                          if current is None else
                          "set forward = %s on node %d's subscription to set %d"
                          % (_yn(forward), receiver, set_id), slonik=slonik))
            plan.add(wait(origin, "wait until every node has confirmed the subscription"))
    else:
        others = sorted(s.set for s in osnap.subscriptions.values()
                        if s.receiver == receiver and s.set != set_id
                        and osnap.sets.get(s.set) and osnap.sets[s.set].origin == origin)
        description = "move node %d's subscription to set %d from provider %d to node %d" % (
            receiver, set_id, current.provider, provider)
        if others:
            description += (" (Slony moves every set of origin %d with it: set(s) %s)"
                            % (origin, ", ".join(map(str, others))))
        if current.forward != forward:
            raise SlonyError("changing the provider and forward at once is not supported; "
                             "change one, then the other", node=receiver)
        plan.extend(caught_up_waits(cluster, provider))
        plan.add(call(ns, origin, "resubscribeNode", (origin, provider, receiver), description,
                      slonik="resubscribe node (origin = %d, provider = %d, receiver = %d);"
                             % (origin, provider, receiver)))
        plan.add(call(ns, receiver, "reshapeSubscription", (origin, provider, receiver),
                      "switch node %d's slon to provider %d at once" % (receiver, provider),
                      kind=EXEC))
        plan.add(wait(origin, "wait until every node has confirmed the new provider"))
    plan.add(completion_wait(set_id, receiver, provider))
    return plan, before, after
