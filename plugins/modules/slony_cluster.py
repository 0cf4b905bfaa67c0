#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_cluster
short_description: Converge Slony-I nodes, paths, sets, tables, sequences and subscriptions in one task
version_added: 0.1.0
description:
  - Brings a Slony-I cluster to a description in one task, in the order of a slonik
    bring-up script; the C(dany.slony.cluster) role uses it. Each part is planned by the same
    code as its own module, on what the parts before it left, and done before the next part
    is planned.
  - O(nodes) as M(dany.slony.slony_node) with O(dany.slony.slony_node#module:nodes). The lowest
    new id initialises the cluster (C(INIT CLUSTER)), the others are stored with C(STORE NODE).
  - O(paths) as M(dany.slony.slony_path) with O(dany.slony.slony_path#module:paths), without
    waiting (the slons may not run yet).
  - O(sets), for each set in order, converges the set (M(dany.slony.slony_set)), its tables
    (M(dany.slony.slony_table)), its sequences (M(dany.slony.slony_sequence)), without waiting
    for every node to confirm (Slony applies one origin's events in order), then its
    subscribers (M(dany.slony.slony_subscription) with
    O(dany.slony.slony_subscription#module:receivers)), which wait until every receiver has its
    copy when O(wait=true).
  - It only adds and changes; nothing is dropped, unsubscribed or removed (use the modules of
    each object with C(state=absent)).
  - One run reads each node's catalog a constant number of times per part and opens one
    connection per node, so a run with nothing to change costs one Ansible task instead of
    one per part.
  - In check mode nothing is created, so a part that needs what an earlier part would create
    is not planned and comes back in RV(not_planned); after nodes to create, nothing else is
    planned; after a set to create, not its tables, sequences and subscribers.
  - With O(wait=false) no completion wait runs; the waits a step needs first still do (for
    example a subscription waits until its provider has the set).
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Reads the catalogs, then returns the SQL (RV(queries)) and the slonik script
        (RV(slonik)) it would run, and per part (RV(steps)) what it would change; the parts
        it cannot plan yet are in RV(not_planned). Changes nothing.
  diff_mode:
    details:
      - The diff shows, per part (C(nodes), C(paths), C(set 1), C(set 1 tables), ...), the
        state before and after.
options:
  nodes:
    description:
      - The nodes of the cluster. Every id needs an entry in O(admin_conninfo).
    type: list
    elements: dict
    suboptions:
      id:
        description: The node id.
        type: int
        required: true
      comment:
        description: The node's comment; when not given, V(Node <id>) for a new node and the
          current one for an existing node.
        type: str
  event_node:
    description:
      - The node through which new nodes are stored (C(STORE NODE ... event node)); the lowest
        existing node when not given.
    type: int
  paths:
    description:
      - Paths between nodes (C(STORE PATH)), stored on their client.
    type: list
    elements: dict
    suboptions:
      server:
        description: The node the client connects to.
        type: int
        required: true
      client:
        description: The node whose slon connects.
        type: int
        required: true
      conninfo:
        description: The libpq conninfo the client's slon uses to reach the server.
        type: str
        required: true
      connretry:
        description: Seconds the client's slon waits before it connects again after a failure.
        type: int
        default: 10
  sets:
    description:
      - The replication sets, converged in list order.
    type: list
    elements: dict
    suboptions:
      id:
        description: The set id.
        type: int
        required: true
      origin:
        description: The origin node of the set.
        type: int
        required: true
      comment:
        description: The set's comment.
        type: str
      tables:
        description: Tables of the set, as O(dany.slony.slony_table#module:tables).
        type: list
        elements: raw
      patterns:
        description: Regular expressions on C(schema.table), as
          O(dany.slony.slony_table#module:patterns).
        type: list
        elements: str
      schemas:
        description: Every table of these schemas, as O(dany.slony.slony_table#module:schemas).
        type: list
        elements: str
      exclude:
        description: Tables left out of O(sets[].patterns) and O(sets[].schemas).
        type: list
        elements: str
      sequences:
        description: Sequences of the set, as O(dany.slony.slony_sequence#module:sequences).
        type: list
        elements: raw
      sequence_patterns:
        description: Regular expressions on C(schema.sequence).
        type: list
        elements: str
      sequence_schemas:
        description: Every sequence of these schemas.
        type: list
        elements: str
      sequence_exclude:
        description: Sequences left out of O(sets[].sequence_patterns) and
          O(sets[].sequence_schemas).
        type: list
        elements: str
      exclusive:
        description: As O(dany.slony.slony_table#module:exclusive), for the tables and the
          sequences. Members of the set that the description does not name are dropped from it.
        type: bool
        default: false
      subscribers:
        description: The receivers of the set.
        type: list
        elements: dict
        suboptions:
          receiver:
            description: The subscribing node.
            type: int
            required: true
          provider:
            description: The node it copies from; the origin when not given.
            type: int
          forward:
            description: Whether the receiver keeps the log data to feed other nodes.
            type: bool
            default: true
          omit_copy:
            description: Do not copy the data (the receiver holds it already); only used when
              the subscription is created.
            type: bool
            default: false
notes:
  - The subscriptions need running slon daemons (role C(dany.slony.slon)); run the module with
    O(nodes) and O(paths) first, start the slons, then run it with O(sets), as the
    C(dany.slony.cluster) role does.
seealso:
  - module: dany.slony.slony_node
  - module: dany.slony.slony_path
  - module: dany.slony.slony_set
  - module: dany.slony.slony_table
  - module: dany.slony.slony_sequence
  - module: dany.slony.slony_subscription
  - module: dany.slony.slony_info
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Nodes and paths, written out
  dany.slony.slony_cluster:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    nodes: [{id: 1, comment: origin}, {id: 2, comment: replica}]
    paths:
      - {server: 1, client: 2, conninfo: "host=db1 dbname=shop user=slony"}
      - {server: 2, client: 1, conninfo: "host=db2 dbname=shop user=slony"}

- name: One set with the tables and sequences of schema public, node 3 cascaded from node 2
  dany.slony.slony_cluster:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    sets:
      - id: 1
        origin: 1
        comment: shop tables
        schemas: [public]
        exclude: ['^public\.audit_log$']
        sequence_schemas: [public]
        subscribers:
          - receiver: 2
          - receiver: 3
            provider: 2
  register: converged

- name: Show what changed, part by part
  ansible.builtin.debug:
    msg: "{{ converged.steps | selectattr('changed') | map(attribute='step') | list }}"
'''

RETURN = r'''
steps:
  description:
    - One entry per part, in the order they were planned, with what that part's own module
      returns (C(before), C(after), C(queries), C(slonik), C(events)), C(changed), C(step)
      (V(nodes), V(paths), V(set 1), V(set 1 tables), V(set 1 sequences),
      V(set 1 subscriptions)) and C(not_planned) (null, or why check mode did not plan it).
  returned: always
  type: list
  elements: dict
  sample: [{"step": "set 1", "changed": false, "not_planned": null, "queries": [], "events": [],
            "slonik": "", "before": {"id": 1, "origin": 1, "comment": "shop", "locked": false},
            "after": {"id": 1, "origin": 1, "comment": "shop", "locked": false}}]
not_planned:
  description: The parts check mode did not plan, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"step": "set 1 tables", "reason": "not planned: set 1 would be created first (run without check mode)"}]
queries:
  description: The statements of every part that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".storeset(1, 'shop')"}]
slonik:
  description: The equivalent slonik script of the whole run, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\ncreate set (id = 1, origin = 1, comment = 'shop');"
events:
  description: The Slony events created, in order (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000009, "type": "STORE_SET"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.converge import converge_steps
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    subscriber = dict(
        receiver=dict(type="int", required=True),
        provider=dict(type="int"),
        forward=dict(type="bool", default=True),
        omit_copy=dict(type="bool", default=False),
    )
    strings = dict(type="list", elements="str")
    set_spec = dict(
        id=dict(type="int", required=True),
        origin=dict(type="int", required=True),
        comment=dict(type="str"),
        tables=dict(type="list", elements="raw"),
        patterns=strings, schemas=strings, exclude=strings,
        sequences=dict(type="list", elements="raw"),
        sequence_patterns=strings, sequence_schemas=strings, sequence_exclude=strings,
        exclusive=dict(type="bool", default=False),
        subscribers=dict(type="list", elements="dict", options=subscriber),
    )
    slony = SlonyModule(dict(
        nodes=dict(type="list", elements="dict", options=dict(
            id=dict(type="int", required=True),
            comment=dict(type="str"),
        )),
        event_node=dict(type="int"),
        paths=dict(type="list", elements="dict", options=dict(
            server=dict(type="int", required=True),
            client=dict(type="int", required=True),
            conninfo=dict(type="str", required=True, no_log=True),
            connretry=dict(type="int", default=10),
        )),
        sets=dict(type="list", elements="dict", options=set_spec),
    ), required_one_of=[("nodes", "paths", "sets")])
    params = slony.params
    for entry in params["paths"] or []:
        slony.add_secrets(entry.get("conninfo"))
    try:
        steps = converge_steps(params["nodes"], params["paths"], params["sets"],
                               params["event_node"])
    except SlonyError as exc:
        slony.fail(exc)
    slony.run_steps(steps)


if __name__ == "__main__":
    main()
