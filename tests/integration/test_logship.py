"""playbooks/logship.yml: a subscriber's log-shipping archives feed an offline database.

The cluster (origin 1, subscriber 2, set 1 with six tables and a sequence) is built with
slonik and the harness's slons, quickly; rows are written on the origin and reach node 2.
node 2's harness slon is then replaced by the slon role's, started as site.yml starts it
(no archive directory); the playbook restarts it with one. The offline database is an
empty database (template0) on the lab's last server: a plain database, not a node.

Then logship.yml in check mode (nothing changes: no archive directory, the slon neither
restarted nor its configuration written, the offline database not initialised, the
cluster's catalogs unchanged), for real (the slon restarted with the archive directory,
the offline database initialised from node 2: the user schema copied, the rows loaded;
it equals the origin). Rows are then inserted, updated, deleted and truncated on the
origin and the sequence advanced; once node 2 has applied a SYNC after them, the playbook
runs again until the offline database has them: every row of every replicated table and
the sequence equal the origin's. A later run applies only the files slon wrote since
(never an applied one again), check mode applies nothing, re-runs leave the slon running
(no restart), and remove_applied removes the applied files. The offline database never
becomes a node, and the lab password appears in no output (-v included) and in no file
but the slon's passfile (0600): the paths are stored without password, as the
collection's playbooks store them, so that slon's log holds none either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from catalog_dump import dump
from lab import REPO_ROOT, quote_ident, wait_until
from test_site import ANSIBLE_PLAYBOOK, PlaybookRun

LOGSHIP_PLAYBOOK = REPO_ROOT / "playbooks" / "logship.yml"
CLUSTER = "lab"
NODES = (1, 2)
SUBSCRIBER = 2
# Table -> its key columns (the order the contents are compared in).
TABLES = {
    "public.customers": "id",
    "public.products": "id",
    "public.orders": "id",
    "public.settings": "name",
    "billing.invoices": "id",
    "billing.payments": "id",
}
SEQUENCE = "public.invoice_number_seq"
ARCHIVE_RE = re.compile(r"^slony1_log_2_(\d{20})\.sql$")

# node 2's slon as site.yml runs it: the slon role, without an archive directory.
START_SLON = """\
- name: Run the subscriber's slon as site.yml does
  hosts: node2
  gather_facts: false
  tasks:
    - name: Describe the cluster from the inventory
      ansible.builtin.import_role:
        name: dany.slony.cluster
        tasks_from: facts.yml
    - name: Run the slon
      ansible.builtin.include_role:
        name: dany.slony.slon
      vars:
        slon_cluster_name: "{{ slony_cluster_name }}"
        slon_node_id: "{{ slony_node_id }}"
        slon_conninfo: "{{ cluster_conninfo_by_host[inventory_hostname] }}"
        slon_sync_interval: "{{ slony_slon_sync_interval }}"
        slon_sync_interval_timeout: "{{ slony_slon_sync_interval_timeout }}"
"""

STOP_SLON = """\
- name: Stop the subscriber's slon
  hosts: node2
  gather_facts: false
  roles:
    - role: dany.slony.slon
      slon_cluster_name: "{{ slony_cluster_name }}"
      slon_node_id: "{{ slony_node_id }}"
      slon_state: absent
"""


def build_cluster(db, slons):
    """Nodes 1 and 2, paths both ways, set 1 (TABLES, SEQUENCE) subscribed by node 2."""
    db.slonik("init cluster (id = 1, comment = 'origin');\n"
              "store node (id = 2, comment = 'subscriber', event node = 1);\n"
              "store path (server = 1, client = 2, conninfo = '%s');\n"
              "store path (server = 2, client = 1, conninfo = '%s');\n"
              % (db.conninfo(1, password=False), db.conninfo(2, password=False)))
    slons.start(*NODES)
    adds = "".join("set add table (set id = 1, origin = 1, id = %d, fully qualified name = '%s'%s);\n"
                   % (i + 1, name, ", key = 'settings_name_key'" if name == "public.settings" else "")
                   for i, name in enumerate(TABLES))
    db.slonik("create set (id = 1, origin = 1, comment = 'app');\n" + adds +
              "set add sequence (set id = 1, origin = 1, id = 1, fully qualified name = '%s');\n"
              "subscribe set (id = 1, provider = 1, receiver = 2, forward = no);\n" % SEQUENCE)
    wait_until(lambda: db.scalar(2, 'select count(*) from "_lab".sl_setsync where ssy_setid = 1') == 1,
               timeout=90, interval=0.2, message="set 1 copied to node 2")


def applied_on_subscriber(db, seqno):
    """node 2 has applied origin 1's SYNC ``seqno`` (its own sl_setsync says so)."""
    return (db.scalar(SUBSCRIBER, 'select ssy_seqno from "_lab".sl_setsync where ssy_setid = 1') or 0) >= seqno


def sync_applied(db):
    """A SYNC on the origin after the writes, and node 2 applying it: its archive file is
    then written and committed (slon renames it just before the commit)."""
    seqno = db.sync(1)
    wait_until(lambda: applied_on_subscriber(db, seqno), timeout=90, interval=0.05,
               message="node 2 applying SYNC %d of node 1" % seqno)
    return seqno


class Offline:
    """The offline database: a plain database created from template0 on one lab server."""

    def __init__(self, lab, server):
        self.lab = lab
        self.server = server
        self.dbname = "t_offline_%s" % uuid.uuid4().hex[:8]
        self.conninfo = lab.conninfo(server, self.dbname)

    def create(self):
        self.lab.query(self.server, "create database %s template template0" % quote_ident(self.dbname),
                       dbname="postgres")
        return self

    def drop(self):
        self.lab.query(self.server, "drop database if exists %s with (force)" % quote_ident(self.dbname),
                       dbname="postgres")

    def query(self, sql, params=None):
        return self.lab.query(self.server, sql, params, dbname=self.dbname)

    def scalar(self, sql, params=None):
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def state(self):
        """Everything a run could change: the schemas, the relations and the functions."""
        return {
            "schemas": self.query("select nspname from pg_namespace where nspname not like 'pg\\_%%'"
                                  " and nspname <> 'information_schema' order by 1"),
            "relations": self.query("select n.nspname, c.relname, c.relkind from pg_class c"
                                    " join pg_namespace n on n.oid = c.relnamespace"
                                    " where n.nspname not like 'pg\\_%%' and n.nspname <> 'information_schema'"
                                    " order by 1, 2"),
            "functions": self.query("select n.nspname, p.proname from pg_proc p"
                                    " join pg_namespace n on n.oid = p.pronamespace"
                                    " where n.nspname not like 'pg\\_%%' and n.nspname <> 'information_schema'"
                                    " order by 1, 2"),
        }

    def tracking(self):
        return self.query('select at_counter, at_node from "_lab".sl_archive_tracking')


def contents(query):
    """{table: rows in key order, sequence: (last_value, is_called)} through ``query``."""
    out = {name: query("select * from %s order by %s" % (name, key)) for name, key in TABLES.items()}
    out[SEQUENCE] = query("select last_value, is_called from %s" % SEQUENCE)
    return out


class LogshipPlaybook:
    """An inventory of the two nodes and the private vars file of logship.yml."""

    def __init__(self, db, offline, workdir: Path):
        self.db = db
        self.offline = offline
        self.workdir = workdir
        self.archive_dir = workdir / "archive"
        self.inventory_path = workdir / "inventory.json"
        self.vars_path = workdir / "logship-vars.json"
        self.runs: list[PlaybookRun] = []
        lab = db.lab
        hosts = {"node%d" % n: {"slony_node_id": n, "slony_db_port": lab.port(n)} for n in NODES}
        inventory = {"all": {"children": {"slony_nodes": {"hosts": hosts, "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "slony_db_host": "127.0.0.1",
            "slony_db_name": db.dbname,
            "slony_db_user": lab.user,
            "slony_db_password": lab.password,
            "slony_cluster_name": CLUSTER,
            "slony_slon_sync_interval": 100,
            "slony_slon_sync_interval_timeout": 1000,
            "slon_config_dir": str(workdir / "slon" / "etc"),
            "slon_run_dir": str(workdir / "slon" / "run"),
            "slon_log_dir": str(workdir / "slon" / "log"),
            "slon_logrotate": False,
        }}}}}
        self.write_private(self.inventory_path, inventory)
        self.set_vars()

    @staticmethod
    def write_private(path, data):
        # JSON is YAML; both files hold the lab password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)

    def set_vars(self, remove_applied=False):
        self.write_private(self.vars_path, {
            "slony_logship_host": "node2",
            "slony_logship_archive_dir": str(self.archive_dir),
            "slony_logship_offline_conninfo": self.offline.conninfo,
            "slony_logship_remove_applied": remove_applied,
            "slony_wait_timeout": 60,
        })

    def run(self, playbook=LOGSHIP_PLAYBOOK, check=False, verbose=False) -> PlaybookRun:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="false")
        args = [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory_path), str(playbook),
                "-e", "@" + str(self.vars_path)]
        if check:
            args.append("--check")
        if verbose:  # the module's whole result: its queries name the offline database
            args.append("-v")
        started = time.monotonic()
        proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        run = PlaybookRun(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.runs.append(run)
        password = self.db.lab.password
        assert password not in proc.stdout + proc.stderr, "%s printed the lab password" % playbook.name
        assert not run.failed, (f"{playbook.name}{' --check' if check else ''} failed:\n"
                                f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
        return run

    def start_slon(self):
        path = self.workdir / "start_slon.yml"
        path.write_text(START_SLON)
        return self.run(path)

    def stop_slon(self):
        path = self.workdir / "stop_slon.yml"
        path.write_text(STOP_SLON)
        self.run(path)

    def pid_files(self):
        run_dir = self.workdir / "slon" / "run"
        return sorted(run_dir.glob("slon-*.pid")) if run_dir.exists() else []

    def slon_running(self):
        pid_file = self.workdir / "slon" / "run" / f"slon-{CLUSTER}-{SUBSCRIBER}.pid"
        status = subprocess.run(["start-stop-daemon", "--status", "--pidfile", str(pid_file), "--name", "slon"],
                                capture_output=True, check=False)
        return status.returncode == 0

    def slon_pid(self):
        return (self.workdir / "slon" / "run" / f"slon-{CLUSTER}-{SUBSCRIBER}.pid").read_text().strip()

    def archive_counters(self):
        return sorted(int(m.group(1)) for m in map(ARCHIVE_RE.match, os.listdir(self.archive_dir)) if m)


def files_applied(run):
    """The number the playbook's summary gives for the files applied (or that would be)."""
    found = re.findall(r"files (?:that would be )?applied: (\d+)", run.stdout)
    assert len(found) == 1, run.stdout[-3000:]
    return int(found[0])


@pytest.fixture
def logship(make_fresh_db, lab):
    db = make_fresh_db("logship", nodes=list(NODES))
    offline = Offline(lab, max(lab.node_ids)).create()
    # Below the lab directory (world-traversable): slon runs as postgres and must read its
    # configuration file and write into the archive directory.
    workdir = Path(lab.directory) / f"logship-test-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(mode=0o755)
    book = LogshipPlaybook(db, offline, workdir)
    try:
        yield db, offline, book
    finally:
        try:
            book.stop_slon()
            assert book.pid_files() == [], f"slon pid files left: {book.pid_files()}"
        finally:
            # Whatever happened, no slon of this test survives it (the databases go next).
            for pid_file in book.pid_files():
                subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pid_file), "--name", "slon",
                                "--retry", "TERM/10/KILL/5", "--remove-pidfile"], capture_output=True, check=False)
            offline.drop()
            shutil.rmtree(workdir, ignore_errors=True)


def catalogs(db):
    """The cluster's configuration (nodes, paths, sets, subscriptions, config events, triggers)."""
    return dump(db, CLUSTER)


def test_logship_feeds_an_offline_database_from_a_subscriber(logship, make_slons):
    db, offline, book = logship
    slons = make_slons(db)
    build_cluster(db, slons)
    db.query(1, "insert into public.customers (name, email) values ('before-logship', 'a@example.invalid')")
    db.query(1, "insert into billing.invoices (customer_id, amount) values (1, 12.50)")
    sync_applied(db)
    # From here on node 2's slon is the slon role's, as site.yml runs it: no archive directory.
    slons.stop(SUBSCRIBER)
    book.start_slon()
    assert book.slon_running()
    plain_pid = book.slon_pid()
    conf_path = book.workdir / "slon" / "etc" / f"slon-{CLUSTER}-{SUBSCRIBER}.conf"
    plain_conf = conf_path.read_text()
    assert "archive_dir" not in plain_conf
    db.query(1, "insert into public.products (sku, name, price) values ('LS-1', 'shipped later', 3.25)")
    sync_applied(db)
    on_origin = contents(lambda sql: db.query(1, sql))
    assert contents(lambda sql: db.query(2, sql)) == on_origin
    assert on_origin["public.customers"] and on_origin["billing.invoices"] and on_origin["billing.payments"]

    # -- check mode: nothing changes anywhere ----------------------------------------------
    empty = offline.state()
    assert empty["schemas"] == [("public",)] and empty["relations"] == []
    before = catalogs(db)
    checked = book.run(check=True)
    # The archive directory, the slon's restart, the offline database's initialisation.
    assert checked.changed()["node2"] == 3, checked.recap
    assert files_applied(checked) == 0
    assert offline.state() == empty, "check mode changed the offline database"
    assert catalogs(db) == before, "check mode changed the cluster's catalogs"
    assert not book.archive_dir.exists(), "check mode created the archive directory"
    assert conf_path.read_text() == plain_conf, "check mode wrote the slon configuration"
    assert book.slon_pid() == plain_pid and book.slon_running(), "check mode restarted the slon"

    # -- the first run: the archive directory, the slon with it, the offline database ------
    temporary = set(Path(tempfile.gettempdir()).glob("dany-slony-logship-*"))
    first = book.run()
    assert set(Path(tempfile.gettempdir()).glob("dany-slony-logship-*")) == temporary, \
        "the schema copy left its temporary directory"
    assert first.changed()["node2"] > 0, first.recap
    mode = book.archive_dir.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o750 and mode.st_uid == _uid("postgres")
    assert book.slon_running(), "node 2's slon does not run"
    slon_pid = book.slon_pid()
    assert slon_pid != plain_pid, "the slon role did not restart node 2's slon with the archive directory"
    assert "archive_dir = '%s'" % book.archive_dir in conf_path.read_text()
    tracking = offline.tracking()
    assert len(tracking) == 1 and tracking[0][1] == SUBSCRIBER, tracking
    # An initialised plain database, not a node: no sl_node, no path, no Slony trigger.
    assert offline.scalar("select to_regclass('\"_lab\".sl_node') is null and "
                          "to_regclass('\"_lab\".sl_path') is null and "
                          "to_regclass('\"_lab\".sl_local_node_id') is null")
    assert offline.query("select tgname from pg_trigger where not tgisinternal and tgname like '\\_lab\\_%%'") == []
    assert contents(offline.query) == on_origin, "the initial load differs from the origin"

    # -- writes of every kind on the origin, applied through the archive files -------------
    db.query(1, "insert into public.customers (name, email) values ('after-logship', 'b@example.invalid'),"
                " ('quote''s', null)")
    db.query(1, "update public.products set price = price + 1, name = name || ' (new)' where id = 1")
    db.query(1, "delete from public.orders where id = (select min(id) from public.orders)")
    db.query(1, "update public.settings set value = 'changed' where name = (select min(name) from public.settings)")
    db.query(1, "truncate billing.payments")
    db.query(1, "insert into billing.invoices (customer_id, amount) values (2, 99.99), (3, 0.01)")
    db.query(1, "insert into billing.payments (invoice_id, amount) select max(id), 99.99 from billing.invoices")
    db.query(1, "select nextval('%s') from generate_series(1, 5)" % SEQUENCE)
    on_origin = contents(lambda sql: db.query(1, sql))
    assert on_origin != contents(offline.query)
    counter_before = offline.tracking()[0][0]
    seqno = sync_applied(db)
    assert contents(lambda sql: db.query(2, sql)) == on_origin

    def shipped():
        book.run()
        return contents(offline.query) == on_origin
    try:
        wait_until(shipped, timeout=120, interval=0.5,
                   message="the offline database having node 1's SYNC %d" % seqno)
    except TimeoutError:
        got = contents(offline.query)
        raise AssertionError("the offline database differs from the origin: %s" % {
            name: (rows, on_origin[name]) for name, rows in got.items() if rows != on_origin[name]}) from None
    counter = offline.tracking()[0][0]
    assert counter > counter_before
    assert set(range(counter_before + 1, counter + 1)) <= set(book.archive_counters()), \
        "an applied file was removed without remove_applied"

    # -- a later run applies only the new files, never an applied one; check mode none ------
    sync_applied(db)
    checked = book.run(check=True)
    assert checked.changed()["node2"] == 1, "check mode would change more than the offline database: %s" % checked.recap
    assert files_applied(checked) >= 1, checked.stdout[-3000:]
    assert offline.tracking()[0][0] == counter, "check mode applied a file"
    later = book.run(verbose=True)
    assert "dbname=%s" % offline.dbname in later.stdout, "the -v run shows no query on the offline database"
    after = offline.tracking()[0][0]
    assert files_applied(later) == after - counter, later.stdout[-3000:]
    assert after > counter, "the SYNC applied on node 2 since the last run shipped no file"
    assert contents(offline.query) == on_origin

    # -- remove_applied: the files at or below the offline counter go ---------------------------
    book.set_vars(remove_applied=True)
    cleaned = book.run()
    final = offline.tracking()[0][0]
    assert all(c > final for c in book.archive_counters()), (final, book.archive_counters()[:5])
    assert re.search(r"files removed: [1-9]", cleaned.stdout), cleaned.stdout[-3000:]
    assert contents(offline.query) == on_origin

    # The runs after the first left the slon alone (same configuration: no restart).
    assert book.slon_pid() == slon_pid, "a re-run restarted the subscriber's slon"
    # The cluster's configuration is as slonik left it; the offline database is still no node.
    assert catalogs(db) == before, "the runs changed the cluster's catalogs"
    assert offline.scalar("select to_regclass('\"_lab\".sl_node') is null")

    # -- no password anywhere the collection wrote -------------------------------------------
    _assert_no_password(book)


def _uid(user):
    import pwd  # pylint: disable=import-outside-toplevel
    return pwd.getpwnam(user).pw_uid


def _assert_no_password(book):
    """The lab password is in no output, and in no file below the test's directory but the
    slon's passfile (0600; the slon configuration and slon's log hold conninfos without
    password, the role's README says so)."""
    password = book.db.lab.password.encode()
    passfile = book.workdir / "slon" / "etc" / f"slon-{CLUSTER}-{SUBSCRIBER}.pgpass"
    private = {book.inventory_path, book.vars_path}  # the test's own input files
    holding = set()
    for path in book.workdir.rglob("*"):
        if path.is_file() and path not in private and password in path.read_bytes():
            holding.add(path)
    assert holding == {passfile}, f"the lab password is in {sorted(map(str, holding))}"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    for run in book.runs:
        assert book.db.lab.password not in run.stdout + run.stderr
