"""The Python API (`dany.api`) against the lab: the documented examples run for real, every
call is idempotent, and a dry run changes nothing.

`dany` is imported as pip installs it: a directory holding a `dany` link to
plugins/module_utils is put first on sys.path (tests/integration/test_api_package.py
checks the real wheel).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "python-api.md"
README = REPO / "README.md"
EXAMPLE_RE = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)```", re.S)
NODES_LINE_RE = re.compile(r"^nodes = \{.*\}$", re.M)


@pytest.fixture
def dany(tmp_path, monkeypatch):
    (tmp_path / "dany").symlink_to(REPO / "plugins" / "module_utils")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n == "dany" or n.startswith("dany.")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("dany.api")


def examples(text):
    return dict(EXAMPLE_RE.findall(text))


def catalog(db, node, table, cluster="shop"):
    return db.query(node, 'select * from "_%s".%s order by 1' % (cluster, table))


def test_documented_examples_run_for_real(dany, make_fresh_db, make_slons, capsys):
    blocks = examples(DOC.read_text())
    assert set(blocks) == {"mesh", "pg_class"}
    readme = examples(README.read_text())
    for name, code in readme.items():  # the README section repeats the doc's examples
        assert code == blocks[name], "README example %s differs from docs/python-api.md" % name
    db = make_fresh_db(cluster_name="shop")
    namespace = {}
    mesh = NODES_LINE_RE.sub("nodes = %r" % (db.admin_conninfo,), blocks["mesh"])
    assert mesh != blocks["mesh"]
    exec(compile(mesh, "mesh example", "exec"), namespace)
    assert [row[0] for row in catalog(db, 1, "sl_node")] == [1, 2, 3]
    # Without slons node 1 only knows the paths it is the client of.
    assert [row[:2] for row in catalog(db, 1, "sl_path")] == [(2, 1), (3, 1)]

    make_slons(db, "shop").start()
    exec(compile(blocks["pg_class"], "pg_class example", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "setaddtable" in printed.lower() and "set add table" in printed
    tables = ["public.customers", "public.orders", "public.products"]
    assert namespace["tables"] == tables
    for node in (1, 2, 3):
        assert db.query(node, 'select tab_nspname || \'.\' || tab_relname from "_shop".sl_table '
                              'order by 1') == [(t,) for t in tables]
    assert db.query(1, 'select sub_receiver, sub_active from "_shop".sl_subscribe '
                       'order by 1') == [(2, True), (3, True)]

    cluster = namespace["cluster"]
    db.query(1, "insert into public.customers (name, email) values ('api', 'api@example.org')")
    synced = cluster.sync(1)
    assert [e["type"] for e in synced.events] == ["SYNC"]
    for node in (2, 3):
        assert db.scalar(node, "select count(*) from public.customers where name = 'api'") == 1


def test_every_call_is_idempotent_and_a_dry_run_changes_nothing(dany, make_fresh_db,
                                                                make_slons):
    db = make_fresh_db(cluster_name="shop")
    cluster = dany.Cluster("shop", {n: {"conninfo": c, "comment": "node %d" % n}
                                    for n, c in db.admin_conninfo.items()}, wait_timeout=120)
    planned = cluster.store_nodes(dry_run=True)
    assert planned.changed and planned.dry_run and not planned.events
    assert {s.node for s in planned.steps} == {1, 2, 3}
    assert "init cluster (id = 1" in planned.slonik and db.lab.password not in planned.slonik
    assert not db.query(1, "select 1 from pg_namespace where nspname = '_shop'")

    assert cluster.store_nodes(wait=False).changed
    assert cluster.store_paths(wait=False).changed
    make_slons(db, "shop").start()
    assert cluster.create_set(1, 1, "api").changed
    assert cluster.set_add_table(1, schemas=["billing"]).changed
    assert cluster.set_add_sequence(1, ["public.invoice_number_seq"]).changed
    assert cluster.subscribe(1, 2).changed
    assert cluster.subscribe(1, 3, provider=2).changed

    # Again: nothing to do, nothing sent.
    again = [cluster.store_nodes(), cluster.store_path(1, 2), cluster.store_paths(),
             cluster.create_set(1, 1, "api"), cluster.set_add_table(1, schemas=["billing"]),
             cluster.set_add_sequence(1, ["public.invoice_number_seq"]),
             cluster.subscribe(1, [2, {"receiver": 3, "provider": 2}])]
    assert [r.changed for r in again] == [False] * len(again)
    assert all(not r.events and r.slonik == "" for r in again)

    before = {node: catalog(db, node, "sl_table") for node in (1, 2, 3)}
    dry = cluster.set_add_table(1, ["public.customers"], dry_run=True)
    assert dry.changed and dry.steps and not dry.events
    for step in dry.steps:
        assert isinstance(step.node, int) and step.sql and step.description
    assert any(s.slonik and "set add table" in s.slonik for s in dry.steps)
    assert any("setaddtable" in s.sql.lower() for s in dry.steps)
    assert {node: catalog(db, node, "sl_table") for node in (1, 2, 3)} == before

    # DDL everywhere, a live addition to the subscribed set, then its removal.
    script = cluster.execute_script("create table public.api_t (id int primary key, v text);")
    assert script.changed and script.extra["nodes"] == [1, 2, 3]
    for node in (1, 2, 3):
        assert db.scalar(node, "select to_regclass('public.api_t') is not null") is True
    assert cluster.set_add_table(1, ["public.api_t"]).changed
    db.query(1, "insert into public.api_t values (1, 'one')")
    cluster.sync(1)
    assert db.scalar(3, "select v from public.api_t where id = 1") == "one"
    assert cluster.set_drop_table(1, ["public.api_t"]).changed
    assert not cluster.set_drop_table(1, ["public.api_t"]).changed
    assert db.scalar(1, "select count(*) from \"_shop\".sl_table where tab_relname = 'api_t'") == 0

    facts = cluster.info(["nodes", "subscriptions"])
    assert sorted(n["id"] for n in facts["nodes"]) == [1, 2, 3]

    assert cluster.unsubscribe(1, 3).changed
    assert not cluster.unsubscribe(1, 3).changed
    assert db.query(1, 'select sub_receiver from "_shop".sl_subscribe') == [(2,)]

    with pytest.raises(dany.SlonyError) as err:
        cluster.set_add_table(1, ["public.audit_log"])
    assert "audit_log" in str(err.value)


def test_converge_from_the_inventory_shape(dany, make_fresh_db, make_slons):
    """What the cluster role does, from a config in the shape of inventory/lab.yml."""
    db = make_fresh_db(cluster_name="shop")
    nodes = {n: {"conninfo": c, "provider": 2 if n == 3 else None}
             for n, c in db.admin_conninfo.items()}
    sets = [{"id": 1, "origin": 1, "schemas": ["public", "billing"],
             "exclude": [r"^public\.audit_log$", r"^public\.settings$", r"^public\.events"],
             "tables": [{"name": "public.settings", "key": "settings_name_key"}],
             "sequence_schemas": ["public", "billing"]}]
    cluster = dany.Cluster.from_config({"cluster_name": "shop", "nodes": nodes, "sets": sets},
                                       wait_timeout=120)
    # converge() first stores the nodes and paths, then needs the slons for the sets: do
    # that first part alone, start the slons, then converge.
    assert cluster.store_nodes(wait=False).changed and cluster.store_paths(wait=False).changed
    make_slons(db, "shop").start()
    results = cluster.converge()
    assert [r.changed for r in results] == [False, False, True, True, True, True]
    assert db.query(1, 'select sub_receiver, sub_provider from "_shop".sl_subscribe '
                       'order by 1') == [(2, 1), (3, 2)]
    assert not any(r.changed for r in cluster.converge())
