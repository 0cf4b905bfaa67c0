"""Scenario 1 of the acceptance suite: subscribing under load (Slony-I's SubscribeUnderLoad,
LongTransaction and SlonKilling disorder tests).

5 nodes, a writer committing into three tables of set 1 on node 1 throughout. The test
brings the cluster up itself, as Cascade.bring_up does (nodes, slons, full-mesh paths,
set 1 with its tables and sequences), but subscribes the cascade (1 -> {2, 3},
3 -> {4, 5}) in steps it controls:

* a transaction holding an xid is open on the origin when the cascade is subscribed.
  Slony's receiver slon refuses to copy from the origin while a transaction older than
  the ENABLE_SUBSCRIPTION event is running (copy_set: "transactions earlier than XID ...
  are still in progress"; it retries after 15, 30, then 60 s). What the module does: it
  submits the subscriptions of nodes 2 and 3, then waits for node 3's copy before it
  subscribes node 3's receivers; a call with a short ``wait_timeout`` fails within it,
  naming node 3 and its unfinished copy, with nodes 4 and 5 not subscribed yet;
* the same call run again while the transaction is still open waits (it submits nothing
  twice); once the transaction ends it finishes within its ``wait_timeout``, although:
* node 3's slon is killed during node 3's copy: the copy is held visibly under way (the
  receiver in ``COPY ... FROM STDIN`` of the set's last table, its provider's
  ``COPY ... TO STDOUT`` waiting for a lock a DBA holds on that table on the origin),
  the slon is killed, the half-done copy leaves nothing on node 3, the lock is released
  and the slon started again: it copies the set again and the call subscribes 4 and 5;
* a second run of the call changes nothing; every row the writer committed is on every
  node, every replicated table and sequence is equal on the five nodes, the catalogs of
  the five nodes hold the cascade, and ``slony_info`` reports no drift and every
  subscription complete.

Slony's check reads the snapshot's xmin, which covers every database of the server: while
the long transaction is open, no other subscription from an origin on that server copies
either (the suite gives each xdist worker a lab of its own).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2

from harness import NS, SAMPLE_TABLES, WRITER_TABLES, assert_no_drift, keys_on, wait_converged
from lab import wait_until

NODES = (1, 2, 3, 4, 5)
RECEIVERS = [{"receiver": 2, "provider": 1}, {"receiver": 3, "provider": 1},
             {"receiver": 4, "provider": 3}, {"receiver": 5, "provider": 3}]
# The second call's: its waits are for copies that Slony retries after 15, 30, then 60 s.
WAIT_TIMEOUT = 240
CASCADE_ROWS = [(1, 1, 2, True), (1, 1, 3, True), (1, 3, 4, True), (1, 3, 5, True)]


def subscribe(cascade, **extra):
    return cascade.module("slony_subscription", set_id=1, receivers=[
        dict(entry, forward=True) for entry in RECEIVERS], **extra)


def setsync(db, node):
    return db.query(node, f"select ssy_setid from {NS}.sl_setsync order by 1")


def test_the_cascade_subscribes_under_load_past_a_long_transaction_and_a_killed_slon(
        cluster5, writer):
    cascade = cluster5
    db = cascade.db
    started = time.monotonic()
    cascade.bring_up(subscribe=False)
    writer.start(1)
    writer.wait_for_commits(20)
    # The set's last table (slon copies in tab_id order): where node 3's copy is held.
    last_table = "%s.%s" % tuple(db.query(1, f"select tab_nspname, tab_relname from {NS}.sl_table "
                                             "order by tab_id desc limit 1")[0])
    assert last_table in SAMPLE_TABLES, last_table

    blocker = psycopg2.connect(db.conninfo(1))
    holder = psycopg2.connect(db.conninfo(1))
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with blocker.cursor() as cur:
            cur.execute("select txid_current()")
            xid = cur.fetchone()[0]

        # 1. The transaction is open: a call with a short wait_timeout fails in time.
        began = time.monotonic()
        failed = subscribe(cascade, wait_timeout=10, expect_failure=True)
        took = time.monotonic() - began
        # The module's last event is node 3's ENABLE_SUBSCRIPTION; then it waits for node
        # 3's copy, at most wait_timeout (ansible's start-up before it is not counted: it
        # took minutes on the loaded 2-core machine).
        waited = db.scalar(1, f"select extract(epoch from now() - max(ev_timestamp)) "
                              f"from {NS}.sl_event where ev_origin = 1 "
                              "and ev_type = 'ENABLE_SUBSCRIPTION'")
        print("refused after %.1f s, %.1f s after its last event: %s" % (
            took, waited, failed.msg))
        assert 10 <= waited < 10 + 45, waited
        assert failed.msg.startswith(
            "timed out after 10s waiting for node 3 to finish subscribing to set 1 from node 1; "
            "behind: node 3 (copy of set 1 from node 1 not finished; slon running)"), failed.msg
        # The error names the transaction that holds the copy back, on the origin.
        assert "slon copies only once the transactions on the origin (node 1) that are " \
               "older than the subscription have ended, and these still run: pid %d " \
               % blocker.get_backend_pid() in failed.msg, failed.msg
        assert db.lab.password not in failed.everything()
        # Nodes 2 and 3 are subscribed, 4 and 5 (fed by node 3) not yet; nobody has a copy.
        assert db.query(1, f"select sub_provider, sub_receiver from {NS}.sl_subscribe "
                           "order by 2") == [(1, 2), (1, 3)]
        for node in (2, 3):
            assert setsync(db, node) == []
            # The reason, in the receiver's slon log: the transaction older than the
            # subscription (the XID logged is the event's xmax, above the blocker's).
            logged = wait_until(
                lambda: re.findall(r"transactions earlier than XID (\d+) are still in progress",
                                   cascade.slons[node].log(since_start=True)),
                timeout=60, interval=0.2, message="node %d's slon waits for old transactions" % node)
            assert int(logged[0]) > xid, (logged, xid)

        # A DBA's lock on the origin's last table will hold the copies in mid-flight.
        with holder.cursor() as cur:
            cur.execute("lock table %s in access exclusive mode" % last_table)

        # 2. The same call again, while the transaction is still open: it waits.
        since = db.scalar(3, "select now()")
        rerun_began = time.monotonic()
        rerun = pool.submit(subscribe, cascade, wait_timeout=WAIT_TIMEOUT)
        wait_until(lambda: rerun.done() or db.scalar(
            3, "select count(*) from pg_stat_activity where datname = current_database() "
               "and application_name = 'dany.slony' and backend_start > %s", (since,)),
            timeout=240, interval=0.1, message="the second call reading node 3")
        assert not rerun.done(), rerun.result()
        blocker.rollback()
        ended = time.monotonic()

        # 3. Node 3's copy under way: in COPY FROM STDIN of the last table, its provider
        # waiting for the lock; its first tables are copied in the copy's transaction.
        copy_query = ("select pid from pg_stat_activity where datname = current_database() "
                      "and pid <> pg_backend_pid() and state = 'active' and query ilike %s")
        pattern = "%%copy %s %% from stdin%%" % ".".join('"%s"' % p for p in last_table.split("."))
        copying = wait_until(lambda: db.scalar(3, copy_query, (pattern,)), timeout=240,
                             interval=0.1, message="node 3's copy of %s under way" % last_table)
        print("node 3 copying %s %.1f s after the transaction ended" % (
            last_table, time.monotonic() - ended))
        assert "Begin COPY of table" in cascade.slons[3].log(since_start=True)
        cascade.slons.kill(3)
        wait_until(lambda: not db.scalar(3, "select count(*) from pg_stat_activity "
                                            "where pid = %s", (copying,)),
                   timeout=60, interval=0.1, message="the killed copy's backend gone")
        # The half-done copy left nothing: no set sync, the copied tables still empty.
        assert setsync(db, 3) == []
        for table in WRITER_TABLES:
            assert db.scalar(3, "select count(*) from %s" % table) == 0, table
        holder.rollback()
        cascade.start_slon(3, timeout=120)

        # 4. The call finishes within its wait_timeout, subscribing 4 and 5 from node 3.
        done = rerun.result(timeout=WAIT_TIMEOUT * 4 + 120)
        finished = time.monotonic()
        print("second call: %.1f s, %.1f s after the transaction ended" % (
            finished - rerun_began, finished - ended))
        assert finished - ended < WAIT_TIMEOUT, finished - ended
        assert done.changed
        assert [e["type"] for e in done.result["events"]] == [
            "SUBSCRIBE_SET", "ENABLE_SUBSCRIPTION"] * 2, done.result["events"]
        assert "subscribe set (id = 1, provider = 3, receiver = 4" in done.result["slonik"]
        assert "receiver = 2" not in done.result["slonik"]
        assert all(view["complete"] for view in done.result["after"]), done.result["after"]
        assert "Begin COPY of table" in cascade.slons[3].log(since_start=True)
    finally:
        pool.shutdown(wait=True)
        blocker.close()
        holder.close()

    writer.wait_for_commits(20)
    again = subscribe(cascade)
    assert not again.changed, again.result
    for node in NODES:
        wait_until(lambda: cascade.catalog(node, "subscriptions") == CASCADE_ROWS, timeout=180,
                   interval=0.2, message="node %d knows every subscription" % node)
        assert setsync(db, node) == ([] if node == 1 else [(1,)])
    writer.stop()

    # Every committed row on every node, nothing else; tables and sequences equal.
    wait_converged(db, list(NODES), timeout=180)
    committed = writer.committed()
    assert writer.uncertain_count() == 0
    assert all(len(keys) > 40 for keys in committed.values()), committed
    for node in NODES:
        assert keys_on(db, node) == committed, "node %d lost or gained rows" % node

    info = assert_no_drift(cascade, list(NODES))
    assert sorted((s["receiver"], s["provider"], s["complete"]) for s in info["subscriptions"]) \
        == [(2, 1, True), (3, 1, True), (4, 3, True), (5, 3, True)], info["subscriptions"]
    assert all(s["running"] for s in info["slons"]), info["slons"]
    print("scenario 1: %.0f s" % (time.monotonic() - started))
