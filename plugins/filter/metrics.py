# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitoring filters: slony_info facts as Prometheus metrics or a Nagios check.

Their documentation is in slony_prometheus.yml and slony_nagios.yml beside this file
(one file holds both filters); the logic is plugins/module_utils/monitoring.py, which
needs nothing but the standard library (no psycopg2 on the controller).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.dany.slony.plugins.module_utils.monitoring import (
    DEFAULT_THRESHOLDS, STATE_NAMES, nagios_check, prometheus_text)


def _facts(value, name):
    if not isinstance(value, dict) or "cluster_name" not in value:
        raise AnsibleFilterError("dany.slony.%s expects the result of dany.slony.slony_info "
                                 "(a dictionary with cluster_name, lag, slons, ...)" % name)
    return value


def slony_prometheus(facts):
    return prometheus_text(_facts(facts, "slony_prometheus"))


def slony_nagios(facts, **thresholds):
    try:
        code, line, problems = nagios_check(_facts(facts, "slony_nagios"), thresholds)
    except ValueError as exc:
        raise AnsibleFilterError("dany.slony.slony_nagios: %s" % exc)
    return {"code": code, "state": STATE_NAMES[code], "line": line, "problems": problems}


# What the docs list as options; kept here so that a test can compare them.
NAGIOS_OPTIONS = sorted(DEFAULT_THRESHOLDS)


class FilterModule(object):
    def filters(self):
        return {"slony_prometheus": slony_prometheus, "slony_nagios": slony_nagios}
