# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Log shipping: an offline database fed with the archive files a subscriber's slon writes.

A slon started with ``archive_dir`` (``slon -a``) writes one SQL file per event it
processes for a remote origin, ``slony1_log_<local node>_<counter, 20 digits>.sql``,
numbered by the subscriber's ``sl_archive_counter`` (incremented in the same transaction
that applies the SYNC). Each file checks, through ``archiveTracking_offline()``, that the
offline database is at the counter just before its own, then COPYs the SYNC's log rows
into ``sl_log_archive``, whose trigger applies them to the user tables.

An offline database is not a Slony node: it holds the user schema, a schema
``_<cluster>`` with ``sl_archive_tracking`` (one row: the counter of the last file
applied), ``sl_log_archive`` with its apply trigger, and the functions the files call -
what Slony's ``slony1_dump.sh`` creates. :func:`plan_logship` initialises it from the
subscriber when it has none of that (the user schema with ``pg_dump``/``pg_restore``, the
data in one REPEATABLE READ snapshot of the subscriber that also gives the counter the
data is at), then applies the files after its counter, in order, each with ``psql`` in
its own transaction.

Read, then decide: :func:`read_offline`, :func:`read_subscriber` and
:func:`list_archive_dir` read; :func:`decide` (pure) refuses what cannot work and chooses
what to initialise and which files to apply; the step runners do it, each file's runner
checking the offline counter again just before it applies the file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import tempfile
from collections import namedtuple

from .pg import psycopg2, sql

from .conninfo import build_conninfo, parse_conninfo, redact_conninfo
from .errors import SlonyError
from .plan import CALLBACK, Plan, Planned, Step
from .waits import Pending, poll_until, timeout_message

ARCHIVE_RE = re.compile(r"^slony1_log_(\d+)_(\d{20})\.sql$")

# The triggers Slony 2.2 puts on replicated tables; never copied to an offline database.
SLONY_TRIGGERS = ("logtrigger", "truncatetrigger", "denyaccess", "truncatedeny")

SCHEMA_CHOICES = ("copy", "existing")

# pg_advisory_lock(int4, int4) class of the offline database's apply lock ("dany.slonz").
LOCK_CLASS = 0x510F

ArchiveFile = namedtuple("ArchiveFile", "counter name")

# What the offline database holds, as read by read_offline().
#   has_schema, has_tracking, is_node: the _<cluster> schema, its sl_archive_tracking,
#   its sl_node (a Slony node, never a log-shipping target); tracking: the rows of
#   sl_archive_tracking as dicts; present: the (schema, name) of the subscriber's
#   replicated tables and sequences found there; with_rows: the tables among them that
#   hold rows.
OfflineState = namedtuple("OfflineState", "has_schema has_tracking is_node tracking present with_rows")

# What the subscriber holds, as read by read_subscriber(): counter (sl_archive_counter's
# ac_num, the last archive committed) and its timestamp; subscriptions: [(set, provider,
# active)]; tables and sequences: [(id, set, schema, name)] of every set.
SubscriberState = namedtuple("SubscriberState", "counter timestamp subscriptions tables sequences")

# What decide() returns.
#   initialize: None, or a dict (from_node, counter, copy_schema, tables, sequences);
#   apply: the ArchiveFiles to apply in order (the last one is past a gap when gap is
#   set); gap: None or the message naming the missing file; done: the files at or below
#   the offline counter; pending: the files past the subscriber's committed counter;
#   counter: the offline counter before; after: the counter after the files.
Decision = namedtuple("Decision", "initialize apply gap done pending counter after")


def archive_file_name(node, counter):
    """The name slon gives the archive file of ``counter`` on subscriber ``node``."""
    return "slony1_log_%d_%020d.sql" % (node, counter)


def parse_archive_names(names, node):
    """(files of ``node`` as ArchiveFiles sorted by counter, ids of the other nodes whose
    files are there). Anything else (slon's ``.tmp`` files being written) is ignored."""
    files, others = [], set()
    for name in names:
        match = ARCHIVE_RE.match(name)
        if not match:
            continue
        owner = int(match.group(1))
        if owner != node:
            others.add(owner)
            continue
        files.append(ArchiveFile(int(match.group(2)), name))
    return sorted(files), sorted(others)


def replicated_objects(subscriber, node):
    """(tables, sequences) of the sets ``node`` is subscribed to: [(id, schema, name)]."""
    sets = set(s for s, dummy, dummy2 in subscriber.subscriptions)
    tables = [(i, n, r) for i, s, n, r in subscriber.tables if s in sets]
    sequences = [(i, n, r) for i, s, n, r in subscriber.sequences if s in sets]
    return tables, sequences


def qualified(nspname, relname):
    return "%s.%s" % (nspname, relname)


def _names(objects, limit=10):
    names = sorted(qualified(n, r) for n, r in objects)
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += " and %d more" % (len(names) - limit)
    return text


def decide(cluster_name, node, offline, subscriber, files, initialize=True, schema="copy",
           committed_only=True):
    """What to do, from what was read (pure). Raises a SlonyError for what cannot work.

    ``subscriber`` is None when it was not read (``committed_only`` false and the offline
    database initialised). ``files`` are the ArchiveFiles of ``node``.
    """
    namespace = "_" + cluster_name
    if offline.is_node:
        raise SlonyError("the offline database holds schema %s with sl_node: it is a Slony "
                         "node, not a log-shipping target; give offline_conninfo a plain "
                         "database" % namespace)
    init = None
    if offline.has_tracking:
        if len(offline.tracking) != 1:
            raise SlonyError("%s.sl_archive_tracking of the offline database holds %d rows, not "
                             "one: it is damaged; drop schema %s there and initialise it again"
                             % (namespace, len(offline.tracking), namespace))
        row = offline.tracking[0]
        if row.get("at_counter") is None:
            raise SlonyError("%s.sl_archive_tracking of the offline database has no counter"
                             % namespace)
        counter = int(row["at_counter"])
        at_node = row.get("at_node")
        if at_node is not None and int(at_node) != node:
            raise SlonyError("the offline database was initialised from node %d's archives, "
                             "not node %d's: the counters of two nodes are unrelated"
                             % (int(at_node), node))
        if subscriber is not None and counter > subscriber.counter:
            raise SlonyError(
                "the offline database is at archive counter %d, past node %d's own counter %d: "
                "it was not initialised from this node's archives, or node %d's database was "
                "restored since; initialise it again (drop schema %s there)"
                % (counter, node, subscriber.counter, node, namespace))
    else:
        if offline.has_schema:
            raise SlonyError("the offline database has a schema %s without sl_archive_tracking: "
                             "it was not initialised for log shipping; drop that schema or "
                             "use another database" % namespace)
        if not initialize:
            raise SlonyError("the offline database is not initialised for log shipping (no "
                             "%s.sl_archive_tracking) and initialize is false" % namespace)
        init = _decide_initialize(node, offline, subscriber, schema)
        counter = init["counter"]
    committed = subscriber.counter if (committed_only and subscriber is not None) else None
    done = [f for f in files if f.counter <= counter]
    ready = [f for f in files if f.counter > counter and (committed is None or f.counter <= committed)]
    pending = [f for f in files if committed is not None and f.counter > committed]
    apply, gap, expected = [], None, counter + 1
    for entry in ready:
        if entry.counter != expected:
            gap = ("archive file %s is missing: the offline database is at archive counter %d "
                   "and the next file in the archive directory is %s"
                   % (archive_file_name(node, expected), expected - 1, entry.name))
            apply.append(entry)
            break
        apply.append(entry)
        expected += 1
    return Decision(init, apply, gap, done, pending, counter, expected - 1)


def _decide_initialize(node, offline, subscriber, schema):
    if schema not in SCHEMA_CHOICES:
        raise SlonyError("schema must be one of %s, not %r" % (", ".join(SCHEMA_CHOICES), schema))
    if subscriber is None:
        raise SlonyError("internal error: initialising needs the subscriber's catalog")
    inactive = sorted(s for s, dummy, active in subscriber.subscriptions if not active)
    if inactive:
        raise SlonyError("node %d's subscription to set %s is not active yet (its copy runs): "
                         "initialise the offline database once the copy is done"
                         % (node, ", ".join(str(s) for s in inactive)))
    if not subscriber.subscriptions:
        raise SlonyError("node %d is subscribed to no set: its archive files would carry no "
                         "data; log shipping needs a subscriber" % node)
    tables, sequences = replicated_objects(subscriber, node)
    wanted = set((n, r) for dummy, n, r in tables + sequences)
    present = set(offline.present) & wanted
    missing = wanted - present
    copy_schema = False
    if missing and schema == "existing":
        raise SlonyError("the offline database lacks %d replicated table(s) or sequence(s) of "
                         "node %d: %s (schema is existing: create them first, or use schema "
                         "copy)" % (len(missing), node, _names(missing)))
    if missing and present:
        raise SlonyError("the offline database has some of node %d's replicated tables and "
                         "sequences (%s) but not the others (%s): create the missing ones, or "
                         "drop the ones there and let schema copy create them all"
                         % (node, _names(present), _names(missing)))
    if missing:
        copy_schema = True
    if offline.with_rows:
        raise SlonyError("the offline database's table(s) %s hold rows: initialise an empty "
                         "database (the initial load would replace them)"
                         % _names(offline.with_rows))
    return {"from_node": node, "counter": subscriber.counter, "copy_schema": copy_schema,
            "tables": len(tables), "sequences": len(sequences)}


def filter_restore_list(lines, cluster_name):
    """(kept lines, dropped lines) of ``pg_restore -l`` output: Slony's triggers on the
    replicated tables (``_<cluster>_logtrigger`` and the others) are not restored."""
    names = "|".join(SLONY_TRIGGERS)
    pattern = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+TRIGGER\s.*\s%s(%s)\s"
                         % (re.escape("_" + cluster_name + "_"), names))
    kept, dropped = [], []
    for line in lines:
        (dropped if pattern.search(line + " ") else kept).append(line)
    return kept, dropped


def libpq_command(conninfo):
    """(conninfo without secrets for ``-d``, environment with PGPASSWORD) of a conninfo:
    the password never goes on a command line."""
    params = parse_conninfo(conninfo, "conninfo")
    env = {}
    if params.get("password"):
        env["PGPASSWORD"] = params.pop("password")
    if params.get("sslpassword"):
        params.pop("sslpassword")
    return build_conninfo(params), env


# -- the offline database's Slony objects -------------------------------------------------

# The objects slony1_dump.sh creates, written for this collection (same names and
# signatures: the archive files call them). at_node records whose archives these are.
OFFLINE_OBJECTS = """
create schema {ns};
create table {ns}.sl_archive_tracking (
    at_counter bigint,
    at_created timestamp,
    at_applied timestamp,
    at_node int4
);
create function {ns}.archiveTracking_offline(p_counter int8, p_created timestamp)
returns int8 language plpgsql as $body$
declare
    v_current int8;
begin
    select at_counter into v_current from {ns}.sl_archive_tracking;
    if not found then
        raise exception 'Slony-I: current archive tracking status not found';
    end if;
    if v_current <> p_counter - 1 then
        raise exception 'Slony-I: node is on archive counter %, this archive log expects %',
            v_current, p_counter - 1;
    end if;
    update {ns}.sl_archive_tracking
       set at_counter = p_counter, at_created = p_created, at_applied = current_timestamp;
    return p_counter;
end
$body$;
create function {ns}.sequenceSetValue_offline(p_nspname text, p_relname text, p_value int8)
returns int4 language plpgsql as $body$
begin
    perform pg_catalog.setval(pg_catalog.format('%I.%I', p_nspname, p_relname), p_value);
    return 0;
end
$body$;
create function {ns}.finishTableAfterCopy(int4) returns int4 language sql as 'select 1';
create table {ns}.sl_log_archive (
    log_origin int4,
    log_txid bigint,
    log_tableid int4,
    log_actionseq int8,
    log_tablenspname text,
    log_tablerelname text,
    log_cmdtype char,
    log_cmdupdncols int4,
    log_cmdargs text[]
);
create function {ns}.log_apply() returns trigger language plpgsql as $body$
declare
    v_args text[] := NEW.log_cmdargs;
    v_n int := coalesce(pg_catalog.array_length(NEW.log_cmdargs, 1), 0);
    v_target text;
    v_first text := '';
    v_second text := '';
    v_i int := 1;
    v_node int4;
begin
    if NEW.log_cmdtype = 'S' then
        -- EXECUTE SCRIPT: [1] the DDL, [2] the nodes it runs on (empty: every node).
        if v_n >= 2 and coalesce(v_args[2], '') <> '' then
            select at_node into v_node from {ns}.sl_archive_tracking;
            if v_node is not null
               and not (v_node::text = any (pg_catalog.string_to_array(v_args[2], ','))) then
                return null;
            end if;
        end if;
        perform pg_catalog.set_config('session_replication_role', 'origin', false);
        execute v_args[1];
        perform pg_catalog.set_config('session_replication_role', 'replica', false);
        return null;
    end if;
    if NEW.log_cmdtype = 's' then
        return null;
    end if;
    v_target := pg_catalog.format('%I.%I', NEW.log_tablenspname, NEW.log_tablerelname);
    if NEW.log_cmdtype = 'T' then
        execute 'truncate only ' || v_target || ' cascade';
        return null;
    end if;
    if NEW.log_cmdtype = 'I' then
        while v_i < v_n loop
            v_first := v_first || case when v_i > 1 then ', ' else '' end
                       || pg_catalog.quote_ident(v_args[v_i]);
            v_second := v_second || case when v_i > 1 then ', ' else '' end
                        || pg_catalog.quote_nullable(v_args[v_i + 1]);
            v_i := v_i + 2;
        end loop;
        execute 'insert into ' || v_target || ' (' || v_first || ') values (' || v_second || ')';
    elsif NEW.log_cmdtype = 'U' then
        -- The first log_cmdupdncols pairs are the new values, the others the key.
        while v_i < v_n loop
            if (v_i - 1) / 2 < NEW.log_cmdupdncols then
                v_first := v_first || case when v_i > 1 then ', ' else '' end
                           || pg_catalog.quote_ident(v_args[v_i]) || ' = '
                           || pg_catalog.quote_nullable(v_args[v_i + 1]);
            else
                v_second := v_second || case when v_second <> '' then ' and ' else '' end
                            || pg_catalog.quote_ident(v_args[v_i]) || ' = '
                            || pg_catalog.quote_nullable(v_args[v_i + 1]);
            end if;
            v_i := v_i + 2;
        end loop;
        if NEW.log_cmdupdncols = 0 then
            v_first := pg_catalog.quote_ident(v_args[1]) || ' = ' || pg_catalog.quote_ident(v_args[1]);
        end if;
        execute 'update only ' || v_target || ' set ' || v_first || ' where ' || v_second;
    elsif NEW.log_cmdtype = 'D' then
        while v_i < v_n loop
            v_second := v_second || case when v_i > 1 then ' and ' else '' end
                        || pg_catalog.quote_ident(v_args[v_i]) || ' = '
                        || pg_catalog.quote_nullable(v_args[v_i + 1]);
            v_i := v_i + 2;
        end loop;
        execute 'delete from only ' || v_target || ' where ' || v_second;
    else
        raise exception 'Slony-I: unknown log_cmdtype % in an archive file', NEW.log_cmdtype;
    end if;
    return null;
end
$body$;
create trigger apply_trigger before insert on {ns}.sl_log_archive
    for each row execute function {ns}.log_apply();
alter table {ns}.sl_log_archive enable replica trigger apply_trigger;
"""

_SUBSCRIBER_QUERY = """
select (select pg_catalog.json_build_array(ac_num, ac_timestamp::text)
          from {ns}.sl_archive_counter),
       (select coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(sub_set, sub_provider, sub_active)
                                            order by sub_set), '[]')
          from {ns}.sl_subscribe where sub_receiver = %s),
       (select coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(tab_id, tab_set, tab_nspname, tab_relname)
                                            order by tab_id), '[]')
          from {ns}.sl_table),
       (select coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(seq_id, seq_set, seq_nspname, seq_relname)
                                            order by seq_id), '[]')
          from {ns}.sl_sequence)
"""

_OFFLINE_QUERY = """
select exists (select 1 from pg_catalog.pg_namespace where nspname = %(ns)s),
       pg_catalog.to_regclass(pg_catalog.quote_ident(%(ns)s) || '.sl_archive_tracking') is not null,
       pg_catalog.to_regclass(pg_catalog.quote_ident(%(ns)s) || '.sl_node') is not null,
       (select coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname, c.relkind)), '[]')
          from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         where c.relkind in ('r', 'p', 'S')
           and (n.nspname, c.relname) in (select * from unnest(%(nsps)s::text[], %(rels)s::text[]) as o(nspname, relname)))
"""


def _as_json(value):
    return json.loads(value) if isinstance(value, str) else value


def read_subscriber(cluster, node):
    """SubscriberState of ``node`` (an initialised node of the cluster), one round trip."""
    cluster.require_initialized(node)
    rows = cluster.fetch(node, sql.SQL(_SUBSCRIBER_QUERY).format(ns=cluster.ns), (node,))
    counter, subs, tables, sequences = [_as_json(v) for v in rows[0]]
    if counter is None:
        raise SlonyError("node %d has no row in %s.sl_archive_counter" % (node, cluster.namespace),
                         node=node)
    return SubscriberState(int(counter[0]), counter[1],
                           [(int(s), int(p), bool(a)) for s, p, a in subs],
                           [(int(i), int(s), n, r) for i, s, n, r in tables],
                           [(int(i), int(s), n, r) for i, s, n, r in sequences])


def list_archive_dir(path, node, missing_ok=False):
    """(ArchiveFiles of ``node``, other node ids) in ``path``; a missing directory has no
    files with ``missing_ok`` (check mode: an earlier task would have created it)."""
    if missing_ok and not os.path.exists(path):
        return [], []
    if not os.path.isdir(path):
        raise SlonyError("archive_dir %s does not exist or is not a directory" % path)
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise SlonyError("cannot read archive_dir %s: %s" % (path, exc.strerror or exc))
    return parse_archive_names(names, node)


def default_runner(argv, env, cwd=None):
    """(rc, stdout, stderr) of ``argv`` with ``env`` added to the environment."""
    import subprocess  # pylint: disable=import-outside-toplevel
    full = dict(os.environ)
    full.update(env)
    proc = subprocess.Popen(argv, env=full, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate()
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _tail(text, lines=6):
    kept = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


class LogShip:
    """One run against one offline database: its connection (holding the apply lock),
    the reads, and the runners of the steps. ``close()`` it at the end."""

    def __init__(self, cluster, node, archive_dir, offline_conninfo, pg_bindir=None,
                 runner=None, connect_timeout=10):
        self.cluster = cluster
        self.node = node
        self.archive_dir = archive_dir
        self.offline_conninfo = offline_conninfo
        cluster.redactor.add_conninfo(offline_conninfo)
        self.pg_bindir = pg_bindir
        self.runner = runner or default_runner
        self.connect_timeout = connect_timeout
        self.conn = None
        self.ns = sql.Identifier(cluster.namespace)
        self.report = None

    # -- connection and lock ------------------------------------------------------------
    def describe(self):
        return "the offline database (%s)" % self.cluster.redactor.text(
            redact_conninfo(self.offline_conninfo))

    def connect(self):
        if self.conn is not None and not self.conn.closed:
            return self.conn
        params = parse_conninfo(self.offline_conninfo, "offline_conninfo")
        params.setdefault("connect_timeout", str(self.connect_timeout))
        params["application_name"] = "dany.slony logship"
        try:
            self.conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise SlonyError("cannot connect to %s: %s" % (
                self.describe(), self.cluster.redactor.text(str(exc).strip())))
        self.conn.autocommit = True
        return self.conn

    def lock(self, timeout, clock=None):
        """Take the offline database's apply lock (a session advisory lock), waiting at most
        ``timeout`` seconds for another run that holds it."""
        conn = self.connect()
        key = (LOCK_CLASS, self.cluster.namespace)

        def probe():
            with conn.cursor() as cur:
                cur.execute("select pg_catalog.pg_try_advisory_lock(%s, pg_catalog.hashtext(%s))", key)
                if cur.fetchone()[0]:
                    return True
            return Pending(note=None)

        def on_timeout(pending):
            return SlonyError(timeout_message(
                "the apply lock of %s" % self.describe(), timeout,
                note="another run is initialising it or applying archive files"))

        poll_until(probe, timeout, on_timeout, clock=clock)

    def close(self):
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None

    def offline_error(self, exc, doing):
        message = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc)
        return SlonyError(self.cluster.redactor.text("%s: %s failed: %s" % (
            self.describe(), doing, message.strip())), queries=self.cluster.queries)

    # -- reads ----------------------------------------------------------------------------
    def read_offline(self, subscriber):
        """OfflineState; the replicated objects looked for are the subscriber's."""
        objects = []
        if subscriber is not None:
            tables, sequences = replicated_objects(subscriber, self.node)
            objects = [(n, r) for dummy, n, r in tables + sequences]
        conn = self.connect()
        namespace = self.cluster.namespace
        try:
            with conn.cursor() as cur:
                cur.execute(_OFFLINE_QUERY, {"ns": namespace, "nsps": [n for n, r in objects],
                                             "rels": [r for n, r in objects]})
                has_schema, has_tracking, is_node, found = cur.fetchone()
                tracking = []
                if has_tracking:
                    cur.execute(sql.SQL("select pg_catalog.to_jsonb(t) from {}.sl_archive_tracking t")
                                .format(self.ns))
                    tracking = [_as_json(r[0]) for r in cur.fetchall()]
                found = _as_json(found)
                present = [(n, r) for n, r, dummy in found]
                tables = [(n, r) for n, r, kind in found if kind in ("r", "p")]
                with_rows = []
                if tables and not has_tracking:
                    cur.execute(sql.SQL("select array[{}]").format(sql.SQL(", ").join(
                        sql.SQL("exists (select 1 from {}.{})").format(sql.Identifier(n), sql.Identifier(r))
                        for n, r in tables)))
                    flags = cur.fetchone()[0]
                    with_rows = [t for t, flag in zip(tables, flags) if flag]
        except psycopg2.Error as exc:
            raise self.offline_error(exc, "reading its state")
        return OfflineState(bool(has_schema), bool(has_tracking), bool(is_node), tracking,
                            present, with_rows)

    def offline_counter(self):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("select at_counter from {}.sl_archive_tracking").format(self.ns))
                rows = cur.fetchall()
        except psycopg2.Error as exc:
            raise self.offline_error(exc, "reading sl_archive_tracking")
        if len(rows) != 1:
            raise SlonyError("%s: %s.sl_archive_tracking holds %d rows, not one"
                             % (self.describe(), self.cluster.namespace, len(rows)))
        return int(rows[0][0])

    # -- programs ---------------------------------------------------------------------------
    def program(self, name):
        if self.pg_bindir:
            path = os.path.join(self.pg_bindir, name)
            if not os.access(path, os.X_OK):
                raise SlonyError("%s is not an executable program (pg_bindir %s)" % (path, self.pg_bindir))
            return path
        path = shutil.which(name)
        if path is None:
            raise SlonyError("%s is not on PATH: install the PostgreSQL client programs or "
                             "set pg_bindir" % name)
        return path

    def run(self, argv, env, doing):
        rc, out, err = self.runner(argv, env)
        shown = " ".join(argv)
        self.cluster.log("offline", "%s  # %s" % (shown, doing))
        if rc != 0:
            raise SlonyError(self.cluster.redactor.text("%s failed (rc=%s): %s" % (
                doing, rc, _tail(err) or _tail(out))), queries=self.cluster.queries)
        return out

    # -- runners ------------------------------------------------------------------------------
    def run_initialize(self, cluster, step, ctx):
        del step, ctx
        init = self.report["initialize"]
        subscriber = read_subscriber(cluster, self.node)
        tables, sequences = replicated_objects(subscriber, self.node)
        if init["copy_schema"]:
            self.copy_schema()
        counter = self.load_data(cluster, tables, sequences)
        init["counter"] = counter
        self.report["counter"] = counter
        return []

    def copy_schema(self):
        """pg_dump --schema-only of the subscriber without the cluster schema and the Slony
        triggers, restored into the offline database in one transaction."""
        source, source_env = libpq_command(self.cluster.admin_conninfo[self.node])
        target, target_env = libpq_command(self.offline_conninfo)
        workdir = tempfile.mkdtemp(prefix="dany-slony-logship-")
        try:
            dump = os.path.join(workdir, "schema.dump")
            listing = os.path.join(workdir, "schema.list")
            self.run([self.program("pg_dump"), "--schema-only", "--format=custom", "--no-password",
                      "--exclude-schema=" + self.cluster.namespace, "--file", dump, "--dbname", source],
                     source_env, "pg_dump --schema-only of node %d" % self.node)
            out = self.run([self.program("pg_restore"), "--list", dump], {}, "pg_restore --list")
            kept, dummy = filter_restore_list(out.splitlines(), self.cluster.name)
            with open(listing, "w") as handle:
                handle.write("\n".join(kept) + "\n")
            self.run([self.program("pg_restore"), "--no-password", "--single-transaction",
                      "--exit-on-error", "--no-owner", "--no-privileges", "--use-list", listing,
                      "--dbname", target, dump], target_env,
                     "pg_restore of node %d's schema into the offline database" % self.node)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def load_data(self, cluster, tables, sequences):
        """The Slony objects, the tracking row, the sequences and the rows of every table
        in ONE offline transaction, read from ONE REPEATABLE READ snapshot of the subscriber
        (which also gives the archive counter the data is at). Returns that counter."""
        source = cluster.connection(self.node)
        target_params = parse_conninfo(self.offline_conninfo, "offline_conninfo")
        target_params.setdefault("connect_timeout", str(self.connect_timeout))
        target_params["application_name"] = "dany.slony logship (initial load)"
        try:
            target = psycopg2.connect(**target_params)
        except psycopg2.Error as exc:
            raise SlonyError("cannot connect to %s: %s" % (
                self.describe(), cluster.redactor.text(str(exc).strip())))
        doing = "reading node %d" % self.node
        try:
            with source.cursor() as src, target.cursor() as dst:
                src.execute("set transaction isolation level repeatable read, read only")
                src.execute(sql.SQL("select ac_num, ac_timestamp from {}.sl_archive_counter").format(cluster.ns))
                counter, created = src.fetchone()
                doing = "creating the log-shipping objects"
                dst.execute("set local session_replication_role = replica")
                dst.execute(sql.SQL(OFFLINE_OBJECTS).format(ns=self.ns))
                dst.execute(sql.SQL("insert into {}.sl_archive_tracking values (%s, %s, current_timestamp, %s)")
                            .format(self.ns), (counter, created, self.node))
                cluster.log("offline", "create schema %s, sl_archive_tracking at counter %d, "
                            "sl_log_archive and its apply trigger" % (cluster.namespace, counter))
                for dummy, nspname, relname in sequences:
                    doing = "copying sequence %s" % qualified(nspname, relname)
                    seq = sql.SQL("{}.{}").format(sql.Identifier(nspname), sql.Identifier(relname))
                    src.execute(sql.SQL("select last_value, is_called from {}").format(seq))
                    value, called = src.fetchone()
                    dst.execute("select pg_catalog.setval(%s::regclass, %s, %s)",
                                (qualified_ident(nspname, relname), value, called))
                for dummy, nspname, relname in tables:
                    doing = "copying table %s" % qualified(nspname, relname)
                    self.copy_table(src, dst, nspname, relname)
                doing = "committing the initial load"
            target.commit()
        except psycopg2.Error as exc:
            target.rollback()
            raise self.offline_error(exc, doing)
        finally:
            target.close()
            source.rollback()
        cluster.log("offline", "copied %d table(s) and %d sequence(s) of node %d as of archive "
                    "counter %d" % (len(tables), len(sequences), self.node, counter))
        return int(counter)

    @staticmethod
    def copy_table(src, dst, nspname, relname):
        src.execute("select pg_catalog.array_agg(a.attname::text order by a.attnum)"
                    "  from pg_catalog.pg_attribute a"
                    " where a.attrelid = pg_catalog.to_regclass(%s) and a.attnum > 0"
                    "   and not a.attisdropped and a.attgenerated = ''",
                    (qualified_ident(nspname, relname),))
        columns = src.fetchone()[0] or []
        table = sql.SQL("{}.{}").format(sql.Identifier(nspname), sql.Identifier(relname))
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as buf:
            src.copy_expert(sql.SQL("copy {} ({}) to stdout").format(table, cols).as_string(src), buf)
            buf.seek(0)
            dst.copy_expert(sql.SQL("copy {} ({}) from stdin").format(table, cols).as_string(dst), buf)

    def run_apply(self, entry):
        """The runner of one file's step: applied when the offline database is just before it,
        skipped when it is past it (the initial load of this run covered it), else the gap."""
        def runner(cluster, step, ctx):
            del cluster, step, ctx
            current = self.offline_counter()
            if entry.counter <= current:
                return []
            if entry.counter != current + 1:
                raise SlonyError("stopped after %d file(s): archive file %s is missing: the offline "
                                 "database is at archive counter %d and the next file in %s is %s"
                                 % (len(self.report["applied"]),
                                    archive_file_name(self.node, current + 1), current,
                                    self.archive_dir, entry.name), queries=self.cluster.queries)
            target, env = libpq_command(self.offline_conninfo)
            path = os.path.join(self.archive_dir, entry.name)
            try:
                self.run([self.program("psql"), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
                          "-d", target, "-f", path], env, "applying archive file %s" % entry.name)
            except SlonyError as exc:
                raise SlonyError("archive file %s failed, after %d file(s) applied; the offline "
                                 "database stays at archive counter %d and nothing after it was "
                                 "applied: %s" % (entry.name, len(self.report["applied"]), current,
                                                  exc.message), queries=self.cluster.queries)
            now = self.offline_counter()
            if now != entry.counter:
                raise SlonyError("archive file %s left the offline database at archive counter %d, "
                                 "not %d: it is not the file slon wrote for that counter"
                                 % (entry.name, now, entry.counter), queries=self.cluster.queries)
            self.report["applied"].append(entry.name)
            self.report["counter"] = now
            return []
        return runner

    def run_remove(self, cluster, step, ctx):
        del cluster, step, ctx
        current = self.offline_counter()
        files, dummy = list_archive_dir(self.archive_dir, self.node)
        removed = []
        for entry in files:
            if entry.counter <= current:
                try:
                    os.remove(os.path.join(self.archive_dir, entry.name))
                except OSError as exc:
                    raise SlonyError("cannot remove %s: %s" % (entry.name, exc.strerror or exc))
                removed.append(entry.name)
        self.report["removed"] = removed
        return []


def qualified_ident(nspname, relname):
    """``"schema"."name"`` quoted as PostgreSQL's quote_ident would need it."""
    return ".".join('"%s"' % part.replace('"', '""') for part in (nspname, relname))


def plan_logship(cluster, node, archive_dir, offline_conninfo, initialize=True, schema="copy",
                 committed_only=True, remove_applied=False, pg_bindir=None, check_mode=False,
                 timeout=300, clock=None, runner=None, ship=None):
    """Planned log shipping from subscriber ``node`` into the offline database.

    ``ship`` is the :class:`LogShip` to use (made from the arguments when None); the
    caller closes it (it holds the offline database's apply lock until then).
    """
    if schema not in SCHEMA_CHOICES:
        raise SlonyError("schema must be one of %s, not %r" % (", ".join(SCHEMA_CHOICES), schema))
    if not archive_dir or not os.path.isabs(archive_dir):
        raise SlonyError("archive_dir must be an absolute path, not %r" % (archive_dir,))
    parse_conninfo(offline_conninfo, "offline_conninfo")
    ship = ship or LogShip(cluster, node, archive_dir, offline_conninfo, pg_bindir, runner,
                           cluster.connect_timeout)
    if not check_mode:
        ship.lock(timeout, clock=clock)
    files, others = list_archive_dir(archive_dir, node, missing_ok=check_mode)
    offline = ship.read_offline(None)
    subscriber = None
    if not offline.has_tracking or committed_only:
        subscriber = read_subscriber(cluster, node)
        if not offline.has_tracking:
            offline = ship.read_offline(subscriber)
    decision = decide(cluster.name, node, offline, subscriber, files, initialize, schema, committed_only)
    extra = {
        "initialize": decision.initialize,
        "files": [f.name for f in decision.apply if not decision.gap or f is not decision.apply[-1]],
        "pending": [f.name for f in decision.pending],
        "applied": [],
        "removed": [],
        "counter": decision.after,
        "other_nodes": others,
    }
    ship.report = extra
    if decision.gap and check_mode:
        raise SlonyError("would apply %d file(s), then stop: %s" % (len(extra["files"]), decision.gap))
    if decision.gap and not extra["files"] and not decision.initialize:
        raise SlonyError(decision.gap)
    plan = Plan()
    if decision.initialize:
        init = decision.initialize
        plan.add(Step(CALLBACK, node, "initialise the offline database from node %d: %s the data "
                      "of %d table(s) and %d sequence(s) at archive counter %d (now)"
                      % (node, "copy the schema (pg_dump --schema-only | pg_restore), then"
                         if init["copy_schema"] else "", init["tables"], init["sequences"],
                         init["counter"]),
                      slonik="# slony1_dump.sh <node %d database> %s | psql <offline database>"
                             % (node, cluster.name),
                      run=ship.run_initialize))
    for entry in decision.apply:
        plan.add(Step(CALLBACK, node, "apply archive file %s (archive counter %d)"
                      % (entry.name, entry.counter),
                      slonik="# psql -v ON_ERROR_STOP=1 -f %s <offline database>" % entry.name,
                      run=ship.run_apply(entry)))
    removable = decision.done + ([f for f in decision.apply if not decision.gap] if remove_applied else [])
    if remove_applied and removable:
        extra["removed"] = [f.name for f in removable]
        plan.add(Step(CALLBACK, node, "remove the %d archive file(s) applied from %s"
                      % (len(removable), archive_dir), run=ship.run_remove))
    before = {"node": node, "initialized": offline.has_tracking,
              "counter": decision.counter if offline.has_tracking else None}
    after = {"node": node, "initialized": True, "counter": decision.after}
    return Planned(plan, before, after, extra)


__all__ = ["plan_logship", "decide", "parse_archive_names", "archive_file_name",
           "filter_restore_list", "LogShip", "OfflineState", "SubscriberState", "ArchiveFile"]
