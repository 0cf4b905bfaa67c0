# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: slony_prometheus
short_description: Slony-I cluster facts as Prometheus metrics
version_added: 0.1.0
author:
  - Dany Slony developers (@dany-slony)
description:
  - Turns the result of M(dany.slony.slony_info) into metrics in the Prometheus text
    exposition format (HELP and TYPE lines, then the samples), for the textfile collector
    of node_exporter (C(--collector.textfile.directory)); playbooks/status.yml writes it
    there when C(slony_status_textfile_dir) is set.
  - Every sample has the label C(cluster); per node C(node), per (origin, receiver) pair
    C(origin) and C(receiver), per set C(set) and C(origin).
  - The families - C(slony_node_reachable), C(slony_node_active), C(slony_node_failed),
    C(slony_slon_up), C(slony_slon_last_activity_seconds) per node; C(slony_lag_events),
    C(slony_lag_seconds) (the age of the last event the receiver confirmed),
    C(slony_last_confirmed_event_timestamp_seconds) per pair and
    C(slony_last_event_timestamp_seconds) per origin; C(slony_subscription_complete) per
    set and receiver; C(slony_set_tables), C(slony_set_sequences), C(slony_set_locked) per
    set; C(slony_drift_objects) per kind of drift, C(slony_drift_compared_nodes) (the nodes
    compared - below 2, no drift can be seen); C(slony_config_events_in_flight);
    C(slony_unreplicated_relations) per origin node and kind. All are gauges.
  - A value the facts do not know (a node that could not be read) gives no sample rather
    than a made-up 0 - C(slony_node_reachable) is 0 for that node. Sections left out by
    the module's C(filter) give no metrics.
  - Pure Python, no psycopg2 needed on the controller.
positional: _input
options:
  _input:
    description: The registered result of M(dany.slony.slony_info).
    type: dict
    required: true
seealso:
  - module: dany.slony.slony_info
  - plugin: dany.slony.slony_nagios
    plugin_type: filter
  - name: node_exporter textfile collector
    description: How node_exporter reads C(*.prom) files.
    link: https://github.com/prometheus/node_exporter#textfile-collector
'''

EXAMPLES = r'''
- name: Read the cluster
  dany.slony.slony_info:
    cluster_name: shop
    admin_conninfo: "{{ slony_admin_conninfo }}"
    filter: ["!unreplicated"]
  register: slony_info_result

- name: Write the metrics for node_exporter (playbooks/status.yml does it atomically)
  ansible.builtin.copy:
    content: "{{ slony_info_result | dany.slony.slony_prometheus }}"
    dest: /var/lib/prometheus/node-exporter/slony_shop.prom
    mode: "0644"
# slony_slon_up{cluster="shop",node="1"} 1
# slony_lag_events{cluster="shop",origin="1",receiver="2"} 3
# slony_lag_seconds{cluster="shop",origin="1",receiver="2"} 1.52
'''

RETURN = r'''
_value:
  description: The metrics, one sample per line, ending with a newline (empty when the
    facts hold nothing to measure).
  type: string
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dany.slony.plugins.module_utils.monitoring import (
    facts_error, prometheus_text)


def slony_prometheus(facts):
    """slony_info facts -> the Prometheus text format (plugins/module_utils/monitoring.py)."""
    error = facts_error(facts, "slony_prometheus")
    if error:
        raise AnsibleFilterError(error)
    return prometheus_text(facts)


class FilterModule(object):
    def filters(self):
        return {"slony_prometheus": slony_prometheus}
