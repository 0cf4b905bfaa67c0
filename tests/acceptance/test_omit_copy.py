"""Scenario 8 of the acceptance suite: subscribing with OMIT COPY after a dump and restore
(Slony-I's OmitCopy disorder test).

Three of the lab's nodes (1 origin, 2 fed by 1, 3 fed by 2; nodes 4 and 5 take no part),
full-mesh paths, set 1 with the writer's tables, the sample tables and the sequences,
and no subscription. The writer commits on node 1, then the receivers get the data the
way a DBA gives it to them for OMIT COPY, which requires the receivers to hold exactly
the provider's data when the subscription starts:

* the writes stop (Slony starts replicating a subscription with OMIT COPY at the snapshot
  of its ENABLE_SUBSCRIPTION event: a row committed between the dump and the
  subscription would be in neither the dump nor the replicated log), the origin's
  replicated tables and sequences are dumped with ``pg_dump --data-only`` (one snapshot)
  and restored into nodes 2 and 3, whose tables (the schema is already there) are
  emptied first;
* on each receiver one restored row is then changed on purpose (``public.customers`` 1),
  a row that a copy would overwrite;
* nodes 2 and 3 are subscribed with ``omit_copy`` in one call (node 3 from node 2); the
  changed rows are still as the receivers had them, and the receivers' slons logged
  every table's COPY as suppressed, none as begun: nothing was copied;
* the writes resume and the origin updates the changed row: rows written after the
  dump replicate, the changed row is overwritten by replication;
* a second run of the call changes nothing; every committed row is on the three nodes,
  every replicated table and sequence is equal, and ``slony_info`` reports no drift and
  both subscriptions complete.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from harness import NS, SAMPLE_TABLES, WRITER_TABLES, assert_no_drift, keys_on, wait_converged
from lab import wait_until

NODES = (1, 2, 3)
RECEIVERS = [{"receiver": 2, "provider": 1, "forward": True, "omit_copy": True},
             {"receiver": 3, "provider": 2, "forward": True, "omit_copy": True}]
SEQUENCES = ["acc.ticket_seq", "public.invoice_number_seq"] + [
    "%s_id_seq" % t for t in WRITER_TABLES]
MARK = "changed on node %d: a copy would overwrite this"


def pg_tool(db, tool, *args):
    """Run a PostgreSQL client tool of the lab (the password from the lab's passfile)."""
    env = dict(os.environ, PGPASSFILE=str(db.lab.passfile()))
    proc = subprocess.run([str(Path(db.lab.settings.pg_bindir) / tool), *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, "%s failed: %s%s" % (tool, proc.stdout, proc.stderr)
    return proc


def customer_name(db, node):
    return db.scalar(node, "select name from public.customers where id = 1")


def subscribe(cascade):
    return cascade.module("slony_subscription", set_id=1, receivers=RECEIVERS)


def test_receivers_restored_from_a_dump_subscribe_with_omit_copy(cluster5, writer):
    cascade = cluster5
    db = cascade.db
    started = time.monotonic()
    cascade.dead.update({4, 5})  # not nodes of this scenario: out of the admin conninfo
    cascade.module("slony_node", nodes=[{"id": n, "comment": "node %d" % n} for n in NODES])
    cascade.slons.start(*NODES)
    cascade.module("slony_path", paths=[
        {"server": s, "client": c, "conninfo": db.conninfo(s)}
        for s in NODES for c in NODES if s != c])
    cascade.module("slony_set", id=1, origin=1, comment="acceptance")
    tables = list(WRITER_TABLES) + SAMPLE_TABLES
    cascade.module("slony_table", set_id=1, tables=tables)
    cascade.module("slony_sequence", set_id=1, sequences=SEQUENCES)
    writer.start(1)
    writer.wait_for_commits(20)

    # Writes stop; the data of the set is dumped from the origin and restored.
    writer.stop()
    with tempfile.TemporaryDirectory(prefix="omit-copy-") as workdir:
        dump = str(Path(workdir) / "set1.dump")
        selection = [arg for name in tables + SEQUENCES for arg in ("-t", name)]
        pg_tool(db, "pg_dump", "--data-only", "--format=custom", "--file", dump,
                *selection, "--dbname", db.conninfo(1, password=False))
        for node in (2, 3):
            # Emptied as Slony's copy does when TRUNCATE is refused (billing.payments, in
            # no set, references billing.invoices): DELETE, foreign keys not enforced.
            db.query(node, "begin; set local session_replication_role = replica; %s commit;"
                     % " ".join("delete from %s;" % t for t in tables))
            pg_tool(db, "pg_restore", "--data-only", "--disable-triggers", "--single-transaction",
                    "--dbname", db.conninfo(node, password=False), dump)
    dumped = keys_on(db, 1)
    for node in (2, 3):
        assert keys_on(db, node) == dumped, node
        db.query(node, "update public.customers set name = %s where id = 1", (MARK % node,))

    # OMIT COPY: the receivers keep their data.
    done = subscribe(cascade)
    assert done.changed
    assert done.result["slonik"].count("omit copy = yes") == 2, done.result["slonik"]
    assert [e["type"] for e in done.result["events"]] == [
        "SUBSCRIBE_SET", "ENABLE_SUBSCRIPTION"] * 2, done.result["events"]
    assert all(view["complete"] for view in done.result["after"]), done.result["after"]
    for node in (2, 3):
        assert db.scalar(node, f"select count(*) from {NS}.sl_setsync where ssy_setid = 1") == 1
        assert customer_name(db, node) == MARK % node, node
        log = cascade.slons[node].log()
        for table in tables:
            quoted = ".".join('"%s"' % part for part in table.split("."))
            assert "COPY of table %s suppressed due to OMIT COPY option" % quoted in log, \
                (node, table)
        assert "Begin COPY of table" not in log, node

    # Writes resume; the origin's update of the changed row replicates over it.
    writer.start(1)
    db.query(1, "update public.customers set name = 'Ada Lovelace, after the dump' where id = 1")
    writer.wait_for_commits(30)
    for node in (2, 3):
        wait_until(lambda: customer_name(db, node) == "Ada Lovelace, after the dump",
                   timeout=90, interval=0.2, message="the update of customer 1 on node %d" % node)
    again = subscribe(cascade)
    assert not again.changed, again.result
    writer.stop()

    wait_converged(db, list(NODES), timeout=180)
    committed = writer.committed()
    assert writer.uncertain_count() == 0
    for table, keys in committed.items():
        assert dumped[table] < keys, table  # rows were written after the dump too
    for node in NODES:
        assert keys_on(db, node) == committed, "node %d lost or gained rows" % node

    info = assert_no_drift(cascade, list(NODES))
    assert sorted((s["receiver"], s["provider"], s["complete"]) for s in info["subscriptions"]) \
        == [(2, 1, True), (3, 2, True)], info["subscriptions"]
    print("scenario 8: %.0f s" % (time.monotonic() - started))
