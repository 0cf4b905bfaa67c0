#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_info
short_description: Gather facts about a Slony-I cluster from every node
version_added: 0.1.0
description:
  - Reads the Slony catalog of every node in I(admin_conninfo) and returns the cluster as
    a whole - nodes, paths, listen entries, sets, tables, sequences, subscriptions (with
    whether the receiver has finished copying) - together with replication lag, the state
    of the slon daemons, the places where the nodes' catalogs disagree (drift), and the
    tables and sequences of the application database that are in no set.
  - Each node is read in one read-only transaction with a fixed number of statements,
    whatever the number of objects.
  - A node that cannot be read (unreachable, wrong password, not a node of the cluster,
    not the node its conninfo claims) does not make the module fail; it is listed in
    RV(unreachable_nodes) with the error, and a warning is issued.
  - Nothing is changed, in check mode or not.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Runs in check mode exactly as in normal mode; it only reads.
  diff_mode:
    support: none
    details:
      - Nothing changes; no diff is returned.
  idempotent:
    details:
      - Never changes anything; always returns C(changed=false).
options:
  filter:
    description:
      - Limit the facts to some sections, as M(community.postgresql.postgresql_info) does.
      - The sections are C(nodes), C(paths), C(listens), C(sets), C(tables), C(sequences),
        C(subscriptions), C(lag), C(slons), C(drift) and C(unreplicated).
      - Shell-style wildcards are allowed. A value starting with C(!) excludes the sections
        it matches. Without inclusions every section is included before the exclusions
        are applied; exclusions also apply next to inclusions, so C(['*', '!unreplicated'])
        works.
      - A value that matches no section is an error.
      - Leaving out C(lag), C(slons) and C(drift) saves one statement per node; leaving
        out C(unreplicated) one per set origin.
    type: list
    elements: str
    default: []
notes:
  - I(wait), I(wait_timeout) and I(share_dir) are accepted for C(module_defaults) but
    have no effect; nothing is waited for.
  - Lag is computed on each node for its own events, as Slony's C(sl_status) view does,
    but with outer joins, so that a receiver that never confirmed anything is listed
    too (with C(confirmed) null).
  - >-
    Drift compares what every node applies alike - C(sl_node) (active, failed, comment),
    C(sl_path) (conninfo, connretry), C(sl_set) (origin, comment), C(sl_subscribe)
    (provider, forward) - among all nodes read, and C(sl_table) / C(sl_sequence)
    (id, set, schema, name, key) among the nodes holding the set (its origin and the
    subscribers whose copy has finished). Not compared, because they legitimately differ
    between nodes - C(sub_active), C(set_locked), C(sl_setsync), C(sl_confirm),
    C(sl_event), OIDs, comments of tables and sequences, and C(sl_listen) (derived by
    Slony on each node from paths and subscriptions).
  - Nodes that another node marks as failed are left out of the drift comparison.
  - Configuration events that some node has not processed yet are listed in
    RV(config_in_flight); drift seen meanwhile is flagged C(settling).
  - Unreplicated tables and sequences are looked for on the origin of each set -
    ordinary tables and sequences outside C(pg_catalog), C(information_schema),
    C(pg_toast), temporary schemas, the cluster schema and extensions.
seealso:
  - module: dany.slony.slony_subscription
  - module: dany.slony.slony_table
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Everything about the cluster
  dany.slony.slony_info:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
  register: slony

- name: Fail when a subscriber lags more than 100 events behind
  ansible.builtin.assert:
    that: slony.lag | selectattr('sets') | selectattr('lag_events', 'gt', 100) | list | length == 0
    fail_msg: "replication is behind: {{ slony.lag | selectattr('lag_events', 'gt', 100) }}"

- name: Only lag and slon daemons (cheaper)
  dany.slony.slony_info:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    filter:
      - lag
      - slons

- name: Everything but the list of unreplicated tables
  dany.slony.slony_info:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    filter: "!unreplicated"
'''

RETURN = r'''
cluster_name:
  description: The cluster.
  returned: always
  type: str
  sample: shop
sections:
  description: The sections returned (after I(filter)).
  returned: always
  type: list
  elements: str
  sample: ["lag", "slons"]
unreachable_nodes:
  description: Nodes of I(admin_conninfo) whose catalog could not be read, with the reason
    (passwords redacted).
  returned: always
  type: list
  elements: dict
  sample: [{"node": 3, "error": "cannot connect to node 3 (host=db3 dbname=app user=slony password=********): connection refused"}]
nodes:
  description:
    - Every node in I(admin_conninfo) or in a catalog read, as the node itself records
      it (else as the lowest-numbered node read does; C(source) says which).
    - C(reachable) is null for a node that has no entry in I(admin_conninfo).
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"id": 1, "comment": "origin", "active": true, "failed": false, "in_admin_conninfo": true,
            "reachable": true, "error": null, "source": 1}]
paths:
  description:
    - Paths, as their client node records them (passwords redacted). C(pending) is true
      for Slony's C(<event pending>) placeholder.
    - C(conninfo) is the path's conninfo normalised by libpq's parser (its parameters in
      libpq's order), its password shown as C(********).
    - C(conninfo_verbatim) is the conninfo exactly as stored, byte for byte, but for its
      password, shown as C(password=********) (this is what M(dany.slony.slony_path)
      compares, and what the C(dany.slony.slony_inventory) filter writes back). It is null
      for a pending path, a URI, and a conninfo whose password is not written the way
      libpq's quoting rules write it (for example C(password = 'x')), since it could not be
      rebuilt from the password.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"server": 1, "client": 2, "conninfo": "user=slony password=******** dbname=app host=db1",
            "conninfo_verbatim": "host=db1 dbname=app user=slony password=********",
            "connretry": 10, "pending": false, "source": 2}]
listens:
  description: Listen entries, as the receiving node records them (the ones its slon uses).
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"origin": 1, "provider": 1, "receiver": 2, "source": 2}]
sets:
  description: Sets, as their origin records them, with the number of tables and sequences
    and the subscribing nodes. C(locked) is true during a LOCK SET.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"id": 1, "origin": 1, "comment": "app", "locked": false, "tables": 4, "sequences": 1,
            "subscribers": [2, 3], "source": 1}]
tables:
  description: Replicated tables, as the origin of their set records them.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"id": 1, "set": 1, "schema": "public", "name": "customers", "key": "customers_pkey",
            "comment": "public.customers", "origin": 1, "source": 1}]
sequences:
  description: Replicated sequences, as the origin of their set records them.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"id": 1, "set": 1, "schema": "public", "name": "invoice_number_seq",
            "comment": "public.invoice_number_seq", "origin": 1, "source": 1}]
subscriptions:
  description:
    - Subscriptions; C(provider) and C(forward) as the set's origin records them.
    - C(active), C(complete) and C(last_sync) are as the receiver sees them - C(complete) is
      true once the receiver's own catalog shows the subscription active and synchronised
      (the copy is done); C(last_sync) is the last SYNC of the origin it applied.
      They are null when the receiver could not be read.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"set": 1, "origin": 1, "receiver": 2, "provider": 1, "forward": true, "active": true,
            "complete": true, "last_sync": 5000000123, "source": 1}]
lag:
  description:
    - One entry per (origin, receiver) pair, read on the origin, for every node read and
      every other active node.
    - C(lag_events) is the number of the origin's events the receiver has not confirmed;
      C(lag_seconds) the age of the last event it confirmed (as C(sl_status)'s
      C(st_lag_time); it climbs to slon's C(sync_interval_timeout) between SYNCs of an idle
      origin).
    - C(sets) are the sets of that origin the receiver subscribes to (empty - the lag of
      events only); C(subscriptions_complete) whether the receiver finished copying all of
      them (null when there are none or the receiver could not be read).
    - C(origin_slon_running) / C(receiver_slon_running) as in RV(slons).
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"origin": 1, "receiver": 2, "last_event": 5000000321,
            "last_event_at": "2024-05-01T10:00:02.1+00:00", "confirmed": 5000000320,
            "confirmed_event_at": "2024-05-01T10:00:01.8+00:00", "lag_events": 1,
            "lag_seconds": 0.42, "sets": [1], "subscriptions_complete": true,
            "origin_slon_running": true, "receiver_slon_running": true}]
slons:
  description:
    - The slon daemon of every node in I(admin_conninfo), as seen in the node's database.
    - C(running) is true when the slon's registration in C(sl_nodelock) belongs to a live
      backend (the test FAILOVER uses); null when the node could not be read.
    - C(components) are the slon threads of C(sl_components), with C(age_seconds) the time
      since their current activity began; C(last_activity_seconds) is the smallest of those
      ages, a heartbeat (slon records it with a precision of one second). C(sl_components)
      keeps the rows of a stopped slon, so C(running) is the answer to "is it up".
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"node": 1, "running": true, "backend_pid": 4242, "last_activity_seconds": 0.2,
            "error": null, "components": [{"actor": "local_sync", "pid": 4240, "node": 1,
                                           "connection_pid": 4245, "activity": "thread main loop",
                                           "started_at": "2024-05-01T10:00:02+00:00",
                                           "event": null, "event_type": "n/a",
                                           "age_seconds": 0.2}]}]
drift:
  description:
    - Disagreements between the catalogs of the nodes read (see the notes for what is
      compared). Empty when they agree.
    - C(kind) is one of C(node), C(path), C(set), C(subscription), C(table), C(sequence);
      C(id) the object (C(server->client) for paths, C(set:receiver) for subscriptions);
      C(missing_on) the nodes lacking it; C(values) what each compared node holds (null -
      nothing); C(settling) true when configuration events are still being processed.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"kind": "path", "id": "2->3", "missing_on": [1], "settling": false,
            "message": "path 2 -> 3: missing on node 1; present on nodes 2, 3",
            "values": [{"node": 1, "value": null},
                       {"node": 2, "value": {"conninfo": "'host=db2 ...'", "connretry": 10}}]}]
config_in_flight:
  description: The last configuration event of each node that some other node has not
    processed yet.
  returned: when the drift section is selected
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000042, "type": "STORE_PATH",
            "at": "2024-05-01T10:00:02+00:00", "not_processed_by": [3]}]
compared_nodes:
  description: The nodes whose catalogs were compared for drift.
  returned: when the drift section is selected
  type: list
  elements: int
  sample: [1, 2, 3]
unreplicated:
  description:
    - Tables and sequences of the application database in no set, found on each set origin
      (C(node)).
    - For a table, C(key) is its primary key or a unique index on NOT NULL columns that
      Slony could use (null - the table cannot be replicated as it is), C(partition) whether
      it is a partition. For a sequence, C(owned_by) is the column owning it, if any.
  returned: when the section is selected
  type: list
  elements: dict
  sample: [{"node": 1, "schema": "public", "name": "audit_log", "kind": "table", "key": null,
            "partition": false},
           {"node": 1, "schema": "public", "name": "customers_id_seq", "kind": "sequence",
            "owned_by": "public.customers.id"}]
'''

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.info import gather, select_sections
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    slony = SlonyModule(dict(
        filter=dict(type="list", elements="str", default=[]),
    ))
    try:
        sections = select_sections(slony.params["filter"])
        facts = gather(slony.cluster, sections)
    except SlonyError as exc:
        slony.fail(exc)
    finally:
        slony.cluster.close()
    for entry in facts["unreachable_nodes"]:
        slony.module.warn("node %d could not be read: %s" % (entry["node"], entry["error"]))
    slony.module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
