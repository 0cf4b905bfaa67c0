# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: conninfo
short_description: Build a libpq conninfo string from a dictionary
version_added: 0.1.0
author:
  - Dany Slony developers (@dany-slony)
description:
  - Turns a mapping of libpq connection parameters (C(host), C(port), C(dbname), C(user),
    C(password), ...) into a conninfo string, quoted by libpq's own rules (psycopg2's
    C(make_dsn)), so that values with spaces, quotes or backslashes survive.
  - Keys whose value is null or empty are left out.
options:
  _input:
    description: The connection parameters.
    type: dict
    required: true
requirements:
  - psycopg2 on the controller.
'''

EXAMPLES = r'''
- name: Conninfo of a node from its host variables
  ansible.builtin.debug:
    msg: "{{ {'host': 'db1', 'port': 5432, 'dbname': 'shop', 'user': 'slony'} | dany.slony.conninfo }}"
  # -> host=db1 port=5432 dbname=shop user=slony
'''

RETURN = r'''
_value:
  description: The conninfo string.
  type: str
'''

from ansible.errors import AnsibleFilterError

try:
    from psycopg2.extensions import make_dsn
    HAS_PSYCOPG2 = True
except ImportError:
    HAS_PSYCOPG2 = False


def conninfo(params):
    if not HAS_PSYCOPG2:
        raise AnsibleFilterError("the dany.slony.conninfo filter needs psycopg2 on the controller")
    if not isinstance(params, dict):
        raise AnsibleFilterError("dany.slony.conninfo expects a dictionary of libpq parameters")
    clean = dict((str(k), str(v)) for k, v in params.items() if v is not None and str(v) != "")
    return make_dsn(**clean)


class FilterModule(object):
    def filters(self):
        return {"conninfo": conninfo}
