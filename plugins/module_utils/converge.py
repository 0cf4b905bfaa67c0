# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A whole cluster description converged in one run: the same planners as the modules.

:func:`converge_steps` turns a description (nodes, paths, sets with their tables,
sequences and subscribers) into an ordered list of :class:`ConvergeStep` (pure); and
:func:`run_steps` plans each step on what the previous ones left and runs it before the
next one is planned, on one :class:`cluster.Cluster` (one set of connections, one run
lock). It is what ``dany.slony.slony_cluster`` (and so the ``cluster`` role) and
``dany.Cluster.converge`` do: the order slonik scripts use, with every step reading first.

In a dry run (check mode) nothing is created, so a step that needs what an earlier step
would create is not planned: after nodes to create, nothing else is; after a set to
create, not its tables, sequences or subscriptions. Those steps come back with ``not_planned``
with the reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .errors import SlonyError
from .nodes import plan_nodes_present
from .paths import plan_paths
from .plan import execute_plan, render_step
from .sets import plan_set
from .subscriptions import plan_subscriptions
from .tables import plan_sequences, plan_tables
from .waits import DEFAULT_TIMEOUT

# kind: nodes, paths, set, tables, sequences, subscriptions; set_id: None for nodes and
# paths; wait: whether the step's completion waits run (when the caller waits at all).
ConvergeStep = namedtuple("ConvergeStep", "label kind set_id planner wait")

# What one step did: ``planned`` is None for a step a dry run did not plan (``not_planned`` says why).
StepResult = namedtuple("StepResult", "step planned changed queries events not_planned")

TABLE_KEYS = ("tables", "patterns", "schemas")
SEQUENCE_KEYS = ("sequences", "sequence_patterns", "sequence_schemas")
SET_KEYS = frozenset(("id", "origin", "comment", "exclusive", "exclude", "sequence_exclude",
                      "subscribers") + TABLE_KEYS + SEQUENCE_KEYS)
SUBSCRIBER_KEYS = frozenset(("receiver", "provider", "forward", "omit_copy"))


def _int(value, what):
    if isinstance(value, bool):
        raise SlonyError("%s must be an integer, not %r" % (what, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SlonyError("%s must be an integer, not %r" % (what, value))


def normalize_sets(sets):
    """Check and normalise set descriptions (pure). Every problem is named at once.

    Each set: ``id``, ``origin``, optional ``comment``; its tables (``tables``,
    ``patterns``, ``schemas``, ``exclude``), its sequences (``sequences``,
    ``sequence_patterns``, ``sequence_schemas``, ``sequence_exclude``), ``exclusive``,
    and ``subscribers``: dicts with ``receiver`` and optional ``provider`` (default the
    origin), ``forward`` (default true) and ``omit_copy`` (default false).
    """
    problems, out, seen = [], [], set()
    for index, entry in enumerate(sets or []):
        where = "sets[%d]" % index
        if not isinstance(entry, dict):
            problems.append("%s must be a mapping, not %r" % (where, entry))
            continue
        unknown = sorted(set(entry) - SET_KEYS)
        if unknown:
            problems.append("%s: unknown keys %s (known: %s)" % (
                where, ", ".join(unknown), ", ".join(sorted(SET_KEYS))))
        try:
            set_id = _int(entry.get("id"), where + ".id")
            origin = _int(entry.get("origin"), where + ".origin")
        except SlonyError as exc:
            problems.append(exc.message)
            continue
        if set_id < 1 or origin < 1:
            problems.append("%s: id and origin must be positive (got %d, %d)" % (
                where, set_id, origin))
        if set_id in seen:
            problems.append("%s: set %d is described twice" % (where, set_id))
        seen.add(set_id)
        subscribers, receivers = [], set()
        for sub_index, sub in enumerate(entry.get("subscribers") or []):
            swhere = "%s.subscribers[%d]" % (where, sub_index)
            if not isinstance(sub, dict) or "receiver" not in sub:
                problems.append("%s must be a mapping with a receiver, not %r" % (swhere, sub))
                continue
            unknown = sorted(set(sub) - SUBSCRIBER_KEYS)
            if unknown:
                problems.append("%s: unknown keys %s" % (swhere, ", ".join(unknown)))
            try:
                receiver = _int(sub["receiver"], swhere + ".receiver")
                provider = (origin if sub.get("provider") is None
                            else _int(sub["provider"], swhere + ".provider"))
            except SlonyError as exc:
                problems.append(exc.message)
                continue
            if receiver == origin:
                problems.append("%s: node %d is the origin of set %d, not a receiver" % (
                    swhere, receiver, set_id))
            if receiver in receivers:
                problems.append("%s: receiver %d is listed twice" % (swhere, receiver))
            receivers.add(receiver)
            subscribers.append({"receiver": receiver, "provider": provider,
                                "forward": True if sub.get("forward") is None
                                else bool(sub["forward"]),
                                "omit_copy": bool(sub.get("omit_copy"))})
        normalized = dict(entry, id=set_id, origin=origin, subscribers=subscribers,
                          exclusive=bool(entry.get("exclusive")))
        out.append(normalized)
    if problems:
        raise SlonyError("sets: " + "; ".join(problems))
    return out


def _has_any(entry, keys):
    return any(entry.get(key) is not None for key in keys)


def converge_steps(nodes=None, paths=None, sets=None, event_node=None):
    """The ordered steps for a description (pure): the nodes (one plan, lowest id
    first), the paths (no wait: the slons may not run yet), then per set: the set, its
    tables, its sequences (no completion waits: Slony applies one origin's events in
    order) and its subscriptions (which wait until every receiver has its copy)."""
    steps = []
    if nodes:
        entries = [dict(e) for e in nodes]
        steps.append(ConvergeStep(
            "nodes", "nodes", None,
            lambda cluster: plan_nodes_present(cluster, entries, event_node), False))
    if paths:
        path_list = [dict(p) for p in paths]
        steps.append(ConvergeStep("paths", "paths", None,
                                  lambda cluster: plan_paths(cluster, path_list), False))
    for entry in normalize_sets(sets):
        steps.extend(_set_steps(entry))
    return steps


def _set_steps(entry):
    set_id, origin = entry["id"], entry["origin"]
    label = "set %d" % set_id
    steps = [ConvergeStep(label, "set", set_id,
                          lambda cluster: plan_set(cluster, set_id, origin, entry.get("comment")),
                          False)]
    if _has_any(entry, TABLE_KEYS):
        steps.append(ConvergeStep(
            label + " tables", "tables", set_id,
            lambda cluster: plan_tables(cluster, set_id, origin, entry.get("tables"),
                                        entry.get("patterns"), entry.get("schemas"),
                                        entry.get("exclude"), exclusive=entry["exclusive"]),
            False))
    if _has_any(entry, SEQUENCE_KEYS):
        steps.append(ConvergeStep(
            label + " sequences", "sequences", set_id,
            lambda cluster: plan_sequences(cluster, set_id, origin, entry.get("sequences"),
                                           entry.get("sequence_patterns"),
                                           entry.get("sequence_schemas"),
                                           entry.get("sequence_exclude"),
                                           exclusive=entry["exclusive"]),
            False))
    if entry["subscribers"]:
        subscribers = entry["subscribers"]
        steps.append(ConvergeStep(
            label + " subscriptions", "subscriptions", set_id,
            lambda cluster: plan_subscriptions(cluster, set_id, subscribers), True))
    return steps


def creates_nodes(planned):
    """Whether a plan creates nodes (loads the Slony schema somewhere)."""
    return any(step.loads_schema for step in planned.plan.steps)


def creates_set(planned):
    """Whether a ``plan_set`` plan creates its set."""
    before = planned.before or {}
    return bool(planned.plan.changes()) and before.get("state") == "absent"


def skip_reason(step, pending_nodes, pending_sets):
    """Why a dry run does not plan ``step`` (None: plan it). Pure."""
    if pending_nodes:
        return "not planned: nodes would be created first (run without check mode)"
    if step.set_id in pending_sets and step.kind != "set":
        return ("not planned: set %d would be created first (run without check mode)"
                % step.set_id)
    return None


def run_steps(cluster, steps, dry_run=False, wait=True, timeout=DEFAULT_TIMEOUT,
              share_dir=None, clock=None):
    """Plan each step on what the earlier ones left, and run it unless ``dry_run``.

    Returns a list of :class:`StepResult`. The first failing step raises its
    :class:`SlonyError`; the steps before it are done (a re-run goes on from there)."""
    results, pending_nodes, pending_sets = [], False, set()
    for step in steps:
        reason = skip_reason(step, pending_nodes, pending_sets) if dry_run else None
        if reason is not None:
            results.append(StepResult(step, None, False, [], [], reason))
            continue
        planned = step.planner(cluster)
        changed = bool(planned.plan.changes())
        if dry_run:
            queries = [{"node": s.node, "sql": render_step(cluster, s)}
                       for s in planned.plan.steps if s.kind != "wait"]
            events = []
            if step.kind == "nodes" and creates_nodes(planned):
                pending_nodes = True
            if step.kind == "set" and creates_set(planned):
                pending_sets.add(step.set_id)
        else:
            first = len(cluster.queries)
            events = execute_plan(cluster, planned.plan, wait_enabled=wait and step.wait,
                                  timeout=timeout, share_dir=share_dir, clock=clock)
            queries = list(cluster.queries[first:])
        results.append(StepResult(step, planned, changed, queries, events, None))
    return results


__all__ = ["ConvergeStep", "StepResult", "normalize_sets", "converge_steps", "run_steps",
           "skip_reason", "creates_nodes", "creates_set"]
