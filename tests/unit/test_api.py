"""The Python API's pure parts: configuration, results, dry runs (no database)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.dany.slony.plugins.module_utils import alembic_ops, api
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import (
    EXEC, WAIT, Plan, Planned, Step)

REPO = Path(__file__).resolve().parents[2]
NODES = {1: "host=db1 dbname=shop user=slony password=s3cret", 2: "host=db2 dbname=shop user=slony"}


def test_nodes_from_a_map_of_conninfos_or_dicts_or_a_list():
    assert api.normalize_nodes(NODES)[2] == {
        "conninfo": NODES[2], "path_conninfo": NODES[2], "comment": None, "provider": None}
    listed = api.normalize_nodes([{"id": "3", "conninfo": "host=db3", "provider": 2,
                                   "path_conninfo": "host=db3.internal"}])
    assert listed == {3: {"conninfo": "host=db3", "path_conninfo": "host=db3.internal",
                          "comment": None, "provider": 2}}
    with pytest.raises(SlonyError, match="node 4 has no conninfo"):
        api.normalize_nodes({4: {"comment": "x"}})
    with pytest.raises(SlonyError, match="at least one node"):
        api.normalize_nodes({})


def test_cluster_validates_without_connecting():
    cluster = api.Cluster("shop", NODES)
    assert cluster.node_ids == [1, 2] and cluster.conninfo(1) == NODES[1]
    assert cluster.mesh_paths() == [
        {"server": 1, "client": 2, "conninfo": NODES[1]},
        {"server": 2, "client": 1, "conninfo": NODES[2]}]
    with pytest.raises(SlonyError, match="invalid cluster_name"):
        api.Cluster("1bad", NODES)
    with pytest.raises(SlonyError, match="not a valid libpq conninfo"):
        api.Cluster("shop", {1: "host=db1 port"})
    with pytest.raises(SlonyError, match="node 7 is not a node of this Cluster"):
        cluster.conninfo(7)


def test_short_config_shape():
    cluster = api.Cluster.from_config({
        "cluster_name": "shop", "nodes": {1: NODES[1], 2: {"conninfo": NODES[2], "provider": 1}},
        "sets": [{"id": 1, "origin": 1, "schemas": ["public"]}]})
    assert cluster.name == "shop" and cluster.node_config[2]["provider"] == 1
    assert cluster.sets == [{"id": 1, "origin": 1, "schemas": ["public"]}]
    with pytest.raises(SlonyError, match="no cluster_name"):
        api.Cluster.from_config({"nodes": NODES})


def test_the_lab_inventory_reads_as_the_cluster_role_reads_it():
    cluster = api.Cluster.from_yaml(str(REPO / "inventory" / "lab.yml"))
    inventory = yaml.safe_load((REPO / "inventory" / "lab.yml").read_text())
    assert cluster.name == inventory["all"]["vars"]["slony_cluster_name"]
    assert cluster.node_ids == [1, 2, 3]
    assert cluster.conninfo(3) == ("host=127.0.0.1 port=54323 dbname=app user=slony "
                                   "password=lab-secret-pw")
    assert cluster.node_config[3]["provider"] == 2 and cluster.node_config[1]["provider"] is None
    assert cluster.node_config[1]["comment"] == "origin"
    assert cluster.sets == inventory["all"]["vars"]["slony_sets"]


def test_inventory_with_templates_or_without_nodes_is_refused():
    inventory = {"all": {"vars": {"slony_cluster_name": "shop"}, "children": {"slony_nodes": {
        "hosts": {"db1": {"slony_node_id": 1, "slony_db_password": "{{ vault_pw }}"}}}}}}
    with pytest.raises(SlonyError, match="does not evaluate templates"):
        api.Cluster.from_config(inventory)
    with pytest.raises(SlonyError, match="no host with slony_node_id"):
        api.Cluster.from_config({"all": {"hosts": {"db1": {"slony_node_id": 1}}}})
    inventory = {"all": {"vars": {"slony_cluster_name": "shop"}, "children": {"slony_nodes": {
        "vars": {"slony_db_name": "shop"},
        "hosts": {"db1": {"slony_node_id": 1, "ansible_host": "10.0.0.1"},
                  "db2": {"slony_node_id": 2, "slony_conninfo": "service=db2"}}}}}}
    cluster = api.Cluster.from_config(inventory)
    assert cluster.conninfo(1) == "host=10.0.0.1 dbname=shop"
    assert cluster.conninfo(2) == "service=db2"
    assert cluster.node_config[2]["comment"] == "Node 2"


class FakeCore:
    """What Cluster.run uses of the core cluster, without a database."""

    def __init__(self, read_only=False):
        self.read_only = read_only
        self.locked = False
        self.queries = []
        self.name = "shop"
        self.namespace = "_shop"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def acquire_run_lock(self, timeout, clock=None):
        self.locked = True

    def render(self, node, query, params=None):
        return "%s %% %r" % (query, params)


def fake_planner(core):
    plan = Plan([Step(EXEC, 1, "do it", slonik="do it;", query="select 1", params=("x",)),
                 Step(WAIT, 1, "wait for node 2")])
    return Planned(plan, {"state": "absent"}, {"state": "present"}, {"origin": 1})


def test_dry_run_returns_the_plan_and_runs_nothing(monkeypatch):
    cluster = api.Cluster("shop", NODES)
    core = FakeCore()
    opened = []
    monkeypatch.setattr(cluster, "connect", lambda read_only=False: opened.append(read_only) or core)
    monkeypatch.setattr(api, "execute_plan", lambda *a, **k: pytest.fail("ran the plan"))
    result = cluster.run(fake_planner, dry_run=True)
    assert result.changed and result.dry_run and not core.locked
    assert opened == [True], "a dry run's sessions are read-only"
    assert result.steps == [api.PlannedStep(1, EXEC, "do it", "select 1 % ('x',)", "do it;"),
                            api.PlannedStep(1, WAIT, "wait for node 2", "-- wait for node 2", None)]
    lines = result.slonik.splitlines()
    assert lines[0] == "cluster name = shop;" and lines[3] == "do it;"
    assert lines[1].startswith("node 1 admin conninfo = '") and "password=********" in lines[1]
    assert lines[2].startswith("node 2 admin conninfo = '") and "host=db2" in lines[2]
    assert "s3cret" not in str(result.as_dict())
    assert result.events == [] and result.before == {"state": "absent"}
    assert result.extra == {"origin": 1}
    assert str(result) == "-- node 1: do it\nselect 1 % ('x',)\n-- node 1: wait for node 2"


def test_real_run_locks_and_executes_with_the_cluster_settings(monkeypatch):
    cluster = api.Cluster("shop", NODES, wait=False, wait_timeout=12, share_dir="/x")
    core = FakeCore()
    seen = {}

    def fake_execute(core_, plan, wait_enabled, timeout, share_dir, clock):
        seen.update(wait=wait_enabled, timeout=timeout, share_dir=share_dir)
        core_.queries.append({"node": 1, "sql": "select 1"})
        return []

    monkeypatch.setattr(cluster, "connect", lambda read_only=False: core)
    monkeypatch.setattr(api, "execute_plan", fake_execute)
    result = cluster.run(fake_planner)
    assert core.locked and not result.dry_run
    assert seen == {"wait": False, "timeout": 12, "share_dir": "/x"}
    assert result.queries == [{"node": 1, "sql": "select 1"}]
    cluster.run(fake_planner, wait=True)
    assert seen["wait"] is True


def test_nothing_to_do_has_no_slonik(monkeypatch):
    cluster = api.Cluster("shop", NODES)
    monkeypatch.setattr(cluster, "connect", FakeCore)
    result = cluster.run(lambda core: Planned(Plan(), {}, {}), dry_run=True)
    assert not result.changed and result.slonik == "" and str(result) == "-- nothing to do"


def test_subscription_entries_take_the_call_defaults():
    assert api.Cluster._subscription(3, 2, True, False) == {
        "receiver": 3, "provider": 2, "forward": True, "omit_copy": False}
    assert api.Cluster._subscription({"receiver": 3, "provider": 1}, 2, False, False) == {
        "receiver": 3, "provider": 1, "forward": False, "omit_copy": False}


# -- dany.alembic_ops ---------------------------------------------------------------------


def test_alembic_settings_from_the_ini_section_and_the_environment():
    section = {"mode": "slony", "cluster_name": "shop", "set_id": "1", "origin": "1",
               "node.1": NODES[1], "node.2": NODES[2], "wait_timeout": "60"}
    cfg = alembic_ops.settings_from_mapping(section, environ={})
    assert (cfg.mode, cfg.cluster_name, cfg.set_id, cfg.origin, cfg.wait_timeout) == \
        ("slony", "shop", 1, 1, 60)
    assert cfg.nodes == NODES
    cfg = alembic_ops.settings_from_mapping(section, environ={
        "DANY_SLONY_MODE": "disabled", "DANY_SLONY_SET": "4",
        "DANY_SLONY_NODES": "1=host=a dbname=x; 3=host=c dbname=x"})
    assert cfg.mode == "disabled" and cfg.set_id == 4
    assert cfg.nodes == {1: "host=a dbname=x", 3: "host=c dbname=x"}
    assert alembic_ops.settings_from_mapping({}, environ={"DANY_SLONY_MODE": "disabled"}).mode \
        == "disabled"
    with pytest.raises(SlonyError, match="mode slony needs cluster_name"):
        alembic_ops.settings_from_mapping({}, environ={})
    with pytest.raises(SlonyError, match="mode must be one of slony, disabled"):
        alembic_ops.Settings(mode="off")
    with pytest.raises(SlonyError, match="no set id"):
        alembic_ops.Settings(cluster_name="shop", nodes=NODES).set_for(None)


def test_alembic_is_imported_lazily_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "alembic", None)  # import alembic -> ImportError
    with pytest.raises(SlonyError, match=r"pip install 'dany\[alembic\]'"):
        alembic_ops.require_alembic()


def test_alembic_ops_never_imports_alembic_at_import_time():
    source = (REPO / "plugins" / "module_utils" / "alembic_ops.py").read_text()
    top_level = [line for line in source.splitlines()
                 if line.startswith(("import ", "from ")) and "alembic" in line]
    assert top_level == []


def test_offline_slonik_text():
    assert alembic_ops._add_slonik("public.t", 1, 1, "t_key") == [
        "set add table (set id = 1, origin = 1, fully qualified name = 'public.t', key = 't_key');"]
    assert alembic_ops._script_slonik("create table t (id int);", 1) == [
        "execute script (event node = 1, sql = '", "    create table t (id int);", "');"]


def test_export_inventory_reads_the_adoption_sections_and_masks_the_admin_conninfo(monkeypatch):
    # One node, no path: its connection comes from the admin conninfo, password masked.
    cluster = api.Cluster("shop", {1: NODES[1]})
    asked = []

    def info(sections=None):
        asked.append(sections)
        return {"cluster_name": "shop", "unreachable_nodes": [], "drift": [],
                "nodes": [{"id": 1, "comment": "origin", "active": True, "failed": False}],
                "paths": [], "sets": [{"id": 1, "origin": 1, "comment": "app", "locked": False}],
                "tables": [{"id": 4, "set": 1, "schema": "public", "name": "t", "key": "t_pkey",
                            "comment": "public.t"}],
                "sequences": [], "subscriptions": []}

    monkeypatch.setattr(cluster, "info", info)
    adoption = cluster.export_inventory(password_variable="vault_shop")
    assert set(asked[0]) >= {"nodes", "paths", "sets", "tables", "sequences", "subscriptions"}
    host = adoption["inventory"]["all"]["children"]["slony_nodes"]["hosts"]["db1"]
    assert host["slony_db_password"] == "{{ vault_shop }}" and host["slony_node_comment"] == "origin"
    assert "s3cret" not in adoption["text"]
    assert yaml.safe_load(adoption["text"])["all"]["vars"]["slony_sets"][0]["tables"] == [
        {"name": "public.t", "id": 4, "key": "t_pkey"}]


@pytest.mark.parametrize("call, planner, expected", [
    (lambda c: c.drop_nodes([3, 2]), "plan_nodes_absent", ([3, 2], None)),
    (lambda c: c.repair_config(2), "plan_repair_config", (2,)),
    (lambda c: c.update_functions(), "plan_update_functions", ([1, 2], None)),
    (lambda c: c.lock_set(1, 1), "plan_set", (1, 1, None, "present", True)),
    (lambda c: c.unlock_set(1, 1), "plan_set", (1, 1, None, "present", False)),
    (lambda c: c.merge_set(1, 2, 1), "plan_set", (2, 1, None, "absent", None, 1)),
    (lambda c: c.set_move_table(1, ["public.t"]), "plan_tables",
     (1, None, ["public.t"], None, None, None, "present", False, True)),
    (lambda c: c.set_move_sequence(1, ["public.s"]), "plan_sequences",
     (1, None, ["public.s"], None, None, None, "present", False, True)),
])
def test_day_two_calls_plan_with_the_core_planners(monkeypatch, call, planner, expected):
    cluster = api.Cluster("shop", NODES)
    seen = []
    monkeypatch.setattr(cluster, "connect", FakeCore)
    monkeypatch.setattr(api, planner, lambda core, *args: seen.append(args) or Planned(Plan()))
    call(cluster)
    assert seen == [expected]


def test_compare_runs_the_comparison_with_the_cluster_timeout(monkeypatch):
    cluster = api.Cluster("shop", NODES, wait_timeout=42)
    seen = {}
    monkeypatch.setattr(cluster, "connect", FakeCore)
    monkeypatch.setattr(api, "compare_data", lambda core, *args, **kw: seen.update(
        args=args, kw=kw) or {"equal": True})
    assert cluster.compare(nodes=[1, 2], chunk_size=50) == {"equal": True}
    assert seen["args"] == ([1, 2], None, None, True, 50) and seen["kw"]["timeout"] == 42
