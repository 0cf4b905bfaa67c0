#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_logship
short_description: Feed an offline database from a Slony-I subscriber's log-shipping archive files
version_added: 0.1.0
description:
  - Slony-I log shipping. A subscriber's slon run with an archive directory (slon's
    C(archive_dir) setting, C(slon -a); role C(dany.slony.slon) with
    C(archive_dir) in C(slon_options)) writes one SQL file for every event it applies,
    named C(slony1_log_<node>_<counter>.sql) after the subscriber's archive counter. This
    module applies those files to an offline database, a plain PostgreSQL database that
    is not a Slony node (no slon, no C(sl_node), no path to the cluster).
  - When the offline database is not initialised yet (it has no C(_<cluster>.sl_archive_tracking))
    and O(initialize=true), it is first initialised from O(node), as Slony's C(slony1_dump.sh)
    does. With O(schema=copy) the user schema is copied first if none of the replicated tables
    exists there (C(pg_dump --schema-only) of O(node) without the C(_<cluster>) schema and
    without Slony's triggers, restored with C(pg_restore --single-transaction)). Then, in ONE
    offline transaction, it creates schema C(_<cluster>) with C(sl_archive_tracking),
    C(sl_log_archive) and its apply trigger and the functions the archive files call. It also
    loads the rows of every table and the value of every sequence of the sets O(node) is
    subscribed to, all read in ONE REPEATABLE READ snapshot of O(node). That snapshot also
    gives the archive counter the data is at, which the tracking table records.
  - Then applies, in counter order, every archive file of O(node) in O(archive_dir) after the
    offline database's counter, each with C(psql -v ON_ERROR_STOP=1) in its own transaction (the
    file's first statement checks that the offline database is at the counter just before
    its own). Files at or below the counter are already applied and skipped. Applying is
    therefore idempotent. The offline counter is read again before each file.
  - A missing file (a gap in the counters) or a file that fails stops the run with an error
    naming the file. The files before it stay applied, and nothing after it is applied. A
    failing file changes nothing, because its transaction is rolled back.
  - Nothing is changed on the cluster; O(node) is only read. The offline database is never
    made a Slony node.
extends_documentation_fragment: [dany.slony.common, dany.slony.attributes]
attributes:
  check_mode:
    details:
      - Reads the offline database, O(node) and O(archive_dir), then returns the files it would
        apply (RV(files)), whether it would initialise (RV(initialize)) and the files it would
        remove; changes nothing and takes no lock. A gap fails in check mode too.
  diff_mode:
    details:
      - The diff shows RV(before) and RV(after) (whether the offline database is initialised,
        and its archive counter).
  idempotent:
    details:
      - A second run with no new archive file reports no change. slon writes a new file for
        every event it applies, so while it runs a later run usually has new files to apply.
options:
  node:
    description:
      - The subscriber whose slon writes the archive files (the node id in their names), and
        the node the offline database is initialised from. Its entry in O(admin_conninfo) is
        used to read it.
    type: int
    required: true
  archive_dir:
    description:
      - Absolute path of the directory holding the archive files, on the host that runs the
        module (slon's archive directory, or where they were shipped to).
      - Files of other nodes and slon's C(.tmp) files are ignored.
    type: path
    required: true
  offline_conninfo:
    description:
      - libpq conninfo of the offline database. Its user must be a superuser, because the
        archive files set C(session_replication_role).
      - Passwords are never returned or logged; C(psql), C(pg_dump) and C(pg_restore) get them
        through their environment, never on a command line.
    type: str
    required: true
  initialize:
    description:
      - Initialise the offline database from O(node) when it is not initialised yet.
      - With V(false) an offline database that is not initialised is an error.
      - An offline database whose replicated tables hold rows is never initialised (the load
        would replace them). To initialise one again, drop its schema C(_<cluster>) and empty
        its tables.
    type: bool
    default: true
  schema:
    description:
      - Where the offline database's user schema comes from when it is initialised.
      - V(copy) copies O(node)'s whole schema (C(pg_dump --schema-only --exclude-schema=_<cluster>),
        without Slony's triggers, restored with C(--no-owner --no-privileges)) when none of the
        replicated tables and sequences exists there, and uses them when all exist.
      - V(existing) requires every replicated table and sequence to exist already.
      - Some existing and others missing is an error with both, naming them.
    type: str
    choices: [copy, existing]
    default: copy
  committed_only:
    description:
      - Read O(node)'s archive counter and apply only the files up to it. slon renames a file
        to its final name just before it commits the transaction that applied it, so a file
        past that counter may still be rolled back and written again. Later files are
        returned in RV(pending) and applied by a later run.
      - Set V(false) when the host that runs the module cannot reach O(node). Every file is then
        applied, and O(node) is only read to initialise the offline database.
    type: bool
    default: true
  remove_applied:
    description:
      - Remove, at the end, the files of O(node) in O(archive_dir) that the offline database has
        applied (at or below its counter). Nothing is removed after a failure.
    type: bool
    default: false
  pg_bindir:
    description:
      - Directory of C(psql), C(pg_dump) and C(pg_restore) on the host that runs the module.
        When not given, they are looked up on C(PATH).
      - C(pg_dump) and C(pg_restore) are only needed to copy the schema.
    type: path
notes:
  - O(wait) and O(share_dir) are accepted for C(module_defaults) but have no effect. O(wait_timeout)
    bounds the wait for the offline database's apply lock. That lock is an advisory lock held
    by every run that changes something, so that two runs never apply the same file twice.
  - Start O(node)'s slon with an archive directory BEFORE the offline database is initialised.
    A SYNC that slon applies without one writes no file, and its changes would never reach the
    offline database (the next file would still follow the counter, so no gap shows it).
  - The archive files carry the changes of every set O(node) is subscribed to, its
    subscriptions (the copy of a newly subscribed set) and the DDL of C(EXECUTE SCRIPT).
    A table added to replication later must be created on the offline database too, for
    example with the same script. A file that refers to a missing table fails and names it.
  - slon writes a file for every event, SYNCs of idle nodes included, so the files accumulate.
    Use O(remove_applied) or remove old files otherwise.
seealso:
  - module: dany.slony.slony_subscription
  - name: Slony-I log shipping
    description: The chapter of the Slony-I administration guide.
    link: https://www.slony.info/documentation/2.2/logshipping.html
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Initialise the reporting database from node 2 and apply node 2's archive files
  dany.slony.slony_logship:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    node: 2
    archive_dir: /var/lib/slony/archive/shop-2
    offline_conninfo: "host=report dbname=shop user=postgres password={{ vault_report_pw }}"
  register: slony_logship_result

- name: Show what was applied
  ansible.builtin.debug:
    msg: "{{ slony_logship_result.applied | length }} file(s); offline database at counter {{ slony_logship_result.counter }}"

- name: On a host that cannot reach the cluster, apply the shipped files and remove them
  dany.slony.slony_logship:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    node: 2
    archive_dir: /srv/slony-inbox
    offline_conninfo: "dbname=shop_offline"
    initialize: false
    committed_only: false
    remove_applied: true
    pg_bindir: /usr/lib/postgresql/15/bin
'''

RETURN = r'''
files:
  description:
    - The archive files applied, in order (in check mode, that would be). A file the initial
      load of the same run already covered is listed but skipped.
  returned: always
  type: list
  elements: str
  sample: ["slony1_log_2_00000000000000000043.sql", "slony1_log_2_00000000000000000044.sql"]
applied:
  description: The archive files this run really applied, in order (empty in check mode).
  returned: always
  type: list
  elements: str
  sample: ["slony1_log_2_00000000000000000043.sql"]
pending:
  description:
    - The files past O(node)'s archive counter, left for a later run (empty with
      O(committed_only=false)).
  returned: always
  type: list
  elements: str
  sample: ["slony1_log_2_00000000000000000045.sql"]
removed:
  description: The files removed from O(archive_dir) (in check mode, that would be), with O(remove_applied).
  returned: always
  type: list
  elements: str
  sample: ["slony1_log_2_00000000000000000042.sql"]
initialize:
  description:
    - C(null) when the offline database was already initialised. Otherwise, how it is
      initialised. C(from_node) is the node read. C(counter) is the archive counter of the
      data loaded (in check mode, O(node)'s counter now). C(copy_schema) says whether the
      user schema is copied. C(tables) and C(sequences) are the numbers of objects loaded.
  returned: always
  type: dict
  sample: {"from_node": 2, "counter": 42, "copy_schema": true, "tables": 5, "sequences": 2}
counter:
  description: The offline database's archive counter at the end (in check mode, as it would be).
  returned: always
  type: int
  sample: 44
other_nodes:
  description: Ids of other nodes whose archive files are in O(archive_dir) (ignored).
  returned: always
  type: list
  elements: int
  sample: []
before:
  description: The offline database before the run. C(node) is O(node). C(initialized) is
    true when it has its tracking table, and C(counter) is its archive counter (null when
    it is not initialised).
  returned: always
  type: dict
  sample: {"node": 2, "initialized": true, "counter": 42}
after:
  description: The offline database as the run leaves it (in check mode, as it would).
  returned: always
  type: dict
  sample: {"node": 2, "initialized": true, "counter": 44}
queries:
  description:
    - What was run, with C(node) C(offline) for the offline database and the programs. That
      covers the C(psql) command of each file, the C(pg_dump)/C(pg_restore) commands and a
      summary of the initial load. Passwords are never shown. In check mode, the steps that
      would run, with their node.
  returned: always
  type: list
  elements: dict
  sample:
    - node: offline
      sql: >-
        /usr/bin/psql -X -q --no-password -v ON_ERROR_STOP=1 -d 'dbname=report'
        -f /srv/in/slony1_log_2_00000000000000000043.sql
        # applying archive file slony1_log_2_00000000000000000043.sql
slonik:
  description:
    - Log shipping has no slonik command. These are the equivalent shell commands, as comments
      after the preamble (Slony's C(slony1_dump.sh) piped to C(psql), then C(psql -f) for each
      file). Empty when nothing changes.
  returned: always
  type: str
  sample: |-
    cluster name = shop;
    node 2 admin conninfo = 'host=db2 dbname=shop';
    # psql -v ON_ERROR_STOP=1 -f slony1_log_2_00000000000000000043.sql <offline database>
events:
  description: Always empty; log shipping creates no Slony event.
  returned: always
  type: list
  elements: dict
  sample: []
'''

from ansible_collections.dany.slony.plugins.module_utils.logship import LogShip, plan_logship
from ansible_collections.dany.slony.plugins.module_utils.slony_module import SlonyModule


def main():
    slony = SlonyModule(dict(
        node=dict(type="int", required=True),
        archive_dir=dict(type="path", required=True),
        offline_conninfo=dict(type="str", required=True, no_log=True),
        initialize=dict(type="bool", default=True),
        schema=dict(type="str", choices=["copy", "existing"], default="copy"),
        committed_only=dict(type="bool", default=True),
        remove_applied=dict(type="bool", default=False),
        pg_bindir=dict(type="path"),
    ))
    params = slony.params
    slony.add_secrets(params["offline_conninfo"])

    def runner(argv, env):
        return slony.module.run_command(argv, environ_update=env)

    ship = LogShip(slony.cluster, params["node"], params["archive_dir"], params["offline_conninfo"],
                   pg_bindir=params["pg_bindir"], runner=runner,
                   connect_timeout=params["connect_timeout"])
    try:
        slony.run(lambda cluster: plan_logship(
            cluster, params["node"], params["archive_dir"], params["offline_conninfo"],
            initialize=params["initialize"], schema=params["schema"],
            committed_only=params["committed_only"], remove_applied=params["remove_applied"],
            pg_bindir=params["pg_bindir"], check_mode=slony.check_mode,
            timeout=params["wait_timeout"], ship=ship), lock=False)
    finally:
        ship.close()


if __name__ == "__main__":
    main()
