"""Catalog dumps used to prove that check mode and failed runs change nothing.

Compare two dumps with :func:`assert_unchanged`, not ``==``: slon's cleanup deletes the
events every node has confirmed (configuration events included) whenever it runs, so an
event missing later is slon's doing; what a run must not do is add one."""

from __future__ import annotations

import time

# sl_listen is left out: each slon rebuilds it on its own (RebuildListenEntries) as events
# arrive, so it may change between two dumps without anybody changing anything.
CATALOG_QUERIES = {
    "sl_node": "select no_id, no_active, no_comment, no_failed from {ns}.sl_node order by 1",
    "sl_path": "select pa_server, pa_client, pa_conninfo, pa_connretry from {ns}.sl_path order by 1, 2",
    "sl_set": "select set_id, set_origin, set_locked, set_comment from {ns}.sl_set order by 1",
    "sl_table": ("select tab_id, tab_set, tab_nspname, tab_relname, tab_idxname, tab_comment"
                 " from {ns}.sl_table order by 1"),
    "sl_sequence": ("select seq_id, seq_set, seq_nspname, seq_relname, seq_comment"
                    " from {ns}.sl_sequence order by 1"),
    "sl_subscribe": ("select sub_set, sub_provider, sub_receiver, sub_forward, sub_active"
                     " from {ns}.sl_subscribe order by 1, 3"),
    # SYNC events come from the slons all the time; every other event is a change.
    "config_events": ("select ev_origin, ev_seqno, ev_type from {ns}.sl_event"
                      " where ev_type <> 'SYNC' order by 1, 2"),
    "triggers": ("select c.relname, t.tgname, t.tgenabled from pg_trigger t"
                 " join pg_class c on c.oid = t.tgrelid"
                 " where not t.tgisinternal order by 1, 2"),
}

# What a differential comparison with slonik-built clusters looks at.
DIFFERENTIAL_TABLES = ("sl_node", "sl_path", "sl_set", "sl_table", "sl_sequence", "sl_subscribe")


def dump(db, cluster: str, tables=tuple(CATALOG_QUERIES)) -> dict:
    """{node: {catalog: rows}}; a node without the cluster schema dumps as None."""
    ns = '"_%s"' % cluster
    out = {}
    for node in db.node_ids:
        has = db.scalar(node, "select count(*) from pg_namespace where nspname = %s",
                        ("_" + cluster,))
        if not has:
            out[node] = None
            continue
        out[node] = {name: db.query(node, CATALOG_QUERIES[name].format(ns=ns)) for name in tables}
    return out


def settled_dump(db, cluster: str, interval: float = 0.3, timeout: float = 60) -> dict:
    """A dump taken once the slons have stopped changing the catalogs (two identical dumps
    in a row), so that a later comparison only sees what the test itself changed."""
    deadline = time.monotonic() + timeout
    last = dump(db, cluster)
    while True:
        time.sleep(interval)
        current = dump(db, cluster)
        if current == last or time.monotonic() > deadline:
            return current
        last = current


# Catalogs in which slon deletes rows on its own (cleanupEvent): only new rows count.
EVENT_CATALOGS = ("config_events",)


def differences(before: dict, after: dict) -> list[str]:
    """What changed from dump ``before`` to dump ``after``: a catalog that differs, or a
    configuration event that is new (events that are gone were cleaned up by slon)."""
    out = []
    for node in sorted(set(before) | set(after)):
        old, new = before.get(node), after.get(node)
        if old is None or new is None:
            if old != new:
                out.append(f"node {node}: cluster schema {'created' if old is None else 'dropped'}")
            continue
        for name in sorted(set(old) | set(new)):
            if name in EVENT_CATALOGS:
                added = [row for row in new.get(name, []) if row not in old.get(name, [])]
                if added:
                    out.append(f"node {node} {name}: new {added}")
            elif old.get(name) != new.get(name):
                out.append(f"node {node} {name}:\n  before {old.get(name)}\n  after  {new.get(name)}")
    return out


def assert_unchanged(after: dict, before: dict, what: str = "the run changed the catalogs") -> None:
    problems = differences(before, after)
    assert not problems, what + ":\n" + "\n".join(problems)
