"""Shared pieces of the acceptance scenarios: the 5-node cascade, a writer that follows
the origin, and a checker of every replicated table and sequence on every node.

The topology of Slony-I's own disorder tests: node 1 origin of set 1, nodes 2 and 3
subscribe from it (forwarding), nodes 4 and 5 subscribe from node 3; full-mesh paths.
The cluster is built with the collection's modules, run as users run them (the
``ansible`` command, tests/integration/ansible_run.py).
"""

from __future__ import annotations

import threading
import time

import psycopg2

from ansible_run import run_module
from lab import SlonDaemon, SlonError, SlonFleet, wait_until
from writer import Writer

CLUSTER = "acc"
NS = '"_%s"' % CLUSTER

# The tables the writer fills (one bigserial key and a note, as writer.Writer expects),
# created on every node before replication, and replicated with their sequences.
WRITER_TABLES = ("acc.orders_log", "acc.payments_log", "acc.audit_trail")
ACCEPTANCE_SCHEMA_SQL = "create schema acc; " + " ".join(
    "create table %s (id bigserial primary key, note text not null, "
    "written_at timestamptz not null default now());" % t for t in WRITER_TABLES) + \
    " create sequence acc.ticket_seq;"
SAMPLE_TABLES = ["public.customers", "public.products", "public.orders", "billing.invoices"]

# The cascade: receiver -> provider.
CASCADE = {2: 1, 3: 1, 4: 3, 5: 3}

# slon's intervals for the 5-node labs. The integration lab's -t 250 ms (lab.py) makes
# every idle node emit four SYNCs a second, which 4 other nodes each process and confirm:
# measured on the 2-core machine, an idle 5-node cascade kept 0.9-1.3 cores busy with it
# and 0.33 with -t 1000 (0.6 with the writers running). Two labs at -t 250 saturated
# the machine and stretched scenarios 3-4x. A confirmation takes 0.5-1.2 s at -t 1000.
SLON_OPTIONS = {"sync_interval": 100, "sync_interval_timeout": 1000}


class Registry:
    """Every lab and slon fleet the suite started, stopped on any exit (idempotent)."""

    def __init__(self):
        self.labs = []
        self.fleets = []
        self._lock = threading.Lock()

    def add_lab(self, lab):
        self.labs.append(lab)

    def add_fleet(self, fleet):
        self.fleets.append(fleet)

    def forget_fleet(self, fleet):
        if fleet in self.fleets:
            self.fleets.remove(fleet)

    def stop_lab(self, lab):
        if lab in self.labs:
            self.labs.remove(lab)
        if lab.settings.keep:
            return
        try:
            lab.down()
        except Exception:  # noqa: BLE001 - the servers must stop whatever went wrong
            for node in lab.node_ids:
                try:
                    lab.stop_server(node, mode="fast")
                except Exception:  # noqa: BLE001
                    pass

    def cleanup(self):
        with self._lock:
            for fleet in list(self.fleets):
                fleet.kill_all()
                self.forget_fleet(fleet)
            for lab in list(self.labs):
                self.stop_lab(lab)


def common(db, **extra):
    args = {"cluster_name": CLUSTER, "wait_timeout": 120,
            "admin_conninfo": {str(n): db.conninfo(n) for n in db.node_ids}}
    args.update(extra)
    return args


def slon_backend(db, node):
    """The backend of the live sl_nodelock registration of ``node``'s slon, or None."""
    try:
        return db.scalar(node, f"select nl_backendpid from {NS}.sl_nodelock "
                               f"where nl_nodeid = {NS}.getLocalNodeId('_{CLUSTER}') and exists "
                               "(select 1 from pg_stat_activity where pid = nl_backendpid)")
    except psycopg2.Error:
        return None


class Cascade:
    """The 5-node cascade of one fresh database, and what the scenarios do to it."""

    def __init__(self, db, registry):
        self.db = db
        self.slons = SlonFleet(db, CLUSTER, options=SLON_OPTIONS)
        registry.add_fleet(self.slons)
        self.dead = set()

    @property
    def alive(self):
        return [n for n in self.db.node_ids if n not in self.dead]

    def args(self, admin_nodes=None, **extra):
        admin_nodes = self.alive if admin_nodes is None else admin_nodes
        args = common(self.db, **extra)
        args["admin_conninfo"] = {str(n): self.db.conninfo(n) for n in admin_nodes}
        return args

    def module(self, module, check=False, diff=False, expect_failure=False, admin_nodes=None,
               **extra):
        return run_module(module, self.args(admin_nodes, **extra), check=check, diff=diff,
                          expect_failure=expect_failure, timeout=600)

    def bring_up(self, cascade=None, subscribe=True):
        """Nodes, slons, full-mesh paths, set 1 (the writer's tables and sequences, the
        sample tables, a standalone sequence), and (``subscribe``) the cascade's
        subscriptions."""
        cascade = cascade or CASCADE
        nodes = self.db.node_ids
        self.module("slony_node", nodes=[{"id": n, "comment": "node %d" % n} for n in nodes])
        self.slons.start()
        self.module("slony_path", paths=[
            {"server": s, "client": c, "conninfo": self.db.conninfo(s)}
            for s in nodes for c in nodes if s != c])
        self.module("slony_set", id=1, origin=1, comment="acceptance")
        self.module("slony_table", set_id=1, tables=list(WRITER_TABLES) + SAMPLE_TABLES)
        self.module("slony_sequence", set_id=1, sequences=[
            "acc.ticket_seq", "public.invoice_number_seq"] + [
            "%s_id_seq" % t for t in WRITER_TABLES])
        if not subscribe:
            return
        # Providers first: the module orders the receivers itself.
        self.module("slony_subscription", set_id=1, receivers=[
            {"receiver": r, "provider": p, "forward": True} for r, p in sorted(cascade.items())])

    # -- faults ---------------------------------------------------------------------------

    def kill_node(self, *nodes):
        """The node's machine dies: its PostgreSQL stopped with -m immediate, its slon
        killed."""
        for node in nodes:
            self.db.lab.stop_server(node, "immediate")
            self.dead.add(node)
        for node in nodes:
            self.slons.kill(node)

    def start_slon(self, node, timeout=60):
        """Start a slon while other nodes are down: readiness is its live registration
        (the harness's own check would take the failed connection to a dead node for a
        start failure)."""
        self.slons.start(node, wait=False)
        wait_until(lambda: slon_backend(self.db, node), timeout=timeout,
                   message="slon of node %d registered" % node)

    def catalog(self, node, what):
        queries = {
            "sets": f"select set_id, set_origin from {NS}.sl_set order by 1",
            "subscriptions": f"select sub_set, sub_provider, sub_receiver, sub_active "
                             f"from {NS}.sl_subscribe order by 1, 3",
            "nodes": f"select no_id from {NS}.sl_node order by 1",
            "config": f"select ev_origin, ev_seqno, ev_type from {NS}.sl_event "
                      "where ev_type <> 'SYNC' order by 1, 2",
        }
        return self.db.query(node, queries[what])

    def config_dump(self, nodes):
        """What a refused call must not change: the configuration tables (what the slons
        do not touch on their own) and the configuration events on each node."""
        tables = {
            "sl_node": "select no_id, no_active, no_failed from {ns}.sl_node order by 1",
            "sl_path": "select pa_server, pa_client, pa_conninfo from {ns}.sl_path order by 1, 2",
            "sl_set": "select set_id, set_origin, set_locked from {ns}.sl_set order by 1",
            "sl_subscribe": "select sub_set, sub_provider, sub_receiver, sub_forward, sub_active "
                            "from {ns}.sl_subscribe order by 1, 3",
            "config_events": "select ev_origin, ev_seqno, ev_type from {ns}.sl_event "
                      "where ev_type not in ('SYNC') and ev_origin = "
                      "{ns}.getLocalNodeId('_%s') order by 1, 2" % CLUSTER,
        }
        return {n: {k: self.db.query(n, q.format(ns=NS)) for k, q in tables.items()}
                for n in nodes}


# -- the writer ---------------------------------------------------------------------------

class OriginWriter:
    """Commits rows into every writer table, on whichever node is the set's origin, and
    records every committed key (one :class:`writer.Writer` per table; :meth:`follow`
    moves them to the new origin). Rows whose COMMIT result is unknown (the server died
    during COMMIT) are counted as uncertain."""

    def __init__(self, db, tables=WRITER_TABLES, pause=0.01):
        self.db = db
        self.tables = tables
        self.pause = pause
        self.node = None
        self.writers = []
        self.retired = []

    def start(self, node):
        self.node = node
        self.writers = [Writer(self.db.conninfo(node), table, pause=self.pause)
                        for table in self.tables]
        for w in self.writers:
            w.start()
        for w in self.writers:
            w.wait_for_commits(5, timeout=60)
        return self

    def follow(self, node):
        self.stop()
        return self.start(node)

    def stop(self):
        for w in self.writers:
            w.stop()
        self.retired.extend(self.writers)
        self.writers = []

    def wait_for_commits(self, count, timeout=60):
        for w in self.writers:
            w.wait_for_commits(count, timeout)

    def committed(self):
        """{table: set of committed keys}, over every node the writer wrote on."""
        out = dict((t, set()) for t in self.tables)
        for w in self.retired + self.writers:
            out[w.table].update(w.committed)
        return out

    def uncertain_count(self):
        return sum(len(w.uncertain) for w in self.retired + self.writers)


def keys_on(db, node, tables=WRITER_TABLES):
    return dict((t, set(r[0] for r in db.query(node, "select id from %s" % t))) for t in tables)


# -- the checker --------------------------------------------------------------------------

def _key_columns(db, node, schema, table, index):
    rows = db.query(node, "select a.attname from pg_index i join pg_attribute a "
                          "on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
                          "where i.indexrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass "
                          "order by array_position(i.indkey, a.attnum)", (schema, index))
    del table
    return [r[0] for r in rows]


def digest(db, node):
    """{object: value} of node's replicated data: per table of sl_table (rows, md5 of
    the rows in key order), per sequence of sl_sequence (last_value)."""
    out = {}
    tables = db.query(node, f"select tab_nspname, tab_relname, tab_idxname from {NS}.sl_table "
                            "order by tab_id")
    for schema, table, index in tables:
        keys = ", ".join('"%s"' % k for k in _key_columns(db, node, schema, table, index))
        name = '"%s"."%s"' % (schema, table)
        out["table %s.%s" % (schema, table)] = tuple(db.query(
            node, "select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by %s), '')) "
                  "from %s t" % (keys, name))[0])
    for schema, seq in db.query(node, f"select seq_nspname, seq_relname from {NS}.sl_sequence "
                                      "order by seq_id"):
        out["sequence %s.%s" % (schema, seq)] = db.scalar(
            node, 'select last_value from "%s"."%s"' % (schema, seq))
    return out


def differences(digests):
    """What differs between the digests of several nodes ({node: digest}), as text."""
    nodes = sorted(digests)
    reference = digests[nodes[0]]
    problems = []
    for node in nodes[1:]:
        other = digests[node]
        for name in sorted(set(reference) | set(other)):
            if reference.get(name) != other.get(name):
                problems.append("%s: node %d has %r, node %d has %r" % (
                    name, nodes[0], reference.get(name), node, other.get(name)))
    return problems


def assert_no_drift(cascade, nodes, timeout=120):
    """``slony_info`` over the live nodes, once no configuration event is in flight (drift
    seen while one is, is only settling): no drift, every node compared and reachable,
    every subscription complete. Returns the module's result."""
    def settled():
        info = cascade.module("slony_info").result
        return info if not info["config_in_flight"] else None

    info = wait_until(settled, timeout=timeout, interval=1,
                      message="no configuration event in flight (slony_info)")
    assert info["drift"] == [], info["drift"]
    assert info["unreachable_nodes"] == [], info["unreachable_nodes"]
    assert info["compared_nodes"] == sorted(nodes), info["compared_nodes"]
    assert all(s["complete"] for s in info["subscriptions"]), info["subscriptions"]
    return info


def wait_converged(db, nodes, timeout=120):
    """Wait until every replicated table (rows + checksum) and every sequence is equal on
    ``nodes`` (the writers stopped); return the common digest, or fail with what differs."""
    deadline = time.monotonic() + timeout
    while True:
        digests = dict((n, digest(db, n)) for n in nodes)
        problems = differences(digests)
        if not problems and digests[nodes[0]]:
            return digests[nodes[0]]
        if time.monotonic() > deadline:
            raise AssertionError("nodes %s did not converge within %ss: %s" % (
                nodes, timeout, "; ".join(problems[:10])))
        time.sleep(0.5)


__all__ = ["Registry", "Cascade", "OriginWriter", "digest", "differences", "wait_converged",
           "assert_no_drift",
           "keys_on", "SlonDaemon", "SlonError", "ACCEPTANCE_SCHEMA_SQL", "CLUSTER", "NS"]
