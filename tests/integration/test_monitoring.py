"""Monitoring output on a real 3-node cluster: playbooks/status.yml writes the Prometheus
textfile (read back with prometheus_client's parser), check mode writes nothing, and the
Nagios check - the `check_slony` console script of the `dany` wheel, installed in a fresh
virtualenv - says OK, then CRITICAL once a slon is stopped.

The cluster is brought up through the Python API (fast); set 1 from node 1 to 2 and 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families
import test_api_package
from test_api_package import run

from ansible_collections.dany.slony.plugins.module_utils.api import Cluster

REPO = Path(__file__).resolve().parents[2]
TABLES = ["public.customers", "public.products", "public.orders", "billing.invoices"]


def run_status(db, check=False, **extra_vars):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    variables = {"slony_cluster_name": db.cluster_name,
                 "slony_admin_conninfo": {str(k): v for k, v in db.admin_conninfo.items()}}
    variables.update(extra_vars)
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / "playbooks" / "status.yml"),
           "-e", json.dumps(variables)] + (["--check"] if check else [])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# The wheel of this tree, built once per module (test_api_package's fixture).
wheel_file = test_api_package.wheel_file


@pytest.fixture(scope="module")
def check_slony_script(wheel_file, tmp_path_factory):
    """bin/check_slony of a fresh virtualenv holding the wheel (and psycopg2 alone, from
    this interpreter, as test_api_package does)."""
    venv = tmp_path_factory.mktemp("check-venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", wheel_file])
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    only = venv.parent / "psycopg2-only"
    only.mkdir()
    for entry in Path(psycopg2.__file__).parent.parent.iterdir():
        if entry.name == "psycopg2" or entry.name.startswith("psycopg2_binary.libs"):
            os.symlink(entry, only / entry.name)
    (site / "psycopg2-only.pth").write_text(str(only) + "\n")
    script = venv / "bin" / "check_slony"
    assert script.is_file()
    return script


def check_slony(db, script, *options):
    """The Nagios check as a monitoring server runs it: the console script, its own process."""
    cmd = [str(script), "--cluster-name", db.cluster_name]
    for node, conninfo in sorted(db.admin_conninfo.items()):
        cmd += ["--conninfo", "%d=%s" % (node, conninfo)]
    return subprocess.run(cmd + list(options), env={"PATH": os.environ.get("PATH", "")},
                          capture_output=True, text=True, timeout=60, check=False)


def metrics(path):
    """{(family, labels without cluster): value}, from prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("cluster") == "lab"
            out[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return out


def per_node(values, name):
    return {int(dict(labels)["node"]): v for (family, labels), v in values.items() if family == name}


def per_pair(values, name):
    return {(int(dict(labels)["origin"]), int(dict(labels)["receiver"])): v
            for (family, labels), v in values.items() if family == name}


def poll(fetch, predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, "%s not reached in %ss; last: %s" % (what, timeout, value)
        time.sleep(0.3)


def test_status_writes_metrics_and_the_check_sees_a_stopped_slon(
        make_fresh_db, make_slons, tmp_path, check_slony_script):
    db = make_fresh_db()
    password = db.lab.password
    cluster = Cluster(db.cluster_name, db.admin_conninfo, wait_timeout=90)
    cluster.store_nodes(wait=False)
    cluster.store_paths(wait=False)
    slons = make_slons(db)
    slons.start()
    cluster.create_set(1, 1, "app")
    cluster.set_add_table(1, TABLES)
    cluster.subscribe(1, [2, 3])

    pkg = check_slony_script
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    prom = textdir / "slony_lab.prom"
    prom.write_text("# what an earlier run left\n")
    stale = prom.stat()

    # -- the Nagios check: OK once the cluster has settled ----------------------------------
    ok = poll(lambda: check_slony(db, pkg), lambda p: p.returncode == 0, what="check_slony OK")
    assert ok.stdout.startswith("SLONY OK - cluster lab: 3 nodes read, 3 slons running") and not ok.stderr
    assert "slons_stopped=0;;0;0;3" in ok.stdout

    # -- node 3's slon stops ---------------------------------------------------------------
    slons.stop(3)
    poll(lambda: cluster.info(["slons"])["slons"][2]["running"], lambda running: running is False,
         what="slon 3 reported stopped")

    # -- check mode: the table as always, nothing written ----------------------------------
    checked = run_status(db, check=True, slony_status_textfile_dir=str(textdir))
    assert "ORIGIN -> RECEIVER" in checked.stdout and "1 -> 2 " in checked.stdout
    assert "- the slon daemon of node 3 is not running" in checked.stdout
    assert "TASK [Write the metrics to the temporary file]" in checked.stdout
    assert os.listdir(textdir) == ["slony_lab.prom"]
    assert prom.read_text() == "# what an earlier run left\n"
    assert (prom.stat().st_ino, prom.stat().st_mtime_ns) == (stale.st_ino, stale.st_mtime_ns)

    # -- a real run replaces the file atomically -------------------------------------------
    written = run_status(db, slony_status_textfile_dir=str(textdir))
    assert "- the slon daemon of node 3 is not running" in written.stdout  # the table, unchanged
    assert os.listdir(textdir) == ["slony_lab.prom"]  # no temporary file left behind
    assert prom.stat().st_ino != stale.st_ino  # a new file renamed over the old one
    assert prom.stat().st_mode & 0o777 == 0o644
    values = metrics(prom)
    assert per_node(values, "slony_slon_up") == {1: 1, 2: 1, 3: 0}
    assert per_node(values, "slony_node_reachable") == {1: 1, 2: 1, 3: 1}
    pairs = {(o, r) for o in (1, 2, 3) for r in (1, 2, 3) if o != r}
    assert set(per_pair(values, "slony_lag_events")) == pairs
    assert set(per_pair(values, "slony_lag_seconds")) == pairs
    assert all(v >= 0 for v in per_pair(values, "slony_lag_events").values())
    now = time.time()
    for when in per_pair(values, "slony_last_confirmed_event_timestamp_seconds").values():
        assert now - 300 < when <= now + 5  # the lab's clock, origin and reader alike
    subs = {(int(dict(k)["set"]), int(dict(k)["receiver"])): v for (f, k), v in values.items()
            if f == "slony_subscription_complete"}
    assert subs == {(1, 2): 1, (1, 3): 1}
    assert values[("slony_set_tables", (("origin", "1"), ("set", "1")))] == 4
    assert sum(v for (f, _k), v in values.items() if f == "slony_drift_objects") == 0

    critical = check_slony(db, pkg)
    assert critical.returncode == 2, critical.stdout + critical.stderr
    status, _bar, perf = critical.stdout.partition(" | ")
    # (node 3 falls behind meanwhile: its lag may be reported after the stopped slon)
    assert status.startswith("SLONY CRITICAL - cluster lab: slon of node 3 stopped")
    assert "slons_stopped=1;;0;0;3" in perf.split() and critical.stdout.count("\n") == 1
    # Its metrics output agrees with the file status.yml wrote.
    exported = check_slony(db, pkg, "--format", "prometheus", "--slons-stopped-critical", "")
    assert exported.returncode == 0
    assert 'slony_slon_up{cluster="lab",node="3"} 0' in exported.stdout.splitlines()

    for text in (checked.stdout, checked.stderr, written.stdout, written.stderr, prom.read_text(),
                 ok.stdout, critical.stdout, critical.stderr, exported.stdout):
        assert password not in text
