"""failover.py: the pure parts of slonik's FAILOVER (no database)."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    PENDING_CONNINFO, Node, Path, Set, Snapshot)
from ansible_collections.dany.slony.plugins.module_utils.conninfo import Redactor
from ansible_collections.dany.slony.plugins.module_utils.failover import (
    choose_temporary_backup, failover_complete_on, probe_failed_node, server_answered,
    survivors_and_candidates, validation_errors)


# -- survivors and candidates ----------------------------------------------------------

def test_every_surviving_node_is_listed_and_only_targets_are_candidates():
    rows = [(2, 2, False), (3, None, False), (4, 4, False)]
    assert survivors_and_candidates(rows) == ([2, 3, 4], [2, 4])


def test_nodes_that_failed_earlier_are_not_survivors():
    rows = [(2, 2, False), (5, None, True), (6, 6, True)]
    assert survivors_and_candidates(rows) == ([2], [2])


def test_no_candidates():
    assert survivors_and_candidates([(2, None, False), (3, None, False)]) == ([2, 3], [])
    assert survivors_and_candidates([]) == ([], [])


# -- the node promoted first -------------------------------------------------------------

def test_the_most_ahead_candidate_is_promoted():
    assert choose_temporary_backup(2, {2: 100, 3: 105}, {2, 3}) == (3, 105)


def test_the_backup_wins_a_tie_with_the_most_ahead_candidate():
    assert choose_temporary_backup(3, {2: 105, 3: 105}, {2, 3}) == (3, 105)
    assert choose_temporary_backup(2, {2: 105, 3: 105}, {2, 3}) == (2, 105)


def test_the_backup_wins_a_tie_even_when_it_is_not_a_candidate():
    # slonik compares the backup's seqno with the winner's, whatever the backup is.
    assert choose_temporary_backup(4, {2: 105, 3: 100, 4: 105}, {2, 3}) == (4, 105)


def test_among_other_candidates_the_lowest_id_wins_a_tie():
    assert choose_temporary_backup(2, {2: 90, 3: 105, 4: 105}, {2, 3, 4}) == (3, 105)


def test_a_node_that_is_not_a_candidate_is_never_promoted_for_being_ahead():
    assert choose_temporary_backup(2, {2: 100, 3: 200}, {2}) == (2, 100)


def test_without_candidates_the_backup_is_used():
    assert choose_temporary_backup(2, {2: 100, 3: 200}, set()) == (2, 100)


def test_candidates_without_events_fall_back_to_the_backup():
    assert choose_temporary_backup(2, {2: None, 3: None}, {2, 3}) == (2, 0)
    assert choose_temporary_backup(2, {2: 7, 3: 0}, {3}) == (2, 7)


def test_the_backup_behind_a_candidate_is_not_promoted():
    target, seqno = choose_temporary_backup(2, {2: 100, 3: 101, 4: 99}, {2, 3, 4})
    assert (target, seqno) == (3, 101)


@pytest.mark.parametrize("seqnos,candidates,backup,expected", [
    ({2: 5, 3: 5, 4: 5}, {2, 3, 4}, 4, (4, 5)),
    ({2: 5, 3: 6, 4: 6}, {2, 3, 4}, 2, (3, 6)),
    ({2: 5, 3: 6, 4: 6}, {2, 3, 4}, 4, (4, 6)),
    ({2: 9}, {2}, 2, (2, 9)),
])
def test_choice_table(seqnos, candidates, backup, expected):
    assert choose_temporary_backup(backup, seqnos, candidates) == expected


# -- validation -------------------------------------------------------------------------

def test_validation_messages_name_the_nodes_and_sets():
    errors = validation_errors(1, 2, orphans=[4, 4], not_forwarded=[3])
    assert len(errors) == 2
    assert "node 4 is fed by node 1 but has no path to the backup node 2" in errors[0]
    assert "node 2 is not a forwarding subscriber of set 3 of node 1" in errors[1]
    assert validation_errors(1, 2, [], []) == []


# -- completion ---------------------------------------------------------------------------

def snapshot(nodes, sets):
    return Snapshot(2, local_id=2, nodes=nodes, sets=sets)


def test_completion_needs_failed_inactive_and_no_set_left():
    failed_done = Node(1, False, "origin", True)
    assert failover_complete_on(snapshot([failed_done], [Set(1, 2, None, "app")]), 1)
    # failedNode2 ran (failed) but failoverSet_int did not (still active, still origin).
    promoted_only = Node(1, True, "origin", True)
    assert not failover_complete_on(snapshot([promoted_only], [Set(1, 1, None, "app")]), 1)
    assert not failover_complete_on(snapshot([failed_done], [Set(1, 1, None, "app")]), 1)
    assert not failover_complete_on(snapshot([Node(1, True, "origin", False)], []), 1)


def test_a_dropped_node_is_complete():
    assert failover_complete_on(snapshot([Node(2, True, "b", False)], []), 1)


# -- probing the failed node ------------------------------------------------------------------

@pytest.mark.parametrize("message,answered", [
    ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', False),
    ("could not translate host name \"db1\" to address: Name or service not known", False),
    ("timeout expired", False),
    ('connection to server at "db1" failed: FATAL:  password authentication failed for user "x"',
     True),
    ('connection to server failed: FATAL:  database "app" does not exist', True),
    ("connection to server failed: FATAL:  the database system is starting up", False),
    ("connection to server failed: FATAL:  the database system is shutting down", False),
    ("connection to server failed: FATAL:  the database system is in recovery mode", False),
    ("", False),
    (None, False),
])
def test_server_answered(message, answered):
    assert server_answered(message) is answered


# -- the probe: which conninfos are tried, and what leaves it -----------------------------------

class ProbeCluster:
    """What probe_failed_node needs from a Cluster."""

    def __init__(self, admin_conninfo):
        self.admin_conninfo = admin_conninfo
        self.redactor = Redactor()
        self.connect_timeout = 3

    def has_node(self, node):
        return node in self.admin_conninfo


def paths_snapshot(paths):
    return Snapshot(2, local_id=2, paths=paths)


def test_probe_tries_admin_conninfo_then_each_distinct_path_conninfo():
    seen = []

    def connect(conninfo, timeout):
        seen.append((conninfo, timeout))
        return False, 'connection to server at "db1" failed: Connection refused'

    cluster = ProbeCluster({1: "host=db1 dbname=app user=slony password=s3cret"})
    snap = paths_snapshot([
        Path(1, 2, "host=db1 dbname=app user=slony password=s3cret", 10),   # same as admin
        Path(1, 3, "host=db1-alt dbname=app user=slony password=other", 10),
        Path(1, 4, PENDING_CONNINFO, 10),                                  # blanked: skipped
        Path(2, 3, "host=db2 dbname=app", 10),                             # not from node 1
    ])
    reachable, findings = probe_failed_node(cluster, 1, snap, connect=connect)
    assert reachable is False
    assert [c for c, _t in seen] == ["host=db1 dbname=app user=slony password=s3cret",
                                     "host=db1-alt dbname=app user=slony password=other"]
    assert all(t == 3 for _c, t in seen)
    assert findings[0].startswith("admin_conninfo (") and "unreachable" in findings[0]
    assert findings[1].startswith("path to node 3 (")
    text = " ".join(findings)
    assert "s3cret" not in text and "other" not in text and "********" in text


def test_probe_reports_a_database_or_a_server_that_answers():
    answers = iter([(True, "ok")])
    cluster = ProbeCluster({1: "host=db1 dbname=app"})
    reachable, findings = probe_failed_node(cluster, 1, paths_snapshot([]),
                                            connect=lambda c, t: next(answers))
    assert reachable is True and "the database answers" in findings[0]

    cluster = ProbeCluster({})
    snap = paths_snapshot([Path(1, 2, "host=db1 dbname=app user=x password=pw1", 10)])
    reachable, findings = probe_failed_node(
        cluster, 1, snap, connect=lambda c, t: (
            False, 'failed: FATAL:  password authentication failed for user "x" pw1'))
    assert reachable is True and "the server answers" in findings[0]
    assert "pw1" not in findings[0]


def test_probe_without_any_conninfo_finds_nothing():
    assert probe_failed_node(ProbeCluster({}), 1, paths_snapshot([]),
                             connect=lambda c, t: (True, "ok")) == (False, [])
