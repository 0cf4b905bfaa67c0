"""Scenario 3 of the acceptance suite: failover in a cascade, with a lagging subscriber and
a backup whose slon comes back late (Slony-I's Failover, FailNodeTest and
FailoverBehindProvider disorder tests).

5 nodes, 1 -> {2, 3}, 3 -> {4, 5}, a writer on the origin:

* node 2's slon is stopped while the writer runs, until node 3 has applied rows node 2
  has not: node 2 (a failover candidate, as a direct forwarding subscriber of node 1) is
  behind the backup node 3; then node 3's slon dies, and node 1's machine dies (server
  stopped with -m immediate) while the writer runs; node 2's slon is started again;
* with node 3's slon still down, ``slony_failover failed_node=1 backup_node=3`` with a
  short ``wait_timeout`` is refused within that time, naming node 3, and changes nothing;
* the same call with the normal ``wait_timeout`` waits for node 3's slon, which is
  started some seconds after the module has connected, and returns in bounded time; the
  module reports that node 3 held the most of node 1's events and promoted it directly
  (node 2, behind, is not promoted and must catch up from node 3);
* afterwards node 3 is the origin on every survivor, nodes 4 and 5 still follow it and
  node 2 subscribes from it; every row node 3 had is on every survivor, nothing else
  (tables and sequences compared); the writer on node 3 replicates everywhere;
  ``slony_info`` reports no drift and every subscription complete; a second run of the
  failover changes nothing.
"""

from __future__ import annotations

import threading
import time

from catalog_dump import assert_unchanged
from harness import NS, assert_no_drift, keys_on, wait_converged
from lab import wait_until

SURVIVORS = [2, 3, 4, 5]
FEEDS = {2: 3, 4: 3, 5: 3}  # receiver -> provider of set 1 after the failover
SLON_DELAY = 5.0  # seconds between the module's first connection to node 3 and its slon
# Every wait of the failover (node 3's slon, the slon restarts, FAILOVER_NODE confirmed by
# every survivor) is bounded by this; generous, for a loaded machine.
FAILOVER_TIMEOUT = 300


def events_of(db, node, origin):
    """The highest event seqno of ``origin`` that ``node`` holds (0: none)."""
    return db.scalar(node, f"select coalesce(max(ev_seqno), 0) from {NS}.sl_event "
                           "where ev_origin = %s", (origin,))


def module_connected(db, node):
    return db.scalar(node, "select count(*) from pg_stat_activity where datname = "
                           "current_database() and application_name = 'dany.slony'")


class LateSlon(threading.Thread):
    """Starts node 3's slon SLON_DELAY seconds after the module connected to node 3 (it
    polls node 3 for the slon while it waits); records when, and any error."""

    def __init__(self, cascade, node):
        super().__init__(name="late-slon", daemon=True)
        self.cascade, self.node = cascade, node
        self.started_at = None
        self.error = None

    def run(self):
        try:
            wait_until(lambda: module_connected(self.cascade.db, self.node), timeout=90,
                       interval=0.1, message="the failover module connected to node %d"
                       % self.node)
            time.sleep(SLON_DELAY)  # the delay under test, not a wait for something
            self.started_at = time.monotonic()
            self.cascade.start_slon(self.node, timeout=90)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def settled_subscriptions(cascade, nodes):
    """The subscriptions of every node in ``nodes`` once they stay the same for a second."""
    def stable():
        now = [cascade.catalog(n, "subscriptions") for n in nodes]
        time.sleep(1)
        return now if now == [cascade.catalog(n, "subscriptions") for n in nodes] else None

    return wait_until(stable, timeout=90, interval=0.5, message="the subscriptions settled")


def check_no_survivor_was_ahead(cascade, result, promoted):
    """Slony's FAILOVER drops the subscriptions of a node that applied more of the failed
    origin's events than the promoted node (failoverSet_int; slony_failover's notes).
    Here the promoted node holds the most events of node 1 of all survivors (the module
    reports what each held), so no subscription may be dropped; if a survivor was ahead
    (node 4 or 5 racing the kill of node 3's slon), it must be the one that lost its
    subscription, and it is subscribed again from node 3, as a DBA would."""
    seqnos = dict((e["node"], e["max_seqno"]) for e in result["failed_node_events"])
    ahead = sorted(n for n, s in seqnos.items() if s > seqnos[promoted])
    subs = settled_subscriptions(cascade, SURVIVORS)[0]
    dropped = sorted(set(FEEDS) - set(row[2] for row in subs))
    print("node 1's events held: %s; ahead of node %d: %s; dropped: %s"
          % (seqnos, promoted, ahead, dropped))
    assert set(dropped) <= set(ahead), (dropped, seqnos)
    # The module read the same on each receiver, once the failover was confirmed.
    assert sorted(e["node"] for e in result["dropped_subscriptions"]) == dropped, result
    if dropped:
        cascade.module("slony_subscription", set_id=1, receivers=[
            {"receiver": n, "provider": FEEDS[n], "forward": True} for n in dropped])


def test_failover_to_a_forwarder_whose_slon_comes_back_late(cluster5, writer):
    started = time.monotonic()
    cascade = cluster5
    db = cascade.db
    cascade.bring_up()
    writer.start(1)
    writer.wait_for_commits(20)
    wait_until(lambda: all(keys_on(db, n)["acc.orders_log"] for n in SURVIVORS), timeout=120,
               interval=0.2, message="every subscriber applied rows of the writer")

    # Node 2 falls behind node 3: its slon stops until node 3 has applied 10 more rows of
    # every table; then node 3's slon dies, then node 1's machine while the writer runs.
    cascade.slons.kill(2)
    on_2 = keys_on(db, 2)
    wait_until(lambda: all(len(keys - on_2[t]) >= 10 for t, keys in keys_on(db, 3).items()),
               timeout=120, interval=0.2, message="node 3 applied rows node 2 has not")
    cascade.slons.kill(3)
    writer.wait_for_commits(10)
    cascade.kill_node(1)
    writer.stop()
    cascade.start_slon(2, timeout=90)
    had = keys_on(db, 3)
    assert keys_on(db, 2) == on_2
    for table, keys in had.items():
        assert on_2[table] < keys, table
        assert keys <= writer.committed()[table] or writer.uncertain_count(), table
    held = dict((n, events_of(db, n, 1)) for n in SURVIVORS)
    print("node 1's events held before the failover:", held)
    assert held[2] < held[3], held
    assert max(held.values()) == held[3], held

    # Node 3's slon is down: a short wait_timeout refuses in time, nothing changed.
    before = cascade.config_dump(SURVIVORS)
    began = time.monotonic()
    refused = cascade.module("slony_failover", failed_node=1, backup_node=3,
                             drop_failed=True, wait_timeout=8, expect_failure=True)
    took = time.monotonic() - began
    print("refused after %.1fs: %s" % (took, refused.msg))
    assert took < 8 + 30, took
    assert "slon daemon of surviving node(s) 3 is not running" in refused.msg, refused.msg
    assert "waited 8s" in refused.msg and "nothing was changed" in refused.msg, refused.msg
    assert db.lab.password not in refused.everything()
    assert_unchanged(cascade.config_dump(SURVIVORS), before, "a refused failover changed something")

    # The module waits for node 3's slon, started SLON_DELAY seconds after it connected.
    late = LateSlon(cascade, 3)
    late.start()
    began = time.monotonic()
    done = cascade.module("slony_failover", failed_node=1, backup_node=3, drop_failed=True,
                          wait_timeout=FAILOVER_TIMEOUT)
    took = time.monotonic() - began
    late.join(120)
    assert late.error is None, late.error
    assert late.started_at is not None and late.started_at - began >= SLON_DELAY
    assert took < FAILOVER_TIMEOUT + 60, took
    assert done.changed
    result = done.result
    print("failover: %.1fs (slon 3 started after %.1fs); candidates %s, promoted %s, events %s"
          % (took, late.started_at - began, result["candidates"], result["temporary_backup"],
             [e["type"] for e in result["events"]]))
    assert result["candidates"] == [2, 3]
    assert result["temporary_backup"] == 3  # the most advanced candidate, and the backup
    assert result["surviving_nodes"] == SURVIVORS
    assert result["failed_node_reachable"] is False
    assert result["after"]["sets"] == [{"id": 1, "origin": 3}]
    types = [e["type"] for e in result["events"]]
    assert "FAILOVER_NODE" in types and "DROP_NODE" in types and "MOVE_SET" not in types
    assert keys_on(db, 3) == had  # the backup lost nothing in the failover
    check_no_survivor_was_ahead(cascade, result, 3)

    # Catalogs of every survivor: node 3 the origin, 4 and 5 on it, node 2 moved to it.
    for node in SURVIVORS:
        wait_until(lambda: cascade.catalog(node, "nodes") == [(n,) for n in SURVIVORS],
                   timeout=90, interval=0.2, message="node 1 dropped on node %d" % node)
        assert cascade.catalog(node, "sets") == [(1, 3)], node
        assert cascade.catalog(node, "subscriptions") == [
            (1, p, r, True) for r, p in sorted(FEEDS.items())], node

    # Every row node 3 had is on every survivor, nothing else; tables and sequences equal.
    first = wait_converged(db, SURVIVORS, timeout=180)
    for node in SURVIVORS:
        assert keys_on(db, node) == had, "node %d differs from the backup" % node

    # The writer on the new origin replicates everywhere.
    writer.follow(3)
    writer.wait_for_commits(20)
    writer.stop()
    assert wait_converged(db, SURVIVORS, timeout=180) != first
    committed = writer.committed()
    for node in SURVIVORS:
        on_node = keys_on(db, node)
        for table, keys in on_node.items():
            assert had[table] < keys and keys - had[table] <= committed[table], (node, table)
        assert on_node == keys_on(db, 3), node

    # slony_info: no drift, every subscription complete, node 3 the origin.
    info = assert_no_drift(cascade, SURVIVORS)
    assert [(s["id"], s["origin"]) for s in info["sets"]] == [(1, 3)]
    assert sorted((s["receiver"], s["provider"], s["complete"]) for s in info["subscriptions"]) \
        == [(r, p, True) for r, p in sorted(FEEDS.items())]
    assert all(s["running"] for s in info["slons"]), info["slons"]

    # A second run changes nothing (check mode too).
    again = cascade.module("slony_failover", failed_node=1, backup_node=3, drop_failed=True)
    assert not again.changed, again.result
    assert not cascade.module("slony_failover", failed_node=1, backup_node=3, drop_failed=True,
                              check=True).changed
    print("scenario 3, cascade failover: module %.1fs, scenario %.1fs"
          % (took, time.monotonic() - started))
