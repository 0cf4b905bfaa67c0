#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_node
short_description: Add, initialise, comment or remove a Slony-I node
version_added: 0.1.0
description:
  - Makes a database a node of a Slony-I cluster, or removes it.
  - The first node of a cluster that does not exist yet is initialised (slonik C(INIT CLUSTER)).
    Any other node is added through an O(event_node) the way slonik's C(STORE NODE) does it -
    the Slony schema is loaded into the new database, which is initialised and given the
    cluster's current configuration, and the cluster is told about it.
  - A half-done earlier attempt (a schema on the new database that the cluster does not know)
    is detected and finished.
  - With O(state=absent) the node is dropped from the cluster (C(DROP NODE)) and, when its
    database is reachable, Slony is uninstalled from it (C(UNINSTALL NODE)).
  - The catalog is read first; nothing is done when the node is already as requested.
  - With O(nodes), several nodes in one task, in id order. On a new cluster the lowest
    id is initialised and the others are stored through it. Check mode shows that
    order too. The new nodes load the Slony schema at the same time.
  - With O(repair_config), the node's recorded table and sequence oids are repaired (slonik
    C(REPAIR CONFIG)) when they are stale - after its database was restored from a dump.
  - With O(update_functions), the Slony stored functions of the node (or O(nodes)) are reloaded
    (slonik C(UPDATE FUNCTIONS)) when the version they report differs from the installed Slony-I.
  - With O(nodes) and O(state=absent), the nodes leave together in one C(DROP NODE) event
    (slonik's C(drop node (id = '2,3', ...))) through a node that stays, then Slony is
    uninstalled from each reachable one. A listed node may feed other listed nodes; one that
    is the origin of a set, or that feeds a node which stays, is refused before anything
    changes, with every such problem named. Nodes already gone are skipped; when every node
    of the cluster is listed, each is uninstalled.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  diff_mode:
    details:
      - Shows the node as the cluster sees it before and after (with O(nodes), a list).
options:
  id:
    description:
      - Id of the node. It must have an entry in O(admin_conninfo).
      - Exactly one of O(id) and O(nodes) is required.
    type: int
  nodes:
    description:
      - Several nodes at once, instead of O(id) (and of O(comment) - each entry has its own).
      - With O(state=absent) only the C(id) of each entry is used.
    type: list
    elements: dict
    suboptions:
      id:
        description: Id of the node. It must have an entry in O(admin_conninfo).
        type: int
        required: true
      comment:
        description: As the module's O(comment).
        type: str
  state:
    description:
      - C(present) makes the node an active node of the cluster, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  comment:
    description:
      - Comment of the node. Converges on an existing node.
      - Defaults to C(Initial Node) for the first node and C(Node <id>) for the others;
        the comment of an existing node is left alone when not given.
    type: str
  event_node:
    description:
      - Existing node through which the cluster is told about the change.
      - Defaults to the lowest-numbered node in O(admin_conninfo), other than O(id) (or the
        O(nodes) being removed), that is already a node of the cluster.
    type: int
  repair_config:
    description:
      - C(true) checks that the oids node O(id) records for the tables and sequences of the sets
        it holds are those of the relations of the same names in its database, and when they are
        not (the database was restored from a dump, or re-created by a tool) runs slonik's
        C(REPAIR CONFIG) there (C(updateReloid), on that node only - the only node it ever
        repairs). Nothing else is changed; nothing is done when the oids are current.
      - Stop the node's slon before restoring its database, and start it after the repair.
      - Only with O(id) and O(state=present); not with O(comment) or O(event_node).
    type: bool
    default: false
  update_functions:
    description:
      - V(true) compares, on node O(id) (or each of O(nodes)), the version its Slony functions
        report (C(slonyVersion())) with the version of the Slony-I SQL files installed where the
        module runs (O(share_dir)), and where they differ does what slonik's
        C(UPDATE FUNCTIONS) does - in one transaction, loads the functions files, runs
        C(upgradeSchema(<old version>)) and notifies the node's slon, which restarts itself
        with the new functions. Check mode lists the nodes that would be upgraded.
      - Upgrade every node of the cluster in the same run, after installing the new Slony-I
        packages everywhere (role C(dany.slony.packages)); then make sure each slon runs
        (role C(dany.slony.slon)).
      - A node with Slony-I 1.x functions (that needs Slony's C(slony_upgrade_20)) or with
        functions newer than the installed files is refused, nothing changed.
      - Only with O(state=present); not with O(comment), O(event_node) or O(repair_config).
    type: bool
    default: false
  clone_from:
    description:
      - Adds node O(id) by cloning the existing subscriber O(clone_from) (its provider in
        slonik's terms), in two phases chosen by O(clone_phase), with a copy of the
        subscriber's database made in between (C(pg_dump) and restore; C(playbooks/clone_node.yml)
        does the whole procedure). The clone keeps the subscriber's replication state, so no
        table is copied again by Slony.
      - Only a subscriber can be cloned - a node that is the origin of a set, that subscribes to
        no set, or that is failed is refused, nothing changed.
      - Only with O(id) and O(state=present); not with O(nodes), O(event_node), O(repair_config)
        or O(update_functions).
    type: int
  clone_phase:
    description:
      - V(prepare) (slonik C(CLONE PREPARE), run on O(clone_from)) - once the other nodes are
        caught up with their configuration, the cluster learns node O(id) as a twin of
        O(clone_from) (its node row, its paths with the conninfo C(<event pending>), its
        subscriptions and confirmations, on every node); the module waits until every node
        has processed that, then creates a SYNC on every other node and waits until
        O(clone_from) has confirmed them (the procedure of Slony's manual), after which its
        database may be copied. Nothing is done when node O(id) is already such a twin (or
        already a node whose database is node O(id)); another node with that id is refused.
        The database of node O(id) is not touched and need not exist yet.
      - V(finish) (slonik C(CLONE FINISH), run on the copy) - the database behind node O(id)'s
        admin conninfo, restored from a copy of O(clone_from)'s database taken after the
        prepare, becomes node O(id) (C(cloneNodeFinish) - its local node id, the oids of the
        replicated relations, its listens and confirmations). Nothing is done when that
        database already is node O(id) with a C(sl_setsync) row for each set it subscribes.
        Refused, nothing changed, when the database has no Slony schema, is another node,
        is a copy taken before the prepare, or is the database of O(clone_from) itself.
        O(clone_from) needs an admin conninfo for that last check.
      - Then store the paths to and from node O(id) (M(dany.slony.slony_path)) and start its
        slon (role C(dany.slony.slon)).
    type: str
    choices: [prepare, finish]
  slon_pid_files:
    description:
      - With O(state=absent), the pid files of slon daemons that run on the host where the
        module runs, by node id (C(pid_file) of the C(dany.slony.slon) role or of
        M(dany.slony.slony_slon)); the file holds the pid of slon's watchdog process.
      - Every slon restarts its worker after C(DROP NODE), and slon's watchdog sleeps 20
        seconds before it does. While the module waits, a watchdog of these files that has
        had no worker for 0.3 seconds is sent C(SIGUSR1), which ends that sleep at once
        (slon's own retry signal); with O(wait=true) the module then waits until the slons
        of these nodes that stay have registered again, so that it returns when they
        replicate again. RV(slons_woken) says how often each was woken.
      - The pid files of the nodes being removed are ignored, and so is a pid file that does
        not exist, or does not name a running slon process, when the module starts (that
        slon runs on another host, or not at all).
      - Empty (the default), no signal is sent. Not used with O(state=present).
    type: dict
    default: {}
notes:
  - After adding a node, store the paths to and from it (M(dany.slony.slony_path)) and start
    its slon daemon; until then the other nodes cannot confirm its events.
  - A node that is the origin of a set or the provider of a subscription cannot be removed;
    the module says which.
seealso:
  - module: dany.slony.slony_path
  - module: dany.slony.slony_subscription
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Initialise node 1 as the first node of cluster "shop"
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo:
      1: "host=db1 dbname=shop user=slony"
    id: 1
    comment: Primary in Paris

- name: Add node 2 through node 1
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo:
      1: "host=db1 dbname=shop user=slony"
      2: "host=db2 dbname=shop user=slony"
    id: 2
    comment: Replica in Lyon

- name: Create nodes 1 to 3 in one task (node 1 initialises the cluster)
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    nodes:
      - id: 1
        comment: Primary in Paris
      - id: 2
      - id: 3

- name: Remove node 3 (drop it from the cluster, uninstall Slony from its database)
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 3
    state: absent

- name: Node 3's database was restored from a dump - repair the oids Slony recorded
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 3
    repair_config: true

- name: After upgrading the Slony-I packages, reload the stored functions of every node
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    nodes: [{id: 1}, {id: 2}, {id: 3}]
    update_functions: true

- name: Clone subscriber 2 as node 4, phase 1 (then copy node 2's database to node 4's)
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 4
    clone_from: 2
    clone_phase: prepare

- name: Clone subscriber 2 as node 4, phase 2 (on the restored copy)
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 4
    clone_from: 2
    clone_phase: finish

- name: Remove nodes 4 and 5 together (node 4 feeds only node 5)
  dany.slony.slony_node:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    nodes:
      - id: 4
      - id: 5
    state: absent
'''

RETURN = r'''
before:
  description:
    - The node as the cluster saw it before the run (C(state) is C(absent) when unknown).
    - With O(clone_from), C(id), C(clone_of), C(phase) (C(absent), C(prepared), C(restored) - its
      database is the copy, not yet finished - or C(finished)), and as far as known its
      C(comment), the C(sets) it subscribes, its database's C(local_node_id) and C(setsync)
      (set id -> C(sl_setsync) event number).
    - With O(nodes), a list of these, in the order of O(nodes).
    - With O(repair_config), the node's C(id) and C(stale_relations), the relations whose
      recorded oid was stale.
    - With O(update_functions), C(id) and the C(version) its functions reported.
  returned: always
  type: raw
  sample: {"id": 2, "state": "absent"}
after:
  description:
    - The node as it is after the run (in check mode, as it would be).
    - With O(nodes), a list of these, in the order of O(nodes).
  returned: always
  type: raw
  sample: {"id": 2, "state": "present", "comment": "Replica in Lyon", "active": true, "failed": false}
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".storeNode(2, 'Replica in Lyon'); select \"_shop\".enableNode(2)"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nnode 1 admin conninfo = 'host=db1 dbname=shop user=slony';\nstore node (id = 2, comment = 'Replica in Lyon', event node = 1);"
target_version:
  description: With O(update_functions), the version of the installed Slony-I SQL files the
    functions are brought to.
  returned: with O(update_functions)
  type: str
  sample: "2.2.11"
slons_woken:
  description:
    - With O(state=absent) and O(slon_pid_files), the slon watchdogs woken from their sleep
      after C(DROP NODE) (C(woken)).
  returned: when O(state=absent) and O(slon_pid_files) names a running slon of a node that stays
  type: list
  elements: dict
  sample: [{"node": 1, "woken": 1}]
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000004, "type": "STORE_NODE"}, {"origin": 1, "seqno": 5000000005, "type": "ENABLE_NODE"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.clone import (
    plan_clone_finish, plan_clone_prepare)
from ansible_collections.dany.slony.plugins.module_utils.nodes import (
    plan_node_absent, plan_node_present, plan_nodes_absent, plan_nodes_present,
    plan_repair_config)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.slonwake import (
    WakingClock, waker_of)
from ansible_collections.dany.slony.plugins.module_utils.upgrade import plan_update_functions


def main():
    slony = SlonyModule(dict(
        id=dict(type="int"),
        nodes=dict(type="list", elements="dict", options=dict(
            id=dict(type="int", required=True),
            comment=dict(type="str"),
        )),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        comment=dict(type="str"),
        event_node=dict(type="int"),
        repair_config=dict(type="bool", default=False),
        update_functions=dict(type="bool", default=False),
        clone_from=dict(type="int"),
        clone_phase=dict(type="str", choices=["prepare", "finish"]),
        slon_pid_files=dict(type="dict", default={}),
    ), mutually_exclusive=[("clone_from", "nodes"), ("clone_from", "event_node"),
                           ("clone_from", "repair_config"), ("clone_from", "update_functions"),
                           ("id", "nodes"), ("nodes", "comment"), ("repair_config", "nodes"),
                           ("repair_config", "comment"), ("repair_config", "event_node"),
                           ("update_functions", "comment"), ("update_functions", "event_node"),
                           ("update_functions", "repair_config")],
        required_one_of=[("id", "nodes")], required_together=[("clone_from", "clone_phase")])
    params = slony.params
    for option in ("repair_config", "update_functions"):
        if params[option] and params["state"] == "absent":
            slony.fail("%s: only with state=present (a node that is removed needs none)" % option)
    if params["clone_from"] is not None:
        if params["state"] == "absent":
            slony.fail("clone_from: only with state=present (a clone is a node being added)")
        if params["clone_phase"] == "finish" and params["comment"] is not None:
            slony.fail("comment: only with clone_phase=prepare (the clone's comment is given "
                       "when it is prepared)")

    removed = [params["id"]] if params["nodes"] is None else [e["id"] for e in params["nodes"]]
    try:
        waker = waker_of(params["slon_pid_files"] if params["state"] == "absent" else {},
                         skip=removed)
    except SlonyError as exc:
        slony.fail(exc)
    waking = dict(wake_nodes=waker.nodes, slons_woken=waker.woken_report) if waker.nodes else {}

    def planner(cluster):
        if params["clone_from"] is not None:
            if params["clone_phase"] == "prepare":
                return plan_clone_prepare(cluster, params["id"], params["clone_from"],
                                          params["comment"])
            return plan_clone_finish(cluster, params["id"], params["clone_from"])
        if params["repair_config"]:
            return plan_repair_config(cluster, params["id"])
        if params["update_functions"]:
            ids = [params["id"]] if params["nodes"] is None else [e["id"] for e in params["nodes"]]
            planned = plan_update_functions(cluster, ids, params["share_dir"])
            if params["nodes"] is None:
                planned = planned._replace(before=planned.before[0], after=planned.after[0])
            return planned
        if params["nodes"] is not None:
            if params["state"] == "absent":
                return plan_nodes_absent(cluster, removed, params["event_node"], **waking)
            return plan_nodes_present(cluster, params["nodes"], params["event_node"])
        if params["state"] == "present":
            return plan_node_present(cluster, params["id"], params["comment"],
                                     params["event_node"])
        return plan_node_absent(cluster, params["id"], params["event_node"], **waking)

    slony.run(planner, clock=WakingClock(waker) if waker.nodes else None)


if __name__ == "__main__":
    main()
