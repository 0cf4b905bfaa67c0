"""Adding tables and sequences to a set that is already subscribed (temporary set ->
subscribe every receiver as for the set -> wait for the copies -> MERGE SET)."""

from __future__ import annotations

import time

from ansible_collections.dany.slony.plugins.module_utils.cluster import Cluster
from ansible_collections.dany.slony.plugins.module_utils.plan import Plan, execute_plan
from ansible_collections.dany.slony.plugins.module_utils.tables import PENDING_COMMENT, plan_tables

from ansible_run import run_module
from catalog_dump import assert_unchanged, dump, settled_dump
from test_bringup import CLUSTER, bring_up, common, converge

NEW_TABLE = """
create table public.coupons (id serial primary key, code text not null, percent int not null);
create sequence public.coupon_batch_seq;
create table billing.refunds (id int primary key, invoice_id int not null, amount numeric);
"""


def wait_equal(db, node, query, expected, timeout=60):
    deadline = time.monotonic() + timeout
    while db.query(node, query) != expected:
        assert time.monotonic() < deadline, f"node {node}: {query} never returned {expected}"
        time.sleep(0.2)


def test_tables_join_a_live_cascaded_set_and_their_rows_arrive(fresh_db, slons):
    db = fresh_db
    bring_up(db, slons, subscribers=(2, 3), providers={3: 2})
    for node in db.node_ids:  # the DDL exists everywhere (slony_script does this in real life)
        db.query(node, NEW_TABLE)
    db.query(1, "insert into public.coupons (code, percent) "
                "select 'C' || g, g % 50 from generate_series(1, 500) g")
    db.query(1, "select setval('public.coupon_batch_seq', 77)")

    run = converge(db, "slony_table", {"set_id": 1, "tables": ["public.coupons"]})
    steps = run.result["slonik"]
    assert "create set (id = 2, origin = 1" in steps
    assert "subscribe set (id = 2, provider = 1, receiver = 2, forward = yes);" in steps
    assert "subscribe set (id = 2, provider = 2, receiver = 3, forward = yes);" in steps
    assert "merge set (id = 1, add id = 2, origin = 1);" in steps
    converge(db, "slony_sequence", {"set_id": 1, "sequences": ["public.coupon_batch_seq"]})

    expected = db.query(1, "select id, code, percent from public.coupons order by id")
    assert len(expected) == 500
    for node in (1, 2, 3):
        assert db.query(node, 'select set_id from "_lab".sl_set order by 1') == [(1,)]
        assert db.query(node, 'select tab_set from "_lab".sl_table where tab_relname = %s',
                        ("coupons",)) == [(1,)]
    for node in (2, 3):
        assert db.query(node, "select id, code, percent from public.coupons order by id") == expected
        wait_equal(db, node, "select last_value from public.coupon_batch_seq", [(77,)])
    # And it keeps replicating as a member of set 1.
    db.query(1, "insert into public.coupons (code, percent) values ('LATE', 5)")
    expected = db.query(1, "select id, code from public.coupons order by id")
    for node in (2, 3):
        wait_equal(db, node, "select id, code from public.coupons order by id", expected)
    for r in (run,):
        assert db.lab.password not in r.everything()


def test_an_interrupted_live_addition_is_finished_by_the_next_run(fresh_db, slons):
    db = fresh_db
    bring_up(db, slons, subscribers=(2, 3))
    for node in db.node_ids:
        db.query(node, NEW_TABLE)
    db.query(1, "insert into billing.refunds select g, g, g * 1.5 from generate_series(1, 50) g")

    # Run the live addition only up to and including node 2's subscription of the
    # temporary set, as if the run had been killed there.
    with Cluster(CLUSTER, db.admin_conninfo) as cluster:
        plan = plan_tables(cluster, 1, tables=["billing.refunds"])[0]
        cut = [i for i, s in enumerate(plan.steps)
               if s.function == "subscribeSet" and s.args[2] == 2][0]
        execute_plan(cluster, Plan(plan.steps[:cut + 1]), timeout=60)
    temp = db.query(1, 'select set_id from "_lab".sl_set where set_comment = %s',
                    (PENDING_COMMENT % 1,))
    assert temp == [(2,)]

    # Node 2 copies the temporary set on its own meanwhile: compare once that is done.
    wait_equal(db, 2, 'select s.sub_active, exists (select 1 from "_lab".sl_setsync y '
                      'where y.ssy_setid = 2) from "_lab".sl_subscribe s '
                      'where s.sub_set = 2 and s.sub_receiver = 2', [(True, True)])
    before = settled_dump(db, CLUSTER)
    checked = run_module("slony_table", common(db, set_id=1, tables=["billing.refunds"]),
                         check=True)
    assert checked.changed
    assert_unchanged(dump(db, CLUSTER), before, "check mode changed the catalogs")
    finished = run_module("slony_table", common(db, set_id=1, tables=["billing.refunds"]))
    assert finished.changed
    slonik = finished.result["slonik"]
    assert "create set" not in slonik and "receiver = 2" not in slonik
    assert "subscribe set (id = 2, provider = 1, receiver = 3, forward = yes);" in slonik
    assert "merge set (id = 1, add id = 2, origin = 1);" in slonik
    again = run_module("slony_table", common(db, set_id=1, tables=["billing.refunds"]))
    assert not again.changed

    expected = db.query(1, "select * from billing.refunds order by id")
    for node in (1, 2, 3):
        assert db.query(node, 'select set_id from "_lab".sl_set') == [(1,)]
    for node in (2, 3):
        assert db.query(node, "select * from billing.refunds order by id") == expected
