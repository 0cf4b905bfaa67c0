# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subscriptions: SUBSCRIBE SET, RESUBSCRIBE NODE and UNSUBSCRIBE SET."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from .slonik import yes_no
from .pg import sql

from .catalog import PENDING_CONNINFO, Subscription, feeding_order, read_snapshot
from .cluster import NODE_INITIALIZED
from .errors import SlonyError
from .waits import Behind, Pending, poll_until, slon_state, timeout_error
from .plan import EXEC, WAIT, Plan, Planned, Step, call, wait
from .sets import caught_up_waits


def find_set_origin(cluster, set_id):
    """(origin, snapshot of the origin) for ``set_id``, looked up through the admin nodes."""
    seen_on = None
    for node in cluster.nodes():
        # One node at a time: the first that knows the set ends the search.
        try:
            if cluster.state(node)[0] != NODE_INITIALIZED:
                continue
        except SlonyError:
            continue
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


def wait_subscription(cluster, set_id, receiver, provider, timeout, clock=None):
    """Wait until ``receiver`` has its copy of ``set_id`` from ``provider``."""
    def probe():
        if subscription_complete(cluster, set_id, receiver, provider):
            return True
        return Pending([Behind(receiver, "copy of set %d from node %d not finished"
                               % (set_id, provider))])

    def on_timeout(pending):
        pending.note = ("the slon of provider node %d is %s; the receiver's slon log says "
                        "why the copy does not finish" % (provider, slon_state(cluster, provider)))
        return timeout_error(cluster, "node %d to finish subscribing to set %d from node %d"
                             % (receiver, set_id, provider), timeout, pending)

    return poll_until(probe, timeout, on_timeout, clock=clock)


def completion_wait(set_id, receiver, provider, required=False):
    def run(cluster, step, ctx):
        wait_subscription(cluster, set_id, receiver, provider, ctx.timeout, clock=ctx.clock)
    return Step(WAIT, receiver, "wait until node %d has copied set %d from node %d"
                % (receiver, set_id, provider), run=run, required=required)


def sub_view(sub, complete=None):
    if sub is None:
        return None
    view = {"set": sub.set, "receiver": sub.receiver, "provider": sub.provider,
            "forward": sub.forward, "state": "present"}
    if complete is not None:
        view["complete"] = complete
    return view


def plan_subscription(cluster, set_id, receiver, provider=None, forward=True, omit_copy=False,
                      state="present", located=None, planned=None, leaving=()):
    """Plan for ``receiver`` subscribing to ``set_id``. Returns (plan, before, after).

    ``located`` is (origin, origin's snapshot) when the caller already has them;
    ``planned`` ({receiver: Subscription}) and ``leaving`` (receivers) describe what
    earlier entries of the same :func:`plan_subscriptions` call will have done.
    """
    cluster.require_node(receiver, "the receiver")
    origin, osnap = located or find_set_origin(cluster, set_id)
    planned = planned or {}
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
            return Planned(plan, before, absent)
        fed = sorted(s.receiver for s in osnap.subscriptions.values()
                     if s.set == set_id and s.provider == receiver and s.receiver not in leaving)
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
        return Planned(plan, before, absent)

    provider = origin if provider is None else provider
    if provider == receiver:
        raise SlonyError("provider and receiver are both node %d" % receiver, node=receiver)
    if provider not in osnap.nodes:
        raise SlonyError("provider node %d is not a node of cluster %s" % (provider, cluster.name),
                         node=provider)
    if provider != origin:
        psub = planned.get(provider) or osnap.subscriptions.get((set_id, provider))
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
              "omit copy = %s);" % (set_id, provider, receiver, yes_no(forward), yes_no(omit_copy)))

    if provider != origin:
        # A cascaded receiver can only copy once its provider has the data.
        plan.add(completion_wait(set_id, provider, psub.provider, required=True))
    if current is None or current.provider == provider:
        if current is None or current.forward != forward:
            plan.extend(caught_up_waits(cluster, provider, exclude=(receiver,))
                        if provider != origin else caught_up_waits(cluster, origin))
            plan.add(call(ns, origin, "subscribeSet",
                          (set_id, provider, receiver, forward, omit_copy),
                          "subscribe node %d to set %d from node %d" % (receiver, set_id, provider)
                          if current is None else
                          "set forward = %s on node %d's subscription to set %d"
                          % (yes_no(forward), receiver, set_id), slonik=slonik))
            if current is not None:
                # No copy to wait for: the change is done once every node has it. A new
                # subscription is done when the receiver has its copy (below); its slon
                # processed the events before the copy.
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
    return Planned(plan, before, after)


def plan_subscriptions(cluster, set_id, entries, state="present"):
    """Several receivers of one set in one plan. Returns (plan, before, after).

    ``entries``: dicts with ``receiver`` and optional ``provider`` (default: the
    origin), ``forward`` (default true) and ``omit_copy`` (default false). Providers
    are subscribed before the nodes they feed (unsubscribed after them); every
    receiver is subscribed before any completion wait, so the copies run at the same
    time, as after a slonik script of SUBSCRIBE SETs, and the plan ends by waiting
    for all of them.
    """
    if not entries:
        raise SlonyError("receivers: give at least one receiver")
    origin, osnap = find_set_origin(cluster, set_id)
    normalized, seen = [], set()
    for index, entry in enumerate(entries):
        receiver = entry.get("receiver")
        if receiver is None:
            raise SlonyError("receivers[%d]: receiver is required" % index)
        receiver = int(receiver)
        if receiver in seen:
            raise SlonyError("receivers[%d]: node %d is listed twice" % (index, receiver))
        seen.add(receiver)
        provider = entry.get("provider")
        normalized.append({
            "receiver": receiver,
            "provider": origin if provider is None else int(provider),
            "forward": True if entry.get("forward") is None else bool(entry["forward"]),
            "omit_copy": bool(entry.get("omit_copy"))})
    ordered = feeding_order(normalized, origin, provider=lambda e: e["provider"],
                            receiver=lambda e: e["receiver"])
    if state == "absent":
        ordered.reverse()
    plan, deferred, before, after = Plan(), [], [], []
    planned, leaving = {}, set()
    for index, entry in enumerate(ordered):
        one, one_before, one_after, dummy = plan_subscription(
            cluster, set_id, entry["receiver"], entry["provider"], entry["forward"],
            entry["omit_copy"], state, located=(origin, osnap), planned=planned,
            leaving=leaving)
        steps = list(one.steps)
        tail = len(steps)
        while tail and steps[tail - 1].kind == WAIT and not steps[tail - 1].required:
            tail -= 1
        if state == "absent":
            # The provider of this receiver refuses to leave until it has seen this
            # receiver go: then the wait is a precondition of what follows.
            current = osnap.subscriptions.get((set_id, entry["receiver"]))
            later = set(e["receiver"] for e in ordered[index + 1:])
            if current is not None and current.provider in later:
                for step in steps[tail:]:
                    step.required = True
            plan.extend(steps)
        else:
            # The trailing completion waits go to the end: all the copies run at once.
            plan.extend(steps[:tail])
            deferred.extend(steps[tail:])
        before.append(one_before)
        after.append(one_after)
        if state == "absent":
            leaving.add(entry["receiver"])
        else:
            planned[entry["receiver"]] = Subscription(set_id, entry["provider"],
                                                      entry["receiver"], entry["forward"], True)
    plan.extend(deferred)
    order = dict((entry["receiver"], index) for index, entry in enumerate(normalized))
    before.sort(key=lambda view: order[view["receiver"]])
    after.sort(key=lambda view: order[view["receiver"]])
    return Planned(plan, before, after)
