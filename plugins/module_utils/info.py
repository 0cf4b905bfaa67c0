# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only facts about a cluster, gathered from every node in admin_conninfo.

Each reachable node is read in one REPEATABLE READ, READ ONLY transaction, so that its
catalog, its progress and its lag figures are one consistent picture of that node:

* the catalog (``sl_node``, ``sl_path``, ``sl_listen``, ``sl_set``, ``sl_table``,
  ``sl_sequence``, ``sl_subscribe``, ``sl_setsync``) - one statement;
* its health (lag of its own events per receiver, the way ``sl_status`` computes it,
  its slon registration in ``sl_nodelock``, ``sl_components``, its last configuration
  event and how far it has processed every other node's events) - one statement;
* on the origin of a set, the tables and sequences of the database - one statement.

That is a constant number of statements per node, whatever the number of objects.

What the nodes' catalogs are compared on (:func:`find_drift`), and what is left out
because it legitimately differs from node to node:

* ``sl_node`` (active, failed, comment), ``sl_path`` (conninfo, connretry), ``sl_set``
  (origin, comment) and ``sl_subscribe`` (provider, forward): every node applies the
  same events to these, so every compared node must hold the same rows.
* ``sl_table`` / ``sl_sequence`` (id, set, schema, name, key): only the nodes that hold
  the set have rows for it - its origin, and the subscribers whose copy has finished
  (``setAddTable_int`` does nothing on other nodes; the rows come with the copy). They
  are compared among those nodes only; a node that does not hold the set but has rows
  for it is reported too.
* Not compared: ``sl_subscribe.sub_active`` (true on the origin as soon as the
  subscription is made, on the receiver only when its copy is done), ``sl_set.set_locked``
  (LOCK SET writes it on the origin alone), ``sl_setsync``, ``sl_confirm``, ``sl_event``
  and ``sl_status`` (per node by nature), table/sequence OIDs and comments, and
  ``sl_listen``: ``RebuildListenEntries()`` derives it on each node from the paths, the
  subscriptions and the node-local ``sub_active``, so its differences follow from
  differences already reported (or from a subscription still being copied).
* Nodes whose catalog could not be read, and nodes another node marks as failed, are
  left out of the comparison.

Configuration events still on their way make catalogs differ for a moment; such
events are listed (``config_in_flight``) and the drift found meanwhile is flagged
``settling``. A change made while the nodes are being read may show as drift for
that one run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch

from .pg import make_dsn, psycopg2, sql

from .catalog import PENDING_CONNINFO, catalog_query, snapshot_from_row
from .conninfo import REDACTED, mask_password_patterns, redact_conninfo
from .errors import SlonyError

SECTIONS = ("nodes", "paths", "listens", "sets", "tables", "sequences", "subscriptions",
            "lag", "slons", "drift", "unreplicated")

# The seqno an event sequence starts from: confirmations below it (enableNode_int
# inserts seqno 0 rows) mean "nothing confirmed yet".
FIRST_SEQNO = 5000000000

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast",
                  # slony_script's own log of applied scripts (keys), on every node.
                  "dany_slony")


# -- filter -----------------------------------------------------------------------------

def select_sections(filters):
    """The sections a ``filter`` list selects, in :data:`SECTIONS` order.

    As community.postgresql's postgresql_info: shell-style patterns; ``!pattern``
    excludes; no filter, or only exclusions, starts from every section. Unlike
    postgresql_info, exclusions also apply when inclusions are given, so
    ``['*', '!unreplicated']`` works. A pattern that matches no section is an error.
    """
    includes, excludes = [], []
    for raw in filters or []:
        item = str(raw).strip()
        if not item:
            continue
        if item.startswith("!"):
            excludes.append(item[1:].strip())
        else:
            includes.append(item)
    for pattern in includes + excludes:
        if not fnmatch.filter(SECTIONS, pattern):
            raise SlonyError("filter %r matches no section; the sections are %s"
                             % (pattern, ", ".join(SECTIONS)))
    selected = [s for s in SECTIONS
                if not includes or any(fnmatch.fnmatchcase(s, p) for p in includes)]
    return [s for s in selected if not any(fnmatch.fnmatchcase(s, p) for p in excludes)]


# -- what was read from one node --------------------------------------------------------

class NodeRead:
    """What one node told us: its catalog, its health, its relations, or why not."""

    def __init__(self, node, snapshot=None, health=None, relations=None, error=None,
                 statements=0):
        self.node = node
        self.snapshot = snapshot
        self.health = health
        self.relations = relations
        self.error = error
        self.statements = statements

    @property
    def ok(self):
        return self.error is None and self.snapshot is not None


_HEALTH_QUERY = """
with me as (select {ns}.getLocalNodeId(%(cluster)s) as id),
last_event as (
  select e.ev_seqno, e.ev_timestamp from {ns}.sl_event e, me
   where e.ev_origin = me.id order by e.ev_seqno desc limit 1),
confirmed as (
  select c.con_received, max(c.con_seqno) as seqno from {ns}.sl_confirm c, me
   where c.con_origin = me.id group by c.con_received),
lag as (
  select n.no_id as receiver, le.ev_seqno as last_event, le.ev_timestamp as last_event_ts,
         cf.seqno as confirmed, ce.ev_timestamp as confirmed_event_ts,
         extract(epoch from current_timestamp
                 - coalesce(ce.ev_timestamp, nxt.ev_timestamp))::float8 as lag_seconds
    from {ns}.sl_node n cross join me
    left join last_event le on true
    left join confirmed cf on cf.con_received = n.no_id
    left join {ns}.sl_event ce on ce.ev_origin = me.id and ce.ev_seqno = cf.seqno
    left join lateral (
      select e.ev_timestamp from {ns}.sl_event e
       where e.ev_origin = me.id and e.ev_seqno > coalesce(cf.seqno, 0)
       order by e.ev_seqno limit 1) nxt on true
   where n.no_id <> me.id and n.no_active)
select
  (select coalesce(json_agg(json_build_array(receiver, last_event, last_event_ts, confirmed,
                                             confirmed_event_ts, lag_seconds)
                            order by receiver), '[]') from lag),
  (select coalesce(json_agg(json_build_array(
            l.nl_backendpid,
            exists (select 1 from pg_catalog.pg_stat_activity a where a.pid = l.nl_backendpid))
            order by l.nl_conncnt), '[]')
     from {ns}.sl_nodelock l, me where l.nl_nodeid = me.id),
  (select coalesce(json_agg(json_build_array(
            co_actor, co_pid, co_node, co_connection_pid, co_activity, co_starttime, co_event,
            co_eventtype,
            extract(epoch from current_timestamp - co_starttime)::float8)
            order by co_actor), '[]')
     from {ns}.sl_components),
  (select json_build_array(e.ev_seqno, e.ev_type, e.ev_timestamp)
     from {ns}.sl_event e, me
    where e.ev_origin = me.id and e.ev_type <> 'SYNC'
    order by e.ev_seqno desc limit 1),
  (select coalesce(json_agg(json_build_array(con_origin, seqno) order by con_origin), '[]')
     from (select c.con_origin, max(c.con_seqno) as seqno from {ns}.sl_confirm c, me
            where c.con_received = me.id group by c.con_origin) p)
"""

# Every table and sequence of the database, with what Slony knows of it (by OID, so a
# renamed table still counts as replicated).
_RELATIONS_QUERY = """
select n.nspname, c.relname, c.relkind,
       (select t.tab_set from {ns}.sl_table t where t.tab_reloid = c.oid),
       (select s.seq_set from {ns}.sl_sequence s where s.seq_reloid = c.oid),
       exists (select 1 from pg_catalog.pg_depend d
                where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  and d.objid = c.oid and d.deptype = 'e'),
       case when c.relkind = 'r' then (
         select ic.relname from pg_catalog.pg_index i
           join pg_catalog.pg_class ic on ic.oid = i.indexrelid
          where i.indrelid = c.oid and i.indisunique and i.indisvalid
            and i.indpred is null and i.indexprs is null
            and not exists (select 1 from pg_catalog.pg_attribute a
                             where a.attrelid = c.oid and a.attnum = any (i.indkey)
                               and not a.attnotnull)
          order by i.indisprimary desc, ic.relname limit 1) end,
       case when c.relkind = 'S' then (
         select pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(t.relname)
                || '.' || pg_catalog.quote_ident(a.attname)
           from pg_catalog.pg_depend d
           join pg_catalog.pg_class t on t.oid = d.refobjid
           join pg_catalog.pg_namespace tn on tn.oid = t.relnamespace
           join pg_catalog.pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
          where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.objid = c.oid
            and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
            and d.deptype in ('a', 'i') and d.refobjsubid > 0
          limit 1) end,
       c.relispartition
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'S') and c.relpersistence <> 't'
 order by 1, 2
"""


def _health_from_row(row):
    lag, nodelock, components, last_config, processed = row
    return {
        "lag": [dict(zip(("receiver", "last_event", "last_event_at", "confirmed",
                          "confirmed_event_at", "lag_seconds"), r)) for r in lag],
        "nodelock": [{"backend_pid": r[0], "alive": r[1]} for r in nodelock],
        "components": [dict(zip(("actor", "pid", "node", "connection_pid", "activity",
                                 "started_at", "event", "event_type", "age_seconds"), r)) for r in components],
        "last_config_event": (dict(zip(("seqno", "type", "at"), last_config))
                              if last_config else None),
        "processed": dict((r[0], r[1]) for r in processed),
    }


def read_node(cluster, node, health=True, relations=True):
    """Read one node in a single read-only transaction. Never raises for the node's
    own problems (unreachable, not a node, wrong node): they end up in ``error``."""
    result = NodeRead(node)
    try:
        conn = cluster.require_initialized(node)
    except SlonyError as exc:
        result.error = exc.message
        return result
    except psycopg2.Error as exc:
        cluster.discard(node)
        result.error = cluster.error(node, exc, doing="probing the database").message
        return result
    ns = cluster.ns
    try:
        with conn.cursor() as cur:
            cur.execute("set transaction isolation level repeatable read, read only")
            cur.execute(catalog_query(cluster))
            result.snapshot = snapshot_from_row(node, cur.fetchone())
            result.statements += 2
            if health:
                cur.execute(sql.SQL(_HEALTH_QUERY).format(ns=ns), {"cluster": cluster.namespace})
                result.health = _health_from_row(cur.fetchone())
                result.statements += 1
            originates = any(s.origin == node for s in result.snapshot.sets.values())
            if relations and originates:
                cur.execute(sql.SQL(_RELATIONS_QUERY).format(ns=ns))
                result.relations = cur.fetchall()
                result.statements += 1
        conn.rollback()
    except psycopg2.Error as exc:
        try:
            conn.rollback()
        except psycopg2.Error:
            cluster.discard(node)
        result.snapshot = result.health = result.relations = None
        result.error = cluster.error(node, exc, doing="reading the catalog").message
    return result


# -- pure logic: comparison of catalogs --------------------------------------------------

def compared_nodes(snapshots):
    """Nodes whose catalogs are compared: those read, minus those another read node
    marks as failed (a failed node processes no events any more)."""
    failed = set()
    for node, snap in snapshots.items():
        for other in snap.nodes.values():
            if other.failed and other.id != node:
                failed.add(other.id)
    return sorted(n for n in snapshots if n not in failed)


def holds_set(snap, set_id):
    """Whether the node of ``snap`` has the set's tables: it is the set's origin, or its
    own catalog shows its subscription active and synchronised (copy finished)."""
    sset = snap.sets.get(set_id)
    if sset is not None and sset.origin == snap.node:
        return True
    sub = snap.subscriptions.get((set_id, snap.node))
    return bool(sub is not None and sub.active and set_id in snap.setsyncs)


def _nodes_text(nodes):
    nodes = sorted(nodes)
    return "node%s %s" % ("s" if len(nodes) > 1 else "", ", ".join(str(n) for n in nodes))


def _render(fields):
    return " ".join("%s=%s" % (k, "null" if v is None else repr(v) if isinstance(v, str) else v)
                    for k, v in fields)


def _compare(kind, ident, label, per_node):
    """One drift entry for an object, or None when every node agrees.

    ``per_node``: {node: None (missing) or a tuple of (field, raw value, shown value)}.
    """
    present = dict((n, v) for n, v in per_node.items() if v is not None)
    missing = sorted(n for n, v in per_node.items() if v is None)
    groups = {}
    for node, value in sorted(present.items()):
        groups.setdefault(tuple((f, raw) for f, raw, dummy in value), []).append(node)
    if not missing and len(groups) <= 1:
        return None
    parts = []
    if missing:
        parts.append("missing on %s" % _nodes_text(missing))
    shown = {}
    for key, nodes in groups.items():
        value = present[nodes[0]]
        shown[key] = tuple((f, show) for f, dummy, show in value)
    if len(groups) > 1:
        for key, nodes in groups.items():
            parts.append("%s on %s" % (_render(shown[key]), _nodes_text(nodes)))
        if len(set(shown.values())) < len(groups):
            parts.append("(the values also differ in a password)")
    elif present:
        parts.append("present on %s" % _nodes_text(present))
    return {
        "kind": kind,
        "id": ident,
        "message": "%s: %s" % (label, "; ".join(parts)),
        "missing_on": missing,
        "values": [{"node": n, "value": None if per_node[n] is None
                    else dict((f, show) for f, dummy, show in per_node[n])}
                   for n in sorted(per_node)],
    }


def _collect(snapshots, nodes, kind, getter, fields, label, ident, scope=None):
    """Drift entries for the objects ``getter(snapshot)`` ({key: object}) of the
    compared ``nodes`` (or of ``scope(key)``), compared on ``fields(object)``."""
    keys = set()
    for node in nodes:
        keys.update(getter(snapshots[node]))
    drift = []
    for key in sorted(keys):
        members = scope(key) if scope else nodes
        if not members:
            continue
        per_node = {}
        for node in members:
            obj = getter(snapshots[node]).get(key)
            per_node[node] = None if obj is None else fields(obj)
        entry = _compare(kind, ident(key), label(key), per_node)
        if entry:
            drift.append(entry)
    return drift


def find_drift(snapshots, redact=redact_conninfo):
    """Disagreements between the catalogs of ``snapshots`` ({node: Snapshot}).

    See the module docstring for what is compared. ``redact`` renders a conninfo for
    output (the comparison itself uses the real values).
    """
    nodes = compared_nodes(snapshots)
    drift = _collect(snapshots, nodes, "node", lambda s: s.nodes,
                     lambda o: (("active", o.active, o.active), ("failed", o.failed, o.failed),
                                ("comment", o.comment, o.comment)),
                     lambda k: "node %d" % k, str)
    drift += _collect(snapshots, nodes, "path", lambda s: s.paths,
                      lambda o: (("conninfo", o.conninfo,
                                  o.conninfo if o.conninfo == PENDING_CONNINFO
                                  else redact(o.conninfo)),
                                 ("connretry", o.connretry, o.connretry)),
                      lambda k: "path %d -> %d" % k, lambda k: "%d->%d" % k)
    drift += _collect(snapshots, nodes, "set", lambda s: s.sets,
                      lambda o: (("origin", o.origin, o.origin),
                                 ("comment", o.comment, o.comment)),
                      lambda k: "set %d" % k, str)
    drift += _collect(snapshots, nodes, "subscription", lambda s: s.subscriptions,
                      lambda o: (("provider", o.provider, o.provider),
                                 ("forward", o.forward, o.forward)),
                      lambda k: "subscription of node %d to set %d" % (k[1], k[0]),
                      lambda k: "%d:%d" % k)
    return drift + _member_drift(snapshots, nodes)


def _member_drift(snapshots, nodes):
    """Drift of tables and sequences, compared among the nodes holding their set."""
    set_ids = set()
    for node in nodes:
        snap = snapshots[node]
        set_ids.update(snap.sets)
        set_ids.update(t.set for t in snap.tables.values())
        set_ids.update(s.set for s in snap.sequences.values())
    holders = dict((set_id, [n for n in nodes if holds_set(snapshots[n], set_id)])
                   for set_id in set_ids)

    def member_scope(attr):
        def scope(key):
            # Compared among the holders of the object's set (as any node records it).
            sets = set(getattr(snapshots[n], attr)[key].set for n in nodes
                       if key in getattr(snapshots[n], attr))
            members = set()
            for set_id in sets:
                members.update(holders.get(set_id, []))
            return sorted(members)
        return scope

    drift = []
    for kind, attr, fields in (
            ("table", "tables", lambda o: (("set", o.set, o.set), ("schema", o.schema, o.schema),
                                           ("name", o.name, o.name), ("key", o.key, o.key))),
            ("sequence", "sequences", lambda o: (("set", o.set, o.set),
                                                 ("schema", o.schema, o.schema),
                                                 ("name", o.name, o.name)))):
        drift += _collect(snapshots, nodes, kind, lambda s, a=attr: getattr(s, a), fields,
                          lambda k, kd=kind: "%s %d" % (kd, k), str, scope=member_scope(attr))
        # Rows for a set the node does not hold: left over, or half-applied.
        for node in nodes:
            for obj in sorted(getattr(snapshots[node], attr).values()):
                if node not in holders.get(obj.set, []):
                    drift.append(_stray_member(kind, obj, node))
    return drift


def _stray_member(kind, obj, node):
    return {
        "kind": kind, "id": str(obj.id),
        "message": "%s %d (%s.%s) of set %d is in the catalog of node %d, which neither "
                   "originates set %d nor has finished subscribing to it" % (
                       kind, obj.id, obj.schema, obj.name, obj.set, node, obj.set),
        "missing_on": [],
        "values": [{"node": node, "value": {"set": obj.set, "schema": obj.schema,
                                            "name": obj.name}}],
    }


def config_in_flight(health_by_node, nodes):
    """Configuration events of a node that another node has not processed yet.

    ``health_by_node``: {node: health dict} (see :func:`read_node`); ``nodes``: the
    nodes considered. Returns [{origin, seqno, type, at, not_processed_by}].
    """
    pending = []
    for origin in sorted(nodes):
        health = health_by_node.get(origin)
        last = health and health.get("last_config_event")
        if not last:
            continue

        def lags(node):
            return health_by_node[node]["processed"].get(origin, 0) < last["seqno"]

        behind = sorted(n for n in nodes if n != origin and n in health_by_node and lags(n))
        if behind:
            pending.append({"origin": origin, "seqno": last["seqno"], "type": last["type"],
                            "at": last["at"], "not_processed_by": behind})
    return pending


# -- pure logic: relations in no set ----------------------------------------------------

def unreplicated_relations(node, rows, cluster_schema):
    """Ordinary tables and sequences of ``node``'s database in no set.

    ``rows``: (schema, name, relkind, tab_set, seq_set, in_extension, key, owned_by,
    is_partition) as read by the relations query. System schemas, the cluster schema,
    slony_script's dany_slony schema, temporary schemas and objects of extensions are not
    application objects.
    """
    out = []
    for schema, name, relkind, tab_set, seq_set, in_extension, key, owned_by, partition in rows:
        if schema in SYSTEM_SCHEMAS or schema == cluster_schema or in_extension:
            continue
        if schema.startswith("pg_temp_") or schema.startswith("pg_toast_temp_"):
            continue
        if relkind == "r" and tab_set is None:
            out.append({"node": node, "schema": schema, "name": name, "kind": "table",
                        "key": key, "partition": bool(partition)})
        elif relkind == "S" and seq_set is None:
            out.append({"node": node, "schema": schema, "name": name, "kind": "sequence",
                        "owned_by": owned_by})
    return out


# -- pure logic: a conninfo as written, its password masked --------------------------------

# The password of a verbatim conninfo, as it shows: what make_dsn writes for "********".
MASKED_PASSWORD = "password=" + REDACTED


def _conninfo_tokens(text):
    """(keyword, token start, token end, value) of every ``keyword=value`` of a libpq
    conninfo in key/value form, by libpq's rules (spaces around ``=``, single-quoted
    values, backslash escapes). Raises ValueError on anything else (a URI, a typo)."""
    tokens, i, size = [], 0, len(text)
    while True:
        while i < size and text[i].isspace():
            i += 1
        if i >= size:
            return tokens
        start = i
        while i < size and text[i] != "=" and not text[i].isspace():
            i += 1
        keyword = text[start:i]
        while i < size and text[i].isspace():
            i += 1
        if not keyword or i >= size or text[i] != "=":
            raise ValueError("not a key/value conninfo")
        i += 1
        while i < size and text[i].isspace():
            i += 1
        quoted = i < size and text[i] == "'"
        if quoted:
            i += 1
        value = []
        while True:
            if i >= size:
                if quoted:
                    raise ValueError("unterminated quoted value")
                break
            char = text[i]
            if char == "\\" and i + 1 < size:
                value.append(text[i + 1])
                i += 2
                continue
            if (quoted and char == "'") or (not quoted and char.isspace()):
                i += 1 if quoted else 0
                break
            value.append(char)
            i += 1
        tokens.append((keyword, start, i, "".join(value)))


def verbatim_conninfo(conninfo):
    """``conninfo`` exactly as written, but for its password, which shows as
    ``password=********``; or None when that cannot be done without changing the text
    elsewhere: a URI, something libpq would not parse, or a password not written the way
    libpq's quoting rules (psycopg2's make_dsn) write it - ``password = 'x'`` - so that
    putting the password back in its place as make_dsn writes it gives the original
    text byte for byte. Pure; the password itself never leaves this function."""
    try:
        tokens = _conninfo_tokens(conninfo or "")
    except ValueError:
        return None
    out, last = [], 0
    for keyword, start, end, value in tokens:
        if keyword != "password":
            continue
        if conninfo[start:end] != make_dsn(password=value):
            return None
        out.append(conninfo[last:start] + MASKED_PASSWORD)
        last = end
    return "".join(out) + conninfo[last:]


# -- assembling the facts ----------------------------------------------------------------

def _first(nodes_in_order, predicate):
    for node in nodes_in_order:
        if predicate(node):
            return node
    return None


def _slon_facts(node, read):
    if not read.ok or read.health is None:
        return {"node": node, "running": None, "backend_pid": None, "components": [],
                "last_activity_seconds": None, "error": read.error}
    health = read.health
    live = [r["backend_pid"] for r in health["nodelock"] if r["alive"]]
    ages = [c["age_seconds"] for c in health["components"] if c["age_seconds"] is not None]
    return {"node": node, "running": bool(live), "backend_pid": live[0] if live else None,
            "components": health["components"],
            "last_activity_seconds": min(ages) if ages else None, "error": None}


def read_cluster(cluster, sections=SECTIONS):
    """{node: NodeRead} for every node in admin_conninfo, reading what ``sections`` need."""
    want = set(sections)
    need_health = bool(want & set(("lag", "slons", "drift")))
    return dict((node, read_node(cluster, node, health=need_health,
                                 relations="unreplicated" in want))
                for node in cluster.nodes())


def gather(cluster, sections=SECTIONS):
    """Facts about ``cluster`` for ``sections``; a dict ready to be returned."""
    reads = read_cluster(cluster, sections)

    def redact(conninfo):
        return cluster.redactor.text(redact_conninfo(conninfo))

    return build_facts(cluster.name, cluster.namespace, reads, sections, redact,
                       redact_text=cluster.redactor.text)


def build_facts(cluster_name, namespace, reads, sections=SECTIONS, redact=redact_conninfo,
                redact_text=mask_password_patterns):
    """The facts, from what was read (``reads``: {node: NodeRead}); no database access.

    ``redact`` renders a conninfo without its password; ``redact_text`` removes every
    known secret from a text (a verbatim conninfo still holding one is not shown)."""
    sections = list(sections)
    want = set(sections)
    view = ReadView(reads, namespace, redact,
                    need_health=bool(want & set(("lag", "slons", "drift"))),
                    redact_text=redact_text)
    facts = {
        "cluster_name": cluster_name,
        "sections": sections,
        # Not "unreachable": Ansible takes a result with that key for an unreachable host.
        "unreachable_nodes": [{"node": n, "error": r.error}
                              for n, r in sorted(reads.items()) if not r.ok],
    }
    for section in SECTIONS:
        if section in want:
            facts.update(_SECTION_FACTS[section](view))
    return facts


class ReadView:
    """What was read from every node, indexed the way the sections need it (pure)."""

    def __init__(self, reads, namespace, redact=redact_conninfo, need_health=True,
                 redact_text=mask_password_patterns):
        self.reads = reads
        self.namespace = namespace
        self.redact = redact
        self.redact_text = redact_text
        self.admin_nodes = sorted(reads)
        self.ok = dict((n, r) for n, r in reads.items() if r.ok)
        self.snaps = dict((n, r.snapshot) for n, r in self.ok.items())
        self.order = sorted(self.ok)
        self.slon = dict((n, _slon_facts(n, reads[n])) for n in self.admin_nodes) \
            if need_health else {}
        # Sets: as their origin sees them (the origin as the lowest read node knows it).
        self.set_source = {}
        for snap_node in self.order:
            for set_id, sset in self.snaps[snap_node].sets.items():
                if set_id not in self.set_source:
                    self.set_source[set_id] = sset.origin if sset.origin in self.snaps and \
                        set_id in self.snaps[sset.origin].sets else snap_node
        self.set_origin = dict((i, self.snaps[src].sets[i].origin)
                               for i, src in self.set_source.items())
        # Subscriptions: provider/forward as the set's origin records them.
        self.subs = {}
        for snap_node in self.order:
            for key, sub in self.snaps[snap_node].subscriptions.items():
                if key not in self.subs or snap_node == self.set_origin.get(key[0]):
                    self.subs[key] = (sub, snap_node)

    def verbatim(self, conninfo):
        """:func:`verbatim_conninfo`, or None if a known secret would still show in it."""
        text = verbatim_conninfo(conninfo)
        if text is None or self.redact_text(text) != text:
            return None
        return text

    def first(self, predicate):
        """The lowest read node for which ``predicate(node)`` holds, or None."""
        return _first(self.order, predicate)

    def completion(self, set_id, receiver):
        """(active, complete, last sync) of a subscription as the receiver sees it (its
        sub_active and its sl_setsync row)."""
        if receiver not in self.snaps:
            return None, None, None
        rsnap = self.snaps[receiver]
        own = rsnap.subscriptions.get((set_id, receiver))
        sync = rsnap.setsyncs.get(set_id)
        active = own.active if own else False
        return active, bool(own and own.active and sync), sync.seqno if sync else None


def _node_facts(view):
    """Every node read or known, as the node itself sees it, else the lowest read node
    knowing it."""
    snaps = view.snaps
    known_nodes = set(view.admin_nodes)
    for snap in snaps.values():
        known_nodes.update(snap.nodes)
    rows = []
    for node_id in sorted(known_nodes):
        source = node_id if node_id in snaps and node_id in snaps[node_id].nodes else \
            view.first(lambda n, i=node_id: i in snaps[n].nodes)
        obj = snaps[source].nodes[node_id] if source is not None else None
        read = view.reads.get(node_id)
        rows.append({
            "id": node_id,
            "comment": obj.comment if obj else None,
            "active": obj.active if obj else None,
            "failed": obj.failed if obj else None,
            "in_admin_conninfo": read is not None,
            "reachable": (read.ok if read is not None else None),
            "error": read.error if read is not None else None,
            "source": source,
        })
    return {"nodes": rows}


def _path_facts(view):
    snaps = view.snaps
    keys = set()
    for snap in snaps.values():
        keys.update(snap.paths)
    rows = []
    for key in sorted(keys):
        client = key[1]
        source = client if client in snaps and key in snaps[client].paths else \
            view.first(lambda n, k=key: k in snaps[n].paths)
        path = snaps[source].paths[key]
        pending = path.conninfo == PENDING_CONNINFO
        rows.append({"server": path.server, "client": path.client,
                     "conninfo": path.conninfo if pending else view.redact(path.conninfo),
                     "conninfo_verbatim": None if pending else view.verbatim(path.conninfo),
                     "connretry": path.connretry, "pending": pending, "source": source})
    return {"paths": rows}


def _listen_facts(view):
    snaps = view.snaps
    rows = []
    receivers = set()
    for snap in snaps.values():
        receivers.update(entry.receiver for entry in snap.listens)
    for receiver in sorted(receivers):
        source = receiver if receiver in snaps else \
            view.first(lambda n, r=receiver: any(e.receiver == r for e in snaps[n].listens))
        rows.extend({"origin": e.origin, "provider": e.provider, "receiver": e.receiver,
                     "source": source}
                    for e in snaps[source].listens if e.receiver == receiver)
    return {"listens": rows}


def _set_facts(view):
    rows = []
    for set_id in sorted(view.set_source):
        snap = view.snaps[view.set_source[set_id]]
        sset = snap.sets[set_id]
        rows.append({"id": set_id, "origin": sset.origin, "comment": sset.comment,
                     "locked": sset.locked is not None,
                     "tables": sum(1 for t in snap.tables.values() if t.set == set_id),
                     "sequences": sum(1 for s in snap.sequences.values() if s.set == set_id),
                     "subscribers": snap.receivers(set_id), "source": view.set_source[set_id]})
    return {"sets": rows}


def _member_facts(view, attr):
    """Tables or sequences (``attr``) of every set, as its origin (or else the lowest
    node holding some) sees them."""
    rows, seen = [], set()
    by_set = {}
    for snap_node in view.order:
        for obj in getattr(view.snaps[snap_node], attr).values():
            by_set.setdefault(obj.set, set()).add(snap_node)
    for set_id in sorted(by_set):
        origin = view.set_origin.get(set_id)
        source = origin if origin in by_set[set_id] else min(by_set[set_id])
        for obj in sorted(getattr(view.snaps[source], attr).values()):
            if obj.set != set_id or obj.id in seen:
                continue
            seen.add(obj.id)
            row = obj._asdict()
            row.update({"origin": origin, "source": source})
            rows.append(row)
    return {attr: rows}


def _subscription_facts(view):
    """Provider/forward as the set's origin records them, completion as the receiver
    sees it."""
    rows = []
    for key in sorted(view.subs):
        sub, source = view.subs[key]
        active, complete, last_sync = view.completion(sub.set, sub.receiver)
        rows.append({"set": sub.set, "origin": view.set_origin.get(sub.set),
                     "receiver": sub.receiver, "provider": sub.provider,
                     "forward": sub.forward, "active": active, "complete": complete,
                     "last_sync": last_sync, "source": source})
    return {"subscriptions": rows}


def _lag_facts(view):
    rows = []
    slon = view.slon
    for origin in view.order:
        for lag in view.ok[origin].health["lag"]:
            receiver = lag["receiver"]
            sets = sorted(k[0] for k in view.subs
                          if k[1] == receiver and view.set_origin.get(k[0]) == origin)
            completes = [view.completion(s, receiver)[1] for s in sets]
            confirmed = lag["confirmed"]
            if confirmed is not None and confirmed <= FIRST_SEQNO:
                confirmed = None
            last = lag["last_event"]
            rows.append({
                "origin": origin, "receiver": receiver,
                "last_event": last, "last_event_at": lag["last_event_at"],
                "confirmed": confirmed, "confirmed_event_at": lag["confirmed_event_at"],
                "lag_events": (last - max(confirmed or 0, FIRST_SEQNO)
                               if last is not None else None),
                "lag_seconds": lag["lag_seconds"],
                "sets": sets,
                "subscriptions_complete": (None if not sets or None in completes
                                           else all(completes)),
                "origin_slon_running": slon[origin]["running"],
                "receiver_slon_running": (slon[receiver]["running"] if receiver in slon
                                          else None),
            })
    return {"lag": rows}


def _slons_facts(view):
    return {"slons": [view.slon[n] for n in view.admin_nodes]}


def _drift_facts(view):
    compared = compared_nodes(view.snaps)
    pending = config_in_flight(dict((n, view.ok[n].health) for n in compared), compared)
    drift = find_drift(view.snaps, redact=view.redact)
    for entry in drift:
        entry["settling"] = bool(pending)
    return {"drift": drift, "config_in_flight": pending, "compared_nodes": compared}


def _unreplicated_facts(view):
    rows = []
    for node in view.order:
        if view.ok[node].relations is not None:
            rows.extend(unreplicated_relations(node, view.ok[node].relations, view.namespace))
    return {"unreplicated": rows}


# The builder of each section, from a ReadView.
_SECTION_FACTS = {
    "nodes": _node_facts, "paths": _path_facts, "listens": _listen_facts,
    "sets": _set_facts, "tables": lambda view: _member_facts(view, "tables"),
    "sequences": lambda view: _member_facts(view, "sequences"),
    "subscriptions": _subscription_facts, "lag": _lag_facts, "slons": _slons_facts,
    "drift": _drift_facts, "unreplicated": _unreplicated_facts,
}
