"""The core library against the real lab: connections, schema load, snapshot, events, waits."""

from __future__ import annotations

import re
import time

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import catalog as catalog_mod
from ansible_collections.dany.slony.plugins.module_utils.catalog import read_snapshot
from ansible_collections.dany.slony.plugins.module_utils.cluster import (
    NODE_INITIALIZED, NODE_NO_SCHEMA, Cluster)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import (
    slon_state, submit_event, wait_for_event)
from ansible_collections.dany.slony.plugins.module_utils.nodes import plan_node_present
from ansible_collections.dany.slony.plugins.module_utils.paths import plan_paths
from ansible_collections.dany.slony.plugins.module_utils.plan import execute_plan

CLUSTER = "lab"


def build_cluster(db, nodes=(1, 2, 3), timeout=60):
    """Initialise node 1, store the others, full-mesh paths, through the core API."""
    with Cluster(CLUSTER, db.admin_conninfo) as cluster:
        for node in nodes:
            plan = plan_node_present(cluster, node)[0]
            execute_plan(cluster, plan, wait_enabled=False)
    paths = [{"server": s, "client": c, "conninfo": db.conninfo(s)}
             for s in nodes for c in nodes if s != c]
    with Cluster(CLUSTER, db.admin_conninfo) as cluster:
        plan = plan_paths(cluster, paths)[0]
        execute_plan(cluster, plan, wait_enabled=False)


def test_connection_is_set_up_like_slonik(fresh_db):
    with Cluster(CLUSTER, fresh_db.admin_conninfo, application_name="dany.slony-test") as cluster:
        conn = cluster.connection(1)
        with conn.cursor() as cur:
            cur.execute("select current_setting('session_replication_role'),"
                        " current_setting('DateStyle'), current_setting('application_name')")
            role, datestyle, app = cur.fetchone()
        assert role == "local"
        assert datestyle.startswith("ISO")
        assert app == "dany.slony-test"
        assert cluster.state(1) == (NODE_NO_SCHEMA, None)


def test_check_mode_sessions_are_read_only(fresh_db):
    """Check mode and dry runs connect with default_transaction_read_only: a write a plan
    would do by mistake is refused by PostgreSQL, not just skipped by our code."""
    with Cluster(CLUSTER, fresh_db.admin_conninfo, read_only=True) as cluster:
        conn = cluster.connection(1)
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute("create table public.written_in_check_mode (id int)")
        conn.rollback()
        assert cluster.fetch(1, "select 1") == [(1,)]
    assert fresh_db.scalar(1, "select to_regclass('public.written_in_check_mode')") is None
    with Cluster(CLUSTER, fresh_db.admin_conninfo) as cluster:
        with cluster.connection(1).cursor() as cur:
            cur.execute("show default_transaction_read_only")
            assert cur.fetchone() == ("off",)


def test_init_node_loads_schema_and_discards_the_connection(fresh_db):
    with Cluster(CLUSTER, fresh_db.admin_conninfo) as cluster:
        plan, before, after, dummy = plan_node_present(cluster, 1, "first")
        assert before == {"id": 1, "state": "absent"}
        assert [s.kind for s in plan.steps] == ["init_node"]
        events = execute_plan(cluster, plan)
        assert [e.type for e in events] == ["ENABLE_NODE"]
        assert events[0].origin == 1
        # The loading connection (search_path changed by the SQL files) is gone.
        assert 1 not in cluster._conns
        assert cluster.state(1) == (NODE_INITIALIZED, 1)
    assert fresh_db.scalar(1, 'select "_lab".getLocalNodeId(%s)', ("_lab",)) == 1
    assert fresh_db.scalar(1, 'select "_lab".slonyVersion()') == "2.2.11"
    assert fresh_db.query(1, 'select no_id, no_active, no_comment from "_lab".sl_node') == [
        (1, True, "first")]


def test_identity_check_names_both_nodes(fresh_db):
    build_cluster(fresh_db, nodes=(1, 2))
    swapped = {1: fresh_db.conninfo(2), 2: fresh_db.conninfo(1)}
    with Cluster(CLUSTER, swapped) as cluster:
        with pytest.raises(SlonyError) as err:
            cluster.connection(1)
    message = str(err.value)
    assert "admin_conninfo for node 1" in message and "node 2 of cluster lab" in message
    assert fresh_db.lab.password not in message


def test_snapshot_is_one_query_whatever_the_size(fresh_db, monkeypatch):
    build_cluster(fresh_db, nodes=(1, 2))
    calls = []

    def counting_fetch(self, node, query, params=None, check_identity=True):
        calls.append(node)
        return original(self, node, query, params, check_identity)

    original = Cluster.fetch
    monkeypatch.setattr(Cluster, "fetch", counting_fetch)
    with Cluster(CLUSTER, fresh_db.admin_conninfo) as cluster:
        small = read_snapshot(cluster, 1)
        small_calls = len(calls)
        # 300 sets: the snapshot must still be one query.
        conn = cluster.connection(1)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("lock table {ns}.sl_event_lock, {ns}.sl_config_lock").format(
                ns=cluster.ns))
            for set_id in range(1, 301):
                cur.execute(sql.SQL("select {}.storeSet(%s, %s)").format(cluster.ns),
                            (set_id, "set %d" % set_id))
        conn.commit()
        calls.clear()
        big = read_snapshot(cluster, 1)
        assert len(calls) == small_calls == 1
    assert len(small.sets) == 0 and len(big.sets) == 300
    assert big.sets[300].comment == "set 300" and big.sets[300].origin == 1
    assert sorted(big.nodes) == [1, 2]
    # Without slons, node 1 only knows the paths stored on it (it is their client).
    assert list(big.paths) == [(2, 1)] and big.paths[(2, 1)].conninfo == fresh_db.conninfo(2)
    assert big.slon_running is False


def test_event_is_confirmed_by_every_node_with_slons_running(fresh_db, slons):
    build_cluster(fresh_db)
    slons.start()
    with Cluster(CLUSTER, fresh_db.admin_conninfo) as cluster:
        events = submit_event(cluster, 2, sql.SQL("select {}.createEvent(%s, 'SYNC')")
                              .format(cluster.ns), ("_lab",))
        assert len(events) == 1 and events[0].origin == 2 and events[0].type == "SYNC"
        started = time.monotonic()
        wait_for_event(cluster, events[0], timeout=60)
        elapsed = time.monotonic() - started
        assert slon_state(cluster, 1) == "running"
    for node in (1, 3):
        confirmed = fresh_db.scalar(
            node, 'select max(con_seqno) from "_lab".sl_confirm where con_origin = 2 and '
                  'con_received = %s', (node,))
        assert confirmed >= events[0].seqno
    assert elapsed < 30


def test_submit_event_does_not_trust_the_return_value(fresh_db, slons):
    """subscribeSet() returns the set id; the core must report the real events."""
    build_cluster(fresh_db, nodes=(1, 2))
    with Cluster(CLUSTER, fresh_db.admin_conninfo) as cluster:
        submit_event(cluster, 1, sql.SQL("select {}.storeSet(7, 'x')").format(cluster.ns))
        events = submit_event(cluster, 1, sql.SQL("select {}.subscribeSet(7, 1, 2, true, false)")
                              .format(cluster.ns))
    assert [e.type for e in events] == ["SUBSCRIBE_SET", "ENABLE_SUBSCRIPTION"]
    assert events[1].seqno == events[0].seqno + 1 and events[0].seqno > 5000000000


def test_wait_times_out_naming_the_node_whose_slon_is_stopped(fresh_db, slons):
    build_cluster(fresh_db)
    slons.start(1, 2)  # node 3's slon never runs
    with Cluster(CLUSTER, fresh_db.admin_conninfo) as cluster:
        sync = sql.SQL("select {}.createEvent(%s, 'SYNC')").format(cluster.ns)
        # First make sure node 2's confirmations reach node 1 at all: a slon's listener
        # can sleep 10 s after a configuration change, longer than the timeout below.
        warm_up = submit_event(cluster, 1, sync, ("_lab",))
        wait_for_event(cluster, warm_up[0], confirmers=[2], timeout=60)
        events = submit_event(cluster, 1, sync, ("_lab",))
        started = time.monotonic()
        with pytest.raises(SlonyError) as err:
            wait_for_event(cluster, events[0], timeout=4)
        elapsed = time.monotonic() - started
    message = str(err.value)
    assert "timed out after 4s" in message
    assert "node 3 (confirmed up to" in message and "slon not running" in message
    assert 4 <= elapsed < 10
    if "node 2 (" in message:
        # Node 2's slon runs and processed the event, but its confirmation can take one
        # of slon's 10 s listener sleeps to reach node 1: then it is named as running.
        assert re.search(r"node 2 \(confirmed up to \d+; slon running\)", message), message
    else:
        assert err.value.node == 3


def test_errors_are_clear_and_never_show_the_password(lab, fresh_db):
    password = lab.password
    bad = {1: fresh_db.conninfo(1) + " port"}  # missing "=" after a key
    with pytest.raises(SlonyError) as err:
        Cluster(CLUSTER, bad)
    assert "admin_conninfo for node 1 is not a valid libpq conninfo" in str(err.value)
    assert password not in str(err.value)

    with pytest.raises(SlonyError) as err:
        Cluster("1bad-name", fresh_db.admin_conninfo)
    assert "invalid cluster_name '1bad-name'" in str(err.value)

    unreachable = {1: fresh_db.conninfo(1).replace("port=%d" % lab.port(1), "port=1")}
    with Cluster(CLUSTER, unreachable, connect_timeout=3) as cluster:
        with pytest.raises(SlonyError) as err:
            cluster.connection(1)
    message = str(err.value)
    assert message.startswith("cannot connect to node 1 (")
    assert "password=********" in message and password not in message
    assert err.value.node == 1

    wrong_password = {1: fresh_db.conninfo(1).replace(password, "not-" + password)}
    with Cluster(CLUSTER, wrong_password) as cluster:
        with pytest.raises(SlonyError) as err:
            cluster.connection(1)
    assert "password authentication failed" in str(err.value)
    assert password not in str(err.value)


def test_catalog_module_has_no_ansible_import():
    source = open(catalog_mod.__file__).read()
    assert "import ansible" not in source and "from ansible" not in source
