#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_path
short_description: Store or drop Slony-I communication paths
version_added: 0.1.0
description:
  - Manages the paths a node's slon daemon uses to reach other nodes (slonik C(STORE PATH),
    C(DROP PATH)) - one path with O(server), O(client) and O(conninfo), or many with O(paths).
  - A path is stored on its client node. A changed O(conninfo) or O(connretry) converges.
  - Each client's catalog is read once, whatever the number of paths.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  diff_mode:
    details:
      - Shows the managed paths before and after (conninfo passwords redacted).
options:
  server:
    description:
      - Node the path leads to (the node whose database the conninfo reaches).
      - Required unless O(paths) is given.
    type: int
  client:
    description:
      - Node whose slon uses the path.
      - Required unless O(paths) is given.
    type: int
  conninfo:
    description:
      - libpq conninfo the client's slon uses to reach the server. Required when
        O(state=present).
      - Prefer one without a password, the password in the client slon's passfile (role
        P(dany.slony.slon#role), C(slon_passfile_conninfos); filter
        P(dany.slony.conninfo#filter) with C(password=false)), because C(sl_path) is readable
        on every node and slon writes the conninfos it connects with into its log.
    type: str
  connretry:
    description: Seconds the client's slon waits before retrying a failed connection.
    type: int
    default: 10
  state:
    description: Whether the path should exist.
    type: str
    choices: [present, absent]
    default: present
  paths:
    description:
      - Several paths at once, each with the options above. Mutually exclusive with
        O(server), O(client), O(conninfo).
    type: list
    elements: dict
    suboptions:
      server:
        description: Node the path leads to.
        type: int
        required: true
      client:
        description: Node whose slon uses the path.
        type: int
        required: true
      conninfo:
        description: libpq conninfo; required when O(state=present).
        type: str
      connretry:
        description: Retry interval in seconds.
        type: int
        default: 10
      state:
        description: Whether this path should exist.
        type: str
        choices: [present, absent]
        default: present
notes:
  - Events travel only once paths exist in both directions, so store a pair in one task
    (O(paths)); with O(wait=true) the module then waits until every node has confirmed them,
    which needs the slon daemons running.
seealso:
  - module: dany.slony.slony_node
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Full mesh between nodes 1 and 2
  dany.slony.slony_path:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    paths:
      - {server: 1, client: 2, conninfo: "host=db1 dbname=shop user=slony"}
      - {server: 2, client: 1, conninfo: "host=db2 dbname=shop user=slony"}

- name: Change the retry interval of one path
  dany.slony.slony_path:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    server: 1
    client: 2
    conninfo: "host=db1 dbname=shop user=slony"
    connretry: 30

- name: Drop a path
  dany.slony.slony_path:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    server: 3
    client: 1
    state: absent
'''

RETURN = r'''
before:
  description: The managed paths before the run (conninfo redacted; C(state=absent) when missing).
  returned: always
  type: list
  elements: dict
  sample: [{"server": 1, "client": 2, "state": "absent"}]
after:
  description: The managed paths after the run (in check mode, as they would be).
  returned: always
  type: list
  elements: dict
  sample: [{"server": 1, "client": 2, "conninfo": "host=db1 dbname=shop user=slony", "connretry": 10}]
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 2, "sql": "select \"_shop\".storepath(1, 2, 'host=db1 dbname=shop user=slony', 10)"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nstore path (server = 1, client = 2, conninfo = 'host=db1 dbname=shop user=slony', connretry = 10);"
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 2, "seqno": 5000000003, "type": "STORE_PATH"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.paths import plan_paths
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    path_spec = dict(
        server=dict(type="int", required=True),
        client=dict(type="int", required=True),
        conninfo=dict(type="str", no_log=True),
        connretry=dict(type="int", default=10),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    # The options of one path, at the top level too (where server and client are
    # required only without paths).
    spec = dict((key, dict((k, v) for k, v in value.items() if k != "required"))
                for key, value in path_spec.items())
    spec["paths"] = dict(type="list", elements="dict", options=path_spec)
    slony = SlonyModule(
        spec,
        mutually_exclusive=[("paths", "server"), ("paths", "client"), ("paths", "conninfo")],
        required_one_of=[("paths", "server")],
        required_together=[("server", "client")],
    )
    params = slony.params
    if params["paths"] is not None:
        paths = params["paths"]
    else:
        paths = [dict((k, params[k]) for k in path_spec)]
    for entry in paths:
        slony.add_secrets(entry.get("conninfo"))
    slony.run(lambda cluster: plan_paths(cluster, paths))


if __name__ == "__main__":
    main()
