"""Fixtures of the acceptance suite: scenarios ported from Slony-I's own cluster tests.

The suite brings up a lab of its own (5 PostgreSQL servers by default) with the classes of
tests/integration/lab.py, on ports and in a directory distinct from the integration lab:

``SLONY_ACCEPTANCE_PORT_BASE``  port of node 1 (default 55400; node i uses base + i - 1)
``SLONY_ACCEPTANCE_DIR``        lab directory (default /var/tmp/dany-slony-acceptance)
``SLONY_ACCEPTANCE_NODES``      number of servers (default 5)
``SLONY_LAB_KEEP``              ``1``: leave the lab running after the session

Under pytest-xdist (``make acceptance`` runs two workers) each worker brings up a lab of
its own: worker gwN uses ports base + 10 * N and the directory with ``-gwN`` appended.

Every server and slon the suite starts is stopped on any exit: the end of the session,
a failure, Ctrl-C, SIGTERM or SIGHUP (turned into KeyboardInterrupt, so that the
fixtures' teardown runs), and, as a last resort, pytest_unconfigure and atexit.

Fixtures: ``acceptance_lab`` (session), ``cluster5`` (function: a fresh database on every
server with the acceptance tables, its slons, and a :class:`harness.Cascade` to bring the
5-node cascade up), ``writer`` (function: an :class:`harness.OriginWriter`, stopped at
the end).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

from harness import ACCEPTANCE_SCHEMA_SQL, Cascade, OriginWriter, Registry  # noqa: E402
from lab import FreshDatabase, Lab, LabSettings, unique_dbname  # noqa: E402

DEFAULT_PORT_BASE = 55400
DEFAULT_DIR = "/var/tmp/dany-slony-acceptance"
DEFAULT_NODES = 5

REGISTRY = Registry()


def _terminated(signum, frame):
    del frame
    raise KeyboardInterrupt("terminated by signal %d" % signum)


def pytest_configure(config):
    del config
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    atexit.register(REGISTRY.cleanup)


def pytest_unconfigure(config):
    del config
    REGISTRY.cleanup()


def acceptance_settings(env=None) -> LabSettings:
    """The lab settings of the suite: LabSettings.from_environment with the suite's own
    variables (the xdist worker shift of lab.py still applies)."""
    env = dict(os.environ if env is None else env)
    env["SLONY_LAB_PORT_BASE"] = env.get("SLONY_ACCEPTANCE_PORT_BASE") or str(DEFAULT_PORT_BASE)
    env["SLONY_LAB_DIR"] = env.get("SLONY_ACCEPTANCE_DIR") or DEFAULT_DIR
    env["SLONY_LAB_NODES"] = env.get("SLONY_ACCEPTANCE_NODES") or str(DEFAULT_NODES)
    return LabSettings.from_environment(env)


@pytest.fixture(scope="session")
def acceptance_lab():
    settings = acceptance_settings()
    lab = Lab(settings)
    REGISTRY.add_lab(lab)
    lab.up()
    yield lab
    REGISTRY.stop_lab(lab)


@pytest.fixture
def cluster5(acceptance_lab, request):
    """A fresh database on every server (sample schema + the acceptance tables), its slon
    fleet, and the :class:`harness.Cascade` that brings the cascade up. The slons are
    killed and the database dropped at the end (servers a test stopped are started)."""
    lab = acceptance_lab
    lab.ensure_servers_running()
    db = FreshDatabase(lab, unique_dbname(request.node.name, prefix="acc"), list(lab.node_ids),
                       cluster_name="acc")
    db.create()
    for node in db.node_ids:
        db.query(node, ACCEPTANCE_SCHEMA_SQL)
    cascade = Cascade(db, REGISTRY)
    request.node.acceptance_cascade = cascade
    try:
        yield cascade
    finally:
        cascade.slons.kill_all()
        REGISTRY.forget_fleet(cascade.slons)
        lab.ensure_servers_running()
        db.drop()


@pytest.fixture
def writer(cluster5):
    w = OriginWriter(cluster5.db)
    try:
        yield w
    finally:
        w.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """The slon log tails in the report of a failed scenario."""
    outcome = yield
    report = outcome.get_result()
    cascade = getattr(item, "acceptance_cascade", None)
    if report.when == "call" and report.failed and cascade is not None:
        report.sections.append(("slon logs", cascade.slons.logs(60)))
