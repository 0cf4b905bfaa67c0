"""Test harness for real multi-node Slony clusters on one machine.

The lab (role ``dany.slony.lab``, applied by ``playbooks/lab.yml``) runs one PostgreSQL
instance per Slony node on 127.0.0.1.  This module drives it from pytest:

* :class:`Lab` brings the lab up or down through ansible-playbook and knows the nodes'
  ports and conninfo strings;
* :class:`FreshDatabase` is a brand-new database, created from the lab's template on
  every node, so that each test gets an isolated cluster (Slony keeps its whole state in
  the ``_<cluster>`` schema of the replicated database);
* :class:`SlonDaemon` / :class:`SlonFleet` start, stop and kill real slon processes.

Environment variables (read by :meth:`LabSettings.from_environment`):

``SLONY_LAB_PORT_BASE``  port of node 1 (default 54321; node i uses base + i - 1)
``SLONY_LAB_DIR``        lab directory (default /var/tmp/dany-slony-lab)
``SLONY_LAB_NODES``      number of nodes (default 3)
``SLONY_LAB_KEEP``       ``1``: leave the lab running after the test session
``SLONY_LAB_PASSWORD``   password of the lab superuser (default lab-secret-pw)
``SLONY_LAB_PG_BINDIR``  PostgreSQL binaries (default /usr/lib/postgresql/15/bin)

Two test runs with different port bases and directories can run side by side.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import psycopg2

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_PLAYBOOK = REPO_ROOT / "playbooks" / "lab.yml"

DEFAULT_PORT_BASE = 54321
DEFAULT_DIR = "/var/tmp/dany-slony-lab"
DEFAULT_NODES = 3
DEFAULT_USER = "slony"
DEFAULT_PASSWORD = "lab-secret-pw"
DEFAULT_DATABASE = "app"
DEFAULT_PG_BINDIR = "/usr/lib/postgresql/15/bin"

SLON_BIN = shutil.which("slon") or "/usr/bin/slon"
SLONIK_BIN = shutil.which("slonik") or "/usr/bin/slonik"

# slon tuned for tests.  An event is confirmed to its origin once (1) the receiver's
# remote listener has fetched it and (2) the origin's remote listener has fetched the
# receiver's sl_confirm row.  slon 2.2's remote listener backs off after an empty poll
# (sleep = 2 * sleep + sync_interval, capped at sync_interval_timeout), and idle nodes
# produce the SYNC events that carry confirmations only every sync_interval_timeout.
# Measured on the lab (3 nodes, SYNC on node 1, until nodes 2 and 3 confirm it):
#   defaults -s 2000 -t 10000: 2.1 .. 13.8 s;  -s 100 -t 1000: 0.5 .. 1.2 s;
#   -s 100 -t 250: 0.16 .. 0.7 s.
# The cost is four SYNC events per second per idle node: nothing for a test.
SLON_TEST_OPTIONS: Mapping[str, Any] = {
    "sync_interval": 100,  # -s: how often the sync thread checks for new work (ms)
    "sync_interval_timeout": 250,  # -t: an idle node emits a SYNC at least this often (ms)
    "log_level": 0,  # -d: CONFIG/INFO/WARN/ERROR/FATAL only; 1..4 add debug output
}

_IDENTIFIER_RE = re.compile(r"[^a-z0-9_]+")


def quote_conninfo_value(value: Any) -> str:
    """Quote one libpq conninfo value when it needs it (spaces, quotes, empty)."""
    text = str(value)
    if text and not re.search(r"[\s'\\]", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_conninfo(**params: Any) -> str:
    """``key=value`` conninfo in the order given (lab format: host port dbname user password)."""
    return " ".join(f"{key}={quote_conninfo_value(val)}" for key, val in params.items() if val is not None)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class LabError(RuntimeError):
    """The lab could not be brought up, torn down or used."""


class SlonError(RuntimeError):
    """A slon daemon did not start, died, or would not stop.  The message has its log tail."""


# --------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabSettings:
    port_base: int = DEFAULT_PORT_BASE
    directory: Path = Path(DEFAULT_DIR)
    nodes: int = DEFAULT_NODES
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    database: str = DEFAULT_DATABASE
    pg_bindir: str = DEFAULT_PG_BINDIR
    keep: bool = False

    @property
    def template(self) -> str:
        return f"{self.database}_template"

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "LabSettings":
        env = os.environ if env is None else env
        # Under pytest-xdist every worker runs its own lab: ports and directory shift by
        # the worker's number (gw0, gw1, ...), so that workers never share a server.
        worker = env.get("PYTEST_XDIST_WORKER", "")
        offset = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
        directory = env.get("SLONY_LAB_DIR") or DEFAULT_DIR
        return cls(
            port_base=int(env.get("SLONY_LAB_PORT_BASE") or DEFAULT_PORT_BASE) + 10 * offset,
            directory=Path(directory + ("-%s" % worker if offset else "")),
            nodes=int(env.get("SLONY_LAB_NODES") or DEFAULT_NODES),
            password=env.get("SLONY_LAB_PASSWORD") or DEFAULT_PASSWORD,
            pg_bindir=env.get("SLONY_LAB_PG_BINDIR") or DEFAULT_PG_BINDIR,
            keep=env.get("SLONY_LAB_KEEP", "") in ("1", "true", "yes"),
        )

    def playbook_vars(self, state: str) -> dict[str, Any]:
        return {
            "lab_state": state,
            "lab_nodes": self.nodes,
            "lab_port_base": self.port_base,
            "lab_dir": str(self.directory),
            "lab_user": self.user,
            "lab_password": self.password,
            "lab_database": self.database,
            "lab_pg_bindir": self.pg_bindir,
        }


class Lab:
    """The lab's PostgreSQL instances: node ids 1..N on 127.0.0.1, port_base + id - 1."""

    def __init__(self, settings: LabSettings | None = None):
        self.settings = settings or LabSettings.from_environment()
        self.last_up_seconds: float | None = None

    # -- topology ----------------------------------------------------------------------

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.settings.nodes + 1))

    @property
    def directory(self) -> Path:
        return self.settings.directory

    @property
    def database(self) -> str:
        return self.settings.database

    @property
    def template(self) -> str:
        return self.settings.template

    @property
    def user(self) -> str:
        return self.settings.user

    @property
    def password(self) -> str:
        return self.settings.password

    @property
    def ports(self) -> dict[int, int]:
        return {node: self.port(node) for node in self.node_ids}

    def port(self, node: int) -> int:
        self._check_node(node)
        return self.settings.port_base + node - 1

    def conninfo(self, node: int, dbname: str | None = None, password: bool = True) -> str:
        """``host=127.0.0.1 port=<port> dbname=<db> user=slony password=<pw>``."""
        return make_conninfo(
            host="127.0.0.1",
            port=self.port(node),
            dbname=dbname or self.database,
            user=self.user,
            password=self.password if password else None,
        )

    def admin_conninfo(self, dbname: str | None = None) -> dict[int, str]:
        return {node: self.conninfo(node, dbname) for node in self.node_ids}

    def node_log(self, node: int) -> Path:
        """The PostgreSQL server log of a node."""
        self._check_node(node)
        return self.directory / f"node{node}" / "postgresql.log"

    @property
    def slon_dir(self) -> Path:
        """Where the harness keeps slon configuration files, pid files and logs."""
        return self.directory / "slon"

    def passfile(self) -> Path:
        """A libpq password file (0600) for every server of the lab, as a DBA's ~/.pgpass:
        the harness's slons use it, so that they also follow paths stored without a
        password (what the collection's playbooks store)."""
        path = self.slon_dir / "lab.pgpass"
        text = "".join(f"127.0.0.1:{port}:*:{self.user}:{self.password}\n"
                       for port in self.ports.values())
        if not path.exists() or path.read_text() != text:
            self.slon_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        return path

    def _check_node(self, node: int) -> None:
        if node not in self.node_ids:
            raise LabError(f"node {node} is not in the lab (nodes {self.node_ids})")

    # -- SQL -----------------------------------------------------------------------------

    def connect(self, node: int, dbname: str | None = None, autocommit: bool = True):
        conn = psycopg2.connect(self.conninfo(node, dbname), connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def query(self, node: int, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None,
              dbname: str | None = None) -> list[tuple]:
        """Run one statement on a node (autocommit) and return its rows ([] if none)."""
        conn = self.connect(node, dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()

    # -- lifecycle -----------------------------------------------------------------------

    def run_playbook(self, state: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """Apply playbooks/lab.yml with this lab's settings; raise LabError on failure.
        The bound is generous: 300 s ran out twice while four labs came up at once on the
        2-core machine."""
        ansible_playbook = _venv_tool("ansible-playbook")
        env = dict(os.environ)
        env.setdefault("ANSIBLE_CONFIG", str(REPO_ROOT / "ansible.cfg"))
        env.setdefault("ANSIBLE_NOCOLOR", "1")
        env.setdefault("ANSIBLE_FORCE_COLOR", "0")
        cmd = [ansible_playbook, str(LAB_PLAYBOOK), "-e", json.dumps(self.settings.playbook_vars(state))]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if proc.returncode != 0:
            # The extra vars hold the password: keep it out of the error message.
            output = (proc.stdout[-6000:] + "\n" + proc.stderr[-3000:]).replace(self.password, "********")
            raise LabError(f"ansible-playbook {LAB_PLAYBOOK.name} (state={state}) failed "
                           f"with rc={proc.returncode}:\n{output}")
        return proc

    def up(self) -> "Lab":
        started = time.monotonic()
        self.run_playbook("present")
        self.last_up_seconds = time.monotonic() - started
        return self

    def down(self) -> None:
        self.run_playbook("absent")

    # -- servers (to simulate a node failure) -------------------------------------------

    def _pg_ctl(self, node: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        data = self.directory / f"node{node}" / "data"
        command = [str(Path(self.settings.pg_bindir) / "pg_ctl"), *args, "-D", str(data)]
        if os.geteuid() == 0:  # the servers belong to postgres; pg_ctl refuses root
            runuser = shutil.which("runuser")
            command = [runuser, "-u", "postgres", "--", *command] if runuser else \
                ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"pg_ctl {' '.join(args)} for node {node} failed: {proc.stdout}{proc.stderr}")
        return proc

    def server_running(self, node: int) -> bool:
        self._check_node(node)
        return self._pg_ctl(node, "status", check=False).returncode == 0

    def stop_server(self, node: int, mode: str = "immediate") -> None:
        """Stop the PostgreSQL server of a node (a node failure for every database on it)."""
        self._check_node(node)
        if self.server_running(node):
            self._pg_ctl(node, "stop", "-m", mode, "-w")

    def start_server(self, node: int) -> None:
        self._check_node(node)
        if not self.server_running(node):
            log = self.node_log(node)
            self._pg_ctl(node, "start", "-w", "-t", "60", "-l", str(log))

    def ensure_servers_running(self) -> None:
        for node in self.node_ids:
            self.start_server(node)

    def is_reachable(self, node: int) -> bool:
        try:
            self.query(node, "select 1", dbname="postgres")
        except psycopg2.OperationalError:
            return False
        return True


def _venv_tool(name: str) -> str:
    candidate = REPO_ROOT / ".venv" / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise LabError(f"{name} not found: run ./scripts/bootstrap.sh first")
    return found


# --------------------------------------------------------------------------------------
# Fresh databases
# --------------------------------------------------------------------------------------


def _on_nodes(nodes: Sequence[int], action) -> list[str]:
    """Run ``action(node)`` for every node in parallel (one server each); return the errors."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = {node: pool.submit(action, node) for node in nodes}
    errors = []
    for node, future in futures.items():
        exc = future.exception()
        if exc is not None:
            errors.append(f"node {node}: {str(exc).strip()}")
    return errors


def unique_dbname(hint: str = "", prefix: str = "t") -> str:
    """A database name unique to this call: ``<prefix>_<hint>_<8 hex>``, at most 63 bytes."""
    suffix = uuid.uuid4().hex[:8]
    clean = _IDENTIFIER_RE.sub("_", hint.lower()).strip("_")
    room = 63 - len(prefix) - len(suffix) - 2
    clean = clean[:room].rstrip("_")
    return f"{prefix}_{clean}_{suffix}" if clean else f"{prefix}_{suffix}"


@dataclass
class FreshDatabase:
    """One new database with the sample schema on every lab node (same name everywhere)."""

    lab: Lab
    dbname: str
    node_ids: list[int] = field(default_factory=list)
    cluster_name: str = "lab"
    create_seconds: float | None = None

    def __post_init__(self):
        if not self.node_ids:
            self.node_ids = list(self.lab.node_ids)

    # -- connection strings --------------------------------------------------------------

    def conninfo(self, node: int, password: bool = True) -> str:
        return self.lab.conninfo(node, self.dbname, password=password)

    @property
    def admin_conninfo(self) -> dict[int, str]:
        """{node id: conninfo}: what the modules' ``admin_conninfo`` option takes."""
        return {node: self.conninfo(node) for node in self.node_ids}

    # -- SQL -----------------------------------------------------------------------------

    def connect(self, node: int, autocommit: bool = True):
        return self.lab.connect(node, self.dbname, autocommit=autocommit)

    def query(self, node: int, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple]:
        """Run one statement on ``node`` (autocommit, own connection) and return its rows."""
        return self.lab.query(node, sql, params, dbname=self.dbname)

    def scalar(self, node: int, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        rows = self.query(node, sql, params)
        return rows[0][0] if rows else None

    def query_all(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> dict[int, list[tuple]]:
        """The same statement on every node: {node id: rows}."""
        return {node: self.query(node, sql, params) for node in self.node_ids}

    # -- lifecycle -----------------------------------------------------------------------

    def create(self) -> "FreshDatabase":
        """CREATE DATABASE ... TEMPLATE <lab template> on every node (in parallel)."""
        started = time.monotonic()
        statement = f"CREATE DATABASE {quote_ident(self.dbname)} TEMPLATE {quote_ident(self.lab.template)}"
        errors = _on_nodes(self.node_ids, lambda node: self.lab.query(node, statement, dbname="postgres"))
        self.create_seconds = time.monotonic() - started
        if errors:
            self.drop()
            raise LabError(f"could not create database {self.dbname}: " + "; ".join(errors))
        return self

    def drop(self) -> None:
        """Terminate every session on the database, then drop it, on every node."""

        def drop_on(node: int) -> None:
            self.lab.query(
                node,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.dbname,),
                dbname="postgres",
            )
            self.lab.query(node, f"DROP DATABASE IF EXISTS {quote_ident(self.dbname)} WITH (FORCE)",
                           dbname="postgres")

        errors = _on_nodes(self.node_ids, drop_on)
        if errors:
            raise LabError(f"could not drop database {self.dbname}: " + "; ".join(errors))

    def slonik_preamble(self, cluster_name: str | None = None) -> str:
        """``cluster name = ...; node N admin conninfo = '...';`` for every node."""
        lines = [f"cluster name = {cluster_name or self.cluster_name};"]
        for node in self.node_ids:
            lines.append(f"node {node} admin conninfo = '{self.conninfo(node)}';")
        return "\n".join(lines) + "\n"

    def slonik(self, script: str, cluster_name: str | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """Run slonik with the preamble of this database plus ``script`` (the oracle)."""
        text = self.slonik_preamble(cluster_name) + script
        proc = subprocess.run([SLONIK_BIN], input=text, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise LabError(f"slonik failed with rc={proc.returncode}:\n{proc.stdout}\n{proc.stderr}\n"
                           f"--- script ---\n{script}")
        return proc

    # -- Slony events (an oracle independent of the modules) ---------------------------

    def cluster_schema(self, cluster_name: str | None = None) -> str:
        return quote_ident(f"_{cluster_name or self.cluster_name}")

    def sync(self, origin: int, cluster_name: str | None = None) -> int:
        """Create a SYNC event on ``origin`` as slonik's SYNC does; return its seqno."""
        schema = self.cluster_schema(cluster_name)
        conn = self.connect(origin, autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute(f"lock table {schema}.sl_event_lock")
                cur.execute(f"select {schema}.createEvent(%s, 'SYNC')", (f"_{cluster_name or self.cluster_name}",))
                cur.execute(f"select currval('{schema}.sl_event_seq')")
                seqno = cur.fetchone()[0]
            conn.commit()
            return seqno
        finally:
            conn.close()

    def confirmed_by(self, origin: int, seqno: int, cluster_name: str | None = None) -> set[int]:
        """Nodes whose confirmation of event (origin, seqno) has reached the origin."""
        rows = self.query(
            origin,
            f"select con_received from {self.cluster_schema(cluster_name)}.sl_confirm "
            "where con_origin = %s group by con_received having max(con_seqno) >= %s",
            (origin, seqno),
        )
        return {row[0] for row in rows}

    def wait_confirmed(self, origin: int, seqno: int, receivers: Iterable[int] | None = None,
                       timeout: float = 30.0, cluster_name: str | None = None) -> None:
        """Wait until ``receivers`` (default: every other node) confirmed the event.

        Allow generous timeouts: when paths or listens change while slon runs, slon 2.2
        may find "nothing to listen for" for a moment and then sleeps a hard-coded 10 s.
        """
        wanted = set(receivers if receivers is not None else self.node_ids) - {origin}
        try:
            wait_until(lambda: wanted <= self.confirmed_by(origin, seqno, cluster_name),
                       timeout=timeout, interval=0.05)
        except TimeoutError:
            missing = sorted(wanted - self.confirmed_by(origin, seqno, cluster_name))
            raise TimeoutError(f"event {origin},{seqno} not confirmed by node(s) {missing} "
                               f"within {timeout:.0f}s") from None

    def exists_on(self, node: int) -> bool:
        return bool(self.lab.query(node, "SELECT 1 FROM pg_database WHERE datname = %s",
                                   (self.dbname,), dbname="postgres"))


# --------------------------------------------------------------------------------------
# slon daemons
# --------------------------------------------------------------------------------------

# What slon 2.2 logs once its worker has read the node configuration and started its
# threads; and the lines that mean it cannot work (it does not exit on them: its
# watchdog restarts the worker every 10 seconds, forever).
SLON_READY_MARKER = "main: running scheduler mainloop"
SLON_FATAL_RE = re.compile(r"^\S+ \S+ \S+ (FATAL|ERROR)\s+(.*)$", re.MULTILINE)


def _slon_conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class SlonDaemon:
    """One slon process for (cluster, node, database).

    The configuration (cluster name, conninfo, options) goes into a file that only root
    can read, so the password does not show in the process list.  slon logs every option
    at start, the conninfo included: the log file is kept private too.
    """

    def __init__(self, cluster_name: str, node_id: int, conninfo: str, workdir: Path | str,
                 options: Mapping[str, Any] | None = None, tag: str | None = None,
                 passfile: Path | None = None):
        self.cluster_name = cluster_name
        self.passfile = passfile
        self.node_id = node_id
        self.conninfo = conninfo
        self.options = {**SLON_TEST_OPTIONS, **(options or {})}
        self.workdir = Path(workdir)
        name = f"{tag or cluster_name}.node{node_id}"
        self.conf_path = self.workdir / f"{name}.conf"
        self.log_path = self.workdir / f"{name}.log"
        self.pid_path = self.workdir / f"{name}.pid"
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<SlonDaemon {self.cluster_name} node {self.node_id} {state} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def _write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        settings = {
            "cluster_name": self.cluster_name,
            "conn_info": self.conninfo,
            "pid_file": str(self.pid_path),
            **self.options,
        }
        text = "".join(f"{key} = {_slon_conf_value(val)}\n" for key, val in settings.items())
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    def start(self, wait: bool = True, timeout: float = 15.0) -> "SlonDaemon":
        """Start slon; with ``wait``, return once it runs its main loop.

        Raises SlonError (with the log tail) and kills the daemon when slon reports a
        FATAL/ERROR line or exits before it is ready, or when ``timeout`` expires.
        """
        if self.is_running():
            raise SlonError(f"slon for node {self.node_id} is already running (pid {self.pid})")
        self._write_conf()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            # A session of its own: slon forks a worker under a watchdog, and kill()
            # must take both down.
            env = dict(os.environ)
            if self.passfile:
                env["PGPASSFILE"] = str(self.passfile)
            self.process = subprocess.Popen(
                [SLON_BIN, "-f", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until slon runs its main loop; on failure kill it and raise SlonError."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log(since_start=True)
            ready_at = log.find(SLON_READY_MARKER)
            # Only what slon logged before its main loop says it cannot start; later
            # errors (an unreachable peer, say) belong to the test.
            problem = SLON_FATAL_RE.search(log if ready_at < 0 else log[:ready_at])
            if problem:
                self.kill()
                raise SlonError(f"slon for node {self.node_id} of cluster {self.cluster_name} failed: "
                                f"{problem.group(1)} {problem.group(2)}\n{self.log_tail()}")
            if ready_at >= 0:
                return
            if not self.is_running():
                raise SlonError(f"slon for node {self.node_id} exited with {self.returncode} before "
                                f"it was ready\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise SlonError(f"slon for node {self.node_id} not ready after {timeout:.0f}s\n"
                                f"{self.log_tail()}")
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (slon shuts down cleanly), wait; SIGKILL if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise SlonError(f"slon for node {self.node_id} ignored SIGTERM for {timeout:.0f}s; "
                                f"killed\n{self.log_tail()}")
        self._reap_group()
        self._wait_group_gone()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the watchdog and its worker at once, as a crash would."""
        if self.process is None:
            return
        self._reap_group(signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired as exc:
            raise SlonError(f"slon pid {self.pid} survived SIGKILL") from exc
        self._wait_group_gone()

    def _reap_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal whatever is left of the slon's process group (orphaned workers)."""
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def live_processes(self) -> list[int]:
        """Pids of the slon's process group that are still alive (zombies do not count).

        After SIGKILL the orphaned worker stays a zombie until init reaps it, which on
        some machines takes seconds; a zombie holds no connection and does no work.
        """
        if self.process is None:
            return []
        return _live_group_members(self.process.pid)

    def _wait_group_gone(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.live_processes():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def log(self, since_start: bool = False) -> str:
        """The slon log (whole file, or only what the last start wrote)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            if since_start:
                handle.seek(self._log_offset)
            return handle.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log().splitlines()[-lines:]
        text = "\n".join(tail)
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n{text}" if tail else f"--- {self.log_path} empty ---"

    def errors(self) -> list[str]:
        """ERROR and FATAL lines logged since the last start."""
        return [f"{m.group(1)} {m.group(2)}" for m in SLON_FATAL_RE.finditer(self.log(since_start=True))]


def _live_group_members(pgid: int) -> list[int]:
    """Non-zombie processes whose process group is ``pgid`` (read from /proc)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class SlonFleet:
    """The slon daemons of one cluster in one fresh database, one per node."""

    def __init__(self, database: FreshDatabase, cluster_name: str | None = None,
                 options: Mapping[str, Any] | None = None):
        self.database = database
        self.cluster_name = cluster_name or database.cluster_name
        self.options = dict(options or {})
        self.daemons: dict[int, SlonDaemon] = {}

    def daemon(self, node: int) -> SlonDaemon:
        if node not in self.daemons:
            self.daemons[node] = SlonDaemon(
                self.cluster_name, node, self.database.conninfo(node),
                workdir=self.database.lab.slon_dir,
                options=self.options,
                tag=f"{self.database.dbname}.{self.cluster_name}",
                passfile=self.database.lab.passfile(),
            )
        return self.daemons[node]

    __getitem__ = daemon

    def start(self, *nodes: int, wait: bool = True, timeout: float = 15.0) -> list[SlonDaemon]:
        """Start the slons of ``nodes`` (default: every node of the database)."""
        started = []
        for node in nodes or self.database.node_ids:
            started.append(self.daemon(node).start(wait=False))
        if wait:
            for daemon in started:
                daemon.wait_ready(timeout)
        return started

    def stop(self, *nodes: int) -> None:
        for node in nodes or list(self.daemons):
            if node in self.daemons:
                self.daemons[node].stop()

    def kill(self, *nodes: int) -> None:
        for node in nodes or list(self.daemons):
            if node in self.daemons:
                self.daemons[node].kill()

    def running(self) -> list[int]:
        return sorted(node for node, daemon in self.daemons.items() if daemon.is_running())

    def logs(self, lines: int = 40) -> str:
        """Log tails of every daemon started so far, for failure messages."""
        return "\n".join(daemon.log_tail(lines) for _node, daemon in sorted(self.daemons.items()))

    def kill_all(self) -> None:
        for daemon in self.daemons.values():
            try:
                daemon.kill()
            except SlonError:
                pass


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {timeout:.1f}s")
        time.sleep(interval)


def table_names(rows: Iterable[tuple]) -> set[str]:
    return {f"{schema}.{name}" for schema, name in rows}
