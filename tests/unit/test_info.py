# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""slony_info's pure logic: filter, drift, configuration in flight, unreplicated relations
and the assembly of the facts, on hand-made catalogs (no database)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys

import pytest

try:
    import ansible_collections.dany.slony  # noqa: F401 pylint: disable=unused-import
except ImportError:  # run from a plain checkout: use the tree scripts/bootstrap.sh links
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".build",
                                    "collections"))

from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Path, Sequence, Set, SetSync, Snapshot, Subscription, Table)
from ansible_collections.dany.slony.plugins.module_utils import info as info_mod
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.info import (
    FIRST_SEQNO, SECTIONS, NodeRead, build_facts, compared_nodes, config_in_flight,
    find_drift, holds_set, select_sections, unreplicated_relations)

PASSWORD = "s3cret-pw"
OTHER_PASSWORD = "0ther-pw"


def conninfo(node, password=PASSWORD):
    return "host=db%d dbname=app user=slony password=%s" % (node, password)


TABLES = [Table(1, 1, "public", "customers", "customers_pkey", "c"),
          Table(2, 1, "public", "orders", "orders_pkey", "o")]
SEQUENCES = [Sequence(1, 1, "public", "invoice_number_seq", "s")]


def snapshot(node, nodes=(1, 2, 3), paths=None, sets=None, subs=None, tables=None,
             sequences=None, setsyncs=None, failed=()):
    """Node ``node``'s catalog of a healthy cluster: set 1 from node 1 to 2 and 3."""
    if paths is None:
        paths = [Path(s, c, conninfo(s), 10) for s in nodes for c in nodes if s != c]
    if sets is None:
        sets = [Set(1, 1, None, "app")]
    if subs is None:
        subs = [Subscription(1, 1, r, True, True) for r in nodes if r != 1]
    holder = node == 1 or any(s.receiver == node and s.active for s in subs)
    if setsyncs is None:
        setsyncs = [SetSync(1, 1, 5000000100)] if node != 1 and holder else []
    if tables is None:
        tables = TABLES if holder else []
    if sequences is None:
        sequences = SEQUENCES if holder else []
    return Snapshot(node, local_id=node,
                    nodes=[Node(n, True, "node %d" % n, n in failed) for n in nodes],
                    paths=paths, sets=sets, tables=tables, sequences=sequences,
                    subscriptions=subs, setsyncs=setsyncs)


def cluster(overrides=None):
    """{node: snapshot} with per-node overrides: overrides[node] = dict of snapshot()."""
    overrides = overrides or {}
    return dict((n, snapshot(n, **overrides.get(n, {}))) for n in (1, 2, 3))


# -- filter -----------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    (None, list(SECTIONS)),
    ([], list(SECTIONS)),
    (["lag", "slons"], ["lag", "slons"]),
    (["slons", "lag"], ["lag", "slons"]),
    (["!unreplicated"], [s for s in SECTIONS if s != "unreplicated"]),
    (["!unreplicated", "!drift"], [s for s in SECTIONS if s not in ("unreplicated", "drift")]),
    (["s*"], ["sets", "sequences", "subscriptions", "slons"]),
    (["*", "!s*"], [s for s in SECTIONS if not s.startswith("s")]),
    (["lag", "!lag"], []),
    ([" lag ", ""], ["lag"]),
])
def test_filter_selects_sections(given, expected):
    assert select_sections(given) == [s for s in SECTIONS if s in expected]


@pytest.mark.parametrize("bad", [["lags"], ["!nothing"], ["x*"]])
def test_filter_rejects_unknown_sections(bad):
    with pytest.raises(SlonyError) as err:
        select_sections(bad)
    assert "matches no section" in str(err.value) and "unreplicated" in str(err.value)


# -- drift ------------------------------------------------------------------------------

def test_identical_catalogs_have_no_drift():
    assert find_drift(cluster()) == []


def test_what_legitimately_differs_is_not_drift():
    snaps = cluster({
        # The origin sees the subscriptions active at once; node 3 still copies (no
        # sl_setsync, no tables yet: not a holder of set 1).
        3: dict(subs=[Subscription(1, 1, 2, True, True), Subscription(1, 1, 3, True, False)],
                tables=[], sequences=[], setsyncs=[]),
        # LOCK SET marks the set on the origin only.
        1: dict(sets=[Set(1, 1, 12345, "app")]),
    })
    # Node 2 and node 3 hold different listen entries: derived, not compared.
    snaps[2].listens = [(1, 1, 2)]
    assert find_drift(snaps) == []


def test_a_path_missing_on_one_node_is_reported():
    paths = [Path(s, c, conninfo(s), 10) for s in (1, 2, 3) for c in (1, 2, 3)
             if s != c and (s, c) != (2, 3)]
    drift = find_drift(cluster({1: dict(paths=paths)}))
    assert len(drift) == 1
    entry = drift[0]
    assert entry["kind"] == "path" and entry["id"] == "2->3"
    assert entry["missing_on"] == [1]
    assert entry["message"].startswith("path 2 -> 3: missing on node 1; present on nodes 2, 3")
    assert entry["values"][0] == {"node": 1, "value": None}
    assert PASSWORD not in json.dumps(drift)


def test_a_conninfo_differing_only_in_its_password_is_reported_without_it():
    paths = [Path(s, c, conninfo(s, OTHER_PASSWORD if (s, c) == (1, 2) else PASSWORD), 10)
             for s in (1, 2, 3) for c in (1, 2, 3) if s != c]
    drift = find_drift(cluster({3: dict(paths=paths)}))
    assert [d["id"] for d in drift] == ["1->2"]
    text = json.dumps(drift)
    assert "differ in a password" in drift[0]["message"]
    assert PASSWORD not in text and OTHER_PASSWORD not in text


def test_set_origin_and_subscription_provider_differences():
    snaps = cluster({
        3: dict(sets=[Set(1, 2, None, "app")],
                subs=[Subscription(1, 1, 2, True, True), Subscription(1, 2, 3, False, True)]),
    })
    drift = dict((d["kind"], d) for d in find_drift(snaps))
    assert set(drift) == set(["set", "subscription"])
    assert drift["set"]["message"] == ("set 1: origin=1 comment='app' on nodes 1, 2; "
                                       "origin=2 comment='app' on node 3")
    assert drift["subscription"]["id"] == "1:3"
    assert "provider=2 forward=False on node 3" in drift["subscription"]["message"]


def test_a_node_unknown_to_another_is_reported():
    snaps = cluster({2: dict(nodes=(1, 2))})
    # Node 2 has no path to/from 3 either, and no subscription of 3.
    snaps[2].paths = cluster()[2].paths
    snaps[2].subscriptions = cluster()[2].subscriptions
    drift = find_drift(snaps)
    assert [(d["kind"], d["id"], d["missing_on"]) for d in drift] == [("node", "3", [2])]


def test_tables_are_compared_among_the_holders_only():
    # Node 3 finished its copy but lacks table 2: drift. Node 2 is not subscribed at all
    # and has no tables: not drift (only its missing subscription is).
    snaps = cluster({
        1: dict(subs=[Subscription(1, 1, 3, True, True)]),
        2: dict(subs=[Subscription(1, 1, 3, True, True)]),
        3: dict(subs=[Subscription(1, 1, 3, True, True)], tables=TABLES[:1]),
    })
    assert not holds_set(snaps[2], 1) and holds_set(snaps[3], 1) and holds_set(snaps[1], 1)
    drift = find_drift(snaps)
    assert [(d["kind"], d["id"], d["missing_on"]) for d in drift] == [("table", "2", [3])]


def test_a_table_key_difference_is_reported():
    tables = [TABLES[0], TABLES[1]._replace(key="orders_other_key")]
    drift = find_drift(cluster({2: dict(tables=tables)}))
    assert [(d["kind"], d["id"]) for d in drift] == [("table", "2")]
    assert "key='orders_other_key'" in drift[0]["message"]


def test_rows_for_a_set_the_node_does_not_hold_are_reported():
    # Node 3 is not subscribed any more but kept the sequence row.
    subs = [Subscription(1, 1, 2, True, True)]
    snaps = cluster({1: dict(subs=subs), 2: dict(subs=subs),
                     3: dict(subs=subs, tables=[], sequences=SEQUENCES, setsyncs=[])})
    drift = find_drift(snaps)
    assert len(drift) == 1
    assert drift[0]["kind"] == "sequence" and "catalog of node 3" in drift[0]["message"]


def test_failed_nodes_are_not_compared():
    snaps = cluster(dict((n, dict(failed=(3,))) for n in (1, 2)))
    snaps[3] = snapshot(3, sets=[])  # a failed node's stale catalog
    assert compared_nodes(snaps) == [1, 2]
    # Node 3's catalog (no set, itself not failed) is not held against the others.
    assert find_drift(snaps) == []


# -- configuration in flight ------------------------------------------------------------

def test_config_in_flight_names_the_nodes_behind():
    health = {
        1: {"last_config_event": {"seqno": 5000000050, "type": "STORE_PATH", "at": "t"},
            "processed": {2: 5000000200, 3: 5000000300}},
        2: {"last_config_event": None, "processed": {1: 5000000050, 3: 5000000300}},
        3: {"last_config_event": {"seqno": 5000000300, "type": "SYNC?", "at": "t"},
            "processed": {1: 5000000049, 2: 5000000200}},
    }
    assert config_in_flight(health, [1, 2, 3]) == [
        {"origin": 1, "seqno": 5000000050, "type": "STORE_PATH", "at": "t",
         "not_processed_by": [3]}]
    assert config_in_flight(health, [1, 2]) == []


# -- unreplicated -----------------------------------------------------------------------

def test_unreplicated_relations():
    rows = [
        ("public", "customers", "r", 1, None, False, "customers_pkey", None, False),
        ("public", "audit_log", "r", None, None, False, None, None, False),
        ("public", "events_2024", "r", None, None, False, "events_2024_pkey", None, True),
        ("public", "customers_id_seq", "S", None, None, False, None, "public.customers.id", False),
        ("public", "invoice_number_seq", "S", None, 1, False, None, None, False),
        ("pg_catalog", "pg_class", "r", None, None, False, "pg_class_oid_index", None, False),
        ("information_schema", "sql_parts", "r", None, None, False, None, None, False),
        ("pg_toast", "pg_toast_1", "r", None, None, False, None, None, False),
        ("pg_temp_3", "scratch", "r", None, None, False, None, None, False),
        ("_shop", "sl_node", "r", None, None, False, "sl_node-pkey", None, False),
        ("public", "extension_table", "r", None, None, True, None, None, False),
    ]
    assert unreplicated_relations(1, rows, "_shop") == [
        {"node": 1, "schema": "public", "name": "audit_log", "kind": "table", "key": None,
         "partition": False},
        {"node": 1, "schema": "public", "name": "events_2024", "kind": "table",
         "key": "events_2024_pkey", "partition": True},
        {"node": 1, "schema": "public", "name": "customers_id_seq", "kind": "sequence",
         "owned_by": "public.customers.id"},
    ]


# -- assembling the facts -----------------------------------------------------------------

def health(node, lag=(), running=True, processed=None):
    return {"lag": list(lag), "nodelock": [{"backend_pid": 100 + node, "alive": running}],
            "components": [{"actor": "local_sync", "age_seconds": 0.5}],
            "last_config_event": None, "processed": processed or {}}


def lag_row(receiver, last, confirmed, seconds):
    return {"receiver": receiver, "last_event": last, "last_event_at": "t1",
            "confirmed": confirmed, "confirmed_event_at": "t0", "lag_seconds": seconds}


def reads_of_healthy_cluster():
    snaps = cluster({3: dict(subs=[Subscription(1, 1, 2, True, True),
                                   Subscription(1, 1, 3, True, False)],
                             tables=[], sequences=[], setsyncs=[])})
    return {
        1: NodeRead(1, snaps[1], health(1, [lag_row(2, FIRST_SEQNO + 90, FIRST_SEQNO + 89, 0.4),
                                            lag_row(3, FIRST_SEQNO + 90, 0, 30.0)]),
                    relations=[("public", "audit_log", "r", None, None, False, None, None,
                                False)]),
        2: NodeRead(2, snaps[2], health(2, [lag_row(1, FIRST_SEQNO + 5, FIRST_SEQNO + 5, 1.0)])),
        3: NodeRead(3, snaps[3], health(3, running=False)),
        4: NodeRead(4, error="cannot connect to node 4 (host=db4 password=********): refused"),
    }


def test_build_facts_of_a_cluster():
    facts = build_facts("shop", "_shop", reads_of_healthy_cluster())
    assert facts["sections"] == list(SECTIONS)
    assert facts["unreachable_nodes"] == [
        {"node": 4, "error": "cannot connect to node 4 (host=db4 password=********): refused"}]
    nodes = dict((n["id"], n) for n in facts["nodes"])
    assert nodes[4]["reachable"] is False and nodes[4]["in_admin_conninfo"] is True
    assert nodes[4]["comment"] is None and nodes[1]["comment"] == "node 1"
    assert [(p["server"], p["client"], p["source"]) for p in facts["paths"]][:2] == [
        (1, 2, 2), (1, 3, 3)]
    assert PASSWORD not in json.dumps(facts)
    assert facts["sets"] == [{"id": 1, "origin": 1, "comment": "app", "locked": False,
                              "tables": 2, "sequences": 1, "subscribers": [2, 3],
                              "source": 1}]
    assert [t["name"] for t in facts["tables"]] == ["customers", "orders"]
    subs = dict((s["receiver"], s) for s in facts["subscriptions"])
    assert subs[2]["complete"] is True and subs[2]["last_sync"] == 5000000100
    # The origin says active; the receiver's own catalog says the copy is not done.
    assert subs[3]["active"] is False and subs[3]["complete"] is False
    lag = dict(((r["origin"], r["receiver"]), r) for r in facts["lag"])
    assert lag[(1, 2)]["lag_events"] == 1 and lag[(1, 2)]["sets"] == [1]
    assert lag[(1, 2)]["subscriptions_complete"] is True
    # Never confirmed anything (the seqno 0 row of enableNode_int): every event counts.
    assert lag[(1, 3)]["confirmed"] is None and lag[(1, 3)]["lag_events"] == 90
    assert lag[(1, 3)]["subscriptions_complete"] is False
    assert lag[(1, 3)]["receiver_slon_running"] is False
    assert lag[(2, 1)]["sets"] == [] and lag[(2, 1)]["subscriptions_complete"] is None
    slons = dict((s["node"], s) for s in facts["slons"])
    assert slons[1]["running"] is True and slons[1]["backend_pid"] == 101
    assert slons[3]["running"] is False and slons[3]["backend_pid"] is None
    assert slons[4]["running"] is None and "cannot connect" in slons[4]["error"]
    assert facts["drift"] == [] and facts["compared_nodes"] == [1, 2, 3]
    assert [(u["node"], u["name"]) for u in facts["unreplicated"]] == [(1, "audit_log")]


def test_build_facts_returns_only_the_selected_sections():
    facts = build_facts("shop", "_shop", reads_of_healthy_cluster(), ["lag", "drift"])
    assert set(facts) == set(["cluster_name", "sections", "unreachable_nodes", "lag", "drift",
                              "config_in_flight", "compared_nodes"])


def test_build_facts_with_no_node_readable():
    reads = {1: NodeRead(1, error="down"), 2: NodeRead(2, error="down")}
    facts = build_facts("shop", "_shop", reads)
    assert [u["node"] for u in facts["unreachable_nodes"]] == [1, 2]
    assert facts["lag"] == [] and facts["drift"] == [] and facts["sets"] == []
    assert [s["running"] for s in facts["slons"]] == [None, None]


def test_every_section_is_built_from_the_reads_alone():
    # Each section has its builder, and each builds from what was read (a NodeRead
    # holds plain data: no connection is reachable from it).
    reads = reads_of_healthy_cluster()
    for section in SECTIONS:
        facts = build_facts("shop", "_shop", reads, [section])
        assert section in facts, section
        assert set(facts) - set(["cluster_name", "sections", "unreachable_nodes", section]) \
            <= set(["config_in_flight", "compared_nodes"])
    view = info_mod.ReadView(reads, "_shop")
    assert view.order == [1, 2, 3] and view.set_origin == {1: 1}
    assert view.completion(1, 2) == (True, True, 5000000100)
    assert view.completion(1, 4) == (None, None, None)


# -- conninfos as written -----------------------------------------------------------------

@pytest.mark.parametrize("written, shown", [
    ("host=db1 port=5432 dbname=app user=slony password=pw", "host=db1 port=5432 dbname=app user=slony password=********"),
    ("dbname=app password=pw host=db1", "dbname=app password=******** host=db1"),
    # Written as libpq's quoting rules (make_dsn) write them: quoted for a space, a quote
    # or a backslash escaped.
    ("host=db1 password='p w'", "host=db1 password=********"),
    ("host=db1 password=p\\'w", "host=db1 password=********"),
    ("host='db 1'  dbname=app", "host='db 1'  dbname=app"),
    ("host=db1", "host=db1"),
    # Written otherwise: the text cannot be rebuilt from the password.
    ("host=db1 password = pw", None),
    ("host=db1 password='pw'", None),
    ("postgresql://slony:pw@db1/app", None),
    ("host=db1 password='unterminated", None),
    ("host=db1 = x", None),
])
def test_verbatim_conninfo(written, shown):
    assert info_mod.verbatim_conninfo(written) == shown


def test_paths_have_their_conninfo_verbatim():
    written = "user=slony host=db1 password=%s" % PASSWORD
    odd = "host=db2 password = '%s'" % PASSWORD
    paths = [Path(1, 2, written, 10), Path(2, 1, odd, 10)]
    snaps = dict((n, snapshot(n, nodes=(1, 2), paths=paths)) for n in (1, 2))
    reads = dict((n, NodeRead(n, snaps[n], health(n))) for n in (1, 2))
    facts = build_facts("shop", "_shop", reads, ["paths"])
    by_key = dict(((p["server"], p["client"]), p) for p in facts["paths"])
    assert by_key[(1, 2)]["conninfo_verbatim"] == "user=slony host=db1 password=********"
    assert by_key[(1, 2)]["conninfo"] == "user=slony password=******** host=db1"
    assert by_key[(2, 1)]["conninfo_verbatim"] is None
    assert PASSWORD not in json.dumps(facts)


def test_a_verbatim_conninfo_still_holding_a_known_secret_is_not_shown():
    # The admin password is also the user name here: masking the password leaves it.
    paths = [Path(1, 2, "host=db1 user=%s password=%s" % (PASSWORD, PASSWORD), 10)]
    snaps = dict((n, snapshot(n, nodes=(1, 2), paths=paths)) for n in (1, 2))
    reads = dict((n, NodeRead(n, snaps[n], health(n))) for n in (1, 2))

    def redact_text(text):
        return text.replace(PASSWORD, "********")

    facts = build_facts("shop", "_shop", reads, ["paths"], redact_text=redact_text)
    assert facts["paths"][0]["conninfo_verbatim"] is None
