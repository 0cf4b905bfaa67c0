# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: slony_inventory
short_description: Turn the facts of a running Slony-I cluster into an inventory for the cluster role
version_added: 0.1.0
author:
  - Dany Slony developers (@dany-slony)
description:
  - Takes what M(dany.slony.slony_info) returns about a cluster (built by hand with slonik,
    for instance) and returns an inventory in the shape of the collection's
    C(inventory/lab.yml), with which C(playbooks/site.yml) (role C(dany.slony.cluster)) has
    nothing to change. C(playbooks/adopt.yml) writes it to a file.
  - Every node becomes a host of group C(slony_nodes) with C(slony_node_id) and
    C(slony_node_comment). Its connection is the conninfo the other nodes' paths use to
    reach it - as C(slony_db_host), C(slony_db_port), C(slony_db_name) and C(slony_db_user)
    when the role rebuilds it byte for byte from those parts, else as a whole
    C(slony_conninfo). Values every node shares are group variables. A node that copies
    its sets from another node than their origin gets C(slony_provider); a set it copies
    from yet another node gets a C(providers) map (receiver -> provider).
  - The paths are the role's default full mesh when they are one (every client uses the
    same conninfo for a server, one connretry); otherwise the inventory sets
    C(cluster_paths) to the explicit list of paths (and C(cluster_path_connretry) when the
    connretry is not 10).
  - The sets (C(slony_sets)) list their tables with their ids and keys, their sequences with
    their ids, their C(subscribers) and their C(forward) flag (a map receiver -> flag when the
    receivers of a set differ, as slonik scripts that subscribe leaves with C(forward = no) do).
  - >-
    Passwords are never written. A password in a path's conninfo becomes a reference to the
    variable C(slony_db_password), itself set to C({{ <password_variable> }}); define that
    variable in a vault. A conninfo that needs the password back (C(slony_conninfo), a
    path's C(conninfo)) holds C({{ {'password': slony_db_password} | dany.slony.conninfo }})
    in its place, which renders the password the way libpq's quoting rules write it.
  - Catalog strings holding Jinja delimiters (a comment with C({{), for instance) are
    wrapped in C({% raw %}) so that they render to themselves.
  - What the role cannot express as it is - a locked set, unreadable or failed nodes, drift
    between the nodes' catalogs - is written the way the role would see it and listed in
    RV(_value.warnings).
options:
  _input:
    description:
      - The result of M(dany.slony.slony_info) (registered), with at least the sections
        C(nodes), C(paths), C(sets), C(tables), C(sequences) and C(subscriptions); with
        C(drift) and the unreachable nodes, their problems become warnings.
    type: dict
    required: true
  password_variable:
    description: The variable that C(slony_db_password) refers to, when a conninfo has a password.
    type: str
    default: vault_slony_db_password
  host_names:
    description:
      - Inventory host name of some or all nodes, node id -> name.
      - By default a node is named after the host of its conninfo when those differ from
        node to node (and are not loopback addresses), else C(node<id>).
    type: dict
    default: {}
  node_vars:
    description: Variables added to the vars of group C(slony_nodes), for example C(ansible_connection) or slon settings.
    type: dict
    default: {}
  admin_conninfo:
    description:
      - Node id -> admin conninfo (as the modules' C(admin_conninfo)), used only for a node
        that is the server of no path (a cluster of one node). Its password is masked like
        the paths' ones.
    type: dict
    default: {}
  localhost:
    description: Add host C(localhost) (local connection), which runs the cluster tasks of the role.
    type: bool
    default: true
requirements:
  - psycopg2 and PyYAML on the controller.
seealso:
  - module: dany.slony.slony_info
'''

EXAMPLES = r'''
- name: Read the cluster
  dany.slony.slony_info:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    filter: [nodes, paths, sets, tables, sequences, subscriptions, drift]
  register: slony_adopt_info_result

- name: Write it as an inventory for playbooks/site.yml
  ansible.builtin.copy:
    content: "{{ (slony_adopt_info_result | dany.slony.slony_inventory(password_variable='vault_shop_password')).text }}"
    dest: inventory/shop.yml
    mode: "0640"

- name: Show what the cluster role could not express
  ansible.builtin.debug:
    msg: "{{ (slony_adopt_info_result | dany.slony.slony_inventory).warnings }}"
'''

RETURN = r'''
_value:
  description: The inventory and what goes with it.
  type: dict
  contains:
    inventory:
      description:
        - The inventory, a dict in the shape of C(inventory/lab.yml) - C(all.vars) with
          C(slony_cluster_name), C(slony_sets) and, when the paths are no full mesh,
          C(cluster_paths); C(all.hosts.localhost); C(all.children.slony_nodes) with the
          node hosts and their group vars.
      type: dict
      sample:
        all:
          vars:
            slony_cluster_name: shop
            slony_sets:
              - {id: 1, origin: 10, comment: shop tables, subscribers: [20, 30], forward: true,
                 tables: [{name: public.customers, id: 5, key: customers_pkey}],
                 sequences: [{name: public.invoice_number_seq, id: 4}]}
          hosts:
            localhost: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
          children:
            slony_nodes:
              hosts:
                db1: {slony_node_id: 10, slony_node_comment: origin, slony_db_host: db1}
                db2: {slony_node_id: 20, slony_node_comment: replica, slony_db_host: db2}
                db3: {slony_node_id: 30, slony_node_comment: cascade, slony_db_host: db3, slony_provider: 20}
              vars: {slony_db_name: shop, slony_db_user: slony, slony_db_password: "{{ vault_slony_db_password }}"}
    text:
      description: The inventory as the text of a YAML file, with a comment header that says where
        the passwords are and lists the warnings. The same facts always give the same text.
      type: str
    warnings:
      description: What the cluster role cannot express as the cluster is (site.yml would change it), and
        the nodes that could not be read.
      type: list
      elements: str
      sample:
        - >-
          set 2 is locked (a LOCK SET or MOVE SET in progress): adopt the cluster again once
          it is done
    variables:
      description: The variables the inventory refers to and that you define (in a vault) - I(password_variable) when a conninfo has a password.
      type: list
      elements: str
      sample: [vault_slony_db_password]
'''

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    Mapping = dict

from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import wrap_var

try:
    from ansible_collections.dany.slony.plugins.module_utils.adopt import adopt
    from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
    from ansible_collections.dany.slony.plugins.module_utils.pg import HAS_PSYCOPG2
except ImportError:  # pragma: no cover - the collection is always importable in a run
    HAS_PSYCOPG2 = False


def slony_inventory(facts, password_variable="vault_slony_db_password", host_names=None,
                    node_vars=None, admin_conninfo=None, localhost=True):
    if not HAS_PSYCOPG2:
        raise AnsibleFilterError("the dany.slony.slony_inventory filter needs psycopg2 on the controller")
    if not isinstance(facts, Mapping):
        raise AnsibleFilterError("dany.slony.slony_inventory expects the result of dany.slony.slony_info")
    try:
        adoption = adopt(dict(facts), password_variable=password_variable, host_names=host_names,
                         node_vars=node_vars, admin_conninfo=admin_conninfo, localhost=localhost)
    except SlonyError as exc:
        raise AnsibleFilterError("dany.slony.slony_inventory: %s" % exc)
    # The inventory holds templates ({{ vault_slony_db_password }}) meant for the file:
    # never evaluated here.
    return wrap_var(adoption)


class FilterModule(object):
    def filters(self):
        return {"slony_inventory": slony_inventory}
