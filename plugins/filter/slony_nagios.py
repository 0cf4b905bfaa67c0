# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: slony_nagios
short_description: Nagios-style check of Slony-I cluster facts
version_added: 0.1.0
author:
  - Dany Slony developers (@dany-slony)
description:
  - "Checks the result of M(dany.slony.slony_info) against thresholds, as a Nagios / Icinga
    plugin does - the state (OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3) and one status line
    with performance data, for instance
    C(SLONY CRITICAL - cluster shop: slon of node 3 stopped | nodes_unreachable=0;;0;0;3 slons_stopped=1;;0;0;3 ...)."
  - The measures - C(lag_events) and C(lag_seconds) (the worst origin/receiver pair; the
    seconds of an origin whose slon is stopped are not counted, as that origin creates no
    events), C(slons_stopped), C(nodes_unreachable), C(drift) (not counting drift while
    configuration events are still in flight) and C(copies_unfinished) (subscriptions
    whose copy is not done).
  - Thresholds are ranges of the Nagios plugin guidelines - C(10) alerts above 10 (or
    below 0), C(10:) below 10, C(~:10) above 10, C(10:20) outside 10..20, C(@10:20)
    inside; an empty string disables one. The state is the worst of the measures; UNKNOWN
    when the facts hold none of them.
  - The same check runs outside Ansible as C(check_slony) (C(python -m dany.monitoring))
    from the C(dany) Python package.
  - Pure Python, no psycopg2 needed on the controller.
positional: _input
options:
  _input:
    description: The registered result of M(dany.slony.slony_info).
    type: dict
    required: true
  lag_events_warning:
    description: Warning range of the largest lag in events.
    type: str
    default: "100"
  lag_events_critical:
    description: Critical range of the largest lag in events.
    type: str
    default: "1000"
  lag_seconds_warning:
    description: Warning range of the largest lag in seconds.
    type: str
    default: "60"
  lag_seconds_critical:
    description: Critical range of the largest lag in seconds.
    type: str
    default: "300"
  slons_stopped_warning:
    description: Warning range of the number of stopped slon daemons (none by default).
    type: str
  slons_stopped_critical:
    description: Critical range of the number of stopped slon daemons.
    type: str
    default: "0"
  nodes_unreachable_warning:
    description: Warning range of the number of nodes that could not be read (none by default).
    type: str
  nodes_unreachable_critical:
    description: Critical range of the number of nodes that could not be read.
    type: str
    default: "0"
  drift_warning:
    description: Warning range of the number of drift entries.
    type: str
    default: "0"
  drift_critical:
    description: Critical range of the number of drift entries (none by default).
    type: str
  copies_unfinished_warning:
    description: Warning range of the number of subscriptions whose copy is not done.
    type: str
    default: "0"
  copies_unfinished_critical:
    description: Critical range of the number of subscriptions whose copy is not done (none by default).
    type: str
seealso:
  - module: dany.slony.slony_info
  - plugin: dany.slony.slony_prometheus
    plugin_type: filter
'''

EXAMPLES = r'''
- name: Read the cluster
  dany.slony.slony_info:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    filter: ["!unreplicated"]
  register: slony_info_result

- name: Fail when replication is critical
  vars:
    slony_check: "{{ slony_info_result | dany.slony.slony_nagios(lag_events_critical='500') }}"
  ansible.builtin.assert:
    that: slony_check.code < 2
    fail_msg: "{{ slony_check.line }}"
'''

RETURN = r'''
_value:
  description: The result of the check.
  type: dict
  contains:
    code:
      description: The exit status - 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
      type: int
    state:
      description: The name of the state (C(OK), C(WARNING), C(CRITICAL), C(UNKNOWN)).
      type: str
    line:
      description: "The status line, C(SLONY <STATE> - cluster <name>: <summary> | <perfdata>)."
      type: str
    problems:
      description: What crossed a threshold, worst first.
      type: list
      elements: str
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dany.slony.plugins.module_utils.monitoring import (
    DEFAULT_THRESHOLDS, STATE_NAMES, facts_error, nagios_check)


def slony_nagios(facts, **thresholds):
    """slony_info facts -> {code, state, line, problems} (plugins/module_utils/monitoring.py)."""
    error = facts_error(facts, "slony_nagios")
    if error:
        raise AnsibleFilterError(error)
    try:
        code, line, problems = nagios_check(facts, thresholds)
    except ValueError as exc:
        raise AnsibleFilterError("dany.slony.slony_nagios: %s" % exc)
    return {"code": code, "state": STATE_NAMES[code], "line": line, "problems": problems}


# What the docs list as options; kept here so that a test can compare them.
NAGIOS_OPTIONS = sorted(DEFAULT_THRESHOLDS)


class FilterModule(object):
    def filters(self):
        return {"slony_nagios": slony_nagios}
