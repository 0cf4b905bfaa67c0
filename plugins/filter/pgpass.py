# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: pgpass
short_description: The libpq password file (~/.pgpass format) for a list of conninfos
version_added: 0.1.0
author:
  - Dany Slony developers (@dany-slony)
description:
  - Returns the content of a libpq password file, one line
    C(host:port:database:user:password) per conninfo that holds a password, in order,
    without repeats; conninfos without a password give no line.
  - libpq matches each line against the connection it makes. A conninfo without a host
    (a Unix socket) gives C(localhost); a missing port, database or user gives C(*).
    C(:) and C(\) in values are escaped with a backslash.
  - The C(dany.slony.slon) role writes this file (mode C(0600)) for each slon, so that
    neither the slon configuration nor the C(sl_path) conninfos need a password (pair it
    with P(dany.slony.conninfo#filter) and C(password=false)).
  - An invalid conninfo fails the filter with a message that never repeats it.
options:
  _input:
    description: libpq conninfo strings, or mappings of connection parameters.
    type: list
    elements: raw
    required: true
requirements:
  - psycopg2 on the controller.
'''

EXAMPLES = r'''
- name: A passfile for the nodes of a cluster
  ansible.builtin.copy:
    content: "{{ ['host=db1 dbname=shop user=slony password=s3cret',
                  {'host': 'db2', 'port': 5433, 'dbname': 'shop', 'user': 'slony', 'password': 's3cret'}]
                 | dany.slony.pgpass }}"
    dest: /var/lib/postgresql/.pgpass
    owner: postgres
    mode: "0600"
  # -> db1:*:shop:slony:s3cret
  #    db2:5433:shop:slony:s3cret
'''

RETURN = r'''
_value:
  description: The file content, one line per password, each ending with a newline; empty when no conninfo holds a password.
  type: str
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.filter.conninfo import conninfo
from ansible_collections.dany.slony.plugins.module_utils.conninfo import pgpass_lines
from ansible_collections.dany.slony.plugins.module_utils.pg import HAS_PSYCOPG2


def pgpass(conninfos):
    if not HAS_PSYCOPG2:
        raise AnsibleFilterError("the dany.slony.pgpass filter needs psycopg2 on the controller")
    if isinstance(conninfos, (string_types, dict)) or not isinstance(conninfos, (list, tuple)):
        raise AnsibleFilterError("dany.slony.pgpass expects a list of conninfos")
    # A mapping becomes a conninfo the way the conninfo filter builds one.
    texts = [conninfo(item) if isinstance(item, dict) else item for item in conninfos]
    try:
        return "".join(line + "\n" for line in pgpass_lines(texts))
    except SlonyError as exc:
        raise AnsibleFilterError("dany.slony.pgpass: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"pgpass": pgpass}
