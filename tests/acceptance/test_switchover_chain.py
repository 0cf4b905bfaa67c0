"""Scenario 2 of the acceptance suite: the switchover chain (Slony-I's MoveSet and
SubscribeUnderLoad disorder tests move the origin while writing).

5 nodes, 1 -> {2, 3}, 3 -> {4, 5}, a writer committing into three tables of set 1 on
whichever node is the origin:

* set 1 moves around the five nodes, 1 -> 2 -> 3 -> 4 -> 5 -> 1 (node 4 and 5 are fed by
  node 3, not by the origin), the writer following the origin after each move; each move
  is confirmed by every node and a second call reports no change;
* at the end every node holds exactly the rows the writer committed, wherever it wrote
  them (none lost, none twice: the sequences moved with the set), and every replicated
  table and sequence is equal on the five nodes;
* a transaction holding an xid on the origin makes the next switchover fail within its
  ``wait_timeout``, naming the backend, with the set unlocked again: the writer goes on
  committing on the old origin.
"""

from __future__ import annotations

import time

import psycopg2

from harness import assert_no_drift, keys_on, slon_backend, wait_converged
from lab import wait_until

NODES = (1, 2, 3, 4, 5)


def origin_everywhere(cascade, node):
    for other in NODES:
        wait_until(lambda: cascade.catalog(other, "sets") == [(1, node)], timeout=60,
                   interval=0.2, message="node %d sees node %d as the origin" % (other, node))


def test_the_origin_goes_round_the_five_nodes_while_writing(cluster5, writer):
    cascade = cluster5
    started = time.monotonic()
    cascade.bring_up()
    writer.start(1)
    writer.wait_for_commits(20)
    moves = []
    for target in (2, 3, 4, 5, 1):
        # Every switchover makes the other nodes' slons restart their workers (about 10 s,
        # more on a loaded machine); the module's 30 s grace for a stopped slon is not the
        # point here: wait until each slon has registered again, as a DBA would.
        for node in NODES:
            wait_until(lambda: slon_backend(cascade.db, node), timeout=90, interval=0.2,
                       message="the slon of node %d registered" % node)
        began = time.monotonic()
        moved = cascade.module("slony_switchover", set_id=1, to_node=target)
        assert moved.changed and moved.result["after"], moved.result
        writer.follow(target)
        origin_everywhere(cascade, target)
        writer.wait_for_commits(15)
        assert not cascade.module("slony_switchover", set_id=1, to_node=target).changed
        moves.append((target, round(time.monotonic() - began, 1)))
    print("switchovers (to node, seconds):", moves)
    writer.stop()

    # Every committed row is on every node, and nothing else; tables and sequences equal.
    wait_converged(cascade.db, list(NODES), timeout=180)
    committed = writer.committed()
    assert writer.uncertain_count() == 0
    assert all(len(keys) > 50 for keys in committed.values()), committed
    for node in NODES:
        assert keys_on(cascade.db, node) == committed, "node %d lost or gained rows" % node
    assert_no_drift(cascade, list(NODES))
    print("scenario 2, the chain: %.0f s" % (time.monotonic() - started))


def test_a_long_transaction_on_the_origin_fails_the_switchover_in_time_and_unlocks(
        cluster5, writer):
    cascade = cluster5
    cascade.bring_up()
    writer.start(1)
    writer.wait_for_commits(10)
    blocker = psycopg2.connect(cascade.db.conninfo(1))
    try:
        with blocker.cursor() as cur:
            cur.execute("select txid_current(), pg_backend_pid()")
            dummy, pid = cur.fetchone()
        began = time.monotonic()
        failed = cascade.module("slony_switchover", set_id=1, to_node=2, wait_timeout=15,
                                expect_failure=True)
        took = time.monotonic() - began
        print("refused after %.1f s: %s" % (took, failed.msg))
        # The wait for older transactions is bounded by wait_timeout (15 s); the rest is
        # the preflight, the lock, the unlock and ansible's start-up.
        assert took < 15 + 30, took
        assert str(pid) in failed.msg and "unlocked" in failed.msg, failed.msg
        assert cascade.db.lab.password not in failed.everything()
        # The set is unlocked, still on node 1, and node 1 takes writes again.
        assert cascade.db.query(1, 'select set_origin, set_locked from "_acc".sl_set') == [(1, None)]
        writer.wait_for_commits(20, timeout=60)
    finally:
        blocker.close()
    # Once the transaction has ended, the same call moves the set.
    moved = cascade.module("slony_switchover", set_id=1, to_node=2, wait_timeout=60)
    assert moved.changed
    writer.follow(2)
    origin_everywhere(cascade, 2)
    writer.wait_for_commits(10)
    writer.stop()
    wait_converged(cascade.db, list(NODES), timeout=180)
    for node in NODES:
        assert keys_on(cascade.db, node) == writer.committed(), node
    assert_no_drift(cascade, list(NODES))
