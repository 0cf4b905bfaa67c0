# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning of slony_table / slony_sequence, without a database."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

try:
    import ansible_collections.dany.slony  # noqa: F401 pylint: disable=unused-import
except ImportError:  # run from a plain checkout: use the tree scripts/bootstrap.sh links
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".build",
                                    "collections"))

from ansible_collections.dany.slony.plugins.module_utils import tables
from ansible_collections.dany.slony.plugins.module_utils.catalog import (
    Sequence, Set, Snapshot, Subscription, Table)
from ansible_collections.dany.slony.plugins.module_utils.errors import SlonyError
from ansible_collections.dany.slony.plugins.module_utils.names import split_qualified_name
from ansible_collections.dany.slony.plugins.module_utils.plan import EVENT, WAIT, RunContext
from ansible_collections.dany.slony.plugins.module_utils.tables import (
    PENDING_COMMENT, Pending, _short_list,
    NO_IDS, SEQUENCES, TABLES, IdUsage, IdUser, candidate, fq_name, merge_ready_wait,
    normalize_entries, plan_members, plan_tables, problems_error, quote_part, read_members)
from fakes import FakeClock
from scripted import ScriptedCluster

NS = "_shop"


def slon_quote_input(text):
    """Python model of Slony's slon_quote_input() (slony1_funcs.sql), to check fq_name."""
    length = len(text)
    if text.startswith('"'):
        i = 1
        while i < length:
            if text[i] != '"':
                i += 1
            else:
                i += 1
                if i >= length or text[i] != '"':
                    break
                i += 1
    else:
        i = text.find(".")
        i = length if i < 0 else i
    if i < length and text[i] == ".":
        nsp, rel = text[:i], text[i + 1:]
        if not nsp.startswith('"'):
            nsp = '"%s"' % nsp.replace('"', '""')
        if not rel.startswith('"'):
            rel = '"%s"' % rel.replace('"', '""')
        return nsp + "." + rel
    return text if text.startswith('"') else '"%s"' % text.replace('"', '""')


def slon_quote_brute(text):
    return '"%s"' % text.replace('"', '""')


DEFAULT_PK = object()


def table(schema, name, index=None, pk=DEFAULT_PK, **extra):
    """A resolved ordinary table, with primary key <name>_pkey unless ``pk`` says otherwise."""
    fields = dict(index=index, schema=schema, name=name, relkind="r",
                  pk="%s_pkey" % name if pk is DEFAULT_PK else pk, unique_keys=[])
    fields.update(extra)
    return candidate(**fields)


def plan(entries=(), candidates=(), members=(), receivers=(), id_usage=NO_IDS, kind=TABLES,
         **kwargs):
    normalized, problems = normalize_entries(kind, list(entries))
    return plan_members(kind, NS, 1, 1, normalized, list(candidates), list(members),
                        list(receivers), id_usage, problems=problems, **kwargs)


def event_calls(p):
    return [(s.function, s.args) for s in p.steps if s.kind == EVENT]


# -- names -------------------------------------------------------------------------------

@pytest.mark.parametrize("schema, name", [
    ("public", "orders"), ("public", "MixedCase"), ("Sales", "Orders"), ("public", "odd.name"),
    ("we.ird", "t"), ("public", 'has"quote'), ('"lead', "x"), ("public", '"lead'),
    ("public", "with space"), ("public", "$dollar"), ("public", "1digit"),
])
def test_fq_name_is_read_back_exactly_by_slony(schema, name):
    text = fq_name(schema, name)
    assert slon_quote_input(text) == slon_quote_brute(schema) + "." + slon_quote_brute(name)
    assert split_qualified_name(text) == (schema, name)


def test_quote_part_keeps_plain_identifiers_bare_whatever_their_case():
    assert quote_part("orders") == "orders"
    assert quote_part("MixedCase") == "MixedCase"
    assert quote_part("odd.name") == '"odd.name"'
    assert quote_part('a"b') == '"a""b"'


# -- input -------------------------------------------------------------------------------

def test_normalize_entries_accepts_strings_and_dicts():
    entries, problems = normalize_entries(TABLES, [
        "public.orders", {"name": '"Sales"."Big Table"', "id": "7", "key": "big_uk",
                          "comment": "c"}])
    assert problems == []
    assert entries[0] == ("public", "orders", None, None, None)
    assert entries[1] == ("Sales", "Big Table", 7, "big_uk", "c")


@pytest.mark.parametrize("entry, message", [
    ("orders", "must be schema-qualified"),
    ({"id": 1}, "needs a name"),
    ({"name": "public.a", "colour": "red"}, "unknown key(s) colour"),
    ({"name": "public.a", "id": 0}, "positive 32-bit integer"),
    ({"name": "public.a", "id": "x"}, "is not an integer"),
    ({"name": "public.a", "id": True}, "is not an integer"),
    ({"name": "public.a", "key": ""}, "name of an index"),
    (42, "must be a string"),
])
def test_normalize_entries_rejects_malformed_input(entry, message):
    with pytest.raises(SlonyError) as err:
        normalize_entries(TABLES, [entry])
    assert message in str(err.value)


def test_sequences_have_no_key():
    with pytest.raises(SlonyError) as err:
        normalize_entries(SEQUENCES, [{"name": "public.s", "key": "k"}])
    assert "unknown key(s) key" in str(err.value)


def test_duplicates_are_problems_not_immediate_errors():
    entries, problems = normalize_entries(TABLES, [
        {"name": "public.a", "id": 5}, {"name": "public.b", "id": 5}, "public.a"])
    assert len(entries) == 2
    assert problems == ["id 5 is given to both public.a and public.b",
                        "public.a is listed twice (tables[0] and tables[2])"]


# -- adding ------------------------------------------------------------------------------

def test_adds_allocate_ids_in_name_order_skipping_explicit_ones():
    p, before, after, dummy_extra = plan(
        entries=["public.b", {"name": "public.c", "id": 11}],
        candidates=[table("public", "b", index=0), table("public", "c", index=1),
                    table("public", "a"), table("public", "Z")],
        id_usage=IdUsage(10, []))
    assert event_calls(p) == [
        ("createEvent", (NS, "SYNC")),
        ("setAddTable", (1, 12, "public.Z", "Z_pkey", "replicated table")),
        ("setAddTable", (1, 13, "public.a", "a_pkey", "replicated table")),
        ("setAddTable", (1, 14, "public.b", "b_pkey", "public.b")),
        ("setAddTable", (1, 11, "public.c", "c_pkey", "public.c")),
    ]
    assert p.steps[-1].kind == WAIT and p.steps[-1].node == 1
    assert before == []
    assert [v["name"] for v in after] == ["public.Z", "public.a", "public.b", "public.c"]
    assert after[3] == {"id": 11, "name": "public.c", "key": "c_pkey", "comment": "public.c"}


def test_given_key_and_comment_are_used_and_shown_as_slonik():
    p, dummy, after, dummy_extra = plan(
        entries=[{"name": "public.settings", "key": "settings_name_key", "comment": "it's"}],
        candidates=[table("public", "settings", index=0, pk=None, key_found=True,
                          key_unique=True, key_valid=True, key_partial=False,
                          key_expression=False, key_nullable=[])])
    assert event_calls(p)[1] == ("setAddTable",
                                 (1, 1, "public.settings", "settings_name_key", "it's"))
    assert p.slonik() == [
        "set add table (set id = 1, origin = 1, id = 1, fully qualified name = "
        "'public.settings', key = 'settings_name_key', comment = 'it''s');"]


def test_sequences_use_their_own_functions():
    p, dummy, after, dummy_extra = plan(
        kind=SEQUENCES, entries=["public.s"],
        candidates=[candidate(index=0, schema="public", name="s", relkind="S"),
                    candidate(schema="public", name="t", relkind="S")],
        id_usage=IdUsage(3, []))
    assert event_calls(p)[1:] == [
        ("setAddSequence", (1, 4, "public.s", "public.s")),
        ("setAddSequence", (1, 5, "public.t", "replicated sequence")),
    ]
    assert after == [{"id": 4, "name": "public.s", "comment": "public.s"},
                     {"id": 5, "name": "public.t", "comment": "replicated sequence"}]


def test_nothing_to_do_when_every_table_is_in_the_set():
    members = [Table(3, 1, "public", "a", "a_pkey", "public.a")]
    p, before, after, dummy_extra = plan(
        entries=["public.a"],
        candidates=[table("public", "a", index=0, member_id=3, member_set=1,
                          member_key="a_pkey")],
        members=members)
    assert not p
    assert before == after == [{"id": 3, "name": "public.a", "key": "a_pkey",
                                "comment": "public.a"}]


def test_a_member_without_pk_is_fine_when_no_key_is_asked_for():
    members = [Table(3, 1, "public", "s", "s_uk", "public.s")]
    p, before, after, dummy_extra = plan(
        entries=["public.s"],
        candidates=[table("public", "s", index=0, pk=None, member_id=3, member_set=1,
                          member_key="s_uk")], members=members)
    assert not p


# -- validation --------------------------------------------------------------------------

def test_every_problem_is_reported_at_once_and_nothing_is_planned():
    entries = ["public.missing", "public.parent", "public.v", "public.nokey",
               {"name": "public.nuk", "key": "nuk_key"}, "public.other",
               {"name": "public.dup", "id": 9}, {"name": "public.dup2", "id": 9},
               {"name": "public.idused", "id": 4}]
    candidates = [
        candidate(index=0, schema="public", name="missing"),
        table("public", "parent", index=1, relkind="p"),
        table("public", "v", index=2, relkind="v"),
        table("public", "nokey", index=3, pk=None, unique_keys=["nokey_uk"]),
        table("public", "nuk", index=4, pk=None, key_found=True, key_unique=True,
              key_valid=True, key_partial=False, key_expression=False, key_nullable=["code"]),
        table("public", "other", index=5, member_id=2, member_set=7),
        table("public", "dup", index=6),
        table("public", "dup2", index=7),
        table("public", "idused", index=8),
    ]
    users = [IdUser(2, 4, 3, "billing", "x")]
    with pytest.raises(SlonyError) as err:
        plan(entries=entries, candidates=candidates, id_usage=IdUsage(0, users))
    text = str(err.value)
    assert text.startswith("Tables of set 1: nothing was changed, because 8 problems: (1) ")
    for expected in [
            "id 9 is given to both public.dup and public.dup2",
            "public.missing does not exist",
            "public.parent is a partitioned table, not an ordinary table (Slony replicates "
            "its partitions: add those instead)",
            "public.v is a view, not an ordinary table",
            "public.nokey has no primary key: give its key",
            "key: nokey_uk",
            "key nuk_key of public.nuk has nullable column(s) code",
            "public.other is already in set 7 (as table id 2)",
            "id 4 (wanted for public.idused) is already used by table billing.x of set 3 on "
            "node 2"]:
        assert expected in text


@pytest.mark.parametrize("fields, message", [
    (dict(key_found=False, unique_keys=["t_pkey", "t_uk"]),
     "public.t has no index named k (usable keys: t_pkey, t_uk)"),
    (dict(key_found=True, key_unique=False), "key k of public.t is not a unique index"),
    (dict(key_found=True, key_unique=True, key_valid=False), "is an invalid index"),
    (dict(key_found=True, key_unique=True, key_valid=True, key_partial=True),
     "is a partial index"),
    (dict(key_found=True, key_unique=True, key_valid=True, key_partial=False,
          key_expression=True), "is an expression index"),
])
def test_bad_keys(fields, message):
    with pytest.raises(SlonyError) as err:
        plan(entries=[{"name": "public.t", "key": "k"}],
             candidates=[table("public", "t", index=0, **fields)])
    assert message in str(err.value)


def test_no_key_at_all():
    with pytest.raises(SlonyError) as err:
        plan(candidates=[table("public", "log", pk=None)])
    assert "public.log has no primary key and no unique index on NOT NULL columns" \
        in str(err.value)


def test_system_and_slony_catalogs_are_refused():
    with pytest.raises(SlonyError) as err:
        plan(entries=["_shop.sl_table", "pg_catalog.pg_class"],
             candidates=[table("_shop", "sl_table", index=0),
                         table("pg_catalog", "pg_class", index=1)])
    assert "_shop.sl_table belongs to Slony's own catalog" in str(err.value)
    assert "pg_catalog.pg_class belongs to PostgreSQL's system catalog" in str(err.value)


def test_a_sequence_list_refuses_tables():
    with pytest.raises(SlonyError) as err:
        plan(kind=SEQUENCES, entries=["public.t"],
             candidates=[candidate(index=0, schema="public", name="t", relkind="r")])
    assert "public.t is an ordinary table, not a sequence" in str(err.value)


def test_member_with_another_key_or_id_is_an_error():
    members = [Table(3, 1, "public", "a", "a_pkey", "public.a")]
    with pytest.raises(SlonyError) as err:
        plan(entries=[{"name": "public.a", "key": "a_uk", "id": 8}],
             candidates=[table("public", "a", index=0, member_id=3, member_set=1,
                               member_key="a_pkey")], members=members)
    assert "public.a is in set 1 with key a_pkey, not a_uk" in str(err.value)
    assert "public.a is in set 1 with id 3, not 8" in str(err.value)


def test_adding_to_a_subscribed_set_goes_through_a_temporary_set():
    subs = [Subscription(1, 1, 2, True, True), Subscription(1, 2, 3, False, True)]
    p, before, after, dummy_extra = plan(entries=["public.a"], candidates=[table("public", "a", index=0)],
                                         receivers=[2, 3], subscriptions=subs, new_set_id=7)
    assert event_calls(p) == [
        ("storeSet", (7, PENDING_COMMENT % 1)),
        ("createEvent", (NS, "SYNC")),
        ("setAddTable", (7, 1, "public.a", "a_pkey", "public.a")),
        ("subscribeSet", (7, 1, 2, True, False)),
        ("subscribeSet", (7, 2, 3, False, False)),   # same provider and forward as set 1
        ("mergeSet", (1, 7)),
    ]
    kinds = [s.kind for s in p.steps]
    # Node 3 is fed by node 2: node 2's copy must be done before node 3 subscribes.
    sub3 = [s.args for s in p.steps].index((7, 2, 3, False, False))
    assert p.steps[sub3 - 1].kind == WAIT and "node 2 has copied set 7" in p.steps[sub3 - 1].description
    merge = kinds.index(EVENT, sub3 + 1)
    waits = [s.description for s in p.steps[sub3 + 1:merge]]
    assert any("node 2 has copied set 7 from node 1" in w for w in waits)
    assert any("node 3 has copied set 7 from node 2" in w for w in waits)
    assert any("no subscription of set 1 or 7 in progress" in w for w in waits)
    assert p.steps[-1].kind == WAIT
    assert [v["name"] for v in after] == ["public.a"] and before == []
    assert "merge set (id = 1, add id = 7, origin = 1);" in p.slonik()


def test_an_interrupted_live_addition_is_finished_not_restarted():
    subs = [Subscription(1, 1, 2, True, True), Subscription(1, 1, 3, True, True)]
    pending = Pending(7, {2: 1})   # node 2 already subscribed to temporary set 7
    p, before, after, dummy_extra = plan(entries=["public.a"],
                                         candidates=[table("public", "a", index=0, member_id=4, member_set=7,
                                                           member_key="a_pkey")],
                                         receivers=[2, 3], subscriptions=subs, pending=pending, new_set_id=8)
    assert event_calls(p) == [("subscribeSet", (7, 1, 3, True, False)), ("mergeSet", (1, 7))]
    assert [v["name"] for v in after] == ["public.a"] and before == []


def test_new_objects_while_a_subscribed_temporary_set_is_pending_get_a_second_cycle():
    subs = [Subscription(1, 1, 2, True, True)]
    p, dummy, dummy2, dummy_extra = plan(entries=["public.b"], candidates=[table("public", "b", index=0)],
                                         receivers=[2], subscriptions=subs, pending=Pending(7, {2: 1}),
                                         new_set_id=8)
    assert [c[0] for c in event_calls(p)] == ["mergeSet", "storeSet", "createEvent",
                                              "setAddTable", "subscribeSet", "mergeSet"]
    assert event_calls(p)[0] == ("mergeSet", (1, 7))
    assert event_calls(p)[-1] == ("mergeSet", (1, 8))


def test_short_list():
    names = ["public.t%02d" % i for i in range(12)]
    assert _short_list(names).endswith("public.t09 and 2 more")
    assert _short_list(names[:3]) == "public.t00, public.t01, public.t02"


def test_missing_schemas_only_matter_when_adding():
    with pytest.raises(SlonyError) as err:
        plan(missing_schemas=["Nope"])
    assert "schema Nope does not exist" in str(err.value)
    p, dummy, dummy2, dummy_extra = plan(missing_schemas=["Nope"], state="absent")
    assert not p


def test_problems_error_single_and_many():
    assert str(problems_error("tables", 2, ["x"])) == \
        "Tables of set 2: nothing was changed, because x"
    assert str(problems_error("sequences", 2, ["x", "y"])) == \
        "Sequences of set 2: nothing was changed, because 2 problems: (1) x; (2) y"


# -- dropping ----------------------------------------------------------------------------

def test_absent_drops_only_members_of_this_set_even_on_a_subscribed_set():
    members = [Table(3, 1, "public", "a", "a_pkey", "public.a"),
               Table(4, 1, "public", "gone", "gone_pkey", "public.gone")]
    p, before, after, dummy_extra = plan(
        entries=["public.a", "public.gone", "public.elsewhere", "public.nothere"],
        candidates=[table("public", "a", index=0, member_id=3, member_set=1),
                    candidate(index=1, schema="public", name="gone"),
                    table("public", "elsewhere", index=2, member_id=9, member_set=5),
                    table("public", "nothere", index=3)],
        members=members, receivers=[2], state="absent")
    assert event_calls(p) == [("setDropTable", (3,)), ("setDropTable", (4,))]
    assert p.slonik() == ["set drop table (origin = 1, id = 3);",
                          "set drop table (origin = 1, id = 4);"]
    assert [v["name"] for v in before] == ["public.a", "public.gone"]
    assert after == []


def test_absent_with_nothing_in_the_set_is_a_no_op():
    p, before, after, dummy_extra = plan(entries=["public.a"], candidates=[table("public", "a", index=0)],
                                         state="absent")
    assert not p and before == [] and after == []


def test_exclusive_drops_the_others_first_then_adds():
    members = [Table(3, 1, "public", "keep", "keep_pkey", "c"),
               Table(4, 1, "public", "old", "old_pkey", "c"),
               Table(5, 1, "public", "older", "older_pkey", "c")]
    p, before, after, dummy_extra = plan(
        entries=["public.keep", "public.new"],
        candidates=[table("public", "keep", index=0, member_id=3, member_set=1),
                    table("public", "new", index=1)],
        members=members, exclusive=True, id_usage=IdUsage(5, []))
    assert event_calls(p) == [
        ("setDropTable", (4,)), ("setDropTable", (5,)), ("createEvent", (NS, "SYNC")),
        ("setAddTable", (1, 6, "public.new", "new_pkey", "public.new"))]
    assert [v["name"] for v in before] == ["public.keep", "public.old", "public.older"]
    assert [v["name"] for v in after] == ["public.keep", "public.new"]


def test_exclusive_sequences():
    members = [Sequence(1, 1, "public", "s1", "c"), Sequence(2, 1, "public", "s2", "c")]
    p, before, after, dummy_extra = plan(
        kind=SEQUENCES, entries=["public.s2"],
        candidates=[candidate(index=0, schema="public", name="s2", relkind="S", member_id=2,
                              member_set=1)],
        members=members, exclusive=True)
    assert event_calls(p) == [("setDropSequence", (1,))]
    assert after == [{"id": 2, "name": "public.s2", "comment": "c"}]


# -- reading, then deciding ------------------------------------------------------------------

class ReadCluster:
    namespace = NS


@pytest.fixture
def origin_catalog(monkeypatch):
    """Set 1 on node 1 with table public.a; resolve_candidates and read_id_usage are
    scripted, and every read is recorded."""
    state = {"candidates": [], "reads": []}
    snap = Snapshot(1, 1, sets=[Set(1, 1, None, "s"), Set(4, 1, None, "other")],
                    tables=[Table(3, 1, "public", "a", "a_pkey", "public.a")],
                    subscriptions=[Subscription(1, 1, 2, True, True)])
    monkeypatch.setattr(tables, "locate_set", lambda cluster, set_id, origin: (
        state["reads"].append("locate") or (1, snap, {1: snap})))
    monkeypatch.setattr(tables, "resolve_candidates", lambda *args: (
        state["reads"].append("resolve") or (list(state["candidates"]), [])))
    monkeypatch.setattr(tables, "read_id_usage", lambda cluster, kind, origin, snaps, ids: (
        state["reads"].append(("ids", list(ids))) or IdUsage(10, [])))
    return state


def test_the_ids_in_use_are_read_before_deciding_only_when_something_may_be_added(
        origin_catalog):
    origin_catalog["candidates"] = [table("public", "a", index=0, member_id=3, member_set=1,
                                          member_key="a_pkey")]
    planned = plan_tables(ReadCluster(), 1, tables=["public.a"])
    assert not planned.plan and planned.extra == {"origin": 1}
    assert origin_catalog["reads"] == ["locate", "resolve"]

    origin_catalog["reads"][:] = []
    origin_catalog["candidates"].append(table("public", "b", index=1))
    planned = plan_tables(ReadCluster(), 1, tables=["public.a", {"name": "public.b", "id": 12}])
    assert origin_catalog["reads"] == ["locate", "resolve", ("ids", [12])]
    # Live: set 1 is subscribed, so public.b goes through temporary set 5 (max set id + 1).
    assert ("storeSet", (5, PENDING_COMMENT % 1)) in event_calls(planned.plan)
    assert ("setAddTable", (5, 12, "public.b", "b_pkey", "public.b")) in event_calls(planned.plan)


def test_dropping_reads_no_ids(origin_catalog):
    origin_catalog["candidates"] = [table("public", "b", index=0)]
    facts = read_members(ReadCluster(), TABLES, 1, None, [], state="absent")
    assert facts.id_usage == NO_IDS and facts.pending is None
    assert facts.receivers == [2] and facts.new_set_id == 5
    assert not plan_tables(ReadCluster(), 1, tables=["public.b"], state="absent").plan
    assert all(read[0] != "ids" for read in origin_catalog["reads"])


# -- the MERGE SET precondition, with a fake clock --------------------------------------------

def in_progress_cluster(answers, slon=None):
    answers = list(answers)
    return ScriptedCluster([("isSubscriptionInProgress", lambda node, params: [
        (answers[0] if len(answers) == 1 else answers.pop(0),)])], slon=slon)


def test_merge_ready_wait_honours_the_timeout_and_says_what_is_pending():
    step = merge_ready_wait(1, 1, 7)
    assert step.kind == WAIT and step.required and step.node == 1
    cluster, clock = in_progress_cluster([True], slon={1: False}), FakeClock()
    with pytest.raises(SlonyError) as info:
        step.run(cluster, step, RunContext(timeout=6, clock=clock))
    assert clock.waited == pytest.approx(6)
    assert str(info.value) == (
        "timed out after 6s waiting for node 1 to see the subscriptions of sets 1 and 7 "
        "complete; behind: node 1 (isSubscriptionInProgress(1) or (7) still true; slon not "
        "running)")
    assert info.value.node == 1


def test_merge_ready_wait_ends_as_soon_as_nothing_is_in_progress():
    step = merge_ready_wait(1, 1, 7)
    cluster, clock = in_progress_cluster([True, True, False]), FakeClock()
    step.run(cluster, step, RunContext(timeout=6, clock=clock))
    assert cluster.count("isSubscriptionInProgress") == 3 and len(clock.sleeps) == 2
    assert cluster.fetches[0][2] == (1, 7)


# -- SET MOVE TABLE / SEQUENCE ----------------------------------------------------------

def _in_set_2(**extra):
    return table("public", "prices", index=0, member_id=7, member_set=2,
                 member_key="prices_pkey", member_comment="public.prices", **extra)


def test_a_table_of_another_set_is_refused_unless_move():
    with pytest.raises(SlonyError) as info:
        plan(entries=["public.prices"], candidates=[_in_set_2()])
    assert "public.prices is already in set 2 (as table id 7); move=true moves it" in str(info.value)


def test_move_waits_for_both_sets_then_moves_by_id():
    from ansible_collections.dany.slony.plugins.module_utils.tables import OtherSet
    planned = plan(entries=["public.prices"], candidates=[_in_set_2()], receivers=[2, 3],
                   move=True, other_sets={2: OtherSet(1, [3, 2])})
    steps = planned.plan.steps
    assert [(s.kind, s.function, s.args) for s in steps] == [
        ("wait", None, ()), (EVENT, "setMoveTable", (7, 1)), ("wait", None, ())]
    assert steps[0].required and "no subscription of set 1 or 2 in progress" in steps[0].description
    assert planned.plan.slonik() == ["set move table (origin = 1, id = 7, new set = 1);"]
    assert planned.before == [{"id": 7, "name": "public.prices", "key": "prices_pkey",
                               "comment": "public.prices", "set": 2}]
    assert planned.after[0]["set"] == 1


def test_move_is_refused_between_sets_of_other_origins_or_subscribers():
    from ansible_collections.dany.slony.plugins.module_utils.tables import OtherSet
    with pytest.raises(SlonyError) as info:
        plan(entries=["public.prices"], candidates=[_in_set_2()], receivers=[2, 3], move=True,
             other_sets={2: OtherSet(1, [2])})
    assert ("public.prices is in set 2, subscribed by node(s) 2, and set 1 by node(s) 2, 3: "
            "Slony moves a table only between sets with the same subscribers") in str(info.value)
    with pytest.raises(SlonyError) as info:
        plan(entries=["public.prices"], candidates=[_in_set_2()], move=True,
             other_sets={2: OtherSet(4, [])})
    assert "public.prices is in set 2, whose origin is node 4, not node 1" in str(info.value)


def test_a_moved_sequence_uses_set_move_sequence():
    from ansible_collections.dany.slony.plugins.module_utils.tables import OtherSet
    seq = candidate(index=0, schema="public", name="s", relkind="S", member_id=4, member_set=2,
                    member_comment="public.s")
    planned = plan(entries=["public.s"], candidates=[seq], kind=SEQUENCES, move=True,
                   other_sets={2: OtherSet(1, [])})
    assert event_calls(planned.plan) == [("setMoveSequence", (4, 1))]
