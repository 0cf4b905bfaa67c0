"""A real pgbouncer (Debian's package) on loopback, for tests that cut an application over.

``PgBouncer(directory, port, database, host, server_port, dbname)`` writes its own ini,
auth file and ``databases.ini`` (the one ``[databases]`` entry, ``%include``d, which the
tests' cutover hooks rewrite) in ``directory``, runs pgbouncer in the foreground as
``postgres`` (it refuses to run as root) and stops it on ``stop()``. Transaction pooling:
PAUSE waits for the running transactions, holds new ones, and RESUME sends them to
whatever server ``databases.ini`` names after a RELOAD, so a client never changes its
connection string.

The admin console is reached with the admin user (its own password, not the lab's).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg2

PGBOUNCER_BIN = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
ADMIN_USER = "pgb_admin"
ADMIN_PASSWORD = "pgb-admin-test-pw"
RUN_AS = "postgres"


def _quote(value) -> str:
    return '"%s"' % str(value).replace('"', '""')


def databases_ini(alias: str, host: str, port: int, dbname: str) -> str:
    """The ``[databases]`` section pointing ``alias`` at one server (no password: pgbouncer
    logs in with the client's password from its auth file)."""
    return "[databases]\n%s = host=%s port=%d dbname=%s\n" % (alias, host, int(port), dbname)


class PgBouncer:
    def __init__(self, directory: Path, port: int, alias: str, user: str, password: str,
                 host: str, server_port: int, dbname: str):
        self.directory = Path(directory)
        self.port = port
        self.alias = alias
        self.user = user
        self.password = password
        self.proc: subprocess.Popen | None = None
        self.ini = self.directory / "pgbouncer.ini"
        self.databases = self.directory / "databases.ini"
        self.log = self.directory / "pgbouncer.log"
        self.server = (host, server_port, dbname)

    # -- files ---------------------------------------------------------------------------

    def _write(self, path: Path, text: str, mode: int) -> None:
        path.write_text(text)
        os.chmod(path, mode)
        entry = pwd.getpwnam(RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = pwd.getpwnam(RUN_AS)
        os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        os.chmod(self.directory, 0o755)
        self._write(self.directory / "users.txt",
                    "%s %s\n%s %s\n" % (_quote(self.user), _quote(self.password),
                                        _quote(ADMIN_USER), _quote(ADMIN_PASSWORD)), 0o600)
        host, port, dbname = self.server
        self._write(self.databases, databases_ini(self.alias, host, port, dbname), 0o644)
        self._write(self.ini, "\n".join([
            "%%include %s" % self.databases,
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            "listen_port = %d" % self.port,
            "unix_socket_dir =",
            "auth_type = md5",
            "auth_file = %s" % (self.directory / "users.txt"),
            "admin_users = %s" % ADMIN_USER,
            "pool_mode = transaction",
            "default_pool_size = 5",
            "server_reset_query =",
            "ignore_startup_parameters = extra_float_digits,options",
            "logfile = %s" % self.log,
            "pidfile = %s" % (self.directory / "pgbouncer.pid"),
            "",
        ]), 0o644)

    # -- process -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "PgBouncer":
        self.write_config()
        self.proc = subprocess.Popen([PGBOUNCER_BIN, "-u", RUN_AS, str(self.ini)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pgbouncer exited at start: %s\n%s" % (
                    self.proc.stderr.read().decode(errors="replace"), self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("pgbouncer did not listen on port %d:\n%s" % (self.port, self.log_tail()))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- clients -------------------------------------------------------------------------

    def client_conninfo(self) -> str:
        """What the application connects with; it never changes."""
        return "host=127.0.0.1 port=%d dbname=%s user=%s password=%s connect_timeout=5" % (
            self.port, self.alias, self.user, self.password)

    def admin(self, command: str) -> list[tuple]:
        """One admin console command (SHOW DATABASES, PAUSE app, RELOAD, ...)."""
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer",
                                user=ADMIN_USER, password=ADMIN_PASSWORD, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(command)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()

    def server_of_alias(self) -> tuple[str, int, str]:
        """(host, port, dbname) the alias points at, as pgbouncer itself reports it."""
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer",
                                user=ADMIN_USER, password=ADMIN_PASSWORD, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES")
                names = [d[0] for d in cur.description]
                for row in cur.fetchall():
                    entry = dict(zip(names, row))
                    if entry["name"] == self.alias:
                        return entry["host"], int(entry["port"]), entry["database"]
        finally:
            conn.close()
        raise KeyError(self.alias)

    # -- the cutover hooks, as Ansible task files ----------------------------------------

    def write_hooks(self, directory: Path) -> tuple[Path, Path]:
        """before.yml (PAUSE) and after.yml (rewrite databases.ini for migrate_hook.to,
        RELOAD, RESUME): what a user's hooks for the migrate role look like."""
        admin = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", ADMIN_USER, "-d", "pgbouncer"]

        def command(name: str, sql: str) -> str:
            return ("- name: %s\n  ansible.builtin.command:\n    argv: %s\n"
                    "  environment:\n    PGPASSWORD: %s\n  no_log: true\n  changed_when: true\n"
                    % (name, json.dumps(admin + ["-c", sql]), json.dumps(ADMIN_PASSWORD)))

        before = directory / "before.yml"
        after = directory / "after.yml"
        before.write_text("---\n" + command("Pause pgbouncer", "PAUSE %s" % self.alias))
        after.write_text(
            "---\n"
            "- name: Point pgbouncer at the new origin\n"
            "  ansible.builtin.copy:\n"
            "    dest: %s\n"
            "    mode: \"0644\"\n"
            "    content: |\n"
            "      [databases]\n"
            "      %s = host={{ migrate_hook.to.host }} port={{ migrate_hook.to.port }} "
            "dbname={{ migrate_hook.to.dbname }}\n" % (self.databases, self.alias)
            + command("Reload pgbouncer", "RELOAD")
            + command("Resume pgbouncer", "RESUME %s" % self.alias))
        return before, after
