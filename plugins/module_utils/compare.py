# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data comparison between the nodes of a cluster: rows of every replicated table, in
key ranges, and every replicated sequence, without false differences while writes go on.

How a comparison is made consistent (one *round*, per set origin):

1. On the origin, a connection takes ``sl_event_lock`` (the lock slon's sync thread
   and slonik take before they create an event) and keeps it: no other event of the
   origin can be created for now.
2. A second, new connection opens a REPEATABLE READ transaction and creates a SYNC
   (``createEvent``), as slon's sync thread does. The SYNC records the transaction's
   snapshot (``ev_snapshot``) and, from a new session, the value of every sequence of
   the origin (``sl_seqlog``). The snapshot is exported (``pg_export_snapshot``) and a
   third connection imports it in a READ ONLY transaction: that one reads the origin's
   tables exactly as the SYNC sees them (checked: its ``txid_current_snapshot()`` must
   equal the event's snapshot). The SYNC is committed.
3. Each receiver is polled (through :func:`waits.poll_until`) in READ ONLY, REPEATABLE
   READ transactions until its own ``sl_setsync`` says it applied the SYNC. Slon
   applies all of one SYNC in one transaction, and the origin can create no later event
   while the lock is held, so the receiver stops exactly there: the transaction that
   sees it has exactly the rows the origin had in the SYNC's snapshot. That transaction
   is kept for the reads. The lock is released when every receiver is there, or after
   :data:`HOLD_LIMIT` seconds (a receiver far behind must not keep the origin from
   creating events for long), or at once for the receivers whose slon does not run; a
   receiver found past the SYNC is compared too, but then only an equal result counts.
4. The origin's key ranges are planned from the key order on the origin (one index
   scan per range), then every node computes ``count(*)`` and an md5 of the rows' text
   in key order per range, in parallel, each in its pinned snapshot.

A range that differs where both sides were pinned on the same SYNC is checked once
more in a new round before it is reported (:data:`CONFIRMATIONS`); a range that differs
where the receiver was past the SYNC is re-checked; rounds stop after
:data:`MAX_ROUNDS` or at the deadline (``wait_timeout`` bounds the whole comparison),
and what is still open is reported as undecided, with the reason.

Nothing is written but the SYNC events (one per round and origin), which change no data
and are what slony_sync creates too. The tables are never locked: the reads take the
usual ACCESS SHARE lock of a SELECT.

The decisions (scope, key ranges, per-range and per-sequence verdicts, the result) are
pure functions of plain data, unit-tested without a database.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .pg import psycopg2, sql

from .catalog import read_snapshot
from .cluster import in_parallel
from .errors import SlonyError
from .events import Event, event_dict
from .names import validate_node_id
from .waits import SYSTEM_CLOCK, Behind, Pending, poll_until, slon_state, timeout_message

DEFAULT_CHUNK_SIZE = 10000
# Longest time the origin's event creation is held while the receivers reach the SYNC.
HOLD_LIMIT = 10.0
# Rounds (one SYNC each) per origin at most.
MAX_ROUNDS = 6
# Rounds, with both sides on the same SYNC, in which a range must differ to be reported.
CONFIRMATIONS = 2
# Receivers are polled this often for the SYNC (a cheap query): the faster, the more
# often a receiver is seen exactly on it when the hold had to be released.
RECEIVER_POLL = 0.02

EQUAL = "equal"
DIFFERENT = "different"
UNDECIDED = "undecided"
BEHIND = "behind"
RECHECK = "recheck"  # internal: look again in the next round

# Where a receiver was when it was read: exactly on the round's SYNC, past it, or
# (never pinned) before it.
EXACT = "exact"
AFTER = "after"
BEFORE = "before"

# A table to compare, as the set origin's sl_table has it.
TableRef = namedtuple("TableRef", "id set schema name key_index")
SequenceRef = namedtuple("SequenceRef", "id set schema name")
# One set to compare: its origin, the receivers to compare with it, its tables and sequences.
SetScope = namedtuple("SetScope", "id origin receivers tables sequences")
# A key column as the origin has it: name, SQL type (format_type) and whether it has a collation.
KeyColumn = namedtuple("KeyColumn", "name type collatable")


def qualified(schema, name):
    return "%s.%s" % (schema, name)


# -- scope (pure) -----------------------------------------------------------------------------

def _ids(values, what):
    if values is None:
        return None
    result = []
    for value in values:
        number = validate_node_id(value, what)
        if number not in result:
            result.append(number)
    return result


def _set_origin(set_id, snapshots):
    """The origin of ``set_id``: the node whose own catalog says it is the origin, else what
    the lowest-numbered node read records."""
    claims = [n for n in sorted(snapshots) if set_id in snapshots[n].sets and snapshots[n].sets[set_id].origin == n]
    if claims:
        return claims[0]
    for node in sorted(snapshots):
        if set_id in snapshots[node].sets:
            return snapshots[node].sets[set_id].origin
    return None


def select_scope(snapshots, admin_nodes, nodes=None, sets=None, tables=None, sequences=True,
                 unreadable=None):
    """The sets to compare, with origin, receivers, tables and sequences. Pure.

    ``snapshots``: {node: catalog.Snapshot} of the nodes read; ``admin_nodes``: the nodes
    of admin_conninfo; ``unreadable``: {node: why} of the nodes that could not be read.
    ``nodes`` (default: every admin node) are the nodes to compare; the origin of each set
    is always read. ``sets`` and ``tables`` filter. Raises SlonyError naming every
    unknown set, table or node at once.
    """
    unreadable = unreadable or {}
    problems = []
    wanted_nodes = _ids(nodes, "nodes entry")
    if wanted_nodes is not None:
        missing = [n for n in wanted_nodes if n not in admin_nodes]
        if missing:
            problems.append("nodes: %s not in admin_conninfo" % ", ".join("node %d" % n for n in missing))
    if not snapshots:
        why = "; ".join("node %d: %s" % (n, unreadable[n]) for n in sorted(unreadable))
        raise SlonyError("no node of admin_conninfo could be read" + (": " + why if why else ""))
    known_sets = set()
    for snap in snapshots.values():
        known_sets.update(snap.sets)
    wanted_sets = _ids(sets, "sets entry")
    if wanted_sets is not None:
        unknown = [s for s in wanted_sets if s not in known_sets]
        if unknown:
            problems.append("sets: %s %s not a set of the cluster (sets: %s)" % (
                ", ".join(map(str, unknown)), "is" if len(unknown) == 1 else "are",
                ", ".join(map(str, sorted(known_sets))) or "none"))
    set_ids = sorted(known_sets) if wanted_sets is None else sorted(s for s in wanted_sets if s in known_sets)
    compared = wanted_nodes if wanted_nodes is not None else sorted(admin_nodes)

    scopes, seen_tables = [], set()
    wanted_tables = None if tables is None else [str(t).strip() for t in tables]
    for set_id in set_ids:
        origin = _set_origin(set_id, snapshots)
        if origin not in snapshots:
            why = unreadable.get(origin, "it has no entry in admin_conninfo") if origin is not None else "unknown"
            problems.append("set %d: its origin, node %s, cannot be read (%s)" % (set_id, origin, why))
            continue
        snap = snapshots[origin]
        receivers = [r for r in snap.receivers(set_id) if r in compared and r != origin]
        members = [TableRef(t.id, t.set, t.schema, t.name, t.key) for t in sorted(snap.tables.values()) if t.set == set_id]
        if wanted_tables is not None:
            members = [t for t in members if qualified(t.schema, t.name) in wanted_tables]
        seen_tables.update(qualified(t.schema, t.name) for t in members)
        if not receivers:
            continue  # no compared node subscribes to it: nothing to compare
        seqs = []
        if sequences:
            seqs = [SequenceRef(s.id, s.set, s.schema, s.name) for s in sorted(snap.sequences.values()) if s.set == set_id]
        scopes.append(SetScope(set_id, origin, receivers, members, seqs))
    if wanted_tables is not None:
        unknown = [t for t in wanted_tables if t not in seen_tables]
        if unknown:
            problems.append("tables: %s %s not a replicated table of the compared sets" % (
                ", ".join(unknown), "is" if len(unknown) == 1 else "are"))
    if problems:
        raise SlonyError("; ".join(problems))
    return scopes


# -- key ranges and verdicts (pure) ---------------------------------------------------------

def chunk_ranges(boundaries):
    """Key ranges from the last keys of the origin's chunks, in key order.

    Range i is ``(from_key, to_key]``; the first starts below every key (None), the last
    ends above every key (None), so that every key of any node falls in one range.
    """
    ranges, lower = [], None
    for upper in boundaries:
        ranges.append((lower, tuple(upper)))
        lower = tuple(upper)
    ranges.append((lower, None))
    return ranges


def decide_item(equal, position, seen_different, confirmations=CONFIRMATIONS):
    """(verdict, times seen different) for one range or sequence after one round.

    Equal is equal wherever the receiver was (a receiver past the SYNC that still has the
    origin's rows or value is in sync). A difference counts only with both sides on the
    same SYNC, and is reported once it was seen in ``confirmations`` such rounds.
    """
    if equal:
        return EQUAL, seen_different
    if position != EXACT:
        return RECHECK, seen_different
    seen = seen_different + 1
    return (DIFFERENT if seen >= confirmations else RECHECK), seen


def unpinned_sequence_status(origin_value, node_value):
    """A sequence on a receiver that did not reach the SYNC: a lower value is behind (a
    sequence travels with SYNC events), the same value equal, a higher one undecided."""
    if node_value is None or origin_value is None:
        return UNDECIDED
    if node_value == origin_value:
        return EQUAL
    return BEHIND if node_value < origin_value else UNDECIDED


def worst(statuses):
    """The status of a table or sequence over its receivers."""
    for status in (DIFFERENT, UNDECIDED, BEHIND):
        if status in statuses:
            return status
    return EQUAL


def needs_c_collation(key_columns, origin_collation, node_collations):
    """Whether the key order must use the "C" collation: a key column has a collation and
    the nodes' database collations differ (their orders could differ)."""
    if not any(c.collatable for c in key_columns):
        return False
    return any(c != origin_collation for c in node_collations)


# -- state of one comparison ------------------------------------------------------------------

class TableState:
    """What is known of one table: its layout on the origin, its ranges, and per receiver
    the verdict of every range."""

    def __init__(self, scope, ref):
        self.scope = scope
        self.ref = ref
        self.name = qualified(ref.schema, ref.name)
        self.columns = None
        self.key = None
        self.collate_c = False
        self.ranges = None
        self.rows = {}
        # receiver -> {range index: {"status", "seen", "origin", "node"}}
        self.verdicts = dict((r, {}) for r in scope.receivers)
        # receiver -> why nothing could be compared (or None)
        self.problems = {}

    def pending(self, node):
        """Range indexes still to compare on ``node`` (all of them before the first round)."""
        if node in self.problems:
            return []
        if self.ranges is None:
            return None
        done = self.verdicts[node]
        return [i for i in range(len(self.ranges)) if done.get(i, {}).get("status") in (None, RECHECK)]

    def open_on(self, node):
        pending = self.pending(node)
        return pending is None or bool(pending)

    def record(self, node, index, origin_result, node_result, position):
        entry = self.verdicts[node].setdefault(index, {"status": None, "seen": 0})
        status, seen = decide_item(origin_result == node_result, position, entry["seen"])
        entry.update(status=status, seen=seen, origin=origin_result, node=node_result)

    def status(self, node):
        if node in self.problems:
            return self.problems[node][0]
        if self.ranges is None:
            return UNDECIDED
        statuses = [self.verdicts[node].get(i, {}).get("status") for i in range(len(self.ranges))]
        if DIFFERENT in statuses:
            return DIFFERENT
        if all(s == EQUAL for s in statuses):
            return EQUAL
        return UNDECIDED

    def first_difference(self, node):
        if node in self.problems:
            return None
        for index in range(len(self.ranges or [])):
            entry = self.verdicts[node].get(index, {})
            if entry.get("status") == DIFFERENT:
                return index, entry
        return None


class SequenceState:
    def __init__(self, scope, ref):
        self.scope = scope
        self.ref = ref
        self.name = qualified(ref.schema, ref.name)
        self.origin_value = None
        self.values = {}
        self.verdicts = dict((r, {"status": None, "seen": 0}) for r in scope.receivers)

    def open_on(self, node):
        return self.verdicts[node]["status"] in (None, RECHECK)

    def record(self, node, origin_value, node_value, position):
        entry = self.verdicts[node]
        status, seen = decide_item(origin_value == node_value, position, entry["seen"])
        entry.update(status=status, seen=seen)
        self.origin_value = origin_value
        self.values[node] = node_value

    def status(self, node):
        status = self.verdicts[node]["status"]
        return UNDECIDED if status in (None, RECHECK) else status


def key_text(key):
    return None if key is None else list(key)


def build_result(tables, sequences, reasons, events, cluster_name):
    """The module's return value from the states. Pure."""
    table_entries, sequence_entries, differences, undecided = [], [], [], []
    for state in tables:
        scope = state.scope
        per_node = dict((node, state.status(node)) for node in scope.receivers)
        status = worst(per_node.values())
        table_entries.append({
            "name": state.name, "set": scope.id, "origin": scope.origin,
            "key": [c.name for c in state.key] if state.key else None,
            "rows": dict(sorted(state.rows.items())),
            "chunks": len(state.ranges) if state.ranges is not None else None,
            "status": status, "nodes": per_node,
        })
        for node in scope.receivers:
            if per_node[node] == DIFFERENT:
                found = state.first_difference(node)
                entry = {"kind": "table", "name": state.name, "set": scope.id, "origin": scope.origin,
                         "node": node, "first_difference": None, "origin_rows": None, "node_rows": None,
                         "reason": None}
                if found is not None:
                    index, verdict = found
                    lower, upper = state.ranges[index]
                    entry.update(first_difference={"from_key": key_text(lower), "to_key": key_text(upper)},
                                 origin_rows=verdict["origin"][0], node_rows=verdict["node"][0])
                else:
                    entry["reason"] = state.problems[node][1]
                differences.append(entry)
            elif per_node[node] == UNDECIDED and state.name not in undecided:
                undecided.append(state.name)
    for state in sequences:
        scope = state.scope
        per_node = dict((node, state.status(node)) for node in scope.receivers)
        values = {scope.origin: state.origin_value}
        values.update(state.values)
        sequence_entries.append({
            "name": state.name, "set": scope.id, "origin": scope.origin,
            "values": dict(sorted(values.items())), "status": worst(per_node.values()), "nodes": per_node,
        })
        for node in scope.receivers:
            if per_node[node] == DIFFERENT:
                differences.append({"kind": "sequence", "name": state.name, "set": scope.id,
                                    "origin": scope.origin, "node": node,
                                    "origin_value": state.origin_value, "node_value": state.values.get(node)})
            elif per_node[node] in (UNDECIDED, BEHIND) and state.name not in undecided:
                undecided.append(state.name)
    equal = not differences and not undecided
    result = {
        "equal": equal, "undecided": undecided, "differences": differences,
        "tables": table_entries, "sequences": sequence_entries,
        "reasons": list(reasons), "events": [event_dict(e) for e in events],
    }
    result["msg"] = summary(result, cluster_name)
    return result


def _names(entries):
    seen = []
    for entry in entries:
        label = "%s (node %d)" % (entry["name"], entry["node"])
        if entry["kind"] == "table" and entry["first_difference"]:
            label = "%s (node %d, keys %s .. %s)" % (
                entry["name"], entry["node"], _key_label(entry["first_difference"]["from_key"], "start"),
                _key_label(entry["first_difference"]["to_key"], "end"))
        elif entry["kind"] == "sequence":
            label = "%s (node %d: %s, origin node %d: %s)" % (
                entry["name"], entry["node"], entry["node_value"], entry["origin"], entry["origin_value"])
        elif entry.get("reason"):
            label = "%s (node %d: %s)" % (entry["name"], entry["node"], entry["reason"])
        seen.append(label)
    return ", ".join(seen)


def _key_label(key, open_end):
    if key is None:
        return open_end
    return "(%s)" % ", ".join(key) if len(key) > 1 else key[0]


def summary(result, cluster_name):
    """One line for humans: what was compared and what came out."""
    text = "compared %d table%s and %d sequence%s of cluster %s: " % (
        len(result["tables"]), "" if len(result["tables"]) == 1 else "s",
        len(result["sequences"]), "" if len(result["sequences"]) == 1 else "s", cluster_name)
    if result["equal"]:
        return text + "all equal"
    parts = []
    if result["differences"]:
        parts.append("different: " + _names(result["differences"]))
    if result["undecided"]:
        parts.append("undecided: " + ", ".join(result["undecided"]))
    if result["reasons"]:
        parts.append("; ".join(result["reasons"]))
    return text + "; ".join(parts)


# -- SQL ---------------------------------------------------------------------------------------

_SETTINGS = ("select set_config('DateStyle', 'ISO, YMD', true), set_config('IntervalStyle', 'postgres', true),"
             " set_config('TimeZone', 'UTC', true), set_config('extra_float_digits', '3', true),"
             " set_config('bytea_output', 'hex', true)")

_LAYOUT = """
select (select coalesce(array_agg(a.attname::text order by a.attnum), '{}')
          from pg_catalog.pg_attribute a
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
       (select coalesce(json_agg(json_build_array(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                                                  a.attcollation <> 0) order by k.ord), '[]')
          from pg_catalog.pg_index i
          join pg_catalog.pg_class ic on ic.oid = i.indexrelid
          cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
          join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
         where i.indrelid = c.oid and ic.relname = %(index)s)
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where n.nspname = %(schema)s and c.relname = %(name)s
"""

_COLUMNS = """
select coalesce(array_agg(a.attname::text order by a.attnum), '{}')
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
 where n.nspname = %s and c.relname = %s
"""

_SETSYNC = """
select count(*), min(ssy_seqno), max(ssy_seqno)
  from {ns}.sl_setsync where ssy_origin = %s and ssy_setid = any(%s)
"""

_SEQUENCE_VALUES = """
select seq_id, seq_last_value from {ns}.sl_seqlastvalue where seq_set = any(%s)
"""


# Every query names the table "t" and qualifies its columns: a bare name in ORDER BY
# would mean the output column of the same name (the key as text) instead.
ALIAS = "t"


def _key_sql(column, collate_c):
    ident = sql.Identifier(ALIAS, column.name)
    if collate_c and column.collatable:
        return sql.SQL('{} collate "C"').format(ident)
    return ident


def _value_sql(column, collate_c):
    # The key values travel as text and are cast back to the column's type on every node
    # (format_type() of the origin), so that no client-side conversion can change them.
    text = sql.SQL("%s::{}").format(sql.SQL(column.type))
    if collate_c and column.collatable:
        return sql.SQL('{} collate "C"').format(text)
    return text


def range_predicate(key, collate_c, lower, upper):
    """``(k1, k2) > (...) and (k1, k2) <= (...)`` for a range, and its parameters."""
    keys = sql.SQL("({})").format(sql.SQL(", ").join(_key_sql(c, collate_c) for c in key))
    values = sql.SQL("({})").format(sql.SQL(", ").join(_value_sql(c, collate_c) for c in key))
    parts, params = [], []
    if lower is not None:
        parts.append(sql.SQL("{} > {}").format(keys, values))
        params.extend(lower)
    if upper is not None:
        parts.append(sql.SQL("{} <= {}").format(keys, values))
        params.extend(upper)
    if not parts:
        return sql.SQL("true"), []
    return sql.SQL(" and ").join(parts), params


def _order_sql(key, collate_c):
    return sql.SQL(", ").join(_key_sql(c, collate_c) for c in key)


def boundary_query(ref, key, collate_c, lower, chunk_size):
    """The last key of the chunk of ``chunk_size`` rows after ``lower``, as text."""
    where, params = range_predicate(key, collate_c, lower, None)
    query = sql.SQL("select {keys} from only {schema}.{table} as {alias} where {where} order by {order} offset %s limit 1").format(
        keys=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(ALIAS, c.name)) for c in key),
        schema=sql.Identifier(ref.schema), table=sql.Identifier(ref.name), alias=sql.Identifier(ALIAS), where=where,
        order=_order_sql(key, collate_c))
    return query, params + [chunk_size - 1]


def chunk_query(ref, columns, key, collate_c, lower, upper):
    """count(*) and the md5 of the rows' text in key order, for one range."""
    where, params = range_predicate(key, collate_c, lower, upper)
    query = sql.SQL(
        "select count(*), coalesce(md5(string_agg(md5(row({columns})::text), '' order by {order})), '')"
        " from only {schema}.{table} as {alias} where {where}").format(
        columns=sql.SQL(", ").join(sql.Identifier(ALIAS, c) for c in columns),
        order=_order_sql(key, collate_c), schema=sql.Identifier(ref.schema),
        table=sql.Identifier(ref.name), alias=sql.Identifier(ALIAS), where=where)
    return query, params


# -- the run --------------------------------------------------------------------------------

class _WaitOver(Exception):
    def __init__(self, pending):
        Exception.__init__(self, "wait over")
        self.pending = pending


class Pin:
    """A receiver (or the origin) held in a READ ONLY snapshot for one round."""

    def __init__(self, node, conn, position, applied=None, sequences=None):
        self.node = node
        self.conn = conn
        self.position = position
        self.applied = applied
        self.sequences = sequences or {}


def _extra_connection(cluster, node):
    """A connection of its own to ``node``, set up as the cluster's (same conninfo, timeout,
    application name, error redaction), for the lock, the SYNC and the origin's snapshot."""
    return cluster._open(node)  # pylint: disable=protected-access


def _close(conn):
    if conn is None or conn.closed:
        return
    try:
        conn.rollback()
    except psycopg2.Error:
        pass
    conn.close()


class Comparison:
    """One comparison run; :meth:`run` returns the result dict (:func:`build_result`)."""

    def __init__(self, cluster, nodes=None, sets=None, tables=None, sequences=True,
                 chunk_size=DEFAULT_CHUNK_SIZE, timeout=300, clock=None, hold_limit=HOLD_LIMIT,
                 max_rounds=MAX_ROUNDS):
        if chunk_size is None or int(chunk_size) < 1:
            raise SlonyError("chunk_size must be a positive number of rows, not %r" % (chunk_size,))
        self.cluster = cluster
        self.nodes, self.sets, self.tables = nodes, sets, tables
        self.sequences = sequences
        self.chunk_size = int(chunk_size)
        self.timeout = max(0, timeout)
        self.clock = clock
        self.hold_limit = hold_limit
        self.max_rounds = max_rounds
        self.events = []
        self.reasons = []
        # node -> why its last round left something open (the latest round's reason)
        self.node_reasons = {}
        self.collations = {}

    def now(self):
        return (self.clock or SYSTEM_CLOCK).now()

    def remaining(self):
        return max(0.0, self.deadline - self.now())

    # -- reading --------------------------------------------------------------------------
    def read(self):
        cluster = self.cluster
        cluster.open_all()
        snapshots, unreadable = {}, {}
        for node in cluster.nodes():
            try:
                snapshots[node] = read_snapshot(cluster, node)
                self.collations[node] = cluster.fetch(
                    node, "select datcollate from pg_catalog.pg_database where datname = current_database()")[0][0]
            except SlonyError as exc:
                unreadable[node] = exc.message
        return snapshots, unreadable

    def run(self):
        self.deadline = self.now() + self.timeout
        snapshots, unreadable = self.read()
        scopes = select_scope(snapshots, self.cluster.nodes(), self.nodes, self.sets, self.tables,
                              self.sequences, unreadable)
        tables, sequences = [], []
        for scope in scopes:
            tables.extend(TableState(scope, ref) for ref in scope.tables)
            sequences.extend(SequenceState(scope, ref) for ref in scope.sequences)
        blocked = {}
        for scope in scopes:
            for node in scope.receivers:
                why = None
                if node in unreadable:
                    why = "node %d cannot be read: %s" % (node, unreadable[node])
                elif scope.id not in snapshots[node].setsyncs:
                    why = "node %d has not finished its copy of set %d" % (node, scope.id)
                if why:
                    blocked[(scope.id, node)] = why
                    if why not in self.reasons:
                        self.reasons.append(why)
        for origin in sorted(set(s.origin for s in scopes)):
            mine = [s for s in scopes if s.origin == origin]
            self.compare_origin(origin, mine, [t for t in tables if t.scope.origin == origin],
                                [q for q in sequences if q.scope.origin == origin], blocked)
        reasons = self.reasons + [self.node_reasons[n] for n in sorted(self.node_reasons)]
        return build_result(tables, sequences, reasons, self.events, self.cluster.name)

    # -- one origin -------------------------------------------------------------------------
    def compare_origin(self, origin, scopes, tables, sequences, blocked):
        rounds = 0
        while True:
            work = self._open_work(scopes, tables, sequences, blocked)
            if not work:
                break
            if rounds >= self.max_rounds or (rounds and self.remaining() <= 0):
                break
            rounds += 1
            self._round(origin, tables, sequences, work)
        self._finish_sequences(origin, sequences)

    def _open_work(self, scopes, tables, sequences, blocked):
        """{receiver: [set ids]} of the receivers with something left to compare."""
        work = {}
        for scope in scopes:
            for node in scope.receivers:
                if (scope.id, node) in blocked:
                    continue
                open_tables = any(t.scope is scope and t.open_on(node) for t in tables)
                open_sequences = any(q.scope is scope and q.open_on(node) for q in sequences)
                if open_tables or open_sequences:
                    work.setdefault(node, []).append(scope.id)
        return work

    def _round(self, origin, tables, sequences, work):
        cluster = self.cluster
        hold = writer = reader = None
        pins = {}
        try:
            hold = self._hold(origin)
            writer = _extra_connection(cluster, origin)
            event, snapshot, origin_sequences, exported = self._create_sync(writer, origin)
            reader = _extra_connection(cluster, origin)
            position = self._pin_origin(reader, origin, exported, snapshot)
            writer.commit()
            _close(writer)
            writer = None
            self.events.append(event)
            pins, missed = self._pin_receivers(origin, event, work, hold)
            hold = None  # released by _pin_receivers
            for node in pins:
                self.node_reasons.pop(node, None)
            self.node_reasons.update(missed)
            self._compare_tables(origin, reader, position, tables, pins)
            for state in sequences:
                for node, pin in pins.items():
                    if node in state.verdicts and state.open_on(node):
                        origin_value = origin_sequences.get(state.ref.id)
                        # Without the value the SYNC carried, nothing proves a difference.
                        exact = position == EXACT and origin_value is not None
                        state.record(node, origin_value, pin.sequences.get(state.ref.id),
                                     pin.position if exact else AFTER)
        except psycopg2.Error as exc:
            raise cluster.error(origin, exc, doing="compare")
        finally:
            for pin in pins.values():
                try:
                    pin.conn.rollback()
                except psycopg2.Error:
                    pass
            for conn in (hold, writer, reader):
                _close(conn)

    def _hold(self, origin):
        """A connection holding the origin's sl_event_lock (no other event of the origin)."""
        conn = _extra_connection(self.cluster, origin)
        try:
            with conn.cursor() as cur:
                # A slon or slonik holds the lock for milliseconds at a time.
                cur.execute("select set_config('lock_timeout', %s, true)",
                            ("%dms" % max(1000, int(self.remaining() * 1000)),))
                cur.execute(sql.SQL("lock table {}.sl_event_lock").format(self.cluster.ns))
        except psycopg2.Error as exc:
            _close(conn)
            raise self.cluster.error(origin, exc, doing="lock table sl_event_lock")
        return conn

    def _create_sync(self, conn, origin):
        """Create the round's SYNC in a REPEATABLE READ transaction of a new session; return
        the event, its snapshot, the sequence values it carries and the exported snapshot."""
        ns = self.cluster.ns
        with conn.cursor() as cur:
            cur.execute("set transaction isolation level repeatable read")
            cur.execute(sql.SQL("select {}.createEvent(%s, 'SYNC')").format(ns), (self.cluster.namespace,))
            seqno = cur.fetchone()[0]
            cur.execute(sql.SQL("select ev_snapshot::text from {}.sl_event where ev_origin = %s and ev_seqno = %s").format(ns),
                        (origin, seqno))
            snapshot = cur.fetchone()[0]
            # A new session's first SYNC records every sequence of the origin (slon's
            # seqtrack() skips the unchanged ones only within one session).
            cur.execute(sql.SQL("select seql_seqid, seql_last_value from {}.sl_seqlog"
                                " where seql_origin = %s and seql_ev_seqno = %s").format(ns), (origin, seqno))
            values = dict(cur.fetchall())
            cur.execute("select pg_catalog.pg_export_snapshot()")
            exported = cur.fetchone()[0]
        return Event(origin, seqno, "SYNC"), snapshot, values, exported

    def _pin_origin(self, conn, origin, exported, snapshot):
        with conn.cursor() as cur:
            cur.execute("set transaction isolation level repeatable read, read only")
            cur.execute("set transaction snapshot %s", (exported,))
            cur.execute(_SETTINGS)
            cur.execute("select pg_catalog.txid_current_snapshot()::text")
            mine = cur.fetchone()[0]
        # Both sides on the same SYNC only if the origin reads what the SYNC saw.
        return EXACT if mine == snapshot else AFTER

    def _pin_receivers(self, origin, event, work, hold):
        """Poll the receivers until each applied ``event``; keep each one's READ ONLY
        snapshot. Releases ``hold`` when all are there or after the hold limit. Returns
        ({node: Pin}, {node: why not})."""
        cluster = self.cluster
        pins, applied, errors = {}, {}, {}
        waiting = sorted(work)
        # The hold is for the receivers that can get there: one whose slon does not run
        # would keep the origin from creating events until the hold limit for nothing.
        held_for = [n for n in waiting if slon_state(cluster, n) == "running"]
        state = {"hold": hold, "until": self.now() + min(self.hold_limit, self.remaining())}

        def release():
            if state["hold"] is not None:
                _close(state["hold"])
                state["hold"] = None

        def probe():
            for node in list(waiting):
                conn = cluster.connection(node)
                try:
                    with conn.cursor() as cur:
                        cur.execute("set transaction isolation level repeatable read, read only")
                        cur.execute(_SETTINGS)
                        cur.execute(sql.SQL(_SETSYNC).format(ns=cluster.ns), (origin, work[node]))
                        count, low, high = cur.fetchone()
                        if count == len(work[node]) and low >= event.seqno:
                            cur.execute(sql.SQL(_SEQUENCE_VALUES).format(ns=cluster.ns), (work[node],))
                            position = EXACT if low == high == event.seqno else AFTER
                            pins[node] = Pin(node, conn, position, high, dict(cur.fetchall()))
                            waiting.remove(node)
                            continue
                    conn.rollback()
                    applied[node] = low
                except psycopg2.Error as exc:
                    conn.rollback()
                    errors[node] = cluster.error(node, exc).message
                    waiting.remove(node)
            if not waiting:
                release()
                return pins
            if state["hold"] is not None and (self.now() >= state["until"] or not set(held_for) & set(waiting)):
                release()
            return Pending([Behind(n, "applied SYNC %s" % (applied.get(n) or "nothing")) for n in waiting])

        def on_timeout(pending):
            return _WaitOver(pending)

        missed = {}
        try:
            poll_until(probe, self.remaining(), on_timeout, clock=self.clock,
                       interval=RECEIVER_POLL, first=RECEIVER_POLL)
        except _WaitOver as over:
            goal = "node%s %s to apply SYNC %s of node %d" % (
                "s" if len(waiting) > 1 else "", ", ".join(map(str, waiting)), event.seqno, origin)
            text = timeout_message(goal, self.timeout, over.pending.behind,
                                   slon=lambda n: slon_state(cluster, n))
            for node in waiting:
                missed[node] = text
        finally:
            release()
        for node, why in errors.items():
            missed[node] = why
        return pins, missed

    def _compare_tables(self, origin, reader, origin_position, tables, pins):
        """Plan the ranges (first round) on the origin, then hash the ranges still open on
        every pinned receiver and on the origin, in parallel."""
        cluster = self.cluster
        todo = dict((node, []) for node in pins)
        for state in tables:
            nodes = [n for n in pins if n in state.verdicts and state.open_on(n)]
            if not nodes:
                continue
            if state.ranges is None:
                try:
                    self._plan_table(reader, origin, state)
                except psycopg2.Error as exc:
                    raise cluster.error(origin, exc, doing="plan the key ranges of %s" % state.name)
            for node in nodes:
                todo[node].append(state)

        def origin_work(dummy):
            results = {}
            for state in set(s for states in todo.values() for s in states):
                indexes = set()
                for node, states in todo.items():
                    if state in states:
                        indexes.update(state.pending(node))
                results[state.name] = self._hash_ranges(reader, state, state.columns, sorted(indexes))
                if not state.rows.get(origin) and len(indexes) == len(state.ranges):
                    state.rows[origin] = sum(c for c, h in results[state.name].values())
            return results

        def node_work(node):
            if node == "origin":
                return origin_work(node)
            results = {}
            conn = pins[node].conn
            for state in todo[node]:
                with conn.cursor() as cur:
                    cur.execute("savepoint compare_table")
                try:
                    with conn.cursor() as cur:
                        cur.execute(_COLUMNS, (state.ref.schema, state.ref.name))
                        columns = cur.fetchone()[0]
                    missing = [c for c in state.columns if c not in columns]
                    if not columns:
                        results[state.name] = ("missing", "the table does not exist on node %d" % node)
                    elif missing:
                        results[state.name] = ("missing", "column%s %s missing on node %d" % (
                            "s" if len(missing) > 1 else "", ", ".join(missing), node))
                    else:
                        results[state.name] = self._hash_ranges(conn, state, state.columns, state.pending(node))
                except psycopg2.Error as exc:
                    with conn.cursor() as cur:
                        cur.execute("rollback to savepoint compare_table")
                    results[state.name] = ("error", cluster.error(node, exc).message)
            return results

        outcome = in_parallel(node_work, ["origin"] + sorted(todo))
        value, exc = outcome["origin"]
        if exc is not None:
            raise exc if isinstance(exc, SlonyError) else cluster.error(origin, exc, doing="compare")
        origin_results = value
        for node in sorted(todo):
            value, exc = outcome[node]
            if exc is not None:
                why = exc.message if isinstance(exc, SlonyError) else str(exc)
                for state in todo[node]:
                    state.problems[node] = (UNDECIDED, why)
                continue
            position = pins[node].position if origin_position == EXACT else AFTER
            for state in todo[node]:
                got = value[state.name]
                if isinstance(got, tuple):
                    state.problems[node] = (DIFFERENT if got[0] == "missing" else UNDECIDED, got[1])
                    continue
                if node not in state.rows and len(got) == len(state.ranges):
                    state.rows[node] = sum(c for c, h in got.values())
                for index, result in got.items():
                    state.record(node, index, origin_results[state.name][index], result, position)

    def _plan_table(self, conn, origin, state):
        with conn.cursor() as cur:
            cur.execute(_LAYOUT, {"schema": state.ref.schema, "name": state.ref.name, "index": state.ref.key_index})
            row = cur.fetchone()
            if row is None or not row[1]:
                raise SlonyError("table %s or its key index %s is missing on its origin, node %d" % (
                    state.name, state.ref.key_index, origin), node=origin)
            state.columns = list(row[0])
            state.key = [KeyColumn(*k) for k in row[1]]
            others = [self.collations.get(n) for n in state.scope.receivers]
            state.collate_c = needs_c_collation(state.key, self.collations.get(origin), others)
            boundaries, lower = [], None
            while True:
                query, params = boundary_query(state.ref, state.key, state.collate_c, lower, self.chunk_size)
                cur.execute(query, params)
                found = cur.fetchone()
                if found is None:
                    break
                lower = tuple(found)
                boundaries.append(lower)
        state.ranges = chunk_ranges(boundaries)

    def _hash_ranges(self, conn, state, columns, indexes):
        results = {}
        with conn.cursor() as cur:
            for index in indexes:
                lower, upper = state.ranges[index]
                query, params = chunk_query(state.ref, columns, state.key, state.collate_c, lower, upper)
                cur.execute(query, params)
                count, digest = cur.fetchone()
                results[index] = (count, digest)
        return results

    def _finish_sequences(self, origin, sequences):
        """Sequences still open on a receiver (it never reached a round's SYNC, or its value
        kept differing): its value as it is now against the origin's of the last SYNC (or,
        without one, as it is now). Lower is behind, higher undecided."""
        for state in sequences:
            for node in state.scope.receivers:
                if not state.open_on(node):
                    continue
                try:
                    value = self._sequence_value(node, state.ref)
                    origin_value = state.origin_value
                    if origin_value is None:
                        origin_value = self._sequence_value(origin, state.ref)
                except SlonyError as exc:
                    self.reasons.append(exc.message)
                    continue
                state.origin_value = origin_value
                state.values[node] = value
                state.verdicts[node]["status"] = unpinned_sequence_status(origin_value, value)

    def _sequence_value(self, node, ref):
        query = sql.SQL("select last_value from {}.{}").format(sql.Identifier(ref.schema), sql.Identifier(ref.name))
        return self.cluster.fetch(node, query)[0][0]


def compare(cluster, nodes=None, sets=None, tables=None, sequences=True, chunk_size=DEFAULT_CHUNK_SIZE,
            timeout=300, clock=None):
    """Compare the replicated data of ``cluster``'s nodes; see the module docstring.

    Returns the dict slony_compare returns (:func:`build_result`). Raises SlonyError for
    bad input (unknown node, set or table) or when an origin cannot be read.
    """
    return Comparison(cluster, nodes, sets, tables, sequences, chunk_size, timeout, clock).run()


def failure_message(result):
    """The message of fail_on_difference: the differing and the undecided names."""
    parts = []
    if result["differences"]:
        parts.append("data differs between the nodes: " + _names(result["differences"]))
    if result["undecided"]:
        parts.append("could not decide within the wait_timeout: " + ", ".join(result["undecided"]))
    if result["reasons"]:
        parts.append("; ".join(result["reasons"]))
    return "; ".join(parts)
