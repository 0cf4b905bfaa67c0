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
  - Sequences are chosen by name (O(sequences)), by regular expression (O(patterns)) and by
    schema (O(schemas)), minus O(exclude). One query on the set's origin resolves them all.
  - Everything is checked before anything changes, and every problem is reported in one
    error - a missing sequence, a name that is not a sequence, a sequence already in another
    set, an id given twice or already used. When there is any, nothing is changed.
  - Sequence ids (a separate id space from table ids) not given are allocated from the
    highest sequence id found on every reachable initialised node of O(admin_conninfo), plus
    one, in the order of the sequences' names.
  - Names are case-sensitive and must be schema-qualified; parts may be double-quoted.
  - Sequences can be added to a set that has subscribers, the same way as tables (see
    M(dany.slony.slony_table)) - through a temporary set that every receiver subscribes to
    and that is then merged into the set; an interrupted run is finished by the next one.
  - Dropping sequences from a subscribed set works directly.
extends_documentation_fragment: [dany.slony.common, dany.slony.set_members, dany.slony.attributes]
options:
  sequences:
    description:
      - Sequences by name. Each entry is C(schema.name), or a dict with the keys below.
      - C(name) (required) - C(schema.name), case-sensitive; parts may be double-quoted.
      - C(id) - sequence id, unique over the whole cluster; allocated when not given.
      - C(comment) - comment of the sequence in Slony's catalog, used when it is added (Slony
        cannot change it later). Defaults to the sequence's name, as slonik does.
      - Explicit entries are not affected by O(exclude).
    type: list
    elements: raw
  patterns:
    description:
      - Regular expressions (PostgreSQL syntax, like slonik's C(SEQUENCES=)) matched against
        C(schema.name) of every sequence. Not anchored - use C(^...$).
      - System schemas, the cluster's schema and C(dany_slony) (where
        M(dany.slony.slony_script) keeps its log) are skipped.
      - Sequences found by O(patterns) or O(schemas) get C(replicated sequence) as comment
        (slonik's default), unless also listed in O(sequences).
    type: list
    elements: str
seealso:
  - module: dany.slony.slony_table
  - module: dany.slony.slony_set
author:
  - Dany Slony developers (@dany-slony)
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
    - The managed sequences in the set before the run, sorted by name (with O(exclusive),
      every sequence of the set).
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
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".\"setaddsequence\"(1, 1, 'public.invoice_number_seq', 'public.invoice_number_seq')"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nset add sequence (set id = 1, origin = 1, id = 1,
    fully qualified name = 'public.invoice_number_seq', comment = 'public.invoice_number_seq');"
events:
  description: The Slony events created (C(origin), C(seqno), C(type)); empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000020, "type": "SET_ADD_SEQUENCE"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.slony_module import set_members_main
from ansible_collections.dany.slony.plugins.module_utils.tables import plan_sequences


def main():
    set_members_main("sequences", plan_sequences)


if __name__ == "__main__":
    main()
