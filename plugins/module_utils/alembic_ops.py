# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alembic operations that create a table and replicate it, in one migration.

In ``env.py``::

    import dany.alembic_ops
    dany.alembic_ops.configure_from_alembic(context.config)   # section [dany]

then, in a migration::

    op.create_replicated_table("coupons", sa.Column("id", sa.Integer, primary_key=True),
                               schema="public")
    ...
    op.drop_replicated_table("coupons", schema="public")     # in downgrade()

Operations: ``create_replicated_table``, ``drop_replicated_table``, ``replicate_table``,
``unreplicate_table``, ``execute_everywhere``. In the ``slony`` mode the DDL runs
through EXECUTE SCRIPT (:func:`script.plan_script`) on every node, in order with the
replicated data, and the table joins (or leaves) the set through the same planners as
``dany.slony.slony_table`` - live on a subscribed set. In the ``disabled`` mode (a
database without replication: a laptop, a test database) the same migration runs
plain DDL and logs that Slony is skipped. In Alembic's offline mode (``--sql``) nothing
connects to the nodes: the plan is printed, as SQL comments with its slonik.

The Slony steps run on dany's own connections to the nodes and commit on their own.
Before them, Alembic's transaction is committed (:func:`outside_transaction`): Slony's
copy of a new table waits for every transaction open on the origin, Alembic's included.
Run migrations with ``transaction_per_migration=True``. The file is named ``alembic_ops`` so that it can
never shadow the ``alembic`` package, even when this directory is on ``sys.path``.

Alembic is imported only by :func:`register` (called by the configure functions): this
module imports without Alembic installed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import os

from .errors import SlonyError

MODES = ("slony", "disabled")
DEFAULT_SECTION = "dany"

# A child of Alembic's logger: Alembic's default logging configuration shows it.
log = logging.getLogger("alembic.dany")

_state = {"config": None, "registered": False}


def require_alembic():
    """Import and return the ``alembic.operations`` module, or say what to install."""
    try:
        from alembic import operations
    except ImportError:
        raise SlonyError("dany.alembic_ops needs Alembic: pip install 'dany[alembic]' "
                         "(or alembic and SQLAlchemy)")
    return operations


class Settings:
    """Where and how the operations replicate: ``mode`` (``slony`` or ``disabled``),
    ``cluster_name``, ``nodes`` ({node id: admin conninfo}), ``set_id`` (default set of
    the operations), ``origin`` (the set's origin, the event node of the scripts) and
    ``wait_timeout``."""

    def __init__(self, mode="slony", cluster_name=None, nodes=None, set_id=None, origin=None,
                 wait_timeout=300):
        if mode not in MODES:
            raise SlonyError("dany.alembic_ops: mode must be one of %s, not %r"
                             % (", ".join(MODES), mode))
        self.mode = mode
        self.cluster_name = cluster_name
        self.nodes = dict((int(k), v) for k, v in (nodes or {}).items())
        self.set_id = None if set_id in (None, "") else int(set_id)
        self.origin = None if origin in (None, "") else int(origin)
        self.wait_timeout = int(wait_timeout)
        self._cluster = None
        if mode == "slony" and (not cluster_name or not self.nodes):
            raise SlonyError("dany.alembic_ops: mode slony needs cluster_name and at least "
                             "one node conninfo (node.<id> = <conninfo>, or DANY_SLONY_NODES)")

    def cluster(self):
        """The :class:`api.Cluster` of these settings (built once)."""
        if self._cluster is None:
            from .api import Cluster
            self._cluster = Cluster(self.cluster_name, self.nodes,
                                    wait_timeout=self.wait_timeout)
        return self._cluster

    def set_for(self, set_id):
        set_id = self.set_id if set_id is None else int(set_id)
        if set_id is None:
            raise SlonyError("dany.alembic_ops: no set id (set_id = ... in the [dany] "
                             "section, DANY_SLONY_SET, or set_id= in the operation)")
        return set_id


def settings_from_mapping(options, environ=None):
    """:class:`Settings` from ``options`` (the ``[dany]`` section: mode, cluster_name,
    set_id, origin, wait_timeout, ``node.<id>``); ``DANY_SLONY_*`` variables win."""
    environ = os.environ if environ is None else environ
    options = dict(options or {})
    nodes = dict((key.split(".", 1)[1], value) for key, value in options.items()
                 if key.startswith("node.") and value)
    if environ.get("DANY_SLONY_NODES"):
        nodes = dict(item.split("=", 1) for item in
                     (part.strip() for part in environ["DANY_SLONY_NODES"].split(";")) if item)
    return Settings(
        mode=environ.get("DANY_SLONY_MODE") or options.get("mode") or "slony",
        cluster_name=environ.get("DANY_SLONY_CLUSTER") or options.get("cluster_name"),
        nodes=nodes,
        set_id=environ.get("DANY_SLONY_SET") or options.get("set_id"),
        origin=environ.get("DANY_SLONY_ORIGIN") or options.get("origin"),
        wait_timeout=options.get("wait_timeout") or 300)


def configure(settings=None, **kwargs):
    """Set the :class:`Settings` the operations use (or build them from ``kwargs``) and
    register the operations with Alembic. Returns the settings."""
    register()
    _state["config"] = settings if settings is not None else Settings(**kwargs)
    mode = _state["config"].mode
    log.info("dany: Slony %s%s", "enabled, cluster " if mode == "slony" else "disabled",
             _state["config"].cluster_name if mode == "slony" else
             " (mode disabled): migrations run plain DDL only")
    return _state["config"]


def configure_from_alembic(config, section=DEFAULT_SECTION, environ=None):
    """:func:`configure` from the ``[dany]`` section of an Alembic ``Config``."""
    return configure(settings_from_mapping(config.get_section(section, {}), environ))


def settings():
    if _state["config"] is None:
        raise SlonyError("dany.alembic_ops is not configured: call "
                         "dany.alembic_ops.configure_from_alembic(config) in env.py")
    return _state["config"]


# -- what each operation does, by mode ----------------------------------------------------


def qualified(name, schema):
    return "%s.%s" % (schema or "public", name)


def _comment(operations, lines):
    operations.migration_context.impl.static_output(
        "\n".join("-- dany: " + line if line else "--" for line in lines) + "\n")


def _offline(operations, what, slonik_lines):
    """Offline (--sql) in mode slony: print the plan, run nothing."""
    _comment(operations, ["%s (Slony cluster %s, run by `alembic upgrade` online):" % (
        what, settings().cluster_name)] + slonik_lines)


def _script_slonik(ddl, origin):
    lines = ["execute script (event node = %s, sql = '" % (origin or "<an origin>")]
    return lines + ["    " + line for line in ddl.strip().splitlines()] + ["');"]


def _add_slonik(fq_name, set_id, origin, key=None):
    return ["set add table (set id = %d, origin = %s, fully qualified name = '%s'%s);"
            % (set_id, origin or "<origin>", fq_name, ", key = '%s'" % key if key else "")]


def _drop_slonik(fq_name, set_id, origin):
    return ["set drop table (origin = %s, id = <id of %s in set %d>);"
            % (origin or "<origin>", fq_name, set_id)]


def outside_transaction(operations):
    """Alembic's ``autocommit_block``: commit the migration's transaction first.

    Slony's copy of a table added to a subscribed set waits until every transaction
    that was open on the origin when the copy started has ended - Alembic's own
    included, which would then wait for the copy: a deadlock until the timeout. So the
    Slony steps run with no Alembic transaction open (what the migration did before
    the operation is committed; use ``transaction_per_migration``)."""
    return operations.get_context().autocommit_block()


def _table_exists(cluster, node, fq_name):
    rows = cluster.query(node, "select pg_catalog.to_regclass(%s) is not null", (fq_name,))
    return rows[0][0]


def _event_node(cfg):
    return cfg.origin or cfg.cluster().node_ids[0]


def create_replicated_table(operations, name, columns, schema=None, set_id=None, key=None,
                            kw=None):
    """Table ``name`` (SQLAlchemy ``columns``) on every node, then in the set."""
    cfg = settings()
    fq_name = qualified(name, schema)
    if cfg.mode == "disabled":
        log.info("dany: Slony disabled, create table %s without replication", fq_name)
        operations.create_table(name, *columns, schema=schema, **(kw or {}))
        return
    from sqlalchemy import MetaData, Table
    from sqlalchemy.schema import CreateTable
    table = Table(name, MetaData(), *columns, schema=schema, **(kw or {}))
    ddl = str(CreateTable(table).compile(dialect=operations.migration_context.dialect)).strip()
    set_id = cfg.set_for(set_id)
    if operations.migration_context.as_sql:
        plan = _script_slonik(ddl + ";", cfg.origin)
        plan += _add_slonik(fq_name, set_id, cfg.origin, key)
        _offline(operations, "create replicated table %s" % fq_name, plan)
        return
    cluster = cfg.cluster()
    with outside_transaction(operations):
        if not _table_exists(cluster, _event_node(cfg), fq_name):
            log.info("dany: create table %s on every node (EXECUTE SCRIPT)", fq_name)
            cluster.execute_script(ddl + ";", event_node=cfg.origin)
        replicate(operations, fq_name, set_id, key)


def replicate(operations, fq_name, set_id, key=None):
    cfg = settings()
    entry = {"name": fq_name, "key": key} if key else fq_name
    result = cfg.cluster().set_add_table(set_id, [entry], origin=cfg.origin)
    log.info("dany: table %s %s set %d", fq_name,
             "added to" if result.changed else "already in", set_id)


def unreplicate(operations, fq_name, set_id):
    cfg = settings()
    result = cfg.cluster().set_drop_table(set_id, [fq_name], origin=cfg.origin)
    log.info("dany: table %s %s set %d", fq_name,
             "dropped from" if result.changed else "not in", set_id)


def drop_replicated_table(operations, name, schema=None, set_id=None):
    cfg = settings()
    fq_name = qualified(name, schema)
    if cfg.mode == "disabled":
        log.info("dany: Slony disabled, drop table %s without replication", fq_name)
        operations.drop_table(name, schema=schema)
        return
    set_id = cfg.set_for(set_id)
    ddl = "drop table if exists %s;" % _quoted(operations, name, schema)
    if operations.migration_context.as_sql:
        _offline(operations, "drop replicated table %s" % fq_name,
                 _drop_slonik(fq_name, set_id, cfg.origin) + _script_slonik(ddl, cfg.origin))
        return
    with outside_transaction(operations):
        unreplicate(operations, fq_name, set_id)
        log.info("dany: drop table %s on every node (EXECUTE SCRIPT)", fq_name)
        cfg.cluster().execute_script(ddl, event_node=cfg.origin)


def replicate_table(operations, name, schema=None, set_id=None, key=None):
    cfg = settings()
    fq_name = qualified(name, schema)
    if cfg.mode == "disabled":
        log.info("dany: Slony disabled, table %s not added to a set", fq_name)
        return
    set_id = cfg.set_for(set_id)
    if operations.migration_context.as_sql:
        _offline(operations, "replicate table %s" % fq_name,
                 _add_slonik(fq_name, set_id, cfg.origin, key))
        return
    with outside_transaction(operations):
        replicate(operations, fq_name, set_id, key)


def unreplicate_table(operations, name, schema=None, set_id=None):
    cfg = settings()
    fq_name = qualified(name, schema)
    if cfg.mode == "disabled":
        log.info("dany: Slony disabled, table %s not dropped from a set", fq_name)
        return
    set_id = cfg.set_for(set_id)
    if operations.migration_context.as_sql:
        _offline(operations, "unreplicate table %s" % fq_name,
                 _drop_slonik(fq_name, set_id, cfg.origin))
        return
    with outside_transaction(operations):
        unreplicate(operations, fq_name, set_id)


def execute_everywhere(operations, script):
    cfg = settings()
    if cfg.mode == "disabled":
        log.info("dany: Slony disabled, script run on this database only")
        operations.execute(script)
        return
    if operations.migration_context.as_sql:
        _offline(operations, "script on every node", _script_slonik(script, cfg.origin))
        return
    log.info("dany: script on every node (EXECUTE SCRIPT)")
    with outside_transaction(operations):
        cfg.cluster().execute_script(script, event_node=cfg.origin)


def _quoted(operations, name, schema):
    preparer = operations.migration_context.dialect.identifier_preparer
    return "%s.%s" % (preparer.quote_identifier(schema or "public"),
                      preparer.quote_identifier(name))


# -- registration with Alembic ------------------------------------------------------------


def register():
    """Add the operations to Alembic's ``op`` (once). Imports Alembic."""
    if _state["registered"]:
        return
    operations = require_alembic()
    _define(operations.Operations, operations.MigrateOperation)
    _state["registered"] = True


# Over 80 lines on purpose: five small operation classes that Alembic needs defined
# against its own base classes, which are imported only when Alembic is used.
def _define(Operations, MigrateOperation):  # noqa: N803 - Alembic's class names
    """Alembic wants one MigrateOperation class per operation, registered on Operations,
    and an implementation for each; every class below only carries its arguments."""

    @Operations.register_operation("create_replicated_table")
    class CreateReplicatedTableOp(MigrateOperation):
        def __init__(self, table_name, columns, schema=None, set_id=None, key=None, kw=None):
            self.table_name, self.columns, self.schema = table_name, columns, schema
            self.set_id, self.key, self.kw = set_id, key, kw or {}

        @classmethod
        def create_replicated_table(cls, operations, table_name, *columns, **kw):
            """CREATE TABLE on every node (EXECUTE SCRIPT), then SET ADD TABLE."""
            schema, set_id, key = kw.pop("schema", None), kw.pop("set_id", None), \
                kw.pop("key", None)
            return operations.invoke(cls(table_name, columns, schema, set_id, key, kw))

        def reverse(self):
            return DropReplicatedTableOp(self.table_name, self.schema, self.set_id)

    @Operations.register_operation("drop_replicated_table")
    class DropReplicatedTableOp(MigrateOperation):
        def __init__(self, table_name, schema=None, set_id=None):
            self.table_name, self.schema, self.set_id = table_name, schema, set_id

        @classmethod
        def drop_replicated_table(cls, operations, table_name, schema=None, set_id=None):
            """SET DROP TABLE, then DROP TABLE on every node (EXECUTE SCRIPT)."""
            return operations.invoke(cls(table_name, schema, set_id))

    @Operations.register_operation("replicate_table")
    class ReplicateTableOp(MigrateOperation):
        def __init__(self, table_name, schema=None, set_id=None, key=None):
            self.table_name, self.schema, self.set_id, self.key = table_name, schema, set_id, key

        @classmethod
        def replicate_table(cls, operations, table_name, schema=None, set_id=None, key=None):
            """SET ADD TABLE for a table that exists on every node."""
            return operations.invoke(cls(table_name, schema, set_id, key))

        def reverse(self):
            return UnreplicateTableOp(self.table_name, self.schema, self.set_id)

    @Operations.register_operation("unreplicate_table")
    class UnreplicateTableOp(MigrateOperation):
        def __init__(self, table_name, schema=None, set_id=None):
            self.table_name, self.schema, self.set_id = table_name, schema, set_id

        @classmethod
        def unreplicate_table(cls, operations, table_name, schema=None, set_id=None):
            """SET DROP TABLE (the table stays on every node)."""
            return operations.invoke(cls(table_name, schema, set_id))

    @Operations.register_operation("execute_everywhere")
    class ExecuteEverywhereOp(MigrateOperation):
        def __init__(self, script):
            self.script = script

        @classmethod
        def execute_everywhere(cls, operations, script):
            """The script on every node, through EXECUTE SCRIPT."""
            return operations.invoke(cls(script))

    @Operations.implementation_for(CreateReplicatedTableOp)
    def _create(operations, op):
        create_replicated_table(operations, op.table_name, op.columns, op.schema, op.set_id,
                                op.key, op.kw)

    @Operations.implementation_for(DropReplicatedTableOp)
    def _drop(operations, op):
        drop_replicated_table(operations, op.table_name, op.schema, op.set_id)

    @Operations.implementation_for(ReplicateTableOp)
    def _replicate(operations, op):
        replicate_table(operations, op.table_name, op.schema, op.set_id, op.key)

    @Operations.implementation_for(UnreplicateTableOp)
    def _unreplicate(operations, op):
        unreplicate_table(operations, op.table_name, op.schema, op.set_id)

    @Operations.implementation_for(ExecuteEverywhereOp)
    def _execute(operations, op):
        execute_everywhere(operations, op.script)


__all__ = ["configure", "configure_from_alembic", "register", "require_alembic", "Settings",
           "settings_from_mapping", "MODES"]
