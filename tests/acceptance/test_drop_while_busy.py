"""Scenario 7 of the acceptance suite: dropping things while the cluster is busy
(Slony-I's DropPath, UnsubscribeBeforeEnable and DropNode disorder tests).

5 nodes, 1 -> {2, 3}, 3 -> {4, 5}, a writer on the origin throughout:

* dropping the path node 4 copies through (3 -> 4) is refused, naming the subscription;
* unsubscribing node 3, which feeds nodes 4 and 5, is refused, naming them;
  both refusals change nothing on any node;
* the leaf node 5 is dropped under load: gone from every node's catalog, its Slony schema
  uninstalled, the writer never stops;
* node 4's machine dies (PostgreSQL stopped with -m immediate, slon killed) and it is
  dropped without being reachable;
* every row the writer committed is on nodes 1, 2 and 3, whose tables and sequences are
  equal, and a second run of each drop changes nothing.
"""

from __future__ import annotations

import time

from catalog_dump import assert_unchanged
from harness import NS, assert_no_drift, keys_on, wait_converged
from lab import wait_until


def test_refusals_then_a_live_leaf_and_a_dead_leaf_are_dropped_under_load(cluster5, writer):
    cascade = cluster5
    db = cascade.db
    started = time.monotonic()
    cascade.bring_up()
    writer.start(1)
    writer.wait_for_commits(20)

    # Refusals: nothing changes anywhere. First every node must know every subscription
    # (the SUBSCRIBE_SET and ENABLE_SUBSCRIPTION events reach node 2 last, through slon).
    cascade_rows = [(1, 1, 2, True), (1, 1, 3, True), (1, 3, 4, True), (1, 3, 5, True)]
    for node in cascade.alive:
        wait_until(lambda: cascade.catalog(node, "subscriptions") == cascade_rows, timeout=90,
                   interval=0.2, message="node %d knows every subscription" % node)
    before = cascade.config_dump(cascade.alive)
    refused = cascade.module("slony_path", server=3, client=4, state="absent",
                             expect_failure=True)
    assert "the path from node 3 to node 4 is used by the subscription of set(s) 1" in \
        refused.msg, refused.msg
    refused = cascade.module("slony_subscription", set_id=1, receiver=3, state="absent",
                             expect_failure=True)
    assert "node 3 is the provider of set 1 for node(s) 4, 5" in refused.msg, refused.msg
    assert_unchanged(cascade.config_dump(cascade.alive), before, "a refused call changed something")
    writer.wait_for_commits(10)

    # A live leaf leaves under load.
    gone = cascade.module("slony_node", nodes=[{"id": 5}], state="absent")
    assert gone.changed and [e["type"] for e in gone.result["events"]] == ["DROP_NODE"]
    for node in (1, 2, 3, 4):
        wait_until(lambda: cascade.catalog(node, "nodes") == [(1,), (2,), (3,), (4,)],
                   timeout=60, interval=0.2, message="node 5 gone from node %d" % node)
    assert db.scalar(5, "select count(*) from pg_namespace where nspname = '_acc'") == 0
    cascade.slons.stop(5)
    cascade.dead.add(5)  # no longer a node: out of the admin conninfo from now on
    writer.wait_for_commits(20)
    assert not cascade.module("slony_node", nodes=[{"id": 5}], state="absent").changed

    # A dead leaf: its server and slon die, and it is dropped without being reached.
    cascade.kill_node(4)
    dead = cascade.module("slony_node", nodes=[{"id": 4}], state="absent")
    assert dead.changed
    for node in (1, 2, 3):
        wait_until(lambda: cascade.catalog(node, "nodes") == [(1,), (2,), (3,)],
                   timeout=60, interval=0.2, message="node 4 gone from node %d" % node)
        assert db.query(node, f"select count(*) from {NS}.sl_path where 4 in (pa_server, pa_client)"
                        ) == [(0,)]
    assert not cascade.module("slony_node", nodes=[{"id": 4}], state="absent").changed
    writer.wait_for_commits(20)
    writer.stop()

    wait_converged(db, [1, 2, 3], timeout=180)
    committed = writer.committed()
    assert writer.uncertain_count() == 0
    for node in (1, 2, 3):
        assert keys_on(db, node) == committed, "node %d lost or gained rows" % node
    assert cascade.catalog(3, "subscriptions") == [(1, 1, 2, True), (1, 1, 3, True)]
    assert_no_drift(cascade, [1, 2, 3])
    print("scenario 7: %.0f s" % (time.monotonic() - started))
