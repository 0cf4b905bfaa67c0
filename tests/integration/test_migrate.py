"""playbooks/migrate.yml (role dany.slony.migrate): a live database moved to another server.

The source is a database of lab node 1 (the sample schema: several tables, sequences, a
table without a key; plus a large table and the writer's table), the target an empty
database of lab node 2. A writer thread commits rows through a real pgbouncer in front of
the source during the whole migration and records every committed key. The cutover hooks
are Ansible task files, as a user writes them: PAUSE pgbouncer, then point it at the new
origin, RELOAD and RESUME; the writer never changes its connection string.

Each phase runs in check mode (nothing changes on either database), for real, and again
(changed=0). After the cutover a rollback moves the origin back (the source gets the
writes made on the target meanwhile), then a second cutover and the finish phase. At the
end the target holds every committed row exactly once, its sequences are at or above the
source's, and no Slony object is left on either database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from catalog_dump import assert_unchanged, dump
from lab import REPO_ROOT, quote_ident, unique_dbname
from pgbouncer import PgBouncer
from writer import Writer

ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
MIGRATE = REPO_ROOT / "playbooks" / "migrate.yml"
CLUSTER = "migrate"
SOURCE_NODE, TARGET_NODE = 1, 2
PGBOUNCER_PORTS = range(55290, 55300)
BIG_ROWS = int(os.environ.get("SLONY_MIGRATE_TEST_ROWS", "200000"))
WRITES = "public.migrate_writes"

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)", re.MULTILINE)
DOWNTIME_RE = re.compile(
    r"(?P<phase>cutover|rollback): node (?P<node>\d+) is the origin;\s+write downtime (?P<downtime>[\d.]+) s"
    r".*?LOCK SET \.\. MOVE SET\s+(?P<locked>[\d.]+) s", re.DOTALL)

EXTRA_SCHEMA = """
create table public.migrate_big (id bigint primary key, payload text not null);
insert into public.migrate_big select g, md5(g::text) || repeat('x', 60) from generate_series(1, %d) g;
create table public.migrate_writes (id bigserial primary key, note text not null, at timestamptz not null default now());
create sequence public.migrate_counter;
select setval('public.migrate_counter', 41);
analyze;
"""


@dataclass
class Run:
    args: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def recap(self) -> dict:
        tail = self.stdout[self.stdout.rfind("PLAY RECAP"):]
        return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                for m in RECAP_RE.finditer(tail)}

    @property
    def changed(self) -> int:
        return sum(c["changed"] for c in self.recap.values())

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or any(c["failed"] or c["unreachable"] for c in self.recap.values())


class TwoDatabases:
    """The source (node 1) and the target (node 2) as one object for catalog_dump.dump."""

    node_ids = [SOURCE_NODE, TARGET_NODE]

    def __init__(self, lab, source: str, target: str):
        self.lab = lab
        self.names = {SOURCE_NODE: source, TARGET_NODE: target}

    def query(self, node, sql, params=None):
        return self.lab.query(node, sql, params, dbname=self.names[node])

    def scalar(self, node, sql, params=None):
        rows = self.query(node, sql, params)
        return rows[0][0] if rows else None

    def user_catalog(self) -> dict:
        """Every user relation, column, constraint and trigger, and the sequences' values."""
        out = {}
        for node in self.node_ids:
            out[node] = {
                "relations": self.query(node, "select n.nspname, c.relname, c.relkind from pg_class c"
                                              " join pg_namespace n on n.oid = c.relnamespace"
                                              " where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'"
                                              " order by 1, 2"),
                "columns": self.query(node, "select table_schema, table_name, column_name, data_type"
                                            " from information_schema.columns"
                                            " where table_schema not in ('pg_catalog', 'information_schema')"
                                            " order by 1, 2, 3"),
                "triggers": self.query(node, "select tgrelid::regclass::text, tgname from pg_trigger"
                                             " where not tgisinternal order by 1, 2"),
                "namespaces": self.query(node, "select nspname from pg_namespace order by 1"),
            }
        return out

    def slony_left(self) -> dict:
        return {node: {"schema": self.query(node, "select nspname from pg_namespace where nspname = %s", ("_" + CLUSTER,)),
                       "triggers": self.query(node, "select tgrelid::regclass::text, tgname from pg_trigger"
                                                    " where tgname like %s", ("\\_" + CLUSTER + "\\_%",)),
                       "functions": self.scalar(node, "select count(*) from pg_proc p join pg_namespace n"
                                                      " on n.oid = p.pronamespace where n.nspname = %s", ("_" + CLUSTER,))}
                for node in self.node_ids}

    def origin(self) -> int | None:
        for node in self.node_ids:
            if self.scalar(node, "select count(*) from pg_namespace where nspname = %s", ("_" + CLUSTER,)):
                rows = self.query(node, 'select distinct set_origin from "_%s".sl_set' % CLUSTER)
                if rows:
                    return rows[0][0]
        return None

    def sequences(self, node) -> dict:
        return dict(self.query(node, "select format('%I.%I', schemaname, sequencename), last_value"
                                     " from pg_sequences where schemaname not like '\\_%' order by 1"))

    def keys(self, node) -> list[int]:
        return [k for (k,) in self.query(node, "select id from %s order by id" % WRITES)]


class Migration:
    def __init__(self, lab, dbs: TwoDatabases, workdir: Path, bouncer: PgBouncer | None, hooks: tuple[str, str]):
        self.lab = lab
        self.dbs = dbs
        self.workdir = workdir
        self.bouncer = bouncer
        self.vars_file = workdir / "vars.json"
        self.runs: list[Run] = []
        variables = {
            "migrate_source": {"host": "127.0.0.1", "port": lab.port(SOURCE_NODE), "dbname": dbs.names[SOURCE_NODE],
                               "user": lab.user, "password": lab.password},
            "migrate_target": {"host": "127.0.0.1", "port": lab.port(TARGET_NODE), "dbname": dbs.names[TARGET_NODE],
                               "user": lab.user, "password": lab.password},
            "migrate_without_key": "skip",
            "migrate_before_cutover_tasks": hooks[0],
            "migrate_after_cutover_tasks": hooks[1],
            "migrate_slon_sync_interval": 100,
            "migrate_slon_sync_interval_timeout": 1000,
            "migrate_max_lag_seconds": 5,
            "migrate_wait_timeout": 120,
            "slon_config_dir": str(workdir / "slon" / "etc"),
            "slon_run_dir": str(workdir / "slon" / "run"),
            "slon_log_dir": str(workdir / "slon" / "log"),
            "slon_logrotate": False,
            "slon_start_check_delay": 0,
        }
        fd = os.open(self.vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(variables, handle)
        self.inventory = workdir / "inventory.json"
        self.inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}))

    def play(self, tags: str, check: bool = False, expect_failure: bool = False, extra: dict | None = None) -> Run:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="false")
        args = [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory), str(MIGRATE), "-e", "@%s" % self.vars_file,
                "--tags", tags]
        if extra:
            args += ["-e", json.dumps(extra)]
        if check:
            args.append("--check")
        started = time.monotonic()
        proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        run = Run(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.runs.append(run)
        print("%6.1fs %-10s%s changed=%d" % (run.seconds, tags, " (check)" if check else "", run.changed))
        if expect_failure:
            assert run.failed, "%s was expected to fail:\n%s" % (tags, run.stdout[-3000:])
        else:
            assert not run.failed, "%s failed:\n%s\n%s" % (tags, run.stdout[-6000:], run.stderr[-2000:])
        assert self.lab.password not in run.stdout + run.stderr, "the password was printed"
        return run

    def slon_processes(self) -> list[int]:
        """slon processes started with a configuration file of this test's directory."""
        marker = str(self.workdir / "slon" / "etc")
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and Path(cmdline[0].decode(errors="replace")).name == "slon" and any(
                    part.decode(errors="replace").startswith(marker) for part in cmdline):
                found.append(int(entry.name))
        return found

    def kill_slons(self) -> list[int]:
        pids = self.slon_processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids


def _start_bouncer(directory: Path, lab, dbname: str) -> PgBouncer:
    last = None
    for port in PGBOUNCER_PORTS:  # a port of the range may be someone's ephemeral port right now
        bouncer = PgBouncer(directory, port, "app", lab.user, lab.password, "127.0.0.1", lab.port(SOURCE_NODE), dbname)
        try:
            return bouncer.start()
        except RuntimeError as exc:
            last = exc
    raise RuntimeError("pgbouncer could not start on any port of %s: %s" % (PGBOUNCER_PORTS, last))


def _create_database(lab, node: int, name: str, template: str, extra: str = "") -> None:
    lab.query(node, "create database %s template %s %s" % (quote_ident(name), quote_ident(template), extra), dbname="postgres")


def _drop_database(lab, node: int, name: str) -> None:
    lab.query(node, "drop database if exists %s with (force)" % quote_ident(name), dbname="postgres")


@pytest.fixture(scope="module")
def migration(lab):
    source, target = unique_dbname("mig_src"), unique_dbname("mig_tgt")
    workdir = Path(tempfile.mkdtemp(prefix="dany-migrate-"))
    os.chmod(workdir, 0o755)
    created = []
    bouncer = None
    mig = None
    try:
        _create_database(lab, SOURCE_NODE, source, lab.template)
        created.append((SOURCE_NODE, source))
        _create_database(lab, TARGET_NODE, target, "template0")
        created.append((TARGET_NODE, target))
        conn = lab.connect(SOURCE_NODE, source)
        with conn.cursor() as cur:
            cur.execute(EXTRA_SCHEMA % BIG_ROWS)
        conn.close()
        bouncer = _start_bouncer(workdir / "pgbouncer", lab, source)
        before_hook, after_hook = bouncer.write_hooks(workdir)
        mig = Migration(lab, TwoDatabases(lab, source, target), workdir, bouncer, (str(before_hook), str(after_hook)))
        yield mig
    finally:
        if mig is not None:
            left = mig.kill_slons()
            if left:
                print("killed slons left running: %s" % left)
        if bouncer is not None:
            bouncer.stop()
        for node, name in reversed(created):
            _drop_database(lab, node, name)
        shutil.rmtree(workdir, ignore_errors=True)


def test_preflight_names_every_problem(lab):
    """A target with another encoding and collation, a table of its own, and a source table
    without a key under migrate_without_key=fail: prepare names all four and changes
    nothing."""
    source, target = unique_dbname("mig_pre_src"), unique_dbname("mig_pre_tgt")
    workdir = Path(tempfile.mkdtemp(prefix="dany-migrate-pre-"))
    try:
        _create_database(lab, SOURCE_NODE, source, lab.template)
        _create_database(lab, TARGET_NODE, target, "template0", "encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C'")
        lab.query(TARGET_NODE, "create table public.not_from_the_source (id int primary key)", dbname=target)
        dbs = TwoDatabases(lab, source, target)
        before = dbs.user_catalog()
        mig = Migration(lab, dbs, workdir, None, ("", ""))
        run = mig.play("prepare", expect_failure=True, extra={"migrate_without_key": "fail"})
        message = run.stdout[run.stdout.find("The migration cannot start"):]
        assert "encodings differ: source UTF8, target SQL_ASCII" in message
        assert "collations differ: source C.UTF-8/C.UTF-8, target C/C" in message
        assert "tables the source has not: public.not_from_the_source" in message
        assert "without a primary key or a unique index on NOT NULL columns: public.audit_log" in message
        assert dbs.user_catalog() == before
    finally:
        _drop_database(lab, SOURCE_NODE, source)
        _drop_database(lab, TARGET_NODE, target)
        shutil.rmtree(workdir, ignore_errors=True)


def test_live_migration_through_pgbouncer(migration: Migration):
    mig, dbs = migration, migration.dbs
    started = time.monotonic()
    writer = Writer(mig.bouncer.client_conninfo(), WRITES)
    writer.start()
    try:
        writer.wait_for_commits(20)

        # -- prepare -------------------------------------------------------------------------
        before = dbs.user_catalog()
        run = mig.play("prepare", check=True)
        assert run.changed > 0
        assert dbs.user_catalog()[TARGET_NODE] == before[TARGET_NODE]
        run = mig.play("prepare")
        assert "left out, no usable key (their rows do not move): public.audit_log" in run.stdout
        target_tables = {r[:2] for r in dbs.user_catalog()[TARGET_NODE]["relations"] if r[2] == "r"}
        assert ("public", "migrate_big") in target_tables and ("billing", "invoices") in target_tables
        assert dbs.scalar(TARGET_NODE, "select count(*) from public.migrate_big") == 0
        assert mig.play("prepare").changed == 0

        # -- replicate -----------------------------------------------------------------------
        before = dbs.user_catalog()
        run = mig.play("replicate", check=True)
        assert run.changed > 0
        assert dbs.user_catalog() == before
        assert mig.slon_processes() == []
        mig.play("replicate")
        assert dbs.origin() == SOURCE_NODE
        assert dbs.scalar(TARGET_NODE, "select count(*) from public.migrate_big") == BIG_ROWS
        assert dbs.query(TARGET_NODE, "select count(*) from public.audit_log") == [(0,)]  # left out: no key
        catalog = dump(dbs, CLUSTER)
        assert mig.play("replicate").changed == 0
        assert {n: c["sl_set"] for n, c in dump(dbs, CLUSTER).items()} == {n: c["sl_set"] for n, c in catalog.items()}

        # -- verify --------------------------------------------------------------------------
        writer.wait_for_commits(20)
        run = mig.play("verify")
        assert run.changed == 0 and "source and target hold the same data" in run.stdout

        # -- cutover -------------------------------------------------------------------------
        catalog = dump(dbs, CLUSTER)
        run = mig.play("cutover", check=True)
        assert run.changed > 0
        assert_unchanged(dump(dbs, CLUSTER), catalog)
        assert mig.bouncer.server_of_alias()[1] == mig.lab.port(SOURCE_NODE)
        writer.wait_for_commits(20)
        cut_at = time.monotonic()
        run = mig.play("cutover")
        cutover = DOWNTIME_RE.search(run.stdout)
        assert cutover and cutover["phase"] == "cutover" and int(cutover["node"]) == TARGET_NODE, run.stdout[-3000:]
        assert dbs.origin() == TARGET_NODE
        assert mig.bouncer.server_of_alias() == ("127.0.0.1", mig.lab.port(TARGET_NODE), dbs.names[TARGET_NODE])
        first_on_target = len(writer.committed)
        writer.wait_for_commits(20)
        gap_cutover = writer.max_gap(since=cut_at)
        committed = set(writer.committed)
        assert committed <= set(dbs.keys(TARGET_NODE))
        assert mig.play("cutover").changed == 0

        # -- rollback: the source gets the rows written on the target ------------------------
        writer.wait_for_commits(20)
        # The rollback and the second cutover compare after the resume (outside the window).
        resumed = {"migrate_switch_verify": "resumed"}
        run = mig.play("rollback", extra=resumed)
        rollback = DOWNTIME_RE.search(run.stdout)
        assert rollback and rollback["phase"] == "rollback", run.stdout[-3000:]
        assert dbs.origin() == SOURCE_NODE
        assert mig.bouncer.server_of_alias()[1] == mig.lab.port(SOURCE_NODE)
        # Every row committed so far, those of the writes made on the target included.
        committed = set(writer.committed)
        assert len(committed) > first_on_target + 20
        assert committed <= set(dbs.keys(SOURCE_NODE))
        assert mig.play("rollback", extra=resumed).changed == 0

        # -- cutover again, then finish ------------------------------------------------------
        writer.wait_for_commits(20)
        run = mig.play("cutover", extra=resumed)
        again = DOWNTIME_RE.search(run.stdout)
        assert dbs.origin() == TARGET_NODE
        writer.wait_for_commits(20)
        before = dbs.user_catalog()
        run = mig.play("finish", check=True)
        assert run.changed > 0
        assert dbs.user_catalog()[SOURCE_NODE]["namespaces"] == before[SOURCE_NODE]["namespaces"]
        assert dbs.user_catalog()[SOURCE_NODE]["triggers"] == before[SOURCE_NODE]["triggers"]
        assert len(mig.slon_processes()) >= 2  # a watchdog and a worker per slon
        mig.play("finish")
        assert mig.slon_processes() == []
        assert not list((mig.workdir / "slon" / "etc").glob("*.conf"))
        writer.wait_for_commits(20)  # the target is a plain database that takes writes
        assert mig.play("finish").changed == 0
    finally:
        writer.stop()

    # Every committed row exactly once on the target, and nothing else of the writer.
    keys = dbs.keys(TARGET_NODE)
    assert not writer.uncertain, writer.uncertain
    assert sorted(writer.committed) == keys
    assert len(keys) == len(set(keys))
    # Sequences at or above the source's.
    source_seqs, target_seqs = dbs.sequences(SOURCE_NODE), dbs.sequences(TARGET_NODE)
    assert source_seqs.keys() == target_seqs.keys()
    behind = {s: (v, target_seqs[s]) for s, v in source_seqs.items() if v is not None and (target_seqs[s] or 0) < v}
    assert not behind, behind
    # Nothing of Slony on either side.
    assert dbs.slony_left() == {n: {"schema": [], "triggers": [], "functions": 0} for n in dbs.node_ids}
    print("\nmigration of %d rows: %.1f s in all; cutover write downtime %s s (LOCK..MOVE %s s), rollback %s s "
          "(LOCK..MOVE %s s) and second cutover %s s (LOCK..MOVE %s s), both compared after the resume; the writer's "
          "longest gap at the first cutover %.2f s, over the whole run %.2f s; %d rows written, %d errors seen by the "
          "writer %s"
          % (BIG_ROWS, time.monotonic() - started, cutover["downtime"], cutover["locked"], rollback["downtime"],
             rollback["locked"], again["downtime"], again["locked"], gap_cutover, writer.max_gap(), len(keys),
             len(writer.errors), writer.errors[:3]))
    assert gap_cutover < float(cutover["downtime"]) + 5
