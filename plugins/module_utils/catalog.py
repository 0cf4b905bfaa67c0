# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A snapshot of one node's Slony catalog, read in a single round trip.

Whatever the number of nodes, paths, tables or subscriptions, reading a node
costs one query (two with ``status=True``), so planning a change to a set of
thousands of tables is as cheap as planning a change to one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .pg import sql

Node = namedtuple("Node", "id active comment failed")
Path = namedtuple("Path", "server client conninfo connretry")
Listen = namedtuple("Listen", "origin provider receiver")
Set = namedtuple("Set", "id origin locked comment")
Table = namedtuple("Table", "id set schema name key comment")
Sequence = namedtuple("Sequence", "id set schema name comment")
Subscription = namedtuple("Subscription", "set provider receiver forward active")
SetSync = namedtuple("SetSync", "set origin seqno")
Status = namedtuple("Status", "origin received last_event last_received lag_events lag_seconds")

PENDING_CONNINFO = "<event pending>"


class Snapshot:
    """The catalog as one node sees it. Plain data, no connection."""

    def __init__(self, node, local_id=None, nodes=(), paths=(), listens=(), sets=(), tables=(),
                 sequences=(), subscriptions=(), setsyncs=(), status=(), slon_running=None):
        self.node = node
        self.local_id = local_id
        self.nodes = dict((n.id, n) for n in nodes)
        self.paths = dict(((p.server, p.client), p) for p in paths)
        self.listens = sorted(listens)
        self.sets = dict((s.id, s) for s in sets)
        self.tables = dict((t.id, t) for t in tables)
        self.sequences = dict((s.id, s) for s in sequences)
        self.subscriptions = dict(((s.set, s.receiver), s) for s in subscriptions)
        self.setsyncs = dict((s.set, s) for s in setsyncs)
        self.status = list(status)
        self.slon_running = slon_running

    def table_by_name(self, schema, name):
        for table in self.tables.values():
            if table.schema == schema and table.name == name:
                return table
        return None

    def sequence_by_name(self, schema, name):
        for seq in self.sequences.values():
            if seq.schema == schema and seq.name == name:
                return seq
        return None

    def receivers(self, set_id):
        return sorted(s.receiver for s in self.subscriptions.values() if s.set == set_id)

    def as_dict(self):
        """JSON-friendly form (for facts and diffs)."""
        return {
            "node": self.node,
            "nodes": [n._asdict() for n in sorted(self.nodes.values())],
            "paths": [p._asdict() for p in sorted(self.paths.values())],
            "listens": [entry._asdict() for entry in self.listens],
            "sets": [s._asdict() for s in sorted(self.sets.values())],
            "tables": [t._asdict() for t in sorted(self.tables.values())],
            "sequences": [s._asdict() for s in sorted(self.sequences.values())],
            "subscriptions": [s._asdict() for s in sorted(self.subscriptions.values())],
        }


CATALOG_QUERY = """
select
  (select last_value from {ns}.sl_local_node_id),
  (select coalesce(json_agg(json_build_array(no_id, no_active, no_comment, no_failed)
                            order by no_id), '[]') from {ns}.sl_node),
  (select coalesce(json_agg(json_build_array(pa_server, pa_client, pa_conninfo, pa_connretry)
                            order by pa_server, pa_client), '[]') from {ns}.sl_path),
  (select coalesce(json_agg(json_build_array(li_origin, li_provider, li_receiver)), '[]')
     from {ns}.sl_listen),
  (select coalesce(json_agg(json_build_array(set_id, set_origin, set_locked, set_comment)
                            order by set_id), '[]') from {ns}.sl_set),
  (select coalesce(json_agg(json_build_array(tab_id, tab_set, tab_nspname, tab_relname,
                                             tab_idxname, tab_comment) order by tab_id), '[]')
     from {ns}.sl_table),
  (select coalesce(json_agg(json_build_array(seq_id, seq_set, seq_nspname, seq_relname,
                                             seq_comment) order by seq_id), '[]')
     from {ns}.sl_sequence),
  (select coalesce(json_agg(json_build_array(sub_set, sub_provider, sub_receiver, sub_forward,
                                             sub_active) order by sub_set, sub_receiver), '[]')
     from {ns}.sl_subscribe),
  (select coalesce(json_agg(json_build_array(ssy_setid, ssy_origin, ssy_seqno)), '[]')
     from {ns}.sl_setsync),
  exists (select 1 from {ns}.sl_nodelock
           where nl_nodeid = (select last_value from {ns}.sl_local_node_id)
             and exists (select 1 from pg_catalog.pg_stat_activity where pid = nl_backendpid))
"""

_STATUS_QUERY = """
select st_origin, st_received, st_last_event, st_last_received, st_lag_num_events,
       extract(epoch from st_lag_time)::float8
  from {ns}.sl_status order by st_received
"""


def feeding_order(items, origin, provider=lambda item: item.provider,
                  receiver=lambda item: item.receiver):
    """``items`` (subscriptions, or anything with a provider and a receiver) ordered so
    that every provider comes before the receivers it feeds; ties keep their order.
    A provider that is neither the origin nor one of the receivers (a broken catalog)
    does not block the others: its receivers come next, in their order."""
    done, ordered, rest = set([origin]), [], list(items)
    while rest:
        ready = [item for item in rest if provider(item) in done] or rest[:1]
        for item in ready:
            ordered.append(item)
            done.add(receiver(item))
            rest.remove(item)
    return ordered


def read_snapshot(cluster, node, status=False):
    """Read ``node``'s catalog. The node must be an initialised node of the cluster."""
    cluster.require_initialized(node)
    row = cluster.fetch(node, catalog_query(cluster))[0]
    status_rows = []
    if status:
        status_rows = [Status(*r) for r in cluster.fetch(
            node, sql.SQL(_STATUS_QUERY).format(ns=cluster.ns))]
    return snapshot_from_row(node, row, status_rows)


def catalog_query(cluster):
    """The one-round-trip catalog query (for callers that run it in their own transaction)."""
    return sql.SQL(CATALOG_QUERY).format(ns=cluster.ns)


def snapshot_from_row(node, row, status=()):
    """A Snapshot from the row :func:`catalog_query` returns."""
    return Snapshot(
        node,
        local_id=row[0],
        nodes=[Node(*r) for r in row[1]],
        paths=[Path(*r) for r in row[2]],
        listens=[Listen(*r) for r in row[3]],
        sets=[Set(*r) for r in row[4]],
        tables=[Table(*r) for r in row[5]],
        sequences=[Sequence(*r) for r in row[6]],
        subscriptions=[Subscription(*r) for r in row[7]],
        setsyncs=[SetSync(*r) for r in row[8]],
        status=status,
        slon_running=row[9],
    )
