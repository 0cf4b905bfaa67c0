# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: conninfo
short_description: Build a libpq conninfo string from a dictionary, or one without its password
version_added: 0.1.0
author:
  - Dany Slony developers (@dany-slony)
description:
  - Turns a mapping of libpq connection parameters (C(host), C(port), C(dbname), C(user),
    C(password), ...) into a conninfo string, quoted by libpq's own rules (psycopg2's
    C(make_dsn)), so that values with spaces, quotes or backslashes survive.
  - Keys whose value is null or empty are left out.
  - With O(password=false) the password is left out, the form for a slon configuration
    or an C(sl_path) conninfo whose password comes from a passfile (see
    P(dany.slony.pgpass#filter)).
  - Given a conninfo string instead of a mapping, it is returned as it is, unless
    O(password=false) and it holds a password; then it is parsed and rebuilt without it
    (a URI becomes C(key=value) pairs). An invalid conninfo fails with a message that
    never repeats it.
options:
  _input:
    description: The connection parameters, or a conninfo string.
    type: raw
    required: true
  password:
    description: Whether the password (if any) stays in the conninfo.
    type: bool
    default: true
requirements:
  - psycopg2 on the controller.
'''

EXAMPLES = r'''
- name: Conninfo of a node from its host variables
  ansible.builtin.debug:
    msg: "{{ {'host': 'db1', 'port': 5432, 'dbname': 'shop', 'user': 'slony'} | dany.slony.conninfo }}"
  # -> host=db1 port=5432 dbname=shop user=slony

- name: The same conninfo without its password (the password goes to a passfile)
  ansible.builtin.debug:
    msg: "{{ 'host=db1 dbname=shop user=slony password=s3cret' | dany.slony.conninfo(password=false) }}"
  # -> host=db1 dbname=shop user=slony
'''

RETURN = r'''
_value:
  description: The conninfo string.
  type: str
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

try:
    from psycopg2.extensions import make_dsn
    HAS_PSYCOPG2 = True
except ImportError:
    HAS_PSYCOPG2 = False

from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.conninfo import parse_conninfo, without_password


def conninfo(params, password=True):
    if not HAS_PSYCOPG2:
        raise AnsibleFilterError("the dany.slony.conninfo filter needs psycopg2 on the controller")
    if isinstance(params, string_types):
        try:
            parsed = parse_conninfo(params)
        except SlonyError as exc:
            raise AnsibleFilterError("dany.slony.conninfo: %s" % exc)
        if password or "password" not in parsed:
            return params
        return without_password(params)
    if not isinstance(params, dict):
        raise AnsibleFilterError("dany.slony.conninfo expects a dictionary of libpq parameters "
                                 "or a conninfo string")
    clean = dict((str(k), str(v)) for k, v in params.items()
                 if v is not None and str(v) != "" and (password or str(k) != "password"))
    return make_dsn(**clean)


class FilterModule(object):
    def filters(self):
        return {"conninfo": conninfo}
