"""plan.py: steps and plans as data (no database).

psycopg2's ``Composable.as_string`` needs a connection to quote identifiers, so the
statements are checked through their structure; ``render`` below spells that structure
out the way PostgreSQL would read it.
"""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import plan as plan_mod
from ansible_collections.dany.slony.plugins.module_utils.plan import (
    CALLBACK, EVENT, EXEC, INIT_NODE, WAIT, Plan, Step, call, function_call, wait)

NS = sql.Identifier("_shop")


def render(query):
    """The statement text of a psycopg2 Composable, identifiers double-quoted."""
    if isinstance(query, sql.Composed):
        return "".join(render(part) for part in query.seq)
    if isinstance(query, sql.Identifier):
        return ".".join('"%s"' % s.replace('"', '""') for s in query.strings)
    if isinstance(query, sql.Placeholder):
        return "%%(%s)s" % query.name if query.name else "%s"
    if isinstance(query, sql.SQL):
        return query.string
    raise AssertionError("unexpected part %r" % (query,))


def identifiers(query):
    if isinstance(query, sql.Composed):
        return [i for part in query.seq for i in identifiers(part)]
    return [query.strings] if isinstance(query, sql.Identifier) else []


def test_step_kinds_are_distinct():
    assert len({EVENT, EXEC, INIT_NODE, WAIT, CALLBACK}) == 5


def test_function_call_lowercases_the_function_and_quotes_the_schema():
    query = function_call(NS, "storeNode", (2, "Replica"))
    assert isinstance(query, sql.Composed)
    assert render(query) == 'select "_shop"."storenode"(%s, %s)'
    # The schema and the function are identifiers (quoted by the driver), never text.
    assert identifiers(query) == [("_shop",), ("storenode",)]


def test_function_call_without_arguments():
    query = function_call(NS, "cleanupEvent", ())
    assert render(query) == 'select "_shop"."cleanupevent"()'
    assert not any(isinstance(p, sql.Placeholder) for p in query.seq)


def test_function_call_one_placeholder_per_argument():
    assert render(function_call(NS, "f", (1,))) == 'select "_shop"."f"(%s)'
    assert render(function_call(NS, "f", tuple(range(5)))).count("%s") == 5


def test_function_call_schema_with_dollar_and_quotes():
    ns = sql.Identifier('_we"ird$')
    assert render(function_call(ns, "DropNode", ([3],))) == 'select "_we""ird$"."dropnode"(%s)'


def test_call_builds_an_event_step():
    step = call(NS, 1, "storeNode", (2, "Replica in Lyon"), "store node 2",
                slonik="store node (id = 2, comment = 'Replica in Lyon', event node = 1);")
    assert step.kind == EVENT
    assert step.node == 1
    assert step.function == "storeNode"
    assert step.args == (2, "Replica in Lyon")
    assert step.params == (2, "Replica in Lyon")
    assert step.description == "store node 2"
    assert step.slonik.startswith("store node (id = 2")
    assert render(step.query) == 'select "_shop"."storenode"(%s, %s)'
    assert step.confirmers is None and step.run is None
    assert step.as_dict() == {"kind": EVENT, "node": 1, "description": "store node 2",
                              "function": "storeNode", "args": [2, "Replica in Lyon"]}


def test_call_other_kind_and_list_args_become_tuples():
    step = call(NS, 3, "enableNode", [3], "enable node 3", kind=EXEC)
    assert step.kind == EXEC
    assert step.params == (3,) and step.args == (3,)
    assert step.slonik is None


def test_wait_step():
    step = wait(1, "wait for node 1's events", confirmers=[2, 3], slonik="wait for event (...);")
    assert step.kind == WAIT
    assert step.node == 1
    assert step.confirmers == [2, 3]
    assert step.query is None and step.params == () and step.args == ()
    assert step.description == "wait for node 1's events"


def test_step_repr_names_kind_node_and_call():
    step = call(NS, 1, "storeNode", (2, "x"), "d")
    assert repr(step) == "Step(event, node=1, storeNode(2, 'x'))"
    assert repr(wait(2, "w")) == "Step(wait, node=2, ())"


def test_plan_changes_exclude_waits():
    first = call(NS, 1, "storeNode", (2, "x"), "store", slonik="store node (id = 2);")
    pause = wait(1, "wait", slonik="wait for event (origin = 1, confirmed = all);")
    second = call(NS, 2, "enableNode", (2,), "enable")
    init = Step(INIT_NODE, 2, "init", slonik="init cluster (id = 2);")
    plan = Plan([first, pause])
    plan.extend([second, init])
    assert plan.add(wait(2, "again")).kind == WAIT
    assert len(plan) == 5
    assert bool(plan)
    assert plan.changes() == [first, second, init]
    assert plan.slonik() == ["store node (id = 2);",
                             "wait for event (origin = 1, confirmed = all);",
                             "init cluster (id = 2);"]


def test_plan_of_only_waits_changes_nothing():
    plan = Plan([wait(1, "a"), wait(2, "b")])
    assert bool(plan)
    assert plan.changes() == []


def test_empty_plan():
    plan = Plan()
    assert len(plan) == 0
    assert not plan
    assert plan.changes() == [] and plan.slonik() == []


def test_plan_copies_the_given_list():
    steps = [wait(1, "a")]
    plan = Plan(steps)
    plan.add(wait(2, "b"))
    assert len(steps) == 1


class RecordingCluster:
    """Just enough of Cluster for render_step and execute_plan's dispatch."""

    namespace = "_shop"

    def render(self, node, query, params):
        return "[%d] %s %r" % (node, render(query), tuple(params))


def test_render_step_texts():
    cluster = RecordingCluster()
    event = call(NS, 1, "storeNode", (2, "x"), "store")
    assert plan_mod.render_step(cluster, event) == \
        "[1] select \"_shop\".\"storenode\"(%s, %s) (2, 'x')"
    assert plan_mod.render_step(cluster, wait(1, "wait for 1")) == "-- wait for 1"
    init = Step(INIT_NODE, 2, "init", query=function_call(NS, "initializeLocalNode", (2, "c")),
                params=(2, "c"))
    assert plan_mod.render_step(cluster, init).startswith(
        "-- create schema _shop and load the Slony-I SQL files; [2] select")
    callback = Step(CALLBACK, 3, "merge later")
    assert plan_mod.render_step(cluster, callback) == "-- merge later"


def test_execute_plan_dispatches_in_order(monkeypatch):
    done = []
    monkeypatch.setattr(plan_mod, "submit_events",
                        lambda c, node, calls: done.append(("event", node, calls[0][1])) or
                        [plan_mod.Event(node, 10 + len(done), "X")])
    monkeypatch.setattr(plan_mod, "execute", lambda c, node, q, p: done.append(("exec", node, p)))
    monkeypatch.setattr(plan_mod, "wait_for_event",
                        lambda c, ev, confirmers, timeout, wait_on, clock: done.append(
                            ("wait", ev, confirmers, timeout)))

    def run(cluster, step, ctx):
        done.append(("callback", step.node, ctx.share_dir, ctx.timeout))
        return [plan_mod.Event(3, 99, "Y")]

    plan = Plan([call(NS, 1, "a", (1,), "a"), call(NS, 1, "b", (2,), "b", kind=EXEC),
                 wait(1, "w", confirmers=[2]), Step(CALLBACK, 3, "cb", run=run)])
    events = plan_mod.execute_plan(RecordingCluster(), plan, timeout=7, share_dir="/s")
    assert done == [("event", 1, (1,)), ("exec", 1, (2,)),
                    ("wait", plan_mod.Event(1, 11, "X"), [2], 7), ("callback", 3, "/s", 7)]
    assert events == [plan_mod.Event(1, 11, "X"), plan_mod.Event(3, 99, "Y")]


def test_execute_plan_skips_waits_when_disabled(monkeypatch):
    monkeypatch.setattr(plan_mod, "submit_events", lambda c, node, calls: [plan_mod.Event(1, 5, "X")])

    def forbidden(*args, **kwargs):
        raise AssertionError("must not wait")

    monkeypatch.setattr(plan_mod, "wait_for_event", forbidden)
    monkeypatch.setattr(plan_mod, "last_config_event", forbidden)
    plan = Plan([call(NS, 1, "a", (), "a"), wait(1, "w")])
    assert plan_mod.execute_plan(RecordingCluster(), plan, wait_enabled=False) == [
        plan_mod.Event(1, 5, "X")]


def test_execute_plan_unknown_kind():
    with pytest.raises(plan_mod.SlonyError) as info:
        plan_mod.execute_plan(RecordingCluster(), Plan([Step("bogus", 1, "?")]))
    assert "unknown step kind 'bogus'" in str(info.value)


def test_execute_plan_wait_without_own_event_uses_the_last_config_event(monkeypatch):
    waited = []
    monkeypatch.setattr(plan_mod, "last_config_event",
                        lambda c, node: plan_mod.Event(node, 42, "STORE_PATH") if node == 2
                        else None)
    monkeypatch.setattr(plan_mod, "wait_for_event",
                        lambda c, ev, confirmers, timeout, wait_on, clock: waited.append((ev, timeout)))
    plan = Plan([wait(2, "w"), wait(3, "nothing to wait for")])
    assert plan_mod.execute_plan(RecordingCluster(), plan) == []
    assert waited == [(plan_mod.Event(2, 42, "STORE_PATH"), plan_mod.DEFAULT_TIMEOUT)]


def test_execute_plan_runs_preconditions_even_without_waits(monkeypatch):
    monkeypatch.setattr(plan_mod, "submit_events", lambda c, node, calls: [plan_mod.Event(1, 5, "X")])
    waited = []
    monkeypatch.setattr(plan_mod, "wait_for_event",
                        lambda c, ev, confirmers, timeout, wait_on, clock: waited.append(
                            (ev.origin, confirmers, wait_on)))
    monkeypatch.setattr(plan_mod, "last_config_event",
                        lambda c, node: plan_mod.Event(node, 42, "STORE_PATH"))
    plan = Plan([wait(2, "caught up", confirmers=[1], required=True, wait_on=1),
                 call(NS, 1, "a", (), "a"), wait(1, "completion")])
    assert plan_mod.execute_plan(RecordingCluster(), plan, wait_enabled=False) == [
        plan_mod.Event(1, 5, "X")]
    assert waited == [(2, [1], 1)]
    waited[:] = []
    plan_mod.execute_plan(RecordingCluster(), plan, wait_enabled=True)
    assert waited == [(2, [1], 1), (1, None, None)]


def test_execute_plan_batches_event_steps_of_one_key_and_node(monkeypatch):
    submitted = []
    monkeypatch.setattr(plan_mod, "submit_events",
                        lambda c, node, calls: submitted.append(
                            (node, [p[0] for q, p in calls])) or [])
    monkeypatch.setattr(plan_mod, "BATCH_LIMIT", 3)
    steps = [call(NS, 1, "sync", (0,), "s")]
    steps += [call(NS, 1, "add", (i,), "a", batch="add") for i in range(1, 8)]
    steps += [call(NS, 2, "add", (8,), "a", batch="add"),
              call(NS, 2, "drop", (9,), "d", batch="drop"),
              call(NS, 2, "drop", (10,), "d", batch="drop"),
              call(NS, 2, "other", (11,), "o")]
    plan_mod.execute_plan(RecordingCluster(), Plan(steps))
    assert submitted == [(1, [0]), (1, [1, 2, 3]), (1, [4, 5, 6]), (1, [7]), (2, [8]),
                         (2, [9, 10]), (2, [11])]


def test_planned_keeps_the_extra_dict_that_runners_fill_while_the_plan_runs():
    report = {}
    planned = plan_mod.Planned(Plan(), {}, {}, report)
    report["event"] = {"origin": 1, "seqno": 5, "type": "SYNC"}
    assert planned.extra is report
    assert planned.extra["event"]["seqno"] == 5
    assert plan_mod.Planned(Plan()).extra == {}


def test_an_event_transaction_that_deadlocks_is_submitted_again(monkeypatch):
    from fakes import FakeClock
    from ansible_collections.dany.slony.plugins.module_utils import plan as plan_mod
    from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
    from ansible_collections.dany.slony.plugins.module_utils.events import Event
    from ansible_collections.dany.slony.plugins.module_utils.plan import RunContext
    tries = []

    def submit(cluster, node, calls):
        tries.append(calls)
        if len(tries) < 3:
            raise SlonyError("node 1: setaddtable failed: deadlock detected", node=1,
                             sqlstate="40P01")
        return [Event(1, 7, "SET_ADD_TABLE")]

    monkeypatch.setattr(plan_mod, "submit_events", submit)
    clock = FakeClock()
    assert plan_mod._submit(None, 1, [("q", ())], RunContext(30, clock=clock)) == [
        Event(1, 7, "SET_ADD_TABLE")]
    assert len(tries) == 3 and clock.waited < 1

    def other(cluster, node, calls):
        raise SlonyError("node 1: setaddtable failed: no such table", node=1, sqlstate="42P01")

    monkeypatch.setattr(plan_mod, "submit_events", other)
    with pytest.raises(SlonyError, match="no such table"):
        plan_mod._submit(None, 1, [("q", ())], RunContext(30, clock=FakeClock()))
