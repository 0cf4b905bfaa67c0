"""slony_script on a real 3-node cluster: DDL applied on every node through Slony.

One bring-up (tests/integration/test_bringup.py) per test function; every claim is
checked on the catalogs and the data of each node.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from ansible_run import REPO_ROOT, run_module
from catalog_dump import assert_unchanged, dump
from test_bringup import CLUSTER, bring_up, common, wait_for_rows

ALL = (1, 2, 3)

DDL = """-- 0001: loyalty points
alter table public.customers add column loyalty integer not null default 0;
create index orders_customer_idx on public.orders (customer_id);
comment on table public.customers is 'cluster @CLUSTERNAME@ in @NAMESPACE@';
"""


def log_script_rows(db, node):
    return db.scalar(node, 'select count(*) from "_lab".sl_log_script')


def columns(db, node, table, schema="public"):
    return [r[0] for r in db.query(
        node, "select column_name from information_schema.columns "
              "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table))]


def indexes(db, node, table):
    return [r[0] for r in db.query(
        node, "select indexname from pg_indexes where schemaname = 'public' and tablename = %s "
              "order by 1", (table,))]


def key_rows(db, node):
    if not db.scalar(node, "select to_regclass('dany_slony.script_log') is not null"):
        return None
    return db.query(node, "select key, event_node, only_on from dany_slony.script_log "
                          "order by key")


def settle(db, origin, nodes=ALL):
    """SYNC on ``origin`` and wait until ``nodes`` confirmed it: whatever ``origin``
    committed before is then applied (or skipped) there."""
    db.wait_confirmed(origin, db.sync(origin), receivers=set(nodes) - {origin}, timeout=90)


def state(db):
    """What a run that must change nothing could have changed, on every node."""
    out = {"catalogs": dump(db, CLUSTER)}
    for node in ALL:
        out[node] = (columns(db, node, "customers"), columns(db, node, "products"),
                     indexes(db, node, "orders"), indexes(db, node, "products"),
                     key_rows(db, node), log_script_rows(db, node))
    return out


def assert_same_state(db, before, what="the run changed something"):
    """:func:`state` again, equal to ``before`` (configuration events: none new)."""
    now = state(db)
    assert_unchanged(now.pop("catalogs"), before["catalogs"], what)
    assert now == {k: v for k, v in before.items() if k != "catalogs"}, what


def run_ddl_playbook(db, tmp_path, check=False, cwd=REPO_ROOT, **extra_vars):
    """playbooks/ddl.yml against an inventory of the test cluster (3 local hosts)."""
    inventory = tmp_path / "inventory.json"
    hosts = {"node%d" % n: {"slony_node_id": n, "slony_conninfo": db.conninfo(n),
                            "ansible_connection": "local",
                            "ansible_python_interpreter": str(REPO_ROOT / ".venv/bin/python")}
             for n in ALL}
    inventory.write_text(json.dumps({"all": {"vars": {"slony_cluster_name": CLUSTER},
                                             "children": {"slony_nodes": {"hosts": hosts}}}}))
    # PWD as a shell sets it for the programs it starts.
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PWD=str(cwd))
    cmd = [str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", str(inventory),
           str(REPO_ROOT / "playbooks/ddl.yml"), "-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def test_ddl_on_every_node_keyed_replicated_and_only_on(fresh_db, slons, tmp_path):
    db = fresh_db
    bring_up(db, slons)
    started = time.monotonic()
    initial = state(db)
    assert initial[1][0] == ["id", "name", "email", "created_at"]
    args = common(db, sql=DDL, key="0001_loyalty")

    # Check mode: validates on the event node, rolls back, changes nothing anywhere.
    checked = run_module("slony_script", args, check=True, diff=True)
    assert checked.changed and checked.result["events"] == []
    assert checked.result["event_node"] == 1 and checked.result["nodes"] == [1, 2, 3]
    assert [s["line"] for s in checked.result["statements"]] == [2, 3, 4]
    assert checked.result["statements"][2]["sql"] == \
        "comment on table public.customers is 'cluster lab in \"_lab\"';"
    shown = "\n".join(q["sql"] for q in checked.result["queries"])
    assert shown.count("ddlcapture(") == 6  # 3 statements + 3 recording the key
    assert "ddlscript_complete(NULL)" in shown and "createevent('_lab', 'SYNC')" in shown
    # Longer than a slonik 2.2 string literal can be: a file, and a comment saying so.
    assert "# slonik 2.2 aborts on a string literal of more than 500 characters" in \
        checked.result["slonik"]
    assert "execute script (filename = 'script.sql', event node = 1);" in checked.result["slonik"]
    settle(db, 1)
    assert_same_state(db, initial, "check mode changed something")

    # Real run: applied on every node when the module returns (it waited for the SYNC).
    real = run_module("slony_script", args, diff=True)
    assert real.changed
    assert [e["type"] for e in real.result["events"]] == ["SYNC"]
    assert real.result["before"] == {"key": "0001_loyalty", "applied": False}
    assert real.result["after"]["applied"] is True
    for node in ALL:
        assert columns(db, node, "customers") == ["id", "name", "email", "created_at", "loyalty"]
        assert "orders_customer_idx" in indexes(db, node, "orders")
        assert db.scalar(node, "select obj_description('public.customers'::regclass)") == \
            'cluster lab in "_lab"'
        assert key_rows(db, node) == [("0001_loyalty", 1, None)]
    # Slony captured 6 statements + the completion row; the replicas stored them too.
    assert log_script_rows(db, 1) == initial[1][5] + 7
    # No event for the script itself, only the SYNC we asked for.
    # (Events gone since were cleaned up by slon; none may be new.)
    assert [e for e in state(db)["catalogs"][1]["config_events"]
            if e not in initial["catalogs"][1]["config_events"]] == []

    # Re-run with the same key: nothing at all.
    after_first = state(db)
    again = run_module("slony_script", args)
    assert not again.changed
    assert again.result["queries"] == [] and again.result["events"] == []
    assert again.result["slonik"] == "" and again.result["missing_on"] == []
    assert again.result["before"]["applied"] is True
    settle(db, 1)
    assert_same_state(db, after_first)
    # ... and a changed script under the same key is not applied either, with a warning.
    changed_script = run_module("slony_script",
                                common(db, sql=DDL + "select 1;", key="0001_loyalty"))
    assert not changed_script.changed
    assert "with a different script" in changed_script.stdout + changed_script.stderr

    # The new column replicates like any other.
    db.query(1, "insert into public.customers (name, loyalty) values ('loyal', 42)")
    expected = db.query(1, "select id, name, loyalty from public.customers order by id")
    assert ("loyal", 42) in [r[1:] for r in expected]
    for node in (2, 3):
        assert wait_for_rows(db, node, "select id, name, loyalty from public.customers "
                                       "order by id", expected) == expected

    # only_on: an index on node 3 only, from a file on the host the module runs on;
    # the event node defaults to node 3.
    script = tmp_path / "reporting.sql"
    script.write_text("create index products_name_idx on public.products (name)\n")
    only = run_module("slony_script", common(db, src=str(script), only_on=[3],
                                             key="0002_reporting"))
    assert only.changed and only.result["event_node"] == 3 and only.result["nodes"] == [3]
    assert "filename = '%s', event node = 3, execute only on = 3);" % script \
        in only.result["slonik"]
    settle(db, 3)  # nodes 1 and 2 processed (and skipped) it
    assert "products_name_idx" in indexes(db, 3, "products")
    for node in (1, 2):
        assert "products_name_idx" not in indexes(db, node, "products")
        assert key_rows(db, node) == [("0001_loyalty", 1, None)]
    assert key_rows(db, 3) == [("0001_loyalty", 1, None), ("0002_reporting", 3, [3])]
    assert not run_module("slony_script", common(db, src=str(script), only_on=[3],
                                                 key="0002_reporting")).changed

    # The event node must be one of only_on: refused before any change.
    before = state(db)
    refused = run_module("slony_script", common(db, sql="create index x on public.products (sku)",
                                                event_node=1, only_on=[3]),
                         expect_failure=True)
    assert "event_node 1 is not in only_on (3)" in refused.msg
    assert refused.result["queries"] == []

    # A syntax error: named with its statement and line; nothing changes on any node.
    bad = ("alter table public.products add column weight numeric;\n"
           "alter tabel public.products\n  add column colour text;\n")
    for check in (True, False):
        failed = run_module("slony_script", common(db, sql=bad, key="0003_bad"), check=check,
                            expect_failure=True)
        assert "failed on node 1 at statement 2 (line 2 of the script): alter tabel " \
               "public.products" in failed.msg
        assert 'syntax error at or near "tabel" (at line 2 of the script)' in failed.msg
        assert failed.result["node"] == 1 and failed.result["queries"] == []
    # A statement that fails when it runs (the column exists): the same.
    failed = run_module("slony_script", common(db, sql="alter table public.products add column "
                                                       "weight numeric;\nalter table "
                                                       "public.customers add column loyalty "
                                                       "int;"),
                        expect_failure=True)
    assert "statement 2 (line 2 of the script)" in failed.msg
    assert 'column "loyalty" of relation "customers" already exists' in failed.msg
    # Transaction control is refused before anything runs.
    failed = run_module("slony_script", common(db, sql="begin; alter table public.products "
                                                       "add column weight numeric; commit;"),
                        expect_failure=True)
    assert "statement 1 (line 1) is BEGIN" in failed.msg
    settle(db, 1)
    assert_same_state(db, before, "a failed run changed something")
    for node in ALL:
        assert "weight" not in columns(db, node, "products")

    for run in (checked, real, again, only, refused, failed):
        assert db.lab.password not in run.everything()

    # playbooks/ddl.yml on a directory of migrations: check mode, then real, then again.
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0010_sku_upper.sql").write_text(
        "create index products_sku_upper_idx on public.products (upper(sku));\n")
    (migrations / "0011_note.sql").write_text(
        "alter table public.orders add column note text;\n")
    (migrations / "README").write_text("not a script")
    out = run_ddl_playbook(db, tmp_path, check=True, slony_ddl_dir=str(migrations))
    assert "0010_sku_upper.sql: would be applied on node(s) 1, 2, 3 (event node 1" in out
    assert all("note" not in columns(db, n, "orders") for n in ALL)
    out = run_ddl_playbook(db, tmp_path, slony_ddl_dir=str(migrations))
    assert "0011_note.sql: applied on node(s) 1, 2, 3" in out and "changed=1" in out
    for node in ALL:
        assert "note" in columns(db, node, "orders")
        assert "products_sku_upper_idx" in indexes(db, node, "products")
    # A relative directory is taken from where ansible-playbook runs.
    out = run_ddl_playbook(db, tmp_path, cwd=tmp_path, slony_ddl_dir="migrations")
    assert "0010_sku_upper.sql: already applied" in out and "changed=1" not in out
    assert db.lab.password not in out
    print("slony_script scenario after bring-up: %.1fs" % (time.monotonic() - started))


def test_check_mode_gives_up_on_a_busy_table_after_lock_timeout(fresh_db):
    """Check mode validates the script on the event node, where its ALTER TABLE needs an
    ACCESS EXCLUSIVE lock: while the application holds a lock on the table, the check
    fails after lock_timeout, naming the lock, instead of queueing behind the
    application (and making the application queue behind it)."""
    db = fresh_db
    nodes = run_module("slony_node", common(db, nodes=[{"id": n} for n in ALL]))
    assert nodes.changed
    before = state(db)
    holder = db.connect(1, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute("select count(*) from public.customers")  # ACCESS SHARE, kept
        # A table nobody holds: checked at once, whatever lock_timeout says.
        started = time.monotonic()
        free = run_module("slony_script", common(
            db, sql="alter table public.products add column weight numeric;", lock_timeout=2),
            check=True)
        baseline = time.monotonic() - started
        assert free.changed and free.result["events"] == []

        started = time.monotonic()
        busy = run_module("slony_script", common(
            db, sql="select 1;\nalter table public.customers add column vip boolean;",
            lock_timeout=2), check=True, expect_failure=True, timeout=300)
        elapsed = time.monotonic() - started
        assert ("check mode: statement 2 (line 2 of the script) could not get its lock on "
                "public.customers on node 1 within lock_timeout (2s): AccessShareLock on "
                "public.customers held by pid %d (idle in transaction" % pid) in busy.msg, busy.msg
        assert "Nothing was changed" in busy.msg
        assert "alter table public.customers add column vip boolean;" in busy.msg
        assert busy.result["node"] == 1 and busy.result["queries"] == []
        # It gave up after lock_timeout instead of waiting for the application: the lock
        # is held all along, so returning at all shows it. (The bound on the time is
        # loose: a run of the module takes long on a loaded machine.)
        assert 2 <= elapsed < 2 * baseline + 2 + 20, (elapsed, baseline)
        # The application's transaction was left alone.
        with holder.cursor() as cur:
            cur.execute("select count(*) from public.customers")
            assert cur.fetchone()[0] >= 0
    finally:
        holder.rollback()
        holder.close()
    assert_same_state(db, before, "check mode changed something")
    for node in ALL:
        assert "vip" not in columns(db, node, "customers")
        assert "weight" not in columns(db, node, "products")
