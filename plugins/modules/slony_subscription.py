#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_subscription
short_description: Subscribe a node to a Slony-I set, change its provider, or unsubscribe it
version_added: 0.1.0
description:
  - Makes O(receiver) a subscriber of set O(set_id), fed by O(provider) (slonik C(SUBSCRIBE SET)).
  - A different O(provider) on an existing subscription re-subscribes the receiver
    (slonik C(RESUBSCRIBE NODE)); Slony moves every set of the same origin that the receiver
    subscribes to along with it.
  - A different O(forward) on an existing subscription is changed in place.
  - With O(wait=true) the module returns only when the receiver has finished copying the set
    (its own catalog shows the subscription active and synchronised), which also makes a
    re-run after an interrupted subscription wait for it instead of subscribing again.
  - With O(state=absent) the receiver is unsubscribed (C(UNSUBSCRIBE SET)); its data stays,
    its replication triggers are removed.
  - With O(receivers), several receivers of the set in one task. Providers are subscribed
    before the nodes they feed; every subscription is submitted before the module waits, so
    the copies run at the same time (as after one slonik script of C(SUBSCRIBE SET)s).
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
options:
  set_id:
    description: The set to subscribe to. Its origin is found in the catalog.
    type: int
    required: true
  receiver:
    description:
      - The subscribing node.
      - Exactly one of O(receiver) and O(receivers) is required.
    type: int
  receivers:
    description:
      - Several subscribing nodes of O(set_id) at once, instead of O(receiver).
      - Each entry takes its own O(provider), O(forward) and O(omit_copy); the module-level
        options of the same names are the defaults. O(state) applies to every entry.
    type: list
    elements: dict
    suboptions:
      receiver:
        description: The subscribing node.
        type: int
        required: true
      provider:
        description: As the module's O(provider).
        type: int
      forward:
        description: As the module's O(forward).
        type: bool
      omit_copy:
        description: As the module's O(omit_copy).
        type: bool
  provider:
    description:
      - The node the receiver copies from; the set's origin when not given.
      - A provider other than the origin must itself subscribe to the set with
        O(forward=true); the module waits until that provider has the data.
    type: int
  forward:
    description:
      - Whether the receiver keeps the log data so that it can feed other nodes and be a
        failover target. Slonik's default is C(no); this module's is C(true), which is what
        switchover and failover need.
    type: bool
    default: true
  omit_copy:
    description:
      - Do not copy the data; the receiver's tables are assumed to hold the same data already
        (for example a restored copy). Only used when the subscription is created.
    type: bool
    default: false
  state:
    description: Whether the subscription should exist.
    type: str
    choices: [present, absent]
    default: present
notes:
  - The receiver needs a path to the provider (M(dany.slony.slony_path)) and running slon
    daemons; the copy itself is done by the receiver's slon.
  - The module waits for each copy, at most O(wait_timeout). slon starts a copy from the
    set's origin only once every transaction on the origin's PostgreSQL server (any
    database) that is older than the subscription has ended; when such transactions hold
    the copy back past O(wait_timeout), the error names them (pid, database, user,
    application, age).
seealso:
  - module: dany.slony.slony_set
  - module: dany.slony.slony_path
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Subscribe node 2 to set 1 from the origin
  dany.slony.slony_subscription:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    receiver: 2

- name: Cascade - node 3 copies from node 2
  dany.slony.slony_subscription:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    receiver: 3
    provider: 2

- name: Subscribe nodes 2 and 3 (cascaded from 2) and 4, waiting once for every copy
  dany.slony.slony_subscription:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    receivers:
      - receiver: 2
      - receiver: 3
        provider: 2
      - receiver: 4

- name: Unsubscribe node 3
  dany.slony.slony_subscription:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    receiver: 3
    state: absent
'''

RETURN = r'''
before:
  description:
    - The subscription before the run (C(state=absent) when there was none).
    - With O(receivers), a list of these, in the order of O(receivers).
  returned: always
  type: raw
  sample: {"set": 1, "receiver": 2, "state": "absent"}
after:
  description:
    - The subscription after the run (in check mode, as it would be).
    - With O(receivers), a list of these, in the order of O(receivers).
  returned: always
  type: raw
  sample: {"set": 1, "receiver": 2, "provider": 1, "forward": true, "state": "present", "complete": true}
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".subscribeset(1, 1, 2, true, false)"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nsubscribe set (id = 1, provider = 1, receiver = 2, forward = yes, omit copy = no);"
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000011, "type": "SUBSCRIBE_SET"}, {"origin": 1, "seqno": 5000000012, "type": "ENABLE_SUBSCRIPTION"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.subscriptions import (
    plan_subscription, plan_subscriptions)


def main():
    slony = SlonyModule(dict(
        set_id=dict(type="int", required=True),
        receiver=dict(type="int"),
        receivers=dict(type="list", elements="dict", options=dict(
            receiver=dict(type="int", required=True),
            provider=dict(type="int"),
            forward=dict(type="bool"),
            omit_copy=dict(type="bool"),
        )),
        provider=dict(type="int"),
        forward=dict(type="bool", default=True),
        omit_copy=dict(type="bool", default=False),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ), mutually_exclusive=[("receiver", "receivers")],
        required_one_of=[("receiver", "receivers")])
    params = slony.params
    if params["receivers"] is None:
        slony.run(lambda cluster: plan_subscription(
            cluster, params["set_id"], params["receiver"], params["provider"],
            params["forward"], params["omit_copy"], params["state"]))
        return
    entries = []
    for entry in params["receivers"]:
        merged = dict((key, params[key] if entry.get(key) is None else entry[key])
                      for key in ("provider", "forward", "omit_copy"))
        merged["receiver"] = entry["receiver"]
        entries.append(merged)
    slony.run(lambda cluster: plan_subscriptions(
        cluster, params["set_id"], entries, params["state"]))


if __name__ == "__main__":
    main()
