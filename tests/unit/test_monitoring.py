# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/module_utils/monitoring.py and the filters slony_prometheus and slony_nagios, from facts.

The Prometheus output is read back with the official client library's parser
(``prometheus_client.parser``); the Nagios codes are checked threshold by threshold.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import os
import re
import stat
import subprocess
import sys

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ansible.errors import AnsibleFilterError

from ansible_collections.dany.slony.plugins.filter import slony_nagios as nagios_filter
from ansible_collections.dany.slony.plugins.filter import slony_prometheus as prometheus_filter
from ansible_collections.dany.slony.plugins.module_utils import monitoring
from ansible_collections.dany.slony.plugins.module_utils.info import build_facts
from ansible_collections.dany.slony.plugins.module_utils.monitoring import (
    CRITICAL, DEFAULT_THRESHOLDS, FAMILIES, OK, UNKNOWN, WARNING, Range, nagios_check,
    prometheus_text, unix_time, write_textfile)

from test_info import reads_of_healthy_cluster

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PASSWORD = "s3cret-monitoring"


def lag(origin, receiver, events, seconds, origin_slon=True, receiver_slon=True, sets=(),
        complete=None, last_at="2024-05-01T10:00:02.5+00:00", confirmed_at="2024-05-01T10:00:01+00:00"):
    return {"origin": origin, "receiver": receiver, "last_event": 5000000100,
            "last_event_at": last_at, "confirmed": 5000000100 - events if events is not None else None,
            "confirmed_event_at": confirmed_at, "lag_events": events, "lag_seconds": seconds,
            "sets": list(sets), "subscriptions_complete": complete,
            "origin_slon_running": origin_slon, "receiver_slon_running": receiver_slon}


def slon(node, running, activity=0.5):
    return {"node": node, "running": running, "backend_pid": 100 + node if running else None,
            "last_activity_seconds": activity if running is not None else None,
            "error": None if running is not None else "cannot connect", "components": []}


def healthy_facts():
    """A 3-node cluster, set 1 from node 1 to nodes 2 and 3, all well (slony_info's RETURN shape)."""
    return {
        "cluster_name": "shop", "changed": False,
        "sections": ["nodes", "sets", "subscriptions", "lag", "slons", "drift", "unreplicated"],
        "unreachable_nodes": [],
        "nodes": [{"id": n, "comment": "node %d" % n, "active": True, "failed": False,
                   "in_admin_conninfo": True, "reachable": True, "error": None, "source": n}
                  for n in (1, 2, 3)],
        "sets": [{"id": 1, "origin": 1, "comment": "app", "locked": False, "tables": 4,
                  "sequences": 1, "subscribers": [2, 3], "source": 1}],
        "subscriptions": [{"set": 1, "origin": 1, "receiver": r, "provider": 1, "forward": True,
                           "active": True, "complete": True, "last_sync": 5000000099, "source": 1}
                          for r in (2, 3)],
        "lag": [lag(1, 2, 1, 0.42, sets=[1], complete=True), lag(1, 3, 2, 1.5, sets=[1], complete=True),
                lag(2, 1, 0, 3.0), lag(2, 3, 0, 3.0), lag(3, 1, 0, 8.25), lag(3, 2, 0, 8.25)],
        "slons": [slon(1, True, 0.2), slon(2, True, 1.0), slon(3, True, 2.0)],
        "drift": [], "config_in_flight": [], "compared_nodes": [1, 2, 3],
        "unreplicated": [{"node": 1, "schema": "public", "name": "audit_log", "kind": "table",
                          "key": None, "partition": False},
                         {"node": 1, "schema": "public", "name": "settings", "kind": "table",
                          "key": "settings_name_key", "partition": False},
                         {"node": 1, "schema": "public", "name": "customers_id_seq",
                          "kind": "sequence", "owned_by": "public.customers.id"}],
    }


def with_node3_down(facts):
    """Node 3 unreachable: its slon and subscription state unknown."""
    facts = copy.deepcopy(facts)
    error = "cannot connect to node 3 (host=db3 password=********): refused"
    facts["unreachable_nodes"] = [{"node": 3, "error": error}]
    facts["nodes"][2].update(reachable=False, error=error, source=1)
    facts["slons"][2] = slon(3, None)
    facts["subscriptions"][1].update(active=None, complete=None, last_sync=None)
    facts["lag"] = [r for r in facts["lag"] if r["origin"] != 3]
    for row in facts["lag"]:
        if row["receiver"] == 3:
            row["receiver_slon_running"] = None
            row["subscriptions_complete"] = None if row["sets"] else row["subscriptions_complete"]
    facts["compared_nodes"] = [1, 2]
    return facts


def families(text):
    """{name: Metric} parsed by prometheus_client; the text must parse completely."""
    parsed = dict((f.name, f) for f in text_string_to_metric_families(text))
    return parsed


def samples(text, name):
    """{frozenset(labels without cluster): value} of one family."""
    out = {}
    for sample in families(text)[name].samples:
        assert sample.name == name
        labels = dict(sample.labels)
        assert labels.pop("cluster") == "shop"
        out[tuple(sorted(labels.items()))] = sample.value
    return out


def node(n):
    return (("node", str(n)),)


def pair(origin, receiver):
    return (("origin", str(origin)), ("receiver", str(receiver)))


# -- Prometheus -------------------------------------------------------------------------

def test_every_family_parses_with_its_help_and_type():
    text = prometheus_text(healthy_facts())
    parsed = families(text)
    expected = dict((name, (kind, text_)) for name, kind, text_ in FAMILIES)
    # Every family has samples here except the confirmation time of pairs with none.
    assert set(parsed) == set(expected)
    for name, family in parsed.items():
        assert family.type == expected[name][0] == "gauge"
        assert family.documentation == expected[name][1]
        assert name.startswith("slony_") and family.samples
        assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", name)
    for line in text.splitlines():  # HELP, TYPE, then samples; no blank lines
        assert line and (line.startswith("# HELP ") or line.startswith("# TYPE ") or line.startswith("slony_"))
    assert text.endswith("\n")
    # HELP then TYPE right before each family's samples.
    heads = [line.split()[1:3] for line in text.splitlines() if line.startswith("#")]
    assert heads == [h for name, _kind, _text in FAMILIES if name in parsed
                     for h in (["HELP", name], ["TYPE", name])]


def test_values_and_labels_of_a_healthy_cluster():
    text = prometheus_text(healthy_facts())
    assert samples(text, "slony_node_reachable") == {node(1): 1, node(2): 1, node(3): 1}
    assert samples(text, "slony_node_active") == {node(1): 1, node(2): 1, node(3): 1}
    assert samples(text, "slony_node_failed") == {node(1): 0, node(2): 0, node(3): 0}
    assert samples(text, "slony_slon_up") == {node(1): 1, node(2): 1, node(3): 1}
    assert samples(text, "slony_slon_last_activity_seconds") == {node(1): 0.2, node(2): 1.0, node(3): 2.0}
    assert samples(text, "slony_lag_events") == {
        pair(1, 2): 1, pair(1, 3): 2, pair(2, 1): 0, pair(2, 3): 0, pair(3, 1): 0, pair(3, 2): 0}
    assert samples(text, "slony_lag_seconds") == {
        pair(1, 2): 0.42, pair(1, 3): 1.5, pair(2, 1): 3.0, pair(2, 3): 3.0, pair(3, 1): 8.25,
        pair(3, 2): 8.25}
    last = datetime.datetime(2024, 5, 1, 10, 0, 2, 500000, tzinfo=datetime.timezone.utc).timestamp()
    confirmed = datetime.datetime(2024, 5, 1, 10, 0, 1, tzinfo=datetime.timezone.utc).timestamp()
    # One sample per origin, not per pair.
    assert samples(text, "slony_last_event_timestamp_seconds") == {
        (("origin", "1"),): last, (("origin", "2"),): last, (("origin", "3"),): last}
    assert set(samples(text, "slony_last_confirmed_event_timestamp_seconds").values()) == {confirmed}
    assert len(samples(text, "slony_last_confirmed_event_timestamp_seconds")) == 6
    assert samples(text, "slony_subscription_complete") == {
        (("origin", "1"), ("receiver", "2"), ("set", "1")): 1,
        (("origin", "1"), ("receiver", "3"), ("set", "1")): 1}
    one = (("origin", "1"), ("set", "1"))
    assert samples(text, "slony_set_tables") == {one: 4}
    assert samples(text, "slony_set_sequences") == {one: 1}
    assert samples(text, "slony_set_locked") == {one: 0}
    assert samples(text, "slony_drift_objects") == dict(
        ((("kind", k),), 0) for k in ("node", "path", "set", "subscription", "table", "sequence"))
    assert samples(text, "slony_config_events_in_flight") == {(): 0}
    assert samples(text, "slony_drift_compared_nodes") == {(): 3}
    assert samples(text, "slony_unreplicated_relations") == {
        (("kind", "sequence"), ("node", "1")): 1, (("kind", "table"), ("node", "1")): 2}


def test_what_is_not_known_gives_no_sample():
    facts = with_node3_down(healthy_facts())
    facts["slons"][1]["running"] = False
    text = prometheus_text(facts)
    assert samples(text, "slony_node_reachable") == {node(1): 1, node(2): 1, node(3): 0}
    # Node 3 unreadable: no slon sample at all (not 0); node 2's stopped slon is a 0.
    assert samples(text, "slony_slon_up") == {node(1): 1, node(2): 0}
    assert node(3) not in samples(text, "slony_slon_last_activity_seconds")
    assert samples(text, "slony_subscription_complete") == {
        (("origin", "1"), ("receiver", "2"), ("set", "1")): 1}
    assert pair(3, 1) not in samples(text, "slony_lag_events")
    # A pair whose lag is unknown, or that never confirmed anything.
    facts["lag"][0].update(lag_events=None, lag_seconds=None, confirmed=None)
    text = prometheus_text(facts)
    assert pair(1, 2) not in samples(text, "slony_lag_events")
    assert pair(1, 2) not in samples(text, "slony_lag_seconds")
    assert pair(1, 2) not in samples(text, "slony_last_confirmed_event_timestamp_seconds")


def test_drift_is_counted_per_kind():
    facts = healthy_facts()
    facts["drift"] = [{"kind": "path", "id": "2->3", "missing_on": [1], "settling": False,
                       "message": "path 2 -> 3: missing on node 1", "values": []},
                      {"kind": "path", "id": "3->2", "missing_on": [1], "settling": False,
                       "message": "path 3 -> 2: missing on node 1", "values": []},
                      {"kind": "table", "id": 4, "missing_on": [2], "settling": True,
                       "message": "table 4: missing on node 2", "values": []}]
    facts["config_in_flight"] = [{"origin": 1, "seqno": 5000000042, "type": "STORE_PATH",
                                  "at": "2024-05-01T10:00:02+00:00", "not_processed_by": [3]}]
    text = prometheus_text(facts)
    drift = samples(text, "slony_drift_objects")
    assert drift[(("kind", "path"),)] == 2 and drift[(("kind", "table"),)] == 1
    assert sum(drift.values()) == 3
    assert samples(text, "slony_config_events_in_flight") == {(): 1}


def test_sections_filtered_out_give_no_family():
    facts = healthy_facts()
    for key in ("nodes", "sets", "subscriptions", "drift", "config_in_flight", "compared_nodes", "unreplicated"):
        del facts[key]
    facts["unreachable_nodes"] = [{"node": 3, "error": "refused"}]
    parsed = families(prometheus_text(facts))
    assert set(parsed) == {"slony_node_reachable", "slony_slon_up", "slony_slon_last_activity_seconds",
                           "slony_lag_events", "slony_lag_seconds", "slony_last_event_timestamp_seconds",
                           "slony_last_confirmed_event_timestamp_seconds"}
    # Reachability then comes from the slons section and unreachable_nodes.
    assert samples(prometheus_text(facts), "slony_node_reachable") == {node(1): 1, node(2): 1, node(3): 0}
    assert prometheus_text({"cluster_name": "shop", "sections": [], "unreachable_nodes": []}) == ""


def test_label_values_and_help_are_escaped():
    facts = healthy_facts()
    facts["cluster_name"] = 'we"ird\\name\nx'
    text = prometheus_text(facts)
    sample = families(text)["slony_slon_up"].samples[0]
    assert sample.labels["cluster"] == 'we"ird\\name\nx'
    assert monitoring._help_text("a\\b\nc") == "a\\\\b\\nc"


def test_values_are_written_as_the_text_format_wants():
    number = monitoring._number
    assert [number(True), number(False), number(3), number(0.25), number(float("inf")),
            number(float("-inf")), number(float("nan")), number(1e-07)] == [
        "1", "0", "3", "0.25", "+Inf", "-Inf", "NaN", "1e-07"]


def test_facts_built_by_info_give_metrics():
    # The facts as slony_info really builds them (tests/unit/test_info.py's cluster: node 3's
    # slon stopped, node 4 unreachable, node 3's copy of set 1 not done).
    facts = build_facts("shop", "_shop", reads_of_healthy_cluster())
    text = prometheus_text(facts)
    assert samples(text, "slony_node_reachable") == {node(1): 1, node(2): 1, node(3): 1, node(4): 0}
    assert samples(text, "slony_slon_up") == {node(1): 1, node(2): 1, node(3): 0}
    assert samples(text, "slony_lag_events")[pair(1, 3)] == 90
    assert samples(text, "slony_subscription_complete") == {
        (("origin", "1"), ("receiver", "2"), ("set", "1")): 1,
        (("origin", "1"), ("receiver", "3"), ("set", "1")): 0}
    code, line, problems = nagios_check(facts)
    assert code == CRITICAL and line.startswith("SLONY CRITICAL - cluster shop: ")
    assert problems == ["node 4 unreachable", "slon of node 3 stopped",
                        "copy unfinished: set 1 on node 3"]


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T10:00:02.5+00:00", (2024, 5, 1, 10, 0, 2, 500000, 0)),
    ("2024-05-01T10:00:02+00:00", (2024, 5, 1, 10, 0, 2, 0, 0)),
    ("2024-05-01T10:00:02.123456Z", (2024, 5, 1, 10, 0, 2, 123456, 0)),
    ("2024-05-01 12:00:02.1+02", (2024, 5, 1, 12, 0, 2, 100000, 120)),
    ("2024-05-01T05:30:00-04:30", (2024, 5, 1, 5, 30, 0, 0, -270)),
    ("2024-05-01T10:00:02", (2024, 5, 1, 10, 0, 2, 0, 0)),
])
def test_unix_time_of_postgresql_timestamps(text, expected):
    *parts, offset = expected
    zone = datetime.timezone(datetime.timedelta(minutes=offset))
    assert unix_time(text) == pytest.approx(datetime.datetime(*parts, tzinfo=zone).timestamp(), abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "t1", "2024-05-01", "2024-13-01T10:00:00+00:00", 12])
def test_unix_time_of_something_else_is_none(text):
    assert unix_time(text) is None


# -- the textfile -----------------------------------------------------------------------

def test_write_textfile_replaces_the_file_atomically(tmp_path):
    target = tmp_path / "slony_shop.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    text = prometheus_text(healthy_facts())
    assert write_textfile(str(tmp_path), "slony_shop.prom", text) == str(target)
    assert target.read_text() == text
    assert target.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ["slony_shop.prom"]


def test_write_textfile_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    target = tmp_path / "slony_shop.prom"
    target.write_text("old\n")
    seen = []

    def failing_rename(src, dst):
        seen.append(os.path.basename(src))
        raise OSError("disk on fire")

    monkeypatch.setattr(monitoring.os, "rename", failing_rename)
    with pytest.raises(OSError):
        write_textfile(str(tmp_path), "slony_shop.prom", "new\n")
    assert target.read_text() == "old\n" and os.listdir(str(tmp_path)) == ["slony_shop.prom"]
    # The temporary file was in the same directory, hidden and not *.prom.
    assert seen[0].startswith(".slony_shop.prom.") and seen[0].endswith(".tmp")
    with pytest.raises(ValueError, match=r"\*\.prom"):
        write_textfile(str(tmp_path), "slony_shop.txt", "x\n")


# -- Nagios -----------------------------------------------------------------------------

PERF_RE = re.compile(r"^('[^']+'|[^ '=]+)=(-?[0-9.]+)(s|%|B|KB|MB|TB|c)?;([^;]*);([^;]*);([^;]*);([^;]*)$")


def perfdata(line):
    """{label: (value, unit, warn, crit, min, max)} of a status line, checked against the
    plugin guidelines' format."""
    status, sep, perf = line.partition(" | ")
    assert sep and "|" not in status and "\n" not in line
    out = {}
    for item in perf.split(" "):
        match = PERF_RE.match(item)
        assert match, item
        out[match.group(1)] = (float(match.group(2)), match.group(3) or "") + match.group(4, 5, 6, 7)
    return out


def test_a_healthy_cluster_is_ok():
    code, line, problems = nagios_check(healthy_facts())
    assert (code, problems) == (OK, [])
    assert line.startswith("SLONY OK - cluster shop: 3 nodes read, 3 slons running, max lag 2 events, 8.2 s | ")
    perf = perfdata(line)
    assert perf["lag_events"] == (2.0, "", "100", "1000", "0", "")
    assert perf["lag_seconds"] == (8.25, "s", "60", "300", "0", "")
    assert perf["slons_stopped"] == (0.0, "", "", "0", "0", "3")
    assert perf["nodes_unreachable"] == (0.0, "", "", "0", "0", "3")
    assert perf["drift"] == (0.0, "", "0", "", "0", "")
    assert perf["copies_unfinished"] == (0.0, "", "0", "", "0", "")
    assert perf["lag_events_1_3"][:2] == (2.0, "") and perf["lag_seconds_3_2"][:2] == (8.25, "s")
    assert len(perf) == 6 + 2 * 6
    short = nagios_check(healthy_facts(), pair_perfdata=False)[1]
    assert sorted(perfdata(short)) == sorted(["lag_events", "lag_seconds", "slons_stopped",
                                              "nodes_unreachable", "drift", "copies_unfinished"])


def test_lag_in_events_against_its_thresholds():
    facts = healthy_facts()
    facts["lag"][1]["lag_events"] = 150
    code, line, problems = nagios_check(facts)
    assert code == WARNING and line.startswith("SLONY WARNING - cluster shop: node 3 is 150 events behind node 1 | ")
    facts["lag"][1]["lag_events"] = 1001
    assert nagios_check(facts)[0] == CRITICAL
    assert nagios_check(facts, {"lag_events_critical": "5000"})[0] == WARNING
    assert nagios_check(facts, {"lag_events_critical": "", "lag_events_warning": None})[0] == OK
    facts["lag"][1]["lag_events"] = 100  # "100" alerts above 100, not at it
    assert nagios_check(facts)[0] == OK


def test_lag_in_seconds_leaves_out_origins_whose_slon_is_stopped():
    facts = healthy_facts()
    facts["lag"][2]["lag_seconds"] = 400.0  # 2 -> 1
    assert nagios_check(facts)[0] == CRITICAL
    assert "node 1 is 400.0 s behind node 2" in nagios_check(facts)[1]
    # Node 2's slon stopped: it creates no events, so the age of its last one says nothing
    # about replication (the stopped slon is what is reported).
    facts["lag"][2]["origin_slon_running"] = False
    facts["lag"][3]["origin_slon_running"] = False
    facts["slons"][1]["running"] = False
    code, line, problems = nagios_check(facts)
    assert code == CRITICAL and problems == ["slon of node 2 stopped"]
    assert perfdata(line)["lag_seconds"][0] == 8.25
    assert nagios_check(facts, {"slons_stopped_critical": ""})[0] == OK
    assert nagios_check(facts, {"slons_stopped_critical": "", "slons_stopped_warning": "0"})[0] == WARNING


def test_unreachable_nodes_are_critical():
    code, line, problems = nagios_check(with_node3_down(healthy_facts()))
    assert code == CRITICAL and problems == ["node 3 unreachable"]
    perf = perfdata(line)
    assert perf["nodes_unreachable"][0] == 1 and perf["slons_stopped"][0] == 0
    assert perf["copies_unfinished"][0] == 0  # unknown, not unfinished
    assert "2 nodes read" not in line
    assert nagios_check(with_node3_down(healthy_facts()),
                        {"nodes_unreachable_critical": "1", "nodes_unreachable_warning": "0"})[0] == WARNING
    assert nagios_check(with_node3_down(healthy_facts()), {"nodes_unreachable_critical": "1"})[0] == OK


def test_drift_warns_unless_it_may_settle():
    facts = healthy_facts()
    entry = {"kind": "path", "id": "2->3", "missing_on": [1], "settling": True,
             "message": "path 2 -> 3: missing on node 1; present on nodes 2, 3", "values": []}
    facts["drift"] = [entry]
    assert nagios_check(facts)[0] == OK
    entry["settling"] = False
    code, line, problems = nagios_check(facts)
    assert code == WARNING
    assert problems == ["drift: path 2 -> 3: missing on node 1; present on nodes 2, 3"]
    assert nagios_check(facts, {"drift_critical": "0"})[0] == CRITICAL
    facts["drift"] = [dict(entry, id=str(i)) for i in range(5)]
    assert nagios_check(facts)[2][0].endswith("(and 2 more)")
    # Whatever a message holds, the line stays one line with one "|".
    facts["drift"] = [dict(entry, message="set 1: comment 'a|b\nc' on node 1")]
    line = nagios_check(facts)[1]
    assert line.count("|") == 1 and "\n" not in line and "comment 'a b c' on node 1" in line


def test_unfinished_copies_warn():
    facts = healthy_facts()
    facts["subscriptions"][1]["complete"] = False
    code, line, problems = nagios_check(facts)
    assert code == WARNING and problems == ["copy unfinished: set 1 on node 3"]


def test_the_worst_problem_comes_first_then_causes_before_effects():
    facts = healthy_facts()
    facts["subscriptions"][1]["complete"] = False
    facts["slons"][2]["running"] = False
    code, line, problems = nagios_check(facts)
    assert code == CRITICAL
    assert problems == ["slon of node 3 stopped", "copy unfinished: set 1 on node 3"]
    assert line.startswith("SLONY CRITICAL - cluster shop: slon of node 3 stopped; copy unfinished")
    facts["lag"][1].update(lag_events=5000, lag_seconds=900.0)
    assert nagios_check(facts)[2] == ["slon of node 3 stopped", "node 3 is 5000 events behind node 1",
                                      "node 3 is 900.0 s behind node 1", "copy unfinished: set 1 on node 3"]
    facts["slons"][1]["running"] = False
    assert nagios_check(facts)[2][0] == "slon of nodes 2, 3 stopped"


def test_unknown_when_the_facts_hold_nothing_to_check():
    code, line, problems = nagios_check({"cluster_name": "shop", "sections": ["sets"],
                                         "unreachable_nodes": [], "sets": []})
    assert code == UNKNOWN and line.startswith("SLONY UNKNOWN - cluster shop: ") and problems == []


@pytest.mark.parametrize("text, inside, outside", [
    ("10", [0, 5, 10], [-1, 10.5, 11]),
    ("10:", [10, 11, 1e9], [9.9, 0]),
    ("~:10", [-1e9, 0, 10], [10.1]),
    ("10:20", [10, 15, 20], [9, 21]),
    ("@10:20", [9, 21], [10, 15, 20]),
    ("0", [0], [1, -1]),
])
def test_nagios_ranges(text, inside, outside):
    rng = Range(text)
    assert [rng.alerts(v) for v in inside] == [False] * len(inside)
    assert [rng.alerts(v) for v in outside] == [True] * len(outside)


@pytest.mark.parametrize("text", ["abc", "20:10", "1:2:3", "@"])
def test_bad_ranges_are_refused(text):
    with pytest.raises(ValueError, match="invalid threshold"):
        Range(text)


def test_unknown_threshold_names_are_refused():
    with pytest.raises(ValueError, match="unknown threshold.*lag_event_warning"):
        nagios_check(healthy_facts(), {"lag_event_warning": "3"})


# -- the filters ------------------------------------------------------------------------

def test_filters():
    filters = dict(prometheus_filter.FilterModule().filters())
    filters.update(nagios_filter.FilterModule().filters())
    assert sorted(filters) == ["slony_nagios", "slony_prometheus"]
    facts = healthy_facts()
    assert filters["slony_prometheus"](facts) == prometheus_text(facts)
    result = filters["slony_nagios"](with_node3_down(facts), nodes_unreachable_critical=5)
    assert result == {"code": OK, "state": "OK", "line": result["line"], "problems": []}
    result = filters["slony_nagios"](with_node3_down(facts))
    assert (result["code"], result["state"], result["problems"]) == (CRITICAL, "CRITICAL", ["node 3 unreachable"])
    with pytest.raises(AnsibleFilterError, match="invalid threshold"):
        filters["slony_nagios"](facts, lag_events_warning="lots")
    with pytest.raises(AnsibleFilterError, match="unknown threshold"):
        filters["slony_nagios"](facts, lag_warning="1")
    for name in filters:
        with pytest.raises(AnsibleFilterError, match="expects the result of dany.slony.slony_info"):
            filters[name]("not facts")


def test_filter_docs_match_the_code():
    for name in ("slony_prometheus", "slony_nagios"):
        plugin = {"slony_prometheus": prometheus_filter, "slony_nagios": nagios_filter}[name]
        doc = dict((key, yaml.safe_load(getattr(plugin, key)))
                   for key in ("DOCUMENTATION", "EXAMPLES", "RETURN"))
        assert doc["DOCUMENTATION"]["name"] == name and doc["EXAMPLES"] and doc["RETURN"]
    options = doc["DOCUMENTATION"]["options"]
    assert sorted(set(options) - {"_input"}) == sorted(DEFAULT_THRESHOLDS) == nagios_filter.NAGIOS_OPTIONS
    for key, default in DEFAULT_THRESHOLDS.items():
        assert options[key].get("default") == default, key
    # Every family is named in the Prometheus filter's description.
    described = " ".join(yaml.safe_load(prometheus_filter.DOCUMENTATION)["description"])
    for family, _kind, _text in FAMILIES:
        assert "C(%s)" % family in described, family


def test_the_core_imports_without_psycopg2():
    # The filters run on the controller: monitoring.py must not need psycopg2 to load.
    script = (
        "import sys, importlib.util\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'psycopg2':\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "spec = importlib.util.spec_from_file_location('monitoring', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "print(mod.nagios_check({'cluster_name': 'x', 'unreachable_nodes': [], 'slons': []})[0])\n")
    out = subprocess.run([sys.executable, "-c", script, monitoring.__file__], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "0"


# -- the check script -------------------------------------------------------------------

def test_console_script_points_at_main():
    with open(os.path.join(REPO, "pyproject.toml")) as handle:
        text = handle.read()
    scripts = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^check_slony = "dany\.monitoring:main"$', scripts, re.M)


def test_main_prints_the_status_line_and_returns_its_code(monkeypatch, capsys, tmp_path):
    facts = healthy_facts()
    facts["slons"][2]["running"] = False
    seen = []

    def read(args):
        seen.append(args)
        return facts

    monkeypatch.setattr(monitoring, "_read_facts", read)
    argv = ["--cluster-name", "shop", "--conninfo", "1=host=db1 dbname=shop",
            "--conninfo", "2=host=db2 dbname=shop"]
    assert monitoring.main(argv) == CRITICAL
    out = capsys.readouterr().out
    assert out.startswith("SLONY CRITICAL - cluster shop: slon of node 3 stopped | ") and out.count("\n") == 1
    assert seen[0].conninfo == [(1, "host=db1 dbname=shop"), (2, "host=db2 dbname=shop")]
    assert monitoring.main(argv + ["--slons-stopped-critical", "", "--slons-stopped-warning", "0"]) == WARNING
    capsys.readouterr()
    assert monitoring.main(argv + ["--format", "prometheus", "--textfile-dir", str(tmp_path)]) == OK
    text = capsys.readouterr().out
    assert text == prometheus_text(facts) == (tmp_path / "slony_shop.prom").read_text()
    assert monitoring.main(argv + ["--textfile-dir", str(tmp_path), "--textfile-name", "x.prom"]) == CRITICAL
    assert (tmp_path / "x.prom").read_text() == text
    capsys.readouterr()
    assert monitoring.main(argv + ["--no-pair-perfdata"]) == CRITICAL
    assert "lag_events_1_2" not in capsys.readouterr().out
    assert monitoring.main(argv + ["--textfile-dir", str(tmp_path / "missing")]) == UNKNOWN
    assert "cannot write the metrics" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--conninfo", "1=host=db1"], "give --cluster-name and one --conninfo"),
    (["--cluster-name", "shop"], "give --cluster-name and one --conninfo"),
    (["--cluster-name", "shop", "--conninfo", "1=host=db1", "--conninfo", "1=host=db2"],
     "a node is given twice"),
    (["--cluster-name", "shop", "--conninfo", "1=host=db1 password=%s 'unterminated" % PASSWORD],
     "conninfo"),
    (["--cluster-name", "shop", "--conninfo", "1=host=db1", "--lag-events-warning", "lots"],
     "invalid threshold 'lots'"),
])
def test_main_reports_unknown_when_it_cannot_check(argv, message, capsys):
    assert monitoring.main(argv) == UNKNOWN
    out = capsys.readouterr().out
    assert out.startswith("SLONY UNKNOWN - ") and message in out and out.count("\n") == 1
    assert PASSWORD not in out


@pytest.mark.parametrize("argv", [["--bogus"], ["--conninfo", "one=host=db1"], ["--format", "xml"]])
def test_usage_errors_exit_unknown_not_critical(argv, capsys):
    assert monitoring.main(argv) == UNKNOWN  # argparse's own 2 would read as CRITICAL
    err = capsys.readouterr().err
    assert err.startswith("usage: check_slony ") and "SLONY UNKNOWN - " in err


def test_the_module_runs_as_a_script(tmp_path):
    (tmp_path / "dany").symlink_to(os.path.dirname(monitoring.__file__))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "dany.monitoring", "--bogus"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == UNKNOWN and "SLONY UNKNOWN - unrecognized arguments: --bogus" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dany.monitoring", "--help"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "--lag-seconds-critical RANGE" in proc.stdout


def test_main_reads_a_config_file(monkeypatch, capsys, tmp_path):
    from ansible_collections.dany.slony.plugins.module_utils import api
    asked = []

    def info(cluster, sections=None):
        asked.append((cluster.name, cluster.node_ids, cluster.connect_timeout, sections))
        facts = healthy_facts()
        facts["cluster_name"] = cluster.name
        return facts

    monkeypatch.setattr(api.Cluster, "info", info)
    config = tmp_path / "shop.json"
    config.write_text('{"cluster_name": "shop", "nodes": {"1": "host=db1 password=%s", "2": "host=db2"}}'
                      % PASSWORD)
    assert monitoring.main(["--config", str(config), "--connect-timeout", "3"]) == OK
    assert capsys.readouterr().out.startswith("SLONY OK - cluster shop: ")
    assert asked == [("shop", [1, 2], 3, ["nodes", "sets", "subscriptions", "lag", "slons", "drift"])]
    assert monitoring.main(["--config", str(config), "--cluster-name", "other"]) == UNKNOWN
    assert "differs from the cluster of" in capsys.readouterr().out
    assert monitoring.main(["--config", str(config), "--conninfo", "1=host=db1"]) == UNKNOWN
    assert "either --config or --conninfo" in capsys.readouterr().out
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  vars:\n    slony_cluster_name: shop\n  children:\n    slony_nodes:\n"
                         "      hosts:\n        db1: {slony_node_id: 1}\n        db2: {slony_node_id: 2}\n")
    assert monitoring.main(["--config", str(inventory)]) == OK
    assert asked[-1][:2] == ("shop", [1, 2])
    assert PASSWORD not in capsys.readouterr().out
