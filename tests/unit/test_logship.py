"""Log shipping: the decision from plain data, the archive names, the restore list filter,
the apply lock's bounded wait and the runner of one file, without a database."""

from __future__ import annotations

import pytest

from ansible_collections.dany.slony.plugins.module_utils import logship
from ansible_collections.dany.slony.plugins.module_utils.cluster import Cluster
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.logship import (
    ArchiveFile, OfflineState, SubscriberState, archive_file_name, decide, filter_restore_list,
    libpq_command, parse_archive_names)
from fakes import FakeClock

TABLES = [(1, 1, "public", "customers"), (2, 1, "public", "orders"), (3, 2, "billing", "invoices")]
SEQUENCES = [(1, 1, "public", "invoice_number_seq")]


def subscriber(counter=40, subscriptions=((1, 1, True),)):
    return SubscriberState(counter, "2026-01-01 00:00:00", list(subscriptions), TABLES, SEQUENCES)


def fresh(present=(), with_rows=()):
    return OfflineState(False, False, False, [], list(present), list(with_rows))


def initialised(counter, node=2):
    row = {"at_counter": counter, "at_created": None, "at_applied": None}
    if node is not None:
        row["at_node"] = node
    return OfflineState(True, True, False, [row], [], [])


def files(*counters, node=2):
    return [ArchiveFile(c, archive_file_name(node, c)) for c in counters]


def names(entries):
    return [e.name for e in entries]


# -- names -----------------------------------------------------------------------------------

def test_archive_names_are_slons_and_only_the_nodes_final_files_count():
    assert archive_file_name(2, 43) == "slony1_log_2_00000000000000000043.sql"
    listing = ["slony1_log_2_00000000000000000044.sql", "slony1_log_2_00000000000000000043.sql",
               "slony1_log_2_00000000000000000045.sql.tmp", "slony1_log_3_00000000000000000001.sql",
               "slony1_log_2_43.sql", "README"]
    found, others = parse_archive_names(listing, 2)
    assert found == files(43, 44)
    assert others == [3]


# -- decide ------------------------------------------------------------------------------------

def test_an_initialised_database_gets_the_files_after_its_counter_in_order():
    d = decide("shop", 2, initialised(41), subscriber(44), files(40, 41, 42, 43, 44, 45))
    assert d.initialize is None and d.gap is None
    assert names(d.apply) == names(files(42, 43, 44))
    assert names(d.done) == names(files(40, 41))
    assert names(d.pending) == names(files(45))     # renamed, not committed on node 2 yet
    assert (d.counter, d.after) == (41, 44)


def test_nothing_new_is_nothing_to_do():
    d = decide("shop", 2, initialised(44), subscriber(44), files(43, 44))
    assert d.apply == [] and d.gap is None and d.after == 44


def test_without_committed_only_every_file_is_applied_and_the_subscriber_may_be_unknown():
    d = decide("shop", 2, initialised(41), None, files(42, 43), committed_only=False)
    assert names(d.apply) == names(files(42, 43)) and d.pending == []
    d = decide("shop", 2, initialised(41), subscriber(42), files(42, 43), committed_only=False)
    assert names(d.apply) == names(files(42, 43))


def test_a_gap_applies_the_files_before_it_and_names_the_missing_file():
    d = decide("shop", 2, initialised(41), subscriber(50), files(42, 43, 45, 46))
    assert names(d.apply) == names(files(42, 43, 45))   # the last one is the first past the gap
    assert d.gap == ("archive file slony1_log_2_00000000000000000044.sql is missing: the offline "
                     "database is at archive counter 43 and the next file in the archive "
                     "directory is slony1_log_2_00000000000000000045.sql")
    first = decide("shop", 2, initialised(41), subscriber(50), files(43))
    assert "slony1_log_2_00000000000000000042.sql is missing" in first.gap


def test_files_not_shipped_yet_are_no_gap():
    d = decide("shop", 2, initialised(41), subscriber(50), files(42))
    assert d.gap is None and names(d.apply) == names(files(42))


def test_a_fresh_database_is_initialised_at_the_subscribers_counter():
    d = decide("shop", 2, fresh(), subscriber(40), files(39, 40, 41))
    assert d.initialize == {"from_node": 2, "counter": 40, "copy_schema": True, "tables": 2,
                            "sequences": 1}
    assert names(d.apply) == [] and names(d.done) == names(files(39, 40))
    assert names(d.pending) == names(files(41))
    d = decide("shop", 2, fresh(present=[("public", "customers"), ("public", "orders"),
                                         ("public", "invoice_number_seq")]), subscriber(40), [])
    assert d.initialize["copy_schema"] is False


def test_initialising_refuses_what_cannot_work():
    def refused(pattern, offline=None, sub=None, **kwargs):
        with pytest.raises(SlonyError, match=pattern):
            decide("shop", 2, offline or fresh(), sub or subscriber(), [], **kwargs)

    refused("not initialised for log shipping .* and initialize is false", initialize=False)
    refused(r"lacks 3 replicated .*public\.customers.*schema is existing", schema="existing")
    refused(r"has some of node 2's .* \(public\.customers\) but not the others",
            fresh(present=[("public", "customers")]))
    refused(r"table\(s\) public\.customers hold rows",
            fresh(present=[("public", "customers"), ("public", "orders"), ("public", "invoice_number_seq")],
                  with_rows=[("public", "customers")]))
    refused(r"subscription to set 1 is not active yet", sub=subscriber(subscriptions=[(1, 1, False)]))
    refused("subscribed to no set", sub=subscriber(subscriptions=[]))
    refused("schema must be one of copy, existing", schema="all")


def test_refused_offline_databases():
    def refused(pattern, offline, sub=None):
        with pytest.raises(SlonyError, match=pattern):
            decide("shop", 2, offline, sub if sub is not None else subscriber(), [])

    refused("sl_node: it is a Slony node", OfflineState(True, False, True, [], [], []))
    refused("without sl_archive_tracking", OfflineState(True, False, False, [], [], []))
    refused("holds 2 rows, not one", OfflineState(True, True, False, [{"at_counter": 1}] * 2, [], []))
    refused("initialised from node 3's archives, not node 2's", initialised(10, node=3))
    refused("at archive counter 50, past node 2's own counter 40", initialised(50))
    # A database initialised by Slony's slony1_dump.sh (no at_node) is accepted.
    assert decide("shop", 2, initialised(10, node=None), subscriber(40), []).counter == 10


# -- pg_restore list -------------------------------------------------------------------------------

def test_the_restore_list_drops_slonys_triggers_only():
    lines = [
        "; Archive created at 2026-01-01",
        "215; 1259 16390 TABLE public customers slony",
        "3361; 2620 16500 TRIGGER public customers _shop_denyaccess slony",
        "3362; 2620 16501 TRIGGER public customers _shop_truncatedeny slony",
        "3363; 2620 16502 TRIGGER public customers _shop_logtrigger slony",
        "3364; 2620 16503 TRIGGER public customers _shop_truncatetrigger slony",
        "3365; 2620 16504 TRIGGER public customers audit_trigger slony",
        "3366; 2620 16505 TRIGGER public customers _other_denyaccess slony",
        "3367; 2606 16510 FK CONSTRAINT public orders orders_customer_id_fkey slony",
    ]
    kept, dropped = filter_restore_list(lines, "shop")
    assert [line.split(";")[0] for line in dropped] == ["3361", "3362", "3363", "3364"]
    assert "3365; 2620 16504 TRIGGER public customers audit_trigger slony" in kept
    assert len(kept) == len(lines) - 4


def test_the_password_goes_to_the_environment_not_the_command_line():
    target, env = libpq_command("host=db1 dbname=shop user=u password='s3 cret'")
    assert "s3 cret" not in target and "password" not in target
    assert env == {"PGPASSWORD": "s3 cret"}
    assert libpq_command("dbname=shop") == ("dbname=shop", {})


# -- runners ---------------------------------------------------------------------------------------

class FakeShip(logship.LogShip):
    """A LogShip whose offline counter and psql are scripted."""

    def __init__(self, counters, results=None):
        cluster = Cluster("shop", {2: "host=db2 dbname=shop user=u password=pw2"})
        logship.LogShip.__init__(self, cluster, 2, "/srv/in", "dbname=report user=u password=pw9",
                                 runner=self.fake_run)
        self.counters = list(counters)
        self.results = list(results or [])
        self.commands = []
        self.report = {"applied": [], "counter": None}

    def offline_counter(self):
        return self.counters.pop(0)

    def program(self, name):
        return "/usr/bin/" + name

    def fake_run(self, argv, env):
        self.commands.append((argv, env))
        return self.results.pop(0)


def test_a_file_is_applied_with_psql_and_must_move_the_counter_to_its_own():
    ship = FakeShip([41, 42], [(0, "", "NOTICE: Slony-I: Process archive with counter 42")])
    entry = files(42)[0]
    ship.run_apply(entry)(ship.cluster, None, None)
    argv, env = ship.commands[0]
    assert argv[:6] == ["/usr/bin/psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"]
    assert argv[-2:] == ["-f", "/srv/in/" + entry.name]
    assert "pw9" not in " ".join(argv) and env == {"PGPASSWORD": "pw9"}
    assert ship.report == {"applied": [entry.name], "counter": 42}
    assert "pw9" not in str(ship.cluster.queries)


def test_a_file_the_initial_load_covered_is_skipped():
    ship = FakeShip([45])
    ship.run_apply(files(42)[0])(ship.cluster, None, None)
    assert ship.commands == [] and ship.report["applied"] == []


def test_a_gap_at_run_time_stops_before_psql():
    ship = FakeShip([41])
    with pytest.raises(SlonyError, match="stopped after 0 file.*slony1_log_2_00000000000000000042.sql is missing"):
        ship.run_apply(files(43)[0])(ship.cluster, None, None)
    assert ship.commands == []


def test_a_failing_file_is_named_and_nothing_after_it_is_applied():
    ship = FakeShip([41], [(3, "", "psql:/srv/in/x.sql:9: ERROR:  division by zero\npassword=pw9")])
    with pytest.raises(SlonyError) as info:
        ship.run_apply(files(42)[0])(ship.cluster, None, None)
    message = info.value.message
    assert "archive file slony1_log_2_00000000000000000042.sql failed" in message
    assert "stays at archive counter 41" in message and "division by zero" in message
    assert "pw9" not in message
    assert ship.report["applied"] == []


def test_a_file_for_another_counter_is_refused():
    ship = FakeShip([41, 41], [(0, "", "")])
    with pytest.raises(SlonyError, match="left the offline database at archive counter 41, not 42"):
        ship.run_apply(files(42)[0])(ship.cluster, None, None)


# -- the apply lock ---------------------------------------------------------------------------------

class LockedConnection:
    """An offline connection whose advisory lock is always held by someone else."""

    closed = False
    autocommit = True

    def __init__(self):
        self.tries = 0

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, statement, params=None):
        assert "pg_try_advisory_lock" in statement
        self.tries += 1

    def fetchone(self):
        return (False,)


def test_the_apply_lock_wait_honours_wait_timeout():
    ship = FakeShip([])
    ship.conn = LockedConnection()
    clock = FakeClock()
    with pytest.raises(SlonyError) as info:
        ship.lock(5, clock=clock)
    assert clock.waited == pytest.approx(5)
    assert ship.conn.tries > 2
    assert info.value.message.startswith("timed out after 5s waiting for the apply lock of the "
                                         "offline database (")
    assert "another run is initialising it or applying archive files" in info.value.message
    assert "pw9" not in info.value.message
