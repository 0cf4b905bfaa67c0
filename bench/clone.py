#!/usr/bin/env python
"""Adding a node: a clone of a subscriber (playbooks/clone_node.yml) against a new node
that subscribes and gets every table copied by Slony (bench/subscribe_node.yml).

For each repetition and each way (interleaved), on a lab of 4 servers of its own: a
3-node cluster built with slonik (node 1 the origin of set 1, nodes 2 and 3 its
subscribers, full mesh of paths, one slon per node), set 1 holding a large table of about
--mb megabytes and --tables small tables (5 rows each), both replicas' copies done. Then,
timed, node 4 is added as a copy of node 2:

  clone      ansible-playbook playbooks/clone_node.yml (CLONE PREPARE on node 2; createdb;
             pg_dump | pg_restore of node 2's database; CLONE FINISH; paths; slon)
  subscribe  ansible-playbook bench/subscribe_node.yml (STORE NODE, paths, slon, SUBSCRIBE
             SET from node 2, which returns when Slony's COPY is done); node 4's database
             and empty tables exist before the clock starts, as SUBSCRIBE SET requires

until node 4 holds every row and a row written on node 1 after the playbook returned has
reached it. Both playbooks start from the same inventory, the same cluster facts, paths
and slon role. Medians and the clone/subscribe ratio are printed. This is a benchmark,
not a test: it is not part of `make test`.

Usage:  .venv/bin/python bench/clone.py [--mb 1024] [--tables 0] [--reps 3] [--json out.json]
        (--port-base 56000, --lab-dir /var/tmp/lab-bench-clone; the lab is left running
        with --keep-lab)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from lab import FreshDatabase, Lab, LabSettings, SlonFleet, quote_ident, unique_dbname, wait_until  # noqa: E402
from test_clone import ClonePlaybook  # noqa: E402

CLUSTER = "lab"
OLD = (1, 2, 3)
ROW_BYTES = 130  # heap + index bytes per row of public.big, measured
BIG = "create table public.big (id bigint primary key, payload text not null);\n"
FILL = "insert into public.big select g, md5(g::text) || repeat('x', 60) from generate_series(1, %d) g;\n"
MARK = "create table public.marks (id serial primary key, note text not null);\n"
WAYS = {"clone": REPO / "playbooks" / "clone_node.yml", "subscribe": REPO / "bench" / "subscribe_node.yml"}


def log(message: str) -> None:
    print("%s %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def small_tables(count: int) -> str:
    return "".join("create table public.t%04d (id int primary key, v text);\n" % i for i in range(1, count + 1))


def fill_small(count: int) -> str:
    return "".join("insert into public.t%04d select g, 'v' || g from generate_series(1, 5) g;\n" % i
                   for i in range(1, count + 1))


def slonik(db, script: str) -> None:
    """slonik with the admin conninfo of nodes 1 to 3 only (node 4 is not a node yet)."""
    FreshDatabase(db.lab, db.dbname, list(OLD), cluster_name=CLUSTER).slonik(script, timeout=3600)


def build_three_nodes(db, fleet, tables: int) -> None:
    paths = "".join("store path (server = %d, client = %d, conninfo = '%s');\n"
                    % (s, c, db.conninfo(s)) for s in OLD for c in OLD if s != c)
    slonik(db, "init cluster (id = 1, comment = 'origin');\n"
               "store node (id = 2, comment = 'replica 2', event node = 1);\n"
               "store node (id = 3, comment = 'replica 3', event node = 1);\n" + paths)
    fleet.start(*OLD)
    pattern = "^public\\\\.(big|marks|t[0-9]+)$"
    slonik(db, "create set (id = 1, origin = 1, comment = 'app');\n"
               "set add table (set id = 1, origin = 1, tables = '%s');\n"
               "subscribe set (id = 1, provider = 1, receiver = 2, forward = yes);\n"
               "subscribe set (id = 1, provider = 1, receiver = 3, forward = yes);\n" % pattern)
    for node in (2, 3):
        wait_until(lambda n=node: db.scalar(n, 'select count(*) from "_lab".sl_setsync') == 1,
                   timeout=3600, interval=0.5, message="set 1 copied to node %d" % node)


def run_once(lab: Lab, way: str, rows: int, tables: int, tmp: Path) -> dict:
    dbname = unique_dbname("bench_clone_" + way)
    db = FreshDatabase(lab, dbname, [1, 2, 3, 4], cluster_name=CLUSTER)
    workdir = tmp / ("%s-%s" % (way, uuid.uuid4().hex[:8]))
    workdir.mkdir(mode=0o755)
    fleet = SlonFleet(db, CLUSTER, {"sync_interval": 100, "sync_interval_timeout": 1000})
    book = ClonePlaybook(db, workdir)
    nodes = OLD + ((4,) if way == "subscribe" else ())
    try:
        schema = BIG + MARK + small_tables(tables)
        for node in nodes:
            lab.query(node, "create database %s template template0" % quote_ident(dbname), dbname="postgres")
            db.query(node, schema)
        started = time.monotonic()
        db.query(1, FILL % rows + fill_small(tables) + "analyze;\n")
        size = db.scalar(1, "select pg_total_relation_size('public.big')")
        log("%s: origin filled, %.0f MB, %d small tables, in %.1f s" % (way, size / 1e6, tables, time.monotonic() - started))
        build_three_nodes(db, fleet, tables)
        log("%s: 3-node cluster up, copies done" % way)

        started = time.monotonic()
        run = book.run(playbook=WAYS[way])
        returned = time.monotonic() - started
        db.query(1, "insert into public.marks (note) values ('after')")
        wait_until(lambda: db.exists_on(4) and db.scalar(4, "select count(*) from public.marks where note = 'after'") == 1,
                   timeout=3600, interval=0.2, message="the new row on node 4")
        total = time.monotonic() - started
        rows_4 = db.scalar(4, "select count(*) from public.big")
        result = {"seconds": round(total, 2), "playbook_seconds": round(returned, 2),
                  "source_mb": round(size / 1e6, 1), "tables": tables + 2,
                  "node4_has_every_row": rows_4 == rows
                  and all(db.scalar(4, "select count(*) from public.t%04d" % i) == 5 for i in range(1, tables + 1)),
                  "changed_tasks": run.changed().get("node1", 0) + run.changed().get("node4", 0)}
        log("%s: %s" % (way, json.dumps(result)))
        return result
    finally:
        try:
            book.stop_slon()
        except Exception as exc:  # pylint: disable=broad-except
            log("stopping node 4's slon: %s" % exc)
        fleet.kill_all()
        for node in (1, 2, 3, 4):
            if db.exists_on(node):
                lab.query(node, "drop database %s with (force)" % quote_ident(dbname), dbname="postgres")
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--mb", type=float, default=1024, help="size of the large table (default 1024 MB)")
    parser.add_argument("--tables", type=int, default=0, help="small tables besides it (default 0)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions, the two ways interleaved (default 3)")
    parser.add_argument("--port-base", type=int, default=56000)
    parser.add_argument("--lab-dir", default="/var/tmp/lab-bench-clone")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    env = dict(os.environ, SLONY_LAB_PORT_BASE=str(args.port_base), SLONY_LAB_DIR=args.lab_dir, SLONY_LAB_NODES="4")
    env.pop("PYTEST_XDIST_WORKER", None)
    lab = Lab(LabSettings.from_environment(env))
    lab.up()
    rows = max(1000, int(args.mb * 1e6 / ROW_BYTES))
    tmp = Path(args.lab_dir) / "bench-clone"
    tmp.mkdir(mode=0o755, exist_ok=True)
    runs = {"clone": [], "subscribe": []}
    try:
        for rep in range(args.reps):
            order = list(runs) if rep % 2 == 0 else list(reversed(list(runs)))
            for way in order:
                log("repetition %d of %d: %s" % (rep + 1, args.reps, way))
                runs[way].append(run_once(lab, way, rows, args.tables, tmp))
    finally:
        if not args.keep_lab:
            lab.down()
    median = {way: round(statistics.median(r["seconds"] for r in results), 2) for way, results in runs.items()}
    median["ratio_clone_to_subscribe"] = round(median["clone"] / median["subscribe"], 2)
    print(json.dumps(median, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median,
                                         "mb": args.mb, "tables": args.tables}, indent=1))
    return 0 if all(r["node4_has_every_row"] for results in runs.values() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
