#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_script
short_description: Run DDL on every node of a Slony-I cluster (EXECUTE SCRIPT)
version_added: 0.1.0
description:
  - Runs an SQL script (usually DDL - C(ALTER TABLE), C(CREATE INDEX), ...) through Slony, the
    way slonik's C(EXECUTE SCRIPT) does, so that it is applied on every node at the right
    point of the replication stream - the only safe way to change replicated tables.
  - The tokens C(@CLUSTERNAME@), C(@MODULEVERSION@) and C(@NAMESPACE@) are substituted as
    slonik does. The script is split into statements with slonik's rules (a C(;) outside
    quotes, dollar quotes and comments, and outside parentheses, square brackets and
    braces, ends a statement; text after the last C(;) is a statement too).
  - Every statement goes through Slony's C(ddlCapture), then C(ddlScript_complete) runs, all in
    B(one transaction) on the event node (with C(session_replication_role = local)). If any
    statement fails, the transaction is rolled back, nothing changes on any node, and the
    error names the statement, its line in the script and PostgreSQL's message.
  - Slony creates no event for a script; the nodes apply it when they process the next
    SYNC of the event node. The module therefore creates a SYNC on the event node and, with
    O(wait=true), waits until every node (or every O(only_on) node) has confirmed it. When
    it returns, the script has been applied everywhere.
  - Without O(key), every run applies the script again. Either write the script so that it
    can run twice (C(IF NOT EXISTS), C(IF EXISTS)), or give a O(key).
  - If a statement fails on another node (its objects differ from the event node's), that
    node's slon retries forever and replication to it stalls until the node is fixed by
    hand; check the script on a copy first, and use check mode, which runs it on the event
    node and rolls it back.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Runs every statement on the event node in a transaction that is rolled back
        (waiting at most O(lock_timeout) seconds for each lock), so syntax and planning
        errors are reported with the failing statement; returns the SQL and slonik it would
        run and changes nothing.
      - As in any rolled-back PostgreSQL transaction, values the script takes from existing
        sequences (C(nextval), C(setval)) are not given back.
  diff_mode:
    details:
      - Shows whether the key was applied before and after.
  idempotent:
    support: partial
    details:
      - With O(key), a second run reports C(changed=false) and runs nothing.
      - Without O(key), every run applies the script again and reports C(changed=true).
options:
  sql:
    description:
      - The SQL script, as text.
      - To use a file of the controller, read it with the C(ansible.builtin.file) lookup
        (see the examples).
      - Do not put C(BEGIN), C(COMMIT) or C(ROLLBACK) in it (C(SAVEPOINT) is fine), nor
        statements PostgreSQL cannot run in a transaction (C(VACUUM),
        C(CREATE INDEX CONCURRENTLY)).
      - Exactly one of O(sql) and O(src) is required.
    type: str
  src:
    description:
      - Path of a file holding the SQL script, on the host the module runs on (the
        managed host, often the one the tasks are delegated to), not on the controller.
        Read as UTF-8.
      - Exactly one of O(sql) and O(src) is required.
    type: path
  event_node:
    description:
      - Node the script is run on first, and from which it travels to the others (slonik's
        C(EVENT NODE)).
      - Defaults to the lowest node that is the origin of a set - DDL on a set's tables must
        travel with that origin's data - or, when no set exists, the lowest active node.
        With O(only_on), the default is chosen among the O(only_on) nodes.
      - Give it explicitly when the cluster has sets with different origins and the script
        changes the tables of another origin than the lowest one.
    type: int
  only_on:
    description:
      - Run the script only on these nodes (slonik's C(EXECUTE ONLY ON)); the other nodes
        receive it but skip it.
      - The event node must be one of them (a Slony rule); the module fails before any
        change when O(event_node) is not in the list.
      - Useful for an index that only a reporting replica needs. Do not change replicated
        tables' columns on some nodes only.
    type: list
    elements: int
  key:
    description:
      - A name for this script. When the script is applied, the key is recorded in table
        C(dany_slony.script_log) (created on demand) by statements added to the script
        itself, so the record travels with the DDL and exists on a node exactly when the
        script was applied there.
      - When the key is already recorded on the event node, the module does nothing
        (C(changed=false)); it warns when the recorded script differs from the given one
        (give a changed script a new key), and when the key is not yet recorded on some
        of the nodes the script was meant for.
      - Use names that never repeat, like a migration id (C(0042_add_customer_email)).
      - The table is not in Slony's C(_<cluster>) schema (which Slony owns) and does not
        need to be in a replication set.
    type: str
  lock_timeout:
    description:
      - Check mode only - seconds each statement of the validation on the event node may
        wait for a lock (the statements of a script often take C(ACCESS EXCLUSIVE) locks, and
        a check must not queue behind the application and make the application queue
        behind it). When a lock is not granted in time, the module fails and names the
        sessions holding locks on the relations of that statement.
      - C(0) means no limit of the module's (the server's C(lock_timeout) applies).
    type: int
    default: 5
notes:
  - The admin role runs the script as a superuser, with C(session_replication_role = local),
    on the event node; slon runs it on the other nodes as its own user.
  - DML in a script (say, filling a new column) runs on each node separately; it must
    give the same result everywhere (no C(now), no C(random)).
  - Schema-qualify every name; the search_path of the slon that replays the script may
    differ from yours.
  - The script is returned (C(statements), C(queries), C(slonik)) as it is; only the
    passwords of O(admin_conninfo) are redacted. Use C(no_log) on a task whose script holds
    a secret (C(CREATE ROLE ... PASSWORD)).
seealso:
  - module: dany.slony.slony_table
  - module: dany.slony.slony_subscription
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Add a column and an index on every node
  dany.slony.slony_script:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    key: 0042_customer_email
    sql: |
      alter table public.customers add column email text;
      create index customers_email_idx on public.customers (email);

- name: Apply a migration file of the controller
  dany.slony.slony_script:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    key: "{{ item | basename }}"
    sql: "{{ lookup('ansible.builtin.file', item) }}"
  loop: "{{ query('ansible.builtin.fileglob', 'migrations/*.sql') | sort }}"

- name: An index only the reporting replica (node 3) needs
  dany.slony.slony_script:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    key: 0043_reporting_index
    only_on: [3]
    sql: create index orders_created_idx on public.orders (created_at);

- name: A script file on the host the module runs on
  dany.slony.slony_script:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    src: /srv/migrations/0044.sql
    key: "0044"
    event_node: 2
'''

RETURN = r'''
event_node:
  description: The node the script was (or would be) run on first.
  returned: always
  type: int
  sample: 1
only_on:
  description: The O(only_on) nodes, sorted, or null for every node.
  returned: always
  type: list
  elements: int
  sample: [3]
nodes:
  description: The nodes the script runs on (every active node, or O(only_on)).
  returned: always
  type: list
  elements: int
  sample: [1, 2, 3]
statements:
  description: The statements of the script after token substitution, as split.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Number of the statement, from 1.
      type: int
    line:
      description: Line of the script where the statement's first token is (after the
        comments that precede it, which are kept in C(sql)).
      type: int
    sql:
      description: Text of the statement.
      type: str
  sample: [{"index": 1, "line": 1, "sql": "alter table public.customers add column email text;"}]
checksum:
  description: SHA-256 of the script after token substitution (recorded with O(key)).
  returned: always
  type: str
  sample: 5f0c0d6a1b1e4d1bd7b1f3a8c1c5e1e1b3d0a2a0b9c8d7e6f5a4b3c2d1e0f9a8
key:
  description: The O(key), or null.
  returned: always
  type: str
  sample: 0042_customer_email
missing_on:
  description:
    - When the key was already recorded on the event node, the nodes the script was meant
      for that do not have the key yet (still on its way, slon stopped, or joined later).
  returned: when the key was already applied
  type: list
  elements: int
  sample: []
before:
  description: Whether the key was applied before the run.
  returned: always
  type: dict
  sample: {"key": "0042_customer_email", "applied": false}
after:
  description: The state after the run (in check mode, as it would be).
  returned: always
  type: dict
  sample: {"key": "0042_customer_email", "applied": true, "event_node": 1, "only_on": null,
           "statements": 2, "checksum": "5f0c0d6a..."}
queries:
  description: The statements that changed something (in check mode, that would), with their node.
  returned: always
  type: list
  elements: dict
  sample: [{"node": 1, "sql": "select \"_shop\".ddlcapture('alter table ...;', NULL)"}]
slonik:
  description: The equivalent slonik script, passwords redacted; empty when nothing changes.
  returned: always
  type: str
  sample: "cluster name = shop;\nexecute script (sql = 'alter table ...;', event node = 1);\nsync (id = 1);"
events:
  description: Slony events created - the SYNC that carries the script.
  returned: always
  type: list
  elements: dict
  sample: [{"origin": 1, "seqno": 5000000042, "type": "SYNC"}]
'''

import io

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.script import plan_script
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    slony = SlonyModule(
        dict(
            sql=dict(type="str"),
            src=dict(type="path"),
            event_node=dict(type="int"),
            only_on=dict(type="list", elements="int"),
            key=dict(type="str", no_log=False),
            lock_timeout=dict(type="int", default=5),
        ),
        mutually_exclusive=[("sql", "src")],
        required_one_of=[("sql", "src")],
    )
    params = slony.params
    script = params["sql"]
    if params["src"] is not None:
        try:
            with io.open(params["src"], encoding="utf-8") as handle:
                script = handle.read()
        except (IOError, OSError, UnicodeDecodeError) as exc:
            slony.fail(SlonyError("cannot read src %s: %s" % (params["src"], to_native(exc))))

    def planner(cluster):
        planned = plan_script(
            cluster, script, event_node=params["event_node"], only_on=params["only_on"],
            key=params["key"], validate=slony.check_mode, source=params["src"],
            wait_timeout=params["wait_timeout"] if params["wait"] else None,
            lock_timeout=params["lock_timeout"])
        for warning in planned.extra.pop("warnings", []):
            slony.module.warn(warning)
        return planned

    slony.run(planner)


if __name__ == "__main__":
    main()
