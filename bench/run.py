#!/usr/bin/env python
"""Side-by-side benchmark: slonik (+ slon) against the dany.slony collection.

The same work is done, in the same run, once with slonik scripts as a DBA writes them
and once with the collection (through its core Python API, and for the bring-up also
through ansible-playbook), on a lab of its own (three PostgreSQL instances on
127.0.0.1, see tests/integration/lab.py), with the same slon daemons and settings.
Repetitions are interleaved (the order of the tools rotates) so that a burst of load
on the machine does not fall on one tool only.

Scenarios:
  bringup   3 nodes, full-mesh paths, set 1 with T tables + sequences, 2 subscriptions,
            until both replicas hold every row (polled from here, for both tools)
  noop      the collection's bring-up again with nothing to do: wall time and database
            round trips (counted in-process through a counting psycopg2 connection)
  liveadd   100 new tables into the live, subscribed set 1 (on the T=10 clusters)
  switchover  set 1 from node 1 to node 2 and back (only if switchover.py works);
            the ansible tool runs playbooks/switchover.yml
  failover  node 1's PostgreSQL is stopped, then set 1 fails over to node 2
            (only if failover.py works); the ansible tool runs playbooks/failover.yml

Usage:  .venv/bin/python bench/run.py [--quick] [--reps N] [--tables 10,100,1000]
        make bench BENCH_ARGS="--quick"
See bench/README.md for the method and the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

from lab import (  # noqa: E402
    SLON_TEST_OPTIONS, SLONIK_BIN, FreshDatabase, Lab, LabSettings, SlonFleet)

from ansible_collections.dany.slony.plugins.module_utils.cluster import Cluster  # noqa: E402
from ansible_collections.dany.slony.plugins.module_utils.nodes import plan_nodes_present  # noqa: E402
from ansible_collections.dany.slony.plugins.module_utils.paths import plan_paths  # noqa: E402
from ansible_collections.dany.slony.plugins.module_utils.plan import execute_plan  # noqa: E402
from ansible_collections.dany.slony.plugins.module_utils.sets import plan_set  # noqa: E402
from ansible_collections.dany.slony.plugins.module_utils.subscriptions import (  # noqa: E402
    plan_subscriptions)
from ansible_collections.dany.slony.plugins.module_utils.tables import (  # noqa: E402
    plan_sequences, plan_tables)

CLUSTER = "bench"
NODES = (1, 2, 3)
RECEIVERS = (2, 3)
COMMENTS = {1: "origin", 2: "replica 2", 3: "replica 3"}
ROWS_PER_TABLE = 5
SEQUENCES = 3
LIVE_ADD_TABLES = 100
TABLE_PATTERN = r"^bench\.t[0-9]+$"
SEQUENCE_PATTERN = r"^bench\.s[0-9]+$"
LIVE_PATTERN = r"^bench\.n[0-9]+$"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
PLAYBOOK = REPO / "bench" / "bringup.yml"
TOOLS = ("slonik", "core", "ansible")
POLL = 0.1

# slon's own defaults (slon -s 2000 -t 10000), for --slon-defaults.
SLON_DEFAULT_OPTIONS = {"sync_interval": 2000, "sync_interval_timeout": 10000, "log_level": 0}


def now():
    return time.monotonic()


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


# --------------------------------------------------------------------------------------
# Round trips: every psycopg2 connection of this process counts its statements while
# COUNTER.active is set (only around the collection's own calls).
# --------------------------------------------------------------------------------------

class Counter:
    def __init__(self):
        self.active = False
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.statements = 0   # cursor.execute / callproc
        self.ends = 0         # commit / rollback of an open transaction
        self.connections = 0

    def snapshot(self):
        return {"statements": self.statements, "commits_rollbacks": self.ends,
                "round_trips": self.statements + self.ends, "connections": self.connections}

    def add(self, what):
        if self.active:
            with self.lock:
                setattr(self, what, getattr(self, what) + 1)


COUNTER = Counter()


class CountingCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):  # pylint: disable=redefined-builtin
        COUNTER.add("statements")
        return super().execute(query, vars)

    def callproc(self, procname, parameters=None):
        COUNTER.add("statements")
        return super().callproc(procname, parameters)


class CountingConnection(psycopg2.extensions.connection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor
        COUNTER.add("connections")

    def _open_transaction(self):
        return self.status != psycopg2.extensions.STATUS_READY

    def commit(self):
        if self._open_transaction():
            COUNTER.add("ends")
        return super().commit()

    def rollback(self):
        if self._open_transaction():
            COUNTER.add("ends")
        return super().rollback()


_ORIGINAL_CONNECT = psycopg2.connect


def _counting_connect(*args, **kwargs):
    kwargs.setdefault("connection_factory", CountingConnection)
    return _ORIGINAL_CONNECT(*args, **kwargs)


psycopg2.connect = _counting_connect


class counted:
    """``with counted() as c:`` counts the round trips of the block into c.result."""

    def __enter__(self):
        COUNTER.reset()
        COUNTER.active = True
        self.result = None
        return self

    def __exit__(self, *exc):
        COUNTER.active = False
        self.result = COUNTER.snapshot()


# --------------------------------------------------------------------------------------
# Databases and checks (shared by both tools)
# --------------------------------------------------------------------------------------

def parallel(nodes, action):
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for future in [pool.submit(action, node) for node in nodes]:
            future.result()


def create_tables_sql(prefix, count, rows, sequences=0):
    """DDL (and rows when ``rows``) for bench.<prefix>0001.. and bench.s1..; one statement."""
    body = ["create schema if not exists bench;", "do $$ begin",
            "for i in 1..%d loop" % count,
            "  execute format('create table bench.%%I (id int primary key, v text)', "
            "'%s' || lpad(i::text, 4, '0'));" % prefix]
    if rows:
        body.append("  execute format('insert into bench.%%I select g, ''row '' || g "
                    "from generate_series(1, %d) g', '%s' || lpad(i::text, 4, '0'));"
                    % (rows, prefix))
    body.append("end loop;")
    for seq in range(1, sequences + 1):
        body.append("execute 'create sequence bench.s%d';" % seq)
        if rows:
            body.append("perform setval('bench.s%d', %d);" % (seq, 1000 + seq))
    body.append("end $$;")
    return "\n".join(body)


def prepare(db, prefix, count, sequences=0):
    """The tables on every node; rows and sequence values only on the origin (node 1),
    so that the replicas hold the data only once Slony copied it."""
    parallel(list(NODES), lambda node: db.query(
        node, create_tables_sql(prefix, count, ROWS_PER_TABLE if node == 1 else 0, sequences)))


_ROWS_QUERY = """
select coalesce(sum((xpath('/row/c/text()', query_to_xml(
         format('select count(*) as c from %%I.%%I', schemaname, tablename),
         false, true, '')))[1]::text::bigint), 0)
  from pg_tables where schemaname = 'bench' and tablename ~ %s
"""


def replicas_hold(db, prefix, count, sequences=0, nodes=RECEIVERS):
    """True when every replica holds every row of bench.<prefix>* (and the sequences)."""
    last = "bench.%s%04d" % (prefix, count)
    for node in nodes:
        # The copy of a set is one transaction: its last table first (cheap), then all.
        if not db.scalar(node, "select exists (select 1 from %s)" % last):
            return False
        if db.scalar(node, _ROWS_QUERY, ("^%s[0-9]+$" % prefix,)) != count * ROWS_PER_TABLE:
            return False
        if sequences and db.scalar(
                node, "select count(*) from pg_sequences where schemaname = 'bench' "
                      "and last_value > 1000") != sequences:
            return False
    return True


def poll(predicate, timeout, what):
    deadline = now() + timeout
    while not predicate():
        if now() > deadline:
            raise TimeoutError("%s not reached within %.0fs" % (what, timeout))
        time.sleep(POLL)


def wait_replicas(db, prefix, count, sequences, timeout):
    poll(lambda: replicas_hold(db, prefix, count, sequences), timeout,
         "replicas holding bench.%s* (%d tables)" % (prefix, count))


def set_state_everywhere(db, origin, tables, nodes=NODES):
    """Every node sees set 1 alone, with ``origin`` and ``tables`` tables."""
    for node in nodes:
        rows = db.query(node, 'select set_id, set_origin, (select count(*) from "_%s".sl_table '
                              'where tab_set = set_id) from "_%s".sl_set order by 1'
                        % (CLUSTER, CLUSTER))
        if rows != [(1, origin, tables)]:
            return False
    return True


def wait_set_state(db, origin, tables, timeout, nodes=NODES):
    poll(lambda: set_state_everywhere(db, origin, tables, nodes), timeout,
         "set 1 with origin %d and %d tables on nodes %s" % (origin, tables, list(nodes)))


_PROBE_IDS = iter(range(10 ** 6, 10 ** 9))
# Rows committed on the origin just before each switchover / failover and checked on every
# surviving node afterwards (no committed write lost).
WRITES = 20


def wait_replicating(db, origin, timeout, nodes=NODES):
    """Write a row on ``origin`` and wait until every other node of ``nodes`` has it:
    the cluster replicates again (after a switchover or failover)."""
    probe = next(_PROBE_IDS)
    db.query(origin, "insert into bench.t0001 (id, v) values (%s, 'probe')", (probe,))
    others = [n for n in nodes if n != origin]
    poll(lambda: all(db.scalar(n, "select count(*) from bench.t0001 where id = %s", (probe,))
                     for n in others),
         timeout, "a row written on node %d reaching nodes %s" % (origin, others))


def write_rows(db, origin, rows=WRITES):
    """Commit ``rows`` rows, one transaction each, on ``origin``; return their ids."""
    ids = [next(_PROBE_IDS) for dummy in range(rows)]
    for row in ids:
        db.query(origin, "insert into bench.t0001 (id, v) values (%s, 'acknowledged')", (row,))
    return ids


def missing_rows(db, ids, nodes):
    """{node: how many of ``ids`` it does not hold} for the nodes missing some."""
    missing = {}
    for node in nodes:
        held = db.scalar(node, "select count(*) from bench.t0001 where id = any(%s)", (ids,))
        if held != len(ids):
            missing[node] = len(ids) - held
    return missing


def check_no_loss(db, ids, nodes, what):
    """Every acknowledged write is on every surviving node after the operation."""
    missing = missing_rows(db, ids, nodes)
    if missing:
        raise RuntimeError("%s lost committed writes: %s" % (what, ", ".join(
            "node %d misses %d of %d" % (n, c, len(ids)) for n, c in sorted(missing.items()))))


# --------------------------------------------------------------------------------------
# slonik
# --------------------------------------------------------------------------------------

def slonik(db, script, nodes=NODES, timeout=1800):
    """Run one slonik script (preamble: cluster name + admin conninfo of ``nodes``)."""
    text = "cluster name = %s;\n" % CLUSTER
    text += "".join("node %d admin conninfo = '%s';\n" % (n, db.conninfo(n)) for n in nodes)
    text += script
    proc = subprocess.run([SLONIK_BIN], input=text, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError("slonik failed (rc=%d):\n%s\n%s\n--- script ---\n%s" % (
            proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:], script[:3000]))
    return proc


def slonik_paths(db):
    return "".join("store path (server = %d, client = %d, conninfo = '%s', connretry = 10);\n"
                   % (s, c, db.conninfo(s)) for s in NODES for c in NODES if s != c)


def regex(pattern):
    """A regular expression as a slonik string literal (slonik puts it into E'...')."""
    return "'" + pattern.replace("\\", "\\\\") + "'"


class SlonikTool:
    name = "slonik"

    def __init__(self, ctx):
        self.ctx = ctx

    def bringup(self, db, fleet, tables, phases):
        # As the Slony manual's first example: nodes and paths, then the slons.
        t = now()
        slonik(db, "init cluster (id = 1, comment = 'origin');\n"
                   "store node (id = 2, comment = 'replica 2', event node = 1);\n"
                   "store node (id = 3, comment = 'replica 3', event node = 1);\n")
        phases["nodes"] = now() - t
        t = now()
        slonik(db, slonik_paths(db))
        phases["paths"] = now() - t
        t = now()
        fleet.start()
        phases["slons"] = now() - t
        t = now()
        slonik(db, "create set (id = 1, origin = 1, comment = 'bench');\n"
                   "set add table (set id = 1, origin = 1, tables = %s);\n"
                   "set add sequence (set id = 1, origin = 1, sequences = %s);\n"
                   % (regex(TABLE_PATTERN), regex(SEQUENCE_PATTERN)))
        phases["set+tables"] = now() - t
        t = now()
        slonik(db, "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes);\n"
                   "subscribe set (id = 1, provider = 1, receiver = 3, forward = yes);\n")
        phases["subscribe"] = now() - t
        t = now()
        wait_replicas(db, "t", tables, SEQUENCES, self.ctx.wait_timeout)
        phases["copy wait"] = now() - t

    def liveadd(self, db, tables, phases):
        t = now()
        slonik(db, "create set (id = 99, origin = 1, comment = 'live add');\n"
                   "set add table (set id = 99, origin = 1, tables = %s);\n"
                   "subscribe set (id = 99, provider = 1, receiver = 2, forward = yes);\n"
                   "subscribe set (id = 99, provider = 1, receiver = 3, forward = yes);\n"
                   % regex(LIVE_PATTERN))
        phases["create+add+subscribe"] = now() - t
        t = now()
        wait_replicas(db, "n", LIVE_ADD_TABLES, 0, self.ctx.wait_timeout)
        phases["copy wait"] = now() - t
        t = now()
        slonik(db, "merge set (id = 1, add id = 99, origin = 1);\n"
                   "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = %d);\n"
                   % self.ctx.wait_timeout)
        phases["merge"] = now() - t

    def switchover(self, db, old, new):
        slonik(db, "lock set (id = 1, origin = %d);\n"
                   "move set (id = 1, old origin = %d, new origin = %d);\n"
                   "wait for event (origin = %d, confirmed = all, wait on = %d, timeout = %d);\n"
                   % (old, old, new, old, old, self.ctx.wait_timeout))

    def failover(self, db, failed, backup):
        slonik(db, "failover (id = %d, backup node = %d);\n" % (failed, backup))


# --------------------------------------------------------------------------------------
# The collection through its core Python API (what each module's planner does)
# --------------------------------------------------------------------------------------

def paths_of(db):
    return [{"server": s, "client": c, "conninfo": db.conninfo(s)}
            for s in NODES for c in NODES if s != c]


class CoreTool:
    name = "core"

    def __init__(self, ctx):
        self.ctx = ctx

    def run(self, db, planner, wait=True, clock=None):
        """One module-equivalent call: its own Cluster, plan, execute. Returns the plan."""
        with Cluster(CLUSTER, db.admin_conninfo) as cluster:
            plan = planner(cluster)[0]
            execute_plan(cluster, plan, wait_enabled=wait, timeout=self.ctx.wait_timeout,
                         clock=clock)
        return plan

    def waker(self, fleet):
        """The modules' ``slon_pid_files``: the pid files of the fleet's slons (None
        with --no-wake)."""
        if self.ctx.args.no_wake:
            return None
        from ansible_collections.dany.slony.plugins.module_utils.slonwake import SlonWaker
        return SlonWaker({n: str(fleet.daemon(n).pid_path) for n in NODES})

    def steps(self, db, fleet, phases=None, counts=None, noop=False):
        """The bring-up as module calls; returns the number of plans that changed."""
        changed = []

        def phase(name, planners, before=None, wait=False):
            t = now()
            if before:
                before()
            with counted() as c:
                for planner in planners:
                    plan = self.run(db, planner, wait=wait)
                    if plan.changes():
                        changed.append((name, plan.changes()))
            if phases is not None:
                phases[name] = now() - t
            if counts is not None:
                counts[name] = c.result

        # As roles/cluster does: nodes and paths before the slons start; no completion
        # waits but for the nodes and, at the end, the copies (every call still runs its
        # preconditions, see plan.Step.required); one call for both subscriptions.
        phase("nodes", [lambda cl: plan_nodes_present(
            cl, [{"id": n, "comment": COMMENTS[n]} for n in NODES])], wait=True)
        phase("paths", [lambda cl: plan_paths(cl, paths_of(db))])
        if not noop:
            t = now()
            fleet.start()
            phases["slons"] = now() - t
        phase("set+tables", [
            lambda cl: plan_set(cl, 1, 1, "bench"),
            lambda cl: plan_tables(cl, 1, origin=1, patterns=[TABLE_PATTERN]),
            lambda cl: plan_sequences(cl, 1, origin=1, patterns=[SEQUENCE_PATTERN])])
        phase("subscribe", [lambda cl: plan_subscriptions(
            cl, 1, [{"receiver": r} for r in RECEIVERS])], wait=True)
        return changed

    def bringup(self, db, fleet, tables, phases, counts):
        self.steps(db, fleet, phases, counts)
        t = now()
        wait_replicas(db, "t", tables, SEQUENCES, self.ctx.wait_timeout)
        phases["copy wait"] = now() - t

    def noop(self, db, fleet, counts):
        changed = self.steps(db, fleet, counts=counts, noop=True)
        if changed:
            raise RuntimeError("the second bring-up changed something: %r" % changed)

    def liveadd(self, db, tables, phases, counts):
        t = now()
        with counted() as c:
            self.run(db, lambda cl: plan_tables(cl, 1, origin=1, patterns=[LIVE_PATTERN]))
        counts["liveadd"] = c.result
        phases["slony_table"] = now() - t
        t = now()
        wait_replicas(db, "n", LIVE_ADD_TABLES, 0, self.ctx.wait_timeout)
        phases["copy wait"] = now() - t

    def switchover(self, db, old, new, fleet=None, phases=None):
        from ansible_collections.dany.slony.plugins.module_utils.switchover import (
            plan_switchover)
        from ansible_collections.dany.slony.plugins.module_utils.slonwake import WakingClock
        waker = self.waker(fleet) if fleet is not None else None
        planned = []

        def planner(cl):
            planned.append(plan_switchover(cl, new, set_id=1, timeout=self.ctx.wait_timeout,
                                           wake_nodes=waker.nodes if waker else ()))
            return planned[-1]
        self.run(db, planner, clock=WakingClock(waker) if waker else None)
        if phases is not None:
            # the module's own timings: LOCK SET .. MOVE SET, MOVE SET .. confirmed
            for key, value in planned[-1].extra["timings"].items():
                if value is not None:
                    phases[key.replace("_seconds", "")] = value
        if waker is not None and phases is not None:
            phases["woken"] = len(waker.woken)
            phases["restarted_stuck"] = len(waker.kicked)

    def failover(self, db, failed, backup, fleet=None, phases=None):
        from ansible_collections.dany.slony.plugins.module_utils.failover import plan_failover
        from ansible_collections.dany.slony.plugins.module_utils.slonwake import WakingClock
        timeout = self.ctx.wait_timeout
        waker = self.waker(fleet) if fleet is not None else None
        self.run(db, lambda cl: plan_failover(cl, failed, backup, timeout=timeout,
                                              slon_wait=timeout,
                                              wake_nodes=waker.nodes if waker else ()),
                 clock=WakingClock(waker) if waker else None)
        if waker is not None and phases is not None:
            phases["woken"] = len(waker.woken)
            phases["restarted_stuck"] = len(waker.kicked)


# --------------------------------------------------------------------------------------
# The collection through ansible-playbook (bench/bringup.yml)
# --------------------------------------------------------------------------------------

class AnsibleTool:
    name = "ansible"

    def __init__(self, ctx):
        self.ctx = ctx

    def ansible_playbook(self, playbook, variables, tags=None, inventory=None, phases=None,
                         module_task=None):
        """ansible-playbook ``playbook`` -e @<``variables`` in a private file>; returns the
        last PLAY RECAP line of localhost. With ``phases``, the run's profile goes there
        (bench/callback/task_profile.py): the task named ``module_task`` ("module"), the
        other tasks, and ansible-playbook's own start and end (the rest of the wall time)."""
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="false")
        with tempfile.TemporaryDirectory(prefix="bench-vars-") as tmp:
            profile = Path(tmp) / "profile.jsonl"
            if phases is not None:
                env.update(ANSIBLE_CALLBACK_PLUGINS=str(REPO / "bench" / "callback"),
                           ANSIBLE_CALLBACKS_ENABLED="task_profile", DANY_TASK_PROFILE=str(profile))
            started = now()
            path = Path(tmp) / "vars.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)  # it holds the password
            with os.fdopen(fd, "w") as handle:
                json.dump(variables, handle)
            cmd = [str(ANSIBLE_PLAYBOOK), str(playbook), "-e", "@%s" % path]
            if inventory is not None:
                inventory_path = Path(tmp) / "inventory.json"
                inventory_path.write_text(json.dumps(inventory))
                cmd += ["-i", str(inventory_path)]
            if tags:
                cmd += ["--tags", tags]
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=self.ctx.wait_timeout * 4, check=False)
            wall = now() - started
            if phases is not None and profile.exists():
                rows = [json.loads(line) for line in profile.read_text().splitlines()]
                module = sum(r["seconds"] for r in rows if r["task"] == module_task)
                tasks = sum(r["seconds"] for r in rows)
                phases.update({"module": module, "other tasks": tasks - module,
                               "ansible start+end": wall - tasks})
        if proc.returncode != 0:
            raise RuntimeError("ansible-playbook %s %s failed (rc=%d):\n%s\n%s" % (
                playbook.name, tags or "", proc.returncode, proc.stdout[-4000:],
                proc.stderr[-2000:]))
        recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost")]
        return recap[-1] if recap else ""

    def playbook(self, db, tags=None, phases=None):
        """bench/bringup.yml; with ``phases``, Ansible's own start and end of the run goes
        there as "<tags> ansible start+end"."""
        profile = {} if phases is not None else None
        recap = self.ansible_playbook(PLAYBOOK, {
            "bench_cluster": CLUSTER,
            "bench_admin_conninfo": {str(k): v for k, v in db.admin_conninfo.items()},
            "bench_wait_timeout": self.ctx.wait_timeout,
            "bench_nodes": [{"id": n, "comment": COMMENTS[n]} for n in NODES],
            "bench_paths": paths_of(db),
            "bench_table_patterns": [TABLE_PATTERN],
            "bench_sequence_patterns": [SEQUENCE_PATTERN],
            "bench_receivers": [{"receiver": r} for r in RECEIVERS],
        }, tags, phases=profile)
        if profile:
            phases["%s ansible start+end" % tags] = profile["ansible start+end"]
        return recap

    def admin_playbook(self, name, db, fleet, variables, phases=None, module_task=None):
        """playbooks/``name`` as a user runs it for this cluster: an inventory of localhost
        alone, the cluster named by slony_cluster_name and slony_admin_conninfo, and the
        fleet's pid files as slony_slon_pid_files ({} with --no-wake; the playbooks'
        default, the slon role's pid files, does not apply to the bench's slons)."""
        pid_files = {} if self.ctx.args.no_wake else {
            str(n): str(fleet.daemon(n).pid_path) for n in NODES}
        inventory = {"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
        return self.ansible_playbook(REPO / "playbooks" / name, dict(
            variables, slony_cluster_name=CLUSTER, slony_wait_timeout=self.ctx.wait_timeout,
            slony_admin_conninfo={str(k): v for k, v in db.admin_conninfo.items()},
            slony_slon_pid_files=pid_files), inventory=inventory, phases=phases,
            module_task=module_task)

    def switchover(self, db, old, new, fleet, phases=None):
        del old
        self.admin_playbook("switchover.yml", db, fleet,
                            {"slony_set_id": 1, "slony_to_node": new}, phases,
                            "Move the origin")

    def failover(self, db, failed, backup, fleet, phases=None):
        # slony_admin_conninfo lists the failed node too, as the core's call does. The
        # failed node is not dropped (the playbook drops it by default): slonik's FAILOVER
        # and the core's call do not drop it either.
        self.admin_playbook("failover.yml", db, fleet,
                            {"slony_failed_node": failed, "slony_backup_node": backup,
                             "slony_drop_failed": False}, phases,
                            "Fail the lost nodes over to their backup nodes")

    def bringup(self, db, fleet, tables, phases):
        t = now()
        self.playbook(db, "nodes", phases)
        phases["nodes"] = now() - t
        t = now()
        fleet.start()
        phases["slons"] = now() - t
        t = now()
        self.playbook(db, "replication", phases)
        phases["replication"] = now() - t
        t = now()
        wait_replicas(db, "t", tables, SEQUENCES, self.ctx.wait_timeout)
        phases["copy wait"] = now() - t

    def noop(self, db):
        recap = self.playbook(db)
        if "changed=0" not in recap:
            raise RuntimeError("the second ansible-playbook run changed something: %s" % recap)


# --------------------------------------------------------------------------------------
# One run: a fresh database, a bring-up, the scenarios that build on it
# --------------------------------------------------------------------------------------

class Context:
    def __init__(self, args, lab):
        self.args = args
        self.lab = lab
        self.wait_timeout = args.wait_timeout
        self.slon_options = SLON_DEFAULT_OPTIONS if args.slon_defaults else dict(SLON_TEST_OPTIONS)
        self.results = []   # dicts: scenario, tool, tables, rep, seconds, phases, counts
        self.failures = []
        self.skipped = {}
        self.switchover_ok = module_usable("switchover", "plan_switchover")
        self.failover_ok = module_usable("failover", "plan_failover")

    def record(self, scenario, tool, tables, rep, seconds, phases=None, counts=None):
        entry = {"scenario": scenario, "tool": tool, "tables": tables, "rep": rep,
                 "seconds": round(seconds, 3), "phases": {k: round(v, 3) for k, v in
                                                          (phases or {}).items()},
                 "counts": counts or {}, "load1": round(os.getloadavg()[0], 1)}
        self.results.append(entry)
        log("  %-10s %-8s T=%-5s %8.2fs load %4.1f  %s" % (
            scenario, tool, tables, seconds, entry["load1"],
            " ".join("%s=%.1f" % kv for kv in entry["phases"].items())))


def module_usable(name, function):
    try:
        module = __import__("ansible_collections.dany.slony.plugins.module_utils." + name,
                            fromlist=[function])
        return callable(getattr(module, function))
    except Exception:  # pylint: disable=broad-except
        return False


def one_run(ctx, tool_name, tables, rep):
    lab = ctx.lab
    db = FreshDatabase(lab, "bench_%s_%d_%s" % (tool_name, tables, uuid.uuid4().hex[:6]),
                       list(NODES), cluster_name=CLUSTER)
    db.create()
    fleet = SlonFleet(db, CLUSTER, ctx.slon_options)
    tool = {"slonik": SlonikTool, "core": CoreTool, "ansible": AnsibleTool}[tool_name](ctx)
    scenarios = ctx.args.scenarios
    try:
        prepare(db, "t", tables, SEQUENCES)

        # 1. bring-up
        phases, counts = {}, {}
        t = now()
        if tool_name == "core":
            tool.bringup(db, fleet, tables, phases, counts)
        else:
            tool.bringup(db, fleet, tables, phases)
        ctx.record("bringup", tool_name, tables, rep, now() - t, phases,
                   {"round_trips": sum(c["round_trips"] for c in counts.values()),
                    "connections": sum(c["connections"] for c in counts.values())}
                   if counts else None)

        # 2. the same again, nothing to do
        if "noop" in scenarios and tool_name == "core":
            counts = {}
            t = now()
            tool.noop(db, fleet, counts)
            seconds = now() - t
            total = {key: sum(c[key] for c in counts.values())
                     for key in ("statements", "commits_rollbacks", "round_trips", "connections")}
            ctx.record("noop", tool_name, tables, rep, seconds,
                       counts=dict(total, per_phase=counts))
        if "noop" in scenarios and tool_name == "ansible":
            t = now()
            tool.noop(db)
            ctx.record("noop", tool_name, tables, rep, now() - t)

        if tables != min(ctx.args.tables):
            return

        # 3. 100 tables into the live set 1 (not through ansible-playbook)
        if "liveadd" in scenarios and tool_name != "ansible":
            prepare(db, "n", LIVE_ADD_TABLES)
            phases, counts = {}, {}
            t = now()
            if tool_name == "core":
                tool.liveadd(db, tables, phases, counts)
            else:
                tool.liveadd(db, tables, phases)
            wait_set_state(db, 1, tables + LIVE_ADD_TABLES, ctx.wait_timeout)
            ctx.record("liveadd", tool_name, tables, rep, now() - t, phases,
                       counts.get("liveadd"))
            expected_tables = tables + LIVE_ADD_TABLES
        else:
            expected_tables = tables

        # 4. switchover to node 2 and back
        if "switchover" in scenarios and ctx.switchover_ok:
            for old, new, label in ((1, 2, "switchover"), (2, 1, "switchback")):
                phases = {}
                acknowledged = write_rows(db, old)
                t = now()
                if tool_name == "core":
                    tool.switchover(db, old, new, fleet, phases)
                elif tool_name == "ansible":
                    tool.switchover(db, old, new, fleet, phases)
                else:
                    tool.switchover(db, old, new)
                phases["tool"] = now() - t
                wait_set_state(db, new, expected_tables, ctx.wait_timeout)
                phases["moved"] = now() - t
                wait_replicating(db, new, ctx.wait_timeout)
                ctx.record(label, tool_name, tables, rep, now() - t, phases)
                check_no_loss(db, acknowledged, NODES, label)

        # 5. failover after the origin died
        if "failover" in scenarios and ctx.failover_ok:
            # Acknowledged = committed on node 1 and replicated to the backup, node 2,
            # before node 1 dies; node 3 must hold them after the failover too.
            acknowledged = write_rows(db, 1)
            poll(lambda: not missing_rows(db, acknowledged, (2,)), ctx.wait_timeout,
                 "the acknowledged rows on node 2")
            lab.stop_server(1, mode="immediate")
            fleet.kill(1)
            phases = {}
            t = now()
            if tool_name == "core":
                tool.failover(db, 1, 2, fleet, phases)
            elif tool_name == "ansible":
                tool.failover(db, 1, 2, fleet, phases)
            else:
                tool.failover(db, 1, 2)
            phases["tool"] = now() - t
            wait_set_state(db, 2, expected_tables, ctx.wait_timeout, nodes=(2, 3))
            phases["moved"] = now() - t
            wait_replicating(db, 2, ctx.wait_timeout, nodes=(2, 3))
            ctx.record("failover", tool_name, tables, rep, now() - t, phases)
            check_no_loss(db, acknowledged, (2, 3), "failover")
    finally:
        fleet.kill_all()
        lab.ensure_servers_running()
        try:
            db.drop()
        except Exception as exc:  # pylint: disable=broad-except
            log("warning: could not drop %s: %s" % (db.dbname, exc))


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    return "-" if value is None else ("%.*f" % (digits, value))


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def medians(results, scenario, tool, tables):
    values = [r["seconds"] for r in results
              if r["scenario"] == scenario and r["tool"] == tool and r["tables"] == tables]
    return median(values), len(values)


def paired(results, scenario, tool, tables):
    """Median of tool/slonik over the repetitions that have both (adjacent in time, so
    under similar load)."""
    def by_rep(name):
        return {(r.get("run", 0), r["rep"]): r["seconds"] for r in results
                if r["scenario"] == scenario and r["tool"] == name and r["tables"] == tables}
    mine, theirs = by_rep(tool), by_rep("slonik")
    ratios = [mine[k] / theirs[k] for k in mine if k in theirs and theirs[k] > 0]
    return median(ratios)


def report(ctx):
    results = ctx.results
    lines = []
    loads = [r["load1"] for r in results if r.get("load1") is not None]
    if loads:
        lines += ["1-minute load average when the runs ended: min %.1f, median %.1f, max %.1f"
                  % (min(loads), median(loads), max(loads)), ""]
    present = [t for t in TOOLS if any(r["tool"] == t for r in results)]
    others = [t for t in present if t != "slonik"]
    header = "| scenario | T | slonik s | " + "".join(
        "%s s | %s/slonik | paired | " % (t, t) for t in others) + "runs %s |" % "/".join(present)
    lines += [header, "|---|---:|---:|" + "---:|---:|---:|" * len(others) + "---|"]
    keys = []
    for r in results:
        key = (r["scenario"], r["tables"])
        if key not in keys:
            keys.append(key)
    order = ["bringup", "noop", "liveadd", "switchover", "switchback", "failover"]
    keys.sort(key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1]))
    for scenario, tables in keys:
        s = medians(results, scenario, "slonik", tables)[0]
        cells = ["| %s | %s | %s | " % (scenario, tables, fmt(s))]
        for tool in others:
            m = medians(results, scenario, tool, tables)[0]
            cells.append("%s | %s | %s | " % (fmt(m), fmt(ratio(m, s)),
                                              fmt(paired(results, scenario, tool, tables))))
        cells.append("/".join(str(medians(results, scenario, t, tables)[1]) for t in present))
        lines.append("".join(cells) + " |")

    # Slope of the bring-up: seconds per extra table between the smallest and largest T.
    lines.append("")
    lines.append("Bring-up slope (seconds per extra table):")
    for tool in TOOLS:
        ts = sorted({r["tables"] for r in results if r["scenario"] == "bringup"
                     and r["tool"] == tool})
        if len(ts) < 2:
            continue
        lo, hi = ts[0], ts[-1]
        m_lo, m_hi = medians(results, "bringup", tool, lo)[0], medians(results, "bringup", tool, hi)[0]
        lines.append("  %-8s T=%d..%d: %.4f s/table (%.2f s -> %.2f s)" % (
            tool, lo, hi, (m_hi - m_lo) / (hi - lo), m_lo, m_hi))

    # Phases (medians) per scenario, tool and T; each phase is cumulative ("tool", "moved")
    # or not (bring-up, live add) as named in bench/README.md.
    lines.append("")
    lines.append("Phases (medians, s):")
    for scenario in order:
        for tool in TOOLS:
            for tables in sorted({r["tables"] for r in results}):
                runs = [r for r in results if r["scenario"] == scenario and r["tool"] == tool
                        and r["tables"] == tables and r["phases"]]
                if not runs:
                    continue
                names = list(runs[0]["phases"])
                text = "  ".join("%s %.2f" % (n, median([r["phases"].get(n, 0) for r in runs]))
                                 for n in names)
                lines.append("  %-10s %-8s T=%-5d %s" % (scenario, tool, tables, text))

    # Round trips of the collection.
    lines.append("")
    lines.append("Collection database round trips (core API, medians; statements + commits/"
                 "rollbacks; connections):")
    for scenario in ("noop", "bringup", "liveadd"):
        for tables in sorted({r["tables"] for r in results}):
            runs = [r for r in results if r["scenario"] == scenario and r["tool"] == "core"
                    and r["tables"] == tables and r["counts"]]
            if not runs:
                continue
            rt = median([r["counts"]["round_trips"] for r in runs])
            conns = median([r["counts"]["connections"] for r in runs])
            extra = ""
            if scenario == "noop":
                per = runs[0]["counts"]["per_phase"]
                extra = " (" + ", ".join("%s %d" % (k, v["round_trips"]) for k, v in per.items()) + ")"
            lines.append("  %-8s T=%-5d %5d round trips, %3d connections%s" % (
                scenario, tables, rt, conns, extra))
    return "\n".join(lines)


def machine():
    mem = ""
    try:
        with open("/proc/meminfo") as handle:
            mem = "%.1f GiB" % (int(handle.readline().split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "loadavg": os.getloadavg(),
            "postgresql": subprocess.run(["psql", "--version"], capture_output=True,
                                         text=True, check=False).stdout.strip(),
            "slonik": subprocess.run([SLONIK_BIN, "-v"], capture_output=True, text=True,
                                     check=False).stdout.strip()}


# --------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="T = 10,100 and one repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per tool (default 3)")
    parser.add_argument("--tables", default="10,100,1000",
                        help="comma-separated table counts T (default 10,100,1000)")
    parser.add_argument("--ansible-max-tables", type=int, default=100,
                        help="run the ansible-playbook variant up to this T (default 100)")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--scenarios", default="bringup,noop,liveadd,switchover,failover")
    parser.add_argument("--port-base", type=int,
                        default=int(os.environ.get("SLONY_LAB_PORT_BASE") or 55900))
    parser.add_argument("--lab-dir", default=os.environ.get("SLONY_LAB_DIR") or "/var/tmp/lab-bench")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab running")
    parser.add_argument("--no-wake", action="store_true",
                        help="core: no slon_pid_files (slon's watchdog is not woken)")
    parser.add_argument("--wait-timeout", type=int, default=900)
    parser.add_argument("--slon-defaults", action="store_true",
                        help="slon's default -s 2000 -t 10000 instead of -s 100 -t 250")
    parser.add_argument("--json", help="write every measurement here (default: in the lab dir)")
    parser.add_argument("--report", metavar="JSON", nargs="+",
                        help="print the report of earlier runs' JSON files (pooled) and exit")
    args = parser.parse_args(argv)
    if args.quick:
        args.tables, args.reps = "10,100", 1
    args.tables = sorted(int(t) for t in str(args.tables).split(","))
    args.tools = [t for t in args.tools.split(",") if t]
    args.scenarios = set(args.scenarios.split(","))
    return args


def print_saved_report(paths):
    """The report of one or more earlier runs (their measurements pooled)."""
    results, options = [], set()
    for index, path in enumerate(paths):
        saved = json.loads(Path(path).read_text())
        info = saved["machine"]
        options.add(json.dumps(saved["slon_options"], sort_keys=True))
        print("%s: nproc=%s memory=%s load average start=%s end=%s; %.0f s in all; slon %s" % (
            path, info["nproc"], info["memory"], "/".join("%.1f" % x for x in info["loadavg"]),
            "/".join("%.1f" % x for x in info["loadavg_end"]), info["wall_seconds"],
            ", ".join("%s=%s" % kv for kv in saved["slon_options"].items())))
        results += [dict(r, run=index) for r in saved["results"]]
        for failure in saved["failures"]:
            print("  FAILED: %s T=%s rep %s: %s" % (failure["tool"], failure["tables"],
                                                    failure["rep"],
                                                    failure["error"].splitlines()[0]))
    if len(options) > 1:
        print("warning: the runs used different slon options")
    print()
    print(report(argparse.Namespace(results=results)))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        return print_saved_report(args.report)
    settings = LabSettings(port_base=args.port_base, directory=Path(args.lab_dir), nodes=3)
    lab = Lab(settings)
    info = machine()
    log("machine: %s" % json.dumps(info))
    log("lab: ports %d..%d, %s" % (args.port_base, args.port_base + 2, args.lab_dir))
    lab.up()
    ctx = Context(args, lab)
    log("slon options (both tools): %s" % ctx.slon_options)
    log("switchover.py usable: %s; failover.py usable: %s" % (ctx.switchover_ok,
                                                              ctx.failover_ok))
    started = now()
    try:
        for rep in range(1, args.reps + 1):
            for tables in args.tables:
                tools = [t for t in TOOLS if t in args.tools
                         and (t != "ansible" or tables <= args.ansible_max_tables)]
                shift = (rep - 1) % len(tools)
                for tool in tools[shift:] + tools[:shift]:
                    log("rep %d/%d T=%d %s" % (rep, args.reps, tables, tool))
                    try:
                        one_run(ctx, tool, tables, rep)
                    except Exception as exc:  # pylint: disable=broad-except
                        ctx.failures.append({"tool": tool, "tables": tables, "rep": rep,
                                             "error": str(exc)[:4000]})
                        log("FAILED: %s" % traceback.format_exc()[-4000:])
    finally:
        info["loadavg_end"] = os.getloadavg()
        info["wall_seconds"] = round(now() - started, 1)
        out = Path(args.json) if args.json else Path(args.lab_dir).with_name(
            "lab-bench-results-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
        out.write_text(json.dumps({"machine": info, "slon_options": ctx.slon_options,
                                   "args": {k: (sorted(v) if isinstance(v, set) else v)
                                            for k, v in vars(args).items()},
                                   "results": ctx.results, "failures": ctx.failures},
                                  indent=1))
        if not args.keep_lab:
            lab.down()
    print()
    print("slon options (both tools): %s" % ", ".join("%s=%s" % kv for kv in ctx.slon_options.items()))
    print("machine: nproc=%s memory=%s load average start=%s end=%s; %.0f s in all" % (
        info["nproc"], info["memory"], "/".join("%.1f" % x for x in info["loadavg"]),
        "/".join("%.1f" % x for x in info["loadavg_end"]), info["wall_seconds"]))
    print()
    print(report(ctx))
    if ctx.failures:
        print("\nFAILED runs:")
        for failure in ctx.failures:
            print("  %s T=%s rep %s: %s" % (failure["tool"], failure["tables"], failure["rep"],
                                            failure["error"].splitlines()[0] if failure["error"]
                                            else ""))
    print("\nAll measurements: %s" % out)
    return 1 if ctx.failures else 0


if __name__ == "__main__":
    sys.exit(main())
