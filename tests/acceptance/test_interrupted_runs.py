"""Scenario 9 of the acceptance suite: interrupted runs (the controller dies in the middle of
a playbook; Slony-I's disorder tests restart slonik scripts, which cannot be re-run - a
playbook of this collection must be).

5 nodes, 1 -> {2, 3}, 3 -> {4, 5}, driven only through the playbooks users run, with an
inventory of the lab (hosts node1..node5 as in tests/integration/test_site.py, node 4 and 5
with ``slony_provider: 3``, the slons run by the slon role of site.yml), and a writer
committing into the three writer tables on the set's origin throughout. Four runs are
killed half-way and run again:

(a) bring-up, ``playbooks/site.yml``: killed at the first sign of the replication phase
    (set 1 exists on node 1: nodes, paths and slons are there, no subscription yet);
(b) live table add, ``site.yml`` with a new table (2000 rows on the origin) in the
    inventory's set: killed as soon as the temporary set of the live addition exists on
    node 1 (comment ``dany.slony: objects on their way into set 1``,
    plugins/module_utils/tables.py). The table's DDL is run on every node directly before
    (ddl.yml's job in real life, left out for time: it is not what is interrupted);
(c) switchover 1 -> 2, ``playbooks/switchover.yml``: a transaction holding an xid on node 1
    makes the module wait for older transactions after LOCK SET; killed as soon as
    ``sl_set.set_locked`` is set on node 1 (the set locked, not moved); the blocker ends,
    the re-run reuses the lock (action ``resume``);
(d) failover of the origin, node 2 (its server stopped with -m immediate, its slon killed)
    to node 1, ``playbooks/failover.yml``: killed when preFailover has blanked a survivor's
    path from node 2 (``pa_conninfo = '<event pending>'``), the re-run killed again when
    FAILOVER_NODE exists (``sl_node.no_failed`` of node 2 set), the third run finishes.

After each re-run: the catalogs show the step done on every node, the same playbook run
again reports no change (PLAY RECAP changed=0), the writer stopped, every committed key is
on every node (none lost, none twice), every replicated table (rows + checksum) and every
sequence is equal on every node, and ``slony_info`` reports no drift. The point each kill
hit is printed (catalog facts read right after the kill).

How the run is killed. A user's ``kill -9 -PGID`` of ansible-playbook's process group does
NOT stop the module with ansible-core 2.19: every worker calls ``os.setsid()``
(ansible/executor/process/worker.py, ``WorkerProcess._detach``), so the worker and the
module it runs (pipelining, local connection: the module's python is a child of the worker,
in the worker's session) go on to the end of the task, only their result is lost. Checked
by hand on this machine: after ``kill -9 -<pgid of ansible-playbook>`` the worker and a
``command: sleep`` module kept running, re-parented to init; a lost SSH session (SIGHUP to
the terminal's process group) cannot reach the workers' sessions either (Ctrl-C and a plain
``kill``, SIGINT and SIGTERM, are forwarded to the workers by ansible-playbook's
TaskQueueManager; not exercised here). That is not the interesting case. The module dies with the
controller when the whole process tree is killed: a crashed or rebooted controller, a CI
job or container killed (its cgroup), ``systemctl kill``. The test does that:
ansible-playbook runs in a session of its own; at the kill point it is stopped (SIGSTOP, so
that it forks no new worker), then every descendant is stopped until the tree is stable, and
every process of the tree gets SIGKILL (slon daemons are never part of it: start-stop-daemon
detaches them). The processes killed, with their process groups and sessions, are printed;
the kill is complete when no session of the collection (``application_name`` dany.slony)
is left on any node.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from ansible_run import REPO_ROOT, ansible_environment, site_inventory, write_private_json
from harness import (NS, SAMPLE_TABLES, WRITER_TABLES, assert_no_drift, keys_on, slon_backend,
                     wait_converged)
from lab import wait_until

NODES = (1, 2, 3, 4, 5)
PLAYBOOKS = REPO_ROOT / "playbooks"
ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
SEQUENCES = ["acc.ticket_seq", "public.invoice_number_seq"] + [
    "%s_id_seq" % t for t in WRITER_TABLES]
LIVE_TABLE = "acc.live_extra"
LIVE_TABLE_SQL = ("create table acc.live_extra (id bigserial primary key, note text not null, "
                  "amount numeric not null)")
PENDING = "dany.slony: objects on their way into set 1"
RECAP_RE = re.compile(r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+"
                      r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.MULTILINE)


# -- the inventory and the playbook runs ----------------------------------------------------

class Site:
    """The lab as an inventory (what the playbooks read), and ansible-playbook runs."""

    def __init__(self, cascade, workdir):
        self.cascade = cascade
        self.db = cascade.db
        self.workdir = workdir
        self.inventory_path = workdir / "inventory.json"
        self.tables = list(WRITER_TABLES) + SAMPLE_TABLES
        self.write_inventory()

    def slon_dir(self, kind):
        return self.workdir / "slon" / kind

    def write_inventory(self):
        lab = self.db.lab
        hosts = {"node%d" % n: {"slony_node_id": n, "slony_db_port": lab.port(n)} for n in NODES}
        hosts["node4"]["slony_provider"] = 3
        hosts["node5"]["slony_provider"] = 3
        write_private_json(self.inventory_path, site_inventory(
            self.db, hosts, self.workdir / "slon", cluster_wait_timeout=120,
            all_vars={"slony_cluster_name": "acc",
                      "slony_sets": [{"id": 1, "origin": 1, "comment": "acceptance",
                                      "tables": [{"name": t} for t in self.tables],
                                      "sequences": SEQUENCES}]}))

    def command(self, playbook, extra=None):
        argv = [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory_path), str(PLAYBOOKS / playbook)]
        if extra:
            argv += ["-e", json.dumps(extra)]
        return argv

    @staticmethod
    def environment():
        return ansible_environment()

    def run(self, playbook, extra=None, timeout=400):
        """Run a playbook to its end; it must succeed. Returns (output, {host: changed})."""
        started = time.monotonic()
        proc = subprocess.run(self.command(playbook, extra), cwd=REPO_ROOT, env=self.environment(),
                              capture_output=True, text=True, timeout=timeout, check=False)
        output = proc.stdout + proc.stderr
        recap = recap_of(proc.stdout)
        failed = [h for h, c in recap.items() if c["failed"] or c["unreachable"]]
        assert proc.returncode == 0 and recap and not failed, self.redact(
            "%s failed (rc %d):\n%s" % (playbook, proc.returncode, output[-6000:]))
        assert self.db.lab.password not in output, "%s printed the password" % playbook
        changed = dict((h, c["changed"]) for h, c in recap.items())
        print("  %s: %.1f s, changed %s" % (playbook, time.monotonic() - started, changed))
        return output, changed

    def run_unchanged(self, playbook, extra=None):
        output, changed = self.run(playbook, extra)
        assert set(changed.values()) == {0}, "%s run again changed something: %s\n%s" % (
            playbook, changed, self.redact(output[-4000:]))
        return output

    def redact(self, text):
        return text.replace(self.db.lab.password, "********")

    # -- the slons of the slon role ------------------------------------------------------

    def slon_pid(self, node):
        path = self.slon_dir("run") / ("slon-acc-%d.pid" % node)
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_slon(self, node):
        """SIGKILL the slon of ``node``, watchdog and worker: start-stop-daemon detached it
        into a process group of its own (led by start-stop-daemon's child, not by the pid
        in the pid file)."""
        pid = self.slon_pid(node)
        if pid is not None:
            _kill_groups([pid])

    def kill_all_slons(self):
        """Every slon started with this test's configuration files (their command lines
        name the test's own directory), pid file or not."""
        mine = str(self.slon_dir("etc")) + "/"
        _kill_groups([pid for pid, row in _processes().items()
                      if row[4] == "slon" and mine in _cmdline(pid, limit=None)])

    def slon_processes(self, node):
        conf = str(self.slon_dir("etc") / ("slon-acc-%d.conf" % node))
        return _alive([pid for pid, row in _processes().items()
                       if row[4] == "slon" and conf in _cmdline(pid, limit=None)])

    def slon_logs(self, lines=30):
        out = []
        logs = self.slon_dir("log")
        for path in sorted(logs.glob("*.log")) if logs.exists() else []:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append("--- %s ---\n%s" % (path.name, "\n".join(tail)))
        return self.redact("\n".join(out))


def recap_of(stdout):
    tail = stdout[stdout.rfind("PLAY RECAP"):] if "PLAY RECAP" in stdout else ""
    return dict((m["host"], {"changed": int(m["changed"]), "failed": int(m["failed"]),
                             "unreachable": int(m["unreachable"])})
                for m in RECAP_RE.finditer(tail))


# -- killing the whole process tree ---------------------------------------------------------

def _processes():
    """{pid: (ppid, pgid, sid, state, comm)} from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry.name, "rb") as handle:
                stat = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0], comm)
    return table


def _group_members(pgid):
    return [pid for pid, row in _processes().items() if row[1] == pgid]


def _alive(pids):
    table = _processes()
    return [p for p in pids if p in table and table[p][3] not in ("Z", "X")]


def _descendants(root, table):
    children = {}
    for pid, row in table.items():
        children.setdefault(row[0], []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid, limit=90):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:limit]
    except OSError:
        return "?"


def _kill_groups(pids):
    """SIGKILL the process groups of ``pids``; wait until no live process is left in them."""
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pgid in groups:
        wait_until(lambda: not _alive(_group_members(pgid)), timeout=30, interval=0.05,
                   message="process group %d gone" % pgid)


def kill_tree(root):
    """Stop ansible-playbook (``root``) and every descendant (until no new one appears),
    then SIGKILL them all: the controller dies with its workers and their modules.
    Returns [(pid, pgid, sid, command)] of the processes killed."""
    os.kill(root, signal.SIGSTOP)
    stopped = {root}
    while True:
        table = _processes()
        tree = [p for p in _descendants(root, table) if table[p][4] != "slon"
                and table[p][3] not in ("Z", "X")]
        new = [p for p in tree if p not in stopped]
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            stopped.add(pid)
    table = _processes()
    killed = [(pid, table[pid][1], table[pid][2], _cmdline(pid)) for pid in sorted(stopped)
              if pid in table]
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def module_sessions(db, nodes):
    """The collection's sessions (application_name dany.slony...) still open on ``nodes``."""
    out = {}
    for node in nodes:
        rows = db.query(node, "select pid, application_name, state from pg_stat_activity "
                              "where datname = current_database() and pid <> pg_backend_pid() "
                              "and application_name like 'dany.slony%'")
        if rows:
            out[node] = rows
    return out


class Probe:
    """Catalog polls on their own connections (autocommit), at most every 20 ms."""

    def __init__(self, db, nodes):
        self.conns = dict((n, psycopg2.connect(db.conninfo(n), application_name="acc-probe"))
                          for n in nodes)
        for conn in self.conns.values():
            conn.autocommit = True

    def scalar(self, node, query):
        with self.conns[node].cursor() as cur:
            cur.execute(query.format(ns=NS))
            return cur.fetchone()[0]

    def close(self):
        for conn in self.conns.values():
            conn.close()


def interrupted(site, playbook, extra, probe_nodes, sign, what, timeout=900):
    """Run ``playbook``; a thread polls ``sign(probe)`` on the catalogs and kills the whole
    process tree at the first sign. Returns the seconds from the start to the kill."""
    probe = Probe(site.db, probe_nodes)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(site.command(playbook, extra), cwd=REPO_ROOT,
                                env=site.environment(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        started = time.monotonic()
        fired = {}

        def watch():
            try:
                while proc.poll() is None:
                    if sign(probe):
                        fired["at"] = time.monotonic() - started
                        fired["killed"] = kill_tree(proc.pid)
                        return
                    time.sleep(0.02)
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                fired["error"] = exc

        watcher = threading.Thread(target=watch, name="kill-%s" % playbook, daemon=True)
        watcher.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            fired["timed out"] = kill_tree(proc.pid)
            proc.wait(30)
        watcher.join(30)
        probe.close()
        out.seek(0)
        output = site.redact(out.read())
    assert "error" not in fired, fired.get("error")
    assert "timed out" not in fired, "%s: no kill point (%s) within %d s:\n%s" % (
        playbook, what, timeout, output[-4000:])
    assert "at" in fired and proc.returncode == -signal.SIGKILL, (
        "%s: the run ended (rc %s) before the kill point (%s):\n%s"
        % (playbook, proc.returncode, what, output[-4000:]))
    # The kill is complete: every process of the tree is gone, and so is every session the
    # module had open (a backend notices its client's death at its next read).
    killed = [pid for pid, _g, _s, _c in fired["killed"]]
    wait_until(lambda: not _alive(killed), timeout=30, interval=0.05,
               message="the killed processes gone (%s)" % killed)
    wait_until(lambda: not module_sessions(site.db, site.cascade.alive), timeout=60, interval=0.1,
               message="the killed module's sessions closed")
    groups = sorted(set((pgid, sid) for _p, pgid, sid, _c in fired["killed"]))
    print("  killed %s at %.2f s (%s): %d processes in %d process groups (pgid, sid) %s"
          % (playbook, fired["at"], what, len(fired["killed"]), len(groups), groups))
    for pid, pgid, sid, command in fired["killed"]:
        print("    pid %d pgid %d sid %d: %s" % (pid, pgid, sid, site.redact(command)))
    return fired["at"]


# -- the checks after each re-run -------------------------------------------------------------

def check_complete(site, writer, nodes, what):
    """The writer stopped: every committed key on every node, tables and sequences equal,
    slony_info without drift."""
    cascade = site.cascade
    writer.stop()
    wait_converged(cascade.db, list(nodes), timeout=180)
    committed = writer.committed()
    assert writer.uncertain_count() == 0
    for node in nodes:
        assert keys_on(cascade.db, node) == committed, "%s: node %d lost or gained rows" % (
            what, node)
    assert_no_drift(cascade, sorted(nodes))
    print("  %s: %s rows committed, on every node; tables and sequences equal; no drift"
          % (what, dict((t, len(k)) for t, k in committed.items())))


def catalog_rows(db, node, query):
    return db.query(node, query.format(ns=NS))


def slons_registered(cascade, nodes):
    for node in nodes:
        wait_until(lambda: slon_backend(cascade.db, node), timeout=120, interval=0.2,
                   message="the slon of node %d registered" % node)


@pytest.fixture
def site(cluster5, request):
    """The inventory of the lab below the lab directory (slon runs as postgres and must
    read its configuration); the slon role's daemons are killed at the end."""
    workdir = Path(cluster5.db.lab.directory) / ("interrupted-%s" % uuid.uuid4().hex[:8])
    workdir.mkdir(mode=0o755)
    the_site = Site(cluster5, workdir)
    try:
        yield the_site
    finally:
        if request.session.testsfailed:
            print(the_site.slon_logs())
        the_site.kill_all_slons()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


# -- the scenario -----------------------------------------------------------------------------

def test_killed_runs_are_finished_by_the_next_run(cluster5, writer, site):
    cascade = cluster5
    db = cascade.db
    started = time.monotonic()
    receivers = {2: 1, 3: 1, 4: 3, 5: 3}
    writer.start(1)

    # (a) bring-up, killed once set 1 exists on node 1.
    interrupted(site, "site.yml", None, [1], lambda p: p.scalar(
        1, "select count(*) from pg_namespace n join pg_class c on c.relnamespace = n.oid "
           "where n.nspname = '_acc' and c.relname = 'sl_set'") and p.scalar(
        1, "select count(*) from {ns}.sl_set"), "set 1 exists on node 1")
    hit = {"nodes": catalog_rows(db, 1, "select no_id from {ns}.sl_node order by 1"),
           "tables": catalog_rows(db, 1, "select count(*) from {ns}.sl_table")[0][0],
           "sequences": catalog_rows(db, 1, "select count(*) from {ns}.sl_sequence")[0][0],
           "subscriptions": catalog_rows(db, 1, "select sub_receiver, sub_provider, sub_active "
                                                "from {ns}.sl_subscribe order by 1"),
           # Each receiver's own view: has its copy finished?
           "copied": dict((n, catalog_rows(db, n, "select bool_or(sub_active) from "
                                                  "{ns}.sl_subscribe where sub_receiver = %d" % n
                                           )[0][0]) for n in receivers)}
    print("  (a) hit: node 1 has", hit)
    assert hit["nodes"] == [(n,) for n in NODES]
    assert not all(hit["copied"].values()), "the bring-up was done when it was killed: %s" % hit
    site.run("site.yml")
    # Every node learns every subscription (node 2 hears of 4 and 5 through slon, later).
    expected = [(r, p, True) for r, p in sorted(receivers.items())]
    for node in NODES:
        wait_until(lambda: catalog_rows(db, node, "select sub_receiver, sub_provider, sub_active "
                                                  "from {ns}.sl_subscribe order by 1") == expected,
                   timeout=60, interval=0.2, message="node %d knows every subscription" % node)
        assert catalog_rows(db, node, "select count(*) from {ns}.sl_table")[0][0] == len(
            site.tables), node
    writer.wait_for_commits(10)
    site.run_unchanged("site.yml")
    check_complete(site, writer, NODES, "(a) bring-up")

    # (b) a table joins the live set (inventory), killed once the temporary set exists.
    for node in NODES:  # the DDL is on every node first (ddl.yml's job in real life)
        db.query(node, LIVE_TABLE_SQL)
    db.query(1, "insert into acc.live_extra (note, amount) "
                "select 'row ' || g, g * 1.5 from generate_series(1, 2000) g")
    site.tables.append(LIVE_TABLE)
    site.write_inventory()
    writer.start(1)
    interrupted(site, "site.yml", None, [1], lambda p: p.scalar(
        1, "select count(*) from {ns}.sl_set where set_comment = '%s'" % PENDING),
        "the temporary set exists on node 1")
    hit = {"sets": catalog_rows(db, 1, "select set_id, set_origin, set_comment from {ns}.sl_set "
                                       "order by 1"),
           "temporary set tables": catalog_rows(db, 1, "select tab_set, tab_relname from "
                                                       "{ns}.sl_table where tab_set <> 1"),
           "temporary set subscriptions": catalog_rows(
               db, 1, "select sub_receiver, sub_provider, sub_active from {ns}.sl_subscribe "
                      "where sub_set <> 1 order by 1")}
    print("  (b) hit: node 1 has", hit)
    assert len(hit["sets"]) == 2 and hit["sets"][1][2] == PENDING, hit
    site.run("site.yml")
    for node in NODES:
        wait_until(lambda: catalog_rows(db, node, "select set_id from {ns}.sl_set") == [(1,)],
                   timeout=60, interval=0.2, message="node %d merged the temporary set" % node)
        assert catalog_rows(db, node, "select tab_set from {ns}.sl_table where tab_nspname = 'acc' "
                                      "and tab_relname = 'live_extra'") == [(1,)], node
    writer.wait_for_commits(10)
    site.run_unchanged("site.yml")
    check_complete(site, writer, NODES, "(b) live add")
    assert row_counts(db, NODES, LIVE_TABLE) == {2000}

    # (c) switchover 1 -> 2, killed while the set is locked on node 1 (a transaction older
    # than the lock keeps the module waiting).
    writer.start(1)
    slons_registered(cascade, NODES)
    move = {"slony_set_id": 1, "slony_to_node": 2, "slony_wait_timeout": 120}
    blocker = psycopg2.connect(db.conninfo(1))
    try:
        with blocker.cursor() as cur:
            cur.execute("select txid_current()")
        interrupted(site, "switchover.yml", move, [1], lambda p: p.scalar(
            1, "select count(*) from {ns}.sl_set where set_locked is not null"),
            "set 1 locked on node 1")
        hit = {"sl_set": catalog_rows(db, 1, "select set_id, set_origin, set_locked is not null "
                                             "from {ns}.sl_set"),
               "MOVE_SET events": catalog_rows(db, 1, "select count(*) from {ns}.sl_event "
                                                      "where ev_type = 'MOVE_SET'")[0][0]}
        print("  (c) hit: node 1 has", hit)
        assert hit == {"sl_set": [(1, 1, True)], "MOVE_SET events": 0}, hit
    finally:
        blocker.close()
    output, _changed = site.run("switchover.yml", move)
    assert "set 1: origin node 1 -> node 2 (resume)" in output, site.redact(output[-3000:])
    # The slons of nodes 3, 4 and 5 restart after ACCEPT_SET; the playbook passed the slon
    # role's pid files (cluster_slon_pid_files), so their watchdogs were woken, not waited for.
    assert "slons woken from their restart sleep:" in output, site.redact(output[-3000:])
    writer.follow(2)
    for node in NODES:
        wait_until(lambda: catalog_rows(db, node, "select set_id, set_origin, set_locked "
                                                  "from {ns}.sl_set") == [(1, 2, None)],
                   timeout=60, interval=0.2, message="node %d sees node 2 as the origin" % node)
    writer.wait_for_commits(10)
    assert "nothing to do" in site.run_unchanged("switchover.yml", move)
    check_complete(site, writer, NODES, "(c) switchover")

    # (d) the origin (node 2) dies; failover to node 1, killed after preFailover, the
    # re-run killed once FAILOVER_NODE exists, the third run finishes.
    survivors = [1, 3, 4, 5]
    cascade.kill_node(2)
    site.kill_slon(2)
    assert not site.slon_processes(2)
    fail = {"slony_failed_node": 2, "slony_backup_node": 1, "slony_wait_timeout": 120}
    interrupted(site, "failover.yml", fail, survivors, lambda p: any(p.scalar(
        n, "select count(*) from {ns}.sl_path where pa_server = 2 and "
           "pa_conninfo = '<event pending>'") for n in survivors),
        "preFailover has blanked a path from node 2")
    hit = failover_state(db, survivors)
    print("  (d) hit 1:", hit)
    assert not any(h["FAILOVER_NODE"] or h["node 2"] != [(True, False)] for h in hit.values()), hit
    interrupted(site, "failover.yml", fail, survivors, lambda p: any(p.scalar(
        n, "select count(*) from {ns}.sl_node where no_id = 2 and no_failed") for n in survivors),
        "FAILOVER_NODE: node 2 marked failed")
    hit = failover_state(db, survivors)
    print("  (d) hit 2:", hit)
    assert any(h["node 2"] for h in hit.values()), "the failover was done when killed: %s" % hit
    output, _changed = site.run("failover.yml", fail)
    assert "changed: True" in output, site.redact(output[-3000:])
    for node in survivors:
        wait_until(lambda: catalog_rows(db, node, "select no_id from {ns}.sl_node order by 1")
                   == [(n,) for n in survivors], timeout=60, interval=0.2,
                   message="node 2 dropped on node %d" % node)
        assert catalog_rows(db, node, "select set_id, set_origin from {ns}.sl_set") == [(1, 1)]
        assert [r[0] for r in catalog_rows(db, node, "select sub_receiver from {ns}.sl_subscribe "
                                                     "where sub_active order by 1")] == [3, 4, 5]
    writer.start(1)
    writer.wait_for_commits(10)
    assert "changed: False" in site.run_unchanged("failover.yml", fail)
    check_complete(site, writer, survivors, "(d) failover")
    print("scenario 9, interrupted runs: %.0f s" % (time.monotonic() - started))


def row_counts(db, nodes, table):
    return set(db.scalar(n, "select count(*) from %s" % table) for n in nodes)


def failover_state(db, survivors):
    out = {}
    for node in survivors:
        out[node] = {
            "blanked paths": catalog_rows(
                db, node, "select count(*) from {ns}.sl_path where pa_server = 2 and "
                          "pa_conninfo = '<event pending>'")[0][0],
            "node 2": catalog_rows(db, node, "select no_active, no_failed from {ns}.sl_node "
                                             "where no_id = 2"),
            "origin": catalog_rows(db, node, "select set_origin from {ns}.sl_set"),
            "FAILOVER_NODE": catalog_rows(db, node, "select count(*) from {ns}.sl_event "
                                                    "where ev_type = 'FAILOVER_NODE'")[0][0],
        }
    return out
