"""slony_info and playbooks/status.yml on a real 3-node cluster.

One bring-up (test_bringup.bring_up: set 1 from node 1, subscribed by 2 and 3), then:
the facts match the catalogs of every node; check mode changes nothing; the number of
statements per node does not depend on the number of objects; the filter; unreachable
and wrong nodes are reported, not fatal; drift made by hand on one node is found and
disappears once repaired; a stopped slon shows as not running while its node's lag
grows; the status playbook prints all of it; no password anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from ansible_run import REPO_ROOT, run_module
from catalog_dump import assert_unchanged, dump
from test_bringup import CLUSTER, TABLES, bring_up, common

from ansible_collections.dany.slony.plugins.module_utils.cluster import Cluster
from ansible_collections.dany.slony.plugins.module_utils.info import gather, read_cluster

NS = '"_lab"'
UNREPLICATED_TABLES = {"public.audit_log", "public.settings", "public.events_2024",
                       "billing.payments"}
UNREPLICATED_SEQUENCES = {"public.customers_id_seq", "public.products_id_seq",
                          "public.orders_id_seq", "billing.invoices_id_seq",
                          "billing.payments_id_seq"}


def core_facts(db, sections=("lag", "slons", "drift"), admin_conninfo=None):
    """The facts through the core directly (fast, for polling)."""
    with Cluster(CLUSTER, admin_conninfo or db.admin_conninfo) as cluster:
        return gather(cluster, sections)


def poll(fetch, predicate, timeout=60, interval=0.3, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s; last: {value}"
        time.sleep(interval)


def lag_of(facts, origin, receiver):
    return next(r for r in facts["lag"] if (r["origin"], r["receiver"]) == (origin, receiver))


def run_status(db, **extra_vars):
    """playbooks/status.yml against the test database, YAML result format."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    variables = {"slony_cluster_name": CLUSTER,
                 "slony_admin_conninfo": {str(k): v for k, v in db.admin_conninfo.items()}}
    variables.update(extra_vars)
    proc = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"),
                           str(REPO_ROOT / "playbooks" / "status.yml"), "-e", json.dumps(variables)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    return proc


def check_facts_against_catalogs(db, facts):
    """Every section against what the nodes' catalogs hold."""
    assert facts["unreachable_nodes"] == []
    assert [(n["id"], n["active"], n["failed"], n["reachable"], n["comment"]) for n in facts["nodes"]] == [
        (1, True, False, True, "origin"), (2, True, False, True, "replica 2"),
        (3, True, False, True, "replica 3")]

    paths = {(p["server"], p["client"]): p for p in facts["paths"]}
    assert set(paths) == {(s, c) for s in (1, 2, 3) for c in (1, 2, 3) if s != c}
    for (server, client), path in paths.items():
        assert path["source"] == client and not path["pending"] and path["connretry"] == 10
        assert f"port={db.lab.port(server)}" in path["conninfo"]
        assert "password=********" in path["conninfo"]

    for receiver in (1, 2, 3):
        own = db.query(receiver, f"select li_origin, li_provider from {NS}.sl_listen "
                                 "where li_receiver = %s order by 1, 2", (receiver,))
        reported = sorted((e["origin"], e["provider"]) for e in facts["listens"]
                          if e["receiver"] == receiver)
        assert reported == own and own, f"listens of node {receiver}"

    assert facts["sets"] == [{"id": 1, "origin": 1, "comment": "app", "locked": False,
                              "tables": 4, "sequences": 1, "subscribers": [2, 3], "source": 1}]
    assert sorted(f"{t['schema']}.{t['name']}" for t in facts["tables"]) == sorted(TABLES)
    tab_ids = dict(db.query(1, f"select tab_nspname || '.' || tab_relname, tab_id from {NS}.sl_table"))
    for table in facts["tables"]:
        assert table["set"] == 1 and table["origin"] == 1
        assert table["id"] == tab_ids[f"{table['schema']}.{table['name']}"]
        assert table["key"] == table["name"] + "_pkey"
    assert [(s["schema"], s["name"], s["set"]) for s in facts["sequences"]] == [
        ("public", "invoice_number_seq", 1)]

    for sub in facts["subscriptions"]:
        last_sync = db.scalar(sub["receiver"], f"select ssy_seqno from {NS}.sl_setsync where ssy_setid = 1")
        assert last_sync is not None and sub["last_sync"] <= last_sync
    assert [(s["set"], s["receiver"], s["provider"], s["forward"], s["active"], s["complete"])
            for s in facts["subscriptions"]] == [(1, 2, 1, True, True, True), (1, 3, 1, True, True, True)]

    assert sorted((r["origin"], r["receiver"]) for r in facts["lag"]) == [
        (o, r) for o in (1, 2, 3) for r in (1, 2, 3) if o != r]
    for row in facts["lag"]:
        assert isinstance(row["lag_events"], int) and row["lag_events"] >= 0
        assert isinstance(row["lag_seconds"], float) and row["lag_seconds"] >= 0
        assert row["last_event"] >= row["confirmed"] > 5000000000
        assert row["origin_slon_running"] and row["receiver_slon_running"]
        assert row["sets"] == ([1] if row["origin"] == 1 else [])
        assert row["subscriptions_complete"] is (True if row["origin"] == 1 else None)

    for slon in facts["slons"]:
        pid = db.scalar(slon["node"], f"select nl_backendpid from {NS}.sl_nodelock "
                                      "where nl_nodeid = %s", (slon["node"],))
        assert slon["running"] is True and slon["backend_pid"] == pid
        actors = {c["actor"] for c in slon["components"]}
        assert {"local_listen", "local_sync", "local_cleanup"} <= actors
        assert slon["last_activity_seconds"] is not None and slon["last_activity_seconds"] < 30

    assert facts["drift"] == [] and facts["compared_nodes"] == [1, 2, 3]

    unreplicated = {(u["kind"], f"{u['schema']}.{u['name']}") for u in facts["unreplicated"]}
    assert unreplicated == ({("table", t) for t in UNREPLICATED_TABLES}
                            | {("sequence", s) for s in UNREPLICATED_SEQUENCES})
    assert {u["node"] for u in facts["unreplicated"]} == {1}
    by_name = {f"{u['schema']}.{u['name']}": u for u in facts["unreplicated"]}
    assert by_name["public.audit_log"]["key"] is None
    assert by_name["public.settings"]["key"] == "settings_name_key"
    assert by_name["public.events_2024"]["partition"] is True
    assert by_name["public.customers_id_seq"]["owned_by"] == "public.customers.id"


def test_info_reports_a_live_cluster(fresh_db, slons):
    db = fresh_db
    password = db.lab.password
    bring_up(db, slons)
    outputs = []

    # Settled: every configuration event processed everywhere.
    poll(lambda: core_facts(db), lambda f: not f["config_in_flight"] and not f["drift"],
         what="no configuration in flight")

    # -- full facts, check mode and normal mode change nothing ------------------------
    before = dump(db, CLUSTER)
    checked = run_module("slony_info", common(db), check=True, diff=True)
    real = run_module("slony_info", common(db), diff=True)
    assert_unchanged(dump(db, CLUSTER), before)
    outputs += [checked, real]
    for run in (checked, real):
        assert run.changed is False and "diff" not in run.result
        assert run.result["sections"] == ["nodes", "paths", "listens", "sets", "tables", "sequences",
                                          "subscriptions", "lag", "slons", "drift", "unreplicated"]
        check_facts_against_catalogs(db, run.result)

    # -- a constant number of statements per node ------------------------------------
    def statements():
        with Cluster(CLUSTER, db.admin_conninfo) as cluster:
            return {n: r.statements for n, r in read_cluster(cluster).items()}
    assert statements() == {1: 4, 2: 3, 3: 3}
    db.query(1, "create schema extra; " + " ".join(
        f"create table extra.t{i} (id int primary key);" for i in range(40)))
    assert statements() == {1: 4, 2: 3, 3: 3}
    assert len(core_facts(db, ["unreplicated"])["unreplicated"]) == 9 + 40
    db.query(1, "drop schema extra cascade")

    # -- filter --------------------------------------------------------------------
    only = run_module("slony_info", common(db, filter=["lag", "slons"]))
    assert set(only.result) - {"changed", "warnings", "deprecations"} == {
        "cluster_name", "sections", "unreachable_nodes", "lag", "slons"}
    assert len(only.result["lag"]) == 6
    without = run_module("slony_info", common(db, filter=["!unreplicated", "!drift", "!l*"]))
    assert without.result["sections"] == ["nodes", "paths", "sets", "tables", "sequences",
                                          "subscriptions", "slons"]
    assert "unreplicated" not in without.result and "lag" not in without.result
    bad = run_module("slony_info", common(db, filter=["lags"]), expect_failure=True)
    assert "filter 'lags' matches no section" in bad.msg
    outputs += [only, without, bad]

    # -- unreachable or wrong nodes are reported, not fatal ----------------------------
    wrong_password = "wrong-pw-4711"
    admin = {str(k): v for k, v in db.admin_conninfo.items()}
    admin["3"] = db.conninfo(3).replace(password, wrong_password)
    admin["4"] = f"host=127.0.0.1 port=1 dbname={db.dbname} user=slony password={password}"
    admin["5"] = db.lab.conninfo(1, "postgres")  # a database without the cluster
    admin["6"] = db.conninfo(2)  # node 2's database, listed as node 6
    partial = run_module("slony_info", common(db, admin_conninfo=admin))
    outputs.append(partial)
    facts = partial.result
    errors = {u["node"]: u["error"] for u in facts["unreachable_nodes"]}
    assert sorted(errors) == [3, 4, 5, 6]
    assert "password authentication failed" in errors[3]
    assert "cannot connect to node 4" in errors[4]
    assert "no schema _lab" in errors[5]
    assert "reaches the database of node 2 of cluster lab, not node 6" in errors[6]
    for node in (3, 4, 5, 6):  # one warning per node
        assert f"[WARNING]: node {node} could not be read: " in partial.stderr
    assert [n["id"] for n in facts["nodes"] if n["reachable"]] == [1, 2]
    assert [s["running"] for s in facts["slons"]] == [True, True, None, None, None, None]
    sub3 = next(s for s in facts["subscriptions"] if s["receiver"] == 3)
    assert sub3["provider"] == 1 and sub3["complete"] is None
    assert {(r["origin"], r["receiver"]) for r in facts["lag"]} == {(1, 2), (1, 3), (2, 1), (2, 3)}
    assert facts["compared_nodes"] == [1, 2] and facts["drift"] == []
    assert wrong_password not in partial.everything()

    # -- drift: node 1 loses path 2 -> 3 behind Slony's back -----------------------
    conninfo_23 = db.query(3, f"select pa_conninfo from {NS}.sl_path where pa_server = 2 and pa_client = 3")[0][0]
    db.query(1, f"select {NS}.dropPath_int(2, 3)")
    drifted = run_module("slony_info", common(db, filter=["drift", "paths"]))
    outputs.append(drifted)
    assert [(d["kind"], d["id"], d["missing_on"], d["settling"]) for d in drifted.result["drift"]] == [
        ("path", "2->3", [1], False)]
    assert drifted.result["drift"][0]["message"] == "path 2 -> 3: missing on node 1; present on nodes 2, 3"
    # The path as its client (node 3) records it is still reported.
    assert any((p["server"], p["client"], p["source"]) == (2, 3, 3) for p in drifted.result["paths"])
    status = run_status(db)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "- drift: path 2 -> 3: missing on node 1; present on nodes 2, 3" in status.stdout
    outputs.append(status)
    db.query(1, f"select {NS}.storePath_int(2, 3, %s, 10)", (conninfo_23,))
    assert core_facts(db, ["drift"])["drift"] == []

    # -- node 3's slon stops: reported, and node 3 falls behind node 1 ------------------
    slons.stop(3)
    stopped = poll(lambda: core_facts(db), lambda f: f["slons"][2]["running"] is False,
                   timeout=30, what="slon 3 reported stopped")
    assert [s["running"] for s in stopped["slons"]] == [True, True, False]
    assert stopped["slons"][2]["backend_pid"] is None
    first = lag_of(stopped, 1, 3)
    assert first["receiver_slon_running"] is False and first["origin_slon_running"] is True
    for i in range(5):
        db.query(1, "insert into public.customers (name) values (%s)", (f"while-3-sleeps-{i}",))
        time.sleep(0.4)
    # Node 3's lag grows without bound; node 2 keeps up.
    later = poll(lambda: core_facts(db),
                 lambda f: lag_of(f, 1, 3)["lag_events"] >= first["lag_events"] + 3
                 and lag_of(f, 1, 3)["lag_events"] > lag_of(f, 1, 2)["lag_events"],
                 timeout=60, what="node 3's lag growing past node 2's")
    assert lag_of(later, 1, 3)["lag_seconds"] > first["lag_seconds"]
    # Whatever node 3 confirmed, it processed before its slon stopped.
    assert lag_of(later, 1, 3)["confirmed"] <= first["last_event"]
    poll(lambda: db.scalar(2, "select count(*) from public.customers where name like 'while-3-%'"),
         lambda n: n == 5, timeout=30, what="rows on node 2")
    assert db.scalar(3, "select count(*) from public.customers where name like 'while-3-%'") == 0

    # The status playbook shows it, and fails on request.
    status = run_status(db, slony_status_fail_on_warning=True, slony_status_lag_events=3)
    outputs.append(status)
    assert status.returncode != 0, status.stdout
    text = status.stdout
    assert "ORIGIN -> RECEIVER" in text
    line_13 = next(line for line in text.splitlines() if line.strip().startswith("1 -> 3 "))
    assert line_13.split()[3] == "1" and "running" in line_13 and "STOPPED" in line_13
    assert line_13.split()[-1] == "yes"
    assert "- the slon daemon of node 3 is not running" in text
    assert "- node 3 is behind node 1:" in text
    assert "table public.audit_log (no usable key)" in text
    assert "billing.invoices" not in text.replace("billing.invoices_id_seq", "")
    assert "Slony-I cluster lab: " in text and "problem(s), see above" in text

    # -- no password in any output ------------------------------------------------------
    for out in outputs:
        text = out.everything() if hasattr(out, "everything") else out.stdout + out.stderr
        assert password not in text
