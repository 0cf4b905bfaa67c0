"""slony_compare against a real cluster: equal under continuous writes, a planted
difference found exactly, undecided when a receiver's slon is stopped.

One cluster for the whole file (3 nodes, node 3 cascaded from node 2), built with the
Python API: the sample tables, a 50 000-row table and a table with a two-column key.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from ansible_collections.dany.slony.plugins.module_utils.api import Cluster as ApiCluster
from ansible_collections.dany.slony.plugins.module_utils.cluster import Cluster
from ansible_collections.dany.slony.plugins.module_utils.compare import compare

from ansible_run import run_module
from lab import FreshDatabase, SlonFleet, unique_dbname, wait_until

CLUSTER = "cmp"
BIG_ROWS = 50000
CHUNK = 2000
TABLES = ["public.customers", "public.products", "public.orders", "billing.invoices",
          "public.big", "public.pairs"]
SEQUENCES = ["public.invoice_number_seq", "public.big_seq"]

DDL = """
create sequence public.big_seq start with 1000001;
create table public.big (id bigint primary key, payload text not null, n int, at timestamptz);
create table public.pairs (a int, b text, v int not null, primary key (a, b));
"""

DATA = """
insert into public.big select g, md5(g::text), g %% 97, '2024-01-01'::timestamptz + g * interval '1 minute'
  from generate_series(1, %d) g;
insert into public.pairs select g / 10, 'k' || (g %% 10), g from generate_series(1, 3000) g;
""" % BIG_ROWS


@pytest.fixture(scope="module")
def cmp_cluster(lab):
    db = FreshDatabase(lab, unique_dbname("compare"), list(lab.node_ids), cluster_name=CLUSTER).create()
    slons = SlonFleet(db, CLUSTER)
    try:
        for node in db.node_ids:
            db.query(node, DDL)
        db.query(1, DATA)
        api = ApiCluster(CLUSTER, db.admin_conninfo, wait_timeout=120)
        api.store_nodes(wait=False)
        api.store_paths(wait=False)
        slons.start()
        api.create_set(1, 1, "compare")
        api.set_add_table(1, TABLES)
        api.set_add_sequence(1, SEQUENCES)
        api.subscribe(1, [2, {"receiver": 3, "provider": 2}])
        yield db, slons
    finally:
        slons.kill_all()
        db.drop()


def args(db, **extra):
    result = {"cluster_name": CLUSTER, "admin_conninfo": {str(k): v for k, v in db.admin_conninfo.items()},
              "wait_timeout": 60, "chunk_size": CHUNK}
    result.update(extra)
    return result


class Writer(threading.Thread):
    """Commits on the origin continuously: new rows of public.big (from public.big_seq),
    updates of public.pairs rows with a < 50, one transaction every few milliseconds."""

    def __init__(self, db):
        threading.Thread.__init__(self, daemon=True)
        self.db = db
        self.stop_event = threading.Event()
        self.commits = 0
        self.error = None

    def run(self):
        conn = self.db.connect(1, autocommit=False)
        rnd = random.Random(7)
        try:
            while not self.stop_event.is_set():
                with conn.cursor() as cur:
                    cur.execute("insert into public.big select nextval('public.big_seq'), 'w', 1, now()")
                    cur.execute("update public.pairs set v = v + 1 where a = %s and b = %s",
                                (rnd.randrange(50), "k%d" % rnd.randrange(10)))
                conn.commit()
                self.commits += 1
                time.sleep(0.003)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            conn.close()

    def __enter__(self):
        self.start()
        wait_until(lambda: self.commits > 20, timeout=10, message="writer started")
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(10)
        assert self.error is None, self.error


def replica_sql(db, node, statement, params=None):
    """Run a statement on a receiver with the replication triggers bypassed."""
    conn = db.connect(node)
    try:
        with conn.cursor() as cur:
            cur.execute("set session_replication_role = replica")
            cur.execute(statement, params)
    finally:
        conn.close()


def test_equal_while_the_origin_is_written(cmp_cluster):
    db, dummy = cmp_cluster
    with Writer(db) as writer:
        real = run_module("slony_compare", args(db))
        again = run_module("slony_compare", args(db), check=True)
        with Cluster(CLUSTER, db.admin_conninfo) as cluster:  # the core, for its rounds
            direct = compare(cluster, chunk_size=CHUNK, timeout=60)
        commits = writer.commits
    assert commits > 100, "the writer hardly wrote (%d commits)" % commits
    for run in (real, again):
        result = run.result
        assert result["equal"] is True, result["msg"]
        assert not run.changed
        assert result["differences"] == [] and result["undecided"] == []
        assert sorted(t["name"] for t in result["tables"]) == sorted(TABLES)
        assert sorted(s["name"] for s in result["sequences"]) == sorted(SEQUENCES)
        big = [t for t in result["tables"] if t["name"] == "public.big"][0]
        assert big["key"] == ["id"] and big["chunks"] >= BIG_ROWS // CHUNK + 1
        assert big["rows"]["1"] >= BIG_ROWS and big["rows"]["1"] == big["rows"]["2"] == big["rows"]["3"]
        assert big["nodes"] == {"2": "equal", "3": "equal"}
        seq = [s for s in result["sequences"] if s["name"] == "public.big_seq"][0]
        assert seq["status"] == "equal" and len(set(seq["values"].values())) == 1
        # One round decided everything: the receivers were read on the round's SYNC.
        assert [e["type"] for e in result["events"]] == ["SYNC"], result["events"]
        assert db.lab.password not in run.everything()
    assert direct["equal"] is True and len(direct["events"]) == 1, direct["msg"]
    pairs = [t for t in direct["tables"] if t["name"] == "public.pairs"][0]
    assert pairs["key"] == ["a", "b"] and pairs["chunks"] == 3000 // CHUNK + 1


def test_a_planted_difference_is_found_exactly(cmp_cluster):
    db, dummy = cmp_cluster
    replica_sql(db, 2, "update public.big set payload = 'planted' where id = 12345")
    replica_sql(db, 3, "delete from public.pairs where a = 150 and b = 'k3'")
    try:
        with Writer(db):
            run = run_module("slony_compare", args(db))
        result = run.result
        assert result["equal"] is False and result["undecided"] == []
        # Round 1 finds the ranges, round 2 (a new SYNC) confirms them.
        assert [e["type"] for e in result["events"]] == ["SYNC", "SYNC"]
        found = sorted((d["kind"], d["name"], d["node"]) for d in result["differences"])
        assert found == [("table", "public.big", 2), ("table", "public.pairs", 3)], result["differences"]
        big = [d for d in result["differences"] if d["name"] == "public.big"][0]
        low, high = big["first_difference"]["from_key"], big["first_difference"]["to_key"]
        assert int(low[0]) < 12345 <= int(high[0]) and int(high[0]) - int(low[0]) == CHUNK
        assert big["origin_rows"] == big["node_rows"] == CHUNK
        pairs = [d for d in result["differences"] if d["name"] == "public.pairs"][0]
        low, high = pairs["first_difference"]["from_key"], pairs["first_difference"]["to_key"]
        assert low is None and (150, "k3") <= (int(high[0]), high[1])  # the first range
        assert pairs["node_rows"] == pairs["origin_rows"] - 1
        statuses = dict((t["name"], t["status"]) for t in result["tables"])
        assert statuses == dict((t, "different" if t in ("public.big", "public.pairs") else "equal") for t in TABLES)
        assert "public.big" in result["msg"]

        failed = run_module("slony_compare", args(db, tables=["public.big"], sequences=False,
                                                  fail_on_difference=True), expect_failure=True)
        assert "public.big (node 2" in failed.msg and "pairs" not in failed.msg
        assert failed.result["differences"][0]["name"] == "public.big"
        assert db.lab.password not in failed.everything()
    finally:
        replica_sql(db, 2, "update public.big set payload = md5(id::text) where id = 12345")
        row = db.query(1, "select a, b, v from public.pairs where a = 150 and b = 'k3'")
        replica_sql(db, 3, "insert into public.pairs values (%s, %s, %s)", row[0])
    for node, query in ((2, "select payload from public.big where id = 12345"),
                        (3, "select v from public.pairs where a = 150 and b = 'k3'")):
        assert db.query(node, query) == db.query(1, query)


def test_a_stopped_receiver_is_undecided_not_different(cmp_cluster):
    db, slons = cmp_cluster
    slons.stop(3)
    try:
        db.query(1, "insert into public.big select nextval('public.big_seq'), 'while 3 is down', 2, now()"
                    " from generate_series(1, 50)")
        started = time.monotonic()
        run = run_module("slony_compare", args(db, wait_timeout=4))
        took = time.monotonic() - started
        result = run.result
        assert result["equal"] is False and result["differences"] == []
        assert sorted(result["undecided"]) == sorted(TABLES + ["public.big_seq"])
        assert all(t["nodes"] == {"2": "equal", "3": "undecided"} for t in result["tables"])
        seq = [s for s in result["sequences"] if s["name"] == "public.big_seq"][0]
        assert seq["nodes"] == {"2": "equal", "3": "behind"} and seq["values"]["3"] < seq["values"]["1"]
        assert "node 3" in result["msg"] and "slon not running" in result["msg"]
        assert took < 30
        failed = run_module("slony_compare", args(db, wait_timeout=1, nodes=[3], fail_on_difference=True),
                            expect_failure=True)
        assert "could not decide" in failed.msg and "public.big" in failed.msg
    finally:
        slons.start(3)
