# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Python API: one object for a Slony cluster, one method per Slony command.

``pip install <repository>`` installs this directory as the ``dany`` package, so::

    from dany.api import Cluster

    cluster = Cluster("shop", {1: "host=db1 dbname=shop user=slony",
                               2: "host=db2 dbname=shop user=slony"})
    print(cluster.set_add_table(1, ["public.coupons"], dry_run=True))
    cluster.set_add_table(1, ["public.coupons"])

Every method goes through the same planners as the Ansible modules (the ``plan_*``
functions of this package): it reads the catalogs, decides what is missing and runs
only that, so every call is idempotent. ``dry_run=True`` returns the plan - each step
with its node, its SQL as it would be sent (passwords redacted) and the equivalent
slonik - without changing anything. Every method returns a :class:`Result`.

The package's ``__init__`` stays empty (Ansible's module_utils loader ships a
package's ``__init__`` with every module that imports from it): import this file as
``dany.api`` (pip) or ``ansible_collections.dany.slony.plugins.module_utils.api``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
from collections import namedtuple

from .adopt import DEFAULT_PASSWORD_VARIABLE, REQUIRED_SECTIONS, adopt
from .cluster import APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT
from .cluster import Cluster as CoreCluster
from .conninfo import Redactor, build_conninfo, redact_conninfo
from .errors import SlonyError
from .events import event_dict
from .info import gather, select_sections
from .names import validate_node_id
from .compare import DEFAULT_CHUNK_SIZE, compare as compare_data
from .converge import SET_KEYS, converge_steps, run_steps
from .nodes import (plan_node_absent, plan_node_present, plan_nodes_absent, plan_nodes_present,
                    plan_repair_config)
from .paths import DEFAULT_CONNRETRY, plan_paths
from .plan import WAIT, execute_plan, render_step
from .script import plan_script
from .sets import plan_set
from .slonik import preamble as slonik_preamble
from .subscriptions import plan_subscription, plan_subscriptions
from .sync import plan_sync
from .tables import plan_sequences, plan_tables
from .upgrade import plan_update_functions
from .waits import DEFAULT_TIMEOUT

__version__ = "0.1.0"

# One step of a plan, as a dry run shows it: the node it runs on, its kind (event,
# exec, init_node, wait, callback), a one-line description, the SQL as it would be
# sent (passwords redacted; ``-- ...`` for a wait) and the equivalent slonik (or None).
PlannedStep = namedtuple("PlannedStep", "node kind description sql slonik")


class Result:
    """What every call returns.

    ``changed``: the plan had something to do (or, with ``dry_run``, would have);
    ``dry_run``; ``steps``: the plan as :class:`PlannedStep` tuples; ``slonik``: the
    equivalent slonik script (preamble included, passwords redacted, empty when there
    is nothing to do); ``events``: the Slony events created ({origin, seqno, type});
    ``queries``: the statements executed ({node, sql}); ``before`` / ``after``: the
    objects concerned before and after the plan; ``extra``: what the planner adds
    (e.g. ``origin`` for tables, ``event_node`` for a script).
    """

    def __init__(self, changed, dry_run, steps, slonik, events=(), queries=(), before=None,
                 after=None, extra=None):
        self.changed = changed
        self.dry_run = dry_run
        self.steps = list(steps)
        self.slonik = slonik
        self.events = list(events)
        self.queries = list(queries)
        self.before = before
        self.after = after
        self.extra = dict(extra or {})

    def as_dict(self):
        """The result as plain data (what an Ansible module would return)."""
        return {"changed": self.changed, "dry_run": self.dry_run,
                "steps": [s._asdict() for s in self.steps], "slonik": self.slonik,
                "events": self.events, "queries": self.queries, "before": self.before,
                "after": self.after, "extra": self.extra}

    def __repr__(self):
        return "<Result changed=%s dry_run=%s steps=%d events=%d>" % (
            self.changed, self.dry_run, len(self.steps), len(self.events))

    def __str__(self):
        if not self.steps:
            return "-- nothing to do"
        lines = []
        for step in self.steps:
            lines.append("-- node %s: %s" % (step.node, step.description))
            if step.kind != WAIT:
                lines.append(step.sql)
        return "\n".join(lines)


def planned_steps(core, plan):
    """The steps of ``plan`` as :class:`PlannedStep` tuples (SQL rendered on ``core``)."""
    return [PlannedStep(step.node, step.kind, step.description, render_step(core, step),
                        step.slonik) for step in plan.steps]


class Cluster:
    """A Slony cluster: its name and an admin conninfo per node id.

    ``nodes`` maps node ids to a libpq conninfo, or to a dict with ``conninfo`` and
    optionally ``comment``, ``provider`` (the node it subscribes from, for a cascade)
    and ``path_conninfo`` (what the other nodes use to reach it, default ``conninfo``).
    ``sets`` is a list in the shape of the inventory's ``slony_sets`` (used by
    :meth:`converge`). ``wait`` (default True) and ``wait_timeout`` (seconds) are the
    defaults of every call, as the modules' options of the same names; ``share_dir``
    is where the Slony SQL files are (auto-detected by default).

    No connection stays open between calls: each call connects to the nodes it needs
    (in parallel), plans, runs, and closes them. Calls that change something take the
    cluster's run lock first, so they never race an Ansible run on the same cluster.
    """

    def __init__(self, name, nodes, sets=None, wait=True, wait_timeout=DEFAULT_TIMEOUT,
                 connect_timeout=DEFAULT_CONNECT_TIMEOUT, share_dir=None,
                 application_name=APPLICATION_NAME, clock=None):
        self.node_config = normalize_nodes(nodes)
        self.redactor = Redactor()
        conninfo = dict((node, cfg["conninfo"]) for node, cfg in self.node_config.items())
        # Validates the name and every conninfo; connects to nothing.
        self.name = CoreCluster(name, conninfo, redactor=self.redactor).name
        self.admin_conninfo = conninfo
        for cfg in self.node_config.values():
            self.redactor.add_conninfo(cfg["path_conninfo"])
        self.sets = list(sets or [])
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.connect_timeout = connect_timeout
        self.share_dir = share_dir
        self.application_name = application_name
        self.clock = clock

    # -- construction from files ------------------------------------------------------
    @classmethod
    def from_config(cls, config, **kwargs):
        """A cluster from a dict: ``{cluster_name, nodes, sets}`` or an inventory.

        The short shape: ``cluster_name`` (or ``slony_cluster_name``), ``nodes`` (as
        the constructor takes them, or a list of ``{id, conninfo, ...}``) and ``sets``
        (or ``slony_sets``). An Ansible inventory in the shape of ``inventory/lab.yml``
        (an ``all`` group; node hosts in group ``slony_nodes`` with ``slony_node_id``
        and ``slony_conninfo`` or ``slony_db_host``/``_port``/``_name``/``_user``/
        ``_password``) is read too; Jinja templates in it are not evaluated.
        """
        name, nodes, sets = read_config(config)
        kwargs.setdefault("sets", sets)
        return cls(name, nodes, **kwargs)

    @classmethod
    def from_yaml(cls, path, **kwargs):
        """:meth:`from_config` from a YAML file (needs PyYAML: ``pip install dany[yaml]``)."""
        try:
            import yaml
        except ImportError:
            raise SlonyError("Cluster.from_yaml needs PyYAML: pip install 'dany[yaml]' "
                             "(or PyYAML)")
        with io.open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        return cls.from_config(config, **kwargs)

    # -- what the cluster is made of ----------------------------------------------------
    @property
    def node_ids(self):
        """The node ids, in ascending order."""
        return sorted(self.node_config)

    def conninfo(self, node):
        """The admin conninfo of ``node``."""
        return self._node(node)["conninfo"]

    def path_conninfo(self, node):
        """The conninfo the other nodes use to reach ``node`` (STORE PATH's conninfo)."""
        return self._node(node)["path_conninfo"]

    def mesh_paths(self):
        """A path between every pair of nodes: ``[{server, client, conninfo}]``."""
        return [{"server": server, "client": client, "conninfo": self.path_conninfo(server)}
                for server in self.node_ids for client in self.node_ids if server != client]

    def _node(self, node):
        node = validate_node_id(node)
        if node not in self.node_config:
            raise SlonyError("node %d is not a node of this Cluster object (nodes %s)"
                             % (node, ", ".join(str(n) for n in self.node_ids)), node=node)
        return self.node_config[node]

    # -- the engine ---------------------------------------------------------------------
    def connect(self, read_only=False):
        """A core :class:`cluster.Cluster` (lazy connections); close it, or use ``with``.
        ``read_only``: every session read-only (what ``dry_run`` uses)."""
        return CoreCluster(self.name, self.admin_conninfo, connect_timeout=self.connect_timeout,
                           application_name=self.application_name, redactor=self.redactor,
                           read_only=read_only)

    def run(self, planner, dry_run=False, wait=None, lock=True):
        """Plan with ``planner(core_cluster)`` (any ``plan_*`` function of the core,
        bound to its arguments) and run the plan, or only return it with ``dry_run``.

        ``wait`` (default: the cluster's) false skips the completion waits, as the
        modules' ``wait: false``; the waits a step needs first always run.
        """
        wait = self.wait if wait is None else wait
        with self.connect(read_only=dry_run) as core:
            if lock and not dry_run:
                core.acquire_run_lock(self.wait_timeout, clock=self.clock)
            planned = planner(core)
            changed = bool(planned.plan.changes())
            steps = planned_steps(core, planned.plan)
            lines = []
            if changed:
                lines = slonik_preamble(self.name, self.admin_conninfo, self.redactor)
                lines.extend(planned.plan.slonik())
            slonik = "\n".join(self.redactor.text(line) for line in lines)
            events, queries = [], []
            if not dry_run:
                events = execute_plan(core, planned.plan, wait_enabled=wait,
                                      timeout=self.wait_timeout, share_dir=self.share_dir,
                                      clock=self.clock)
                queries = list(core.queries)
        return Result(changed, dry_run, steps, slonik, [event_dict(e) for e in events],
                      queries, planned.before, planned.after, planned.extra)

    def query(self, node, statement, params=None):
        """Rows of a read-only ``statement`` on ``node`` (its own transaction, rolled back)."""
        with self.connect() as core:
            return core.fetch(validate_node_id(node), statement, params, check_identity=False)

    # -- nodes --------------------------------------------------------------------------
    def store_node(self, node, comment=None, event_node=None, dry_run=False, wait=None):
        """Make ``node`` a node of the cluster (INIT CLUSTER for the first one, else
        STORE NODE through ``event_node``, by default an existing node)."""
        comment = comment if comment is not None else self._node(node).get("comment")
        return self.run(lambda core: plan_node_present(core, node, comment, event_node),
                        dry_run, wait)

    def store_nodes(self, nodes=None, event_node=None, dry_run=False, wait=None):
        """Every node of ``nodes`` (ids or ``{id, comment}``; default: all the nodes of
        this object) in one plan: the new nodes load the Slony schema in parallel."""
        entries = []
        for entry in self.node_ids if nodes is None else nodes:
            entry = dict(entry) if isinstance(entry, dict) else {"id": entry}
            entry.setdefault("comment", self._node(entry["id"]).get("comment"))
            entries.append(entry)
        return self.run(lambda core: plan_nodes_present(core, entries, event_node),
                        dry_run, wait)

    def drop_node(self, node, event_node=None, dry_run=False, wait=None):
        """DROP NODE (through ``event_node``), then uninstall the node's Slony schema."""
        return self.run(lambda core: plan_node_absent(core, node, event_node), dry_run, wait)

    def drop_nodes(self, nodes, event_node=None, dry_run=False, wait=None):
        """Several nodes leave in one DROP NODE event (a node may feed other listed nodes;
        an origin, or a node feeding a node that stays, is refused), then each reachable
        one is uninstalled."""
        return self.run(lambda core: plan_nodes_absent(core, list(nodes), event_node),
                        dry_run, wait)

    def repair_config(self, node, dry_run=False, wait=None):
        """REPAIR CONFIG on ``node`` when the table and sequence oids it records are stale
        (its database was restored from a dump)."""
        return self.run(lambda core: plan_repair_config(core, node), dry_run, wait)

    def update_functions(self, nodes=None, share_dir=None, dry_run=False, wait=None):
        """UPDATE FUNCTIONS on the nodes (default: every node) whose Slony functions report
        another version than the installed Slony-I SQL files; their slons restart."""
        ids = self.node_ids if nodes is None else list(nodes)
        return self.run(lambda core: plan_update_functions(core, ids, share_dir), dry_run, wait)

    # -- paths --------------------------------------------------------------------------
    def store_path(self, server, client, conninfo=None, connretry=DEFAULT_CONNRETRY,
                   dry_run=False, wait=None):
        """STORE PATH: how ``client``'s slon reaches ``server`` (default conninfo: the
        server's :meth:`path_conninfo`). A changed conninfo or connretry is updated."""
        conninfo = conninfo if conninfo is not None else self.path_conninfo(server)
        return self.store_paths([{"server": server, "client": client, "conninfo": conninfo,
                                  "connretry": connretry}], dry_run, wait)

    def store_paths(self, paths=None, dry_run=False, wait=None):
        """Several paths in one plan (``{server, client, conninfo, connretry, state}``;
        default: :meth:`mesh_paths`)."""
        paths = self.mesh_paths() if paths is None else [dict(p) for p in paths]
        for path in paths:
            if path.get("conninfo"):
                self.redactor.add_conninfo(path["conninfo"])
        return self.run(lambda core: plan_paths(core, paths), dry_run, wait)

    def drop_path(self, server, client, dry_run=False, wait=None):
        """DROP PATH from ``server`` to ``client``."""
        return self.store_paths([{"server": server, "client": client, "state": "absent"}],
                                dry_run, wait)

    # -- sets, tables, sequences --------------------------------------------------------
    def create_set(self, set_id, origin, comment=None, dry_run=False, wait=None):
        """CREATE SET ``set_id`` on ``origin`` (refuses a set that has another origin)."""
        return self.run(lambda core: plan_set(core, set_id, origin, comment, "present"),
                        dry_run, wait)

    def lock_set(self, set_id, origin, dry_run=False, wait=None):
        """LOCK SET on the origin; returns once the transactions older than the lock have
        ended (within ``wait_timeout``; on timeout the set is unlocked again)."""
        return self.run(lambda core: plan_set(core, set_id, origin, None, "present", True),
                        dry_run, wait)

    def unlock_set(self, set_id, origin, dry_run=False, wait=None):
        """UNLOCK SET on the origin."""
        return self.run(lambda core: plan_set(core, set_id, origin, None, "present", False),
                        dry_run, wait)

    def merge_set(self, set_id, add_id, origin, dry_run=False, wait=None):
        """MERGE SET: set ``add_id``'s tables and sequences join set ``set_id`` (same
        origin, same subscribers) and set ``add_id`` is gone."""
        return self.run(lambda core: plan_set(core, add_id, origin, None, "absent", None,
                                              set_id), dry_run, wait)

    def drop_set(self, set_id, origin, dry_run=False, wait=None):
        """DROP SET ``set_id`` (its tables stay, unreplicated)."""
        return self.run(lambda core: plan_set(core, set_id, origin, None, "absent"),
                        dry_run, wait)

    def set_add_table(self, set_id, tables=None, patterns=None, schemas=None, exclude=None,
                      origin=None, exclusive=False, dry_run=False, wait=None):
        """SET ADD TABLE for the tables named (``"schema.table"`` or ``{name, key, id,
        comment}``), matched (``patterns``: regular expressions on ``schema.table``) or
        in ``schemas``, minus ``exclude``. Keys are checked before anything changes; a
        subscribed set gets the tables live (temporary set, subscriptions, MERGE SET).
        ``exclusive`` also drops the set's other tables."""
        return self.run(lambda core: plan_tables(
            core, set_id, origin, tables, patterns, schemas, exclude, "present", exclusive),
            dry_run, wait)

    def set_drop_table(self, set_id, tables=None, patterns=None, schemas=None, exclude=None,
                       origin=None, dry_run=False, wait=None):
        """SET DROP TABLE for the tables selected as in :meth:`set_add_table`."""
        return self.run(lambda core: plan_tables(
            core, set_id, origin, tables, patterns, schemas, exclude, "absent"), dry_run, wait)

    def set_add_sequence(self, set_id, sequences=None, patterns=None, schemas=None,
                         exclude=None, origin=None, exclusive=False, dry_run=False, wait=None):
        """SET ADD SEQUENCE, selected as tables are in :meth:`set_add_table`."""
        return self.run(lambda core: plan_sequences(
            core, set_id, origin, sequences, patterns, schemas, exclude, "present", exclusive),
            dry_run, wait)

    def set_drop_sequence(self, set_id, sequences=None, patterns=None, schemas=None,
                          exclude=None, origin=None, dry_run=False, wait=None):
        """SET DROP SEQUENCE."""
        return self.run(lambda core: plan_sequences(
            core, set_id, origin, sequences, patterns, schemas, exclude, "absent"),
            dry_run, wait)

    def set_move_table(self, set_id, tables, origin=None, dry_run=False, wait=None):
        """SET MOVE TABLE: ``tables`` (names, as in :meth:`set_add_table`) of another set
        with the same origin and subscribers move into set ``set_id``."""
        return self.run(lambda core: plan_tables(
            core, set_id, origin, tables, None, None, None, "present", False, True),
            dry_run, wait)

    def set_move_sequence(self, set_id, sequences, origin=None, dry_run=False, wait=None):
        """SET MOVE SEQUENCE, as :meth:`set_move_table`."""
        return self.run(lambda core: plan_sequences(
            core, set_id, origin, sequences, None, None, None, "present", False, True),
            dry_run, wait)

    # -- subscriptions ------------------------------------------------------------------
    def subscribe(self, set_id, receiver, provider=None, forward=True, omit_copy=False,
                  dry_run=False, wait=None):
        """SUBSCRIBE SET: ``receiver`` copies set ``set_id`` from ``provider`` (default:
        the origin); returns once the copy is complete (unless ``wait=False``). A
        changed provider re-subscribes (RESUBSCRIBE NODE). ``receiver`` may be a list
        (ids or ``{receiver, provider, forward, omit_copy}``): providers first, the
        copies in parallel."""
        if isinstance(receiver, (list, tuple)):
            entries = [self._subscription(entry, provider, forward, omit_copy)
                       for entry in receiver]
            return self.run(lambda core: plan_subscriptions(core, set_id, entries),
                            dry_run, wait)
        return self.run(lambda core: plan_subscription(
            core, set_id, receiver, provider, forward, omit_copy), dry_run, wait)

    @staticmethod
    def _subscription(entry, provider, forward, omit_copy):
        entry = dict(entry) if isinstance(entry, dict) else {"receiver": entry}
        for key, value in (("provider", provider), ("forward", forward),
                           ("omit_copy", omit_copy)):
            if entry.get(key) is None:
                entry[key] = value
        return entry

    def unsubscribe(self, set_id, receiver, dry_run=False, wait=None):
        """UNSUBSCRIBE SET (the receiver keeps its tables, unreplicated)."""
        return self.run(lambda core: plan_subscription(
            core, set_id, receiver, state="absent"), dry_run, wait)

    # -- scripts, SYNC, facts -----------------------------------------------------------
    def execute_script(self, script, event_node=None, only_on=None, key=None, dry_run=False,
                       wait=None):
        """EXECUTE SCRIPT: the DDL runs on ``event_node`` (default: an origin) and on
        every other node (or ``only_on``) in order with the replicated data. With a
        ``key`` a re-run does nothing. ``dry_run`` runs the script in a rolled-back
        transaction on the event node, so a typo is reported before anything runs."""
        wait = self.wait if wait is None else wait
        return self.run(lambda core: plan_script(
            core, script, event_node=event_node, only_on=only_on, key=key, validate=dry_run,
            wait_timeout=self.wait_timeout if wait else None), dry_run, wait)

    def sync(self, node, confirmers=None, dry_run=False, wait=None):
        """SYNC on ``node`` and wait until ``confirmers`` (default: every node) confirm it."""
        return self.run(lambda core: plan_sync(core, node, confirmers,
                                               timeout=self.wait_timeout), dry_run, wait)

    def info(self, sections=None):
        """Facts, as ``dany.slony.slony_info`` returns them (topology, lag, slons, drift,
        unreplicated tables); ``sections`` filters them as the module's ``filter``."""
        with self.connect() as core:
            return gather(core, select_sections(sections or []))

    def compare(self, nodes=None, sets=None, tables=None, sequences=True,
                chunk_size=DEFAULT_CHUNK_SIZE):
        """The data comparison of ``dany.slony.slony_compare``; returns its result dict
        (``equal``, ``differences``, ``undecided``, ``tables``, ``sequences``, ...). Bounded
        by ``wait_timeout``; creates one SYNC per round and changes nothing else."""
        with self.connect() as core:
            return compare_data(core, nodes, sets, tables, sequences, chunk_size,
                                timeout=self.wait_timeout, clock=self.clock)

    def export_inventory(self, password_variable=DEFAULT_PASSWORD_VARIABLE, host_names=None,
                         node_vars=None, localhost=True):
        """The cluster as it runs, as an inventory for the ``cluster`` role (what
        ``playbooks/adopt.yml`` writes): reads every node (:meth:`info`) and returns
        ``{"inventory": dict, "text": the YAML file, "warnings": [...], "variables": [...]}``
        (see the ``dany.slony.slony_inventory`` filter). No password is in it: one found in
        a conninfo becomes ``slony_db_password: "{{ <password_variable> }}"``. Writing
        ``text`` needs PyYAML. (:meth:`from_yaml` refuses such templates: the file is for
        Ansible.)"""
        facts = self.info(list(REQUIRED_SECTIONS) + ["drift"])
        return adopt(facts, password_variable=password_variable, host_names=host_names,
                     node_vars=node_vars, admin_conninfo=self.admin_conninfo,
                     localhost=localhost)

    # -- the whole configuration --------------------------------------------------------
    def converge(self, dry_run=False, wait=None):
        """What the ``cluster`` role does (module ``slony_cluster``), from this object: the
        nodes and a full mesh of paths (no waits: the slons may not run yet), then for
        each of :attr:`sets` the set, its tables and sequences, and the subscriptions of
        the other nodes (from their ``provider``, default the origin). One set of
        connections and one run lock; each step is planned on what the steps before it
        left (:mod:`converge`). Returns a list of :class:`Result`, one a step.

        With ``dry_run`` a step that needs what an earlier step would create is not
        planned: its Result has nothing to do and ``extra["not_planned"]`` says why."""
        wait = self.wait if wait is None else wait
        nodes = [{"id": node, "comment": self._node(node).get("comment")}
                 for node in self.node_ids]
        steps = converge_steps(nodes, self.mesh_paths(), self._set_descriptions())
        with self.connect(read_only=dry_run) as core:
            if not dry_run:
                core.acquire_run_lock(self.wait_timeout, clock=self.clock)
            done = run_steps(core, steps, dry_run=dry_run, wait=wait,
                             timeout=self.wait_timeout, share_dir=self.share_dir,
                             clock=self.clock)
            results = []
            for one in done:
                if one.planned is None:
                    results.append(Result(False, dry_run, [], "",
                                          extra={"step": one.step.label,
                                                 "not_planned": one.not_planned}))
                    continue
                lines = []
                if one.changed:
                    lines = slonik_preamble(self.name, self.admin_conninfo, self.redactor)
                    lines.extend(one.planned.plan.slonik())
                extra = dict(one.planned.extra, step=one.step.label)
                results.append(Result(
                    one.changed, dry_run, planned_steps(core, one.planned.plan),
                    "\n".join(self.redactor.text(line) for line in lines),
                    [event_dict(e) for e in one.events], [] if dry_run else one.queries,
                    one.planned.before, one.planned.after, extra))
        return results

    def _set_descriptions(self):
        """:attr:`sets` with their subscribers, as the ``cluster`` role reads ``slony_sets``:
        every other node (or the set's ``subscribers``), each fed by the set's
        ``providers`` map ({receiver: provider}), else the node's ``provider``, else the
        origin; ``forward`` is one flag for the set or {receiver: flag} (default true)."""
        out = []
        for entry in self.sets:
            origin = int(entry["origin"])
            receivers = entry.get("subscribers")
            if receivers is None:
                receivers = [n for n in self.node_ids if n != origin]
            providers = dict((int(k), int(v)) for k, v in (entry.get("providers") or {}).items())
            forward = entry.get("forward", True)
            forwards = (dict((int(k), bool(v)) for k, v in forward.items())
                        if isinstance(forward, dict) else {})
            subscribers = []
            for receiver in (int(r) for r in receivers):
                provider = providers.get(receiver) or (
                    self.node_config.get(receiver, {}).get("provider") or origin)
                flag = forwards.get(receiver, True) if isinstance(forward, dict) else bool(forward)
                subscribers.append({"receiver": receiver, "provider": int(provider),
                                    "forward": flag})
            described = dict((k, v) for k, v in entry.items() if k in SET_KEYS)
            described["subscribers"] = subscribers
            out.append(described)
        return out


# -- configuration ------------------------------------------------------------------------


def normalize_nodes(nodes):
    """``{id: {conninfo, path_conninfo, comment, provider}}`` from a map or a list."""
    if isinstance(nodes, (list, tuple)):
        nodes = dict((entry.get("id"), entry) for entry in nodes)
    if not isinstance(nodes, dict) or not nodes:
        raise SlonyError("nodes must map node ids to conninfos (or dicts with a conninfo), "
                         "with at least one node")
    result = {}
    for key, value in nodes.items():
        node = validate_node_id(key, "node id")
        cfg = dict(value) if isinstance(value, dict) else {"conninfo": value}
        if not cfg.get("conninfo"):
            raise SlonyError("node %d has no conninfo" % node)
        cfg.setdefault("path_conninfo", None)
        cfg["path_conninfo"] = cfg["path_conninfo"] or cfg["conninfo"]
        cfg["provider"] = None if cfg.get("provider") is None \
            else validate_node_id(cfg["provider"], "provider of node %d" % node)
        cfg.setdefault("comment", None)
        cfg.pop("id", None)
        result[node] = cfg
    return result


def read_config(config):
    """(cluster name, nodes, sets) from the short shape or an Ansible inventory."""
    if not isinstance(config, dict):
        raise SlonyError("a cluster configuration must be a mapping")
    if "all" in config and "nodes" not in config:
        return read_inventory(config)
    name = config.get("cluster_name", config.get("slony_cluster_name"))
    if not name:
        raise SlonyError("the configuration has no cluster_name")
    return name, config.get("nodes"), config.get("sets", config.get("slony_sets"))


_DB_PARAMS = ((None, "host"), ("slony_db_port", "port"),
              ("slony_db_name", "dbname"), ("slony_db_user", "user"),
              ("slony_db_password", "password"))


def read_inventory(inventory, group="slony_nodes"):
    """(cluster name, nodes, sets) from an inventory in the shape of inventory/lab.yml.

    Variables are merged as Ansible merges them for a host: ``all`` vars, then the
    vars of each group on the way down to the host, then the host's own.
    """
    found = {}
    _walk_group(inventory["all"] or {}, {}, group, False, found)
    if not found:
        raise SlonyError("the inventory has no host with slony_node_id in group %s" % group)
    names = set(v.get("slony_cluster_name") for v in found.values())
    if len(names) != 1 or None in names:
        raise SlonyError("the inventory must set one slony_cluster_name for the nodes "
                         "(found %s)" % sorted(str(n) for n in names))
    nodes = {}
    for host, hostvars in found.items():
        node = validate_node_id(hostvars["slony_node_id"], "slony_node_id of %s" % host)
        if node in nodes:
            raise SlonyError("hosts %s and %s both have slony_node_id %d"
                             % (nodes[node]["host"], host, node))
        admin = hostvars.get("slony_conninfo") or _built_conninfo(host, hostvars)
        nodes[node] = {"host": host, "conninfo": admin,
                       "path_conninfo": hostvars.get("slony_path_conninfo"),
                       "comment": hostvars.get("slony_node_comment", "Node %d" % node),
                       "provider": hostvars.get("slony_provider")}
    sets = next(iter(found.values())).get("slony_sets")
    _refuse_templates([nodes, sets])
    for cfg in nodes.values():
        cfg.pop("host")
    return names.pop(), nodes, sets


def _built_conninfo(host, hostvars):
    """The conninfo the cluster role builds from ``slony_db_*`` (host: ansible_host)."""
    params = {"host": hostvars.get("slony_db_host", hostvars.get("ansible_host", host))}
    for var, key in _DB_PARAMS[1:]:
        if hostvars.get(var) not in (None, ""):
            params[key] = str(hostvars[var])
    return build_conninfo(params)


def _walk_group(group, inherited, target, inside, found):
    merged = dict(inherited)
    merged.update(group.get("vars") or {})
    if inside:
        for host, hostvars in (group.get("hosts") or {}).items():
            values = dict(merged)
            values.update(hostvars or {})
            if "slony_node_id" in values:
                found[host] = values
    for name, child in (group.get("children") or {}).items():
        _walk_group(child or {}, merged, target, inside or name == target, found)


def _refuse_templates(value):
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            _refuse_templates(item)
    elif isinstance(value, str) and ("{{" in value or "{%" in value):
        raise SlonyError("the configuration holds a Jinja template (%r): the Python API "
                         "does not evaluate templates; give the value itself"
                         % (redact_conninfo(value) if "password" in value else value))


__all__ = ["Cluster", "Result", "PlannedStep", "SlonyError", "planned_steps",
           "slonik_preamble", "normalize_nodes", "read_config", "read_inventory"]
