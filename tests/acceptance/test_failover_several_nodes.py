"""Scenario 4 of the acceptance suite: several nodes fail at once (Slony-I's
MultinodeFailover, MultinodeCascadeFailover and SiteFailover disorder tests).

5 nodes, 1 -> {2, 3}, 3 -> {4, 5}, a writer on the origin:

* an origin and a forwarder die together (nodes 1 and 3): a call that fails over only
  node 1 is refused, naming node 3 (it feeds nodes 4 and 5), and changes nothing; one
  FAILOVER with both pairs (1 -> 2, 3 -> 2) makes node 2 the origin and feeds 4 and 5
  from it;
* a whole two-node site dies (nodes 1 and 2, through playbooks/failover.yml): node 3
  becomes the origin, 4 and 5 stay on it.

Each time: sl_set and sl_subscribe on every surviving node, every row the new origin
had is on every survivor (tables and sequences compared), the writer on the new origin
replicates, and a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from ansible_run import REPO_ROOT
from catalog_dump import assert_unchanged
from harness import CLUSTER, NS, assert_no_drift, keys_on, wait_converged
from lab import wait_until


def _survivor_catalogs(cascade, survivors, origin, feeds):
    state = dict((n, (cascade.catalog(n, "sets"), cascade.catalog(n, "subscriptions"),
                      cascade.catalog(n, "nodes"))) for n in survivors)
    print("catalogs after the failover:", state)
    for node in survivors:
        assert cascade.catalog(node, "sets") == [(1, origin)], node
        subs = cascade.catalog(node, "subscriptions")
        assert subs == [(1, feeds[r], r, True) for r in sorted(feeds)], (node, subs)


def _resubscribe_the_nodes_ahead(cascade, result, survivors, feeds):
    """Slony's FAILOVER makes a node that had applied more of the failed origin's events
    than the promoted node drop its subscriptions (failoverSet_int; slony_failover's notes
    say so). Here that happens when the killed forwarder (node 3) passed a SYNC of node 1
    to node 4 or 5 that node 2 had not received: a race of the kill with the writer, which
    the module reports in failed_node_events. Once the catalogs are stable, every node
    without its subscription must be such a node; it is subscribed again from the new
    origin (a full copy), the way a DBA recovers it."""
    def stable():
        now = [cascade.catalog(n, "subscriptions") for n in survivors]
        time.sleep(1)
        return now if now == [cascade.catalog(n, "subscriptions") for n in survivors] else None

    subs = wait_until(stable, timeout=60, interval=0.5, message="the subscriptions settled")[0]
    dropped = sorted(set(feeds) - set(row[2] for row in subs))
    # The module read the same on each receiver once FAILOVER_NODE was confirmed, and warned.
    reported = result["dropped_subscriptions"]
    assert sorted(e["node"] for e in reported) == dropped, (reported, dropped)
    assert all(e["set"] == 1 and e["failed_node"] == 1 for e in reported), reported
    if not dropped:
        return
    events = dict((entry["failed_node"], entry) for entry in result["failed_nodes"])[1]
    promoted = events["temporary_backup"]
    seqnos = dict((e["node"], e["max_seqno"]) for e in events["failed_node_events"])
    print("nodes %s dropped their subscription (node 1's events held: %s, node %d promoted)"
          % (dropped, seqnos, promoted))
    assert not set(dropped) & set(events["candidates"]), (dropped, events)
    assert max(seqnos.values()) > seqnos[promoted], ("a subscription was dropped, but no survivor "
                                                     "was ahead of node %d" % promoted, seqnos)
    cascade.module("slony_subscription", set_id=1, receivers=[
        {"receiver": n, "provider": feeds[n], "forward": True} for n in dropped])


def _check_data(cascade, writer, survivors, origin, had):
    """Every row the new origin had is on every survivor, nothing else; the writer on the
    new origin replicates everywhere."""
    committed = writer.committed()
    for table, keys in had.items():
        assert keys <= committed[table] or writer.uncertain_count(), table
    digest = wait_converged(cascade.db, survivors)
    for node in survivors:
        assert keys_on(cascade.db, node) == had, node
    writer.follow(origin)
    writer.wait_for_commits(20)
    writer.stop()
    after = wait_converged(cascade.db, survivors)
    assert after != digest
    on_origin = keys_on(cascade.db, origin)
    for table, keys in writer.committed().items():
        assert had[table] <= on_origin[table]
    return after


def test_an_origin_and_a_forwarder_fail_together(cluster5, writer):
    started = time.monotonic()
    cascade = cluster5
    cascade.bring_up()
    writer.start(1)
    writer.wait_for_commits(30)
    cascade.kill_node(1, 3)
    writer.stop()
    survivors = [2, 4, 5]
    before = cascade.config_dump(survivors)

    # Node 3 is left out: refused, naming it, nothing changed.
    refused = cascade.module("slony_failover", failed_node=1, backup_node=2,
                             expect_failure=True, wait_timeout=30)
    assert "node 3 does not answer either" in refused.msg, refused.msg
    assert "feeds node 4 (set 1), node 5 (set 1)" in refused.msg, refused.msg
    assert "nothing was changed" in refused.msg
    refused = cascade.module("slony_failover", nodes=[{"id": 1, "backup_node": 2}],
                             expect_failure=True, wait_timeout=30)
    assert "node 3 does not answer either" in refused.msg
    assert_unchanged(cascade.config_dump(survivors), before)

    # Check mode: the plan, nothing changes.
    pairs = [{"id": 1, "backup_node": 2}, {"id": 3, "backup_node": 2}]
    checked = cascade.module("slony_failover", nodes=pairs, drop_failed=True, check=True,
                             diff=True)
    assert checked.changed
    result = checked.result
    assert "failover (node = (id = 1, backup node = 2), node = (id = 3, backup node = 2));" \
        in result["slonik"]
    assert "drop node (id = '1,3', event node = 2);" in result["slonik"]
    assert result["surviving_nodes"] == survivors
    assert [e["failed_node"] for e in result["failed_nodes"]] == [1, 3]
    assert [e["failed_node_reachable"] for e in result["failed_nodes"]] == [False, False]
    assert result["before"]["nodes"][0]["sets"] == [{"id": 1, "origin": 1}]
    assert result["after"]["nodes"][0] == {"failed_node": 1, "backup_node": 2,
                                           "state": "absent", "sets": [{"id": 1, "origin": 2}]}
    assert "+++ after" in checked.stdout, checked.stdout[-2000:]
    assert cascade.db.lab.password not in checked.everything()
    assert_unchanged(cascade.config_dump(survivors), before)

    had = keys_on(cascade.db, 2)
    failed_at = time.monotonic()
    done = cascade.module("slony_failover", nodes=pairs, wait_timeout=120,
                          drop_failed=not os.environ.get("ACC_DEBUG_NO_DROP"))
    took = time.monotonic() - failed_at
    assert done.changed
    assert took < 120
    types = [e["type"] for e in done.result["events"]]
    assert types.count("FAILOVER_NODE") == 2 and "DROP_NODE" in types
    _resubscribe_the_nodes_ahead(cascade, done.result, survivors, {4: 2, 5: 2})
    _survivor_catalogs(cascade, survivors, 2, {4: 2, 5: 2})
    for node in survivors:
        assert cascade.catalog(node, "nodes") == [(2,), (4,), (5,)]
    _check_data(cascade, writer, survivors, 2, had)
    assert_no_drift(cascade, survivors)

    # A second run changes nothing (check mode too).
    again = cascade.module("slony_failover", nodes=pairs, drop_failed=True)
    assert not again.changed, again.result
    assert not cascade.module("slony_failover", nodes=pairs, drop_failed=True, check=True).changed
    print("origin + forwarder failover: %.1fs (module %.1fs), scenario %.1fs"
          % (took, done.seconds, time.monotonic() - started))


def run_failover_playbook(cascade, nodes, check=False):
    variables = {"slony_cluster_name": CLUSTER,
                 "slony_admin_conninfo": {str(n): cascade.db.conninfo(n) for n in cascade.alive},
                 "slony_failover_nodes": nodes, "slony_wait_timeout": 120}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(variables, handle)
        handle.flush()
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        command = [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"),
                   str(REPO_ROOT / "playbooks" / "failover.yml"), "-e", "@" + handle.name]
        if check:
            command.append("--check")
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:].replace(cascade.db.lab.password, "********")
    assert cascade.db.lab.password not in output
    return output


def test_a_whole_site_fails(cluster5, writer):
    started = time.monotonic()
    cascade = cluster5
    cascade.bring_up()
    writer.start(1)
    writer.wait_for_commits(30)
    cascade.kill_node(1, 2)  # site A: the origin and its local replica
    writer.stop()
    survivors = [3, 4, 5]
    before = cascade.config_dump(survivors)
    site = [{"id": 1, "backup_node": 3}, {"id": 2, "backup_node": 3}]
    out = run_failover_playbook(cascade, site, check=True)
    assert "failover (node = (id = 1, backup node = 3), node = (id = 2, backup node = 3));" in out
    assert_unchanged(cascade.config_dump(survivors), before)

    had = keys_on(cascade.db, 3)
    failed_at = time.monotonic()
    out = run_failover_playbook(cascade, site)
    took = time.monotonic() - failed_at
    assert "changed: True" in out
    _survivor_catalogs(cascade, survivors, 3, {4: 3, 5: 3})
    for node in survivors:
        assert cascade.catalog(node, "nodes") == [(3,), (4,), (5,)]
        assert cascade.db.scalar(node, f"select count(*) from {NS}.sl_path "
                                       "where pa_server in (1, 2) or pa_client in (1, 2)") == 0
    _check_data(cascade, writer, survivors, 3, had)
    assert_no_drift(cascade, survivors)
    out = run_failover_playbook(cascade, site)
    assert "changed: False" in out
    print("site failover: playbook %.1fs, scenario %.1fs" % (took, time.monotonic() - started))
