"""cluster.normalize_admin_conninfo and the connection-free parts of Cluster (no database)."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils.cluster import (
    Cluster, normalize_admin_conninfo)
from ansible_collections.dany.slony.plugins.module_utils.conninfo import REDACTED
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError


def test_string_and_int_keys_become_ints():
    result = normalize_admin_conninfo({"1": "host=db1 dbname=shop", 2: "host=db2 dbname=shop",
                                       " 3 ": "host=db3 dbname=shop"})
    assert result == {1: "host=db1 dbname=shop", 2: "host=db2 dbname=shop",
                      3: "host=db3 dbname=shop"}
    assert all(isinstance(k, int) for k in result)


def test_conninfo_is_kept_verbatim():
    conninfo = "postgresql://slony:s3cret@db1/shop"
    assert normalize_admin_conninfo({1: conninfo}) == {1: conninfo}


@pytest.mark.parametrize("value", [None, {}, [], "host=db1", [(1, "host=db1")]])
def test_not_a_mapping(value):
    with pytest.raises(SlonyError) as info:
        normalize_admin_conninfo(value)
    assert "admin_conninfo must be a mapping of node id to libpq conninfo" in str(info.value)


@pytest.mark.parametrize("key, message", [
    ("one", "admin_conninfo key 'one' is not an integer"),
    ("", "admin_conninfo key '' is not an integer"),
    ("0", "admin_conninfo key '0' must be a positive 32-bit integer"),
    (-2, "admin_conninfo key -2 must be a positive 32-bit integer"),
    (2 ** 31, "admin_conninfo key 2147483648 must be a positive 32-bit integer"),
    (True, "admin_conninfo key True must be a positive 32-bit integer"),
])
def test_bad_keys(key, message):
    with pytest.raises(SlonyError) as info:
        normalize_admin_conninfo({key: "host=db1 password=s3cret"})
    assert str(info.value) == message
    assert "s3cret" not in str(info.value)


def test_same_node_twice():
    with pytest.raises(SlonyError) as info:
        normalize_admin_conninfo({1: "host=db1", "1": "host=db1bis"})
    assert str(info.value) == "admin_conninfo names node 1 twice"


@pytest.mark.parametrize("conninfo", [
    "host=db2 password=s3cret junk",
    "host=db2 password='s3cret",
    "host=db2 pasword=s3cret",
    "postgresql://slony:s3cret@db2/shop?nonsense=s3cret",
])
def test_bad_conninfo_names_the_node_and_hides_the_password(conninfo):
    with pytest.raises(SlonyError) as info:
        normalize_admin_conninfo({1: "host=db1 password=other", 2: conninfo})
    message = str(info.value)
    assert message.startswith("admin_conninfo for node 2 is not a valid libpq conninfo")
    assert "s3cret" not in message
    assert "other" not in message


@pytest.mark.parametrize("conninfo, problem", [("", "is empty"), ("  ", "is empty"),
                                               (None, "is empty"), (12, "must be a string")])
def test_empty_conninfo_names_the_node(conninfo, problem):
    with pytest.raises(SlonyError) as info:
        normalize_admin_conninfo({"7": conninfo})
    assert str(info.value).startswith("admin_conninfo for node 7 " + problem)


# -- Cluster without connecting ---------------------------------------------------------

def make_cluster():
    return Cluster("shop", {"2": "host=db2 dbname=shop password=s3cret",
                            1: "postgresql://slony:t0psecret@db1/shop"})


def test_cluster_registers_every_password():
    cluster = make_cluster()
    assert {"s3cret", "t0psecret"} <= cluster.redactor.secrets
    assert cluster.nodes() == [1, 2]
    assert cluster.namespace == "_shop"
    assert cluster.has_node(2) and not cluster.has_node(3)
    assert cluster.queries == []


def test_cluster_describe_hides_passwords():
    cluster = make_cluster()
    for node in (1, 2):
        text = cluster.describe(node)
        assert text.startswith("node %d (" % node)
        assert REDACTED in text
        assert "s3cret" not in text and "t0psecret" not in text
    assert cluster.describe(9) == "node 9"


def test_cluster_require_node():
    cluster = make_cluster()
    cluster.require_node(1)
    with pytest.raises(SlonyError) as info:
        cluster.require_node(5, "event_node")
    assert str(info.value) == "node 5 has no entry in admin_conninfo, which event_node needs"
    assert info.value.node == 5


def test_cluster_log_redacts():
    cluster = make_cluster()
    cluster.log(2, "select 'host=db2 password=s3cret'")
    assert cluster.queries == [{"node": 2, "sql": "select 'host=db2 password=%s'" % REDACTED}]


def test_cluster_error_keeps_primary_message_redacted():
    cluster = make_cluster()
    cluster.log(1, "select 1")

    class Diag:
        message_primary = "permission denied for t0psecret "

    class FakeDbError(Exception):
        diag = Diag()

    error = cluster.error(1, FakeDbError("long text\nDETAIL: t0psecret"), doing="storePath")
    assert str(error) == "node 1: storePath failed: permission denied for %s" % REDACTED
    assert error.node == 1
    assert error.queries == [{"node": 1, "sql": "select 1"}]


def test_cluster_invalid_name_refused_before_anything_else():
    with pytest.raises(SlonyError) as info:
        Cluster("1shop", {1: "host=db1"})
    assert "invalid cluster_name '1shop'" in str(info.value)


class FakeConn:
    closed = False

    def __init__(self, node):
        self.node = node

    def close(self):
        self.closed = True


def test_open_all_connects_in_parallel_and_remembers_failures(monkeypatch):
    import threading
    cluster = Cluster("shop", {1: "host=a", 2: "host=b", 3: "host=c"})
    barrier = threading.Barrier(3, timeout=5)
    opened = []

    def fake_open(node):
        barrier.wait()  # only passes if the three connects run at the same time
        opened.append(node)
        if node == 2:
            raise SlonyError("cannot connect to node 2 (host=b): refused", node=2)
        return FakeConn(node)

    monkeypatch.setattr(cluster, "_open", fake_open)
    monkeypatch.setattr(cluster, "_probe_state", lambda node, conn: ("initialized", node))
    cluster.open_all()
    assert sorted(opened) == [1, 2, 3]
    assert cluster.state(1) == ("initialized", 1) and cluster.state(3) == ("initialized", 3)
    # The failure is reported on first use, without a second connection attempt.
    monkeypatch.setattr(cluster, "_open", lambda node: pytest.fail("connected again"))
    with pytest.raises(SlonyError) as info:
        cluster.state(2)
    assert "cannot connect to node 2" in str(info.value)
    cluster.open_all()  # nothing left to open


def test_open_all_leaves_a_single_node_to_the_lazy_path(monkeypatch):
    cluster = Cluster("shop", {1: "host=a"})
    monkeypatch.setattr(cluster, "_open", lambda node: pytest.fail("opened eagerly"))
    cluster.open_all()


def test_the_run_lock_wait_honours_wait_timeout_and_names_the_holder(monkeypatch):
    from fake_conn import FakeConnection
    from fakes import FakeClock
    cluster = Cluster("shop", {1: "host=db1 dbname=shop user=slony password=s3cret"})
    # Another run holds the lock for ever; the holder query names it.
    conn = FakeConnection(answer=lambda query: (False,) if "pg_try_advisory_lock" in query else (
        "4242 (dany.slony (run lock), since 2026-12-02 03:00:00+00)",))
    monkeypatch.setattr(cluster, "_run_lock_connection", lambda: (1, conn))
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        cluster.acquire_run_lock(7, clock=clock)
    assert clock.waited == pytest.approx(7)
    assert str(info.value) == (
        "timed out after 7s waiting for the run lock of cluster shop; another run is changing "
        "the cluster (it holds the run lock on node 1: backend 4242 (dany.slony (run lock), "
        "since 2026-12-02 03:00:00+00))")
    assert conn.closed and cluster.lock_node is None
