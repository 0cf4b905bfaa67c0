"""playbooks/clone_node.yml: a subscriber of a 3-node cluster cloned onto a 4th database.

The cluster (nodes 1, 2, 3; set 1 from node 1 to 2 and 3) is built with slonik, quickly.
Then clone_node.yml in check mode (nothing changes, the new database is not created), for
real (CLONE PREPARE, pg_dump | pg_restore, CLONE FINISH, paths, slon), again (nothing
changes), and in check mode once more (nothing changes). The clone then replicates: rows
written on the origin arrive there, and the catalogs of the four nodes agree.

Differential: the same clone typed into slonik on a twin database (Slony's manual: CLONE
PREPARE, RESTART NODE of the provider, a SYNC on the other nodes confirmed by the provider,
pg_dump | pg_restore, CLONE FINISH, the new node's paths, its slon) must leave the same
sl_node, sl_path, sl_set, sl_table, sl_sequence and sl_subscribe on the four nodes.

Needs a lab of 4 servers (SLONY_LAB_NODES=4); skipped otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from catalog_dump import DIFFERENTIAL_TABLES, assert_unchanged, dump
from lab import REPO_ROOT, SLONIK_BIN, LabError, quote_ident, wait_until
from test_site import ANSIBLE_PLAYBOOK, PlaybookRun, assert_nothing_changed

pytestmark = pytest.mark.four_servers

CLONE_PLAYBOOK = REPO_ROOT / "playbooks" / "clone_node.yml"
CLUSTER = "lab"
OLD = (1, 2, 3)
TABLES = ["public.customers", "public.products", "public.orders", "billing.invoices"]

STOP_SLON = """\
- name: Stop the clone's slon
  hosts: node4
  gather_facts: false
  roles:
    - role: dany.slony.slon
      slon_cluster_name: "{{ slony_cluster_name }}"
      slon_node_id: "{{ slony_node_id }}"
      slon_state: absent
"""


def slonik3(db, script, nodes=OLD):
    """slonik with the admin conninfo of ``nodes`` (default: nodes 1 to 3 only)."""
    text = "cluster name = %s;\n" % CLUSTER + "".join(
        "node %d admin conninfo = '%s';\n" % (n, db.conninfo(n)) for n in nodes) + script
    proc = subprocess.run([SLONIK_BIN], input=text, capture_output=True, text=True, timeout=180,
                          check=False)
    if proc.returncode != 0:
        raise LabError("slonik failed:\n%s\n%s\n--- script ---\n%s" % (proc.stdout, proc.stderr, script))


def build_three_nodes(db, slons):
    paths = "".join("store path (server = %d, client = %d, conninfo = '%s');\n"
                    % (s, c, db.conninfo(s)) for s in OLD for c in OLD if s != c)
    slonik3(db, "init cluster (id = 1, comment = 'origin');\n"
                "store node (id = 2, comment = 'replica 2', event node = 1);\n"
                "store node (id = 3, comment = 'replica 3', event node = 1);\n" + paths)
    slons.start(*OLD)
    adds = "".join("set add table (set id = 1, origin = 1, id = %d, fully qualified name = '%s');\n"
                   % (i + 1, name) for i, name in enumerate(TABLES))
    slonik3(db, "create set (id = 1, origin = 1, comment = 'app');\n" + adds +
            "set add sequence (set id = 1, origin = 1, id = 1, "
            "fully qualified name = 'public.invoice_number_seq');\n"
            "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes);\n"
            "subscribe set (id = 1, provider = 1, receiver = 3, forward = yes);\n")
    for node in (2, 3):
        wait_until(lambda: db.scalar(node, 'select count(*) from "_lab".sl_setsync') == 1,
                   timeout=90, interval=0.2, message="set 1 copied to node %d" % node)


class ClonePlaybook:
    """An inventory of four hosts (node4 is the clone, its database not created yet)."""

    def __init__(self, db, workdir: Path):
        self.db = db
        self.workdir = workdir
        self.inventory_path = workdir / "inventory.yml"
        lab = db.lab
        hosts = {"node%d" % n: {"slony_node_id": n, "slony_db_port": lab.port(n)} for n in (1, 2, 3, 4)}
        hosts["node4"]["slony_node_comment"] = "clone of 2"
        inventory = {"all": {
            "hosts": {"localhost": {"ansible_connection": "local",
                                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
            "children": {"slony_nodes": {"hosts": hosts, "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "slony_db_host": "127.0.0.1",
                "slony_db_name": db.dbname,
                "slony_db_user": lab.user,
                "slony_db_password": lab.password,
                "slony_cluster_name": CLUSTER,
                "slony_wait_timeout": 90,
                "slony_slon_sync_interval": 100,
                "slony_slon_sync_interval_timeout": 250,
                "slon_config_dir": str(workdir / "slon" / "etc"),
                "slon_run_dir": str(workdir / "slon" / "run"),
                "slon_log_dir": str(workdir / "slon" / "log"),
                "slon_logrotate": False,
            }}},
        }}
        fd = os.open(self.inventory_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(inventory, handle, indent=1)

    def run(self, playbook=CLONE_PLAYBOOK, check=False) -> PlaybookRun:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="false")
        args = [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory_path), str(playbook),
                "-e", "slony_clone_host=node4", "-e", "slony_clone_from_host=node2"]
        if check:
            args.append("--check")
        started = time.monotonic()
        proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        run = PlaybookRun(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        assert not run.failed, (f"{playbook.name}{' --check' if check else ''} failed:\n"
                                f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
        assert self.db.lab.password not in proc.stdout + proc.stderr
        return run

    def stop_slon(self):
        path = self.workdir / "stop_slon.yml"
        path.write_text(STOP_SLON)
        self.run(path)


@pytest.fixture
def four(make_fresh_db, lab):
    if len(lab.node_ids) < 4:
        pytest.skip("needs a lab of 4 servers (SLONY_LAB_NODES=4)")
    db = make_fresh_db("clone", nodes=[1, 2, 3, 4])
    workdir = Path(lab.directory) / f"clone-test-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(mode=0o755)
    book = ClonePlaybook(db, workdir)
    yield db, book
    try:
        book.stop_slon()
    finally:
        for pid_file in (workdir / "slon" / "run").glob("slon-*.pid"):
            subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pid_file), "--name", "slon",
                            "--retry", "TERM/10/KILL/5", "--remove-pidfile"], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def catalogs(db, nodes):
    out = dump(db, CLUSTER, DIFFERENTIAL_TABLES)
    return {n: out[n] for n in nodes}


def test_a_cloned_subscriber_replicates_like_any_node(four, make_slons, make_fresh_db):
    db, book = four
    slons = make_slons(db)
    build_three_nodes(db, slons)
    db.query(1, "insert into public.customers (name, email) values ('before-clone', 'a@example.invalid')")
    wait_until(lambda: db.scalar(2, "select count(*) from public.customers where name = 'before-clone'"),
               timeout=60, interval=0.2, message="the first row on node 2")
    # The new node's database does not exist yet: the playbook creates it.
    db.lab.query(4, "drop database %s" % quote_ident(db.dbname), dbname="postgres")

    # Check mode: the plan, and nothing changes anywhere (no database on node 4 either).
    before = {n: dump_one(db, n) for n in OLD}
    checked = book.run(check=True)
    assert checked.changed()["node1"] > 0, checked.recap
    assert_unchanged({n: dump_one(db, n) for n in OLD}, before, "check mode changed a catalog")
    assert not db.exists_on(4), "check mode created the new database"

    first = book.run()
    assert first.changed()["node1"] > 0
    # Every node knows node 4 as an active node, and node 4 is itself.
    assert db.scalar(4, 'select last_value from "_lab".sl_local_node_id') == 4
    assert db.scalar(4, 'select count(*) from "_lab".sl_setsync where ssy_setid = 1') == 1

    # Rows written on the origin now arrive on the clone (and on the others).
    db.query(1, "insert into public.customers (name, email) values ('after-clone', 'b@example.invalid')")
    for node in (2, 3, 4):
        wait_until(lambda: db.scalar(node, "select count(*) from public.customers where name = 'after-clone'"),
                   timeout=90, interval=0.2, message="the new row on node %d" % node)
    assert db.query(4, "select id, name from public.customers order by id") == \
        db.query(1, "select id, name from public.customers order by id")
    with pytest.raises(Exception) as err:
        db.query(4, "insert into public.customers (name) values ('local')")
    assert "Slony-I" in str(err.value)

    # The catalogs of the four nodes agree (once every node has every path of node 4).
    try:
        cats = wait_until(lambda: agreed_catalogs(db), timeout=90, interval=0.5, message="the catalogs of the 4 nodes agree")
    except TimeoutError:
        raise AssertionError(disagreement(catalogs(db, (1, 2, 3, 4)))) from None
    assert [row[:2] for row in cats[1]["sl_node"]] == [(1, True), (2, True), (3, True), (4, True)]
    assert [(r[0], r[1], r[2], r[4]) for r in cats[1]["sl_subscribe"]] == [
        (1, 1, 2, True), (1, 1, 3, True), (1, 1, 4, True)]
    assert [r[2] for r in cats[1]["sl_node"] if r[0] == 4] == ["clone of 2"]

    # Again, then check mode again: nothing to do.
    settled = {n: dump_one(db, n) for n in (1, 2, 3, 4)}
    assert_nothing_changed(book.run(), "the second run of clone_node.yml")
    assert_nothing_changed(book.run(check=True), "check mode on the finished clone")
    assert_unchanged({n: dump_one(db, n) for n in (1, 2, 3, 4)}, settled)

    # The same clone through slonik, on a twin database: the same catalogs.
    twin = make_fresh_db("clone_slonik", nodes=[1, 2, 3, 4])
    twin_slons = make_slons(twin)
    build_three_nodes(twin, twin_slons)
    twin.lab.query(4, "drop database %s" % quote_ident(twin.dbname), dbname="postgres")
    node4_paths = [row for row in cats[1]["sl_path"] if 4 in row[:2]]
    slonik_clone(twin, twin_slons, [(s, c, conninfo.replace(db.dbname, twin.dbname), retry)
                                    for s, c, conninfo, retry in node4_paths])
    try:
        by_slonik = wait_until(lambda: agreed_catalogs(twin), timeout=90, interval=0.5,
                               message="the catalogs of the slonik twin's 4 nodes agree")
    except TimeoutError:
        raise AssertionError(disagreement(catalogs(twin, (1, 2, 3, 4)))) from None
    for node in (1, 2, 3, 4):
        for name in DIFFERENTIAL_TABLES:
            expected = normalized(by_slonik[node][name], twin.dbname)
            actual = normalized(cats[node][name], db.dbname)
            assert actual == expected, (f"node {node} {name} differs:\nslonik:  {expected}\n"
                                        f"modules: {actual}")


def slonik_clone(db, slons, node4_paths):
    """What a DBA types into slonik for the clone of node 2 as node 4 (node 4's database
    does not exist yet). RESTART NODE: node 2's slon learns of its own CLONE_NODE event
    without enabling node 4 (slony_node does the same restart)."""
    slonik3(db, "clone prepare (id = 4, provider = 2, comment = 'clone of 2');\n"
                "restart node 2;\n"
                "wait for event (origin = 2, confirmed = 1, wait on = 2, timeout = 90);\n"
                "wait for event (origin = 2, confirmed = 3, wait on = 2, timeout = 90);\n"
                "sync (id = 1);\n"
                "sync (id = 3);\n"
                "wait for event (origin = 1, confirmed = 2, wait on = 2, timeout = 90);\n"
                "wait for event (origin = 3, confirmed = 2, wait on = 2, timeout = 90);\n")
    lab = db.lab
    env = dict(os.environ, PGPASSWORD=lab.password)
    db.lab.query(4, "create database %s template template0" % quote_ident(db.dbname),
                 dbname="postgres")
    bindir = Path(lab.settings.pg_bindir)
    dump = subprocess.Popen([str(bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(lab.port(2)),
                             "-U", lab.user, "-Fc", "--compress=0", db.dbname],
                            stdout=subprocess.PIPE, env=env)
    restore = subprocess.run([str(bindir / "pg_restore"), "-h", "127.0.0.1", "-p", str(lab.port(4)),
                              "-U", lab.user, "-d", db.dbname, "--exit-on-error",
                              "--single-transaction"],
                             stdin=dump.stdout, capture_output=True, text=True, env=env,
                             timeout=300, check=False)
    dump.stdout.close()
    assert dump.wait(timeout=60) == 0 and restore.returncode == 0, restore.stderr
    slonik3(db, "clone finish (id = 4, provider = 2);\n" + "".join(
        "store path (server = %d, client = %d, conninfo = '%s', connretry = %d);\n" % row
        for row in node4_paths), nodes=(1, 2, 3, 4))
    slons.start(4)


def agreed_catalogs(db):
    """The catalogs of the four nodes once they agree and every path of node 4 is known
    everywhere, else None."""
    cats = catalogs(db, (1, 2, 3, 4))
    first_node = cats[1]
    ok = all(c == first_node for c in cats.values()) and len(first_node["sl_path"]) == 12 and \
        "<event pending>" not in json.dumps(first_node["sl_path"])
    return cats if ok else None


def normalized(rows, dbname):
    """Catalog rows with the database name (inside path conninfos: the one legitimate
    difference between the twins) replaced."""
    return [tuple(v.replace(dbname, "DB") if isinstance(v, str) else v for v in row)
            for row in rows]


def disagreement(cats):
    """What differs from node 1's catalogs, per node and catalog."""
    lines = []
    for node, cat in sorted(cats.items()):
        for name in DIFFERENTIAL_TABLES:
            if cat[name] != cats[1][name] or name == "sl_path":
                lines.append("node %d %s: %s" % (node, name, [
                    tuple(str(v).split(" dbname", maxsplit=1)[0] for v in row) for row in cat[name]]))
    return "\n".join(lines)


def dump_one(db, node):
    """What a run could change on ``node`` (configuration events, catalogs, triggers)."""
    return dump(dataclasses.replace(db, node_ids=[node]), CLUSTER)[node] if db.exists_on(node) else None
