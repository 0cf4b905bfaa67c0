#!/usr/bin/env python
"""site.yml at N nodes: bring-up against slonik, and the run with nothing to change.

For each node count N (default 3, 6, 10; full mesh of paths, set 1 with T tables and 3
sequences on node 1, every other node subscribed to node 1), on a lab of its own:

  bringup  slonik (init cluster, store node x (N-1), store path x N(N-1), slons started
           by the lab's SlonFleet, create set, set add table/sequence by pattern,
           subscribe set x (N-1)) against `ansible-playbook playbooks/site.yml` on an
           inventory of N node hosts (its slon role starts the slons); timed until every
           replica holds every row
  noop     site.yml again, nothing to change (asserted: changed=0 on every host); wall
           time, and the per-task profile (bench/callback/task_profile.py)
  trips    the same convergence in this process (dany.Cluster.converge, the code the
           cluster role's slony_cluster tasks run), its database round trips and
           connections counted as in bench/run.py

Repetitions interleave the tools; medians and ratios (collection / slonik) are printed,
with the per-node slope of each. Nothing here is a test: it is not part of `make test`.

Usage:  .venv/bin/python bench/noop.py [--nodes 3,6,10] [--reps 3] [--tables 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402  (bench/run.py: lab paths, counting connections, checks)

from lab import FreshDatabase, Lab, LabSettings, SlonFleet  # noqa: E402

from ansible_collections.dany.slony.plugins.module_utils.api import Cluster as ApiCluster  # noqa: E402
from ansible_collections.dany.slony.plugins.filter.conninfo import conninfo as conninfo_filter  # noqa: E402

REPO = bench.REPO
# slon's options for both tools (main() sets -t from --slon-timeout).
SLON_OPTIONS = dict(bench.SLON_TEST_OPTIONS)
SITE = REPO / "playbooks" / "site.yml"
CLUSTER = bench.CLUSTER


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--nodes", default="3,6,10", help="node counts (default 3,6,10)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--noop-reps", type=int, default=3, help="no-op runs per bring-up")
    parser.add_argument("--tables", type=int, default=10, help="tables in set 1 (default 10)")
    parser.add_argument("--port-base", type=int, default=55850)
    parser.add_argument("--lab-dir", default="/var/tmp/lab-bench-noop")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--wait-timeout", type=int, default=600)
    parser.add_argument("--slon-timeout", type=int, default=250,
                        help="slon's sync_interval_timeout (-t) in ms for both tools (default 250, "
                             "as the tests; every idle node emits a SYNC this often, which every "
                             "other node processes: at N = 10 and 250 ms that alone saturates "
                             "2 cores)")
    parser.add_argument("--json", default="/var/tmp/lab-bench-noop-%d.json" % os.getpid())
    return parser.parse_args(argv)


def prepare(db, nodes, tables):
    bench.parallel(nodes, lambda node: db.query(node, bench.create_tables_sql(
        "t", tables, bench.ROWS_PER_TABLE if node == 1 else 0, bench.SEQUENCES)))


def wait_replicas(db, nodes, tables, timeout):
    bench.poll(lambda: bench.replicas_hold(db, "t", tables, bench.SEQUENCES, nodes[1:]),
               timeout, "replicas holding bench.t* (%d tables)" % tables)


# -- slonik -------------------------------------------------------------------------------

def slonik_bringup(db, nodes, tables, timeout):
    def script(text):
        bench.slonik(db, text, nodes=nodes)
    t = time.monotonic()
    script("init cluster (id = 1, comment = 'node 1');\n" + "".join(
        "store node (id = %d, comment = 'node %d', event node = 1);\n" % (n, n) for n in nodes[1:]))
    script("".join("store path (server = %d, client = %d, conninfo = '%s', connretry = 10);\n"
                   % (s, c, db.conninfo(s)) for s in nodes for c in nodes if s != c))
    fleet = SlonFleet(db, cluster_name=CLUSTER, options=SLON_OPTIONS)
    fleet.start(*nodes)
    script("create set (id = 1, origin = 1, comment = 'bench');\n"
           "set add table (set id = 1, origin = 1, tables = %s);\n"
           "set add sequence (set id = 1, origin = 1, sequences = %s);\n"
           % (bench.regex(bench.TABLE_PATTERN), bench.regex(bench.SEQUENCE_PATTERN))
           + "".join("subscribe set (id = 1, provider = 1, receiver = %d, forward = yes);\n" % n
                     for n in nodes[1:]))
    wait_replicas(db, nodes, tables, timeout)
    seconds = time.monotonic() - t
    fleet.stop(*nodes)
    return seconds


# -- ansible-playbook site.yml ------------------------------------------------------------

def inventory(db, nodes, workdir):
    lab = db.lab
    hosts = dict(("node%d" % n, {"slony_node_id": n, "slony_db_port": lab.port(n)}) for n in nodes)
    return {"all": {
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        "children": {"slony_nodes": {"hosts": hosts, "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "slony_db_host": "127.0.0.1", "slony_db_name": db.dbname,
            "slony_db_user": lab.user, "slony_db_password": lab.password,
            "slony_cluster_name": CLUSTER,
            "slony_sets": [{"id": 1, "origin": 1, "comment": "bench",
                            "patterns": [bench.TABLE_PATTERN],
                            "sequence_patterns": [bench.SEQUENCE_PATTERN]}],
            "slony_slon_sync_interval": SLON_OPTIONS["sync_interval"],
            "slony_slon_sync_interval_timeout": SLON_OPTIONS["sync_interval_timeout"],
            "slon_config_dir": str(workdir / "etc"), "slon_run_dir": str(workdir / "run"),
            "slon_log_dir": str(workdir / "log"), "slon_logrotate": False,
        }}}}}


class ModuleMemory(threading.Thread):
    """The peak resident memory (VmHWM, kB) of the module processes that run while it is
    active. With ``pipelining`` (ansible.cfg) a module runs as a bare ``python3`` reading
    its payload on stdin: a process whose command line is the interpreter alone, child of
    ``/bin/sh -c '... && sleep 0'``. /proc is scanned every ``interval`` seconds; VmHWM only
    grows, so a module that lives over a few scans is measured at its peak."""

    def __init__(self, interval=0.05):
        super().__init__(name="module-memory", daemon=True)
        self.interval = interval
        self.root = None  # only descendants of this pid count (set once the playbook runs)
        self.peak_kb = 0
        self.modules = set()
        self._done = threading.Event()

    @staticmethod
    def _parent(pid):
        return Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()[1]

    def _descends(self, pid):
        while pid not in ("0", "1"):
            pid = self._parent(pid)
            if pid == str(self.root):
                return True
        return False

    def _module_peak(self, pid):
        try:
            argv = Path("/proc", pid, "cmdline").read_bytes().split(b"\0")[:-1]
            if len(argv) != 1 or not argv[0].endswith((b"/python3", b"/python")):
                return None
            if b"&& sleep 0" not in Path("/proc", self._parent(pid), "cmdline").read_bytes():
                return None
            if not self._descends(pid):
                return None
            for line in Path("/proc", pid, "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except (OSError, IndexError, ValueError):
            return None
        return None

    def run(self):
        while not self._done.is_set():
            for pid in os.listdir("/proc") if self.root else ():
                if pid.isdigit():
                    kb = self._module_peak(pid)
                    if kb is not None:
                        self.modules.add(pid)
                        self.peak_kb = max(self.peak_kb, kb)
            self._done.wait(self.interval)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self.join()


def playbook(path, workdir, profile=None, extra=(), memory=None):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="false")
    if profile:
        env.update(ANSIBLE_CALLBACK_PLUGINS=str(BENCH / "callback"),
                   ANSIBLE_CALLBACKS_ENABLED="task_profile", DANY_TASK_PROFILE=str(profile))
    t = time.monotonic()
    with subprocess.Popen([str(bench.ANSIBLE_PLAYBOOK), "-i", str(workdir / "inventory.yml"),
                           str(path)] + list(extra), cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        if memory is not None:
            memory.root = proc.pid
        stdout, stderr = proc.communicate()
    seconds = time.monotonic() - t
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s\n%s" % (path.name, stdout[-30000:], stderr[-2000:]))
    recap = [line for line in stdout.splitlines() if " : ok=" in line]
    return seconds, recap


def stop_slons(workdir):
    for pid_file in (workdir / "run").glob("*.pid"):
        subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pid_file), "--retry",
                        "TERM/10/KILL/5", "--remove-pidfile"], capture_output=True, check=False)


def ansible_bringup(db, nodes, tables, workdir, noop_reps, timeout):
    path = workdir / "inventory.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the password
    with os.fdopen(fd, "w") as handle:
        json.dump(inventory(db, nodes, workdir), handle)
    memory = {}
    try:
        t = time.monotonic()
        with ModuleMemory() as mem:
            playbook(SITE, workdir, memory=mem)
        wait_replicas(db, nodes, tables, timeout)
        bringup = time.monotonic() - t
        memory["bringup"] = {"peak_kb": mem.peak_kb, "modules": len(mem.modules)}
        noops, profile = [], []
        for rep in range(noop_reps):
            prof = workdir / ("profile-%d.jsonl" % rep)
            with ModuleMemory() as mem:
                seconds, recap = playbook(SITE, workdir, profile=prof, memory=mem)
            if not recap or any("changed=0" not in line for line in recap):
                raise RuntimeError("the no-op run changed something: %s" % recap)
            noops.append(seconds)
            memory["noop"] = {"peak_kb": max(mem.peak_kb, memory.get("noop", {}).get("peak_kb", 0)),
                              "modules": len(mem.modules)}
            profile = [json.loads(line) for line in prof.read_text().splitlines()]
        # The cluster role stores the paths without their password (the slons read it
        # from their passfile): the same path conninfos here, or converge() would change them.
        api = ApiCluster(CLUSTER, dict((n, {"conninfo": db.conninfo(n),
                                            "path_conninfo": conninfo_filter(db.conninfo(n),
                                                                             password=False)})
                                       for n in nodes),
                         sets=[{"id": 1, "origin": 1, "comment": "bench",
                                "patterns": [bench.TABLE_PATTERN],
                                "sequence_patterns": [bench.SEQUENCE_PATTERN]}])
        with bench.counted() as trips:
            results = api.converge()
        changed = [r for r in results if r.changed]
        if changed:
            raise RuntimeError("converge() changed something after site.yml: %s" % changed)
        return bringup, noops, profile, trips.result, memory
    finally:
        stop_slons(workdir)


def median(values):
    return statistics.median(values) if values else None


def slope(by_n, key):
    ns = sorted(by_n)
    if len(ns) < 2:
        return None
    return (by_n[ns[-1]][key] - by_n[ns[0]][key]) / (ns[-1] - ns[0])


def main(argv=None):
    args = parse_args(argv)
    SLON_OPTIONS["sync_interval_timeout"] = args.slon_timeout
    counts = [int(n) for n in args.nodes.split(",")]
    settings = LabSettings(port_base=args.port_base, directory=Path(args.lab_dir),
                           nodes=max(counts), keep=args.keep_lab)
    lab = Lab(settings).up()
    results = {}
    try:
        for n in counts:
            nodes = list(range(1, n + 1))
            rows = results.setdefault(n, {"slonik": [], "ansible": [], "noop": [], "profile": [],
                                          "trips": None, "memory": []})
            for rep in range(args.reps):
                order = ("slonik", "ansible") if rep % 2 == 0 else ("ansible", "slonik")
                for tool in order:
                    db = FreshDatabase(lab, "noop_%s_%s" % (tool, uuid.uuid4().hex[:8]), nodes,
                                       cluster_name=CLUSTER).create()
                    try:
                        prepare(db, nodes, args.tables)
                        if tool == "slonik":
                            seconds = slonik_bringup(db, nodes, args.tables, args.wait_timeout)
                            rows["slonik"].append(seconds)
                            bench.log("N=%d slonik bring-up %.2fs" % (n, seconds))
                        else:
                            with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
                                # slon runs as postgres and reads its configuration below.
                                os.chmod(tmp, 0o755)
                                bringup, noops, profile, trips, memory = ansible_bringup(
                                    db, nodes, args.tables, Path(tmp), args.noop_reps,
                                    args.wait_timeout)
                            rows["memory"].append(memory)
                            rows["ansible"].append(bringup)
                            rows["noop"].extend(noops)
                            rows["profile"], rows["trips"] = profile, trips
                            bench.log("N=%d site.yml bring-up %.2fs, no-op %s, round trips %s"
                                      % (n, bringup, ", ".join("%.2fs" % s for s in noops), trips))
                    finally:
                        db.drop()
    finally:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
        if not args.keep_lab:
            lab.down()
    report(results, args)


def report(results, args):
    print("\nsite.yml against slonik, T = %d tables, median of %d (no-op: of %d runs); slon -s %d -t %d"
          % (args.tables, args.reps, args.reps * args.noop_reps, SLON_OPTIONS["sync_interval"],
             SLON_OPTIONS["sync_interval_timeout"]))
    print("| N | slonik bring-up s | site.yml bring-up s | ratio | no-op site.yml s | round trips | connections |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for n in sorted(results):
        row = results[n]
        s, a, z = median(row["slonik"]), median(row["ansible"]), median(row["noop"])
        trips = row["trips"] or {}
        summary[n] = {"slonik": s, "ansible": a, "noop": z,
                      "trips": trips.get("round_trips"), "connections": trips.get("connections")}
        print("| %d | %.2f | %.2f | %.2f | %.2f | %s | %s |" % (
            n, s, a, a / s, z, trips.get("round_trips"), trips.get("connections")))
    if len(summary) > 1:
        print("\nper extra node: slonik %+.2f s, site.yml %+.2f s, no-op %+.2f s, round trips %+.1f"
              % (slope(summary, "slonik"), slope(summary, "ansible"), slope(summary, "noop"),
                 slope(summary, "trips")))
    print("\npeak resident memory of one module process (the largest, sampled; MB)")
    print("| N | T | bring-up: peak | module processes | no-op: peak | module processes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sorted(results):
        for mem in results[n].get("memory", []):
            print("| %d | %d | %.1f | %d | %.1f | %d |" % (
                n, args.tables, mem["bringup"]["peak_kb"] / 1024.0, mem["bringup"]["modules"],
                mem["noop"]["peak_kb"] / 1024.0, mem["noop"]["modules"]))
    smallest = min(results)
    print("\nno-op per-task profile at N = %d (last run; seconds from a task's start to the next's)"
          % smallest)
    print("| task | hosts | s |")
    print("|---|---:|---:|")
    for entry in results[smallest]["profile"]:
        if entry["seconds"] >= 0.05:
            print("| %s | %d | %.2f |" % (entry["task"], entry["hosts"], entry["seconds"]))


if __name__ == "__main__":
    main()
