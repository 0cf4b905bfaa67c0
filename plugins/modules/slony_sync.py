#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_sync
short_description: Create a Slony-I SYNC event and wait until other nodes confirm it
version_added: 0.1.0
description:
  - Creates a SYNC event on O(node) (slonik C(SYNC)) and, with O(wait=true), waits until every
    other active node, or the nodes in O(confirmers), has confirmed it (slonik
    C(WAIT FOR EVENT)).
  - A node confirms a SYNC of O(node) once it has applied everything O(node) committed
    before it, so this is a barrier, for example after a batch of writes on the origin,
    after DDL, or before comparing data across nodes.
  - Every run creates a new event and reports C(changed=true); the event changes no data
    and no configuration. Check mode creates nothing.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Returns the SQL and slonik it would run and C(changed=true); creates no event.
  diff_mode:
    support: none
    details:
      - A SYNC changes no object; the diff is empty.
  idempotent:
    support: none
    details:
      - Every run creates a new SYNC event and reports C(changed=true).
options:
  node:
    description: The node that creates the SYNC (usually the origin of the data to wait for).
    type: int
    required: true
  confirmers:
    description:
      - Wait for these nodes only. Every active node other than O(node) when not given.
      - O(node) itself may be listed; it is ignored. A node that is not an active node of
        the cluster is an error, as it would never confirm.
    type: list
    elements: int
notes:
  - The confirmations reach O(node) through its own slon daemon, so that slon must run
    too; on timeout the error names every node that is behind and the state of its slon.
seealso:
  - module: dany.slony.slony_switchover
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Wait until every node has applied what node 1 committed so far
  dany.slony.slony_sync:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    node: 1

- name: Only node 3 matters
  dany.slony.slony_sync:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    node: 1
    confirmers: [3]
    wait_timeout: 60
'''

RETURN = r'''
event:
  description: The SYNC event created (C(null) in check mode).
  returned: always
  type: dict
  sample: {"origin": 1, "seqno": 5000000321, "type": "SYNC"}
confirmed_by:
  description: The nodes that confirmed the event (C(null) when the module did not wait).
  returned: always
  type: list
  elements: int
  sample: [2, 3]
before:
  description: Always empty; a SYNC changes no object.
  returned: always
  type: dict
  sample: {}
after:
  description: Always empty; a SYNC changes no object.
  returned: always
  type: dict
  sample: {}
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".createevent('_shop', 'SYNC')"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nsync (id = 1);\nwait for event (origin = 1, confirmed = all, wait on = 1, timeout = 300);"
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000321, "type": "SYNC"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.sync import plan_sync


def main():
    slony = SlonyModule(dict(
        node=dict(type="int", required=True),
        confirmers=dict(type="list", elements="int"),
    ))
    params = slony.params
    slony.run(lambda cluster: plan_sync(cluster, params["node"], params["confirmers"],
                                        timeout=params["wait_timeout"]))


if __name__ == "__main__":
    main()
