#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_sequence
short_description: Add sequences to or drop sequences from a Slony-I replication set
version_added: 0.1.0
description:
  - Manages the sequences of a replication set (slonik C(SET ADD SEQUENCE),
    C(SET DROP SEQUENCE)), the same way M(dany.slony.slony_table) manages tables.
  - Sequences are chosen by name (I(sequences)), by regular expression (I(patterns)) and by
    schema (I(schemas)), minus I(exclude). One query on the set's origin resolves them all.
  - Everything is checked before anything changes, and every problem is reported in one
    error - a missing sequence, a name that is not a sequence, a sequence already in another
    set, an id given twice or already used. When there is any, nothing is changed.
  - Sequence ids (a separate id space from table ids) not given are allocated from the
    highest sequence id found on every reachable initialised node of I(admin_conninfo), plus
    one, in the order of the sequences' names.
  - Names are case-sensitive and must be schema-qualified; parts may be double-quoted.
  - Sequences can only be added to a set that nobody subscribes to yet (a Slony-I rule); the
    module then fails before any change. Adding them live to a subscribed set is planned but
    not done by this version. Dropping sequences from a subscribed set works.
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
    description: Shows the managed sequences (the whole set with I(exclusive)) before and after.
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
      - Origin node of the set, where the sequences are added.
      - Defaults to the origin recorded by the first node of I(admin_conninfo) that knows the
        set. When given, it must be the set's real origin; otherwise the module fails.
    type: int
  sequences:
    description:
      - Sequences by name. Each entry is C(schema.name), or a dict with the keys below.
      - C(name) (required) - C(schema.name), case-sensitive; parts may be double-quoted.
      - C(id) - sequence id, unique over the whole cluster; allocated when not given.
      - C(comment) - comment of the sequence in Slony's catalog, used when it is added (Slony
        cannot change it later). Defaults to the sequence's name, as slonik does.
      - Explicit entries are not affected by I(exclude).
    type: list
    elements: raw
  patterns:
    description:
      - Regular expressions (PostgreSQL syntax, like slonik's C(SEQUENCES=)) matched against
        C(schema.name) of every sequence. Not anchored - use C(^...$).
      - System schemas and the cluster's schema are skipped. Sequences found this way get
        C(replicated sequence) as comment (slonik's default), unless also listed in
        I(sequences).
    type: list
    elements: str
  schemas:
    description:
      - Every sequence of these schemas (case-sensitive names). A schema that does not exist
        is an error with I(state=present).
    type: list
    elements: str
  exclude:
    description: Regular expressions removing sequences found by I(patterns) or I(schemas).
    type: list
    elements: str
  state:
    description:
      - C(present) adds the sequences that are not in the set yet.
      - C(absent) drops from the set those of the sequences that are in it. Sequences that do
        not exist or are in another set are left alone.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With I(state=present), also drop from the set every sequence of the set that is not
        chosen by I(sequences), I(patterns) and I(schemas).
    type: bool
    default: false
notes:
  - Adds run on the set's origin, each as Slony's C(setAddSequence) event after one SYNC, as
    slonik does; with I(wait=true) the module waits until every node has confirmed them.
seealso:
  - module: dany.slony.slony_table
  - module: dany.slony.slony_set
'''

EXAMPLES = r'''
- name: Replicate two sequences in set 1
  dany.slony.slony_sequence:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    sequences:
      - public.invoice_number_seq
      - name: public.customers_id_seq
        id: 10
        comment: Customer ids

- name: Every sequence of schemas public and billing, except the scratch ones
  dany.slony.slony_sequence:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    schemas: [public, billing]
    exclude: ['scratch']

- name: Stop replicating a sequence
  dany.slony.slony_sequence:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    set_id: 1
    sequences: [public.old_seq]
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
    - The managed sequences that were in the set before the run, sorted by name (with
      I(exclusive), every sequence of the set).
  returned: always
  type: list
  elements: dict
  sample: []
after:
  description:
    - The managed sequences in the set after the run (in check mode, as they would be, with
      the ids that would be allocated).
  returned: always
  type: list
  elements: dict
  sample: [{"id": 1, "name": "public.invoice_number_seq", "comment": "public.invoice_number_seq"}]
queries:
  description: Statements executed (in check mode, that would be), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".\"setaddsequence\"(1, 1, 'public.invoice_number_seq', 'public.invoice_number_seq')"}]
slonik:
  description: The equivalent slonik script, passwords redacted. Empty when nothing changes.
  returned: always
  type: str
  sample: >-
    cluster name = shop;
    set add sequence (set id = 1, origin = 1, id = 1,
    fully qualified name = 'public.invoice_number_seq', comment = 'public.invoice_number_seq');
events:
  description: Slony events created (origin, seqno, type).
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000020, "type": "SET_ADD_SEQUENCE"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule
from ansible_collections.dany.slony.plugins.module_utils.tables import plan_sequences


def main():
    slony = SlonyModule(
        dict(
            set_id=dict(type="int", required=True),
            origin=dict(type="int"),
            sequences=dict(type="list", elements="raw"),
            patterns=dict(type="list", elements="str"),
            schemas=dict(type="list", elements="str"),
            exclude=dict(type="list", elements="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            exclusive=dict(type="bool", default=False),
        ),
        required_one_of=[("sequences", "patterns", "schemas")],
    )
    params = slony.params
    slony.run(lambda cluster: plan_sequences(
        cluster, params["set_id"], origin=params["origin"], sequences=params["sequences"],
        patterns=params["patterns"], schemas=params["schemas"], exclude=params["exclude"],
        state=params["state"], exclusive=params["exclusive"]))


if __name__ == "__main__":
    main()
