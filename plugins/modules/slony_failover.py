#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_failover
short_description: Promote backup nodes for one or several failed Slony-I nodes
version_added: 0.1.0
description:
  - Fails a lost node over to a backup node the way slonik's C(FAILOVER) does in Slony-I 2.2,
    step by step - validation on the backup node, C(preFailover) on every surviving node,
    wait until their slon daemons have restarted, promotion of the failover candidate that
    holds the most events of the failed node (C(failedNode2), event C(FAILOVER_NODE)), wait
    until every surviving node has confirmed it, C(failedNode3) and, when the promoted node
    is not O(backup_node), C(LOCK SET) and C(MOVE SET) to O(backup_node).
  - Several nodes that failed together (an origin and a forwarder, a whole site) are failed
    over in ONE call with O(nodes), as slonik's C(FAILOVER) with one C(node) entry per failed
    node does it - one by one could lose events, since a surviving node
    would wait for, or pull from, a node that is also gone. The checks are done for every
    pair before anything changes; C(preFailover) runs on every surviving node for every
    failed node (one transaction per node), the slon restarts are waited for once, then each
    failed node in the order given is promoted (the failover candidate holding the most of
    its events, C(failedNode2) with the whole failed list), confirmed and finished
    (C(failedNode3)); the sets are then moved to each requested backup node when another
    node was promoted.
  - A surviving node that does not answer either is refused, and named; when it feeds a node
    of the failover (a provider on the path of the failover) or is an origin, the message
    says that it failed too and must be listed in O(nodes).
  - Unlike slonik, every wait is bounded by O(wait_timeout) and a timeout names the nodes
    that are behind and the state of their slon daemon.
  - Nothing is changed when a surviving node has no entry in O(admin_conninfo), cannot be
    reached, or has no running slon (a slon that is restarting is waited for, at most
    O(wait_timeout) seconds), since the failover could not complete.
  - Each failed node is probed first (its O(admin_conninfo) entry if any, and the conninfos
    of the paths other nodes use to reach it). When its database answers, the failover is
    refused unless O(force=true).
  - With O(drop_failed=true) the failed nodes are then dropped from the cluster, in one
    C(DROP NODE) event through the (first) backup node, as M(dany.slony.slony_node) with
    C(state=absent) does it. A failed node can never rejoin; it is rebuilt as a new node.
  - A run after a completed failover changes nothing. A run after an interrupted one
    resumes where it stopped, failed node by failed node - before its promotion it starts
    again (C(preFailover) is harmless to repeat), after the promotion it waits for the
    confirmations and finishes.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Validates, probes the failed node and returns the plan (SQL and slonik) with the
        node expected to be promoted first for each failed node; changes nothing and does
        not wait for slon daemons that are restarting.
  diff_mode:
    details:
      - Shows each failed node's state and the origin of its sets before and after.
  idempotent:
    details:
      - A second run with the same arguments reports C(changed=false) - the sets of the
        failed nodes originate on their backup nodes and the nodes are failed (or dropped).
options:
  failed_node:
    description:
      - Id of the lost node. It may be listed in O(admin_conninfo) or not; it is only
        connected to for the probe.
      - Requires O(backup_node); mutually exclusive with O(nodes).
    type: int
  backup_node:
    description:
      - Id of the node that becomes the origin of the failed node's sets.
      - It must be a forwarding subscriber of every set of O(failed_node), and every node
        fed by O(failed_node) must have a path to it.
      - Requires O(failed_node).
    type: int
  nodes:
    description:
      - Several failed nodes, failed over in one C(FAILOVER) (the C(node) entries of
        slonik's command), in the order given. Mutually exclusive with
        O(failed_node) and O(backup_node).
      - List every node that failed. A call that leaves out a dead node the others depend
        on (a provider of a surviving node, an origin) is refused, naming it.
      - A backup node may serve several failed nodes; it cannot be in the list itself.
    type: list
    elements: dict
    suboptions:
      id:
        description:
          - Id of a lost node (as O(failed_node)).
        type: int
        required: true
      backup_node:
        description:
          - Id of the node that becomes the origin of its sets (as O(backup_node)). For a
            node that is the origin of no set (a forwarder, a leaf), the node whose paths
            its receivers use from now on - every node it fed (outside the list) must have
            a path from it.
        type: int
        required: true
  force:
    description:
      - Fail over even though a failed node's database answers.
      - The applications must no longer write to the failed node; its writes after the
        failover are lost and the cluster would otherwise be split.
    type: bool
    default: false
  drop_failed:
    description:
      - Drop the failed node from the cluster after the failover (C(DROP NODE) through
        O(backup_node)). Its database, when reachable, is uninstalled too.
    type: bool
    default: false
  slon_pid_files:
    description:
      - The pid files of slon daemons that run on the host where the module runs, by node id
        (C(pid_file) of the C(dany.slony.slon) role or of M(dany.slony.slony_slon)). The
        file holds the pid of slon's watchdog process.
      - A failover makes every surviving slon restart its worker several times (after
        C(preFailover), C(failedNode), C(failedNode2), C(failedNode3)), and slon's watchdog
        sleeps 20 seconds before each restart (10 after an error). While the module waits,
        a watchdog of these files that has had no worker for 0.3 seconds is sent C(SIGUSR1),
        which ends that sleep at once (slon's own retry signal). With O(wait=true) the run
        then ends with a wait until the slons of these surviving nodes have restarted after
        C(FAILOVER_NODE) and C(failedNode3), and with O(drop_failed) once more after
        C(DROP NODE) (every slon restarts after it), so that it returns when they replicate
        again.
        RV(slons_woken) says how often each was woken.
      - A worker of these slons that holds the failed node's last event and has not
        processed C(FAILOVER_NODE) for 2 seconds (slon checks for that event once, then
        every 10 seconds) is restarted the same way slon restarts itself after an error
        (C(SIGUSR1) to the watchdog while the worker runs).
      - The pid files of the failed nodes are ignored, and so is a pid file that does not
        exist, or does not name a running slon process, when the module starts (that slon
        runs on another host, or not at all). The module neither wakes nor waits for them.
      - Empty (the default), no signal is sent.
    type: dict
    default: {}
notes:
  - O(admin_conninfo) must list every surviving node of the cluster, and each of them needs a
    running slon daemon that restarts when asked (slon does so by itself).
  - O(wait=false) does not skip the waits the failover needs to be correct (slon restarts,
    confirmation of C(FAILOVER_NODE), confirmation of C(MOVE SET) by the backup); it only
    skips the wait for the other nodes to process C(DROP NODE) and, with
    O(slon_pid_files), the final wait for the slons to restart.
  - A node that was ahead of the promoted node for the failed node's sets drops its
    subscriptions (Slony prints a warning in its slon log only); the promoted node is chosen
    as the one holding the most events of the failed node, so this only happens to nodes
    that are not failover candidates, e.g. a leaf fed by a forwarder that failed together
    with the origin. The module reports them in RV(dropped_subscriptions) and warns.
  - If a run is interrupted after a node other than O(backup_node) was promoted and every
    surviving node has processed the failover, the sets stay on that node; move them with
    a switchover.
  - With O(nodes), RV(before) and RV(after) hold a list C(nodes) (one entry per failed node,
    in the shape of the single-node form) and RV(failed_nodes) gives, per failed node, what
    RV(candidates), RV(temporary_backup), RV(failed_node_reachable), RV(failed_node_probe)
    and RV(failed_node_events) give for the single-node form.
seealso:
  - module: dany.slony.slony_node
  - module: dany.slony.slony_subscription
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Node 1 is lost - make node 2 the origin of its sets and drop it
  dany.slony.slony_failover:
    cluster_name: shop
    admin_conninfo:
      2: "host=db2 dbname=shop user=slony"
      3: "host=db3 dbname=shop user=slony"
    failed_node: 1
    backup_node: 2
    drop_failed: true
    wait_timeout: 600

- name: A whole site is lost (origin 1 and forwarder 3) - one failover for both
  dany.slony.slony_failover:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    nodes:
      - {id: 1, backup_node: 2}
      - {id: 3, backup_node: 2}
    drop_failed: true
    wait_timeout: 600

- name: Show what a failover would do (validation, probe, plan)
  dany.slony.slony_failover:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    failed_node: 1
    backup_node: 2
  check_mode: true
'''

RETURN = r'''
before:
  description:
    - The failed node's state (C(active), C(failed), C(absent)) and the origin of its sets.
    - With O(nodes), C(nodes) - the list of these, one per failed node.
  returned: always
  type: dict
  sample: {"failed_node": 1, "backup_node": 2, "state": "active", "sets": [{"id": 1, "origin": 1}]}
after:
  description: The same after the run (in check mode, as it would be).
  returned: always
  type: dict
  sample: {"failed_node": 1, "backup_node": 2, "state": "absent", "sets": [{"id": 1, "origin": 2}]}
failed_nodes:
  description:
    - Per failed node (O(nodes)), C(failed_node), C(backup_node) and what C(candidates),
      C(temporary_backup), C(failed_node_reachable), C(failed_node_probe) and
      C(failed_node_events) give for the single-node form.
  returned: with O(nodes)
  type: list
  elements: dict
  sample: [{"failed_node": 1, "backup_node": 2, "candidates": [2], "temporary_backup": 2,
            "failed_node_reachable": false, "failed_node_probe": [], "failed_node_events": []}]
dropped_subscriptions:
  description:
    - The subscriptions Slony's FAILOVER dropped (C(node), C(set), C(failed_node),
      C(promoted_node)), read on each receiver once every survivor confirmed the failover.
      A node that had applied more of the failed node's events than the node promoted
      unsubscribes itself from the failed node's sets (its slon only logs a warning);
      the module also issues a warning per entry. Subscribe such a node again (a full
      copy). Empty when no subscription was dropped and in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 4, "set": 1, "failed_node": 1, "promoted_node": 2}]
surviving_nodes:
  description: Every node of the cluster except the failed nodes (and nodes that failed earlier).
  returned: always
  type: list
  elements: int
  sample: [2, 3]
candidates:
  description: Surviving nodes that can take over the failed node's sets (C(sl_failover_targets)).
  returned: with O(failed_node)
  type: list
  elements: int
  sample: [2, 3]
failed_node_events:
  description:
    - Per surviving node, the highest event seqno of the failed node it holds; the candidate
      with the highest value is promoted first. In normal mode, as read after the slon restarts.
  returned: with O(failed_node), when a failover is planned
  type: list
  elements: dict
  sample: [{"node": 2, "max_seqno": 5000000123}, {"node": 3, "max_seqno": 5000000121}]
temporary_backup:
  description:
    - The node promoted first (C(failedNode2)); when it is not O(backup_node), the sets are
      moved on to O(backup_node). In check mode, the node that would be promoted now.
  returned: with O(failed_node)
  type: int
  sample: 2
failed_node_reachable:
  description: Whether the failed node's database answered the probe (null when no probe was needed).
  returned: with O(failed_node)
  type: bool
  sample: false
failed_node_probe:
  description: What each connection attempt to the failed node found (passwords redacted).
  returned: with O(failed_node)
  type: list
  elements: str
  sample: ["admin_conninfo (host=db1 dbname=shop user=slony): unreachable (connection refused)"]
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 2, "sql": "lock table \"_shop\".sl_config_lock; select \"_shop\".prefailover(1, true)"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nfailover (id = 1, backup node = 2);\ndrop node (id = 1, event node = 2);"
slons_woken:
  description:
    - The slon watchdogs of O(slon_pid_files) woken from their sleep (C(woken)), and the
      workers restarted because they were stuck in a retry loop (C(restarted_stuck)).
  returned: always
  type: list
  elements: dict
  sample: [{"node": 2, "woken": 3, "restarted_stuck": 1}, {"node": 3, "woken": 2}]
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 2, "seqno": 5000000051, "type": "FAILOVER_NODE"}, {"origin": 2, "seqno": 5000000052, "type": "DROP_NODE"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.failover import (
    plan_failover, plan_failovers)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.slonwake import (
    WakingClock, waker_of)


def main():
    slony = SlonyModule(
        dict(
            failed_node=dict(type="int"),
            backup_node=dict(type="int"),
            nodes=dict(type="list", elements="dict", options=dict(
                id=dict(type="int", required=True),
                backup_node=dict(type="int", required=True),
            )),
            force=dict(type="bool", default=False),
            drop_failed=dict(type="bool", default=False),
            slon_pid_files=dict(type="dict", default={}),
        ),
        mutually_exclusive=[("nodes", "failed_node"), ("nodes", "backup_node")],
        required_one_of=[("nodes", "failed_node")],
        required_together=[("failed_node", "backup_node")],
    )
    params = slony.params
    try:
        # The slon of a failed node is never woken: it would only retry its lost database.
        waker = waker_of(params["slon_pid_files"],
                         skip=[params["failed_node"]] if params["nodes"] is None
                         else [entry["id"] for entry in params["nodes"]])
    except SlonyError as exc:
        slony.fail(exc)
    options = dict(force=params["force"], drop_failed=params["drop_failed"],
                   timeout=params["wait_timeout"], wait_enabled=params["wait"],
                   slon_wait=0 if slony.check_mode else params["wait_timeout"],
                   wake_nodes=waker.nodes, slons_woken=waker.woken_report)
    if params["nodes"] is not None:
        pairs = [(entry["id"], entry["backup_node"]) for entry in params["nodes"]]
        slony.run(lambda cluster: plan_failovers(cluster, pairs, **options),
                  clock=WakingClock(waker))
    else:
        slony.run(lambda cluster: plan_failover(
            cluster, params["failed_node"], params["backup_node"], **options),
            clock=WakingClock(waker))


if __name__ == "__main__":
    main()
