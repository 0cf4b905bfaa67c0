"""slony_failover against a real 3-node cluster whose origin dies under a write load.

One bring-up (test_bringup.bring_up: node 1 origin of set 1, nodes 2 and 3 direct forwarding
subscribers), then, in order:

* node 1 alive: the failover is refused (node 1 found through its admin conninfo, or through
  the paths when it is not listed), nothing changes;
* a writer commits rows on node 1 in short transactions; node 2's slon is stopped for a
  while so that node 3 gets ahead; node 1's PostgreSQL is stopped (immediate) and its slon
  killed;
* check mode: the plan (node 3 would be promoted first, then the set moved to node 2),
  nothing changes;
* the slon of surviving node 3 is stopped: refused, nothing changes;
* the slon of node 3 is frozen (SIGSTOP): the wait for the slon restarts after preFailover
  times out with a message naming node 3; the slon is thawed;
* the promotion of node 3 (failedNode2) is done by hand, as if a run had been killed right
  after it; the next run resumes: waits for FAILOVER_NODE, failedNode3 on node 3, LOCK SET +
  MOVE SET to node 2, DROP NODE 1. Node 2 is the origin on nodes 2 and 3, node 1 is gone
  from their catalogs, every row node 2 (and node 3) had before the kill is on both, node 2
  takes writes and node 3 replicates them;
* the same run again (check mode, node 1 listed or not) reports no change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time

import psycopg2

from ansible_run import REPO_ROOT, run_module
from catalog_dump import CATALOG_QUERIES, assert_unchanged
from catalog_dump import dump as full_dump
from lab import FreshDatabase, wait_until
from test_bringup import CLUSTER, bring_up, common, wait_for_rows

MODULE = "slony_failover"
NS = '"_%s"' % CLUSTER


class WriteLoad(threading.Thread):
    """Inserts one customer per short transaction on ``node``; remembers committed ids."""

    def __init__(self, db, node):
        super().__init__(daemon=True)
        self.db = db
        self.node = node
        self.committed: list[int] = []
        self.error: Exception | None = None
        self.stopping = threading.Event()

    def run(self):
        conn = self.db.connect(self.node, autocommit=False)
        try:
            while not self.stopping.is_set():
                with conn.cursor() as cur:
                    cur.execute("insert into public.customers (name) values ('load') returning id")
                    new_id = cur.fetchone()[0]
                conn.commit()
                self.committed.append(new_id)
                time.sleep(0.005)
        except psycopg2.Error as exc:
            self.error = exc
        finally:
            try:
                conn.close()
            except psycopg2.Error:
                pass


# sl_listen is rebuilt by the slons on their own (RebuildListenEntries) whenever they
# process configuration events, so it is left out of "nothing changed" comparisons.
STABLE_CATALOGS = tuple(name for name in CATALOG_QUERIES if name != "sl_listen")


def dump(db, cluster):
    return full_dump(db, cluster, tables=STABLE_CATALOGS)


def survivors_of(db, nodes=(2, 3)) -> FreshDatabase:
    """The same database seen only on the surviving nodes (for dumps and queries)."""
    return FreshDatabase(db.lab, db.dbname, list(nodes), cluster_name=db.cluster_name)


def without_node_1(args):
    return dict(args, admin_conninfo={k: v for k, v in args["admin_conninfo"].items() if k != "1"})


def slon_backend(db, node):
    """The backend pid of the live registration of ``node``'s slon, or None."""
    return db.scalar(node, f"select nl_backendpid from {NS}.sl_nodelock "
                           f"where nl_nodeid = {NS}.getLocalNodeId('_{CLUSTER}') and exists "
                           "(select 1 from pg_stat_activity where pid = nl_backendpid)")


def run_playbook(db, check=False):
    """playbooks/failover.yml for this cluster; returns its output (password-free)."""
    variables = {"slony_cluster_name": CLUSTER,
                 "slony_admin_conninfo": {str(n): db.conninfo(n) for n in (2, 3)},
                 "slony_failed_node": 1, "slony_backup_node": 2, "slony_wait_timeout": 120}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(variables, handle)
        handle.flush()
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        command = [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"),
                   str(REPO_ROOT / "playbooks" / "failover.yml"), "-e", "@" + handle.name]
        if check:
            command.append("--check")
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:].replace(db.lab.password, "********")
    assert db.lab.password not in output
    return output


def start_slon(db, slons, node):
    """Start a slon while node 1 is down. The harness's readiness check (an ERROR before
    the main loop) would take the failed connection to node 1 for a start failure, so
    readiness is the slon's live registration in sl_nodelock instead."""
    slons.start(node, wait=False)
    wait_until(lambda: slon_backend(db, node), timeout=60,
               message="slon of node %d registered" % node)


def ids_on(db, node):
    return {row[0] for row in db.query(node, "select id from public.customers")}


def test_failover_of_a_dead_origin_under_write_load(fresh_db, slons):
    db = fresh_db
    bring_up(db, slons)
    args = common(db, failed_node=1, backup_node=2, drop_failed=True, wait_timeout=120)

    # -- node 1 is alive: refused, nothing changes ------------------------------------------
    # Node 1 is found through its admin_conninfo, or, when it is not listed, through the
    # conninfo of the paths the other nodes use to reach it.
    before = dump(db, CLUSTER)
    for check, listed in ((True, False), (False, True)):
        refused = run_module(MODULE, args if listed else without_node_1(args), check=check,
                             expect_failure=True)
        assert "node 1 is not failed" in refused.msg and "the database answers" in refused.msg
        assert ("admin_conninfo (" if listed else "path to node 2 (") in refused.msg
        assert "force: true" in refused.msg
        assert db.lab.password not in refused.everything()
    assert_unchanged(dump(db, CLUSTER), before)

    # -- the origin dies under a write load, node 2 behind node 3 -----------------------------
    # Node 2's slon is stopped for a while so that node 3 holds more of node 1's events when
    # node 1 dies: slonik's algorithm then promotes node 3 first (the most-ahead candidate),
    # lets node 2 catch up from it and moves the set on to node 2 (LOCK SET + MOVE SET).
    load = WriteLoad(db, 1)
    load.start()
    loaded = "select coalesce(max(id), 0) from public.customers where name = 'load'"
    wait_until(lambda: db.scalar(2, loaded) and db.scalar(3, loaded), timeout=60,
               message="nodes 2 and 3 receiving the load")
    slons.stop(2)
    # What node 2 has right before the kill must survive the failover.
    node2_max = db.scalar(2, loaded)
    wait_until(lambda: db.scalar(3, loaded) >= node2_max + 20, timeout=60,
               message="node 3 getting ahead of node 2")
    node3_max = db.scalar(3, loaded)
    db.lab.stop_server(1, mode="immediate")
    slons.kill(1)
    load.join(30)
    assert not load.is_alive() and load.error is not None, "the writer did not notice the kill"
    start_slon(db, slons, 2)
    must_survive = {i for i in load.committed if i <= node2_max}
    node3_had = {i for i in load.committed if i <= node3_max}
    assert len(must_survive) >= 5 and len(node3_had) >= len(must_survive) + 20

    survivors = survivors_of(db)

    # -- check mode: validation and the plan, nothing changes -------------------------------
    before = dump(survivors, CLUSTER)
    checked = run_module(MODULE, without_node_1(args), check=True, diff=True)
    assert checked.changed and checked.result["events"] == []
    assert_unchanged(dump(survivors, CLUSTER), before)
    result = checked.result
    assert result["surviving_nodes"] == [2, 3] and result["candidates"] == [2, 3]
    assert result["failed_node_reachable"] is False
    assert len(result["failed_node_probe"]) == 1  # the paths 1->2 and 1->3 share a conninfo
    assert result["failed_node_probe"][0].startswith("path to node 2 (")
    assert "unreachable" in result["failed_node_probe"][0]
    assert db.lab.password not in checked.everything()
    # Node 3 holds the most events of node 1: it would be promoted first.
    seqnos = {e["node"]: e["max_seqno"] for e in result["failed_node_events"]}
    assert seqnos[3] > seqnos[2]
    assert result["temporary_backup"] == 3
    assert "failover (id = 1, backup node = 2);" in result["slonik"]
    assert "drop node (id = 1, event node = 2);" in result["slonik"]
    sqls = [q["sql"] for q in result["queries"]]
    assert any("prefailover" in s for s in sqls) and any("failednode2" in s for s in sqls)
    assert any("movese" in s for s in sqls)
    assert result["before"]["sets"] == [{"id": 1, "origin": 1}]
    assert result["after"] == {"failed_node": 1, "backup_node": 2, "state": "absent",
                               "sets": [{"id": 1, "origin": 2}]}

    # -- a surviving node's slon is down: refused before anything changes ---------------------
    slons.stop(3)
    refused = run_module(MODULE, dict(args, wait_timeout=3), expect_failure=True)
    assert "slon daemon of surviving node(s) 3 is not running (waited 3s" in refused.msg
    assert "nothing was changed" in refused.msg
    assert_unchanged(dump(survivors, CLUSTER), before)
    start_slon(db, slons, 3)

    # -- a hung slon (frozen): the restart wait times out and says which node ---------------
    registered = {node: slon_backend(db, node) for node in (2, 3)}
    assert all(registered.values())
    slon3 = slons[3]
    os.killpg(slon3.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        timed_out = run_module(MODULE, dict(args, wait_timeout=8), expect_failure=True)
        elapsed = time.monotonic() - started
    finally:
        os.killpg(slon3.pid, signal.SIGCONT)
    assert "timed out after 8s waiting for the slon daemons to restart" in timed_out.msg
    # Node 3's slon is registered but does not restart (hung); node 2's may still be in
    # slon's fixed 20 s restart delay.
    assert "node 3 (no new slon registration since backend" in timed_out.msg
    assert "slon running" in timed_out.msg
    assert "run the same failover again" in timed_out.msg
    assert elapsed < 60
    # preFailover ran (paths from node 1 blanked) but nothing was promoted.
    for node in (2, 3):
        assert db.query(node, f"select no_active, no_failed from {NS}.sl_node where no_id = 1") \
            == [(True, False)]
        assert db.query(node, f"select set_origin from {NS}.sl_set") == [(1,)]

    # -- interrupted right after the promotion: the next run finishes the failover ---------
    # What the run would have done next, by hand, as if it had been killed right after
    # failedNode2: wait until both slons have restarted, promote node 3 (the most ahead).
    wait_until(lambda: all(slon_backend(db, n) not in (None, registered[n]) for n in (2, 3)),
               timeout=120, message="the slons of nodes 2 and 3 restarted")
    seqno = db.scalar(3, f"select max(ev_seqno) from {NS}.sl_event where ev_origin = 1")
    assert seqno > db.scalar(2, f"select max(ev_seqno) from {NS}.sl_event where ev_origin = 1")
    with db.connect(3, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute(f"lock table {NS}.sl_event_lock, {NS}.sl_config_lock")
        cur.execute(f"select {NS}.failedNode2(1, 3, %s, array[1])", (seqno,))
    conn.close()

    started = time.monotonic()
    real = run_module(MODULE, without_node_1(args), diff=True)
    failover_seconds = time.monotonic() - started
    assert real.changed
    result = real.result
    sqls = [(q["node"], q["sql"]) for q in result["queries"]]
    # Resumed: no second preFailover or promotion; node 3 finishes, the set moves to node 2.
    assert not any("prefailover" in q or "failednode2" in q for _n, q in sqls), sqls
    assert any(n == 3 and 'failednode3"(1, 3, %d)' % seqno in q for n, q in sqls), sqls
    events = [(e["origin"], e["type"]) for e in result["events"]]
    assert (3, "MOVE_SET") in events and events[-1] == (2, "DROP_NODE"), events
    assert result["temporary_backup"] == 3
    assert result["after"]["state"] == "absent"
    assert db.lab.password not in real.everything()

    # Catalogs of both survivors: node 2 is the origin, node 1 is gone.
    for node in (2, 3):
        assert db.query(node, f"select set_id, set_origin from {NS}.sl_set") == [(1, 2)]
        assert wait_for_rows(db, node, f"select no_id from {NS}.sl_node order by 1",
                             [(2,), (3,)]) == [(2,), (3,)]
        assert db.query(node, f"select count(*) from {NS}.sl_path where 1 in (pa_server, pa_client)") \
            == [(0,)]
        assert db.query(node, f"select count(*) from {NS}.sl_subscribe where 1 in "
                              "(sub_provider, sub_receiver)") == [(0,)]
    assert db.query(3, f"select sub_provider, sub_active from {NS}.sl_subscribe "
                       "where sub_set = 1 and sub_receiver = 3") == [(2, True)]

    # Every write node 2 had before the kill is on nodes 2 and 3, and so is every write
    # node 3 had (node 2 caught up from node 3 before it took over).
    on2 = ids_on(db, 2)
    assert must_survive <= on2, sorted(must_survive - on2)[:10]
    assert node3_had <= on2, sorted(node3_had - on2)[:10]
    wait_until(lambda: ids_on(db, 3) >= on2, timeout=60, message="node 3 holding node 2's rows")
    assert must_survive <= ids_on(db, 3) and node3_had <= ids_on(db, 3)

    # Node 2 takes writes on the replicated tables; node 3 replicates them from node 2.
    new_id = db.scalar(2, "insert into public.customers (id, name) select max(id) + 1, "
                          "'after failover' from public.customers returning id")
    db.query(2, "update public.products set price = price + 1 where id = (select min(id) "
                "from public.products)")
    expected = db.query(2, "select id, name from public.customers order by id")
    assert (new_id, "after failover") in expected
    assert wait_for_rows(db, 3, "select id, name from public.customers order by id",
                         expected) == expected
    expected = db.query(2, "select id, price from public.products order by id")
    assert wait_for_rows(db, 3, "select id, price from public.products order by id",
                         expected) == expected
    # Node 3 is still a replica: it refuses local writes.
    try:
        db.query(3, "insert into public.customers (name) values ('local on 3')")
        raise AssertionError("node 3 accepted a write to a replicated table")
    except psycopg2.Error as exc:
        assert "Slony-I" in str(exc)

    print("\nfailover: %d rows committed on node 1, node 2 had %d and node 3 had %d of them at "
          "the kill, all on nodes 2 and 3 afterwards; resumed run %.1fs"
          % (len(load.committed), len(must_survive), len(node3_had), failover_seconds))

    # -- the same run again (node 1 listed or not): nothing to do -----------------------------
    before = dump(survivors, CLUSTER)
    for check, listed in ((True, True), (False, True), (False, False)):
        again = run_module(MODULE, args if listed else without_node_1(args), check=check)
        assert not again.changed, again.result["queries"]
        assert again.result["queries"] == [] and again.result["slonik"] == ""
        assert again.result["before"]["state"] == "absent"
    assert_unchanged(dump(survivors, CLUSTER), before)

    # The playbook does the same (here: nothing left to do), in check mode and for real.
    for check in (True, False):
        recap = run_playbook(db, check=check)
        assert "failed=0" in recap and "changed=0" in recap, recap
    assert_unchanged(dump(survivors, CLUSTER), before)
