#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_switchover
short_description: Move the origin of Slony-I sets to another node (controlled switchover)
version_added: 0.1.0
description:
  - Makes O(to_node) the origin of set O(set_id), or of every set whose origin is
    O(from_node), while both nodes work (slonik C(LOCK SET), C(MOVE SET), C(WAIT FOR EVENT)).
    For a failed origin use M(dany.slony.slony_failover) instead.
  - "Before anything changes, the module checks, and reports every problem it finds in one
    error: the slon daemon of every node runs; there are paths both ways between the old
    and the new origin; O(to_node) subscribes to each set with forward and has finished
    copying it; O(to_node) is not behind the old origin by more than O(max_lag_events) /
    O(max_lag_seconds); no subscription to the set is in progress."
  - When the only problem is a slon daemon that is not running, the run first waits up
    to 30 seconds (at most O(wait_timeout)) for it to run again, and refuses, nothing
    changed, if it does not. Slon restarts its worker 10 seconds after some events, and
    every switchover makes the slons of the nodes other than the old and the new origin
    do that. Check mode does not wait; it reports that wait in RV(slon_wait).
  - Then it locks each set on the old origin (writes to its tables fail there from this
    moment), waits until every transaction that was running at that moment has ended,
    moves the sets, and with O(wait=true) waits until every node has confirmed the move,
    O(to_node) is the origin in its own catalog, and every node has confirmed the
    C(ACCEPT_SET) event O(to_node) creates when it takes over. Applications must write to
    O(to_node) from then on.
  - A set whose origin is O(to_node) already is left alone (C(changed=false)); a move that
    an earlier run committed but the cluster has not finished processing is only waited for.
  - A set left locked by an interrupted run is moved by the next run, which reuses the lock
    (it does not lock again). If this module locked a set, or found it locked, and cannot
    move it (the wait for older transactions times out, C(moveSet) fails), it unlocks the set
    before failing, so that the old origin accepts writes again; the error says so.
    A refused preflight changes nothing; its error says when a set is still locked.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Runs the preflight and returns the SQL and slonik it would run; locks and moves nothing.
  diff_mode:
    details:
      - Shows the origin of each set before and after.
  idempotent:
    details:
      - Once O(to_node) is the origin, a second run with the same arguments reports
        C(changed=false).
options:
  set_id:
    description:
      - The set to move. Its current origin is found in the catalogs.
      - Exactly one of O(set_id) and O(from_node) is required.
    type: int
  from_node:
    description:
      - Move every set whose origin is this node (a whole-node switchover). The sets are
        locked together, then moved one after the other, so the time during which writes
        fail is about the same as for one set.
    type: int
  to_node:
    description: The new origin. It must subscribe to the sets with forward.
    type: int
    required: true
  max_lag_events:
    description:
      - Refuse when O(to_node) is more than this many events behind the old origin (from
        C(sl_status) on the old origin).
      - An integer, or C(null) to disable the check.
      - The lag is what O(to_node) must apply before it can take over, and roughly how long
        writes fail during the switchover.
    type: raw
    default: 100
  max_lag_seconds:
    description:
      - Refuse when the last event O(to_node) confirmed is older than this many seconds
        (C(st_lag_time) of C(sl_status) on the old origin).
      - A number, or C(null) to disable the check.
      - An idle origin creates a SYNC only every C(sync_interval_timeout) (10 s by default),
        so keep this above that.
    type: raw
    default: 60
  slon_pid_files:
    description:
      - The pid files of slon daemons that run on the host where the module runs, by node id
        (C(pid_file) of the C(dany.slony.slon) role or of M(dany.slony.slony_slon)). The
        file holds the pid of slon's watchdog process.
      - After C(ACCEPT_SET) the slon of every node other than the old and the new origin
        restarts its worker, and slon's watchdog sleeps 10 seconds (20 after a restart
        request) before it does. While the module waits, a watchdog of these files that has
        had no worker for 0.3 seconds is sent C(SIGUSR1), which ends that sleep at once
        (slon's own retry signal); the waits then also wait until the slons of these nodes
        that restart after C(ACCEPT_SET) run again, so the module returns when every such
        node replicates again. RV(slons_woken) says how often each was woken.
      - A worker of these slons that processed C(MOVE_SET) and has not processed the
        C(ACCEPT_SET) that follows for 2 seconds (slon met C(ACCEPT_SET) first and retries
        every 10 seconds) is restarted the same way slon restarts itself after an error
        (C(SIGUSR1) to the watchdog while the worker runs).
      - A pid file that does not exist, or does not name a running slon process, when the
        module starts is ignored (that slon runs on another host, or not at all).
        M(dany.slony.slony_switchover) then neither wakes nor waits for it.
      - Empty (the default), no signal is sent and the waits are as described above.
    type: dict
    default: {}
notes:
  - The old origin is locked with C(lockSet), whose wait for older transactions looks at the
    whole PostgreSQL instance of the old origin. A long transaction in any of its databases
    delays the switchover (and O(wait_timeout) bounds that wait).
  - Sequences that are not in a set are not moved; values of serial columns generated on the
    new origin come from its own sequences.
  - O(wait_timeout) bounds each wait separately (older transactions, confirmations).
seealso:
  - module: dany.slony.slony_subscription
  - module: dany.slony.slony_sync
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Move set 1 to node 2
  dany.slony.slony_switchover:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    to_node: 2

- name: Make node 2 the origin of everything node 1 originates, whatever the lag
  dany.slony.slony_switchover:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    from_node: 1
    to_node: 2
    max_lag_events: null
    max_lag_seconds: null
    wait_timeout: 900
'''

RETURN = r'''
sets:
  description:
    - What happened to each set considered. C(action) is C(move) (locked and moved),
      C(resume) (found locked by an interrupted run, moved), C(in_flight) (moved by an
      earlier run, waited for) or C(done) (already at O(to_node)).
  returned: always
  type: list
  elements: dict
  sample: [{"id": 1, "old_origin": 1, "new_origin": 2, "action": "move", "move_event": null}]
slon_wait:
  description:
    - The stopped slon daemons the run waits for before it changes anything (C(nodes)), for
      at most C(timeout) seconds; null when every slon runs.
  returned: always
  type: dict
  sample: {"nodes": [3], "timeout": 30, "description": "wait up to 30s for the slon daemon of node 3 to run again ..."}
timings:
  description:
    - C(locked_seconds) is the time from the first lock to the last move (writes fail on the
      old origin), C(confirmed_seconds) the time until every node confirmed the move (writes
      fail everywhere until the new origin has processed it). Empty when nothing was moved.
    - C(restarted_seconds), with O(slon_pid_files), the time until the slons that restart
      after C(ACCEPT_SET) ran again.
  returned: always
  type: dict
  sample: {"locked_seconds": 1.2, "confirmed_seconds": 0.8}
slons_woken:
  description:
    - The slon watchdogs of O(slon_pid_files) woken from their sleep (C(woken)), and the
      workers restarted because they were stuck in a retry loop (C(restarted_stuck)).
  returned: always
  type: list
  elements: dict
  sample: [{"node": 3, "woken": 1}]
before:
  description: The origin of each set before the run.
  returned: always
  type: dict
  sample: {"sets": [{"id": 1, "origin": 1, "locked": false}]}
after:
  description: The origin of each set after the run (in check mode, as it would be).
  returned: always
  type: dict
  sample: {"sets": [{"id": 1, "origin": 2, "locked": false}]}
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".lockset(1)"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nlock set (id = 1, origin = 1);\nmove set (id = 1, old origin = 1, new origin = 2);"
events:
  description: Slony events created (origin, seqno, type); a move creates a SYNC and a MOVE_SET.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000101, "type": "SYNC"}, {"origin": 1, "seqno": 5000000102, "type": "MOVE_SET"}]
'''

from ansible.module_utils.common.validation import check_type_float, check_type_int

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.switchover import plan_switchover
from ansible_collections.dany.slony.plugins.module_utils.slonwake import (
    WakingClock, waker_of)


def limit(slony, name, check):
    """The value of option ``name``: None (null: no check), else converted by ``check``.
    The options are raw because an int or float option refuses null when it has a default."""
    value = slony.params[name]
    if value is None:
        return None
    try:
        return check(value)
    except TypeError as exc:
        slony.fail(SlonyError("%s: %s" % (name, exc)))


def main():
    slony = SlonyModule(dict(
        set_id=dict(type="int"),
        from_node=dict(type="int"),
        to_node=dict(type="int", required=True),
        max_lag_events=dict(type="raw", default=100),
        max_lag_seconds=dict(type="raw", default=60),
        slon_pid_files=dict(type="dict", default={}),
    ), mutually_exclusive=[("set_id", "from_node")], required_one_of=[("set_id", "from_node")])
    params = slony.params
    max_lag_events = limit(slony, "max_lag_events", check_type_int)
    max_lag_seconds = limit(slony, "max_lag_seconds", check_type_float)
    try:
        waker = waker_of(params["slon_pid_files"])
    except SlonyError as exc:
        slony.fail(exc)

    slony.run(lambda cluster: plan_switchover(
        cluster, params["to_node"], set_id=params["set_id"], from_node=params["from_node"],
        max_lag_events=max_lag_events, max_lag_seconds=max_lag_seconds,
        timeout=params["wait_timeout"], wake_nodes=waker.nodes,
        slons_woken=waker.woken_report), clock=WakingClock(waker))


if __name__ == "__main__":
    main()
