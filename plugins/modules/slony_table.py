#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_table
short_description: Add tables to or drop tables from a Slony-I replication set
version_added: 0.1.0
description:
  - Manages the tables of a replication set (slonik C(SET ADD TABLE), C(SET DROP TABLE)).
  - Tables are chosen by name (O(tables)), by regular expression (O(patterns)) and by schema
    (O(schemas)), minus O(exclude). One query on the set's origin resolves them all, whatever
    their number.
  - Everything is checked before anything changes, and every problem is reported in one
    error - a missing table, a view, foreign or partitioned table, a table without primary
    key and without a C(key) in O(tables), a C(key) that is not a unique index on NOT NULL
    columns, a table already in another set, an id given twice or already used, a table of the set with
    another key or id. When there is any, nothing is changed.
  - Table ids not given are allocated from the highest table id found on every reachable
    initialised node of O(admin_conninfo), plus one, in the order of the tables' names.
  - Names are case-sensitive and must be schema-qualified, as Slony compares them
    (C(public.Orders) is the table created as C("Orders")). Parts may be double-quoted.
  - Tables can be added to a set that has subscribers. Slony-I refuses that, so the module
    does it the way Slony's documentation describes - the tables go into a temporary set on
    the origin (the next free set id; its comment names the set it is for), every receiver
    subscribes to it from its own provider, with its own C(forward) setting, and once every
    copy is done the temporary set is merged into the set (slonik C(CREATE SET), C(SET ADD TABLE),
    C(SUBSCRIBE SET), C(MERGE SET)). A run interrupted half-way leaves the temporary set
    behind; the next run with O(state=present) finds it and finishes it.
  - Dropping tables from a subscribed set works directly.
extends_documentation_fragment: [dany.slony.common, dany.slony.set_members, dany.slony.attributes]
options:
  tables:
    description:
      - Tables by name. Each entry is C(schema.name), or a dict with the keys below.
      - C(name) (required) - C(schema.name), case-sensitive; parts may be double-quoted.
      - C(id) - table id, unique over the whole cluster; allocated when not given.
      - C(key) - name of the unique index Slony uses as the table's key (without schema); all
        its columns must be NOT NULL. Needed for a table without primary key; defaults to the
        primary key. For a table already in the set it is compared only when given, and a
        different key is an error, since Slony can only change it by dropping the table from
        the set and adding it again.
      - C(comment) - comment of the table in Slony's catalog, used when the table is added
        (Slony cannot change it later). Defaults to the table's name, as slonik does.
      - Explicit entries are not affected by O(exclude).
    type: list
    elements: raw
  patterns:
    description:
      - Regular expressions (PostgreSQL syntax, like slonik's C(TABLES=)) matched against
        C(schema.name) of every ordinary table. Not anchored - use C(^...$).
      - Partitioned parents are never matched (Slony cannot replicate them); their partitions
        are ordinary tables and are. System schemas, the cluster's schema and C(dany_slony)
        (where M(dany.slony.slony_script) keeps its log) are skipped.
      - Tables found by O(patterns) or O(schemas) get the primary key as key and
        C(replicated table) as comment (slonik's default), unless they are also listed in
        O(tables).
    type: list
    elements: str
notes:
  - A node that subscribes later gets every table of the set with its copy
    (M(dany.slony.slony_subscription)).
seealso:
  - module: dany.slony.slony_set
  - module: dany.slony.slony_sequence
  - module: dany.slony.slony_subscription
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Replicate three tables in set 1 (ids allocated)
  dany.slony.slony_table:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    tables:
      - public.customers
      - public.orders
      - name: public.settings     # no primary key: name the unique index to use
        key: settings_name_key
        id: 100
        comment: Application settings

- name: Every table of schema billing and every public table named like order*, but no tmp_*
  dany.slony.slony_table:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    schemas: [billing]
    patterns: ['^public\.order']
    exclude: ['\.tmp_']

- name: Set 2 holds exactly these tables (others are dropped from it)
  dany.slony.slony_table:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 2
    tables: [public.products, public.prices]
    exclusive: true

- name: Move public.prices from set 2 into set 1 (same origin, same subscribers)
  dany.slony.slony_table:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    tables: [public.prices]
    move: true

- name: Stop replicating a table
  dany.slony.slony_table:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    tables: [public.audit_tmp]
    state: absent
'''

RETURN = r'''
origin:
  description: The origin node of the set, where the changes ran.
  returned: success
  type: int
  sample: 1
before:
  description:
    - The managed tables in the set before the run, sorted by name (with O(exclusive), every
      table of the set).
  returned: always
  type: list
  elements: dict
  sample: [{"id": 1, "name": "public.customers", "key": "customers_pkey", "comment": "public.customers"}]
after:
  description:
    - The managed tables in the set after the run (in check mode, as they would be, with the
      ids that would be allocated).
  returned: always
  type: list
  elements: dict
  sample:
    - {"id": 1, "name": "public.customers", "key": "customers_pkey", "comment": "public.customers"}
    - {"id": 2, "name": "public.orders", "key": "orders_pkey", "comment": "public.orders"}
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".\"setaddtable\"(1, 2, 'public.orders', 'orders_pkey', 'public.orders')"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nset add table (set id = 1, origin = 1, id = 2,
    fully qualified name = 'public.orders', key = 'orders_pkey', comment = 'public.orders');"
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000012, "type": "SYNC"}, {"origin": 1, "seqno": 5000000013, "type": "SET_ADD_TABLE"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.slony_module import set_members_main
from ansible_collections.dany.slony.plugins.module_utils.tables import plan_tables


def main():
    set_members_main("tables", plan_tables)


if __name__ == "__main__":
    main()
