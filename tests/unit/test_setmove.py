"""setmove.py: LOCK SET -> wait for the older transactions -> MOVE SET, and the slon grace
wait, with a scripted cluster and a fake clock (no database)."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import setmove
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from ansible_collections.dany.slony.plugins.module_utils.setmove import (
    SLON_POLL, SetHandover, lock_set, wait_for_slons, wait_older_transactions)
from ansible_collections.dany.slony.plugins.module_utils.waits import POLL_INTERVAL
from fakes import FakeClock

NS = sql.Identifier("_shop")


class Cursor:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        text = query if isinstance(query, str) else repr(query)
        self.conn.executed.append((text, params))
        if self.conn.fail_on and self.conn.fail_on in text:
            raise setmove.psycopg2.Error("set 1 is already locked")

    def fetchone(self):
        return (4711,)


class Conn:
    def __init__(self, fail_on=None):
        self.executed = []
        self.fail_on = fail_on
        self.commits = self.rollbacks = 0

    def cursor(self):
        return Cursor(self)

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks += 1


class Cluster:
    """A Cluster double: one scripted connection, fetch() answered by query text."""

    ns = NS
    namespace = "_shop"

    def __init__(self, xmin_reached=(), slon=None, conn=None):
        self.xmin = list(xmin_reached)
        self.slon = dict(slon or {})
        self.conn = conn or Conn()
        self.queries = []
        self.polls = 0

    def has_node(self, node):
        return True

    def connection(self, node):
        return self.conn

    def render(self, node, query, params=None):
        return "%r %r" % (query, params)

    def log(self, node, text):
        self.queries.append({"node": node, "sql": text})

    def error(self, node, exc, doing=None):
        return SlonyError("node %d: %s failed: %s" % (node, doing, exc), node=node,
                          queries=self.queries)

    def fetch(self, node, query, params=None, check_identity=True):
        text = repr(query)
        if "sl_nodelock" in text:
            return [(self.slon.get(node, True),)]
        if "txid_snapshot_xmin" in text:
            self.polls += 1
            return [(self.xmin.pop(0) if self.xmin else False,)]
        if "pg_stat_activity" in text:
            return [(42, "shop", "app", "psql", 30)]
        raise AssertionError("unexpected query: %s" % text)


def submitted(monkeypatch):
    """Record submit_event calls; moveSet returns SYNC + MOVE_SET."""
    calls = []

    def submit(cluster, node, query, params=None, **kw):
        calls.append((node, "moveset" if len(params) == 2 else "unlockset", params))
        if len(params) == 2:
            return [Event(node, 10, "SYNC"), Event(node, 11, "MOVE_SET")]
        return []

    monkeypatch.setattr(setmove, "submit_event", submit)
    return calls


# -- LOCK SET ----------------------------------------------------------------------------

def test_lock_set_is_its_own_transaction_under_the_config_lock():
    cluster = Cluster()
    assert lock_set(cluster, 1, 3, timeout=30) == 4711
    texts = [t for t, p in cluster.conn.executed]
    assert "lock_timeout" in texts[0] and cluster.conn.executed[0][1] == ("30s",)
    assert "sl_config_lock" in texts[1]
    assert "lockset" in texts[2] and cluster.conn.executed[2][1] == (3,)
    assert "txid_snapshot_xmax" in texts[3]
    assert cluster.conn.commits == 1 and cluster.conn.rollbacks == 0
    assert len(cluster.queries) == 3  # lock table, lockSet, the xmax read


def test_a_failed_lock_rolls_back_and_unlocks_what_this_run_locked(monkeypatch):
    calls = submitted(monkeypatch)
    cluster = Cluster(conn=Conn())
    handover = SetHandover(1, 2)
    handover.lock(cluster, 1)
    cluster.conn.fail_on = "lockset"
    with pytest.raises(SlonyError) as err:
        handover.lock(cluster, 2)
    assert str(err.value) == ("node 1: lockSet(2) failed: set 1 is already locked; set 1 "
                              "unlocked again on node 1 (writes accepted there again), not moved")
    assert cluster.conn.rollbacks == 1
    assert calls == [(1, "unlockset", (1,))]


# -- the wait for the older transactions ---------------------------------------------------

def test_the_transaction_wait_ends_when_xmin_passes_the_lock():
    clock = FakeClock()
    cluster = Cluster(xmin_reached=[False, False, True])
    assert wait_older_transactions(cluster, 1, 900, 30, "the goal", clock=clock) == 900
    assert cluster.polls == 3 and clock.waited < 1


def test_the_transaction_wait_honours_the_timeout_and_names_the_blockers():
    clock = FakeClock()
    cluster = Cluster()
    with pytest.raises(SlonyError) as err:
        wait_older_transactions(cluster, 1, 900, 12, "the old transactions to end",
                                clock=clock, note="a note")
    assert clock.waited == pytest.approx(12)
    assert cluster.polls >= 12 / POLL_INTERVAL
    assert str(err.value) == (
        "timed out after 12s waiting for the old transactions to end; behind: node 1 "
        "(transactions older than txid 900 still running: pid 42 (database shop, user app, "
        "application 'psql', open for 30s); slon running); a note")
    assert err.value.node == 1


# -- the whole sequence ------------------------------------------------------------------------

def test_handover_locks_waits_and_moves(monkeypatch):
    calls = submitted(monkeypatch)
    cluster = Cluster(xmin_reached=[True])
    handover = SetHandover(3, 2)
    events = handover.handover(cluster, 1, 30, FakeClock())
    assert [e.type for e in events] == ["SYNC", "MOVE_SET"]
    assert calls == [(3, "moveset", (1, 2))]
    assert handover.locks == {} and handover.moved == {1: Event(3, 11, "MOVE_SET")}
    assert any("lockset" in t for t, p in cluster.conn.executed)


def test_handover_reuses_an_inherited_lock_and_still_waits(monkeypatch):
    submitted(monkeypatch)
    cluster = Cluster(xmin_reached=[False, True])
    handover = SetHandover(3, 2, locks={1: 555})
    handover.handover(cluster, 1, 30, FakeClock())
    assert cluster.conn.executed == []  # no second LOCK SET
    assert cluster.polls == 2


def test_a_failover_handover_leaves_the_set_locked_and_says_so(monkeypatch):
    calls = submitted(monkeypatch)
    clock = FakeClock()
    handover = SetHandover(3, 2, unlock_on_failure=False,
                           failure_note="set(s) %(sets)s stay locked on node %(origin)d")
    with pytest.raises(SlonyError) as err:
        handover.handover(Cluster(), 1, 5, clock)
    assert clock.waited == pytest.approx(5)
    assert str(err.value).endswith("; set(s) 1 stay locked on node 3")
    assert calls == []  # no unlock, no move
    assert handover.locks == {1: 4711}


# -- the slon grace ---------------------------------------------------------------------------

def test_wait_for_slons_honours_the_timeout():
    clock = FakeClock()
    cluster = Cluster(slon={2: True, 3: False})
    with pytest.raises(SlonyError) as err:
        wait_for_slons(cluster, [3, 2], 6, lambda down, waited: "refused %s: %s" % (down, waited),
                       clock=clock)
    assert clock.waited == pytest.approx(6)
    assert set(clock.sleeps) == {SLON_POLL}
    assert str(err.value) == ("refused [3]: timed out after 6s waiting for the slon daemon of "
                              "node 3 to run; behind: node 3 (no live sl_nodelock entry on "
                              "node 3; slon not running)")


def test_wait_for_slons_returns_at_once_when_they_run():
    clock = FakeClock()
    assert wait_for_slons(Cluster(), [2, 3], 6, None, clock=clock) is True
    assert clock.sleeps == []
