# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""slony_script without a database: the statement splitter and the planning."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import psycopg2
import pytest
from psycopg2 import sql

from fake_conn import FakeConnection

try:
    import ansible_collections.dany.slony  # noqa: F401 pylint: disable=unused-import
except ImportError:  # run from a plain checkout: use the tree scripts/bootstrap.sh links
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".build",
                                    "collections"))

from ansible_collections.dany.slony.plugins.module_utils import script as script_mod
from ansible_collections.dany.slony.plugins.module_utils.catalog import Node, Set, Snapshot
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.plan import CALLBACK, WAIT
from ansible_collections.dany.slony.plugins.module_utils.script import (
    ScriptSyntaxError, Statement, build_plan, check_only_on, check_statements,
    choose_event_node, key_statements, normalize_only_on, quote_literal, slonik_text,
    split_statements, statement_error, substitute_tokens, target_nodes, transaction_control,
    validate_key)

NS = sql.Identifier("_shop")


def texts(script, **kwargs):
    return [s.sql for s in split_statements(script, **kwargs)]


# -- splitting: the basic rule -------------------------------------------------------------

def test_semicolon_ends_a_statement_and_is_kept():
    assert texts("select 1; select 2;") == ["select 1;", "select 2;"]


def test_text_after_the_last_semicolon_is_a_statement():
    assert texts("alter table t add c int;\ncreate index i on t (c)") == [
        "alter table t add c int;", "create index i on t (c)"]


def test_trailing_whitespace_and_comments_are_no_statement():
    assert texts("select 1;\n  \n-- the end\n/* really */\n") == ["select 1;"]


def test_empty_pieces_are_dropped():
    assert texts(";;select 1;; ;\n;") == ["select 1;"]
    assert texts("") == [] and texts("  -- nothing\n") == []


def test_comment_after_a_semicolon_belongs_to_the_next_statement():
    assert texts("select 1; -- about two\nselect 2;") == [
        "select 1;", "-- about two\nselect 2;"]


def test_line_numbers_point_at_the_first_token_after_comments():
    stmts = split_statements("\n\nselect 1;\n\n  select\n2;\n/* c\n*/ select 3")
    assert [(s.index, s.line) for s in stmts] == [(1, 3), (2, 5), (3, 8)]
    assert stmts[2].sql == "/* c\n*/ select 3"


def test_crlf_line_endings():
    stmts = split_statements("select 1; -- x\r\nselect 2;\r\n")
    assert [s.sql for s in stmts] == ["select 1;", "-- x\r\nselect 2;"]
    assert stmts[1].line == 2  # the comment is on line 1, the statement on line 2


# -- quotes -------------------------------------------------------------------------------

def test_semicolon_in_single_quotes():
    assert texts("insert into t values ('a;b'); select 2;") == [
        "insert into t values ('a;b');", "select 2;"]


def test_doubled_single_quote_stays_in_the_string():
    assert texts("select 'it''s; fine'; select 2") == ["select 'it''s; fine';", "select 2"]


def test_backslash_is_literal_in_standard_strings():
    # slonik would take \' as an escaped quote and swallow the rest of the script.
    assert texts(r"select 'C:\'; select 2;") == [r"select 'C:\';", "select 2;"]


def test_backslash_escapes_in_e_strings():
    assert texts(r"select E'it\'s; still'; select 2;") == [
        r"select E'it\'s; still';", "select 2;"]
    assert texts(r"select e'\\'; select 2;") == [r"select e'\\';", "select 2;"]


def test_backslash_escapes_in_plain_strings_without_standard_conforming_strings():
    script = r"select 'it\'s; still'; select 2;"
    assert texts(script, standard_conforming_strings=False) == [
        r"select 'it\'s; still';", "select 2;"]
    with pytest.raises(ScriptSyntaxError):  # with it on, \' ends the string: "still'..." never does
        split_statements(script)


def test_identifier_ending_in_e_is_no_escape_string():
    # "somE" is an identifier: the string after it is a standard one.
    assert texts(r"select somE'\'; select 2;") == [r"select somE'\';", "select 2;"]


def test_semicolon_in_double_quotes_and_doubled_double_quote():
    assert texts('create table "a;""b" (x int); select 2;') == [
        'create table "a;""b" (x int);', "select 2;"]


def test_backslash_in_identifiers_is_literal():
    assert texts('create table "a\\" (x int); select 2;') == [
        'create table "a\\" (x int);', "select 2;"]


def test_dollar_quotes():
    body = "create function f() returns int language plpgsql as $$ begin return 1; end $$;"
    assert texts(body + " select 2;") == [body, "select 2;"]


def test_tagged_dollar_quotes_nest_other_tags():
    body = ("create function f() returns text language plpgsql as $fn$ begin "
            "return $q$a;$$;b$q$; end $fn$;")
    assert texts(body + "\nselect 2") == [body, "select 2"]


def test_dollar_tag_must_match_exactly():
    body = "select $a$ x; $A$ ; $ab$ ; $a$;"
    assert texts(body + " select 2;") == [body, "select 2;"]


def test_parameters_and_dollar_in_identifiers_are_no_dollar_quotes():
    assert texts("prepare p as select $1; select 2;") == ["prepare p as select $1;",
                                                          "select 2;"]
    assert texts("select 1 as a$b$; select 2;") == ["select 1 as a$b$;", "select 2;"]
    assert texts('select * from "_my$cl".sl_node; select 2;') == [
        'select * from "_my$cl".sl_node;', "select 2;"]


def test_quotes_in_comments_are_ignored():
    assert texts("select 1; -- it's\nselect 2; /* \"$$ */ select 3;") == [
        "select 1;", "-- it's\nselect 2;", '/* "$$ */ select 3;']


# -- comments -----------------------------------------------------------------------------

def test_semicolon_in_line_comment():
    assert texts("select 1 -- not; the end\n; select 2;") == [
        "select 1 -- not; the end\n;", "select 2;"]


def test_semicolon_in_block_comment():
    assert texts("select /* ; */ 1; select 2;") == ["select /* ; */ 1;", "select 2;"]


def test_block_comments_nest():
    assert texts("select /* a /* b; */ c; */ 1; select 2;") == [
        "select /* a /* b; */ c; */ 1;", "select 2;"]


def test_division_does_not_stop_splitting():
    # slonik's scanner stays in "maybe a comment" after a "/" and would not split here.
    assert texts("select 4/2; select 2;") == ["select 4/2;", "select 2;"]


def test_quote_in_a_comment_of_the_last_piece():
    assert texts("select 1; -- don't") == ["select 1;"]


# -- nesting ------------------------------------------------------------------------------

def test_semicolons_in_parentheses_do_not_split():
    rule = ("create rule r as on insert to t do also "
            "(insert into a values (1); insert into b values (2));")
    assert texts(rule + " select 2;") == [rule, "select 2;"]


def test_semicolons_in_brackets_and_braces_do_not_split():
    assert texts("select a[1;2]; select {x;y}; select 3;") == [
        "select a[1;2];", "select {x;y};", "select 3;"]


def test_brackets_in_quotes_do_not_count():
    assert texts("select '(' ; select \")\"; select $$[$$; select 4") == [
        "select '(' ;", 'select ")";', "select $$[$$;", "select 4"]


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("script, message", [
    ("select 1;\nselect 'abc", "unterminated quoted string starting at line 2"),
    ('select 1;\n\nselect "abc', "unterminated quoted identifier starting at line 3"),
    ("select $x$ abc $y$", "unterminated dollar-quoted string $x$ starting at line 1"),
    ("select 1; /* a /* b */", "unterminated /* comment starting at line 1"),
    ("select E'abc\\'", "unterminated quoted string"),
    ("select (1;\nselect 2;", "'(' opened at line 1 of the script is never closed"),
    ("select 1);", "unbalanced ')' at line 1"),
    ("select a[1);", "unbalanced ')' at line 1"),
    ("select 1;\n}", "unbalanced '}' at line 2"),
])
def test_malformed_scripts_are_reported_with_their_line(script, message):
    with pytest.raises(ScriptSyntaxError) as err:
        split_statements(script)
    assert message in str(err.value)


# -- tokens -------------------------------------------------------------------------------

def test_tokens_are_substituted_as_slonik_does():
    text = substitute_tokens("select @NAMESPACE@.getLocalNodeId('_@CLUSTERNAME@'), "
                             "'@MODULEVERSION@', '@FUNCVERSION@'", "shop", "2.2.11")
    assert text == "select \"_shop\".getLocalNodeId('_shop'), '2.2.11', '@FUNCVERSION@'"


def test_namespace_token_is_quoted():
    assert substitute_tokens("@NAMESPACE@", "Shop$1", "2.2.11") == '"_Shop$1"'


# -- statement checks -------------------------------------------------------------------------

@pytest.mark.parametrize("statement, command", [
    ("begin;", "BEGIN"),
    ("BEGIN TRANSACTION;", "BEGIN"),
    ("  -- start\n/* here */ start transaction;", "START TRANSACTION"),
    ("commit;", "COMMIT"),
    ("end;", "END"),
    ("abort;", "ABORT"),
    ("rollback;", "ROLLBACK"),
    ("rollback prepared 'x';", "ROLLBACK"),
    ("prepare transaction 'x';", "PREPARE TRANSACTION"),
    ("commit prepared 'x';", "COMMIT"),
    ("rollback to savepoint a;", None),
    ("rollback to a;", None),
    ("savepoint a;", None),
    ("release savepoint a;", None),
    ("prepare q as select 1;", None),
    ("start_date_fix();", None),
    ("alter table t add column begin_at date;", None),
    ("create function f() returns void language sql as 'commit';", None),
])
def test_transaction_control_is_recognised(statement, command):
    assert transaction_control(statement) == command


def test_check_statements_refuses_transaction_control_naming_each():
    stmts = split_statements("begin;\nalter table t add c int;\ncommit;")
    with pytest.raises(SlonyError) as err:
        check_statements(stmts)
    assert "statement 1 (line 1) is BEGIN" in str(err.value)
    assert "statement 3 (line 3) is COMMIT" in str(err.value)


def test_check_statements_refuses_an_empty_script():
    with pytest.raises(SlonyError) as err:
        check_statements(split_statements("-- nothing to do\n"))
    assert "contains no SQL statement" in str(err.value)


# -- key bookkeeping ----------------------------------------------------------------------------

def test_quote_literal():
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("a\\'b") == "E'a\\\\''b'"
    with pytest.raises(SlonyError):
        quote_literal("a\x00b")


@pytest.mark.parametrize("key", ["", "   ", "a" * 201, "two\nlines", 5])
def test_bad_keys_are_refused(key):
    with pytest.raises(SlonyError):
        validate_key(key)


def test_good_keys():
    assert validate_key(None) is None
    assert validate_key("0042_add email (v2)") == "0042_add email (v2)"


def test_key_statements_split_back_into_three_statements():
    statements = key_statements("shop", "k'1\\", "abc", 2, [2, 3])
    joined = "\n".join(statements)
    assert texts(joined) == statements
    assert len(statements) == 3
    assert statements[0] == "create schema if not exists dany_slony;"
    assert "create table if not exists dany_slony.script_log" in statements[1]
    assert "values ('shop', E'k''1\\\\', 'abc', 2, '{2,3}'::integer[])" in statements[2]
    assert "on conflict (cluster_name, key) do update" in statements[2]
    assert "null)" in key_statements("shop", "k", "abc", 1, None)[2]


def test_checksum_is_stable():
    assert script_mod.script_checksum("select 1;") == script_mod.script_checksum("select 1;")
    assert script_mod.script_checksum("select 1;") != script_mod.script_checksum("select 2;")


# -- nodes ---------------------------------------------------------------------------------

def snapshot(node=1, nodes=(1, 2, 3), origins=(), inactive=()):
    return Snapshot(node, local_id=node,
                    nodes=[Node(n, n not in inactive, "node %d" % n, False) for n in nodes],
                    sets=[Set(i + 1, o, None, "set") for i, o in enumerate(origins)])


def test_only_on_is_normalised():
    assert normalize_only_on(None) is None
    assert normalize_only_on([3, "2", 3]) == [2, 3]
    for bad in ([], [0], ["x"], 3):
        with pytest.raises(SlonyError):
            normalize_only_on(bad)


def test_event_node_defaults_to_the_lowest_origin():
    assert choose_event_node(snapshot(origins=(3, 2)), [1, 2, 3]) == 2


def test_event_node_without_sets_is_the_lowest_active_admin_node():
    assert choose_event_node(snapshot(inactive=(1,)), [1, 2, 3]) == 2
    assert choose_event_node(snapshot(), [2, 3]) == 2


def test_event_node_with_only_on_is_chosen_among_them():
    snap = snapshot(origins=(1, 3))
    assert choose_event_node(snap, [1, 2, 3], only_on=[3]) == 3
    assert choose_event_node(snap, [1, 2, 3], only_on=[2, 3]) == 3
    assert choose_event_node(snapshot(origins=(1,)), [1, 2, 3], only_on=[2, 3]) == 2


def test_event_node_not_in_only_on_is_refused_clearly():
    with pytest.raises(SlonyError) as err:
        choose_event_node(snapshot(origins=(1,)), [1, 2, 3], event_node=1, only_on=[3])
    assert "event_node 1 is not in only_on (3)" in str(err.value)
    assert "must be one of the only_on nodes" in str(err.value)


def test_explicit_event_node_must_be_a_reachable_node():
    with pytest.raises(SlonyError) as err:
        choose_event_node(snapshot(), [1, 2, 3], event_node=7)
    assert "event_node 7 is not a node of the cluster (nodes: 1, 2, 3)" in str(err.value)
    with pytest.raises(SlonyError) as err:
        choose_event_node(snapshot(), [1, 2], event_node=3)
    assert "no entry in admin_conninfo" in str(err.value)
    assert choose_event_node(snapshot(origins=(1,)), [1, 2, 3], event_node=2) == 2


def test_no_candidate_for_event_node():
    with pytest.raises(SlonyError) as err:
        choose_event_node(snapshot(), [1, 2], only_on=[3])
    assert "one of only_on (3)" in str(err.value)


def test_only_on_nodes_must_exist_and_be_active():
    check_only_on(snapshot(), None)
    check_only_on(snapshot(), [1, 3])
    with pytest.raises(SlonyError) as err:
        check_only_on(snapshot(), [3, 4])
    assert "only_on names node(s) 4" in str(err.value)
    with pytest.raises(SlonyError) as err:
        check_only_on(snapshot(inactive=(2,)), [2])
    assert "inactive node(s) 2" in str(err.value)


def test_target_nodes():
    assert target_nodes(snapshot(inactive=(3,)), 1, None) == [1, 2]
    assert target_nodes(snapshot(), 3, [3]) == [3]


# -- the plan -----------------------------------------------------------------------------------

def test_plan_runs_the_script_then_a_sync_then_waits_for_every_node():
    stmts = split_statements("alter table t add c int;\ncreate index i on t (c);")
    plan = build_plan(NS, "shop", 1, stmts, None, [1, 2, 3], key="k", wait_timeout=60)
    kinds = [(s.kind, s.node) for s in plan.steps]
    assert kinds == [(CALLBACK, 1), (CALLBACK, 1), (WAIT, 1)]
    run, sync, waiting = plan.steps
    assert [(q.seq[0].string, params) for q, params in run.calls] == [
        ("select ", ("alter table t add c int;", None)),
        ("select ", ("create index i on t (c);", None)),
        ("select ", (None,))]
    assert [q.seq[2].string for q, params in run.calls] == [
        ".ddlcapture(%s, %s)", ".ddlcapture(%s, %s)", ".ddlscript_complete(%s)"]
    assert run.params == ("alter table t add c int;", None, "create index i on t (c);", None,
                          None)
    assert sync.params == ("_shop",) and "createevent(%s, 'SYNC')" in sync.query.seq[2].string
    assert sync.slonik == "sync (id = 1);"
    assert waiting.confirmers is None  # every active node
    assert waiting.slonik == ("wait for event (origin = 1, confirmed = all, wait on = 1, "
                              "timeout = 60);")
    assert "recording key 'k'" in run.description
    assert plan.slonik()[0] == ("execute script (sql = 'alter table t add c int;\n"
                                "create index i on t (c);', event node = 1);")


def test_plan_with_only_on_passes_the_node_list_and_waits_for_those_nodes():
    stmts = split_statements("create index i on t (c)")
    plan = build_plan(NS, "shop", 2, stmts, [2, 3], [2, 3], wait_timeout=None)
    run = plan.steps[0]
    assert [params for q, params in run.calls] == [("create index i on t (c)", "2,3"),
                                                   ("2,3",)]
    assert plan.steps[2].kind == WAIT and plan.steps[2].confirmers == [3]
    assert plan.steps[2].slonik is None
    assert run.slonik.endswith("event node = 2, execute only on = '2,3');")


def test_plan_on_a_single_node_does_not_wait():
    plan = build_plan(NS, "shop", 3, split_statements("select 1"), [3], [3])
    assert [s.kind for s in plan.steps] == [CALLBACK, CALLBACK]
    assert plan.steps[0].slonik.endswith("execute only on = 3);")
    assert len(plan.changes()) == 2


def test_slonik_text_with_a_file_and_quotes():
    stmts = [Statement(1, 1, "select 'a\\b';")]
    assert slonik_text(stmts, 1, None) == "execute script (sql = 'select ''a\\\\b'';', event node = 1);"
    assert slonik_text(stmts, 1, None, source="/srv/x.sql") == (
        "execute script (filename = '/srv/x.sql', event node = 1);")


def test_slonik_text_of_a_script_longer_than_a_slonik_literal_names_a_file():
    """slonik 2.2.11 aborts on a literal of ~600 characters: a long script is not inlined."""
    stmts = [Statement(n, n, "alter table t%d add column c%d integer not null default 0;" % (n, n))
             for n in range(1, 12)]
    text = slonik_text(stmts, 2, None)
    comment, command = text.split("\n")
    assert comment.startswith("# slonik 2.2 aborts on a string literal of more than 500 characters")
    assert command == "execute script (filename = 'script.sql', event node = 2);"
    assert slonik_text(stmts[:2], 2, None).startswith("execute script (sql = 'alter table t1")


# -- error messages ------------------------------------------------------------------------------

class FakeDiag:
    def __init__(self, message, internal_query=None, internal_position=None):
        self.message_primary = message
        self.internal_query = internal_query
        self.internal_position = internal_position


class FakeError(Exception):
    def __init__(self, diag):
        super(FakeError, self).__init__(diag.message_primary)
        self.diag = diag


class FakeCluster:
    queries = []

    class redactor:  # noqa: N801 - mimics the attribute
        @staticmethod
        def text(value):
            return value.replace("secret", "********")


def test_statement_error_names_statement_node_and_line():
    stmts = split_statements("select 1;\n\nalter table t\n  add colum x int;")
    exc = FakeError(FakeDiag('syntax error at or near "colum"', stmts[1].sql,
                             stmts[1].sql.index("colum") + 1))
    err = statement_error(FakeCluster(), 2, stmts[1], exc, "the script")
    assert str(err) == ('the script failed on node 2 at statement 2 (line 3 of the script): '
                        'alter table t\n  add colum x int;: syntax error at or near "colum" '
                        '(at line 4 of the script)')
    assert err.node == 2


def test_statement_error_line_with_leading_comments():
    stmts = split_statements("select 1; /* one\n /* nested */ two */ -- three\n\nalter tabel t;")
    assert stmts[1].line == 4
    exc = FakeError(FakeDiag('syntax error at or near "tabel"', stmts[1].sql,
                             stmts[1].sql.index("tabel") + 1))
    assert "(line 4 of the script)" in str(statement_error(FakeCluster(), 1, stmts[1], exc, "x"))
    assert str(statement_error(FakeCluster(), 1, stmts[1], exc, "x")).endswith(
        "(at line 4 of the script)")
    # Without a position (or for another query), no line of the error is claimed.
    other = FakeError(FakeDiag("boom", "select 2", 3))
    assert "at line" not in str(statement_error(FakeCluster(), 1, stmts[1], other, "x"))


def test_first_token_offset_skips_nested_comments():
    assert script_mod.first_token_offset(" /* a /* b */ c */ --x\n commit;") == 24
    assert transaction_control("/* a /* b */ c */ commit;") == "COMMIT"


def test_statement_error_for_added_statements_and_long_ones():
    stmt = Statement(4, None, "insert into x values ('" + "a" * 400 + "');")
    err = statement_error(FakeCluster(), 1, stmt, FakeError(FakeDiag("boom")), "it")
    assert "statement 4 (added to record the key): insert into x values ('aaa" in str(err)
    assert "...: boom" in str(err) and len(str(err)) < 400


def test_an_applied_key_plans_nothing_and_reports_where_it_is_missing():
    recorded = script_mod.KeyRecord("old", 1, None, "2026-01-01 00:00:00+00")
    # Node 4 could not be read: it is not reported as missing.
    elsewhere = {2: recorded, 3: None}
    plan, before, after, extra = script_mod.already_applied(
        "k1", recorded, "new", 1, [1, 2, 3, 4], {"event_node": 1}, elsewhere)
    assert not plan.steps and before == after and before["applied"] is True
    assert extra["missing_on"] == [3]
    assert "different script" in extra["warnings"][0]
    assert "not yet on node(s) 3" in extra["warnings"][1]
    elsewhere[3] = recorded
    extra = script_mod.already_applied("k1", recorded, "old", 1, [1, 2, 3], {}, elsewhere)[3]
    assert extra == {"missing_on": []}


# -- read, then decide ---------------------------------------------------------------------------

def script_read(key_record=None, elsewhere=None):
    return script_mod.ScriptRead(snapshot(origins=(1,)), "2.2.11", True, key_record,
                                 elsewhere or {})


def test_the_script_is_decided_from_what_was_read():
    planned, statements = script_mod.decide_script(
        "shop", NS, "alter table t add c int; -- @CLUSTERNAME@\n", script_read(), key="k")
    assert [s.line for s in statements] == [1, None, None, None]
    assert planned.extra["nodes"] == [1, 2, 3] and planned.extra["event_node"] == 1
    assert [s.kind for s in planned.plan.steps] == [CALLBACK, CALLBACK, WAIT]
    assert planned.before == {"key": "k", "applied": False}
    recorded = script_mod.KeyRecord(planned.extra["checksum"], 1, None, "2026-01-01")
    again, statements = script_mod.decide_script(
        "shop", NS, "alter table t add c int; -- @CLUSTERNAME@\n",
        script_read(recorded, {2: recorded, 3: recorded}), key="k")
    assert not again.plan and statements == [] and again.extra["missing_on"] == []
    assert "warnings" not in again.extra


# -- check mode's lock_timeout -------------------------------------------------------------------

@pytest.mark.parametrize("value, setting", [(5, "5000ms"), (0.25, "250ms"), (0, None),
                                            (None, None)])
def test_lock_timeout_setting(value, setting):
    assert script_mod.lock_timeout_setting(value) == setting


@pytest.mark.parametrize("value", [-1, "5s", True])
def test_bad_lock_timeouts_are_refused(value):
    with pytest.raises(SlonyError) as info:
        script_mod.lock_timeout_setting(value)
    assert "lock_timeout must be a number of seconds" in str(info.value)


def test_named_identifiers_fold_like_postgresql():
    assert script_mod.named_identifiers(
        'ALTER TABLE Public."Mixed""Case" add column x int;') == [
            'Mixed"Case', "add", "alter", "column", "int", "public", "table", "x"]


class LockNotAvailable(psycopg2.OperationalError):
    pgcode = "55P03"


class ValidationCluster(FakeCluster):
    """One node; statements mentioning ``locked`` time out on their lock."""

    def __init__(self, locked=None, holders=()):
        self.locked = locked
        self.holders = list(holders)
        self.fetched = []
        self.conn = FakeConnection(self.on_execute)

    def on_execute(self, query, params):
        if self.locked and params and self.locked in params[0]:
            raise LockNotAvailable("canceling statement due to lock timeout")

    def connection(self, node):
        return self.conn

    def fetch(self, node, query, params=None):
        self.fetched.append(params)
        return self.holders


def test_validation_sets_lock_timeout_first_and_rolls_back():
    cluster = ValidationCluster()
    stmts = split_statements("alter table t add c int;")
    script_mod.validate_on_node(cluster, 1, stmts, lock_timeout=2)
    # Check mode's sessions are read-only: the validation's own transaction is not.
    assert cluster.conn.executed[0] == ("set transaction read write", None)
    assert cluster.conn.executed[1] == ("set local lock_timeout = %s", ("2000ms",))
    assert cluster.conn.executed[-1] == ("select pg_temp.dany_slony_try(%s)",
                                         ("alter table t add c int;",))
    assert cluster.conn.rollbacks == 2  # before (a fresh transaction) and after
    cluster = ValidationCluster()
    script_mod.validate_on_node(cluster, 1, stmts, lock_timeout=0)
    assert not any("lock_timeout" in q for q, p in cluster.conn.executed)


def test_a_lock_timeout_in_check_mode_names_the_lock_and_who_holds_it():
    holder = script_mod.LockHolder("public", "customers", "AccessShareLock", 4242,
                                   "idle in transaction", "psql", 12)
    cluster = ValidationCluster(locked="customers", holders=[holder])
    stmts = split_statements("select 1;\nalter table public.customers add c int;")
    with pytest.raises(SlonyError) as info:
        script_mod.validate_on_node(cluster, 1, stmts, lock_timeout=5)
    message = str(info.value)
    assert message.startswith(
        "check mode: statement 2 (line 2 of the script) could not get its lock on "
        "public.customers on node 1 within lock_timeout (5s): AccessShareLock on "
        "public.customers held by pid 4242 (idle in transaction for 12s, application psql)")
    assert "Nothing was changed" in message and "alter table public.customers" in message
    assert info.value.node == 1 and cluster.conn.rollbacks == 2
    # The holders are looked up among the relations the statement names.
    assert "customers" in cluster.fetched[0][0] and "public" in cluster.fetched[0][0]
    # Without lock_timeout, a lock error is an error like any other.
    cluster = ValidationCluster(locked="customers")
    with pytest.raises(SlonyError) as info:
        script_mod.validate_on_node(cluster, 1, stmts, lock_timeout=0)
    assert "failed on node 1 at statement 2" in str(info.value)


def test_a_lock_timeout_without_a_known_holder_says_so():
    cluster = ValidationCluster(locked="orders")
    with pytest.raises(SlonyError) as info:
        script_mod.validate_on_node(cluster, 3, split_statements("drop table orders"), 1.5)
    assert "could not get a lock it needs on node 3 within lock_timeout (1.5s): another " \
        "session holds a conflicting lock" in str(info.value)
