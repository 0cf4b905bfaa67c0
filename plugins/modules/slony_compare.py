#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_compare
short_description: Compare the replicated rows and sequences of a Slony-I cluster's nodes
version_added: 0.1.0
description:
  - For every replicated table, compares the rows of the set's origin with those of every
    other compared node subscribed to the set - the row count and an md5 checksum of the
    rows' text in key order (the table's Slony key, C(sl_table.tab_idxname)), range by key
    range of I(chunk_size) rows, so that a large table is neither read at once nor locked.
    Returns the tables that differ, with the first key range that differs.
  - Compares the value of every replicated sequence the same way.
  - Gives no false difference while the origin is being written. Each round creates one
    SYNC event on the origin and reads the origin exactly as that SYNC sees it (an exported
    snapshot), while each receiver is read in the snapshot in which it has just applied that
    SYNC (its own C(sl_setsync)); during that short wait (at most 10 seconds) the origin
    creates no other event, so that the receivers stop on the SYNC. A range that differs
    is compared again in a new round before it is reported; a receiver found past the SYNC
    can only prove a range equal.
  - What cannot be decided within I(wait_timeout) (a receiver whose slon is stopped, a copy
    still running) is listed in RV(undecided), with the reason in RV(reasons) and RV(msg).
  - Every read is a READ ONLY transaction at REPEATABLE READ. The only thing written is the
    SYNC event of each round (listed in RV(events)); a SYNC changes no data and no
    configuration, as with M(dany.slony.slony_sync). The module always returns
    C(changed=false).
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Runs in check mode exactly as in normal mode, SYNC events included - a SYNC changes
        nothing that check mode protects, and without it no comparison under writes is
        possible.
  diff_mode:
    support: none
    details:
      - Nothing changes; no diff is returned.
  idempotent:
    details:
      - Always returns C(changed=false); each run creates new SYNC events (RV(events)).
options:
  nodes:
    description:
      - The nodes to compare. Each table and sequence is compared between its set's origin
        and every other node of this list subscribed to the set.
      - Every node of I(admin_conninfo) when not given. The origin of each set is read
        whether listed or not, and must be in I(admin_conninfo).
    type: list
    elements: int
  sets:
    description: Compare only these sets. Every set when not given. An unknown set is an error.
    type: list
    elements: int
  tables:
    description:
      - Compare only these tables, named C(schema.table). A name that is not a replicated
        table of the compared sets is an error.
      - Sequences are filtered by I(sequences) and I(sets) only.
    type: list
    elements: str
  sequences:
    description: Compare the sequences of the compared sets too.
    type: bool
    default: true
  chunk_size:
    description:
      - Rows per key range. The ranges are planned on the origin in key order; each node
        reads one range per query.
    type: int
    default: 10000
  fail_on_difference:
    description:
      - Fail, with a message naming the differing tables and sequences (and the undecided
        ones), unless everything compared is equal. The return values are still returned.
    type: bool
    default: false
notes:
  - I(wait) and I(share_dir) are accepted for C(module_defaults) but have no effect;
    I(wait_timeout) bounds the whole comparison, all rounds included.
  - "Sequences: Slony replicates a sequence's value with every SYNC event, so a receiver
    holds the value the origin had at the last SYNC it applied. A receiver that applied the
    round's SYNC must hold exactly the value recorded with it (C(equal), else, after a
    second round, C(different)). A receiver that never reached a SYNC in time and has a
    lower value is C(behind): not a difference, but not equal either, so it is listed in
    RV(undecided) and makes RV(equal) false."
  - Rows are compared as their text, with the same output settings on every node
    (C(DateStyle) ISO, C(TimeZone) UTC, C(extra_float_digits) 3, C(bytea_output) hex), in the
    order of the key. When the databases' collations differ and a key column has one, the
    key order uses the C(C) collation on every node (correct, but the key index then cannot
    serve the range scans).
  - Each round holds one snapshot per node while its ranges are read (as C(pg_dump) does),
    which keeps VACUUM from removing rows deleted meanwhile.
  - The comparison of one origin's sets takes at most 6 rounds.
seealso:
  - module: dany.slony.slony_sync
  - module: dany.slony.slony_info
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Compare every replicated table and sequence on every node
  dany.slony.slony_compare:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
  register: slony_compare_result

- name: Show what differs
  ansible.builtin.debug:
    var: slony_compare_result.differences
  when: not slony_compare_result.equal

- name: Source against target after a switchover, failing on any difference
  dany.slony.slony_compare:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    nodes: [1, 2]
    chunk_size: 50000
    wait_timeout: 600
    fail_on_difference: true

- name: Two tables of set 1 only, no sequences
  dany.slony.slony_compare:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    sets: [1]
    tables: [public.orders, billing.invoices]
    sequences: false
'''

RETURN = r'''
equal:
  description: True when every compared table and sequence is equal on every compared node
    (nothing different, nothing undecided or behind).
  returned: always
  type: bool
  sample: false
undecided:
  description: Names (C(schema.name)) of the tables and sequences that could not be decided
    within I(wait_timeout), and of the sequences that are C(behind). RV(reasons) says why.
  returned: always
  type: list
  elements: str
  sample: ["public.orders"]
differences:
  description:
    - One entry per differing table or sequence and node.
    - C(kind) is C(table) or C(sequence); C(node) the receiver that differs from C(origin).
    - "For a table: C(first_difference) is the first key range that differs, C(from_key)
      (exclusive; null - from the first key) to C(to_key) (inclusive; null - to the last
      key), each a list of the key columns' values as text, in the order of the C(key)
      columns of RV(tables); C(origin_rows) and C(node_rows) the rows of that range on each side. When the table
      cannot be compared at all on the node (missing, or missing columns), C(first_difference)
      is null and C(reason) says why."
    - For a sequence, C(origin_value) and C(node_value).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "table", "name": "public.orders", "set": 1, "origin": 1, "node": 2,
            "first_difference": {"from_key": ["20000"], "to_key": ["30000"]},
            "origin_rows": 10000, "node_rows": 9999, "reason": null},
           {"kind": "sequence", "name": "public.orders_id_seq", "set": 1, "origin": 1, "node": 2,
            "origin_value": 51234, "node_value": 50000}]
tables:
  description:
    - One entry per compared table, in set and table id order.
    - C(key) are the key columns; C(rows) the rows per node (origin included) in the first
      round's snapshots; C(chunks) the number of key ranges; C(status) C(equal), C(different)
      or C(undecided) (the worst over the receivers); C(nodes) the status per receiver.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "public.orders", "set": 1, "origin": 1, "key": ["id"], "rows": {"1": 52000, "2": 52000},
            "chunks": 6, "status": "equal", "nodes": {"2": "equal"}}]
sequences:
  description:
    - One entry per compared sequence.
    - C(values) are the origin's value recorded with the last SYNC, and each receiver's value
      when it had applied it (or, for a receiver that never did, its value at the end).
    - C(status) is C(equal), C(behind) (the receiver is lower and never reached the SYNC in
      time), C(different) or C(undecided) (the worst over the receivers); C(nodes) per receiver.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "public.invoice_number_seq", "set": 1, "origin": 1, "values": {"1": 1042, "2": 1042},
            "status": "equal", "nodes": {"2": "equal"}}]
reasons:
  description: Why something is undecided - for example a receiver that did not apply the
    round's SYNC in time (with the state of its slon), or a copy not finished yet.
  returned: always
  type: list
  elements: str
  sample: ["timed out after 5s waiting for node 3 to apply SYNC 5000000123 of node 1; behind: node 3 (applied SYNC 5000000101; slon not running)"]
events:
  description: The SYNC events created, one per round and set origin.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000123, "type": "SYNC"}]
msg:
  description: A one-line summary of the comparison.
  returned: always
  type: str
  sample: "compared 4 tables and 1 sequence of cluster shop: all equal"
'''

from ansible_collections.dany.slony.plugins.module_utils.compare import compare, failure_message
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    slony = SlonyModule(dict(
        nodes=dict(type="list", elements="int"),
        sets=dict(type="list", elements="int"),
        tables=dict(type="list", elements="str"),
        sequences=dict(type="bool", default=True),
        chunk_size=dict(type="int", default=10000),
        fail_on_difference=dict(type="bool", default=False),
    ), check_mode_writes=True)
    params = slony.params
    try:
        result = compare(slony.cluster, nodes=params["nodes"], sets=params["sets"], tables=params["tables"],
                         sequences=params["sequences"], chunk_size=params["chunk_size"],
                         timeout=params["wait_timeout"])
    except SlonyError as exc:
        slony.fail(exc, changed=False)  # its SYNC events change nothing
    finally:
        slony.cluster.close()
    if params["fail_on_difference"] and not result["equal"]:
        summary_line = result.pop("msg")
        slony.module.fail_json(msg=slony.redactor.text(failure_message(result)), summary=summary_line,
                               changed=False, **result)
    slony.module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
