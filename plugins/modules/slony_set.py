#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_set
short_description: Create, drop, merge, lock or unlock a Slony-I replication set
version_added: 0.1.0
description:
  - Manages a replication set (slonik C(CREATE SET), C(DROP SET), C(MERGE SET), C(LOCK SET),
    C(UNLOCK SET)).
  - An existing set whose origin differs from O(origin) is an error that points to
    M(dany.slony.slony_switchover); the module never moves a set silently.
  - A changed O(comment) converges on every node in O(admin_conninfo) that knows the set
    (Slony has no event for it).
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
options:
  id:
    description: Id of the set.
    type: int
    required: true
  origin:
    description: Node where the set's tables are written (the set's origin).
    type: int
    required: true
  comment:
    description:
      - Comment of the set. Slony's default comment is used for a new set when not given;
        an existing set's comment is left alone when not given.
    type: str
  state:
    description:
      - C(absent) drops the set; its tables stay, but are no longer replicated.
    type: str
    choices: [present, absent]
    default: present
  locked:
    description:
      - C(true) locks the set on its origin for a maintenance window (slonik C(LOCK SET)) - the
        tables of the set refuse every write on the origin - and returns once every transaction
        that was running when the lock was taken has ended, as slonik waits. That wait is bounded
        by O(wait_timeout); on timeout the set is unlocked again and the error names the
        backends still running.
      - C(false) unlocks it (C(UNLOCK SET)); not given, the lock is left as it is.
      - Only for an existing set and O(state=present).
    type: bool
  merge_into:
    description:
      - With O(state=absent), the set's tables and sequences go into set O(merge_into) instead
        of out of replication (slonik C(MERGE SET)); the set itself is gone afterwards.
      - Slony merges two sets only when they have the same origin and the same subscribers;
        anything else is refused, naming the difference, with nothing changed. The merge
        first waits, whatever O(wait), until no subscription of either set is in progress.
      - A set already gone is left alone (the task is idempotent); one that never existed
        while O(merge_into) does not exist either is an error.
    type: int
seealso:
  - module: dany.slony.slony_table
  - module: dany.slony.slony_subscription
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Create set 1 on node 1
  dany.slony.slony_set:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 1
    origin: 1
    comment: Orders and customers

- name: Lock set 1 for a maintenance window (writes to its tables are refused)
  dany.slony.slony_set:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 1
    origin: 1
    locked: true
    wait_timeout: 60

- name: Unlock it again
  dany.slony.slony_set:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 1
    origin: 1
    locked: false

- name: Merge set 2 into set 1 (same origin and subscribers), e.g. after subscribing new tables
  dany.slony.slony_set:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 2
    origin: 1
    state: absent
    merge_into: 1

- name: Drop set 2
  dany.slony.slony_set:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    id: 2
    origin: 1
    state: absent
'''

RETURN = r'''
before:
  description: The set before the run (C(state=absent) when it did not exist).
  returned: always
  type: dict
  sample: {"id": 1, "state": "absent"}
after:
  description: The set after the run (in check mode, as it would be); C(locked) is true while
    the set is locked (LOCK SET) on its origin.
  returned: always
  type: dict
  sample: {"id": 1, "origin": 1, "comment": "Orders and customers", "locked": false}

queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".storeset(1, 'Orders and customers')"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\ncreate set (id = 1, origin = 1, comment = 'Orders and customers');"
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000009, "type": "STORE_SET"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.sets import plan_set
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    slony = SlonyModule(dict(
        id=dict(type="int", required=True),
        origin=dict(type="int", required=True),
        comment=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        locked=dict(type="bool"),
        merge_into=dict(type="int"),
    ), mutually_exclusive=[("locked", "merge_into"), ("comment", "merge_into")])
    params = slony.params
    if params["locked"] is not None and params["state"] == "absent":
        slony.fail("locked: only with state=present (a set that is dropped has no lock)")
    slony.run(lambda cluster: plan_set(cluster, params["id"], params["origin"],
                                       params["comment"], params["state"], params["locked"],
                                       params["merge_into"]))


if __name__ == "__main__":
    main()
