# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options every dany.slony module takes (set them once with
    # module_defaults: group/dany.slony.slony).
    DOCUMENTATION = r'''
options:
  cluster_name:
    description:
      - Name of the Slony-I cluster. The cluster lives in schema C(_<cluster_name>) of every
        node database.
      - Must match Slony's rule C(^[A-Za-z_][A-Za-z0-9_$]{0,62}$).
    type: str
    required: true
  admin_conninfo:
    description:
      - Mapping of node id to the libpq conninfo of that node's database, as used by the
        module (the equivalent of slonik's C(node N admin conninfo)).
      - The PostgreSQL user of each conninfo must be a superuser, as Slony administration
        requires.
      - Keys are node ids (integers, or strings holding integers).
      - Every connection is checked to really be the node it is listed as.
      - Passwords are never returned or logged; they are replaced by C(********).
    type: dict
    required: true
  wait:
    description:
      - Wait until the change is complete before returning. That means the events the
        module created are confirmed by the nodes that must process them, or, for a new
        subscription, the receiver has its copy.
      - With V(false) the module returns as soon as the events are committed on their
        origin. Waits that the change itself needs before it can run still happen, as in
        slonik. Examples are a provider catching up on the configuration before
        C(SUBSCRIBE SET), and a provider's copy finishing before a cascaded subscription
        or a C(MERGE SET). Slony applies the events of one origin in order, so a later
        task that depends on this change waits for what it needs.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for confirmations before failing. The error names every node that
        is behind and whether its slon daemon is running.
    type: int
    default: 300
  connect_timeout:
    description:
      - Seconds to wait for a connection to a node, unless the conninfo sets
        C(connect_timeout) itself.
    type: int
    default: 10
  share_dir:
    description:
      - Directory holding the Slony-I SQL files (C(slony1_base.<version>.sql) and friends)
        on the host the module runs on. Only used when a node is initialised.
      - Found automatically when not given (C(SLONY_SHARE_DIR), C(/usr/share/slony1), ...).
    type: path
requirements:
  - psycopg2 on the host that runs the module
  - Slony-I installed on every node's database server
  - to initialise nodes, the Slony-I SQL files on the host that runs the module (see O(share_dir))
notes:
  - Returned C(queries) and C(slonik) never contain passwords.
'''
