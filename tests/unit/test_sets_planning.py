"""slony_set planning (read, then decide) and its DROP SET wait, without a database."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible_collections.dany.slony.plugins.module_utils import sets
from ansible_collections.dany.slony.plugins.module_utils.catalog import Set, Snapshot
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import EVENT, EXEC, WAIT, RunContext
from fakes import FakeClock
from scripted import ScriptedCluster

NS = sql.Identifier("_shop")


def calls(plan):
    return [(s.kind, s.node, s.function, s.args) for s in plan.steps if s.kind != WAIT]


# -- deciding (pure) -----------------------------------------------------------------------

def test_a_new_set_waits_for_the_drop_sets_of_the_other_nodes_then_is_created():
    facts = sets.SetFacts(None, [1, 2, 3], [])
    plan, before, after, extra = sets.decide_set(NS, 5, 1, facts, comment="orders")
    assert before == {"id": 5, "state": "absent"}
    assert after == {"id": 5, "origin": 1, "comment": "orders", "locked": False}
    first = plan.steps[0]
    assert first.kind == WAIT and first.required and first.node == 1
    assert first.description == ("wait until node 1 has processed the DROP SET events of "
                                 "node(s) 2, 3")
    assert calls(plan) == [(EVENT, 1, "storeSet", (5, "orders"))]
    assert plan.slonik() == ["create set (id = 5, origin = 1, comment = 'orders');"]
    assert plan.steps[-1].kind == WAIT and not plan.steps[-1].required


def test_a_single_node_cluster_has_no_drop_set_to_wait_for():
    plan = sets.decide_set(NS, 5, 1, sets.SetFacts(None, [1], [])).plan
    assert [s.function for s in plan.steps] == ["storeSet", None]
    assert plan.steps[0].args == (5, sets.DEFAULT_COMMENT)


def test_a_comment_change_runs_on_every_node_that_knows_the_set():
    facts = sets.SetFacts(Set(5, 1, None, "old"), [1, 2, 3], [1, 3])
    plan, before, after, extra = sets.decide_set(NS, 5, 1, facts, comment="new")
    assert calls(plan) == [(EXEC, 1, "storeSet_int", (5, 1, "new")),
                           (EXEC, 3, "storeSet_int", (5, 1, "new"))]
    assert before["comment"] == "old" and after["comment"] == "new"


def test_an_existing_set_with_its_comment_is_left_alone():
    facts = sets.SetFacts(Set(5, 1, None, "same"), [], [])
    plan, before, after, extra = sets.decide_set(NS, 5, 1, facts, comment="same")
    assert not plan and before == after


def test_drop_and_the_origin_is_never_moved():
    plan = sets.decide_set(NS, 5, 1, sets.SetFacts(Set(5, 1, None, "c"), [], []),
                           state="absent").plan
    assert calls(plan) == [(EVENT, 1, "dropSet", (5,))]
    assert not sets.decide_set(NS, 5, 1, sets.SetFacts(None, [], []), state="absent").plan
    with pytest.raises(SlonyError, match="set 5 exists with origin node 2, not node 1"):
        sets.decide_set(NS, 5, 1, sets.SetFacts(Set(5, 2, None, "c"), [], []))


def test_caught_up_waits_are_pure_over_the_nodes_read():
    steps = sets.caught_up_waits([1, 2, 3, 4], 2, exclude=(4,))
    assert [(s.node, s.confirmers, s.wait_on, s.required) for s in steps] == [
        (1, [2], 2, True), (3, [2], 2, True)]


# -- reading -------------------------------------------------------------------------------

class ReadCluster:
    """Counts the reads read_set makes."""

    name = "shop"
    ns = NS

    def __init__(self):
        self.node_reads = 0

    def require_node(self, node, why=None):
        if node == 9:
            raise SlonyError("node 9 has no entry in admin_conninfo")

    def initialized_nodes(self):
        self.node_reads += 1
        return [1, 2, 3]


@pytest.fixture
def catalogs(monkeypatch):
    """node -> the sets its catalog has; read_snapshot calls are recorded."""
    state = {"sets": {1: [Set(5, 1, None, "old")], 2: [], 3: [Set(5, 1, None, "old")]},
             "reads": []}

    def read(cluster, node):
        state["reads"].append(node)
        return Snapshot(node, node, sets=state["sets"][node])
    monkeypatch.setattr(sets, "read_snapshot", read)
    return state


def test_reading_an_existing_set_reads_only_its_origin(catalogs):
    cluster = ReadCluster()
    plan, before, after, extra = sets.plan_set(cluster, 5, 1, comment="old")
    assert not plan and catalogs["reads"] == [1] and cluster.node_reads == 0
    sets.plan_set(cluster, 5, 1, state="absent")
    assert catalogs["reads"] == [1, 1] and cluster.node_reads == 0


def test_a_new_comment_is_read_then_decided(catalogs):
    cluster = ReadCluster()
    facts = sets.read_set(cluster, 5, 1, comment="new")
    assert facts == sets.SetFacts(Set(5, 1, None, "old"), [1, 2, 3], [1, 3])
    assert catalogs["reads"] == [1, 2, 3]


def test_a_new_set_reads_the_nodes_for_its_drop_set_wait(catalogs):
    catalogs["sets"][1] = []
    cluster = ReadCluster()
    assert sets.read_set(cluster, 5, 1) == sets.SetFacts(None, [1, 2, 3], [])
    assert cluster.node_reads == 1 and catalogs["reads"] == [1]


def test_an_origin_without_admin_conninfo_reads_nothing(catalogs):
    with pytest.raises(SlonyError, match="node 9 has no entry"):
        sets.plan_set(ReadCluster(), 5, 9)
    assert catalogs["reads"] == []


# -- the DROP SET wait, with a fake clock ----------------------------------------------------

def drop_set_cluster(confirmed, last_drop=5000000042, slon=None):
    """Node 2 submitted a DROP SET (``last_drop``); node 1 has confirmed up to ``confirmed``
    (a list, one value per poll, the last one repeats)."""
    confirmed = list(confirmed)

    def lagging(node, params):
        value = confirmed[0] if len(confirmed) == 1 else confirmed.pop(0)
        return [] if value >= params["seqno"] else [(1, value)]

    return ScriptedCluster([
        ("unnest", lagging),
        ("ev_type = 'DROP_SET'", lambda node, params: [(last_drop if node == 2 else None,)]),
    ], slon=slon, nodes=(1, 2, 3))


def test_drop_sets_seen_times_out_after_the_callers_timeout_in_the_one_format():
    step = sets.drop_sets_seen([1, 2, 3], 1)[0]
    cluster, clock = drop_set_cluster([5000000040], slon={1: False}), FakeClock()
    with pytest.raises(SlonyError) as info:
        step.run(cluster, step, RunContext(timeout=7, clock=clock))
    assert clock.waited == pytest.approx(7)
    assert str(info.value) == (
        "timed out after 7s waiting for event 5000000042 (DROP_SET) of node 2 to be "
        "confirmed; behind: node 1 (confirmed up to 5000000040; slon not running); the slon "
        "of node 1, which collects the confirmations, is not running")
    assert info.value.node == 1


def test_drop_sets_seen_ends_once_the_origin_has_processed_them():
    step = sets.drop_sets_seen([1, 2, 3], 1)[0]
    cluster, clock = drop_set_cluster([5000000040, 5000000041, 5000000042]), FakeClock()
    step.run(cluster, step, RunContext(timeout=7, clock=clock))
    assert cluster.count("unnest") == 3 and len(clock.sleeps) == 2
    # Node 3 never dropped a set: nothing to wait for there.
    assert [f[0] for f in cluster.fetches if "DROP_SET" in f[1]] == [2, 3]


def test_drop_sets_seen_with_a_zero_timeout_checks_once_and_never_sleeps():
    step = sets.drop_sets_seen([1, 2], 1)[0]
    cluster, clock = drop_set_cluster([0]), FakeClock()
    with pytest.raises(SlonyError, match=r"^timed out after 0s waiting for event 5000000042 "
                                         r"\(DROP_SET\) of node 2 to be confirmed; behind: "
                                         r"node 1 \(confirmed up to nothing; slon running\)$"):
        step.run(cluster, step, RunContext(timeout=0, clock=clock))
    assert clock.sleeps == []


# -- LOCK SET / UNLOCK SET -------------------------------------------------------------------

def test_locking_and_unlocking_converge_on_the_set_locked_state():
    unlocked = sets.SetFacts(Set(5, 1, None, "c"), [], [])
    locked = sets.SetFacts(Set(5, 1, 4711, "c"), [], [])
    plan, before, after, extra = sets.decide_set(NS, 5, 1, unlocked, locked=True)
    assert [(s.kind, s.node, s.function, s.args) for s in plan.steps] == [
        ("callback", 1, "lockSet", (5,))]
    assert plan.slonik() == ["lock set (id = 5, origin = 1);"]
    assert before["locked"] is False and after["locked"] is True
    assert not sets.decide_set(NS, 5, 1, locked, locked=True).plan
    plan, before, after, extra = sets.decide_set(NS, 5, 1, locked, locked=False)
    assert calls(plan) == [(EVENT, 1, "unlockSet", (5,))]
    assert plan.slonik() == ["unlock set (id = 5, origin = 1);"]
    assert (before["locked"], after["locked"]) == (True, False)
    assert not sets.decide_set(NS, 5, 1, unlocked, locked=False).plan
    assert not sets.decide_set(NS, 5, 1, locked).plan  # not given: left alone
    with pytest.raises(SlonyError, match="set 5 does not exist yet"):
        sets.decide_set(NS, 5, 1, sets.SetFacts(None, [1], []), locked=True)


class _LockCluster:
    """What the LOCK SET runner touches: the setmove functions are replaced in sets."""
    queries = []


def test_the_lock_runner_unlocks_again_when_old_transactions_outlive_wait_timeout(monkeypatch):
    done = []
    monkeypatch.setattr(sets, "lock_set", lambda c, o, s, timeout=None: done.append(
        ("lock", o, s, timeout)) or 4711)

    def never(cluster, node, xmax, timeout, goal, clock=None, note=None):
        clock.sleep(timeout)
        raise SlonyError("timed out after %ds waiting for %s; behind: node %d (pid 42)"
                         % (timeout, goal, node))

    monkeypatch.setattr(sets, "wait_older_transactions", never)
    monkeypatch.setattr(sets, "unlock_set", lambda c, o, s: done.append(("unlock", o, s)))
    step = sets.decide_set(NS, 5, 1, sets.SetFacts(Set(5, 1, None, "c"), [], []),
                           locked=True).plan.steps[0]
    clock = FakeClock()
    with pytest.raises(SlonyError) as err:
        step.run(_LockCluster(), step, RunContext(timeout=7, clock=clock))
    assert clock.waited == 7
    assert done == [("lock", 1, 5, 7), ("unlock", 1, 5)]
    assert str(err.value) == (
        "timed out after 7s waiting for the transactions that were running when set 5 was "
        "locked on node 1 to end; behind: node 1 (pid 42); set 5 unlocked again on node 1 "
        "(writes accepted again)")


# -- MERGE SET -------------------------------------------------------------------------------

def _merge_facts(current=Set(2, 1, None, "b"), into=Set(1, 1, None, "a"), receivers=(2, 3),
                 into_receivers=(2, 3)):
    return sets.SetFacts(current, [], [], sets.MergeFacts(into, list(receivers),
                                                          list(into_receivers)))


def test_merge_waits_for_both_copies_then_merges_and_is_idempotent():
    plan, before, after, extra = sets.decide_set(NS, 2, 1, _merge_facts(), state="absent",
                                                 merge_into=1)
    assert [(s.kind, s.function, s.args) for s in plan.steps] == [
        (WAIT, None, ()), (EVENT, "mergeSet", (1, 2)), (WAIT, None, ())]
    assert plan.steps[0].required
    assert plan.slonik() == ["merge set (id = 1, add id = 2, origin = 1);"]
    assert after == {"id": 2, "state": "absent", "merged_into": 1}
    assert not sets.decide_set(NS, 2, 1, _merge_facts(current=None), state="absent",
                               merge_into=1).plan


@pytest.mark.parametrize("facts, into, message", [
    (_merge_facts(into=None), 1, "set 1 does not exist (node 1 does not know it)"),
    (_merge_facts(into=Set(1, 3, None, "a")), 1, "set 1 has origin node 3, set 2 node 1"),
    (_merge_facts(into_receivers=(2,)), 1, "set 2 is subscribed by node(s) 2, 3 and set 1 by "
                                           "node(s) 2: Slony merges only sets with the same "
                                           "subscribers"),
    (_merge_facts(), 2, "a set cannot be merged into itself"),
    (_merge_facts(current=None, into=None), 1, "set 2 does not exist, nor set 1"),
])
def test_merge_is_refused_unless_slony_would_accept_it(facts, into, message):
    with pytest.raises(SlonyError) as info:
        sets.decide_set(NS, 2, 1, facts, state="absent", merge_into=into)
    assert message in str(info.value)
