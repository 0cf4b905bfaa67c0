"""slony_switchover and slony_sync against a real 3-node cluster, driven through `ansible`.

The switchover test moves set 1 from node 1 to node 2, back, and (after an "interrupted"
run left the set locked) to node 2 again, while a background thread keeps writing to the
replicated tables in short transactions on whichever node is the origin. Afterwards every
replicated table is identical on every node and every committed write is there.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
from collections import Counter

import psycopg2

from ansible_run import REPO_ROOT, run_module
from catalog_dump import assert_unchanged, dump
from test_bringup import CLUSTER, TABLES, bring_up, common, mesh

NS = '"_%s"' % CLUSTER
FIRST_ID = 100000  # ids of the rows the load writes (the sample data uses 1..4)


class WriteLoad(threading.Thread):
    """Short write transactions on the origin of set 1, following it when it moves.

    Every transaction that committed is recorded (the final state of each row it wrote),
    so that the test can look for all of them on every node. The errors a switchover
    causes on purpose are counted: "locked against updates" (LOCK SET until MOVE SET
    commits) and "cannot be modified on a subscriber node" (a write that reaches the old
    origin after the move). Any other error is a failure.
    """

    TOLERATED = ("locked against updates", "cannot be modified on a subscriber node")

    def __init__(self, db, origin=1):
        super().__init__(name="write-load", daemon=True)
        self.db = db
        self.origin = origin
        self.customers: dict[int, tuple] = {}
        self.orders: dict[int, tuple] = {}
        self.invoices: dict[int, tuple] = {}
        self.commits: Counter = Counter()  # node -> committed transactions
        self.tolerated: Counter = Counter()
        self.unexpected: list[str] = []
        self.origins = [origin]
        self._halt = threading.Event()
        self._next = FIRST_ID
        self._conns: dict[int, object] = {}
        self._probes: dict[int, object] = {}
        self._random = random.Random(42)

    # -- connections --------------------------------------------------------------------
    def _conn(self, node):
        if node not in self._conns:
            self._conns[node] = self.db.connect(node, autocommit=False)
        return self._conns[node]

    def current_origin(self):
        """The node whose own catalog says it is the origin of set 1 (None during a move)."""
        for node in self.db.node_ids:
            if node not in self._probes:
                self._probes[node] = self.db.connect(node, autocommit=True)
            with self._probes[node].cursor() as cur:
                cur.execute(f"select set_origin from {NS}.sl_set where set_id = 1")
                if cur.fetchone()[0] == node:
                    return node
        return None

    # -- the load -----------------------------------------------------------------------
    def write_once(self):
        node = self.origin
        conn = self._conn(node)
        cid = self._next
        self._next += 1
        with conn.cursor() as cur:
            cur.execute("insert into public.customers (id, name, email) values (%s, %s, %s)",
                        (cid, "load %d" % cid, "%d@load" % cid))
            cur.execute("insert into public.orders (id, customer_id, product_id, quantity) "
                        "values (%s, %s, %s, %s)", (cid, cid, 1 + cid % 3, 1 + cid % 5))
        conn.commit()
        self.customers[cid] = ("load %d" % cid, "%d@load" % cid)
        self.orders[cid] = (cid, 1 + cid % 3, 1 + cid % 5)
        self.commits[node] += 1

        target = self._random.choice(sorted(self.customers))
        email = "%d@node%d.%d" % (target, node, cid)
        with conn.cursor() as cur:
            cur.execute("update public.customers set email = %s where id = %s", (email, target))
            cur.execute("update public.orders set quantity = quantity + 1 where id = %s "
                        "returning quantity", (target,))
            quantity = cur.fetchone()[0]
        conn.commit()
        self.customers[target] = (self.customers[target][0], email)
        self.orders[target] = self.orders[target][:2] + (quantity,)
        self.commits[node] += 1

        if cid % 4 == 0:  # the invoice number comes from the replicated sequence
            with conn.cursor() as cur:
                cur.execute("insert into billing.invoices (id, customer_id, amount, issued_on) "
                            "values (%s, %s, %s, '2024-05-01') returning number",
                            (cid, cid, cid % 100 + 0.5))
                number = cur.fetchone()[0]
            conn.commit()
            self.invoices[cid] = (cid, cid % 100 + 0.5, number)
            self.commits[node] += 1

    def run(self):
        while not self._halt.is_set():
            try:
                self.write_once()
            except psycopg2.Error as exc:
                try:
                    self._conn(self.origin).rollback()
                except psycopg2.Error:
                    self._conns.pop(self.origin, None)
                message = str(exc)
                kind = next((t for t in self.TOLERATED if t in message), None)
                if kind is None:
                    self.unexpected.append("node %d: %s" % (self.origin, message.strip()))
                    if len(self.unexpected) > 20:
                        return
                else:
                    self.tolerated[kind] += 1
                self._follow_origin()
            time.sleep(0.005)

    def _follow_origin(self):
        while not self._halt.is_set():
            origin = self.current_origin()
            if origin is not None:
                if origin != self.origin:
                    self.origin = origin
                    self.origins.append(origin)
                    return
                time.sleep(0.02)  # still the origin (locked): retry shortly
                return
            time.sleep(0.02)  # the move is between nodes: nobody accepts writes yet

    def wait_commits(self, node, count, timeout=60):
        deadline = time.monotonic() + timeout
        start = self.commits[node]
        while self.commits[node] < start + count:
            assert not self.unexpected, self.unexpected
            assert self.is_alive(), "the write load died"
            assert time.monotonic() < deadline, (
                "the load committed %d transactions on node %d in %ss (origins %s)"
                % (self.commits[node] - start, node, timeout, self.origins))
            time.sleep(0.05)

    def stop(self):
        self._halt.set()
        self.join(30)
        for conn in list(self._conns.values()) + list(self._probes.values()):
            conn.close()


def run_playbook(extra_vars, expect_failure=False, inventories=()):
    """ansible-playbook [-i <inventory>...] playbooks/switchover.yml -e <extra_vars>; returns
    its output. Without inventories, ansible.cfg's (inventory/lab.yml)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"),
                           *[arg for path in inventories for arg in ("-i", str(path))],
                           str(REPO_ROOT / "playbooks" / "switchover.yml"),
                           "-e", json.dumps(extra_vars)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    output = proc.stdout + proc.stderr
    assert (proc.returncode != 0) == expect_failure, output[-5000:]
    return output


# -- checks -------------------------------------------------------------------------------

CALL_RE = re.compile(r'"_%s"\."(\w+)"\(([^)]*)\)' % CLUSTER)


def calls(queries):
    """The Slony functions called by returned queries, as ``name(args)``."""
    return ["%s(%s)" % m for q in queries for m in CALL_RE.findall(q["sql"])]


def checksums(db, node):
    """{table: (rows, md5 of every row in key order)} for the replicated tables."""
    out = {}
    for table in TABLES:
        out[table] = tuple(db.query(
            node, f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t.id), '')) "
                  f"from {table} t")[0])
    out["invoice_number_seq"] = db.scalar(node, "select last_value from public.invoice_number_seq")
    return out


def origins(db, set_id=1):
    return {node: db.query(node, f"select set_origin, set_locked from {NS}.sl_set "
                                 "where set_id = %s", (set_id,))[0] for node in db.node_ids}


def trigger_modes(db, node, table="customers"):
    rows = db.query(node, "select t.tgname, t.tgenabled from pg_trigger t "
                          "join pg_class c on c.oid = t.tgrelid "
                          "where c.relname = %s and t.tgname like %s order by 1",
                    (table, "_%s_%%" % CLUSTER))
    return dict(rows)


def assert_origin_everywhere(db, node):
    assert origins(db) == {n: (node, None) for n in db.node_ids}
    # The origin logs and accepts writes; the others deny writes and do not log.
    for other in db.node_ids:
        modes = trigger_modes(db, other)
        log, deny = modes["_%s_logtrigger" % CLUSTER], modes["_%s_denyaccess" % CLUSTER]
        assert (log, deny) == (("O", "D") if other == node else ("D", "O")), (other, modes)
        assert "_%s_lockedset" % CLUSTER not in modes


def test_switchover_under_write_load(fresh_db, slons):
    db = fresh_db
    started = time.monotonic()
    bring_up(db, slons)
    # Set 2 (origin 1) has no subscriber: it cannot be moved anywhere.
    run_module("slony_set", common(db, id=2, origin=1, comment="not subscribed"))
    run_module("slony_table", common(db, set_id=2, tables=["billing.payments"]))
    baseline = dump(db, CLUSTER)
    switch = {"set_id": 1, "to_node": 2}

    # -- refusals: nothing changes -------------------------------------------------------
    refused = run_module("slony_switchover", common(db, set_id=2, to_node=2), expect_failure=True)
    assert "switchover of set 2 from node 1 to node 2 refused, nothing was changed" in refused.msg
    assert "node 2 does not subscribe to set 2" in refused.msg
    # A whole-node switchover is refused as a whole when one of its sets cannot move.
    refused = run_module("slony_switchover", common(db, from_node=1, to_node=2), expect_failure=True)
    assert "switchover of sets 1, 2 from node 1 to node 2 refused" in refused.msg
    assert "node 2 does not subscribe to set 2" in refused.msg
    assert "set 1" not in refused.msg.split("refused, nothing was changed:")[1]

    # A stopped slon (the only problem) is waited for min(30 s, wait_timeout) before the
    # run refuses: the plan's first step, which check mode does not run.
    slons.stop(3)
    refused = run_module("slony_switchover", common(db, wait_timeout=4, **switch),
                         expect_failure=True)
    assert "refused, nothing was changed: the slon daemon of node 3 is not running" in refused.msg
    assert "node 2 is not running" not in refused.msg
    assert refused.result["queries"] == []
    # Lag gates too (node 2 stops confirming while its slon is down), and every problem
    # comes in the same message, at once (waiting for the slons would not help).
    slons.stop(2)
    time.sleep(1.5)
    refused = run_module("slony_switchover", common(db, max_lag_events=0, max_lag_seconds=1,
                                                    wait_timeout=4, **switch), expect_failure=True)
    message = refused.msg
    assert "the slon daemon of node 2 is not running (no live sl_nodelock entry on node 2)" in message
    assert "the slon daemon of node 3 is not running" in message
    assert "events behind node 1 (max_lag_events = 0)" in message
    assert "seconds behind node 1 (max_lag_seconds = 1.0)" in message
    slons.start(2, 3)
    assert_unchanged(dump(db, CLUSTER), baseline)

    # A transaction older than the lock keeps LOCK SET's wait from ending: on timeout the
    # module unlocks the set again and fails, naming the transaction.
    blocker = db.connect(1, autocommit=False)
    with blocker.cursor() as cur:
        cur.execute("select txid_current(), pg_backend_pid()")
        blocker_pid = cur.fetchone()[1]
    try:
        failed = run_module("slony_switchover", common(db, wait_timeout=3, **switch),
                            expect_failure=True)
    finally:
        blocker.rollback()
        blocker.close()
    assert "waiting for the transactions that were running when set 1 was locked" in failed.msg
    assert "pid %d" % blocker_pid in failed.msg
    assert "set 1 unlocked again on node 1" in failed.msg
    assert calls(failed.result["queries"]) == ["lockset(1)", "unlockset(1)"]
    assert_unchanged(dump(db, CLUSTER), baseline)

    # -- under load ------------------------------------------------------------------------
    load = WriteLoad(db)
    load.start()
    try:
        load.wait_commits(1, 20)

        checked = run_module("slony_switchover", common(db, **switch), check=True, diff=True)
        assert checked.changed and checked.result["events"] == []
        assert calls(checked.result["queries"]) == ["lockset(1)", "moveset(1, 2)"]
        assert ("lock set (id = 1, origin = 1);\nmove set (id = 1, old origin = 1, new origin = 2);\n"
                "wait for event (origin = 1, confirmed = all, wait on = 1, timeout = 90);"
                in checked.result["slonik"])
        assert checked.result["before"] == {"sets": [{"id": 1, "origin": 1, "locked": False}]}
        assert checked.result["after"] == {"sets": [{"id": 1, "origin": 2, "locked": False}]}
        assert_unchanged(dump(db, CLUSTER), baseline)

        moved = run_module("slony_switchover", common(db, **switch), diff=True)
        assert moved.changed
        assert [e["type"] for e in moved.result["events"]] == ["SYNC", "MOVE_SET"]
        assert moved.result["sets"][0]["action"] == "move"
        # Returned only after every node processed the move.
        assert_origin_everywhere(db, 2)
        # The old origin now subscribes to set 1 from the new one, forwarding.
        assert db.query(2, f"select sub_provider, sub_forward, sub_active from {NS}.sl_subscribe "
                           "where sub_set = 1 and sub_receiver = 1") == [(2, True, True)]
        timings = moved.result["timings"]
        assert 0 <= timings["locked_seconds"] < 30 and 0 <= timings["confirmed_seconds"] < 60

        again = run_module("slony_switchover", common(db, **switch))
        assert not again.changed
        assert again.result["queries"] == [] and again.result["slonik"] == ""
        assert again.result["sets"][0]["action"] == "done"
        load.wait_commits(2, 20)

        # Back, naming the old origin instead of the set, through the playbook.
        output = run_playbook({"slony_cluster_name": CLUSTER, "slony_from_node": 2,
                               "slony_to_node": 1, "slony_wait_timeout": 90,
                               "slony_admin_conninfo": common(db)["admin_conninfo"]})
        assert "set 1: origin node 2 -> node 1 (move)" in output
        assert "writes were refused on the old origin for" in output
        assert "changed=1" in output and "failed=0" in output
        assert db.lab.password not in output
        assert_origin_everywhere(db, 1)
        back_args = {"from_node": 2, "to_node": 1}
        again = run_module("slony_switchover", common(db, **back_args))
        assert not again.changed and again.result["queries"] == []
        load.wait_commits(1, 20)

        # An interrupted run left set 1 locked (slonik's LOCK SET, no MOVE SET): writes fail
        # on node 1 until the next run finishes the move, reusing the lock.
        db.slonik("lock set (id = 1, origin = 1);\n")
        locked_at = origins(db)[1][1]
        assert locked_at is not None
        locked_errors = load.tolerated["locked against updates"]
        checked = run_module("slony_switchover", common(db, **switch), check=True)
        assert checked.result["sets"][0]["action"] == "resume"
        assert calls(checked.result["queries"]) == ["moveset(1, 2)"]
        assert "reuse the lock" in " ".join(q["sql"] for q in checked.result["queries"])
        assert origins(db)[1] == (1, locked_at)
        resumed = run_module("slony_switchover", common(db, **switch))
        assert resumed.changed and resumed.result["sets"][0]["action"] == "resume"
        assert calls(resumed.result["queries"]) == ["moveset(1, 2)"]
        assert_origin_everywhere(db, 2)
        assert load.tolerated["locked against updates"] > locked_errors
        load.wait_commits(2, 20)
    finally:
        load.stop()

    assert not load.unexpected, load.unexpected
    assert load.origins == [1, 2, 1, 2], load.origins
    assert min(load.commits[1], load.commits[2]) >= 40, load.commits

    # Everything node 2 committed has reached every node (slony_sync is the barrier).
    synced = run_module("slony_sync", common(db, node=2))
    assert synced.result["event"]["type"] == "SYNC" and synced.result["confirmed_by"] == [1, 3]
    assert db.confirmed_by(2, synced.result["event"]["seqno"]) >= {1, 3}

    sums = {node: checksums(db, node) for node in db.node_ids}
    assert sums[1] == sums[2] == sums[3], sums
    assert sums[1]["public.customers"][0] == 3 + len(load.customers)
    for node in db.node_ids:
        assert db.query(node, "select id, name, email from public.customers where id >= %s "
                              "order by id", (FIRST_ID,)) == [
            (cid,) + values for cid, values in sorted(load.customers.items())]
        assert db.query(node, "select id, customer_id, product_id, quantity from public.orders "
                              "where id >= %s order by id", (FIRST_ID,)) == [
            (oid,) + values for oid, values in sorted(load.orders.items())]
        assert [(i, c, float(a), n) for i, c, a, n in db.query(
            node, "select id, customer_id, amount, number from billing.invoices where id >= %s "
                  "order by id", (FIRST_ID,))] == [
            (iid,) + values for iid, values in sorted(load.invoices.items())]
    numbers = [values[2] for values in load.invoices.values()]
    assert len(set(numbers)) == len(numbers), "an invoice number was handed out twice"
    print("switchover test: %d transactions committed (%s), %d refused writes (%s), %.0fs" % (
        sum(load.commits.values()), dict(load.commits), sum(load.tolerated.values()),
        dict(load.tolerated), time.monotonic() - started))


def test_sync_waits_for_confirmations_and_names_a_stopped_slon(fresh_db, slons):
    db = fresh_db
    for node in db.node_ids:
        run_module("slony_node", common(db, id=node, comment="node %d" % node))
    slons.start()
    run_module("slony_path", common(db, paths=mesh(db, db.node_ids)))
    baseline = dump(db, CLUSTER)

    checked = run_module("slony_sync", common(db, node=1), check=True)
    assert checked.changed and checked.result["event"] is None and checked.result["events"] == []
    assert [q["sql"] for q in checked.result["queries"]] == [
        "-- create a SYNC event on node 1; select \"_lab\".\"createevent\"('_lab', 'SYNC')"]
    assert ("sync (id = 1);\nwait for event (origin = 1, confirmed = all, wait on = 1, timeout = 90);"
            in checked.result["slonik"])
    assert_unchanged(dump(db, CLUSTER), baseline)

    synced = run_module("slony_sync", common(db, node=1))
    event = synced.result["event"]
    assert synced.changed and event["origin"] == 1 and event["type"] == "SYNC"
    assert synced.result["events"] == [event] and synced.result["confirmed_by"] == [2, 3]
    # Confirmed means: both nodes processed it, and node 1 knows.
    assert db.confirmed_by(1, event["seqno"]) >= {2, 3}
    for node in (2, 3):
        assert db.scalar(node, f"select count(*) from {NS}.sl_event where ev_origin = 1 "
                               "and ev_seqno = %s and ev_type = 'SYNC'", (event["seqno"],)) == 1
    assert [q["sql"] for q in synced.result["queries"]] == [
        "select \"_lab\".\"createevent\"('_lab', 'SYNC')"]
    again = run_module("slony_sync", common(db, node=1, confirmers=[3, 1]))
    assert again.changed and again.result["confirmed_by"] == [3]
    assert again.result["event"]["seqno"] > event["seqno"]

    refused = run_module("slony_sync", common(db, node=1, confirmers=[3, 7]), expect_failure=True)
    assert "confirmers: node 7 is not a node of the cluster" in refused.msg

    # A stopped slon: the timeout names the node behind and says its slon is not running.
    slons.stop(3)
    timed_out = run_module("slony_sync", common(db, node=1, wait_timeout=3), expect_failure=True)
    assert "timed out after 3s waiting for event" in timed_out.msg
    assert "node 3 (confirmed up to" in timed_out.msg and "slon not running" in timed_out.msg
    assert "node 2 (" not in timed_out.msg
    slons.start(3)
    # The origin's own slon collects the confirmations: without it nothing is confirmed,
    # and the error says why although the nodes behind run their slons.
    slons.stop(1)
    timed_out = run_module("slony_sync", common(db, node=1, wait_timeout=3), expect_failure=True)
    assert "slon running" in timed_out.msg
    assert "the slon of node 1, which collects the confirmations, is not running" in timed_out.msg
    slons.start(1)


def test_switchover_playbook_defaults_to_the_inventory(lab, tmp_path):
    """Without slony_admin_conninfo the playbook addresses the nodes of the inventory's group
    slony_nodes, and the cluster its slony_cluster_name names: inventory/lab.yml (cluster
    demo, database app), its nodes moved to this lab's ports."""
    ports = tmp_path / "lab_ports.json"
    ports.write_text(json.dumps({"all": {"children": {"slony_nodes": {"hosts": {
        "node%d" % node: {"slony_db_port": lab.port(node), "slony_db_password": lab.password}
        for node in (1, 2, 3)}}}}}))
    output = run_playbook({"slony_set_id": 1, "slony_to_node": 2}, expect_failure=True,
                          inventories=(REPO_ROOT / "inventory" / "lab.yml", ports))
    error = re.search(r"Module failed: node 2 \((.*)\) is not a node of Slony cluster demo", output)
    assert error, output[-3000:]
    assert sorted(error.group(1).split()) == sorted(
        ["host=127.0.0.1", "port=%d" % lab.port(2), "dbname=app", "user=slony", "password=********"])
    assert lab.password not in output
    output = run_playbook({"slony_to_node": 2}, expect_failure=True)
    assert "Set slony_to_node and exactly one of slony_set_id" in output
