# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options slony_table and slony_sequence share (slony_module.set_members_main),
    # and what both do with a subscribed set. "Objects" are the module's tables or
    # sequences. List it before dany.slony.attributes: the first fragment's fields win.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    details:
      - Returns the SQL and slonik it would run, with the ids it would allocate (and the
        temporary set, for a set that has subscribers); changes nothing.
  diff_mode:
    details:
      - Shows the managed objects (the whole set with O(exclusive)) before and after.
options:
  set_id:
    description: Id of the set. The set must exist (M(dany.slony.slony_set)).
    type: int
    required: true
  origin:
    description:
      - Origin node of the set, where the objects are added.
      - Defaults to the origin recorded by the first node of O(admin_conninfo) that knows the
        set. When given, it must be the set's real origin; otherwise the module fails.
    type: int
  schemas:
    description:
      - Every object of these schemas - every ordinary table (M(dany.slony.slony_table)), every
        sequence (M(dany.slony.slony_sequence)). Names are case-sensitive. A schema that does
        not exist is an error with O(state=present).
    type: list
    elements: str
  exclude:
    description: Regular expressions removing objects found by O(patterns) or O(schemas).
    type: list
    elements: str
  state:
    description:
      - V(present) adds the objects that are not in the set yet.
      - V(absent) drops from the set those of the objects that are in it (the tables or
        sequences themselves stay, no longer replicated). Objects that do not exist or are
        in another set are left alone.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With O(state=present), also drop from the set every object of the set that is not
        chosen by the module's list of names, O(patterns) and O(schemas).
    type: bool
    default: false
  move:
    description:
      - With O(state=present), an object chosen that is in another set is moved into this set
        (slonik C(SET MOVE TABLE) / C(SET MOVE SEQUENCE)) instead of being refused. Slony moves
        objects only between two sets with the same origin and the same subscribers; anything
        else is refused, naming the object and the difference, before anything changes.
      - The move waits first, whatever O(wait), until no subscription of either set is in
        progress (a receiver still copying would otherwise receive duplicate rows).
    type: bool
    default: false
notes:
  - Adds run on the set's origin after one SYNC, as slonik does, the add calls of one run in
    one transaction (batches of up to 500). With O(wait=true) the module waits until every
    node has confirmed them.
  - Adding to a subscribed set always waits, whatever O(wait), for what the merge needs -
    every node knows the temporary set, every receiver has copied it, no subscription is
    in progress. O(wait=false) only skips the wait for every node to confirm the merge.
    O(wait_timeout) bounds each of these waits.
'''
