# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The attributes every dany.slony module declares. A module that differs overrides
    # the attribute's support (and says how in its details); ansible-doc merges the
    # module's own fields over these.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Reads the catalogs, then returns the SQL (RV(queries)) and the slonik script (RV(slonik))
        it would run, and RV(after) as it would be; changes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff shows RV(before) and RV(after) (a list is shown as C(items)).
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second
        invocation indicates no change.
    support: full
  action_group:
    description: Use C(group/dany.slony.slony) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - dany.slony.slony
'''
