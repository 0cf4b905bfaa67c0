# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""FAILOVER: promote backup nodes for one or several failed nodes, as slonik 2.2 does.

Several nodes that failed together go into ONE failover (slonik's ``failover (node = (id =
1, backup node = 2), node = (id = 3, backup node = 4))``): each promotion names the whole
failed list, so that no surviving node waits for, or pulls from, a node of the list.
The steps and their order are slonik's (``slonik_failed_node``, reference §2.24):

1. validation, for every failed node F and its backup B, on B: every node fed by F
   (outside the failed list) has a path to B; B is a forwarding subscriber of every
   set of F;
2. candidates of each F: every surviving node, flagged as a failover candidate of F
   when ``sl_failover_targets`` lists it for F's sets;
3. on every surviving node, in one transaction: note the backend of its slon in
   ``sl_nodelock``, ``preFailover(F, is_candidate)`` for every failed node F, commit
   (paths from the failed nodes are blanked and the slon restarts);
4. one wait until every slon that was running has registered again (a new backend);
5. for each failed node F in the order given: the failover candidate of F holding the
   most events of F (B on a tie; B when there is no candidate) becomes the temporary
   backup T: ``failedNode2(F, T, seqno, failed list)`` on T creates FAILOVER_NODE; wait
   until every active surviving node has confirmed it; ``failedNode3`` on T;
6. for each F whose T is not B: LOCK SET on T, MOVE SET to B and wait until B has
   confirmed, set by set (:class:`setmove.SetHandover`, as the switchover).

Planning reads first (:func:`read_failovers`: the catalogs of the backups and of every
surviving node, slonik's queries on each backup, the probe of each failed node, the
events each survivor holds), then decides from that data alone (:func:`decide_failovers`,
pure).

What slonik does not do and this module adds: every wait is bounded (slonik's waits
never end) and names the nodes that are behind and the state of their slon; nothing
is changed when a surviving node cannot be reached or its slon is not running (the
failover could not complete; a slon that is restarting is first waited for, by a
precondition step of the plan, at most ``slon_wait`` seconds); a surviving node that does
not answer either and feeds a node of the failover is named (it failed too and belongs
in the list); each failed node is probed first and a failover of a node whose database
answers is refused unless forced; a run after a completed failover changes nothing, and
a run after an interrupted one resumes where it stopped, failed node by failed node.
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
from .slonwake import Stuck, can_kick, kick
from .setmove import (SLON_BACKEND, SetHandover, slon_backends, wait_for_new_slons,
                      wait_for_slons)

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

_SLON_RESTARTED = """
select nl_backendpid from {ns}.sl_nodelock
 where nl_backendpid <> %s and nl_nodeid = {ns}.getLocalNodeId(%s)
"""

_MAX_SEQNO = "select max(ev_seqno) from {ns}.sl_event where ev_origin = %s"
_HOLDS_EVENT = ("select exists (select 1 from {ns}.sl_event where ev_origin = %s "
                "and ev_seqno >= %s)")
# Whether the node connected to has confirmed an event itself (before the confirmation
# travels to the others).
_OWN_CONFIRMED = """
select coalesce(max(con_seqno), 0) >= %s from {ns}.sl_confirm
 where con_origin = %s and con_received = {ns}.getLocalNodeId(%s)
"""

# The sets a node (the one connected to) receives, from its own catalog.
_OWN_SUBSCRIPTIONS = "select sub_set from {ns}.sl_subscribe where sub_receiver = %s order by 1"

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

def _ids(nodes):
    return ", ".join(str(n) for n in nodes)


def _resume_hint():
    return ("; nothing is lost: fix the cause and run the same failover again, it "
            "resumes where it stopped")


class SlonRestarts:
    """The slons that preFailover restarts: noted by the preFailover steps (the backend
    of each slon, read under ``sl_config_lock`` before the first preFailover of its node),
    waited for ONCE, whatever the number of failed nodes."""

    def __init__(self, survivors, failed_list, timeout=DEFAULT_TIMEOUT):
        self.survivors = list(survivors)
        self.failed_list = list(failed_list)
        self.timeout = timeout
        self.pids = {}
        self.waited = False

    def note(self, node, pid):
        # The registration seen before the first preFailover on the node is the one
        # that must be replaced: a later one may already be the restarted slon.
        self.pids.setdefault(node, pid)

    def wait(self, cluster, clock=SYSTEM_CLOCK):
        """Wait until every slon noted has registered with a new backend (once)."""
        if self.waited:
            return
        pending = dict((node, pid) for node, pid in self.pids.items() if pid is not None)
        query = sql.SQL(_SLON_RESTARTED).format(ns=cluster.ns)
        failed = _ids(self.failed_list)

        def probe():
            for node in sorted(pending):
                if cluster.fetch(node, query, (pending[node], cluster.namespace)):
                    del pending[node]
            if not pending:
                return True
            return Pending([Behind(node, "no new slon registration since backend %d" % pid)
                            for node, pid in sorted(pending.items())], note=(
                "preFailover has run on node(s) %s (their paths from node(s) %s are blanked); "
                "node(s) %s not failed over yet. slon restarts its worker 20 s after the "
                "request; a slon that is running but never restarts is hung: restart it%s" % (
                    _ids(self.survivors), failed, failed, _resume_hint())))

        if pending:
            poll_until(probe, self.timeout, lambda p: timeout_error(
                cluster, "the slon daemons to restart after preFailover", self.timeout, p),
                clock=clock)
        self.waited = True


class FinalRestarts:
    """The last restarts of the slons the run can wake (``slon_pid_files``): every
    survivor's slon restarts when it processes FAILOVER_NODE (failedNode), the promoted
    node's after failedNode2 and again after failedNode3. Their backends are noted before
    the first failedNode2 (and the promoted node's again before failedNode3); the run ends
    with a wait until each has registered anew, so that it returns when every survivor
    replicates again instead of leaving slon's watchdog asleep for 20 s."""

    def __init__(self, nodes=()):
        self.nodes = sorted(nodes)
        self.backends = {}

    def note_first(self, cluster):
        if not self.nodes:
            return
        for node, backend in slon_backends(cluster, self.nodes).items():
            self.backends.setdefault(node, backend)

    def note_again(self, cluster, node):
        if node in self.nodes:
            backend = slon_backends(cluster, [node])[node]
            if backend is not None:
                self.backends[node] = backend

    def wait(self, cluster, timeout, clock=SYSTEM_CLOCK):
        wait_for_new_slons(
            cluster, self.backends, timeout,
            "the slons of the surviving nodes to run again after the failover", clock=clock,
            note="slon's watchdog restarts the worker 20 s after the restart request, "
                 "earlier when woken (slon_pid_files)")


def final_restarts_step(final):
    """The WAIT for :class:`FinalRestarts` (last step before DROP NODE)."""
    def run(cluster, step, ctx):
        del step
        final.wait(cluster, ctx.timeout, ctx.clock)
    return Step(WAIT, final.nodes[0],
                "wait until the slons of node(s) %s, which restart after FAILOVER_NODE and "
                "failedNode3, run again (woken from the watchdog's sleep)" % _ids(final.nodes),
                run=run)


def pre_failover_step(ns, node, calls, restarts, timeout=DEFAULT_TIMEOUT, slonik=None):
    """preFailover(F, is_candidate) for every ``(F, is_candidate)`` of ``calls`` on
    ``node``, in one transaction under ``sl_config_lock`` (the slon's backend is read
    first, in the same transaction, so it cannot re-register in between; one commit,
    one restart of the slon)."""
    query = sql.SQL("; ").join(function_call(ns, "preFailover", c) for c in calls)
    params = tuple(v for c in calls for v in c)
    doing = ", ".join("preFailover(%d, %s)" % (f, "true" if c else "false") for f, c in calls)

    def run(cluster, step, ctx):
        del ctx
        conn = cluster.connection(step.node)
        try:
            with conn.cursor() as cur:
                cur.execute("select pg_catalog.set_config('lock_timeout', %s, true)",
                            ("%ds" % max(1, int(timeout)),))
                cur.execute(sql.SQL("lock table {}.sl_config_lock").format(ns))
                cur.execute(sql.SQL(SLON_BACKEND).format(ns=ns), (cluster.namespace,))
                row = cur.fetchone()
                text = cur.mogrify(step.query, step.params).decode("utf-8")
                cur.execute(step.query, step.params)
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise cluster.error(step.node, exc, doing="%s on node %d" % (doing, step.node))
        cluster.log(step.node, "lock table %s.sl_config_lock; %s" % (
            cluster.quoted_namespace(step.node), text))
        restarts.note(step.node, row[0] if row else None)
        return []

    failed = _ids(f for f, c in calls)
    candidate = "; ".join("failover candidate for node %d: %s" % (f, yes_no(c)) for f, c in calls)
    return Step(CALLBACK, node,
                "prepare node %d for the failover of node(s) %s (preFailover, %s): blank its "
                "paths from node(s) %s and restart its slon" % (node, failed, candidate, failed),
                slonik=slonik, query=query, params=params, function="preFailover",
                args=params, run=run)


class FailoverRun:
    """What the steps of the failover of one failed node share while they run (and
    report afterwards); the runs of one call share the failed list and the slon
    restarts (:class:`SlonRestarts`).

    Pure data at planning time; the step runners get the cluster and the
    :class:`plan.RunContext` (its clock) when they run. Every wait gets ``timeout``.
    """

    def __init__(self, ns, failed, backup, survivors, candidates, sets_to_move,
                 timeout=DEFAULT_TIMEOUT, wait_enabled=True, report=None, failed_list=None,
                 restarts=None, receivers=None, dropped=None, warnings=None, final=None):
        self.ns = ns
        self.failed = failed
        self.backup = backup
        self.survivors = list(survivors)
        self.candidates = set(candidates)
        self.sets_to_move = list(sets_to_move)
        self.timeout = timeout
        self.wait_enabled = wait_enabled
        self.report = report if report is not None else {}
        self.failed_list = list(failed_list or [failed])
        self.restarts = restarts or SlonRestarts(survivors, self.failed_list, timeout)
        self.final = final or FinalRestarts()
        self.temporary_backup = None
        self.seqno = None
        self.event = None
        # {surviving node: [sets of the failed node it received before]}, and the list
        # (shared by the runs of one call) of the subscriptions FAILOVER dropped.
        self.receivers = dict(receivers or {})
        self.dropped = dropped if dropped is not None else []
        self.warnings = warnings if warnings is not None else []

    @property
    def slon_pids(self):
        return self.restarts.pids

    @slon_pids.setter
    def slon_pids(self, pids):
        self.restarts.pids = dict(pids)

    # -- step 3: preFailover on every surviving node ---------------------------------
    def pre_failover_step(self, node):
        return pre_failover_step(self.ns, node, [(self.failed, node in self.candidates)],
                                 self.restarts, self.timeout)

    # -- step 4: the slons restart (once for every failed node) ----------------------
    def wait_for_restarts(self, cluster, clock=SYSTEM_CLOCK):
        self.restarts.wait(cluster, clock)

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
        args = (self.failed, target, seqno, list(self.failed_list))
        self.final.note_first(cluster)
        events = submit_event(cluster, target, function_call(cluster.ns, "failedNode2", args), args)
        failover = [e for e in events if e.type == "FAILOVER_NODE"]
        if not failover:
            raise SlonyError("failedNode2 on node %d created no FAILOVER_NODE event"
                             % target, node=target, queries=cluster.queries)
        self.event = failover[-1]
        return events

    # -- step 5 (end): every surviving node confirms, then failedNode3 ------------------
    def confirmers(self, cluster, target):
        snap = read_snapshot(cluster, target)
        gone = set(self.failed_list) | set([target])
        return sorted(n.id for n in snap.nodes.values()
                      if n.active and not n.failed and n.id not in gone)

    def stuck_kicker(self, cluster, clock):
        """``on_behind`` of the FAILOVER_NODE wait. slon's worker checks for the failed
        node's event ``seqno`` when it meets FAILOVER_NODE and, when it is not there yet,
        retries every 10 s ("FAILOVER_NODE waiting for event"), however soon it arrives.
        A survivor of :class:`FinalRestarts` that, asked itself, holds that event and has
        not confirmed FAILOVER_NODE for :data:`slonwake.STUCK_AFTER` seconds has its
        worker restarted, which then finds the event at once. A survivor still without
        the event is left alone (it may be applying a backlog)."""
        stuck = Stuck()
        holds = sql.SQL(_HOLDS_EVENT).format(ns=cluster.ns)
        confirmed = sql.SQL(_OWN_CONFIRMED).format(ns=cluster.ns)

        def on_behind(behind):
            for node, dummy in behind:
                if node not in self.final.nodes:
                    continue
                if cluster.fetch(node, holds, (self.failed, self.seqno))[0][0] and not \
                        cluster.fetch(node, confirmed, (self.event.seqno, self.event.origin,
                                                        cluster.namespace))[0][0]:
                    if stuck.seen(node, clock.now()):
                        kick(clock, node, "FAILOVER_NODE %s after event %s of node %d" % (
                            self.event.seqno, self.seqno, self.failed))
                else:
                    stuck.clear(node)
        return on_behind

    def wait_failover_confirmed(self, cluster, clock=SYSTEM_CLOCK):
        target = self.temporary_backup
        on_behind = self.stuck_kicker(cluster, clock) if can_kick(clock) else None
        try:
            wait_for_event(cluster, self.event, self.confirmers(cluster, target),
                           timeout=self.timeout, wait_on=target, clock=clock,
                           on_behind=on_behind)
        except SlonyError as exc:
            raise SlonyError(
                "%s. A node confirms FAILOVER_NODE once its slon has applied node %d's "
                "events up to %s from node %d (it retries every 10 s)%s" % (
                    exc.message, self.failed, self.seqno, target, _resume_hint()),
                node=exc.node, queries=cluster.queries)
        self.note_dropped(cluster)

    def note_dropped(self, cluster):
        """After every survivor confirmed FAILOVER_NODE: the subscriptions Slony dropped.
        A node that had applied more of the failed node's events than the promoted node
        unsubscribes itself from the failed node's sets (failoverSet_int, a WARNING in its
        slon log only). Each receiver's own catalog says whether it still subscribes."""
        for node in sorted(self.receivers):
            if node == self.temporary_backup:
                continue
            now = set(r[0] for r in _fetch(cluster, node, _OWN_SUBSCRIPTIONS, (node,)))
            for set_id in self.receivers[node]:
                entry = {"node": node, "set": set_id, "failed_node": self.failed,
                         "promoted_node": self.temporary_backup}
                if set_id not in now and entry not in self.dropped:
                    self.dropped.append(entry)
                    self.warnings.append(
                        "node %d no longer subscribes to set %d: it had applied more of failed "
                        "node %d's events than node %d, which took over, and Slony's FAILOVER "
                        "dropped its subscription; subscribe it again (a full copy)"
                        % (node, set_id, self.failed, self.temporary_backup))

    def finish(self, cluster, step, ctx):
        del step
        self.wait_for_restarts(cluster, ctx.clock)
        self.wait_failover_confirmed(cluster, ctx.clock)
        target = self.temporary_backup
        self.final.note_again(cluster, target)
        query = function_call(cluster.ns, "failedNode3", (self.failed, target, self.seqno))
        return submit_event(cluster, target, query, (self.failed, target, self.seqno))

    def wait_confirmed_only(self, cluster, step, ctx):
        del step
        self.wait_for_restarts(cluster, ctx.clock)
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


def drop_failed_nodes(failed_list, event_node, wait_enabled, timeout, wake_nodes=()):
    """The runner of the final DROP NODE of every failed node (one event, planned as
    ``slony_node`` plans it, at run time: the nodes are failed by then). Every slon
    restarts after DROP NODE; those of ``wake_nodes`` are waited for, as ``slony_node``
    does (:class:`nodes.DropRestarts`)."""
    def run(cluster, step, ctx):
        del step
        from .nodes import plan_nodes_absent  # DROP NODE as slony_node plans it
        plan = plan_nodes_absent(cluster, list(failed_list), event_node=event_node,
                                 wake_nodes=wake_nodes).plan
        return execute_plan(cluster, plan, wait_enabled=wait_enabled, timeout=timeout,
                            share_dir=ctx.share_dir, clock=ctx.clock)
    return run


# -- reading --------------------------------------------------------------------------

class FailoverRead:
    """What :func:`decide_failovers` needs about one failed node (plain data).

    ``snaps``: node id -> its own catalog, for the backups and every surviving node
    (shared by the failed nodes of one call); ``probe``: (reachable, findings) of the
    failed node, read when its failover is not complete everywhere; ``sets_rows``:
    slonik's sets to move; ``promotion``: (node, FAILOVER_NODE event, seqno) when
    failedNode2 already ran on a survivor; ``orphans``, ``not_forwarded``: slonik's
    validation rows; ``seqnos``: survivor -> the highest event of the failed node it
    holds; ``drop_plan``: DROP NODE's plan (see :class:`FailoversRead`);
    ``failed_list``: every failed node of the call.
    """

    def __init__(self, cluster_name, failed, backup, survivors=(), candidates=(), snaps=None,
                 admin_nodes=(), failed_list=None):
        self.cluster_name = cluster_name
        self.failed = failed
        self.backup = backup
        self.survivors = list(survivors)
        self.candidates = list(candidates)
        self.snaps = dict(snaps or {})
        self.admin_nodes = list(admin_nodes)
        self.failed_list = list(failed_list or [failed])
        self.probe = None
        self.sets_rows = []
        self.promotion = None
        self.orphans = []
        self.not_forwarded = []
        self.seqnos = {}
        self.drop_plan = None


class FailoversRead:
    """Everything :func:`decide_failovers` needs for one call (plain data).

    ``pairs``: one :class:`FailoverRead` per failed node, in the order given;
    ``survivors``: every node that is neither in the failed list nor failed earlier;
    ``snaps``: the catalogs of the backups and of the survivors that answered;
    ``unreachable``: survivor -> what probing it found, for the survivors that could
    not be read (a failover cannot complete without them); ``drop_plan``: DROP NODE's
    plan for the failed nodes still known, read when every failover is complete.
    """

    def __init__(self, cluster_name, pairs, survivors=(), snaps=None, unreachable=None,
                 drop_plan=None):
        self.cluster_name = cluster_name
        self.pairs = list(pairs)
        self.survivors = list(survivors)
        self.snaps = snaps if snaps is not None else {}
        self.unreachable = dict(unreachable or {})
        self.drop_plan = drop_plan

    @property
    def failed_list(self):
        return [p.failed for p in self.pairs]

    @classmethod
    def of_one(cls, read):
        """The call made of one :class:`FailoverRead` (the single-node form)."""
        return cls(read.cluster_name, [read], read.survivors, read.snaps,
                   getattr(read, "unreachable", None), read.drop_plan)


def check_pairs(pairs):
    """The failed node / backup node pairs of one call, checked (pure): a list of
    (failed, backup) tuples in the order given."""
    pairs = [(int(f), int(b)) for f, b in pairs]
    if not pairs:
        raise SlonyError("no failed node given")
    failed = [f for f, b in pairs]
    errors = []
    for f, b in pairs:
        if f == b:
            errors.append("node %d is its own backup node" % f)
        elif b in failed:
            errors.append("the backup node %d of node %d is itself in the failed list" % (b, f))
    dupes = sorted(set(f for f in failed if failed.count(f) > 1))
    if dupes:
        errors.append("node(s) %s listed more than once" % _ids(dupes))
    if errors:
        raise SlonyError("invalid failover of node(s) %s: %s; nothing was changed"
                         % (_ids(failed), "; ".join(errors)))
    return pairs


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


def _read_survivor(cluster, node, data, probe):
    """The survivor's catalog into ``data.snaps``; or, when it cannot be reached, what
    probing it finds into ``data.unreachable`` (for the decision to name it)."""
    error = None
    try:
        if cluster.has_node(node):
            data.snaps[node] = read_snapshot(cluster, node)
            return
    except SlonyError as exc:
        error = exc
    reachable, findings = probe(cluster, node, data.snaps[data.pairs[0].backup])
    if reachable:
        if error is None:  # it answers, but admin_conninfo has no entry for it
            check_survivors_reachable(cluster.name, data.survivors, cluster.nodes())
        raise error
    data.unreachable[node] = findings


def read_failovers(cluster, pairs, drop_failed=False, probe=probe_failed_node):
    """Read what the failover of every (failed, backup) pair is decided from (slonik's
    queries, in its order); a :class:`FailoversRead`. What the earlier reads show
    decides what else is worth reading (nothing more once every failover is complete)."""
    pairs = check_pairs(pairs)
    failed_list = [f for f, b in pairs]
    snaps = {}
    reads = []
    survivors = set()
    for failed, backup in pairs:
        cluster.require_node(backup, "the failover (it is the backup node of node %d)" % failed)
        if backup not in snaps:
            snaps[backup] = read_snapshot(cluster, backup)
            check_backup(cluster.name, backup, snaps[backup])
        params = {"failed": failed, "backup": backup, "failed_list": failed_list}
        mine, candidates = survivors_and_candidates(
            _fetch(cluster, backup, _CANDIDATES, params))
        survivors.update(mine)
        reads.append(FailoverRead(cluster.name, failed, backup, mine, candidates, snaps,
                                  cluster.nodes(), failed_list))
    data = FailoversRead(cluster.name, reads, sorted(survivors - set(failed_list)), snaps)
    for read in reads:
        read.snaps = snaps  # one dict for the whole call
        read.survivors = data.survivors
    for node in data.survivors:
        if node not in snaps:
            _read_survivor(cluster, node, data, probe)
    if data.unreachable:
        return data  # refused: nothing more is worth reading
    pending = [r for r in reads if incomplete_nodes(snaps, r.failed)]
    if not pending:
        if drop_failed:
            event_node = pairs[0][1]
            known = [f for f in failed_list if f in snaps[event_node].nodes]
            if known:
                from .nodes import plan_nodes_absent
                data.drop_plan = plan_nodes_absent(cluster, known, event_node=event_node).plan
        return data
    for read in pending:
        _read_pair(cluster, read, probe)
    return data


def _read_pair(cluster, read, probe):
    failed, backup = read.failed, read.backup
    params = {"failed": failed, "backup": backup, "failed_list": read.failed_list}
    read.probe = probe(cluster, failed, read.snaps[backup])
    read.sets_rows = [r[0] for r in _fetch(cluster, backup, _SETS_TO_MOVE, params)]
    read.promotion = _find_promotion(cluster, read.snaps, failed)
    if read.promotion is None:
        read.orphans = [r[0] for r in _fetch(cluster, backup, _ORPHANS, params)]
        read.not_forwarded = [r[0] for r in _fetch(cluster, backup, _NOT_FORWARDED, params)]
        read.seqnos = dict((node, _fetch(cluster, node, _MAX_SEQNO, (failed,))[0][0])
                           for node in read.survivors)


def read_failover(cluster, failed, backup, drop_failed=False, probe=probe_failed_node):
    """:func:`read_failovers` for one failed node: its :class:`FailoverRead` (with
    ``unreachable`` and ``drop_plan`` of the call)."""
    data = read_failovers(cluster, [(failed, backup)], drop_failed=drop_failed, probe=probe)
    read = data.pairs[0]
    read.unreachable, read.drop_plan = data.unreachable, data.drop_plan
    return read


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


def receivers_of(snaps, sets):
    """{surviving node: [set ids]}: the sets of ``sets`` (``[(set, failed)]``) each node
    receives, from its own catalog."""
    out = {}
    for node in sorted(snaps):
        mine = [s for s, _failed in sets if (s, node) in snaps[node].subscriptions]
        if mine:
            out[node] = mine
    return out


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
    failed = _ids(data.failed_list)

    def refusal(nodes, waited=None):
        return ("the slon daemon of surviving node(s) %s is not running%s; the failover of node "
                "%s needs every surviving node's slon (each one must process FAILOVER_NODE). "
                "Start it (role dany.slony.slon) and run the failover again; nothing was "
                "changed%s" % (", ".join(map(str, nodes)),
                               " (waited %ss for it to come back)" % slon_wait if waited else "",
                               failed, "; " + waited if waited else ""))

    if not slon_wait:
        raise SlonyError(refusal(down), node=down[0])

    def run(cluster, step, ctx):
        wait_for_slons(cluster, down, slon_wait, refusal, clock=ctx.clock)

    return Step(WAIT, data.pairs[0].backup, "wait up to %ss for the slon daemon of surviving "
                "node(s) %s to run again; refuse the failover, nothing changed, if it does not"
                % (slon_wait, ", ".join(map(str, down))), required=True, run=run)


def feeds_of(snaps, node, failed_list):
    """{receiver: [set ids]} that ``node`` provides to nodes outside ``failed_list``, as
    any of ``snaps`` shows it (pure)."""
    feeds = {}
    for snap in snaps.values():
        for sub in snap.subscriptions.values():
            if sub.provider == node and sub.receiver != node and sub.receiver not in failed_list:
                feeds.setdefault(sub.receiver, set()).add(sub.set)
    return dict((r, sorted(s)) for r, s in feeds.items())


def _refuse_unreachable(data):
    """A surviving node that cannot be reached: the failover cannot complete. When it
    feeds nodes of the failover (a provider on their path), it failed too and was left
    out of the failed list: it is named as such."""
    if not data.unreachable:
        return
    failed = data.failed_list
    messages = []
    for node in sorted(data.unreachable):
        findings = "; ".join(data.unreachable[node]) or "no admin_conninfo and no path to it"
        feeds = feeds_of(data.snaps, node, failed)
        origin_of = sorted(s.id for snap in data.snaps.values() for s in snap.sets.values()
                           if s.origin == node)
        if feeds or origin_of:
            what = []
            if feeds:
                what.append("feeds " + ", ".join(
                    "node %d (set%s %s)" % (r, "s" if len(feeds[r]) > 1 else "", _ids(feeds[r]))
                    for r in sorted(feeds)))
            if origin_of:
                what.append("is the origin of set(s) %s" % _ids(origin_of))
            messages.append(
                "node %d does not answer either (%s) and %s: the failover depends on it, so it "
                "failed too and was left out of the failed list. Fail it over in the same call "
                "(add {id: %d, backup_node: N} to nodes, N a node with a path to each node it "
                "feeds), or bring it back" % (node, findings, " and ".join(what), node))
        else:
            messages.append(
                "surviving node %d does not answer (%s): every surviving node must confirm the "
                "failover. Bring it back, or fail it over in the same call (add {id: %d, "
                "backup_node: N} to nodes)" % (node, findings, node))
    raise SlonyError("cannot fail node(s) %s over: %s; nothing was changed" % (
        _ids(failed), "; ".join(messages)), node=sorted(data.unreachable)[0])


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
    """Every failover is complete everywhere: wait for a DROP NODE, or drop the nodes."""
    plan = Plan()
    event_node = data.pairs[0].backup
    gone = [p.failed for p in data.pairs if p.failed not in data.snaps[p.backup].nodes]
    if gone:
        still_known = sorted(n for n in data.snaps
                             if any(f in data.snaps[n].nodes for f in gone))
        if still_known:
            plan.add(Step(WAIT, event_node, "wait until node(s) %s have processed the DROP "
                          "NODE of node(s) %s" % (_ids(still_known), _ids(gone)),
                          confirmers=still_known))
    if data.drop_plan is not None:
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


def failover_slonik(pairs):
    """slonik's FAILOVER for (failed, backup) pairs."""
    if len(pairs) == 1:
        return "failover (id = %d, backup node = %d);" % tuple(pairs[0])
    return "failover (%s);" % ", ".join("node = (id = %d, backup node = %d)" % p for p in pairs)


def _resume_steps(data, run, sets_of_failed):
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
                 query=function_call(run.ns, "failedNode3", (failed, target, seqno)),
                 params=(failed, target, seqno), function="failedNode3",
                 args=(failed, target, seqno), run=run.finish)]


def _check_promotion(data, sets_of_failed):
    """The checks of a failover still to promote (all done before any step); returns
    the node expected to be promoted and its seqno."""
    failed = data.failed
    _validate(data, sets_of_failed)
    _check_candidates(data.snaps, data.candidates, failed)
    expected, expected_seqno = choose_temporary_backup(data.backup, data.seqnos, data.candidates)
    if not expected_seqno:
        raise SlonyError("no surviving node holds any event of node %d, so there is no "
                         "point to fail over from; nothing was changed" % failed,
                         node=data.backup)
    return expected, expected_seqno


def _promotion_steps(data, run, expected, expected_seqno):
    """failedNode2 and failedNode3 on the node expected to be the most ahead (chosen
    again at run time, after the slons restarted and the earlier failed nodes)."""
    failed, ns = data.failed, run.ns
    seqnos = data.seqnos
    run.report["failed_node_events"] = [{"node": n, "max_seqno": seqnos[n]} for n in sorted(seqnos)]
    run.report["temporary_backup"] = expected
    promote_args = (failed, expected, expected_seqno, list(run.failed_list))
    steps = [Step(CALLBACK, expected,
                  "wait until the slons of node(s) %s have restarted, then promote the "
                  "failover candidate holding the most events of node %d (now node %d, up "
                  "to event %s): failedNode2 creates FAILOVER_NODE for the failed list %s" % (
                      _ids(data.survivors), failed, expected, expected_seqno,
                      _ids(run.failed_list)),
                  query=function_call(ns, "failedNode2", promote_args), params=promote_args,
                  function="failedNode2", args=promote_args[:3], run=run.promote)]
    finish_args = (failed, expected, expected_seqno)
    steps.append(Step(CALLBACK, expected,
                      "wait until every surviving node has confirmed FAILOVER_NODE, then "
                      "finish on the promoted node (failedNode3: it becomes the origin of "
                      "the sets of node %d)" % failed,
                      query=function_call(ns, "failedNode3", finish_args), params=finish_args,
                      function="failedNode3", args=finish_args, run=run.finish))
    return steps


def _move_step(data, run):
    """MOVE SET from the promoted node to the backup when they differ."""
    backup, ns = data.backup, run.ns
    if not run.sets_to_move:
        return []
    shown = run.temporary_backup or run.report["temporary_backup"]
    first = (run.sets_to_move[0], backup)
    return [Step(CALLBACK, backup,
                 "if the promoted node (now expected: node %s) is not node %d: LOCK "
                 "SET, MOVE SET to node %d and wait until node %d confirms, for set(s) "
                 "%s" % (shown, backup, backup, backup, ", ".join(map(str, run.sets_to_move))),
                 query=function_call(ns, "moveSet", first), params=first,
                 function="moveSet", args=first, run=run.move_sets)]


def _drop_step(data, ns, wait_enabled, timeout, wake_nodes=()):
    """DROP NODE of the failed nodes; the slons of ``wake_nodes`` (survivors the run can
    wake), which restart after it, are waited for (see :func:`drop_failed_nodes`)."""
    failed = data.failed_list
    event_node = data.pairs[0].backup
    ids = "'%s'" % ",".join(map(str, failed)) if len(failed) > 1 else str(failed[0])
    waking = sorted(set(wake_nodes) & set(data.survivors))
    return Step(CALLBACK, event_node,
                "drop node(s) %s from the cluster through node %d (DROP NODE) and wait until "
                "the other nodes have dropped them%s" % (
                    _ids(failed), event_node,
                    " and the slons of node(s) %s, which restart after it, run again"
                    % _ids(waking) if waking and wait_enabled else ""),
                slonik="drop node (id = %s, event node = %d);" % (ids, event_node),
                query=function_call(ns, "dropNode", (failed,)), params=(failed,),
                function="dropNode", args=(failed,),
                run=drop_failed_nodes(failed, event_node, wait_enabled, timeout, waking))


def _pair_report(read):
    # Named ``report`` as in single_form, where it becomes the single-node ``extra``.
    report = {"failed_node": read.failed, "backup_node": read.backup,
              "candidates": list(read.candidates), "temporary_backup": None,
              "failed_node_reachable": None, "failed_node_probe": []}
    return report


def decide_failovers(data, ns, force=False, drop_failed=False, timeout=DEFAULT_TIMEOUT,
                     wait_enabled=True, slon_wait=0, wake_nodes=(), slons_woken=None):
    """The Planned failover of every failed node of ``data`` (a :class:`FailoversRead`),
    decided from that data alone. ``wake_nodes``: the nodes whose slon the run can wake
    (``slon_pid_files``); the surviving ones are waited for at the end (:class:`FinalRestarts`);
    ``slons_woken``, the list their waker fills, is ``extra['slons_woken']``. ``before``/``after``: ``{"nodes": [per failed node]}``;
    ``extra``: ``surviving_nodes`` and ``failed_nodes`` (per failed node: its candidates,
    the node promoted first, what probing it found, the events each survivor holds)."""
    reports = [_pair_report(p) for p in data.pairs]
    extra = {"surviving_nodes": list(data.survivors), "failed_nodes": reports,
             "dropped_subscriptions": [], "warnings": [],
             "slons_woken": [] if slons_woken is None else slons_woken}
    befores, afters, sets_of = [], [], {}
    for read in data.pairs:
        failed, backup = read.failed, read.backup
        fentry = data.snaps[backup].nodes.get(failed)
        sets_of[failed] = sets_of_failed_node(data.snaps, failed)
        state = "absent" if fentry is None else ("failed" if fentry.failed else "active")
        befores.append(_view(failed, backup, state, _set_views(sets_of[failed])))
        afters.append(_view(failed, backup,
                            "absent" if drop_failed or state == "absent" else "failed",
                            _set_views(sets_of[failed], origin=backup)))
    before, after = {"nodes": befores}, {"nodes": afters}
    pending = [(read, report) for read, report in zip(data.pairs, reports)
               if incomplete_nodes(data.snaps, read.failed) or data.unreachable]
    if not pending:
        return Planned(_done_plan(data), before, after, extra)

    # Something is left to do: every survivor must answer, the failed nodes must really
    # be lost, and every failover must be able to complete. All checked before any step.
    _refuse_unreachable(data)
    for read, report in pending:
        report["failed_node_reachable"], report["failed_node_probe"] = read.probe
    for read, report in pending:
        _refuse_live_node(read, force)
    plan = Plan()
    slons = _check_slons(data, slon_wait)
    if slons is not None:
        plan.add(slons)
    failed_list = data.failed_list
    restarts = SlonRestarts(data.survivors, failed_list, timeout)
    fresh = [read for read, report in pending if read.promotion is None]
    final = FinalRestarts(sorted(set(wake_nodes) & set(data.survivors)) if fresh else ())
    runs, expected = [], {}
    for read, report in pending:
        runs.append(FailoverRun(ns, read.failed, read.backup, data.survivors, read.candidates,
                                read.sets_rows, timeout=timeout, wait_enabled=wait_enabled,
                                report=report, failed_list=failed_list, restarts=restarts,
                                receivers=receivers_of(data.snaps, sets_of[read.failed]),
                                dropped=extra["dropped_subscriptions"],
                                warnings=extra["warnings"], final=final))
        if read.promotion is None:
            expected[read.failed] = _check_promotion(read, sets_of[read.failed])
    slonik = failover_slonik([(p.failed, p.backup) for p in data.pairs])
    if fresh:
        # preFailover of every failed node still to promote, on every surviving node.
        plan.extend(pre_failover_step(ns, node, [(r.failed, node in r.candidates) for r in fresh],
                                      restarts, timeout) for node in data.survivors)
    for (read, report), run in zip(pending, runs):
        if read.promotion is not None:
            plan.extend(_resume_steps(read, run, sets_of[read.failed]))
        else:
            plan.extend(_promotion_steps(read, run, *expected[read.failed]))
    for (read, report), run in zip(pending, runs):
        plan.extend(_move_step(read, run))
    if final.nodes:
        plan.add(final_restarts_step(final))
    if drop_failed:
        plan.add(_drop_step(data, ns, wait_enabled, timeout, wake_nodes))
    changing = plan.changes()
    if changing:
        changing[0].slonik = slonik
    # ``extra`` is the run's report: Planned keeps that dict, so what the run learns
    # (the node actually promoted) reaches the result.
    return Planned(plan, before, after, extra)


def decide_failover(data, ns, force=False, drop_failed=False, timeout=DEFAULT_TIMEOUT,
                    wait_enabled=True, slon_wait=0, wake_nodes=(), slons_woken=None):
    """:func:`decide_failovers` for one failed node (``data``: its :class:`FailoverRead`),
    with the single-node ``before``/``after`` and ``extra`` of the original form."""
    planned = decide_failovers(FailoversRead.of_one(data), ns, force=force,
                               drop_failed=drop_failed, timeout=timeout,
                               wait_enabled=wait_enabled, slon_wait=slon_wait,
                               wake_nodes=wake_nodes, slons_woken=slons_woken)
    return single_form(planned)


def single_form(planned):
    """The Planned of a one-pair call in the shape of the single-node options."""
    report = planned.extra["failed_nodes"][0]
    report["surviving_nodes"] = planned.extra["surviving_nodes"]
    report["dropped_subscriptions"] = planned.extra["dropped_subscriptions"]
    report["warnings"] = planned.extra["warnings"]
    report["slons_woken"] = planned.extra["slons_woken"]
    report.pop("failed_node", None)
    report.pop("backup_node", None)
    return Planned(planned.plan, planned.before["nodes"][0], planned.after["nodes"][0], report)


def plan_failovers(cluster, pairs, force=False, drop_failed=False, timeout=DEFAULT_TIMEOUT,
                   wait_enabled=True, slon_wait=0, probe=probe_failed_node, wake_nodes=(),
                   slons_woken=None):
    """Plan the failover of every ``(failed, backup)`` of ``pairs`` in ONE failover:
    read, then decide. A Planned (see :func:`decide_failovers`).

    ``slon_wait``: seconds the run first waits for the slon of a surviving node that is
    not running (restarting) before it refuses; 0 refuses at once (the module passes 0
    in check mode). ``extra`` is filled in while the plan runs (the nodes actually
    promoted first).
    """
    data = read_failovers(cluster, pairs, drop_failed=drop_failed, probe=probe)
    return decide_failovers(data, cluster.ns, force=force, drop_failed=drop_failed,
                            timeout=timeout, wait_enabled=wait_enabled, slon_wait=slon_wait,
                            wake_nodes=wake_nodes, slons_woken=slons_woken)


def plan_failover(cluster, failed, backup, force=False, drop_failed=False,
                  timeout=DEFAULT_TIMEOUT, wait_enabled=True, slon_wait=0,
                  probe=probe_failed_node, wake_nodes=(), slons_woken=None):
    """:func:`plan_failovers` for one failed node, in the single-node result shape."""
    if failed == backup:
        raise SlonyError("failed_node and backup_node are both node %d" % failed, node=failed)
    return single_form(plan_failovers(cluster, [(failed, backup)], force=force,
                                      drop_failed=drop_failed, timeout=timeout,
                                      wait_enabled=wait_enabled, slon_wait=slon_wait,
                                      probe=probe, wake_nodes=wake_nodes,
                                      slons_woken=slons_woken))


__all__ = ["plan_failover", "plan_failovers", "read_failover", "read_failovers",
           "decide_failover", "decide_failovers", "FailoverRead", "FailoversRead",
           "choose_temporary_backup", "survivors_and_candidates", "validation_errors",
           "failover_complete_on", "server_answered", "FailoverRun", "SlonRestarts",
           "check_pairs", "feeds_of", "failover_slonik"]
