"""Smoke tests of the lab and of the harness the other integration tests stand on."""

from __future__ import annotations

import psycopg2
import pytest

from lab import Lab, SlonError, make_conninfo, table_names

SAMPLE_TABLES = {
    "public.customers",
    "public.products",
    "public.orders",
    "public.settings",
    "public.audit_log",
    "public.events",
    "public.events_2024",
    "billing.invoices",
    "billing.payments",
}
PK_TABLES = {
    "public.customers",
    "public.products",
    "public.orders",
    "public.events",
    "public.events_2024",
    "billing.invoices",
    "billing.payments",
}
SAMPLE_SEQUENCES = {
    "public.customers_id_seq",
    "public.products_id_seq",
    "public.orders_id_seq",
    "public.invoice_number_seq",
    "billing.invoices_id_seq",
    "billing.payments_id_seq",
}


def test_every_node_accepts_the_password_over_loopback(lab: Lab):
    for node in lab.node_ids:
        rows = lab.query(
            node,
            "select host(inet_server_addr()), inet_server_port(), current_user, "
            "(select rolsuper from pg_roles where rolname = current_user), current_setting('fsync')",
        )
        assert rows == [("127.0.0.1", lab.port(node), lab.user, True, "off")]
        # scram-sha-256 really is enforced: a wrong password is refused.
        bad = make_conninfo(host="127.0.0.1", port=lab.port(node), dbname="postgres",
                            user=lab.user, password="not-the-password")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(bad, connect_timeout=5).close()


def test_sample_schema_is_on_every_node(lab: Lab):
    counts = {}
    for node in lab.node_ids:
        tables = table_names(lab.query(
            node,
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'p') and n.nspname in ('public', 'billing')",
        ))
        assert tables == SAMPLE_TABLES
        sequences = table_names(lab.query(
            node, "select schemaname, sequencename from pg_sequences where schemaname in ('public', 'billing')"))
        assert sequences == SAMPLE_SEQUENCES
        with_pk = table_names(lab.query(
            node,
            "select n.nspname, c.relname from pg_constraint k join pg_class c on c.oid = k.conrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where k.contype = 'p' and n.nspname in ('public', 'billing')",
        ))
        assert with_pk == PK_TABLES
        assert lab.query(node, "select relkind from pg_class where oid = 'public.events'::regclass") == [("p",)]
        assert lab.query(
            node, "select inhrelid::regclass::text from pg_inherits where inhparent = 'public.events'::regclass"
        ) == [("events_2024",)]
        counts[node] = lab.query(
            node,
            "select (select count(*) from public.customers), (select count(*) from public.orders), "
            "(select count(*) from billing.invoices), (select count(*) from public.events)",
        )
    # Same rows everywhere, so that replicated data can be compared node by node.
    assert len(set(map(tuple, counts.values()))) == 1
    assert counts[1] == [(3, 4, 2, 2)]


def test_key_cases_of_the_sample_schema(lab: Lab):
    for node in lab.node_ids:
        # public.audit_log: no primary key and no unique index at all.
        assert lab.query(
            node,
            "select count(*) from pg_index where indrelid = 'public.audit_log'::regclass "
            "and (indisprimary or indisunique)",
        ) == [(0,)]
        assert lab.query(
            node, "select count(*) from pg_index where indrelid = 'public.audit_log'::regclass") == [(1,)]
        # public.settings: only a unique index on NOT NULL columns.
        assert lab.query(
            node,
            "select i.indexrelid::regclass::text, i.indisprimary, i.indisunique, "
            "bool_and(a.attnotnull) from pg_index i "
            "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey) "
            "where i.indrelid = 'public.settings'::regclass group by 1, 2, 3",
        ) == [("settings_name_key", False, True, True)]
        # The standalone sequence belongs to no column.
        assert lab.query(
            node,
            "select count(*) from pg_depend where objid = 'public.invoice_number_seq'::regclass "
            "and deptype in ('a', 'i')",
        ) == [(0,)]


def test_slony_server_library_loads_on_every_node(lab: Lab):
    for node in lab.node_ids:
        conn = lab.connect(node)
        try:
            with conn.cursor() as cur:
                cur.execute("load '$libdir/slony1_funcs.2.2.11'")
                cur.execute("select setting from pg_settings where name = 'server_version_num'")
                assert cur.fetchone()[0].startswith("15")
        finally:
            conn.close()


def test_template_is_a_template_with_the_sample_schema(lab: Lab):
    for node in lab.node_ids:
        assert lab.query(
            node, "select datistemplate from pg_database where datname = %s", (lab.template,),
            dbname="postgres") == [(True,)]


def test_fresh_databases_are_isolated(lab: Lab, make_fresh_db):
    first = make_fresh_db("first")
    second = make_fresh_db("second")
    assert first.dbname != second.dbname
    assert first.create_seconds < 30
    for node in lab.node_ids:
        assert first.exists_on(node) and second.exists_on(node)
        assert first.conninfo(node) == first.admin_conninfo[node]
        assert f"port={lab.port(node)}" in first.conninfo(node)
        assert f"dbname={first.dbname}" in first.conninfo(node)
        assert first.scalar(node, "select current_database()") == first.dbname

    first.query(2, "insert into public.customers (name, email) values ('Only', 'only@example.org')")
    assert first.scalar(2, "select count(*) from public.customers") == 4
    assert first.scalar(1, "select count(*) from public.customers") == 3
    assert second.scalar(2, "select count(*) from public.customers") == 3
    assert lab.query(2, "select count(*) from public.customers") == [(3,)]

    first.drop()
    assert not any(first.exists_on(node) for node in lab.node_ids)
    assert all(second.exists_on(node) for node in lab.node_ids)


def test_slon_refuses_a_database_without_the_cluster_schema(fresh_db, slons):
    daemon = slons[1]
    with pytest.raises(SlonError, match=r"sl_local_node_id"):
        daemon.start(timeout=15)
    # slon itself would retry every 10 s forever; the harness killed it.
    assert not daemon.is_running()
    assert daemon.live_processes() == []
    assert any("sl_local_node_id" in line for line in daemon.errors())


def test_slons_replicate_events_and_die_on_kill(fresh_db, slons):
    # A minimal cluster built by slonik, the reference: nodes 1 and 2, paths both ways.
    script = [
        "init cluster (id = 1, comment = 'node 1');",
        "store node (id = 2, comment = 'node 2', event node = 1);",
        f"store path (server = 1, client = 2, conninfo = '{fresh_db.conninfo(1)}');",
        f"store path (server = 2, client = 1, conninfo = '{fresh_db.conninfo(2)}');",
    ]
    fresh_db.slonik("\n".join(script))
    slons.start(1, 2)
    assert slons.running() == [1, 2]

    seqno = fresh_db.sync(1)
    fresh_db.wait_confirmed(1, seqno, receivers=[2], timeout=30)
    assert fresh_db.confirmed_by(1, seqno) == {2}
    schema = fresh_db.cluster_schema()
    # The slon of node 2 holds its node lock while it runs.
    assert fresh_db.scalar(2, f"select count(*) from {schema}.sl_nodelock where nl_nodeid = 2") >= 1

    assert len(slons[2].live_processes()) == 2  # watchdog and worker
    slons.kill(2)
    assert slons.running() == [1]
    assert slons[2].live_processes() == []  # neither the watchdog nor its worker survived
    assert slons[1].stop() == 0
    assert "running scheduler mainloop" in slons[1].log()


def test_a_node_server_can_be_stopped_and_started(lab: Lab, fresh_db):
    lab.stop_server(3)
    try:
        assert not lab.server_running(3)
        assert not lab.is_reachable(3)
        assert lab.is_reachable(1)
    finally:
        lab.start_server(3)
    assert lab.server_running(3)
    assert fresh_db.scalar(3, "select count(*) from public.products") == 3
