"""playbooks/site.yml driven the way users run it: ansible-playbook with an inventory.

The inventory is generated for a fresh database of the harness lab (one per test): nodes
node1..node3 on the lab's ports, a cluster name of its own, and the slon role's files in
a directory of the test (no logrotate entry), so that nothing outlives the test: its slons
are always stopped with the slon role (slon_state absent) at the end.

Check mode on the empty databases (changes reported, nothing changed) has a test of its
own; one bring-up serves the rest: the real run (a row reaches every node), check mode
and a second run on the converged cluster (changed=0 everywhere), then a new table added
to the inventory's set joins it live and replicates.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_run import ansible_environment, site_inventory, write_private_json
from catalog_dump import assert_unchanged, dump
from lab import REPO_ROOT, wait_until

ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
SITE = REPO_ROOT / "playbooks" / "site.yml"
NODES = (1, 2, 3)
EXTRA_TABLE = "public.site_extra"

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)

# Only the nodes of the cluster; the harness creates the database on every lab node.
STOP_SLONS = """\
- name: Stop the slons of the test cluster
  hosts: slony_nodes
  gather_facts: false
  roles:
    - role: dany.slony.slon
      slon_cluster_name: "{{ slony_cluster_name }}"
      slon_node_id: "{{ slony_node_id }}"
      slon_state: absent
"""


@dataclass
class PlaybookRun:
    args: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """{host: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
        tail = self.stdout[self.stdout.rfind("PLAY RECAP"):]
        return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                for m in RECAP_RE.finditer(tail)}

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or any(c["failed"] or c["unreachable"] for c in self.recap.values())

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap.items()}


class Site:
    """A generated inventory for one fresh database, and ansible-playbook runs against it."""

    def __init__(self, db, workdir: Path):
        self.db = db
        self.cluster = "site_" + uuid.uuid4().hex[:8]
        self.workdir = workdir
        self.inventory_path = workdir / "inventory.yml"
        self.extra_tables: list[str] = []
        self.runs: list[PlaybookRun] = []
        self.write_inventory()

    def slon_dir(self, kind: str) -> Path:
        return self.workdir / "slon" / kind

    def inventory(self) -> dict:
        lab = self.db.lab
        tables = [{"name": "public.settings", "key": "settings_name_key"}]
        tables += [{"name": name} for name in self.extra_tables]
        return site_inventory(
            self.db,
            {"node1": {"slony_node_id": 1, "slony_db_port": lab.port(1)},
             "node2": {"slony_node_id": 2, "slony_db_port": lab.port(2)},
             # A cascade, as in inventory/lab.yml.
             "node3": {"slony_node_id": 3, "slony_db_port": lab.port(3), "slony_provider": 2}},
            self.workdir / "slon",
            slony_cluster_name=self.cluster,
            slony_sets=[{
                "id": 1,
                "origin": 1,
                "comment": "site test",
                "schemas": ["public", "billing"],
                "exclude": [r"^public\.audit_log$", r"^public\.settings$"],
                "tables": tables,
                "sequence_schemas": ["public"],
            }])

    def write_inventory(self) -> None:
        write_private_json(self.inventory_path, self.inventory())

    def playbook(self, playbook: Path, check: bool = False, allow_failure: bool = False,
                 timeout: float = 600) -> PlaybookRun:
        env = ansible_environment()
        args = [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory_path), str(playbook)]
        if check:
            args.append("--check")
        started = time.monotonic()
        proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        run = PlaybookRun(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.runs.append(run)
        if os.environ.get("DANY_SLONY_TIMINGS"):
            print("%6.1fs %s%s" % (run.seconds, playbook.name, " --check" if check else ""))
        if not allow_failure:
            assert not run.failed, (f"{playbook.name}{' --check' if check else ''} failed "
                                    f"(rc={proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
            assert set(run.recap) >= {"node1", "node2", "node3"}, f"no PLAY RECAP in:\n{proc.stdout[-3000:]}"
        return run

    def site(self, check: bool = False) -> PlaybookRun:
        return self.playbook(SITE, check=check)

    def stop_slons(self) -> PlaybookRun:
        path = self.workdir / "stop_slons.yml"
        path.write_text(STOP_SLONS)
        return self.playbook(path)

    def pid_files(self) -> list[Path]:
        run_dir = self.slon_dir("run")
        return sorted(run_dir.glob("slon-*.pid")) if run_dir.exists() else []

    def slon_running(self, node: int) -> bool:
        pid_file = self.slon_dir("run") / f"slon-{self.cluster}-{node}.pid"
        status = subprocess.run(["start-stop-daemon", "--status", "--pidfile", str(pid_file), "--name", "slon"],
                                capture_output=True, check=False)
        return status.returncode == 0


@pytest.fixture
def site(fresh_db, lab):
    # Below the lab directory (world-traversable), not pytest's tmp_path (mode 0700 below
    # /tmp/pytest-of-root): slon runs as postgres and must read its configuration file.
    workdir = Path(lab.directory) / f"site-test-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(mode=0o755)
    the_site = Site(fresh_db, workdir)
    yield the_site
    try:
        the_site.stop_slons()
        assert the_site.pid_files() == [], f"slon pid files left: {the_site.pid_files()}"
    finally:
        # Whatever happened, no slon of this test survives it (the database goes next).
        for pid_file in the_site.pid_files():
            subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pid_file), "--name", "slon",
                            "--retry", "TERM/10/KILL/5", "--remove-pidfile"], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def schema_on(db, cluster):
    return {node: db.scalar(node, "select count(*) from pg_namespace where nspname = %s", ("_" + cluster,))
            for node in db.node_ids}


def catalog(db, cluster, node):
    ns = '"_%s"' % cluster
    return {
        "nodes": db.query(node, f"select no_id, no_active from {ns}.sl_node order by 1"),
        "paths": db.query(node, f"select pa_server, pa_client from {ns}.sl_path order by 1, 2"),
        "subscriptions": db.query(node, f"select sub_set, sub_receiver, sub_provider, sub_active"
                                        f" from {ns}.sl_subscribe order by 1, 2"),
        "tables": [r[0] for r in db.query(node, f"select tab_nspname || '.' || tab_relname from {ns}.sl_table"
                                                f" where tab_set = 1 order by 1")],
        "sequences": [r[0] for r in db.query(node, f"select seq_nspname || '.' || seq_relname"
                                                   f" from {ns}.sl_sequence where seq_set = 1 order by 1")],
    }


def wait_for_row(db, table, column, value, nodes, timeout=120):
    query = f"select count(*) from {table} where {column} = %s"
    for node in nodes:
        try:
            wait_until(lambda: db.scalar(node, query, (value,)) == 1, timeout=timeout, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"row {column}={value!r} of {table} did not reach node {node} "
                                 f"within {timeout}s") from None


def assert_nothing_changed(run, what):
    assert run.changed() == {host: 0 for host in run.recap}, f"{what} reported changes: {run.recap}"


def test_site_check_mode_on_empty_databases_changes_nothing(site, fresh_db):
    """(a) site.yml --check on databases without a cluster: changes reported, nothing changed."""
    db, cluster = fresh_db, site.cluster
    before = {node: db.query(node, "select nspname from pg_namespace order by 1") for node in db.node_ids}
    checked = site.playbook(SITE, check=True, allow_failure=True)

    # Whatever the outcome, check mode changed nothing: no cluster schema, no slon.
    assert schema_on(db, cluster) == {node: 0 for node in db.node_ids}, "check mode created the cluster schema"
    assert {node: db.query(node, "select nspname from pg_namespace order by 1") for node in db.node_ids} == before
    assert site.pid_files() == [], "check mode started a slon"
    assert not site.slon_dir("etc").exists(), "check mode wrote a slon configuration"
    assert not any(site.slon_running(node) for node in NODES)

    assert not checked.failed, checked.stdout[-3000:]
    assert "check mode: nodes would be created first" in checked.stdout
    assert checked.changed()["node1"] > 0, f"check mode on empty databases reported no change: {checked.recap}"
    assert all(checked.changed()[host] > 0 for host in ("node2", "node3")), checked.recap


def test_site_converges_idempotently_and_a_table_joins_live(site, fresh_db):
    db, cluster = fresh_db, site.cluster

    # (b) The real run converges: 3 active nodes, a full mesh of paths, set 1 subscribed
    # (node 3 from node 2) on every node; a row written on the origin reaches every node.
    first = site.site()
    assert first.changed()["node1"] > 0 and all(first.changed()[h] > 0 for h in ("node2", "node3")), first.recap
    assert all(site.slon_running(node) for node in NODES), "a slon is not running after site.yml"
    on_origin = catalog(db, cluster, 1)
    assert on_origin["nodes"] == [(1, True), (2, True), (3, True)]
    assert on_origin["paths"] == [(s, c) for s in NODES for c in NODES if s != c]
    assert on_origin["subscriptions"] == [(1, 2, 1, True), (1, 3, 2, True)]
    assert {"public.customers", "public.orders", "public.settings", "billing.invoices"} <= set(on_origin["tables"])
    assert "public.audit_log" not in on_origin["tables"]
    assert "public.invoice_number_seq" in on_origin["sequences"]
    for node in (2, 3):
        wait_until(lambda: catalog(db, cluster, node) == on_origin, timeout=60, interval=0.5,
                   message=f"catalogs of node {node} equal to the origin's")
    marker = "site-" + uuid.uuid4().hex[:8]
    db.query(1, "insert into public.customers (name, email) values (%s, 'site@example.invalid')", (marker,))
    wait_for_row(db, "public.customers", "name", marker, NODES)

    # (c) Check mode on the converged cluster: changed=0 for every host, catalogs unchanged.
    before = dump(db, cluster)
    assert_nothing_changed(site.site(check=True), "check mode on the converged cluster")
    assert_unchanged(dump(db, cluster), before, "check mode on the converged cluster changed the catalogs")

    # (d) A second real run: changed=0 for every host, catalogs unchanged.
    assert_nothing_changed(site.site(), "the second run of site.yml")
    assert_unchanged(dump(db, cluster), before, "the second run of site.yml changed the catalogs")

    # (e) A new table, created on every node, added to the inventory's set: it joins the
    # live set on the next run and its rows reach the replicas.
    for node in NODES:
        db.query(node, f"create table {EXTRA_TABLE} (id int primary key, note text not null)")
    site.extra_tables.append(EXTRA_TABLE)
    site.write_inventory()
    joined = site.site()
    assert joined.changed()["node1"] > 0, f"adding {EXTRA_TABLE} reported no change: {joined.recap}"
    for node in NODES:
        wait_until(lambda: EXTRA_TABLE in catalog(db, cluster, node)["tables"], timeout=60, interval=0.5,
                   message=f"{EXTRA_TABLE} in set 1 on node {node}")
    db.query(1, f"insert into {EXTRA_TABLE} values (1, 'one'), (2, 'two'), (3, %s)", (marker,))
    wait_for_row(db, EXTRA_TABLE, "note", marker, NODES)
    for node in (2, 3):
        assert db.query(node, f"select id, note from {EXTRA_TABLE} order by id") == \
            [(1, "one"), (2, "two"), (3, marker)]
    # The set still replicates what it replicated before.
    marker2 = marker + "-after"
    db.query(1, "insert into public.customers (name, email) values (%s, 'site@example.invalid')", (marker2,))
    wait_for_row(db, "public.customers", "name", marker2, NODES)

    # (f) Secrets off disk: no file the collection wrote (slon configurations, logs, pid
    # files) and no output holds the password; it is only in each slon's passfile (0600),
    # which slon uses (scram authentication over TCP: the rows above arrived through
    # password-less paths), and no sl_path conninfo holds one.
    assert_password_only_in_passfiles(site, db)


def assert_password_only_in_passfiles(site, db):
    password = db.lab.password
    written = sorted(p for p in (site.workdir / "slon").rglob("*") if p.is_file())
    passfiles = [p for p in written if p.suffix == ".pgpass"]
    assert sorted(p.name for p in passfiles) == [f"slon-{site.cluster}-{n}.pgpass" for n in NODES]
    assert any(p.suffix == ".log" for p in written) and any(p.suffix == ".conf" for p in written)
    for path in written:
        text = path.read_text(errors="replace")
        if path in passfiles:
            assert (path.stat().st_mode & 0o777) == 0o600, f"{path} is not 0600"
            assert f":{db.dbname}:{db.lab.user}:{password}" in text
        else:
            assert password not in text, f"{path} holds the password"
    for run in site.runs:
        assert password not in run.stdout + run.stderr, f"{run.args} printed the password"
    for node in NODES:
        conninfos = db.query(node, f'select pa_conninfo from "_{site.cluster}".sl_path')
        assert conninfos and all("password" not in c for (c,) in conninfos), conninfos
    # The running slons were started with the passfile.
    for node in NODES:
        pid = int((site.slon_dir("run") / f"slon-{site.cluster}-{node}.pid").read_text())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"PGPASSFILE={site.slon_dir('etc')}/slon-{site.cluster}-{node}.pgpass".encode() in environ
