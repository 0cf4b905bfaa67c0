"""Adopting a cluster built by hand: slonik builds it, playbooks/adopt.yml writes its
inventory, and playbooks/site.yml with that inventory has nothing to change.

The cluster is what a hand-made one looks like: node ids 10, 20, 30 on the lab's three
servers, a cascade (30 copies set 3 from 20), paths only along the cascade (no full
mesh), two sets with different origins (set 3 from node 10, set 7 from node 20 to node 30
without forwarding), table and sequence ids with gaps, a key given explicitly, comments
of slonik's defaults and of our own (one with Jinja delimiters), passwords in the paths.

One cluster, one test (each step needs the previous ones): adopt.yml in check mode
(nothing written, the diff shows the file), for real, again (unchanged); the file holds
no password; then the slons are handed over to the slon role, as site.yml runs them;
site.yml --check and a real site.yml report no change, and the catalogs of every node
are the same as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from catalog_dump import assert_unchanged, dump, settled_dump
from lab import REPO_ROOT, SLONIK_BIN, wait_until
from test_site import PlaybookRun

ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
PLAYBOOKS = REPO_ROOT / "playbooks"
NODE_OF_SERVER = {1: 10, 2: 20, 3: 30}  # lab server -> Slony node id
SERVER_OF_NODE = {v: k for k, v in NODE_OF_SERVER.items()}
COMMENT_WITH_JINJA = "settings {{ not a template }}"

# The slon play of site.yml, for the hand-over of the daemons (same role, same variables).
START_SLONS = """\
- name: Run one slon daemon per node, as site.yml does
  hosts: slony_nodes
  gather_facts: false
  pre_tasks:
    - name: Describe the cluster from the inventory
      ansible.builtin.import_role:
        name: dany.slony.cluster
        tasks_from: facts.yml
  roles:
    - role: dany.slony.slon
      slon_cluster_name: "{{ slony_cluster_name }}"
      slon_node_id: "{{ slony_node_id }}"
      slon_conninfo: "{{ cluster_conninfo_by_host[inventory_hostname] }}"
      slon_sync_interval: "{{ slony_slon_sync_interval | default(2000) }}"
      slon_sync_interval_timeout: "{{ slony_slon_sync_interval_timeout | default(10000) }}"
"""


def slonik_script(db, cluster):
    """The hand-made cluster: nodes and paths (part 1), sets and the first subscriptions
    (part 2), the cascaded subscription once node 20 has its copy (part 3)."""
    admin = "".join("node %d admin conninfo = '%s';\n" % (node, db.conninfo(server))
                    for server, node in NODE_OF_SERVER.items())
    head = "cluster name = %s;\n%s" % (cluster, admin)

    def path(server, client):
        return ("store path (server = %d, client = %d, conninfo = '%s');\n"
                % (server, client, db.conninfo(SERVER_OF_NODE[server])))

    part1 = "".join([
        head,
        "init cluster (id = 10, comment = 'origin');\n",
        "store node (id = 20, comment = 'replica', event node = 10);\n",
        "store node (id = 30, comment = 'cascaded replica', event node = 10);\n",
        path(10, 20), path(20, 10), path(20, 30), path(30, 20)])
    part2 = "".join([
        head,
        "create set (id = 3, origin = 10, comment = 'shop tables');\n",
        "set add table (set id = 3, origin = 10, id = 5, fully qualified name = 'public.customers');\n",
        "set add table (set id = 3, origin = 10, id = 9, fully qualified name = 'public.products');\n",
        "set add table (set id = 3, origin = 10, id = 12, fully qualified name = 'public.orders', comment = 'orders');\n",
        "set add table (set id = 3, origin = 10, id = 17, fully qualified name = 'public.settings',"
        " key = 'settings_name_key', comment = '%s');\n" % COMMENT_WITH_JINJA,
        "set add sequence (set id = 3, origin = 10, id = 4, fully qualified name = 'public.invoice_number_seq');\n",
        "create set (id = 7, origin = 20, comment = 'billing');\n",
        "set add table (set id = 7, origin = 20, id = 21, fully qualified name = 'billing.invoices');\n",
        "set add table (set id = 7, origin = 20, id = 23, fully qualified name = 'billing.payments');\n",
        "set add sequence (set id = 7, origin = 20, id = 11, fully qualified name = 'billing.invoices_id_seq');\n",
        "subscribe set (id = 3, provider = 10, receiver = 20, forward = yes);\n",
        "subscribe set (id = 7, provider = 20, receiver = 30, forward = no);\n"])
    # Node 30 is a leaf: it subscribes without forwarding, as slonik scripts often do,
    # which gives set 3 mixed forward flags.
    part3 = head + "subscribe set (id = 3, provider = 20, receiver = 30, forward = no);\n"
    return part1, part2, part3


def copy_done(db, cluster, set_id, node):
    """The receiver's own catalog shows its subscription active and synchronised."""
    ns = '"_%s"' % cluster
    return db.scalar(SERVER_OF_NODE[node],
                     f"select count(*) from {ns}.sl_subscribe s join {ns}.sl_setsync y on y.ssy_setid = s.sub_set"
                     f" where s.sub_set = %s and s.sub_receiver = %s and s.sub_active", (set_id, node)) == 1


def run_slonik(script, timeout=120):
    # Not db.slonik: its preamble declares admin conninfos for node ids 1..3, and slonik
    # would wait for those (non-)nodes to confirm their events.
    proc = subprocess.run([SLONIK_BIN], input=script, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"slonik failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


class Runner:
    """ansible-playbook runs of this test, with its extra-vars file."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.runs: list[PlaybookRun] = []

    def write_private(self, name: str, data) -> Path:
        path = self.workdir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data if isinstance(data, str) else json.dumps(data, indent=1))
        return path

    def playbook(self, playbook: Path, inventory: Path, extra: Path, check=False, diff=False,
                 allow_failure=False) -> PlaybookRun:
        env = dict(os.environ)
        env.update({"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_DEPRECATION_WARNINGS": "false"})
        args = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook), "-e", "@" + str(extra)]
        args += ["--check"] if check else []
        args += ["--diff"] if diff else []
        started = time.monotonic()
        proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        run = PlaybookRun(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.runs.append(run)
        if os.environ.get("DANY_SLONY_TIMINGS"):
            print("%6.1fs %s%s" % (run.seconds, playbook.name, " --check" if check else ""))
        if not allow_failure:
            assert not run.failed, (f"{playbook.name}{' --check' if check else ''} failed (rc={proc.returncode}):\n"
                                    f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
        return run


@pytest.fixture
def workdir(lab):
    # Below the lab directory (world-traversable): slon runs as postgres and reads its
    # configuration file from there.
    path = Path(lab.directory) / f"adopt-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def changed(run: PlaybookRun) -> dict:
    return run.changed()


def test_adopt_a_slonik_cluster_then_site_changes_nothing(fresh_db, make_slons, lab, workdir):
    db = fresh_db
    cluster = "adopt_" + uuid.uuid4().hex[:8]
    runner = Runner(workdir)

    # -- the hand-made cluster -------------------------------------------------------------
    part1, part2, part3 = slonik_script(db, cluster)
    run_slonik(part1)
    slons = make_slons(db, cluster)
    slons.start()
    run_slonik(part2)
    wait_until(lambda: copy_done(db, cluster, 3, 20) and copy_done(db, cluster, 7, 30), timeout=90,
               interval=0.3, message="node 20's copy of set 3 and node 30's of set 7")
    run_slonik(part3)
    wait_until(lambda: copy_done(db, cluster, 3, 30), timeout=90, interval=0.3,
               message="node 30's copy of set 3 (from node 20)")
    before = settled_dump(db, cluster)
    assert all(before[s] is not None for s in (1, 2, 3))

    # -- adopt.yml -------------------------------------------------------------------------
    target = workdir / "inventory" / "shop.yml"
    target.parent.mkdir()
    python = str(REPO_ROOT / ".venv" / "bin" / "python")
    local = runner.write_private("local.yml", {"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": python}}}})
    adopt_vars = runner.write_private("adopt-vars.json", {
        "slony_cluster_name": cluster,
        "slony_admin_conninfo": {str(node): db.conninfo(server) for server, node in NODE_OF_SERVER.items()},
        "slony_adopt_file": str(target),
        "slony_adopt_node_vars": {"ansible_connection": "local", "ansible_python_interpreter": python,
                                  "slony_slon_sync_interval": 100, "slony_slon_sync_interval_timeout": 1000},
    })
    adopt = PLAYBOOKS / "adopt.yml"

    checked = runner.playbook(adopt, local, adopt_vars, check=True, diff=True)
    assert not target.exists(), "adopt.yml --check wrote the inventory"
    assert changed(checked)["localhost"] == 1, checked.recap
    assert "slony_node_id: 10" in checked.stdout, "the --diff of adopt.yml --check does not show the file"

    written = runner.playbook(adopt, local, adopt_vars)
    assert changed(written)["localhost"] == 1, written.recap
    text = target.read_text()
    again = runner.playbook(adopt, local, adopt_vars)
    assert changed(again)["localhost"] == 0, f"a second adopt.yml run changed something: {again.recap}"
    assert target.read_text() == text
    assert_unchanged(dump(db, cluster), before, "adopt.yml changed the catalogs")

    # No password in clear, anywhere: the file, and what the runs printed.
    assert lab.password not in text
    for run in (checked, written, again):
        assert lab.password not in run.stdout + run.stderr
    assert '"{{ vault_slony_db_password }}"' in text or "'{{ vault_slony_db_password }}'" in text
    assert "vault_slony_db_password" in written.stdout  # the playbook says what to define

    # What the file says: the topology, exactly as slonik built it.
    inventory = yaml.safe_load(text)
    group = inventory["all"]["children"]["slony_nodes"]
    hosts = group["hosts"]
    assert {h["slony_node_id"]: name for name, h in hosts.items()} == {10: "node10", 20: "node20", 30: "node30"}
    assert {h["slony_node_id"]: h["slony_node_comment"] for h in hosts.values()} == \
        {10: "origin", 20: "replica", 30: "cascaded replica"}
    assert {h["slony_node_id"]: h.get("slony_provider") for h in hosts.values()} == {10: None, 20: None, 30: 20}
    assert {h["slony_node_id"]: h["slony_db_port"] for h in hosts.values()} == \
        {node: lab.port(server) for server, node in NODE_OF_SERVER.items()}
    assert group["vars"]["slony_db_host"] == "127.0.0.1" and group["vars"]["slony_db_name"] == db.dbname
    assert group["vars"]["slony_db_password"] == "{{ vault_slony_db_password }}"
    avars = inventory["all"]["vars"]
    assert avars["slony_cluster_name"] == cluster
    assert avars["cluster_paths"] == [{"server": 10, "client": 20}, {"server": 20, "client": 10},
                                      {"server": 20, "client": 30}, {"server": 30, "client": 20}]
    sets = {s["id"]: s for s in avars["slony_sets"]}
    assert sorted(sets) == [3, 7]
    assert (sets[3]["origin"], sets[3]["subscribers"]) == (10, [20, 30])
    assert {int(k): v for k, v in sets[3]["forward"].items()} == {20: True, 30: False}
    assert (sets[7]["origin"], sets[7]["subscribers"], sets[7]["forward"]) == (20, [30], False)
    assert [(t["id"], t["name"], t["key"]) for t in sets[3]["tables"]] == [
        (5, "public.customers", "customers_pkey"), (9, "public.products", "products_pkey"),
        (12, "public.orders", "orders_pkey"), (17, "public.settings", "settings_name_key")]
    assert sets[3]["tables"][3]["comment"] == "{% raw %}" + COMMENT_WITH_JINJA + "{% endraw %}"
    assert [(s["id"], s["name"]) for s in sets[3]["sequences"]] == [(4, "public.invoice_number_seq")]
    assert [t["id"] for t in sets[7]["tables"]] == [21, 23]
    assert [s["id"] for s in sets[7]["sequences"]] == [11]

    # -- site.yml with the written inventory -----------------------------------------------
    slon_dir = workdir / "slon"
    site_vars = runner.write_private("site-vars.json", {
        "vault_slony_db_password": lab.password,
        "slon_config_dir": str(slon_dir / "etc"), "slon_run_dir": str(slon_dir / "run"),
        "slon_log_dir": str(slon_dir / "log"), "slon_logrotate": False})
    start_slons = workdir / "start_slons.yml"
    start_slons.write_text(START_SLONS)
    try:
        # The slons change hands: from the ones started by hand to the slon role's.
        slons.stop()
        handed = runner.playbook(start_slons, target, site_vars)
        assert all(changed(handed)[h] > 0 for h in hosts), handed.recap
        assert sorted(p.name for p in (slon_dir / "run").glob("slon-*.pid")) == \
            sorted(f"slon-{cluster}-{node}.pid" for node in (10, 20, 30))

        site = PLAYBOOKS / "site.yml"
        checked_site = runner.playbook(site, target, site_vars, check=True, diff=True)
        assert set(checked_site.recap) >= {"node10", "node20", "node30"}
        assert changed(checked_site) == {h: 0 for h in checked_site.recap}, \
            f"site.yml --check with the adopted inventory reports changes: {checked_site.recap}\n" \
            f"{checked_site.stdout[-6000:]}"
        assert_unchanged(dump(db, cluster), before, "site.yml --check changed the catalogs")

        real = runner.playbook(site, target, site_vars, diff=True)
        assert changed(real) == {h: 0 for h in real.recap}, \
            f"site.yml with the adopted inventory changed something: {real.recap}\n{real.stdout[-6000:]}"
        assert_unchanged(dump(db, cluster), before, "site.yml changed the catalogs")
        for run in (handed, checked_site, real):
            assert lab.password not in run.stdout + run.stderr

        # Still replicating, down the cascade, under the slon role's daemons.
        marker = "adopt-" + uuid.uuid4().hex[:8]
        db.query(1, "insert into public.settings (name, value) values (%s, 'x')", (marker,))
        for server in (2, 3):
            wait_until(lambda s=server: db.scalar(s, "select count(*) from public.settings where name = %s",
                                                  (marker,)) == 1,
                       timeout=60, interval=0.2, message=f"the row on lab server {server}")
    finally:
        # The slon role's daemons, stopped the way the role stops them (start-stop-daemon on
        # their pid files), without one more playbook run.
        run_dir = slon_dir / "run"
        for pid_file in sorted(run_dir.glob("slon-*.pid")) if run_dir.exists() else []:
            subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pid_file), "--name", "slon",
                            "--retry", "TERM/10/KILL/5", "--remove-pidfile"], capture_output=True, check=False)
