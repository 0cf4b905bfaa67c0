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
  - Tables are chosen by name (I(tables)), by regular expression (I(patterns)) and by schema
    (I(schemas)), minus I(exclude). One query on the set's origin resolves them all, whatever
    their number.
  - Everything is checked before anything changes, and every problem is reported in one
    error - a missing table, a view, foreign or partitioned table, a table without primary
    key and without I(key), a I(key) that is not a unique index on NOT NULL columns, a table
    already in another set, an id given twice or already used, a table of the set with
    another key or id. When there is any, nothing is changed.
  - Table ids not given are allocated from the highest table id found on every reachable
    initialised node of I(admin_conninfo), plus one, in the order of the tables' names.
  - Names are case-sensitive and must be schema-qualified, as Slony compares them
    (C(public.Orders) is the table created as C("Orders")). Parts may be double-quoted.
  - Tables can only be added to a set that nobody subscribes to yet (a Slony-I rule); the
    module then fails before any change. Adding tables live to a subscribed set (a temporary
    set, subscribed like the set, then merged) is planned but not done by this version.
    Dropping tables from a subscribed set works.
author:
  - Dany Slony developers (@dany-slony)
extends_documentation_fragment:
  - dany.slony.common
attributes:
  check_mode:
    support: full
    description: Returns the SQL and slonik it would run, with the ids it would allocate; changes nothing.
  diff_mode:
    support: full
    description: Shows the managed tables (the whole set with I(exclusive)) before and after.
  idempotent:
    support: full
    description: A second run with the same arguments reports C(changed=false).
options:
  set_id:
    description: Id of the set. The set must exist (M(dany.slony.slony_set)).
    type: int
    required: true
  origin:
    description:
      - Origin node of the set, where the tables are added.
      - Defaults to the origin recorded by the first node of I(admin_conninfo) that knows the
        set. When given, it must be the set's real origin; otherwise the module fails.
    type: int
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
      - Explicit entries are not affected by I(exclude).
    type: list
    elements: raw
  patterns:
    description:
      - Regular expressions (PostgreSQL syntax, like slonik's C(TABLES=)) matched against
        C(schema.name) of every ordinary table. Not anchored - use C(^...$).
      - Partitioned parents are never matched (Slony cannot replicate them); their partitions
        are ordinary tables and are. System schemas and the cluster's schema are skipped.
      - Tables found this way get the primary key as key and C(replicated table) as comment
        (slonik's default), unless they are also listed in I(tables).
    type: list
    elements: str
  schemas:
    description:
      - Every ordinary table of these schemas (case-sensitive names). A schema that does not
        exist is an error with I(state=present).
    type: list
    elements: str
  exclude:
    description: Regular expressions removing tables found by I(patterns) or I(schemas).
    type: list
    elements: str
  state:
    description:
      - C(present) adds the tables that are not in the set yet.
      - C(absent) drops from the set those of the tables that are in it (the tables
        themselves stay, no longer replicated). Tables that do not exist or are in another set
        are left alone.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With I(state=present), also drop from the set every table of the set that is not
        chosen by I(tables), I(patterns) and I(schemas).
    type: bool
    default: false
notes:
  - Adds run on the set's origin, each as Slony's C(setAddTable) event after one SYNC, as slonik
    does; with I(wait=true) the module waits until every node has confirmed them.
  - Subscribers get the tables of a set when they subscribe to it
    (M(dany.slony.slony_subscription)).
seealso:
  - module: dany.slony.slony_set
  - module: dany.slony.slony_sequence
  - module: dany.slony.slony_subscription
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
    - The managed tables that were in the set before the run, sorted by name (with
      I(exclusive), every table of the set).
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
  description: Statements executed (in check mode, that would be), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".\"setaddtable\"(1, 2, 'public.orders', 'orders_pkey', 'public.orders')"}]
slonik:
  description: The equivalent slonik script, passwords redacted. Empty when nothing changes.
  returned: always
  type: str
  sample: >-
    cluster name = shop;
    set add table (set id = 1, origin = 1, id = 2, fully qualified name = 'public.orders',
    key = 'orders_pkey', comment = 'public.orders');
events:
  description: Slony events created (origin, seqno, type).
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000012, "type": "SYNC"}, {"origin": 1, "seqno": 5000000013, "type": "SET_ADD_TABLE"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.tables import plan_tables


def main():
    slony = SlonyModule(
        dict(
            set_id=dict(type="int", required=True),
            origin=dict(type="int"),
            tables=dict(type="list", elements="raw"),
            patterns=dict(type="list", elements="str"),
            schemas=dict(type="list", elements="str"),
            exclude=dict(type="list", elements="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            exclusive=dict(type="bool", default=False),
        ),
        required_one_of=[("tables", "patterns", "schemas")],
    )
    params = slony.params
    slony.run(lambda cluster: plan_tables(
        cluster, params["set_id"], origin=params["origin"], tables=params["tables"],
        patterns=params["patterns"], schemas=params["schemas"], exclude=params["exclude"],
        state=params["state"], exclusive=params["exclusive"]))


if __name__ == "__main__":
    main()
