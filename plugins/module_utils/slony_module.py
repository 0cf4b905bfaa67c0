# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The thin Ansible layer around the core: common options, check/diff mode, errors.

This is the only file of module_utils that imports Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from .pg import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR
from .cluster import Cluster
from .conninfo import Redactor, conninfo_secrets
from .converge import run_steps
from .errors import SlonyError
from .events import event_dict
from .plan import execute_plan, render_step
from .slonik import preamble as slonik_preamble


def common_argument_spec():
    return dict(
        cluster_name=dict(type="str", required=True),
        admin_conninfo=dict(type="dict", required=True, no_log=True),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=300),
        connect_timeout=dict(type="int", default=10),
        share_dir=dict(type="path"),
    )


def set_members_main(option, planner):
    """main() of slony_table (``option`` "tables", ``planner`` tables.plan_tables) and
    slony_sequence ("sequences", tables.plan_sequences): the same options and run."""
    spec = dict(
        set_id=dict(type="int", required=True),
        origin=dict(type="int"),
        patterns=dict(type="list", elements="str"),
        schemas=dict(type="list", elements="str"),
        exclude=dict(type="list", elements="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        exclusive=dict(type="bool", default=False),
        move=dict(type="bool", default=False),
    )
    spec[option] = dict(type="list", elements="raw")
    slony = SlonyModule(spec, required_one_of=[(option, "patterns", "schemas")])
    params = slony.params
    names = (option, "origin", "patterns", "schemas", "exclude", "state", "exclusive", "move")
    slony.run(lambda cluster: planner(cluster, params["set_id"],
                                      **dict((name, params[name]) for name in names)))


def _diffable(value):
    return {"items": value} if isinstance(value, list) else value


class SlonyModule:
    """AnsibleModule plus a :class:`Cluster` built from the common options."""

    def __init__(self, argument_spec, check_mode_writes=False, **kwargs):
        """``check_mode_writes``: the module writes in check mode too (slony_compare's
        SYNC events); otherwise check mode's sessions are read-only."""
        spec = common_argument_spec()
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        if not HAS_PSYCOPG2:
            self.module.fail_json(msg=missing_required_lib("psycopg2"),
                                  exception=PSYCOPG2_IMPORT_ERROR)
        self.params = self.module.params
        self.redactor = Redactor()
        for conninfo in (self.params["admin_conninfo"] or {}).values():
            self.add_secrets(conninfo)
        self.cluster = None
        try:
            self.cluster = Cluster(self.params["cluster_name"], self.params["admin_conninfo"],
                                   connect_timeout=self.params["connect_timeout"],
                                   redactor=self.redactor,
                                   read_only=self.check_mode and not check_mode_writes)
        except SlonyError as exc:
            self.fail(exc)

    def add_secrets(self, conninfo):
        """Register the passwords of a conninfo so that no output shows them."""
        if not isinstance(conninfo, str):
            return
        self.redactor.add_conninfo(conninfo)
        for secret in conninfo_secrets(conninfo):
            self.module.no_log_values.add(secret)

    @property
    def check_mode(self):
        return self.module.check_mode

    def fail(self, exc, **extra):
        queries = list(exc.queries) if isinstance(exc, SlonyError) else []
        if not queries and self.cluster is not None:
            queries = list(self.cluster.queries)
        message = exc.message if isinstance(exc, SlonyError) else str(exc)
        # Statements are logged once committed: a run that fails after one of them (a
        # wait that timed out after its event, say) did change the cluster.
        committed = self.cluster.queries if self.cluster is not None else []
        changed = bool(committed) and not self.check_mode
        if self.cluster is not None:
            self.cluster.close()
        extra = dict(extra)
        if isinstance(exc, SlonyError) and exc.node is not None:
            extra["node"] = exc.node
        extra.setdefault("changed", changed)
        self.module.fail_json(msg=self.redactor.text(message), queries=queries, **extra)

    def run(self, planner, lock=True, clock=None):
        """Plan with ``planner(cluster)`` -> (plan, before, after, extra), then apply.

        In check mode the plan is rendered, not run. ``before``/``after`` describe
        the objects the module manages; ``after`` is what the plan leads to.
        ``lock=False`` for read-only modules, which must not queue behind a change.
        ``clock`` is the :class:`waits.Clock` of every wait (a
        :class:`slonwake.WakingClock` wakes sleeping slons between polls).
        """
        try:
            if lock and not self.check_mode:
                # Plan and run under the cluster's run lock, so that two runs never
                # plan the same change (see Cluster.acquire_run_lock).
                self.cluster.acquire_run_lock(self.params["wait_timeout"])
            plan, before, after, extra = planner(self.cluster)
            changed = bool(plan.changes())
            slonik = []
            if changed:
                slonik = slonik_preamble(self.cluster.name, self.cluster.admin_conninfo,
                                         self.cluster.redactor) + plan.slonik()
            if self.check_mode:
                queries = [{"node": s.node, "sql": render_step(self.cluster, s)}
                           for s in plan.steps if s.kind != "wait"]
                events = []
            else:
                events = execute_plan(self.cluster, plan, wait_enabled=self.params["wait"],
                                      timeout=self.params["wait_timeout"],
                                      share_dir=self.params["share_dir"], clock=clock)
                queries = list(self.cluster.queries)
        except SlonyError as exc:
            self.fail(exc)
        finally:
            self.cluster.close()
        result = dict(changed=changed, queries=queries,
                      slonik="\n".join(self.redactor.text(line) for line in slonik),
                      events=[event_dict(e) for e in events], before=before, after=after)
        result.update(extra or {})
        # What a run found worth a warning (a list a planner's report may fill while the
        # plan runs): ansible shows it as a warning, not as a return value.
        for warning in result.pop("warnings", None) or []:
            self.module.warn(self.redactor.text(warning))
        if self.module._diff:
            # Ansible renders a diff of dicts or strings, not of lists.
            result["diff"] = dict(before=_diffable(before), after=_diffable(after))
        self.module.exit_json(**result)

    def run_steps(self, steps):
        """Plan and run several planners in order (:func:`converge.run_steps`) under one
        run lock, on one set of connections; one result with a ``steps`` entry a step
        (not ``results``, which Ansible reads as the results of a loop)."""
        try:
            if not self.check_mode:
                self.cluster.acquire_run_lock(self.params["wait_timeout"])
            done = run_steps(self.cluster, steps, dry_run=self.check_mode,
                             wait=self.params["wait"], timeout=self.params["wait_timeout"],
                             share_dir=self.params["share_dir"])
        except SlonyError as exc:
            self.fail(exc)
        finally:
            self.cluster.close()
        results, slonik, queries, events, before, after = [], [], [], [], {}, {}
        for one in done:
            entry = dict(step=one.step.label, changed=one.changed, not_planned=one.not_planned,
                         queries=one.queries, events=[event_dict(e) for e in one.events],
                         before=None, after=None, slonik="")
            if one.planned is not None:
                entry.update(before=one.planned.before, after=one.planned.after)
                before[one.step.label] = one.planned.before
                after[one.step.label] = one.planned.after
                if one.changed:
                    lines = [self.redactor.text(line) for line in one.planned.plan.slonik()]
                    entry["slonik"] = "\n".join(lines)
                    slonik.extend(lines)
            results.append(entry)
            queries.extend(one.queries)
            events.extend(entry["events"])
        changed = any(one.changed for one in done)
        if slonik:
            slonik = [self.redactor.text(line) for line in slonik_preamble(
                self.cluster.name, self.cluster.admin_conninfo, self.cluster.redactor)] + slonik
        result = dict(changed=changed, queries=queries, slonik="\n".join(slonik),
                      events=events, steps=results,
                      not_planned=[dict(step=e["step"], reason=e["not_planned"])
                                   for e in results if e["not_planned"]])
        if self.module._diff:
            result["diff"] = dict(before=before, after=after)
        self.module.exit_json(**result)
