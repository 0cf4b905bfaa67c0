"""slony_compare: scope, key ranges, verdicts and the result from plain data; the wait for
the receivers with a fake clock."""

from __future__ import annotations

import os

import pytest
import yaml
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import compare as cmp
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Sequence, Set, SetSync, Snapshot, Subscription, Table)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.events import Event
from fakes import FakeClock

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def snapshot(node, origin=1, receivers=((2, 1), (3, 2)), setsync=True):
    return Snapshot(
        node, local_id=node,
        sets=[Set(1, origin, None, "app"), Set(2, origin, None, "other")],
        tables=[Table(1, 1, "public", "orders", "orders_pkey", ""),
                Table(2, 1, "public", "big", "big_pkey", ""),
                Table(3, 2, "billing", "invoices", "invoices_pkey", "")],
        sequences=[Sequence(1, 1, "public", "big_seq", "")],
        subscriptions=[Subscription(1, provider, receiver, True, True) for receiver, provider in receivers],
        setsyncs=[SetSync(1, origin, 5000000010)] if setsync and node != origin else [])


SNAPS = dict((n, snapshot(n)) for n in (1, 2, 3))


# -- scope ------------------------------------------------------------------------------------

def test_scope_defaults_to_every_set_table_sequence_and_subscribed_node():
    scopes = cmp.select_scope(SNAPS, [1, 2, 3])
    # Set 2 has no subscriber: nothing to compare.
    assert [(s.id, s.origin, s.receivers) for s in scopes] == [(1, 1, [2, 3])]
    assert [cmp.qualified(t.schema, t.name) for t in scopes[0].tables] == ["public.orders", "public.big"]
    assert scopes[0].tables[1].key_index == "big_pkey"
    assert [q.name for q in scopes[0].sequences] == ["big_seq"]
    snaps = dict((n, snapshot(n, receivers=((2, 1),))) for n in (1, 2))
    assert cmp.select_scope(snaps, [1, 2], nodes=[1]) == []


def test_scope_filters_nodes_sets_tables_and_sequences():
    scopes = cmp.select_scope(SNAPS, [1, 2, 3], nodes=[3], sets=[1], tables=["public.big"], sequences=False)
    assert [(s.id, s.receivers, [t.name for t in s.tables], s.sequences) for s in scopes] == [
        (1, [3], ["big"], [])]
    # The origin is read whether listed or not; listing it compares nothing more.
    assert cmp.select_scope(SNAPS, [1, 2, 3], nodes=[1, 2])[0].receivers == [2]


def test_scope_names_every_problem_at_once():
    with pytest.raises(SlonyError) as err:
        cmp.select_scope(SNAPS, [1, 2, 3], nodes=[2, 9], sets=[1, 7], tables=["public.orders", "public.nope"])
    message = str(err.value)
    assert "nodes: node 9 not in admin_conninfo" in message
    assert "sets: 7 is not a set of the cluster (sets: 1, 2)" in message
    assert "tables: public.nope is not a replicated table" in message


def test_scope_takes_the_origin_from_the_node_that_is_it():
    # Node 3 has not processed a MOVE SET yet and still names node 1; node 2 says it is the origin.
    snaps = {1: snapshot(1, origin=2, receivers=((1, 2),)), 2: snapshot(2, origin=2, receivers=((1, 2),)),
             3: snapshot(3, origin=1)}
    scopes = cmp.select_scope(snaps, [1, 2, 3], sets=[1])
    assert (scopes[0].origin, scopes[0].receivers) == (2, [1])


def test_scope_refuses_an_origin_that_cannot_be_read():
    snaps = {2: SNAPS[2], 3: SNAPS[3]}
    with pytest.raises(SlonyError, match=r"set 1: its origin, node 1, cannot be read \(connection refused\)"):
        cmp.select_scope(snaps, [1, 2, 3], sets=[1], unreadable={1: "connection refused"})
    with pytest.raises(SlonyError, match="no node of admin_conninfo could be read: node 1: down"):
        cmp.select_scope({}, [1], unreadable={1: "down"})


# -- ranges and SQL ------------------------------------------------------------------------------

def test_ranges_cover_every_key_with_open_ends():
    assert cmp.chunk_ranges([]) == [(None, None)]
    assert cmp.chunk_ranges([("10",), ("20",)]) == [(None, ("10",)), (("10",), ("20",)), (("20",), None)]
    assert cmp.chunk_ranges([["1", "a"]]) == [(None, ("1", "a")), (("1", "a"), None)]


KEY = [cmp.KeyColumn("a", "integer", False), cmp.KeyColumn("b", "text", True)]
REF = cmp.TableRef(1, 1, "public", "pairs", "pairs_pkey")


def test_range_parameters_follow_the_row_constructors():
    where, params = cmp.range_predicate(KEY, False, ("1", "x"), ("5", "y"))
    assert isinstance(where, sql.Composed) and params == ["1", "x", "5", "y"]
    assert cmp.range_predicate(KEY, False, None, None)[1] == []
    assert cmp.range_predicate(KEY, True, None, ("5", "y"))[1] == ["5", "y"]
    query, params = cmp.boundary_query(REF, KEY, False, ("1", "x"), 1000)
    assert params == ["1", "x", 999]            # the range, then the offset
    query, params = cmp.chunk_query(REF, ["a", "b", "v"], KEY, False, None, ("5", "y"))
    assert params == ["5", "y"]


def test_c_collation_only_for_a_collatable_key_on_differing_collations():
    assert not cmp.needs_c_collation(KEY, "en_US.UTF-8", ["en_US.UTF-8", "en_US.UTF-8"])
    assert cmp.needs_c_collation(KEY, "en_US.UTF-8", ["C.UTF-8"])
    assert not cmp.needs_c_collation(KEY[:1], "en_US.UTF-8", ["C.UTF-8"])


# -- verdicts --------------------------------------------------------------------------------------

def test_a_difference_counts_only_on_the_same_sync_and_twice():
    assert cmp.decide_item(True, cmp.AFTER, 0) == (cmp.EQUAL, 0)
    assert cmp.decide_item(True, cmp.EXACT, 1) == (cmp.EQUAL, 1)
    assert cmp.decide_item(False, cmp.AFTER, 0) == (cmp.RECHECK, 0)     # receiver past the SYNC
    assert cmp.decide_item(False, cmp.EXACT, 0) == (cmp.RECHECK, 1)     # seen once: look again
    assert cmp.decide_item(False, cmp.EXACT, 1) == (cmp.DIFFERENT, 2)
    assert cmp.decide_item(False, cmp.EXACT, 0, confirmations=1) == (cmp.DIFFERENT, 1)


def test_sequence_of_a_receiver_that_never_reached_the_sync():
    assert cmp.unpinned_sequence_status(100, 100) == cmp.EQUAL
    assert cmp.unpinned_sequence_status(100, 90) == cmp.BEHIND
    assert cmp.unpinned_sequence_status(100, 110) == cmp.UNDECIDED
    assert cmp.unpinned_sequence_status(None, 5) == cmp.UNDECIDED
    assert cmp.worst([cmp.EQUAL, cmp.BEHIND]) == cmp.BEHIND
    assert cmp.worst([cmp.BEHIND, cmp.UNDECIDED, cmp.DIFFERENT]) == cmp.DIFFERENT
    assert cmp.worst([]) == cmp.EQUAL


def planned(state, ranges):
    state.ranges = cmp.chunk_ranges(ranges)
    state.key = [cmp.KeyColumn("id", "bigint", False)]
    state.columns = ["id", "payload"]
    return state


def states():
    scope = cmp.select_scope(SNAPS, [1, 2, 3])[0]
    orders, big = [cmp.TableState(scope, ref) for ref in scope.tables]
    seq = cmp.SequenceState(scope, scope.sequences[0])
    return scope, planned(orders, []), planned(big, [("100",), ("200",)]), seq


def test_result_of_an_equal_comparison():
    scope, orders, big, seq = states()
    for node in (2, 3):
        orders.record(node, 0, (3, "h"), (3, "h"), cmp.EXACT)
        for index in range(3):
            big.record(node, index, (100, "h%d" % index), (100, "h%d" % index), cmp.AFTER)
        seq.record(node, 42, 42, cmp.EXACT)
    big.rows = {1: 300, 2: 300, 3: 300}
    result = cmp.build_result([orders, big], [seq], [], [Event(1, 5000000020, "SYNC")], "shop")
    assert result["equal"] is True and result["differences"] == [] and result["undecided"] == []
    assert result["tables"][1] == {"name": "public.big", "set": 1, "origin": 1, "key": ["id"],
                                   "rows": {1: 300, 2: 300, 3: 300}, "chunks": 3, "status": "equal",
                                   "nodes": {2: "equal", 3: "equal"}}
    assert result["sequences"] == [{"name": "public.big_seq", "set": 1, "origin": 1,
                                    "values": {1: 42, 2: 42, 3: 42}, "status": "equal",
                                    "nodes": {2: "equal", 3: "equal"}}]
    assert result["events"] == [{"origin": 1, "seqno": 5000000020, "type": "SYNC"}]
    assert result["msg"] == "compared 2 tables and 1 sequence of cluster shop: all equal"


def test_result_names_the_first_differing_range_and_the_undecided():
    scope, orders, big, seq = states()
    for rnd in (1, 2):
        big.record(2, 0, (100, "a"), (100, "a"), cmp.EXACT)
        big.record(2, 1, (100, "b"), (99, "x"), cmp.EXACT)
        big.record(2, 2, (7, "c"), (8, "y"), cmp.EXACT)
    orders.record(2, 0, (3, "h"), (3, "h"), cmp.EXACT)
    big.record(3, 1, (100, "b"), (100, "z"), cmp.AFTER)       # past the SYNC: not decided
    orders.problems[3] = (cmp.DIFFERENT, "column note missing on node 3")
    seq.record(2, 50, 40, cmp.EXACT)
    seq.record(2, 50, 40, cmp.EXACT)
    seq.verdicts[3]["status"] = cmp.BEHIND
    result = cmp.build_result([orders, big], [seq], ["node 3: slow"], [], "shop")
    assert result["equal"] is False
    assert result["differences"] == [
        {"kind": "table", "name": "public.orders", "set": 1, "origin": 1, "node": 3, "first_difference": None,
         "origin_rows": None, "node_rows": None, "reason": "column note missing on node 3"},
        {"kind": "table", "name": "public.big", "set": 1, "origin": 1, "node": 2,
         "first_difference": {"from_key": ["100"], "to_key": ["200"]}, "origin_rows": 100, "node_rows": 99,
         "reason": None},
        {"kind": "sequence", "name": "public.big_seq", "set": 1, "origin": 1, "node": 2,
         "origin_value": 50, "node_value": 40}]
    # public.big on node 3; the sequence is behind on node 3 (and different on node 2).
    assert result["undecided"] == ["public.big", "public.big_seq"]
    assert result["tables"][1]["nodes"] == {2: "different", 3: "undecided"}
    assert result["sequences"][0]["status"] == "different"
    message = cmp.failure_message(result)
    assert "public.big (node 2, keys 100 .. 200)" in message
    assert "public.orders (node 3: column note missing on node 3)" in message
    assert "public.big_seq (node 2: 40, origin node 1: 50)" in message
    assert "could not decide within the wait_timeout: public.big, public.big_seq" in message and "node 3: slow" in message


def test_a_table_without_ranges_yet_is_undecided():
    scope, orders, big, seq = states()
    fresh = cmp.TableState(scope, scope.tables[0])
    assert fresh.pending(2) is None and fresh.open_on(2) and fresh.status(2) == cmp.UNDECIDED
    assert big.pending(2) == [0, 1, 2]
    big.record(2, 0, (1, "a"), (1, "a"), cmp.EXACT)
    assert big.pending(2) == [1, 2]


def test_return_documents_every_key_of_the_result():
    with open(os.path.join(REPO, "plugins", "modules", "slony_compare.py")) as handle:
        source = handle.read()
    returns = yaml.safe_load(source.split("RETURN = r'''")[1].split("'''")[0])
    scope, orders, big, seq = states()
    result = cmp.build_result([orders], [seq], [], [], "shop")
    assert set(returns) == set(result)
    assert set(returns["differences"]["sample"][0]) == set(
        ["kind", "name", "set", "origin", "node", "first_difference", "origin_rows", "node_rows", "reason"])
    assert set(returns["tables"]["sample"][0]) == set(result["tables"][0])
    assert set(returns["sequences"]["sample"][0]) == set(result["sequences"][0])


# -- the wait for the receivers, with a fake clock ----------------------------------------------

class Cursor:
    def __init__(self, conn):
        self.conn = conn
        self.rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        text = str(query)
        self.conn.executed.append(text)
        if "sl_setsync" in text:
            self.rows = [self.conn.setsync()]
        elif "sl_seqlastvalue" in text:
            self.rows = [(1, 77)]
        else:
            self.rows = [(None,)]

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return self.rows


class Conn:
    def __init__(self, setsync):
        self.setsync = setsync
        self.executed = []
        self.rollbacks = 0
        self.closed = False

    def cursor(self):
        return Cursor(self)

    def rollback(self):
        self.rollbacks += 1

    def close(self):
        self.closed = True


class FakeCluster:
    name = "shop"
    namespace = "_shop"
    ns = sql.Identifier("_shop")

    def __init__(self, conns, slons=()):
        self.conns = conns
        self.slons = slons

    def nodes(self):
        return sorted(self.conns)

    def has_node(self, node):
        return node in self.conns

    def connection(self, node, check_identity=True):
        return self.conns[node]

    def fetch(self, node, query, params=None):
        assert "sl_nodelock" in str(query)
        return [(node in self.slons,)]

    def error(self, node, exc, doing=None):
        return SlonyError("node %d: %s" % (node, exc), node=node)


def test_receivers_are_pinned_when_they_applied_the_sync_and_the_hold_is_released():
    clock = FakeClock()
    event = Event(1, 5000000050, "SYNC")
    polls = {"n": 0}

    def node2():
        polls["n"] += 1
        return (1, 5000000049, 5000000049) if polls["n"] < 3 else (1, 5000000050, 5000000050)

    conns = {1: Conn(None), 2: Conn(node2), 3: Conn(lambda: (1, 5000000060, 5000000060))}
    run = cmp.Comparison(FakeCluster(conns, slons=(2, 3)), timeout=30, clock=clock)
    run.deadline = clock.now() + 30
    hold = Conn(None)
    pins, missed = run._pin_receivers(1, event, {2: [1], 3: [1]}, hold)
    assert missed == {} and hold.closed
    assert (pins[2].position, pins[2].applied, pins[2].sequences) == (cmp.EXACT, 5000000050, {1: 77})
    assert pins[3].position == cmp.AFTER          # found past the SYNC
    assert conns[2].rollbacks == 2                # the two polls before it got there
    assert clock.waited < 0.1


def _record_close(conn, clock):
    """Make ``conn.close`` record the fake time it is called at; returns the record."""
    released_at = []
    original = conn.close

    def close():
        released_at.append(clock.now())
        original()

    conn.close = close
    return released_at


def test_a_receiver_that_never_applies_the_sync_is_missed_at_the_deadline():
    clock = FakeClock()
    event = Event(1, 5000000050, "SYNC")
    conns = {1: Conn(None), 3: Conn(lambda: (1, 5000000040, 5000000040))}
    for slons, held, state in (((3,), 2, "running"), ((), 0, "not running")):
        clock = FakeClock()
        run = cmp.Comparison(FakeCluster(conns, slons=slons), timeout=5, clock=clock, hold_limit=2)
        run.deadline = clock.now() + 5
        hold = Conn(None)
        released_at = _record_close(hold, clock)
        pins, missed = run._pin_receivers(1, event, {3: [1]}, hold)
        assert pins == {}
        assert missed[3] == ("timed out after 5s waiting for node 3 to apply SYNC 5000000050 of node 1; "
                             "behind: node 3 (applied SYNC 5000000040; slon %s)" % state)
        # The origin's events are held until the hold limit, or not at all for a stopped slon.
        assert released_at and released_at[0] - 1000.0 == pytest.approx(held, abs=cmp.RECEIVER_POLL)
        assert clock.waited == pytest.approx(5)
        assert all(s <= cmp.RECEIVER_POLL for s in clock.sleeps)


def test_chunk_size_must_be_positive():
    with pytest.raises(SlonyError, match="chunk_size must be a positive number of rows, not 0"):
        cmp.Comparison(FakeCluster({}), chunk_size=0)
