# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""FAILOVER: promote a backup node for a failed node, the way slonik 2.2 does it.

The steps and their order are slonik's (``slonik_failed_node``, reference §2.24):

1. validation on the backup node: every subscriber fed by the failed node has a path
   to the backup; the backup is a forwarding subscriber of every set of the failed node;
2. candidates: every surviving node, flagged as a failover candidate when
   ``sl_failover_targets`` lists it for the failed node's sets;
3. on every surviving node, in one transaction each: note the backend of its slon in
   ``sl_nodelock``, ``preFailover(failed, is_candidate)``, commit (paths from the failed
   node are blanked and the slon restarts);
4. wait until every slon that was running has registered again (a new backend pid);
5. the failover candidate holding the most events of the failed node (the backup on a
   tie; the backup when there is no candidate) becomes the temporary backup T:
   ``failedNode2(failed, T, seqno, [failed])`` on T creates FAILOVER_NODE; wait until
   every active surviving node has confirmed it; ``failedNode3`` on T;
6. when T is not the requested backup: LOCK SET on T, MOVE SET to the backup and wait
   until the backup has confirmed, set by set (:class:`setmove.SetHandover`, as the
   switchover).

Planning reads first (:func:`read_failover`: the catalogs of the backup and of every
surviving node, slonik's queries on the backup, the probe of the failed node, the
events each survivor holds), then decides from that data alone (:func:`decide_failover`,
pure).

What slonik does not do and this module adds: every wait is bounded (slonik's waits
never end) and names the nodes that are behind and the state of their slon; nothing
is changed when a surviving node cannot be reached or its slon is not running (the
failover could not complete; a slon that is restarting is first waited for, by a
precondition step of the plan, at most ``slon_wait`` seconds); the failed node is
probed first and a failover of a node whose database answers is refused unless forced;
a run after a completed failover changes nothing, and a run after an interrupted one
resumes where it stopped.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .slonik import yes_no
from .pg import psycopg2, sql

from .catalog import PENDING_CONNINFO, read_snapshot
from .conninfo import parse_conninfo, redact_conninfo
from .errors import SlonyError
from .waits import DEFAULT_TIMEOUT, SYSTEM_CLOCK, Behind, Pending, poll_until, timeout_error
from .events import Event, submit_event, wait_for_event
from .plan import CALLBACK, WAIT, Plan, Planned, Step, execute_plan, function_call
from .setmove import SetHandover, wait_for_slons

# -- pure logic (unit tested) ---------------------------------------------------------


def survivors_and_candidates(rows):
    """(surviving nodes, failover candidates) from slonik's candidate query rows.

    ``rows`` are ``(no_id, backup_id, no_failed)``: every node of the cluster but the
    failed one, left-joined with ``sl_failover_targets`` for the failed node's sets.
    ``backup_id`` is not null for a node that can take over the failed node's sets.
    Nodes that failed earlier (``no_failed``) and were never dropped are not survivors:
    they can neither be prepared nor confirm anything (slonik would ask for their
    admin conninfo and fail).
    """
    survivors = set()
    candidates = set()
    for no_id, backup_id, no_failed in rows:
        if no_failed:
            continue
        survivors.add(no_id)
        if backup_id is not None:
            candidates.add(no_id)
    return sorted(survivors), sorted(candidates)


def choose_temporary_backup(backup, seqnos, candidates):
    """slonik's choice of the node that is promoted first: (node, seqno).

    ``seqnos`` maps every surviving node to the highest event seqno of the failed node
    it holds (None when it holds none). The failover candidate with the highest value
    wins; among equal values the lowest node id (slonik walks the nodes in id order and
    only a strictly higher value replaces the current choice). The requested backup
    is preferred when it holds as many events as the winner, even if it is not a
    candidate itself. Without any candidate holding events, the backup is used.
    The seqno returned is the winner's: the point up to which every node must have
    applied the failed node's events.
    """
    best, best_seqno = None, 0
    for node in sorted(seqnos):
        seqno = seqnos[node] or 0
        if node in candidates and seqno > best_seqno:
            best, best_seqno = node, seqno
    backup_seqno = seqnos.get(backup) or 0
    if best is None:
        return backup, backup_seqno
    if best != backup and best_seqno == backup_seqno:
        return backup, best_seqno
    return best, best_seqno


def validation_errors(failed, backup, orphans, not_forwarded):
    """slonik's validation messages for the rows of its two checks on the backup."""
    errors = ["node %d is fed by node %d but has no path to the backup node %d (store the "
              "path from server %d to client %d first, or fail node %d over as well)"
              % (receiver, failed, backup, backup, receiver, receiver)
              for receiver in sorted(set(orphans))]
    errors.extend("node %d is not a forwarding subscriber of set %d of node %d (subscribe it "
                  "with forward: true, or choose another backup node)" % (backup, set_id, failed)
                  for set_id in sorted(set(not_forwarded)))
    return errors


def failover_complete_on(snapshot, failed):
    """True when ``snapshot``'s node has finished the failover of ``failed``: the node is
    gone, or it is failed and inactive and no set originates on it any more."""
    entry = snapshot.nodes.get(failed)
    if entry is None:
        return True
    still_origin = any(s.origin == failed for s in snapshot.sets.values())
    return bool(entry.failed and not entry.active and not still_origin)


# Messages of a server that answered but does not serve queries (yet): the node is down
# for the application, it counts as unreachable.
_NOT_SERVING = ("starting up", "shutting down", "in recovery", "not yet accepting",
                "not accepting connections", "too many clients")


def server_answered(message):
    """Whether a failed connection attempt still reached a live PostgreSQL server.

    libpq prefixes what the server sends with ``FATAL:``; a refused or timed-out
    connection, or an unknown host, has no server message. A server that answers with
    an authentication error is alive: failing its node over would split the cluster.
    """
    text = (message or "").lower()
    if "fatal:" not in text:
        return False
    return not any(marker in text for marker in _NOT_SERVING)


# -- SQL (slonik's queries, with bind parameters) -------------------------------------

_ORPHANS = """
select sub_receiver from {ns}.sl_subscribe
  left join {ns}.sl_path on (pa_server = %(backup)s and pa_client = sub_receiver)
 where sub_receiver <> all(%(failed_list)s::int4[]) and sub_provider = %(failed)s
   and sub_receiver <> %(backup)s and pa_client is null
"""

_NOT_FORWARDED = """
select s.set_id from {ns}.sl_set s
  left join {ns}.sl_subscribe sub
         on (s.set_id = sub.sub_set and sub.sub_receiver = %(backup)s and sub.sub_forward = true)
 where sub.sub_set is null and s.set_origin = %(failed)s
 order by 1
"""

_CANDIDATES = """
select distinct no_id, backup_id, no_failed
  from {ns}.sl_node
  left join {ns}.sl_failover_targets
         on (sl_node.no_id = sl_failover_targets.backup_id and set_origin = %(failed)s)
 where no_id <> all(%(failed_list)s::int4[])
   and (backup_id <> all(%(failed_list)s::int4[]) or backup_id is null)
 order by no_id
"""

_SETS_TO_MOVE = """
select s.set_id, count(s.set_id)
  from {ns}.sl_set s, {ns}.sl_subscribe sub
 where s.set_id = sub.sub_set and s.set_origin = %(failed)s and sub.sub_active
 group by s.set_id order by s.set_id
"""

_SLON_BACKEND = """
select nl_backendpid from {ns}.sl_nodelock
 where nl_nodeid = {ns}.getLocalNodeId(%s)
   and exists (select 1 from pg_catalog.pg_stat_activity where pid = nl_backendpid)
"""

_SLON_RESTARTED = """
select nl_backendpid from {ns}.sl_nodelock
 where nl_backendpid <> %s and nl_nodeid = {ns}.getLocalNodeId(%s)
"""

_MAX_SEQNO = "select max(ev_seqno) from {ns}.sl_event where ev_origin = %s"

# failedNode2 ran here: the FAILOVER_NODE event this node created for the failed node.
_OWN_FAILOVER_EVENT = """
select ev_origin, ev_seqno, ev_data2 from {ns}.sl_event
 where ev_type = 'FAILOVER_NODE' and ev_data1 = %s
   and ev_origin = {ns}.getLocalNodeId(%s)
 order by ev_seqno desc limit 1
"""


def _fetch(cluster, node, query, params=None):
    return cluster.fetch(node, sql.SQL(query).format(ns=cluster.ns), params)


# -- probing the failed node ----------------------------------------------------------

def probe_failed_node(cluster, failed, backup_snapshot, connect=None):
    """(reachable, [what each attempt found]) for the failed node's database.

    Tries the failed node's admin conninfo (when given) and the conninfos the other
    nodes use to reach it (``sl_path`` rows with the failed node as server), each once.
    """
    connect = connect or _try_connect
    conninfos = []
    if cluster.has_node(failed):
        conninfos.append(("admin_conninfo", cluster.admin_conninfo[failed]))
    for path in sorted(backup_snapshot.paths.values()):
        if path.server == failed and path.conninfo != PENDING_CONNINFO:
            if all(path.conninfo != c for dummy, c in conninfos):
                conninfos.append(("path to node %d" % path.client, path.conninfo))
    findings = []
    reachable = False
    for what, conninfo in conninfos:
        cluster.redactor.add_conninfo(conninfo)
        shown = cluster.redactor.text(redact_conninfo(conninfo))
        ok, message = connect(conninfo, cluster.connect_timeout)
        message = cluster.redactor.text(message)
        if ok:
            findings.append("%s (%s): the database answers" % (what, shown))
            reachable = True
        elif server_answered(message):
            findings.append("%s (%s): the server answers (%s)" % (what, shown, message))
            reachable = True
        else:
            findings.append("%s (%s): unreachable (%s)" % (what, shown, message))
    return reachable, findings


def _try_connect(conninfo, timeout):
    try:
        params = parse_conninfo(conninfo)
    except SlonyError as exc:
        return False, exc.message
    params.setdefault("connect_timeout", str(timeout))
    params["application_name"] = "dany.slony failover probe"
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        return False, " ".join(str(exc).split())
    try:
        with conn.cursor() as cur:
            cur.execute("select 1")
        return True, "ok"
    except psycopg2.Error as exc:
        return False, " ".join(str(exc).split())
    finally:
        conn.close()


# -- the run ------------------------------------------------------------------------

class FailoverRun:
    """What the steps of one failover share while they run (and report afterwards).

    Pure data at planning time; the step runners get the cluster and the
    :class:`plan.RunContext` (its clock) when they run. Every wait gets ``timeout``.
    """

    def __init__(self, ns, failed, backup, survivors, candidates, sets_to_move,
                 timeout=DEFAULT_TIMEOUT, wait_enabled=True, report=None):
        self.ns = ns
        self.failed = failed
        self.backup = backup
        self.survivors = list(survivors)
        self.candidates = set(candidates)
        self.sets_to_move = list(sets_to_move)
        self.timeout = timeout
        self.wait_enabled = wait_enabled
        self.report = report if report is not None else {}
        self.slon_pids = {}
        self.temporary_backup = None
        self.seqno = None
        self.event = None

    def _resume_hint(self):
        return ("; nothing is lost: fix the cause and run the same failover again, it "
                "resumes where it stopped")

    # -- step 3: preFailover on every surviving node ---------------------------------
    def pre_failover_step(self, node):
        ns = self.ns
        candidate = node in self.candidates
        query = function_call(ns, "preFailover", (self.failed, candidate))

        def run(cluster, step, ctx):
            del ctx
            # slonik reads the slon's backend under sl_config_lock and calls preFailover
            # in the same transaction: the slon cannot re-register in between.
            conn = cluster.connection(step.node)
            try:
                with conn.cursor() as cur:
                    cur.execute("select pg_catalog.set_config('lock_timeout', %s, true)",
                                ("%ds" % max(1, int(self.timeout)),))
                    cur.execute(sql.SQL("lock table {}.sl_config_lock").format(ns))
                    cur.execute(sql.SQL(_SLON_BACKEND).format(ns=ns), (cluster.namespace,))
                    row = cur.fetchone()
                    text = cur.mogrify(step.query, step.params).decode("utf-8")
                    cur.execute(step.query, step.params)
                conn.commit()
            except psycopg2.Error as exc:
                conn.rollback()
                raise cluster.error(step.node, exc, doing="preFailover(%d, %s) on node %d" % (
                    self.failed, "true" if candidate else "false", step.node))
            cluster.log(step.node, "lock table %s.sl_config_lock; %s" % (
                cluster.quoted_namespace(step.node), text))
            self.slon_pids[step.node] = row[0] if row else None
            return []

        return Step(CALLBACK, node,
                    "prepare node %d for the failover of node %d (preFailover, failover "
                    "candidate: %s): blank its paths from node %d and restart its slon"
                    % (node, self.failed, yes_no(candidate), self.failed),
                    query=query, params=(self.failed, candidate), function="preFailover",
                    args=(self.failed, candidate), run=run)

    # -- step 4: the slons restart ---------------------------------------------------
    def wait_for_restarts(self, cluster, clock=SYSTEM_CLOCK):
        """Wait until every slon noted by preFailover has registered with a new backend."""
        pending = dict((node, pid) for node, pid in self.slon_pids.items() if pid is not None)
        query = sql.SQL(_SLON_RESTARTED).format(ns=cluster.ns)

        def probe():
            for node in sorted(pending):
                if cluster.fetch(node, query, (pending[node], cluster.namespace)):
                    del pending[node]
            if not pending:
                return True
            return Pending([Behind(node, "no new slon registration since backend %d" % pid)
                            for node, pid in sorted(pending.items())], note=(
                "preFailover has run on node(s) %s (their paths from node %d are blanked); "
                "node %d is not failed over yet. slon restarts its worker 20 s after the "
                "request; a slon that is running but never restarts is hung: restart it%s" % (
                    ", ".join(map(str, self.survivors)), self.failed, self.failed,
                    self._resume_hint())))

        poll_until(probe, self.timeout, lambda p: timeout_error(
            cluster, "the slon daemons to restart after preFailover", self.timeout, p),
            clock=clock)

    # -- step 5: promote the most-ahead candidate ------------------------------------
    def seqnos(self, cluster):
        return dict((node, _fetch(cluster, node, _MAX_SEQNO, (self.failed,))[0][0])
                    for node in self.survivors)

    def promote(self, cluster, step, ctx):
        del step
        self.wait_for_restarts(cluster, ctx.clock)
        seqnos = self.seqnos(cluster)
        target, seqno = choose_temporary_backup(self.backup, seqnos, self.candidates)
        if not seqno:
            raise SlonyError("no surviving node holds any event of node %d, so there is no "
                             "point to fail over from" % self.failed, node=target,
                             queries=cluster.queries)
        self.report["failed_node_events"] = [
            {"node": node, "max_seqno": seqnos[node]} for node in sorted(seqnos)]
        self.temporary_backup = target
        self.seqno = seqno
        self.report["temporary_backup"] = target
        query = function_call(cluster.ns, "failedNode2",
                              (self.failed, target, seqno, [self.failed]))
        events = submit_event(cluster, target, query, (self.failed, target, seqno, [self.failed]))
        failover = [e for e in events if e.type == "FAILOVER_NODE"]
        if not failover:
            raise SlonyError("failedNode2 on node %d created no FAILOVER_NODE event"
                             % target, node=target, queries=cluster.queries)
        self.event = failover[-1]
        return events

    # -- step 5 (end): every surviving node confirms, then failedNode3 ------------------
    def confirmers(self, cluster, target):
        snap = read_snapshot(cluster, target)
        return sorted(n.id for n in snap.nodes.values()
                      if n.active and n.id != target and n.id != self.failed)

    def wait_failover_confirmed(self, cluster, clock=SYSTEM_CLOCK):
        target = self.temporary_backup
        try:
            wait_for_event(cluster, self.event, self.confirmers(cluster, target),
                           timeout=self.timeout, wait_on=target, clock=clock)
        except SlonyError as exc:
            raise SlonyError(
                "%s. A node confirms FAILOVER_NODE once its slon has applied node %d's "
                "events up to %s from node %d (it retries every 10 s)%s" % (
                    exc.message, self.failed, self.seqno, target, self._resume_hint()),
                node=exc.node, queries=cluster.queries)

    def finish(self, cluster, step, ctx):
        del step
        self.wait_failover_confirmed(cluster, ctx.clock)
        target = self.temporary_backup
        query = function_call(cluster.ns, "failedNode3", (self.failed, target, self.seqno))
        return submit_event(cluster, target, query, (self.failed, target, self.seqno))

    def wait_confirmed_only(self, cluster, step, ctx):
        del step
        self.wait_failover_confirmed(cluster, ctx.clock)

    # -- step 6: move the sets from the temporary backup to the backup -----------------
    def move_sets(self, cluster, step, ctx):
        """LOCK SET, wait for the older transactions, MOVE SET to the backup, wait until
        the backup confirms, set by set. A lock left by an interrupted run is reused; a
        failure leaves the set locked, for the next run to resume with."""
        del step
        target = self.temporary_backup
        if target is None or target == self.backup:
            return []
        sets = read_snapshot(cluster, target).sets
        mine = [s for s in self.sets_to_move if s in sets and sets[s].origin == target]
        handover = SetHandover(target, self.backup, unlock_on_failure=False, locks=dict(
            (s, sets[s].locked) for s in mine if sets[s].locked is not None),
            failure_note="set(s) %(sets)s stay locked on node %(origin)d until the failover "
                         "is run again")
        events = []
        for set_id in mine:
            moved = handover.handover(cluster, set_id, self.timeout, ctx.clock)
            events.extend(moved)
            # FAILOVER is not finished until the backup node is the origin.
            wait_for_event(cluster, moved[-1], [self.backup], timeout=self.timeout,
                           wait_on=target, clock=ctx.clock)
        return events

    # -- DROP NODE --------------------------------------------------------------------
    def drop_failed_node(self, cluster, step, ctx):
        del step
        from .nodes import plan_node_absent  # DROP NODE as slony_node plans it
        plan = plan_node_absent(cluster, self.failed, event_node=self.backup).plan
        return execute_plan(cluster, plan, wait_enabled=self.wait_enabled,
                            timeout=self.timeout, share_dir=ctx.share_dir, clock=ctx.clock)


# -- reading --------------------------------------------------------------------------

class FailoverRead:
    """Everything :func:`decide_failover` needs, read by :func:`read_failover` (plain data).

    ``snaps``: node id -> its own catalog, for the backup and every surviving node;
    ``probe``: (reachable, findings) of the failed node, read when the failover is not
    complete everywhere; ``sets_rows``: slonik's sets to move; ``promotion``: (node,
    FAILOVER_NODE event, seqno) when failedNode2 already ran on a survivor; ``orphans``,
    ``not_forwarded``: slonik's validation rows; ``seqnos``: survivor -> the highest
    event of the failed node it holds; ``drop_plan``: DROP NODE's plan, read when the
    failover is complete and the failed node is to be dropped.
    """

    def __init__(self, cluster_name, failed, backup, survivors=(), candidates=(), snaps=None,
                 admin_nodes=()):
        self.cluster_name = cluster_name
        self.failed = failed
        self.backup = backup
        self.survivors = list(survivors)
        self.candidates = list(candidates)
        self.snaps = dict(snaps or {})
        self.admin_nodes = list(admin_nodes)
        self.probe = None
        self.sets_rows = []
        self.promotion = None
        self.orphans = []
        self.not_forwarded = []
        self.seqnos = {}
        self.drop_plan = None


def check_backup(cluster_name, backup, bsnap):
    """The backup must know itself and not be failed."""
    if backup not in bsnap.nodes:
        raise SlonyError("node %d does not know itself as a node of cluster %s"
                         % (backup, cluster_name), node=backup)
    if bsnap.nodes[backup].failed:
        raise SlonyError("the backup node %d is itself a failed node" % backup, node=backup)


def check_survivors_reachable(cluster_name, survivors, admin_nodes):
    missing = [n for n in survivors if n not in admin_nodes]
    if missing:
        raise SlonyError(
            "admin_conninfo has no entry for surviving node(s) %s; a failover must reach "
            "every surviving node of cluster %s (nodes %s)" % (
                ", ".join(map(str, missing)), cluster_name, ", ".join(map(str, survivors))),
            node=missing[0])


def incomplete_nodes(snaps, failed):
    return sorted(n for n in snaps if not failover_complete_on(snaps[n], failed))


def read_failover(cluster, failed, backup, drop_failed=False, probe=probe_failed_node):
    """Read what the failover of ``failed`` to ``backup`` is decided from (slonik's
    queries, in its order); a :class:`FailoverRead`. What the earlier reads show decides
    what else is worth reading (nothing more once the failover is complete)."""
    cluster.require_node(backup, "the failover (it is the backup node)")
    bsnap = read_snapshot(cluster, backup)
    check_backup(cluster.name, backup, bsnap)
    params = {"failed": failed, "backup": backup, "failed_list": [failed]}
    survivors, candidates = survivors_and_candidates(_fetch(cluster, backup, _CANDIDATES, params))
    check_survivors_reachable(cluster.name, survivors, cluster.nodes())
    data = FailoverRead(cluster.name, failed, backup, survivors, candidates, {backup: bsnap},
                        cluster.nodes())
    for node in survivors:
        if node not in data.snaps:
            data.snaps[node] = read_snapshot(cluster, node)
    if not incomplete_nodes(data.snaps, failed):
        if drop_failed and failed in bsnap.nodes:
            from .nodes import plan_node_absent
            data.drop_plan = plan_node_absent(cluster, failed, event_node=backup).plan
        return data
    data.probe = probe(cluster, failed, bsnap)
    data.sets_rows = [r[0] for r in _fetch(cluster, backup, _SETS_TO_MOVE, params)]
    data.promotion = _find_promotion(cluster, data.snaps, failed)
    if data.promotion is None:
        data.orphans = [r[0] for r in _fetch(cluster, backup, _ORPHANS, params)]
        data.not_forwarded = [r[0] for r in _fetch(cluster, backup, _NOT_FORWARDED, params)]
        data.seqnos = dict((node, _fetch(cluster, node, _MAX_SEQNO, (failed,))[0][0])
                           for node in survivors)
    return data


def _find_promotion(cluster, snaps, failed):
    """(node, FAILOVER_NODE event, seqno) when failedNode2 already ran on a survivor."""
    for node in sorted(snaps):
        entry = snaps[node].nodes.get(failed)
        if entry is None or not entry.failed:
            continue
        rows = _fetch(cluster, node, _OWN_FAILOVER_EVENT, (str(failed), cluster.namespace))
        if rows:
            origin, seqno, data2 = rows[0]
            return node, Event(origin, seqno, "FAILOVER_NODE"), int(data2)
    return None


# -- deciding (pure) ------------------------------------------------------------------

def _set_views(sets, origin=None):
    return [{"id": s, "origin": origin if origin is not None else o} for s, o in sets]


def _view(failed, backup, state, sets):
    return {"failed_node": failed, "backup_node": backup, "state": state, "sets": sets}


def sets_of_failed_node(snaps, failed):
    """[(set id, failed)] of the sets some survivor still shows on the failed node."""
    found = set()
    for node in sorted(snaps):
        for entry in snaps[node].sets.values():
            if entry.origin == failed:
                found.add(entry.id)
    return [(s, failed) for s in sorted(found)]


def _check_slons(data, slon_wait=0):
    """Every active surviving node needs a running slon, or the failover cannot finish.

    A slon that is restarting (slon waits 20 s before it restarts its worker, for
    instance after the preFailover of an interrupted run) is waited for, at most
    ``slon_wait`` seconds, by the precondition step returned (None: every slon runs);
    with ``slon_wait`` 0 a stopped slon is refused at once.
    """
    down = []
    for node in data.survivors:
        snap = data.snaps[node]
        entry = snap.nodes.get(node)
        if entry is not None and entry.active and not snap.slon_running:
            down.append(node)
    if not down:
        return None

    def refusal(nodes, waited=None):
        return ("the slon daemon of surviving node(s) %s is not running%s; the failover of node "
                "%d needs every surviving node's slon (each one must process FAILOVER_NODE). "
                "Start it (role dany.slony.slon) and run the failover again; nothing was "
                "changed%s" % (", ".join(map(str, nodes)),
                               " (waited %ss for it to come back)" % slon_wait if waited else "",
                               data.failed, "; " + waited if waited else ""))

    if not slon_wait:
        raise SlonyError(refusal(down), node=down[0])

    def run(cluster, step, ctx):
        wait_for_slons(cluster, down, slon_wait, refusal, clock=ctx.clock)

    return Step(WAIT, data.backup, "wait up to %ss for the slon daemon of surviving node(s) %s "
                "to run again; refuse the failover, nothing changed, if it does not"
                % (slon_wait, ", ".join(map(str, down))), required=True, run=run)


def _validate(data, sets_of_failed):
    failed, backup = data.failed, data.backup
    errors = validation_errors(failed, backup, data.orphans, data.not_forwarded)
    if not data.candidates and sets_of_failed:
        errors.append("no surviving node is a failover candidate for node %d (a direct, "
                      "forwarding subscriber of every set of node %d)" % (failed, failed))
    if errors:
        raise SlonyError("cannot fail node %d over to node %d: %s; nothing was changed" % (
            failed, backup, "; ".join(errors)), node=backup)


def _check_candidates(snaps, candidates, failed):
    """preFailover's checks on each candidate, done before anything is changed."""
    errors = []
    for node in candidates:
        snap = snaps[node]
        for entry in sorted(snap.sets.values()):
            if entry.origin != failed:
                continue
            sub = snap.subscriptions.get((entry.id, node))
            if sub is None:
                errors.append("node %d is not subscribed to set %d" % (node, entry.id))
            elif not sub.active:
                errors.append("node %d's subscription to set %d is not active" % (node, entry.id))
            elif not sub.forward and any(s.set == entry.id and s.receiver != node
                                         for s in snap.subscriptions.values()):
                errors.append("node %d is not a forwarder of set %d" % (node, entry.id))
    if errors:
        raise SlonyError("cannot fail node %d over: %s (as seen on the candidates' own "
                         "catalogs); nothing was changed" % (failed, "; ".join(errors)))


def _done_plan(data):
    """The failover is complete everywhere: wait for a DROP NODE, or drop the node."""
    plan = Plan()
    failed, backup = data.failed, data.backup
    if failed not in data.snaps[backup].nodes:
        still_known = sorted(n for n in data.snaps if failed in data.snaps[n].nodes)
        if still_known:
            plan.add(Step(WAIT, backup, "wait until node(s) %s have processed the DROP NODE "
                          "of node %d" % (", ".join(map(str, still_known)), failed),
                          confirmers=still_known))
    elif data.drop_plan is not None:
        plan.extend(data.drop_plan.steps)
    return plan


def _refuse_live_node(data, force):
    reachable, findings = data.probe
    if reachable and not force:
        failed = data.failed
        raise SlonyError(
            "node %d is not failed: %s. Failing over a node that still runs splits the "
            "cluster (its applications keep writing to the old origin); use "
            "dany.slony.slony_switchover for a planned move, or force: true if node %d "
            "is really lost" % (failed, "; ".join(f for f in findings if "answers" in f),
                                failed), node=failed)


def _resume_steps(data, run, sets_of_failed, slonik):
    """failedNode2 already ran on a survivor (an interrupted run): finish from there."""
    target, event, seqno = data.promotion
    failed = data.failed
    run.temporary_backup, run.event, run.seqno = target, event, seqno
    run.report["temporary_backup"] = target
    if target != data.backup:
        # The backup may have failed the sets over already: take them from any node
        # that still shows them on the failed node.
        run.sets_to_move = sorted(set(run.sets_to_move) | set(s for s, o in sets_of_failed))
    if failover_complete_on(data.snaps[target], failed):
        return [Step(WAIT, target, "wait until every surviving node has confirmed "
                     "FAILOVER_NODE %s of node %d" % (event.seqno, target),
                     run=run.wait_confirmed_only)]
    return [Step(CALLBACK, target,
                 "resume the failover of node %d: node %d was promoted (FAILOVER_NODE %s up to "
                 "event %s of node %d); wait until every surviving node has confirmed it, then "
                 "finish on node %d (failedNode3)" % (
                     failed, target, event.seqno, seqno, failed, target),
                 slonik=slonik, query=function_call(run.ns, "failedNode3", (failed, target, seqno)),
                 params=(failed, target, seqno), function="failedNode3",
                 args=(failed, target, seqno), run=run.finish)]


def _promotion_steps(data, run, sets_of_failed, slonik):
    """preFailover everywhere, then failedNode2 and failedNode3 on the node expected to be
    the most ahead (chosen again at run time, after the slons restarted)."""
    failed, ns = data.failed, run.ns
    _validate(data, sets_of_failed)
    _check_candidates(data.snaps, data.candidates, failed)
    seqnos = data.seqnos
    run.report["failed_node_events"] = [{"node": n, "max_seqno": seqnos[n]} for n in sorted(seqnos)]
    expected, expected_seqno = choose_temporary_backup(data.backup, seqnos, data.candidates)
    if not expected_seqno:
        raise SlonyError("no surviving node holds any event of node %d, so there is no "
                         "point to fail over from; nothing was changed" % failed,
                         node=data.backup)
    run.report["temporary_backup"] = expected
    steps = [run.pre_failover_step(node) for node in data.survivors]
    if steps:
        steps[0].slonik = slonik
    promote_args = (failed, expected, expected_seqno, [failed])
    steps.append(Step(CALLBACK, expected,
                      "wait until the slons of node(s) %s have restarted, then promote the "
                      "failover candidate holding the most events of node %d (now node %d, up "
                      "to event %s): failedNode2 creates FAILOVER_NODE" % (
                          ", ".join(map(str, data.survivors)), failed, expected, expected_seqno),
                      query=function_call(ns, "failedNode2", promote_args), params=promote_args,
                      function="failedNode2", args=promote_args[:3], run=run.promote))
    finish_args = (failed, expected, expected_seqno)
    steps.append(Step(CALLBACK, expected,
                      "wait until every surviving node has confirmed FAILOVER_NODE, then "
                      "finish on the promoted node (failedNode3: it becomes the origin of "
                      "the sets of node %d)" % failed,
                      query=function_call(ns, "failedNode3", finish_args), params=finish_args,
                      function="failedNode3", args=finish_args, run=run.finish))
    return steps


def _final_steps(data, run, drop_failed):
    """MOVE SET from the promoted node to the backup when they differ; DROP NODE."""
    failed, backup, ns = data.failed, data.backup, run.ns
    steps = []
    if run.sets_to_move:
        shown = run.temporary_backup or run.report["temporary_backup"]
        first = (run.sets_to_move[0], backup)
        steps.append(Step(CALLBACK, backup,
                          "if the promoted node (now expected: node %s) is not node %d: LOCK "
                          "SET, MOVE SET to node %d and wait until node %d confirms, for set(s) "
                          "%s" % (shown, backup, backup, backup,
                                  ", ".join(map(str, run.sets_to_move))),
                          query=function_call(ns, "moveSet", first), params=first,
                          function="moveSet", args=first, run=run.move_sets))
    if drop_failed:
        steps.append(Step(CALLBACK, backup,
                          "drop node %d from the cluster through node %d (DROP NODE) and wait "
                          "until the other nodes have dropped it" % (failed, backup),
                          slonik="drop node (id = %d, event node = %d);" % (failed, backup),
                          query=function_call(ns, "dropNode", ([failed],)), params=([failed],),
                          function="dropNode", args=([failed],), run=run.drop_failed_node))
    return steps


def decide_failover(data, ns, force=False, drop_failed=False, timeout=DEFAULT_TIMEOUT,
                    wait_enabled=True, slon_wait=0):
    """The Planned failover, decided from ``data`` (a :class:`FailoverRead`) alone."""
    failed, backup = data.failed, data.backup
    fentry = data.snaps[backup].nodes.get(failed)
    extra = {"surviving_nodes": data.survivors, "candidates": data.candidates,
             "temporary_backup": None, "failed_node_reachable": None,
             "failed_node_probe": []}
    sets_of_failed = sets_of_failed_node(data.snaps, failed)
    state = "absent" if fentry is None else ("failed" if fentry.failed else "active")
    before = _view(failed, backup, state, _set_views(sets_of_failed))
    after = _view(failed, backup, "absent" if drop_failed or state == "absent" else "failed",
                  _set_views(sets_of_failed, origin=backup))
    if not incomplete_nodes(data.snaps, failed):
        return Planned(_done_plan(data), before, after, extra)

    # Something is left to do: the failed node must really be lost, and the failover must
    # be able to complete.
    extra["failed_node_reachable"], extra["failed_node_probe"] = data.probe
    _refuse_live_node(data, force)
    plan = Plan()
    slons = _check_slons(data, slon_wait)
    if slons is not None:
        plan.add(slons)
    run = FailoverRun(ns, failed, backup, data.survivors, data.candidates, data.sets_rows,
                      timeout=timeout, wait_enabled=wait_enabled, report=extra)
    slonik = "failover (id = %d, backup node = %d);" % (failed, backup)
    if data.promotion is not None:
        plan.extend(_resume_steps(data, run, sets_of_failed, slonik))
    else:
        plan.extend(_promotion_steps(data, run, sets_of_failed, slonik))
    plan.extend(_final_steps(data, run, drop_failed))
    # ``extra`` is the run's report: Planned keeps that dict, so what the run learns
    # (the node actually promoted) reaches the result.
    return Planned(plan, before, after, extra)


def plan_failover(cluster, failed, backup, force=False, drop_failed=False,
                  timeout=DEFAULT_TIMEOUT, wait_enabled=True, slon_wait=0,
                  probe=probe_failed_node):
    """Plan the failover of ``failed`` to ``backup``: read, then decide. A Planned.

    ``slon_wait``: seconds the run first waits for the slon of a surviving node that is
    not running (restarting) before it refuses; 0 refuses at once (the module passes 0
    in check mode). ``extra`` is filled in while the plan runs (the node actually
    promoted first).
    """
    if failed == backup:
        raise SlonyError("failed_node and backup_node are both node %d" % failed, node=failed)
    data = read_failover(cluster, failed, backup, drop_failed=drop_failed, probe=probe)
    return decide_failover(data, cluster.ns, force=force, drop_failed=drop_failed,
                           timeout=timeout, wait_enabled=wait_enabled, slon_wait=slon_wait)


__all__ = ["plan_failover", "read_failover", "decide_failover", "FailoverRead",
           "choose_temporary_backup", "survivors_and_candidates", "validation_errors",
           "failover_complete_on", "server_answered", "FailoverRun"]
