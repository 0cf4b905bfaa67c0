# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subscriptions: SUBSCRIBE SET, RESUBSCRIBE NODE and UNSUBSCRIBE SET."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .slonik import yes_no
from .pg import sql

from .catalog import PENDING_CONNINFO, Subscription, feeding_order, read_snapshot
from .cluster import NODE_INITIALIZED
from .errors import SlonyError
from .waits import Behind, Pending, poll_until, slon_state, timeout_error
from .plan import EXEC, WAIT, Plan, Planned, Step, call, wait
from .sets import caught_up_waits
from .setmove import old_transactions


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


# On the provider, when it is the set's origin: the xmax of the ENABLE_SUBSCRIPTION
# event's snapshot. slon copies from the origin only once every transaction below it
# has ended (remote_worker.c copy_set), on the whole PostgreSQL server.
_COPY_XMAX = """
select pg_catalog.txid_snapshot_xmax(e.ev_snapshot)
  from {ns}.sl_event e join {ns}.sl_set s on s.set_origin = e.ev_origin
 where s.set_id = %s and s.set_origin = %s and e.ev_type = 'ENABLE_SUBSCRIPTION'
   and e.ev_data1 = %s and e.ev_data3 = %s
 order by e.ev_seqno desc limit 1
"""


def copy_blockers(cluster, set_id, receiver, provider):
    """The transactions on ``provider`` that hold ``receiver``'s copy of ``set_id`` (when
    the provider is the set's origin), as text; best effort: [] when they cannot be read."""
    try:
        rows = cluster.fetch(provider, sql.SQL(_COPY_XMAX).format(ns=cluster.ns),
                             (set_id, provider, str(set_id), str(receiver)))
    except SlonyError:
        return []
    if not rows or rows[0][0] is None:
        return []
    return old_transactions(cluster, provider, rows[0][0])


def wait_subscription(cluster, set_id, receiver, provider, timeout, clock=None):
    """Wait until ``receiver`` has its copy of ``set_id`` from ``provider``.

    On timeout the error says whether the provider's slon runs and names the
    transactions on the origin that are older than the subscription, which hold the
    copy back."""
    def probe():
        if subscription_complete(cluster, set_id, receiver, provider):
            return True
        return Pending([Behind(receiver, "copy of set %d from node %d not finished"
                               % (set_id, provider))])

    def on_timeout(pending):
        note = "the slon of provider node %d is %s" % (provider, slon_state(cluster, provider))
        blockers = copy_blockers(cluster, set_id, receiver, provider)
        if blockers:
            note += ("; slon copies only once the transactions on the origin (node %d) that "
                     "are older than the subscription have ended, and these still run: %s"
                     % (provider, "; ".join(blockers)))
        pending.note = note + "; the receiver's slon log says why the copy does not finish"
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


# What is read about one receiver before deciding: its paths (receiver's catalog) and
# whether its copy of the set is complete (both only for a present state). A read that
# failed is kept as its error, which the decision raises where the check it serves
# comes: ``no_admin`` (no admin_conninfo), ``error`` (not an initialised node),
# ``read_error`` (its catalog could not be read).
ReceiverFacts = namedtuple("ReceiverFacts", "no_admin error read_error paths complete")

# What plan_subscription(s) read: the set's origin and its snapshot, the initialised
# admin nodes (only when some configuration event is to be submitted: the "config
# caught up" waits name them) and {receiver: ReceiverFacts}.
SubscriptionFacts = namedtuple("SubscriptionFacts", "origin osnap nodes receivers")


def normalize_receivers(entries, origin):
    """Validate the ``receivers`` list: dicts with receiver, provider (default: the
    origin), forward (default true), omit_copy (default false). Pure."""
    if not entries:
        raise SlonyError("receivers: give at least one receiver")
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
    return normalized


def _read_receiver(cluster, set_id, receiver, origin, osnap, state):
    try:
        cluster.require_node(receiver, "the receiver")
    except SlonyError as exc:
        return ReceiverFacts(exc, None, None, {}, False)
    if receiver not in osnap.nodes or receiver == origin:
        return ReceiverFacts(None, None, None, {}, False)  # refused by the decision
    try:
        cluster.require_initialized(receiver)
    except SlonyError as exc:
        return ReceiverFacts(None, exc, None, {}, False)
    if state == "absent":
        return ReceiverFacts(None, None, None, {}, False)
    try:
        paths = read_snapshot(cluster, receiver).paths
        complete = (set_id, receiver) in osnap.subscriptions \
            and subscription_complete(cluster, set_id, receiver)
    except SlonyError as exc:
        return ReceiverFacts(None, None, exc, {}, False)
    return ReceiverFacts(None, None, None, paths, complete)


def _submits_events(osnap, set_id, entry):
    current = osnap.subscriptions.get((set_id, entry["receiver"]))
    return current is None or current.provider != entry["provider"] \
        or current.forward != entry["forward"]


def read_subscriptions(cluster, set_id, entries, state="present", located=None):
    """The reads of a subscription plan for normalised ``entries``, as
    :class:`SubscriptionFacts`. ``located``: (origin, origin's snapshot) if known."""
    origin, osnap = located or find_set_origin(cluster, set_id)
    receivers = dict((e["receiver"], _read_receiver(cluster, set_id, e["receiver"], origin,
                                                    osnap, state)) for e in entries)
    nodes = []
    if state == "present" and any(_submits_events(osnap, set_id, e) for e in entries):
        nodes = cluster.initialized_nodes()
    return SubscriptionFacts(origin, osnap, nodes, receivers)


def _plan_unsubscribe(ns, set_id, receiver, osnap, leaving):
    plan = Plan()
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
    return plan


def _check_provider(cluster_name, set_id, receiver, provider, facts, planned):
    """The provider's subscription (None for the origin), once the provider is known
    to be able to feed ``receiver``. Pure."""
    origin, osnap = facts.origin, facts.osnap
    if provider == receiver:
        raise SlonyError("provider and receiver are both node %d" % receiver, node=receiver)
    if provider not in osnap.nodes:
        raise SlonyError("provider node %d is not a node of cluster %s" % (provider, cluster_name),
                         node=provider)
    psub = None
    if provider != origin:
        psub = planned.get(provider) or osnap.subscriptions.get((set_id, provider))
        if psub is None or not psub.forward:
            raise SlonyError(
                "provider node %d %s set %d, so it cannot feed node %d; subscribe it with "
                "forward: true first, or use the origin (node %d) as provider" % (
                    provider, "does not subscribe to" if psub is None else "does not forward",
                    set_id, receiver, origin), node=provider)
    found = facts.receivers[receiver]
    if found.read_error is not None:
        raise found.read_error
    rpath = found.paths.get((provider, receiver))
    if rpath is None or rpath.conninfo == PENDING_CONNINFO:
        raise SlonyError("node %d has no path to its provider node %d; store it first "
                         "(dany.slony.slony_path, server %d, client %d)"
                         % (receiver, provider, provider, receiver), node=receiver)
    return psub


def _subscribe_steps(ns, set_id, entry, current, facts):
    """SUBSCRIBE SET for a new subscription or a forward change (same provider). Pure."""
    receiver, provider, forward = entry["receiver"], entry["provider"], entry["forward"]
    origin = facts.origin
    if current is not None and current.forward == forward:
        return []
    slonik = ("subscribe set (id = %d, provider = %d, receiver = %d, forward = %s, "
              "omit copy = %s);" % (set_id, provider, receiver, yes_no(forward),
                                    yes_no(entry["omit_copy"])))
    steps = caught_up_waits(facts.nodes, provider, exclude=(receiver,)) \
        if provider != origin else caught_up_waits(facts.nodes, origin)
    steps.append(call(ns, origin, "subscribeSet",
                      (set_id, provider, receiver, forward, entry["omit_copy"]),
                      "subscribe node %d to set %d from node %d" % (receiver, set_id, provider)
                      if current is None else
                      "set forward = %s on node %d's subscription to set %d"
                      % (yes_no(forward), receiver, set_id), slonik=slonik))
    if current is not None:
        # No copy to wait for: the change is done once every node has it. A new
        # subscription is done when the receiver has its copy (the completion wait);
        # its slon processed the events before the copy.
        steps.append(wait(origin, "wait until every node has confirmed the subscription"))
    return steps


def _resubscribe_steps(ns, set_id, entry, current, facts):
    """RESUBSCRIBE NODE: a new provider for ``receiver``. Pure."""
    receiver, provider = entry["receiver"], entry["provider"]
    origin, osnap = facts.origin, facts.osnap

    def same_origin(other):
        return bool(osnap.sets.get(other)) and osnap.sets[other].origin == origin

    others = sorted(s.set for s in osnap.subscriptions.values()
                    if s.receiver == receiver and s.set != set_id and same_origin(s.set))
    description = "move node %d's subscription to set %d from provider %d to node %d" % (
        receiver, set_id, current.provider, provider)
    if others:
        description += (" (Slony moves every set of origin %d with it: set(s) %s)"
                        % (origin, ", ".join(map(str, others))))
    if current.forward != entry["forward"]:
        raise SlonyError("changing the provider and forward at once is not supported; "
                         "change one, then the other", node=receiver)
    steps = caught_up_waits(facts.nodes, provider)
    steps.append(call(ns, origin, "resubscribeNode", (origin, provider, receiver), description,
                      slonik="resubscribe node (origin = %d, provider = %d, receiver = %d);"
                             % (origin, provider, receiver)))
    steps.append(call(ns, receiver, "reshapeSubscription", (origin, provider, receiver),
                      "switch node %d's slon to provider %d at once" % (receiver, provider),
                      kind=EXEC))
    steps.append(wait(origin, "wait until every node has confirmed the new provider"))
    return steps


def decide_subscription(ns, cluster_name, set_id, entry, facts, state="present", planned=None,
                        leaving=()):
    """The plan for one normalised entry from :class:`SubscriptionFacts`. Pure.

    ``planned`` ({receiver: Subscription}) and ``leaving`` (receivers) describe what
    earlier entries of the same plan will have done.
    """
    receiver, provider = entry["receiver"], entry["provider"]
    origin, osnap = facts.origin, facts.osnap
    found = facts.receivers[receiver]
    if found.no_admin is not None:
        raise found.no_admin
    current = osnap.subscriptions.get((set_id, receiver))
    absent = {"set": set_id, "receiver": receiver, "state": "absent"}
    if receiver not in osnap.nodes:
        raise SlonyError("node %d is not a node of cluster %s" % (receiver, cluster_name),
                         node=receiver)
    if receiver == origin:
        raise SlonyError("node %d is the origin of set %d; the origin cannot subscribe to "
                         "its own set" % (receiver, set_id), node=receiver)
    if found.error is not None:
        raise found.error

    if state == "absent":
        before = sub_view(current) or absent
        if current is None:
            return Planned(Plan(), before, absent)
        return Planned(_plan_unsubscribe(ns, set_id, receiver, osnap, leaving), before, absent)

    psub = _check_provider(cluster_name, set_id, receiver, provider, facts, planned or {})
    before = sub_view(current, found.complete) or absent
    after = {"set": set_id, "receiver": receiver, "provider": provider,
             "forward": entry["forward"], "state": "present", "complete": True}
    plan = Plan()
    if provider != origin:
        # A cascaded receiver can only copy once its provider has the data.
        plan.add(completion_wait(set_id, provider, psub.provider, required=True))
    if current is None or current.provider == provider:
        plan.extend(_subscribe_steps(ns, set_id, entry, current, facts))
    else:
        plan.extend(_resubscribe_steps(ns, set_id, entry, current, facts))
    plan.add(completion_wait(set_id, receiver, provider))
    return Planned(plan, before, after)


def plan_subscription(cluster, set_id, receiver, provider=None, forward=True, omit_copy=False,
                      state="present", located=None):
    """Plan for ``receiver`` subscribing to ``set_id``. Returns :class:`plan.Planned`.

    ``located`` is (origin, origin's snapshot) when the caller already has them.
    Reads first (:func:`read_subscriptions`), then decides (:func:`decide_subscription`).
    """
    cluster.require_node(receiver, "the receiver")
    origin, osnap = located or find_set_origin(cluster, set_id)
    entry = {"receiver": receiver, "provider": origin if provider is None else provider,
             "forward": forward, "omit_copy": omit_copy}
    facts = read_subscriptions(cluster, set_id, [entry], state, located=(origin, osnap))
    return decide_subscription(cluster.ns, cluster.name, set_id, entry, facts, state)


def _trailing_waits(steps):
    """Where the trailing completion waits (not preconditions) of ``steps`` start."""
    tail = len(steps)
    while tail and steps[tail - 1].kind == WAIT and not steps[tail - 1].required:
        tail -= 1
    return tail


def decide_subscriptions(ns, cluster_name, set_id, normalized, facts, state="present"):
    """The plan for every normalised entry, from :class:`SubscriptionFacts`. Pure."""
    ordered = feeding_order(normalized, facts.origin, provider=lambda e: e["provider"],
                            receiver=lambda e: e["receiver"])
    if state == "absent":
        ordered.reverse()
    plan, deferred, before, after = Plan(), [], [], []
    planned, leaving = {}, set()
    for index, entry in enumerate(ordered):
        one, one_before, one_after, dummy = decide_subscription(
            ns, cluster_name, set_id, entry, facts, state, planned=planned, leaving=leaving)
        steps = list(one.steps)
        tail = _trailing_waits(steps)
        if state == "absent":
            # The provider of this receiver refuses to leave until it has seen this
            # receiver go: then the wait is a precondition of what follows.
            current = facts.osnap.subscriptions.get((set_id, entry["receiver"]))
            later = set(e["receiver"] for e in ordered[index + 1:])
            if current is not None and current.provider in later:
                for step in steps[tail:]:
                    step.required = True
            plan.extend(steps)
            leaving.add(entry["receiver"])
        else:
            # The trailing completion waits go to the end: all the copies run at once.
            plan.extend(steps[:tail])
            deferred.extend(steps[tail:])
            planned[entry["receiver"]] = Subscription(set_id, entry["provider"],
                                                      entry["receiver"], entry["forward"], True)
        before.append(one_before)
        after.append(one_after)
    plan.extend(deferred)
    order = dict((entry["receiver"], index) for index, entry in enumerate(normalized))
    before.sort(key=lambda view: order[view["receiver"]])
    after.sort(key=lambda view: order[view["receiver"]])
    return Planned(plan, before, after)


def plan_subscriptions(cluster, set_id, entries, state="present"):
    """Several receivers of one set in one plan. Returns :class:`plan.Planned`.

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
    normalized = normalize_receivers(entries, origin)
    facts = read_subscriptions(cluster, set_id, normalized, state, located=(origin, osnap))
    return decide_subscriptions(cluster.ns, cluster.name, set_id, normalized, facts, state)
