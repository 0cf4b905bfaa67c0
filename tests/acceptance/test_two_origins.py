"""Scenario 5 of the acceptance suite: two sets with two origins, one of them moved and
then failed over while the other one is written without a pause (Slony-I's
MultipleOrigins, MoveSet and Failover disorder tests).

5 nodes. Set 1 (the writer tables, the sample tables, their sequences) on node 1 in the
cascade 1 -> {2, 3}, 3 -> {4, 5}; set 2 (tables acc.set2_a and acc.set2_b, created on every
node here, and their sequences) on node 2, subscribed 2 -> {1, 3}, 1 -> {4, 5}: node 3 is
a leaf of set 2 and never its provider. A writer commits into each set on its origin:

* set 1 moves to node 3 (``slony_switchover``), its writer following; a second call changes
  nothing;
* node 3's machine dies (server stopped with -m immediate) while set 1's writer runs on it;
  ``slony_failover failed_node=3 backup_node=1 drop_failed=true`` makes node 1 the origin
  of set 1 again (through the most advanced candidate, as the module reports);
* set 2's writer on node 2 sees no error at all from the first switchover to the end and
  keeps committing, with a short longest pause, also while the failover runs;
* at the end: every row of set 2's writer, and every row the new origin of set 1 had
  plus those written after the failover, is on every survivor and nothing else; every
  replicated table and sequence is equal on nodes 1, 2, 4 and 5; the catalogs show both
  sets with their origins and subscriptions; ``slony_info`` reports no drift and every
  subscription complete; second runs of the failover and of set 2's subscriptions change
  nothing.
"""

from __future__ import annotations

import time

from harness import NS, OriginWriter, WRITER_TABLES, assert_no_drift, keys_on, slon_backend, wait_converged
from lab import wait_until

SET2_TABLES = ("acc.set2_a", "acc.set2_b")
SET2_SQL = " ".join(
    "create table %s (id bigserial primary key, note text not null, "
    "written_at timestamptz not null default now());" % t for t in SET2_TABLES)
SET2_FEEDS = {1: 2, 3: 2, 4: 1, 5: 1}  # receiver -> provider of set 2
SURVIVORS = [1, 2, 4, 5]
# Every wait of the failover (slon restarts, FAILOVER_NODE confirmed by every survivor) is
# bounded by this; generous, for a loaded machine.
FAILOVER_TIMEOUT = 300
MAX_SET2_GAP = 10.0  # seconds: the longest pause between two commits of set 2's writer


def all_slons_registered(cascade, nodes):
    # Every switchover and failover makes slons restart their workers: wait until each
    # one has registered again (the switchover's own grace is not the point here).
    for node in nodes:
        wait_until(lambda: slon_backend(cascade.db, node), timeout=90, interval=0.2,
                   message="the slon of node %d registered" % node)


def origins_everywhere(cascade, nodes, origins):
    for node in nodes:
        wait_until(lambda: cascade.catalog(node, "sets") == origins, timeout=90, interval=0.2,
                   message="node %d sees the set origins %s" % (node, origins))


def settled_subscriptions(cascade, nodes):
    def stable():
        now = [cascade.catalog(n, "subscriptions") for n in nodes]
        time.sleep(1)
        return now if now == [cascade.catalog(n, "subscriptions") for n in nodes] else None

    return wait_until(stable, timeout=90, interval=0.5, message="the subscriptions settled")[0]


def writer_errors(origin_writer):
    return [e for w in origin_writer.retired + origin_writer.writers for e in w.errors]


def test_one_origin_moves_and_fails_while_the_other_writes_on(cluster5, writer):
    started = time.monotonic()
    cascade = cluster5
    db = cascade.db
    for node in db.node_ids:
        db.query(node, SET2_SQL)
    cascade.bring_up()
    cascade.module("slony_set", id=2, origin=2, comment="second origin")
    cascade.module("slony_table", set_id=2, tables=list(SET2_TABLES))
    cascade.module("slony_sequence", set_id=2, sequences=["%s_id_seq" % t for t in SET2_TABLES])
    cascade.module("slony_subscription", set_id=2, receivers=[
        {"receiver": r, "provider": p, "forward": True} for r, p in sorted(SET2_FEEDS.items())])
    writer2 = OriginWriter(db, tables=SET2_TABLES)
    try:
        run_scenario(cascade, writer, writer2)
    finally:
        writer2.stop()
    print("scenario 5, two origins: %.1fs" % (time.monotonic() - started))


def run_scenario(cascade, writer, writer2):
    db = cascade.db
    writer.start(1)
    writer2.start(2)
    writer.wait_for_commits(20)
    since = time.monotonic()

    # Set 1 moves to node 3, its writer following; set 2 is written on node 2 meanwhile.
    all_slons_registered(cascade, db.node_ids)
    began = time.monotonic()
    moved = cascade.module("slony_switchover", set_id=1, to_node=3)
    assert moved.changed and moved.result["after"], moved.result
    on_node_1 = writer.committed()  # set 1 is locked, then moved: node 1 takes no more rows
    writer.follow(3)
    origins_everywhere(cascade, db.node_ids, [(1, 3), (2, 2)])
    print("switchover of set 1 to node 3: %.1fs" % (time.monotonic() - began))
    assert not cascade.module("slony_switchover", set_id=1, to_node=3).changed
    writer.wait_for_commits(20)
    writer2.wait_for_commits(20)
    subs = settled_subscriptions(cascade, db.node_ids)
    print("subscriptions after the switchover:", subs)

    # Node 3, set 1's origin, dies while set 1's writer runs on it.
    cascade.kill_node(3)
    writer.stop()
    committed_2 = sum(len(k) for k in writer2.committed().values())
    began = time.monotonic()
    done = cascade.module("slony_failover", failed_node=3, backup_node=1, drop_failed=True,
                          wait_timeout=FAILOVER_TIMEOUT)
    took = time.monotonic() - began
    assert done.changed
    assert took < FAILOVER_TIMEOUT + 60, took
    result = done.result
    promoted = result["temporary_backup"]
    types = [e["type"] for e in result["events"]]
    print("failover of node 3: %.1fs; candidates %s, node 3's events held %s, promoted %s, "
          "events %s" % (took, result["candidates"], result["failed_node_events"], promoted,
                         types))
    assert result["surviving_nodes"] == SURVIVORS
    assert result["after"]["sets"] == [{"id": 1, "origin": 1}]
    assert "FAILOVER_NODE" in types and "DROP_NODE" in types
    assert ("MOVE_SET" in types) == (promoted != 1), types
    # Set 2's writer committed during the failover.
    assert sum(len(k) for k in writer2.committed().values()) > committed_2
    had = keys_on(db, promoted)  # set 1's rows on the promoted node: no writer since the kill

    # Slony drops the subscriptions of a node that was ahead of the promoted node for the
    # failed origin's sets (slony_failover's notes). The promoted node is the candidate
    # holding the most of node 3's events; a node ahead of it must be the one that lost
    # its subscription, and is subscribed again (a full copy), as a DBA would.
    seqnos = dict((e["node"], e["max_seqno"]) for e in result["failed_node_events"])
    ahead = sorted(n for n, s in seqnos.items() if s > seqnos[promoted])
    origins_everywhere(cascade, SURVIVORS, [(1, 1), (2, 2)])
    subs = settled_subscriptions(cascade, SURVIVORS)
    set1_receivers = set(row[2] for row in subs if row[0] == 1)
    dropped = sorted(set(SURVIVORS) - {1} - set1_receivers)
    print("subscriptions after the failover:", subs, "dropped:", dropped, "ahead:", ahead)
    assert set(dropped) <= set(ahead), (dropped, seqnos)
    # The module read the same on each receiver, once the failover was confirmed.
    assert sorted(e["node"] for e in result["dropped_subscriptions"]) == dropped, result
    if dropped:
        cascade.module("slony_subscription", set_id=1, receivers=[
            {"receiver": n, "provider": 1, "forward": True} for n in dropped])
    set1_feeds = dict((row[2], row[1]) for row in cascade.catalog(1, "subscriptions")
                      if row[0] == 1)
    assert sorted(set1_feeds) == [2, 4, 5], set1_feeds
    assert all(p in SURVIVORS for p in set1_feeds.values()), set1_feeds
    expected_subs = sorted([(1, p, r, True) for r, p in set1_feeds.items()] + [
        (2, p, r, True) for r, p in SET2_FEEDS.items() if r != 3], key=lambda s: (s[0], s[2]))
    for node in SURVIVORS:
        wait_until(lambda: cascade.catalog(node, "nodes") == [(n,) for n in SURVIVORS],
                   timeout=90, interval=0.2, message="node 3 dropped on node %d" % node)
        wait_until(lambda: cascade.catalog(node, "subscriptions") == expected_subs, timeout=90,
                   interval=0.2, message="node %d has the subscriptions %s" % (node, expected_subs))

    # Every row of set 1 the promoted node had is on every survivor (set 2 is still being
    # written: its tables are compared at the end); set 1's writer goes on on node 1.
    for node in SURVIVORS:
        wait_until(lambda: keys_on(db, node) == had, timeout=180, interval=0.5,
                   message="node %d has set 1's rows of node %d" % (node, promoted))
    committed_1 = writer.committed()
    for table in WRITER_TABLES:
        assert on_node_1[table] <= had[table], table  # written before the switchover
        assert had[table] <= committed_1[table] or writer.uncertain_count(), table
    writer.follow(1)
    writer.wait_for_commits(20)
    writer2.wait_for_commits(20)
    writer.stop()
    writer2.stop()

    # Set 2's writer never saw an error, and never paused long.
    errors = writer_errors(writer2)
    gap = max(w.max_gap(since) for w in writer2.retired)
    print("set 2's writer: %d rows, longest pause %.2fs since the switchover, errors %s"
          % (sum(len(k) for k in writer2.committed().values()), gap, errors[:3]))
    assert errors == [] and writer2.uncertain_count() == 0
    assert gap < MAX_SET2_GAP, gap

    # Every row of both writers on every survivor, nothing else; tables and sequences equal.
    wait_converged(db, SURVIVORS, timeout=180)
    committed_1 = writer.committed()
    committed_2 = writer2.committed()
    for node in SURVIVORS:
        on_node = keys_on(db, node, WRITER_TABLES)
        for table in WRITER_TABLES:
            assert had[table] < on_node[table], (node, table)
            assert on_node[table] - had[table] <= committed_1[table], (node, table)
        assert on_node == keys_on(db, 1, WRITER_TABLES), node
        assert keys_on(db, node, SET2_TABLES) == committed_2, node
    for node in SURVIVORS:
        assert db.scalar(node, f"select count(*) from {NS}.sl_table where tab_set = 2") == 2
        assert db.scalar(node, f"select count(*) from {NS}.sl_sequence where seq_set = 2") == 2

    # slony_info: no drift, every subscription complete, both origins.
    info = assert_no_drift(cascade, SURVIVORS)
    assert [(s["id"], s["origin"]) for s in info["sets"]] == [(1, 1), (2, 2)]
    assert sorted(((s["set"], s["provider"], s["receiver"], s["complete"])
                   for s in info["subscriptions"]), key=lambda s: (s[0], s[2])) == expected_subs

    # Second runs change nothing.
    again = cascade.module("slony_failover", failed_node=3, backup_node=1, drop_failed=True)
    assert not again.changed, again.result
    again = cascade.module("slony_subscription", set_id=2, receivers=[
        {"receiver": r, "provider": p, "forward": True} for r, p in sorted(SET2_FEEDS.items())
        if r != 3])
    assert not again.changed, again.result
