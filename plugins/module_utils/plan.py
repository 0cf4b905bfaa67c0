# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans: what a module would do, as data; and the one executor that does it.

A module compares what the user wants with catalog snapshots and produces a
:class:`Plan`, a list of :class:`Step`. Planning needs no database, so it is unit
tested on its own. Check mode renders the plan (SQL and the equivalent slonik)
without running it; normal mode hands it to :func:`execute_plan`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .pg import sql

from collections import namedtuple

from .events import Event, execute, submit_event, submit_events, wait_for_event
from .errors import SlonyError
from .waits import DEFAULT_TIMEOUT, SYSTEM_CLOCK, retry

# Step kinds.
EVENT = "event"          # stored function creating events: locks + call + commit
EXEC = "exec"            # a plain statement in its own transaction
INIT_NODE = "init_node"  # create + load the schema, initializeLocalNode, then a function
WAIT = "wait"            # wait until an origin's last event is confirmed
CALLBACK = "callback"    # work whose statements depend on what is read at run time

# At most this many calls of one batch share a transaction (each SET ADD TABLE takes an
# ACCESS EXCLUSIVE lock on its table, and the lock table is shared and finite).
BATCH_LIMIT = 500


class Planned(namedtuple("Planned", "plan before after extra")):
    """What every planner returns: the :class:`Plan`, the managed objects before and
    after it (``after`` is what the plan leads to), and module-specific results."""

    __slots__ = ()

    def __new__(cls, plan, before=None, after=None, extra=None):
        # ``extra`` is kept as the same dict: step runners add what they learn while
        # the plan runs (the SYNC's event, the node a failover promoted) to it.
        return super(Planned, cls).__new__(cls, plan, before, after,
                                           {} if extra is None else extra)


class RunContext:
    """What a step's runner gets besides the cluster: the caller's ``timeout``
    (``wait_timeout``), the Slony ``share_dir`` and the :class:`waits.Clock`."""

    def __init__(self, timeout=DEFAULT_TIMEOUT, share_dir=None, clock=None):
        self.timeout = timeout
        self.share_dir = share_dir
        self.clock = clock or SYSTEM_CLOCK


class Step:
    """One thing to do on one node.

    ``query``/``params`` are the SQL (a psycopg2 Composable with ``%s`` placeholders)
    and its parameters; ``function`` and ``args`` keep the call in plain form for
    tests and messages; ``slonik`` is the equivalent slonik command.

    A WAIT step is either a *precondition* (``required``: the next steps are only
    correct once it is over, e.g. slonik's "config caught up" before SUBSCRIBE SET, or
    a copy that must finish before MERGE SET), which always runs, or a *completion*
    wait (the change has reached every node), which the caller may skip (the modules'
    ``wait: false``). ``wait_on`` is the node whose catalog is polled (default: the
    event's origin). EVENT steps with the same ``batch`` key, one after the other on
    one node, are submitted in one transaction, as slonik submits the SET ADD TABLE
    calls of one command.

    ``run(cluster, step, ctx)`` (ctx: :class:`RunContext`) is the runner of a
    CALLBACK step (it returns the events it created) or of a WAIT step with a
    condition of its own. ``loads_schema`` says that the step loads the Slony schema
    on its node (the executor then loads the schemas of several new nodes in parallel
    before it starts).
    """

    def __init__(self, kind, node, description, slonik=None, query=None, params=None,
                 function=None, args=None, confirmers=None, run=None, required=False,
                 wait_on=None, batch=None, loads_schema=None):
        self.kind = kind
        self.node = node
        self.description = description
        self.slonik = slonik
        self.query = query
        self.params = tuple(params or ())
        self.function = function
        self.args = tuple(args or ())
        self.confirmers = confirmers
        self.run = run
        self.loads_schema = kind == INIT_NODE if loads_schema is None else loads_schema
        self.required = required
        self.wait_on = wait_on
        self.batch = batch

    def __repr__(self):
        return "Step(%s, node=%s, %s%r)" % (self.kind, self.node, self.function or "",
                                            self.args)

    def as_dict(self):
        return {"kind": self.kind, "node": self.node, "description": self.description,
                "function": self.function, "args": list(self.args)}


def function_call(ns, function, args):
    """``select "_cluster".function(%s, ...)`` with the cluster schema quoted by psycopg2."""
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
    return sql.SQL("select {}.{}({})").format(ns, sql.Identifier(function.lower()), placeholders) \
        if args else sql.SQL("select {}.{}()").format(ns, sql.Identifier(function.lower()))


def call(ns, node, function, args, description, slonik=None, kind=EVENT, batch=None):
    """A step that calls one Slony stored function on ``node``."""
    return Step(kind, node, description, slonik=slonik,
                query=function_call(ns, function, args), params=args,
                function=function, args=args, batch=batch)


def wait(origin, description, confirmers=None, slonik=None, required=False, wait_on=None):
    """A step that waits until ``origin``'s last event is confirmed by ``confirmers``.

    The event is the last one this run submitted on ``origin``; when the run
    submitted none there (a re-run after an interrupted one), it is the last
    non-SYNC event of ``origin``, as slonik's own implicit wait assumes.
    ``required`` marks a precondition of the following steps (see :class:`Step`).
    """
    return Step(WAIT, origin, description, slonik=slonik, confirmers=confirmers,
                required=required, wait_on=wait_on)


class Plan:
    def __init__(self, steps=None):
        self.steps = list(steps or [])

    def add(self, step):
        self.steps.append(step)
        return step

    def extend(self, steps):
        self.steps.extend(steps)

    def __len__(self):
        return len(self.steps)

    def __bool__(self):
        return bool(self.steps)

    __nonzero__ = __bool__

    def changes(self):
        """Steps that change something (waits do not)."""
        return [s for s in self.steps if s.kind != WAIT]

    def slonik(self):
        return [s.slonik for s in self.steps if s.slonik]


def render_step(cluster, step):
    """What check mode reports for a step: the SQL as it would run (redacted)."""
    if step.kind == WAIT:
        return "-- %s" % step.description
    if step.kind == INIT_NODE:
        text = "-- create schema %s and load the Slony-I SQL files; " % cluster.namespace
        return text + cluster.render(step.node, step.query, step.params)
    if step.kind == CALLBACK:
        text = "-- %s" % step.description
        if step.query is not None:
            text += "; " + cluster.render(step.node, step.query, step.params)
        return text
    return cluster.render(step.node, step.query, step.params)


_LAST_CONFIG_EVENT = """
select ev_origin, ev_seqno, ev_type from {ns}.sl_event
 where ev_origin = {ns}.getLocalNodeId(%s) and ev_type <> 'SYNC'
 order by ev_seqno desc limit 1
"""


def last_config_event(cluster, node):
    """The newest non-SYNC event ``node`` originated (as slonik's script-start probe)."""
    rows = cluster.fetch(node, sql.SQL(_LAST_CONFIG_EVENT).format(ns=cluster.ns),
                         (cluster.namespace,))
    return Event(*rows[0]) if rows else None


def _run_init_node(cluster, step, ctx):
    from .schema import install_schema  # local: only init needs the files
    conn = cluster.connection(step.node, check_identity=False)
    try:
        loaded = install_schema(cluster, step.node, ctx.share_dir)
    except Exception:
        conn.rollback()
        cluster.discard(step.node)
        raise
    cluster.log(step.node, loaded)
    try:
        events = submit_event(cluster, step.node, step.query, step.params)
    finally:
        # The SQL files set search_path for the session and the C functions cache
        # per session: never reuse this connection.
        cluster.discard(step.node)
    return events


def _batches(steps):
    """Yield runs of steps: a batch of EVENT steps (same key, same node) or one step."""
    index = 0
    while index < len(steps):
        step = steps[index]
        end = index + 1
        if step.kind == EVENT and step.batch is not None:
            while end < len(steps) and end - index < BATCH_LIMIT \
                    and steps[end].kind == EVENT and steps[end].batch == step.batch \
                    and steps[end].node == step.node:
                end += 1
        yield steps[index:end]
        index = end


# A deadlock rolls the whole event transaction back: it is submitted again. SET ADD
# TABLE's trigger creation, for one, takes locks the application's writes race.
DEADLOCK = "40P01"


def _submit(cluster, node, calls, ctx):
    """submit_events, again after a deadlock, for at most ``ctx.timeout`` seconds."""
    return retry(lambda: submit_events(cluster, node, calls), ctx.timeout,
                 lambda exc: exc.sqlstate == DEADLOCK, lambda exc: exc, clock=ctx.clock,
                 interval=0.2)


def execute_plan(cluster, plan, wait_enabled=True, timeout=DEFAULT_TIMEOUT, share_dir=None,
                 clock=None):
    """Run every step in order; return the events created. Stops at the first error.

    With ``wait_enabled`` false, completion waits are skipped; preconditions
    (``Step.required``) still run. Every wait gets ``timeout`` seconds.
    """
    ctx = RunContext(timeout, share_dir, clock)
    events = []
    loads = [s.node for s in plan.steps if s.loads_schema]
    if len(loads) > 1:
        from .schema import preload_schemas  # local: only new nodes need the files
        preload_schemas(cluster, loads, share_dir)
    for run in _batches(plan.steps):
        step = run[0]
        if step.kind == WAIT:
            if wait_enabled or step.required:
                _run_wait(cluster, step, events, ctx)
        elif step.kind == EVENT:
            events.extend(_submit(cluster, step.node, [(s.query, s.params) for s in run], ctx))
        elif step.kind == EXEC:
            execute(cluster, step.node, step.query, step.params)
        elif step.kind == INIT_NODE:
            events.extend(_run_init_node(cluster, step, ctx))
        elif step.kind == CALLBACK:
            events.extend(step.run(cluster, step, ctx) or [])
        else:
            raise SlonyError("internal error: unknown step kind %r" % step.kind)
    return events


def _run_wait(cluster, step, events, ctx):
    if step.run is not None:
        step.run(cluster, step, ctx)
        return
    mine = [e for e in events if e.origin == step.node]
    target = mine[-1] if mine else last_config_event(cluster, step.node)
    if target is not None:
        wait_for_event(cluster, target, step.confirmers, timeout=ctx.timeout,
                       wait_on=step.wait_on, clock=ctx.clock)


__all__ = ["Planned", "RunContext", "Step", "Plan", "call", "wait", "execute_plan", "render_step", "BATCH_LIMIT",
           "EVENT", "EXEC", "INIT_NODE", "WAIT", "CALLBACK"]
