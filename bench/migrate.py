#!/usr/bin/env python
"""Migration benchmark: playbooks/migrate.yml against the same job as a slonik script.

A source database on lab node 1 (one large table of about --mb megabytes plus the writer's
table and a sequence) moves to an empty database of the same name on lab node 2, once with
the playbook (prepare, replicate, verify, cutover, finish) and once as a DBA scripts it
(pg_dump --schema-only | psql, a slonik script for the cluster, sets and subscription,
slon started by hand, a wait on sl_subscribe, then LOCK SET / MOVE SET / WAIT FOR EVENT,
setval where the target is behind, UNINSTALL NODE). Both runs have a writer committing
through a real pgbouncer in front of the source the whole time, and the same cutover
around the switchover (PAUSE, repoint + RELOAD, RESUME). Reported per tool: total time,
the write downtime (PAUSE .. RESUME, and the writer's own longest gap between two
commits), LOCK SET .. MOVE SET where known, rows the writer committed, and a check that
the target holds every committed row exactly once.

Usage: SLONY_LAB_PORT_BASE=... SLONY_LAB_DIR=... .venv/bin/python bench/migrate.py [--mb 1024] [--reps 3] [--tools playbook,slonik]
The repetitions interleave the tools; medians and playbook/slonik ratios are printed.
The lab (tests/integration/lab.py) is brought up if needed and left running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from lab import SLONIK_BIN, FreshDatabase, Lab, LabSettings, SlonFleet, quote_ident, unique_dbname  # noqa: E402
from pgbouncer import PgBouncer  # noqa: E402
from writer import Writer  # noqa: E402

CLUSTER = "migrate"
ROW_BYTES = 130  # heap bytes per row of the large table (measured: md5 + 60 bytes of text + key)
PGBOUNCER_PORTS = range(55290, 55300)
DOWNTIME_RE = re.compile(r"write downtime (?P<downtime>[\d.]+) s.*?LOCK SET \.\. MOVE SET\s+(?P<locked>[\d.]+) s", re.DOTALL)
SCHEMA = """
create table public.big (id bigint primary key, payload text not null);
insert into public.big select g, md5(g::text) || repeat('x', 60) from generate_series(1, %d) g;
create table public.writes (id bigserial primary key, note text not null, at timestamptz not null default now());
analyze;
"""


def log(message: str) -> None:
    print("%s %s" % (time.strftime("%H:%M:%S"), message), flush=True)


class Job:
    """One source/target pair with pgbouncer and a writer in front of the source."""

    def __init__(self, lab: Lab, rows: int, tool: str):
        self.lab = lab
        self.tool = tool
        self.dbname = unique_dbname("bench_mig_" + tool)
        self.db = FreshDatabase(lab, self.dbname, [1, 2], cluster_name=CLUSTER)
        self.workdir = Path(tempfile.mkdtemp(prefix="dany-bench-migrate-"))
        os.chmod(self.workdir, 0o755)
        lab.query(1, "create database %s template template0" % quote_ident(self.dbname), dbname="postgres")
        lab.query(2, "create database %s template template0" % quote_ident(self.dbname), dbname="postgres")
        started = time.monotonic()
        conn = lab.connect(1, self.dbname)
        with conn.cursor() as cur:
            cur.execute(SCHEMA % rows)
            cur.execute("select pg_total_relation_size('public.big')")
            self.bytes = cur.fetchone()[0]
        conn.close()
        log("%s: source filled, %.0f MB in %.1f s" % (tool, self.bytes / 1e6, time.monotonic() - started))
        self.bouncer = self._bouncer()
        self.writer = Writer(self.bouncer.client_conninfo(), "public.writes")

    def _bouncer(self) -> PgBouncer:
        error = None
        for port in PGBOUNCER_PORTS:
            bouncer = PgBouncer(self.workdir / "pgbouncer", port, "app", self.lab.user, self.lab.password,
                                "127.0.0.1", self.lab.port(1), self.dbname)
            try:
                return bouncer.start()
            except RuntimeError as exc:
                error = exc
        raise RuntimeError("pgbouncer did not start: %s" % error)

    def kill_slons(self) -> None:
        """Kill the slons the slon role started with a configuration file of this job."""
        marker = str(self.workdir)
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                if entry.name.isdigit() and Path(cmdline[0]).name == "slon" and any(a.startswith(marker) for a in cmdline):
                    os.kill(int(entry.name), 9)
            except (OSError, IndexError):
                continue

    def close(self) -> None:
        self.kill_slons()
        self.writer.stop()
        self.bouncer.stop()
        self.db.drop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def check(self) -> dict:
        keys = [k for (k,) in self.db.query(2, "select id from public.writes order by id")]
        big = self.db.scalar(2, "select count(*) from public.big")
        return {"rows_committed": len(self.writer.committed),
                "target_has_every_row_once": sorted(self.writer.committed) == keys,
                "big_rows_on_target": big,
                "slony_left": [n for n in (1, 2) if self.db.scalar(
                    n, "select count(*) from pg_namespace where nspname = %s", ("_" + CLUSTER,))]}


def run_playbook(job: Job) -> dict:
    before, after = job.bouncer.write_hooks(job.workdir)
    variables = {
        "migrate_source": {"host": "127.0.0.1", "port": job.lab.port(1), "dbname": job.dbname,
                           "user": job.lab.user, "password": job.lab.password},
        "migrate_target": {"host": "127.0.0.1", "port": job.lab.port(2), "dbname": job.dbname,
                           "user": job.lab.user, "password": job.lab.password},
        "migrate_before_cutover_tasks": str(before),
        "migrate_after_cutover_tasks": str(after),
        "migrate_switch_verify": "resumed",
        "migrate_slon_sync_interval": 100,
        "migrate_slon_sync_interval_timeout": 1000,
        "migrate_max_lag_seconds": 5,
        "migrate_wait_timeout": 3600,
        "slon_config_dir": str(job.workdir / "slon" / "etc"),
        "slon_run_dir": str(job.workdir / "slon" / "run"),
        "slon_log_dir": str(job.workdir / "slon" / "log"),
        "slon_logrotate": False,
        "slon_start_check_delay": 0,
    }
    vars_file = job.workdir / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(variables, handle)
    inventory = job.workdir / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    phases = {}
    report = None
    for tags in ("prepare", "replicate", "verify", "cutover", "finish"):
        started = time.monotonic()
        proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory),
                               str(REPO / "playbooks" / "migrate.yml"), "-e", "@%s" % vars_file, "--tags", tags],
                              cwd=REPO, env=env, capture_output=True, text=True, check=False)
        phases[tags] = round(time.monotonic() - started, 2)
        if proc.returncode != 0:
            raise RuntimeError("%s failed:\n%s" % (tags, proc.stdout[-4000:]))
        if tags == "cutover":
            report = DOWNTIME_RE.search(proc.stdout)
        log("playbook: %s %.1f s" % (tags, phases[tags]))
    return {"phases": phases, "downtime_seconds": float(report["downtime"]) if report else None,
            "locked_seconds": float(report["locked"]) if report else None}


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def run_slonik(job: Job) -> dict:
    db, lab = job.db, job.lab
    phases = {}
    env1 = dict(os.environ, PGPASSWORD=lab.password)

    def slonik(script: str) -> None:
        proc = subprocess.run([SLONIK_BIN], input=db.slonik_preamble(CLUSTER) + script, capture_output=True,
                              text=True, check=False, env=env1)
        if proc.returncode != 0:
            raise RuntimeError("slonik failed: %s\n%s" % (proc.stdout[-2000:], proc.stderr[-2000:]))

    started = time.monotonic()
    dump = subprocess.run(["pg_dump", "--schema-only", "-h", "127.0.0.1", "-p", str(lab.port(1)), "-U", lab.user,
                           job.dbname], capture_output=True, text=True, check=True, env=env1)
    subprocess.run(["psql", "-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                    "-p", str(lab.port(2)), "-U", lab.user, job.dbname], input=dump.stdout, capture_output=True,
                   text=True, check=True, env=env1)
    phases["prepare"] = round(time.monotonic() - started, 2)

    started = time.monotonic()
    paths = "".join("store path (server = %d, client = %d, conninfo = '%s');\n" % (s, c, db.conninfo(s))
                    for s, c in ((1, 2), (2, 1)))
    slonik("init cluster (id = 1, comment = 'source');\nstore node (id = 2, comment = 'target', event node = 1);\n" + paths)
    fleet = SlonFleet(db, CLUSTER, {"sync_interval": 100, "sync_interval_timeout": 1000})
    job.fleet = fleet
    fleet.start()
    slonik("create set (id = 1, origin = 1, comment = 'migration');\n"
           "set add table (set id = 1, origin = 1, id = 1, fully qualified name = 'public.big');\n"
           "set add table (set id = 1, origin = 1, id = 2, fully qualified name = 'public.writes');\n"
           "set add sequence (set id = 1, origin = 1, id = 1, fully qualified name = 'public.writes_id_seq');\n"
           "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes);\n")
    ns = '"_%s"' % CLUSTER
    wait(lambda: db.scalar(2, "select count(*) from %s.sl_setsync where ssy_setid = 1" % ns) == 1
         and db.scalar(2, "select sub_active from %s.sl_subscribe where sub_set = 1 and sub_receiver = 2" % ns),
         3600, "the copy")
    wait(lambda: (db.scalar(1, "select st_lag_num_events from %s.sl_status where st_received = 2" % ns) or 0) <= 2,
         600, "the lag")
    phases["replicate"] = round(time.monotonic() - started, 2)

    started = time.monotonic()
    job.bouncer.admin("PAUSE app")
    locked = time.monotonic()
    slonik("lock set (id = 1, origin = 1);\nsync (id = 1);\nwait for event (origin = 1, confirmed = 2, wait on = 1);\n"
           "move set (id = 1, old origin = 1, new origin = 2);\nwait for event (origin = 1, confirmed = 2, wait on = 1);\n")
    moved = time.monotonic()
    value = db.scalar(1, "select last_value from public.writes_id_seq")
    db.query(2, "select setval('public.writes_id_seq', %s) where (select last_value from public.writes_id_seq) < %s",
             (value, value))
    job.bouncer.databases.write_text("[databases]\napp = host=127.0.0.1 port=%d dbname=%s\n" % (lab.port(2), job.dbname))
    job.bouncer.admin("RELOAD")
    job.bouncer.admin("RESUME app")
    downtime = time.monotonic() - started
    phases["cutover"] = round(downtime, 2)

    started = time.monotonic()
    fleet.stop()
    slonik("uninstall node (id = 1);\nuninstall node (id = 2);\n")
    phases["finish"] = round(time.monotonic() - started, 2)
    for name, seconds in phases.items():
        log("slonik: %s %.1f s" % (name, seconds))
    return {"phases": phases, "downtime_seconds": round(downtime, 3),
            "locked_seconds": round(moved - locked, 3), "verify": "none (slonik has no comparison)"}


def run_once(lab: Lab, rows: int, tool: str) -> dict:
    job = Job(lab, rows, tool)
    try:
        job.writer.start()
        job.writer.wait_for_commits(20)
        started = time.monotonic()
        result = run_playbook(job) if tool == "playbook" else run_slonik(job)
        result["total_seconds"] = round(time.monotonic() - started, 2)
        job.writer.wait_for_commits(20)
        job.writer.stop()
        result["writer_max_gap_seconds"] = round(job.writer.max_gap(), 3)
        result["writer_errors"] = len(job.writer.errors)
        result["source_mb"] = round(job.bytes / 1e6, 1)
        result.update(job.check())
        log("%s: %s" % (tool, json.dumps(result)))
        return result
    finally:
        fleet = getattr(job, "fleet", None)
        if fleet is not None:
            fleet.kill_all()
        job.close()


MEDIAN_KEYS = ("total_seconds", "downtime_seconds", "writer_max_gap_seconds", "locked_seconds")


def summary(runs: dict) -> dict:
    """Per tool, the median of each timing over the repetitions, and the playbook/slonik
    ratios of those medians."""
    medians = {}
    for tool, results in runs.items():
        medians[tool] = dict((key, round(statistics.median(r[key] for r in results), 3))
                             for key in MEDIAN_KEYS if all(r.get(key) is not None for r in results))
        medians[tool]["phases"] = dict(
            (phase, round(statistics.median(r["phases"][phase] for r in results), 2))
            for phase in results[0].get("phases", {}))
        medians[tool]["runs"] = len(results)
    if "playbook" in medians and "slonik" in medians:
        medians["ratio_playbook_to_slonik"] = dict(
            (key, round(medians["playbook"][key] / medians["slonik"][key], 2))
            for key in MEDIAN_KEYS
            if medians["slonik"].get(key) and key in medians["playbook"])
    return medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--mb", type=float, default=1024, help="size of the large table (default 1024 MB)")
    parser.add_argument("--tools", default="playbook,slonik")
    parser.add_argument("--reps", type=int, default=3, help="repetitions, tools interleaved (default 3)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    lab = Lab(LabSettings.from_environment())
    if not all(lab.is_reachable(n) for n in (1, 2)):
        lab.up()
    rows = max(1000, int(args.mb * 1e6 / ROW_BYTES))
    runs = dict((tool, []) for tool in args.tools.split(","))
    for rep in range(args.reps):
        for tool in runs:
            log("repetition %d of %d: %s" % (rep + 1, args.reps, tool))
            runs[tool].append(run_once(lab, rows, tool))
    results = {"runs": runs, "median": summary(runs)}
    print(json.dumps(results["median"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    ok = all(r["target_has_every_row_once"] and not r["slony_left"]
             for results_of_tool in runs.values() for r in results_of_tool)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
