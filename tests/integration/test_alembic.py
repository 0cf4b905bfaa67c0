"""dany.alembic_ops with the real `alembic` command: upgrade head / downgrade -1 against a
lab cluster (replicated) and against a plain database (disabled mode), and `--sql`.

The migrations are in tests/integration/alembic; `dany` is importable as pip installs
it (a directory with a `dany` link to plugins/module_utils on PYTHONPATH).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "alembic"
ALEMBIC = Path(sys.executable).parent / "alembic"

pytest.importorskip("alembic")


@pytest.fixture
def project(tmp_path):
    """A directory for alembic.ini, with PYTHONPATH giving `import dany`."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "dany").symlink_to(REPO / "plugins" / "module_utils")
    return tmp_path


def write_ini(project, db, mode, nodes):
    text = (FIXTURES / "alembic.ini.in").read_text()
    url = "postgresql+psycopg2://%s:%s@127.0.0.1:%d/%s" % (
        db.lab.user, db.lab.password, db.lab.port(1), db.dbname)
    text = text.replace("@SCRIPT_LOCATION@", str(FIXTURES)).replace("@URL@", url) \
        .replace("@MODE@", mode).replace("@NODES@", "\n".join(
            "node.%d = %s" % (n, db.conninfo(n)) for n in nodes))
    ini = project / "alembic.ini"
    ini.write_text(text)
    return ini


def alembic(project, ini, *args, env=None):
    environ = dict(os.environ, PYTHONPATH=str(project / "lib"))
    environ.pop("DANY_SLONY_MODE", None)
    environ.update(env or {})
    proc = subprocess.run([str(ALEMBIC), "-c", str(ini), *args], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, "alembic %s failed:\n%s\n%s" % (args, proc.stdout[-4000:],
                                                                 proc.stderr[-6000:])
    return proc


def in_set(db, node):
    return db.scalar(node, 'select count(*) from "_shop".sl_table where tab_relname = '
                           "'api_coupons' and tab_set = 1")


def exists(db, node):
    return db.scalar(node, "select to_regclass('public.api_coupons') is not null")


def replicated_cluster(dany_api, db, make_slons):
    cluster = dany_api.Cluster("shop", db.admin_conninfo, wait_timeout=120)
    cluster.store_nodes(wait=False)
    cluster.store_paths(wait=False)
    make_slons(db, "shop").start()
    cluster.create_set(1, 1)
    cluster.set_add_table(1, schemas=["billing"])
    cluster.subscribe(1, [2, {"receiver": 3, "provider": 2}])
    return cluster


@pytest.fixture
def dany_api(project, monkeypatch):
    import importlib
    monkeypatch.syspath_prepend(str(project / "lib"))
    for name in [n for n in sys.modules if n == "dany" or n.startswith("dany.")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("dany.api")


def test_upgrade_replicates_the_table_and_downgrade_removes_it(project, dany_api,
                                                               make_fresh_db, make_slons):
    db = make_fresh_db(cluster_name="shop")
    cluster = replicated_cluster(dany_api, db, make_slons)
    ini = write_ini(project, db, "slony", (1, 2, 3))

    offline = alembic(project, ini, "upgrade", "head", "--sql")
    assert "-- dany: create replicated table public.api_coupons" in offline.stdout
    assert "set add table (set id = 1, origin = 1, fully qualified name = " \
           "'public.api_coupons')" in offline.stdout
    assert db.lab.password not in offline.stdout
    assert not any(exists(db, n) for n in (1, 2, 3))

    up = alembic(project, ini, "upgrade", "head")
    assert "dany: create table public.api_coupons on every node" in up.stderr
    for node in (1, 2, 3):
        assert exists(db, node) and in_set(db, node) == 1, node
        assert db.scalar(node, "select obj_description('public.api_coupons'::regclass)") == \
            "coupons, replicated"
    db.query(1, "insert into public.api_coupons values (1, 'WELCOME')")
    cluster.sync(1)
    for node in (2, 3):
        assert db.scalar(node, "select code from public.api_coupons where id = 1") == "WELCOME"
    assert db.scalar(1, "select version_num from alembic_version") == "0001"

    down = alembic(project, ini, "downgrade", "-1")
    assert down.stderr.index("dropped from set 1") < down.stderr.index("drop table public")
    cluster.sync(1)
    for node in (1, 2, 3):
        assert in_set(db, node) == 0 and not exists(db, node), node
    # Set 1 still replicates the rest.
    assert db.scalar(3, 'select count(*) from "_shop".sl_table where tab_set = 1') == 2


def test_disabled_mode_runs_plain_ddl_on_a_plain_database(project, make_fresh_db):
    db = make_fresh_db(nodes=[1])  # no Slony schema at all
    ini = write_ini(project, db, "slony", (1,))
    up = alembic(project, ini, "upgrade", "head", env={"DANY_SLONY_MODE": "disabled"})
    assert "Slony disabled" in up.stderr
    assert exists(db, 1)
    assert not db.query(1, "select 1 from pg_namespace where nspname = '_shop'")
    offline = alembic(project, ini, "downgrade", "0001:base", "--sql",
                      env={"DANY_SLONY_MODE": "disabled"})
    assert "DROP TABLE public.api_coupons" in offline.stdout
    alembic(project, ini, "downgrade", "-1", env={"DANY_SLONY_MODE": "disabled"})
    assert not exists(db, 1)
