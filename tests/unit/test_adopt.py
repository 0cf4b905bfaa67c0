# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting a cluster: slony_info's facts (built from hand-made catalogs, no database)
turned into an inventory for the cluster role, its YAML text, and the filter."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys

import jinja2
import pytest
import yaml

try:
    import ansible_collections.dany.slony  # noqa: F401 pylint: disable=unused-import
except ImportError:  # run from a plain checkout: use the tree scripts/bootstrap.sh links
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".build",
                                    "collections"))

from ansible.errors import AnsibleFilterError

from ansible_collections.dany.slony.plugins.filter.conninfo import conninfo as conninfo_filter
from ansible_collections.dany.slony.plugins.filter.slony_inventory import FilterModule
from ansible_collections.dany.slony.plugins.module_utils import adopt as adopt_mod
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Node, Path, Sequence, Set, SetSync, Snapshot, Subscription, Table)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.info import NodeRead, build_facts

PASSWORD = "s3cret pw'x"
HOSTS = {10: "db1", 20: "db2", 30: "db3"}
SECTIONS = ["nodes", "paths", "sets", "tables", "sequences", "subscriptions", "drift"]


def lab_conninfo(node, password=PASSWORD, host=None):
    """The order the cluster role writes (host port dbname user password)."""
    params = [("host", host or HOSTS[node]), ("port", "5432"), ("dbname", "shop"), ("user", "slony")]
    if password is not None:
        params.append(("password", password))
    return " ".join(conninfo_filter(dict([kv])) for kv in params)


CASCADE_PATHS = [(10, 20), (20, 10), (20, 30), (30, 20)]
SETS = [Set(3, 10, None, "shop tables"), Set(7, 20, None, "billing")]
TABLES = [Table(5, 3, "public", "customers", "customers_pkey", "public.customers"),
          Table(17, 3, "public", "settings", "settings_name_key", "settings {{ x }}"),
          Table(9, 3, "public", "orders", "orders_pkey", "orders"),
          Table(21, 7, "billing", "invoices", "invoices_pkey", "billing.invoices")]
SEQUENCES = [Sequence(4, 3, "public", "invoice_number_seq", "public.invoice_number_seq"),
             Sequence(11, 7, "billing", "invoices_id_seq", "ids")]
SUBS = [Subscription(3, 10, 20, True, True), Subscription(3, 20, 30, True, True),
        Subscription(7, 20, 30, False, True)]


def facts_of(nodes=(10, 20, 30), paths=None, subs=None, conninfo=lab_conninfo, connretry=10,
             sets=None, comments=None, failed=()):
    """slony_info's facts of a cluster whose every node has the same catalog."""
    paths = CASCADE_PATHS if paths is None else paths
    path_rows = [Path(s, c, conninfo(s), connretry(s, c) if callable(connretry) else connretry)
                 for s, c in paths]
    subs = SUBS if subs is None else subs
    comments = comments or {}
    sets = SETS if sets is None else sets
    reads = {}
    for node in nodes:
        # Only the nodes holding a set have its tables and sequences (as in Slony).
        held = set(s.id for s in sets if s.origin == node) | set(s.set for s in subs if s.receiver == node)
        snap = Snapshot(node, local_id=node,
                        nodes=[Node(n, True, comments.get(n, "node %d" % n), n in failed) for n in nodes],
                        paths=path_rows, sets=sets, tables=[t for t in TABLES if t.set in held],
                        sequences=[q for q in SEQUENCES if q.set in held], subscriptions=subs,
                        setsyncs=[SetSync(s.set, 10, 5000000100) for s in subs if s.receiver == node])
        reads[node] = NodeRead(node, snap, None)
    return build_facts("shop", "_shop", reads, SECTIONS)


def rendered(value, variables):
    """A value of the inventory as Ansible renders it (Jinja, with dany.slony.conninfo)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["dany.slony.conninfo"] = conninfo_filter
    return env.from_string(value).render(**variables)


# -- the cascade of the integration test ------------------------------------------------------

def test_a_cascade_with_two_sets_and_sparse_ids():
    adoption = adopt_mod.adopt(facts_of())
    inv = adoption["inventory"]
    assert adoption["warnings"] == []
    assert adoption["variables"] == ["vault_slony_db_password"]
    # The paths have passwords: site.yml keeps them there (no change on adoption).
    assert inv["all"]["vars"]["slony_path_passwords"] is True
    assert "slony_path_passwords: true keeps the passwords" in adoption["text"]
    group = inv["all"]["children"]["slony_nodes"]
    # Distinct hosts: the hosts are named after them.
    assert group["hosts"] == {
        "db1": {"slony_node_id": 10, "slony_node_comment": "node 10", "slony_db_host": "db1"},
        "db2": {"slony_node_id": 20, "slony_node_comment": "node 20", "slony_db_host": "db2"},
        "db3": {"slony_node_id": 30, "slony_node_comment": "node 30", "slony_db_host": "db3",
                "slony_provider": 20},
    }
    assert group["vars"] == {"slony_db_port": 5432, "slony_db_name": "shop", "slony_db_user": "slony",
                             "slony_db_password": "{{ vault_slony_db_password }}"}
    avars = inv["all"]["vars"]
    assert avars["slony_cluster_name"] == "shop"
    assert avars["cluster_paths"] == [{"server": s, "client": c} for s, c in CASCADE_PATHS]
    assert "cluster_path_connretry" not in avars
    assert avars["slony_sets"] == [
        {"id": 3, "origin": 10, "comment": "shop tables",
         "tables": [{"name": "public.customers", "id": 5, "key": "customers_pkey"},
                    {"name": "public.orders", "id": 9, "key": "orders_pkey", "comment": "orders"},
                    {"name": "public.settings", "id": 17, "key": "settings_name_key",
                     "comment": "{% raw %}settings {{ x }}{% endraw %}"}],
         "sequences": [{"name": "public.invoice_number_seq", "id": 4}],
         "subscribers": [20, 30], "forward": True},
        {"id": 7, "origin": 20, "comment": "billing",
         "tables": [{"name": "billing.invoices", "id": 21, "key": "invoices_pkey"}],
         "sequences": [{"name": "billing.invoices_id_seq", "id": 11, "comment": "ids"}],
         "subscribers": [30], "forward": False},
    ]
    assert inv["all"]["hosts"]["localhost"]["ansible_connection"] == "local"


def test_the_text_holds_no_password_and_is_the_inventory():
    adoption = adopt_mod.adopt(facts_of())
    text = adoption["text"]
    assert PASSWORD not in text and PASSWORD not in json.dumps(adoption)
    assert "s3cret" not in text
    assert yaml.safe_load(text) == json.loads(json.dumps(adoption["inventory"]))
    assert text.startswith("---\n# Slony-I cluster shop")
    assert "vault_slony_db_password" in text.split("all:")[0]
    # Flow style for the members, as inventory/lab.yml writes them.
    assert "- {name: public.customers, id: 5, key: customers_pkey}" in text
    assert "subscribers: [20, 30]" in text
    # The same facts, the same text (a second adopt.yml run changes nothing).
    assert adopt_mod.adopt(facts_of())["text"] == text


def test_the_comment_with_jinja_renders_to_itself():
    entry = adopt_mod.adopt(facts_of())["inventory"]["all"]["vars"]["slony_sets"][0]["tables"][2]
    assert rendered(entry["comment"], {}) == "settings {{ x }}"


# -- connections --------------------------------------------------------------------------------

def test_a_conninfo_the_role_cannot_rebuild_from_parts_is_kept_whole():
    def written(node):
        return "dbname=shop host=%s user=slony sslmode=require password=%s" % (
            HOSTS[node], conninfo_filter({"password": PASSWORD}).split("=", 1)[1])

    adoption = adopt_mod.adopt(facts_of(conninfo=written))
    hosts = adoption["inventory"]["all"]["children"]["slony_nodes"]["hosts"]
    group = adoption["inventory"]["all"]["children"]["slony_nodes"]["vars"]
    assert group == {"slony_db_password": "{{ vault_slony_db_password }}"}
    for host in hosts.values():
        node = host["slony_node_id"]
        assert set(host) >= {"slony_conninfo"} and "slony_db_host" not in host
        assert PASSWORD not in host["slony_conninfo"]
        # Rendered the way Ansible does, it is the catalog's conninfo byte for byte.
        assert rendered(host["slony_conninfo"], {"slony_db_password": PASSWORD}) == written(node)


def test_conninfos_without_password_reference_no_variable():
    adoption = adopt_mod.adopt(facts_of(conninfo=lambda n: lab_conninfo(n, password=None)))
    assert adoption["variables"] == []
    assert "slony_db_password" not in json.dumps(adoption["inventory"])
    assert "slony_path_passwords" not in adoption["inventory"]["all"]["vars"]
    assert "no password" in adoption["text"]


def test_same_hosts_make_node_names_and_host_names_override():
    same = adopt_mod.adopt(facts_of(conninfo=lambda n: lab_conninfo(n, host="127.0.0.1")))
    group = same["inventory"]["all"]["children"]["slony_nodes"]
    assert sorted(group["hosts"]) == ["node10", "node20", "node30"]
    assert group["vars"]["slony_db_host"] == "127.0.0.1"
    named = adopt_mod.adopt(facts_of(), host_names={"10": "primary"}, node_vars={"ansible_user": "ops"})
    group = named["inventory"]["all"]["children"]["slony_nodes"]
    assert sorted(group["hosts"]) == ["db2", "db3", "primary"]
    assert group["vars"]["ansible_user"] == "ops"
    with pytest.raises(SlonyError, match="same inventory host name"):
        adopt_mod.adopt(facts_of(), host_names={10: "db2"})


def test_a_full_mesh_is_the_default_and_its_connretry_is_kept():
    mesh = [(s, c) for s in (10, 20, 30) for c in (10, 20, 30) if s != c]
    avars = adopt_mod.adopt(facts_of(paths=mesh))["inventory"]["all"]["vars"]
    assert "cluster_paths" not in avars and "cluster_path_connretry" not in avars
    avars = adopt_mod.adopt(facts_of(paths=mesh, connretry=15))["inventory"]["all"]["vars"]
    assert "cluster_paths" not in avars and avars["cluster_path_connretry"] == 15
    # One path with another connretry: the explicit list, that path with its own.
    odd = adopt_mod.adopt(facts_of(paths=mesh, connretry=lambda s, c: 30 if (s, c) == (30, 10) else 15))
    avars = odd["inventory"]["all"]["vars"]
    assert avars["cluster_path_connretry"] == 15
    assert [p for p in avars["cluster_paths"] if len(p) > 2] == [{"server": 30, "client": 10, "connretry": 30}]


def test_a_path_with_its_own_conninfo_is_listed_with_it():
    paths = CASCADE_PATHS + [(10, 30)]
    facts = facts_of(paths=paths)
    for row in facts["paths"]:
        if (row["server"], row["client"]) == (10, 30):
            row["conninfo_verbatim"] = lab_conninfo(10, password="********", host="db1-public")
    avars = adopt_mod.adopt(facts)["inventory"]["all"]["vars"]
    special = [p for p in avars["cluster_paths"] if "conninfo" in p]
    assert [(p["server"], p["client"]) for p in special] == [(10, 30)]
    assert rendered(special[0]["conninfo"], {"slony_db_password": PASSWORD}) == \
        lab_conninfo(10, host="db1-public")


def test_a_path_known_only_normalised_is_warned_about():
    facts = facts_of()
    for row in facts["paths"]:
        row["conninfo_verbatim"] = None
    adoption = adopt_mod.adopt(facts)
    assert any("not known as written" in w for w in adoption["warnings"])
    # The normalised conninfo (libpq's order) cannot be rebuilt from parts: kept whole.
    hosts = adoption["inventory"]["all"]["children"]["slony_nodes"]["hosts"]
    assert all("slony_conninfo" in h for h in hosts.values())


def test_a_node_without_paths_takes_its_admin_conninfo_masked():
    facts = facts_of(nodes=(10,), paths=[], subs=[], sets=[SETS[0]])
    adoption = adopt_mod.adopt(facts, admin_conninfo={10: lab_conninfo(10)})
    host = adoption["inventory"]["all"]["children"]["slony_nodes"]["hosts"]["db1"]
    assert host["slony_db_password"] == "{{ vault_slony_db_password }}"
    assert PASSWORD not in adoption["text"]
    with pytest.raises(SlonyError, match="connection is unknown"):
        adopt_mod.adopt(facts)


# -- what the role cannot express -----------------------------------------------------------

def test_a_node_with_two_providers_gets_a_providers_map_on_the_odd_set():
    subs = [Subscription(3, 10, 20, True, True), Subscription(3, 20, 30, True, True),
            Subscription(7, 20, 30, True, True), Subscription(8, 10, 30, True, True)]
    sets = SETS + [Set(8, 10, None, "more")]
    adoption = adopt_mod.adopt(facts_of(subs=subs, sets=sets))
    hosts = adoption["inventory"]["all"]["children"]["slony_nodes"]["hosts"]
    assert hosts["db3"]["slony_provider"] == 20
    by_id = dict((e["id"], e) for e in adoption["inventory"]["all"]["vars"]["slony_sets"])
    assert by_id[8]["providers"] == {30: 10}
    assert "providers" not in by_id[3] and "providers" not in by_id[7]
    assert adoption["warnings"] == []
    assert "providers: {'30': 10}" in adoption["text"]


def test_mixed_forward_flags_become_a_map():
    subs = [Subscription(3, 10, 20, True, True), Subscription(3, 20, 30, False, True)]
    adoption = adopt_mod.adopt(facts_of(subs=subs, sets=[SETS[0]]))
    assert adoption["inventory"]["all"]["vars"]["slony_sets"][0]["forward"] == {20: True, 30: False}
    assert adoption["warnings"] == []
    assert "forward: {'20': true, '30': false}" in adoption["text"]


def test_failed_and_unreadable_nodes_and_drift_are_warned_about():
    facts = facts_of(failed=(30,))
    facts["unreachable_nodes"] = [{"node": 30, "error": "cannot connect"}]
    facts["drift"] = [{"message": "path 20 -> 30: missing on node 10"}]
    adoption = adopt_mod.adopt(facts)
    assert sorted(h["slony_node_id"] for h in
                  adoption["inventory"]["all"]["children"]["slony_nodes"]["hosts"].values()) == [10, 20]
    text = " ".join(adoption["warnings"])
    assert "node 30 could not be read" in text and "marked failed" in text and "missing on node 10" in text


def test_bad_input_is_refused():
    with pytest.raises(SlonyError, match="sections"):
        adopt_mod.adopt({"cluster_name": "shop", "nodes": []})
    with pytest.raises(SlonyError, match="password_variable"):
        adopt_mod.adopt(facts_of(), password_variable="not a name")
    with pytest.raises(SlonyError, match="node_vars"):
        adopt_mod.adopt(facts_of(), node_vars=["x"])


# -- the filter ---------------------------------------------------------------------------------

def test_the_filter_returns_unsafe_values_and_clear_errors():
    slony_inventory = FilterModule().filters()["slony_inventory"]
    result = slony_inventory(facts_of(), password_variable="vault_shop_pw")
    vars_ = result["inventory"]["all"]["children"]["slony_nodes"]["vars"]
    assert vars_["slony_db_password"] == "{{ vault_shop_pw }}"
    assert result["variables"] == ["vault_shop_pw"]
    with pytest.raises(AnsibleFilterError, match="slony_info"):
        slony_inventory("not facts")
    with pytest.raises(AnsibleFilterError, match="sections"):
        slony_inventory({"cluster_name": "shop"})
