# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Admin connections to the nodes of one Slony cluster.

The equivalent of slonik's ``cluster name = ...; node N admin conninfo = ...``:
one lazily opened psycopg2 connection per node, set up as slonik sets up its
own (ISO datestyle, ``session_replication_role = local``, an application name),
and checked against the node id it claims to be.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .pg import psycopg2, quote_ident, sql

import threading

from .conninfo import Redactor, conninfo_secrets, parse_conninfo, redact_conninfo
from .errors import SlonyError
from .names import cluster_namespace, validate_node_id
from .waits import Pending, poll_until, timeout_message

DEFAULT_CONNECT_TIMEOUT = 10
APPLICATION_NAME = "dany.slony"

# What a database can be for a cluster, as found when connecting.
NODE_NO_SCHEMA = "no_schema"          # the cluster schema does not exist
NODE_UNINITIALIZED = "uninitialized"  # schema loaded, sl_local_node_id still -1
NODE_INITIALIZED = "initialized"


def normalize_admin_conninfo(admin_conninfo):
    """{node id: conninfo} with int keys; every conninfo must parse."""
    if not isinstance(admin_conninfo, dict) or not admin_conninfo:
        raise SlonyError("admin_conninfo must be a mapping of node id to libpq conninfo, "
                         "with at least one node")
    result = {}
    for key, value in admin_conninfo.items():
        node = validate_node_id(key, "admin_conninfo key")
        if node in result:
            raise SlonyError("admin_conninfo names node %d twice" % node)
        parse_conninfo(value, "admin_conninfo for node %d" % node)
        result[node] = value
    return result


_STATE_QUERY = """
select exists (select 1 from pg_catalog.pg_namespace where nspname = %s),
       pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass(
           pg_catalog.quote_ident(%s) || '.sl_local_node_id'))
"""


def in_parallel(function, items):
    """``{item: (function(item), None) or (None, exception)}``, one thread per item.

    For work that waits on a different server per item (connecting, loading a schema).
    """
    results = {}

    def work(item):
        try:
            results[item] = (function(item), None)
        except Exception as exc:  # pylint: disable=broad-except
            results[item] = (None, exc)

    threads = [threading.Thread(target=work, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class Cluster:
    """Connections to the nodes of one cluster, plus the log of what was executed."""

    def __init__(self, name, admin_conninfo, connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                 application_name=APPLICATION_NAME, redactor=None, read_only=False):
        self.name = name
        # Check mode / dry run: every session is read-only (default_transaction_read_only),
        # so PostgreSQL itself refuses a write that a plan would do by mistake.
        self.read_only = read_only
        self.namespace = cluster_namespace(name)
        self.redactor = redactor or Redactor()
        self.admin_conninfo = normalize_admin_conninfo(admin_conninfo)
        for conninfo in self.admin_conninfo.values():
            self.redactor.add_conninfo(conninfo)
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._conns = {}
        self._open_errors = {}
        self.node_state = {}
        # node -> description of the schema loaded, uncommitted, on its connection
        # (schema.preload_schemas), for the step that initialises the node.
        self.preloaded_schemas = {}
        # Every statement that changed something: dicts with node and (redacted) sql.
        self.queries = []

    # -- identifiers ----------------------------------------------------------------
    @property
    def ns(self):
        """The cluster schema as a psycopg2 identifier (quoted by the driver)."""
        return sql.Identifier(self.namespace)

    def quoted_namespace(self, node):
        return quote_ident(self.namespace, self.connection(node, check_identity=False))

    def nodes(self):
        return sorted(self.admin_conninfo)

    def has_node(self, node):
        return node in self.admin_conninfo

    def describe(self, node):
        """``node N (conninfo without password)`` for messages."""
        conninfo = self.admin_conninfo.get(node)
        if conninfo is None:
            return "node %d" % node
        return "node %d (%s)" % (node, self.redactor.text(redact_conninfo(conninfo)))

    def require_node(self, node, why="this operation"):
        if node not in self.admin_conninfo:
            raise SlonyError("node %d has no entry in admin_conninfo, which %s needs"
                             % (node, why), node=node)

    # -- connections ----------------------------------------------------------------
    def connection(self, node, check_identity=True):
        """The open connection to ``node`` (opened on first use)."""
        self.require_node(node)
        conn = self._conns.get(node)
        if conn is None or conn.closed:
            if node in self._open_errors:
                # open_all() already tried, in this run: do not wait for it twice.
                raise self._open_errors.pop(node)
            conn = self._open(node)
            self._conns[node] = conn
            self.node_state[node] = self._probe_state(node, conn)
        if check_identity:
            self._check_identity(node)
        return conn

    def open_all(self, nodes=None):
        """Open the connections to ``nodes`` (default: every admin node) at the same time.

        Connecting (TCP, TLS, SCRAM) is most of what a module costs on a small cluster,
        and each node's handshake waits on its own server: threads overlap them. A node
        that cannot be reached fails on its next use, with the same error, without a
        second connection attempt.
        """
        def closed(node):
            return self._conns.get(node) is None or self._conns[node].closed

        todo = [n for n in (self.nodes() if nodes is None else nodes)
                if self.has_node(n) and n not in self._open_errors and closed(n)]
        if len(todo) < 2:
            return

        def work(node):
            conn = self._open(node)
            try:
                return conn, self._probe_state(node, conn)
            except Exception:
                conn.close()
                raise

        results = in_parallel(work, todo)
        for node in todo:
            value, exc = results[node]
            conn, state = value if exc is None else (None, None)
            if exc is None:
                self._conns[node], self.node_state[node] = conn, state
            elif isinstance(exc, SlonyError):
                self._open_errors[node] = exc
            else:
                self._open_errors[node] = SlonyError("cannot connect to %s: %s" % (
                    self.describe(node), self.redactor.text(str(exc).strip())), node=node)

    def _open(self, node):
        params = parse_conninfo(self.admin_conninfo[node], "admin_conninfo for node %d" % node)
        params.setdefault("connect_timeout", str(self.connect_timeout))
        params["application_name"] = self.application_name
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise SlonyError("cannot connect to %s: %s" % (
                self.describe(node), self.redactor.text(str(exc).strip())), node=node)
        try:
            with conn.cursor() as cur:
                cur.execute("SET datestyle TO 'ISO'; SET session_replication_role TO local")
                if self.read_only:
                    cur.execute("SET default_transaction_read_only TO on")
            conn.commit()
        except psycopg2.Error as exc:
            conn.close()
            raise SlonyError(
                "%s refused the Slony admin session setup (%s); the admin role must be a "
                "superuser" % (self.describe(node), self.redactor.text(str(exc).strip())),
                node=node)
        return conn

    def _probe_state(self, node, conn):
        try:
            return self._read_state(conn)
        except psycopg2.Error as exc:
            conn.rollback()
            raise SlonyError("%s: cannot read the state of cluster %s: %s" % (
                self.describe(node), self.name, self.redactor.text(str(exc).strip())), node=node,
                sqlstate=exc.pgcode)

    def _read_state(self, conn):
        # One round trip: does the schema exist, and the local node id if it does
        # (the server quotes the schema name).
        with conn.cursor() as cur:
            cur.execute(_STATE_QUERY, (self.namespace, self.namespace))
            has_schema, local_id = cur.fetchone()
        conn.rollback()
        if not has_schema:
            return (NODE_NO_SCHEMA, None)
        if local_id is None or local_id < 0:
            return (NODE_UNINITIALIZED, None)
        return (NODE_INITIALIZED, local_id)

    def _check_identity(self, node):
        state, local_id = self.node_state[node]
        if state == NODE_INITIALIZED and local_id != node:
            conninfo = self.redactor.text(redact_conninfo(self.admin_conninfo[node]))
            raise SlonyError(
                "admin_conninfo for node %d (%s) reaches the database of node %d of cluster "
                "%s, not node %d" % (node, conninfo, local_id, self.name, node), node=node)

    def state(self, node):
        """(state, local node id) of the database behind ``node``'s conninfo."""
        self.connection(node, check_identity=False)
        return self.node_state[node]

    def initialized_nodes(self):
        """Admin nodes whose database is an initialised node of the cluster, skipping the
        ones that cannot be reached (nothing can be read or waited for there)."""
        nodes = []
        self.open_all()
        for node in self.nodes():
            try:
                if self.state(node)[0] == NODE_INITIALIZED:
                    nodes.append(node)
            except SlonyError:
                continue
        return nodes

    def require_initialized(self, node):
        state, dummy = self.state(node)
        if state != NODE_INITIALIZED:
            raise SlonyError("%s is not a node of Slony cluster %s (%s)" % (
                self.describe(node), self.name,
                "no schema %s" % self.namespace if state == NODE_NO_SCHEMA
                else "schema %s exists but was never initialised" % self.namespace), node=node)
        return self.connection(node)

    def discard(self, node):
        """Close and forget a connection (after schema loads or uninstall)."""
        conn = self._conns.pop(node, None)
        self.node_state.pop(node, None)
        self.preloaded_schemas.pop(node, None)
        if conn is not None and not conn.closed:
            try:
                conn.rollback()
            finally:
                conn.close()

    def close(self):
        for node in list(self._conns):
            self.discard(node)
        self.release_run_lock()

    # -- one run at a time ------------------------------------------------------------
    # Two runs changing one cluster at once could plan the same change twice (two
    # STORE NODEs, two ids for one table). A run that changes something first takes a
    # session-level advisory lock, on its own connection, on the lowest-numbered node it
    # can reach; a second run with the same admin_conninfo waits for it, boundedly.
    RUN_LOCK_CLASS = 0x510E  # first key of pg_advisory_lock(int4, int4): "dany.slony"

    _lock_conn = None
    lock_node = None

    def acquire_run_lock(self, timeout, clock=None):
        """Take the run lock, waiting at most ``timeout`` seconds for another run."""
        if self._lock_conn is not None:
            return self.lock_node
        node, conn = self._run_lock_connection()
        try_lock = ("select pg_try_advisory_lock(%s, hashtext(%s))",
                    (self.RUN_LOCK_CLASS, self.namespace))

        def probe():
            with conn.cursor() as cur:
                cur.execute(*try_lock)
                if cur.fetchone()[0]:
                    return node
            return Pending(note=None)

        def on_timeout(pending):
            with conn.cursor() as cur:
                cur.execute(
                    "select string_agg(a.pid || ' (' || coalesce(a.application_name, '')"
                    " || ', since ' || a.backend_start::text || ')', ', ')"
                    " from pg_locks l join pg_stat_activity a on a.pid = l.pid"
                    " where l.locktype = 'advisory' and l.granted"
                    " and l.classid = %s::oid", (self.RUN_LOCK_CLASS,))
                holder = cur.fetchone()[0]
            conn.close()
            return SlonyError(timeout_message(
                "the run lock of cluster %s" % self.name, timeout,
                note="another run is changing the cluster (it holds the run lock on node %d: "
                     "backend %s)" % (node, holder or "unknown")), node=node)

        try:
            self.lock_node = poll_until(probe, timeout, on_timeout, clock=clock)
        except psycopg2.Error as exc:
            conn.close()
            raise self.error(node, exc, doing="take the run lock")
        self._lock_conn = conn
        return node

    def _run_lock_connection(self):
        """(node, autocommit connection) on the lowest-numbered node that answers."""
        errors = []
        for node in self.nodes():
            params = parse_conninfo(self.admin_conninfo[node], "admin_conninfo for node %d" % node)
            params.setdefault("connect_timeout", str(self.connect_timeout))
            params["application_name"] = self.application_name + " (run lock)"
            try:
                conn = psycopg2.connect(**params)
            except psycopg2.Error as exc:
                errors.append("node %d: %s" % (node, str(exc).strip().splitlines()[0]))
                continue
            conn.autocommit = True
            return node, conn
        raise SlonyError("cannot take the run lock of cluster %s: no node is reachable (%s)"
                         % (self.name, self.redactor.text("; ".join(errors))))

    def release_run_lock(self):
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            finally:
                self._lock_conn, self.lock_node = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- statements -----------------------------------------------------------------
    def fetch(self, node, query, params=None, check_identity=True):
        """Run a read-only query in its own short transaction; return all rows."""
        conn = self.connection(node, check_identity=check_identity)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                rows = cur.fetchall()
            conn.rollback()
        except psycopg2.Error as exc:
            conn.rollback()
            raise self.error(node, exc)
        return rows

    def render(self, node, query, params=None):
        """The statement as it would be sent, passwords redacted."""
        conn = self.connection(node, check_identity=False)
        if params:
            # A conninfo argument (storePath) is shown with its password replaced.
            params = tuple(redact_conninfo(p) if isinstance(p, str) and conninfo_secrets(p)
                           else p for p in params)
        with conn.cursor() as cur:
            text = cur.mogrify(query, params)
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return self.redactor.text(text)

    def log(self, node, text):
        self.queries.append({"node": node, "sql": self.redactor.text(text)})

    def error(self, node, exc, doing=None):
        """A SlonyError for a database error on ``node``, with the primary message only."""
        message = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc)
        if doing:
            text = "node %d: %s failed: %s" % (node, doing, message.strip())
        else:
            text = "node %d: %s" % (node, message.strip())
        return SlonyError(self.redactor.text(text), node=node, queries=self.queries,
                          sqlstate=getattr(exc, "pgcode", None))
