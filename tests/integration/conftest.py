"""Fixtures for the integration tests: the lab, fresh databases and slon daemons.

``lab``            (session) the lab, brought up once per run by ansible-playbook
``lab_settings``   (session) where it lives (SLONY_LAB_PORT_BASE, SLONY_LAB_DIR, ...)
``make_fresh_db``  (function) factory: ``make_fresh_db(hint="", nodes=None)`` -> FreshDatabase
``fresh_db``       (function) one FreshDatabase on every node, dropped after the test
``slons``          (function) SlonFleet for ``fresh_db``; every slon is killed after the test
``make_slons``     (function) factory: ``make_slons(db, cluster_name=None, options=None)``

See tests/integration/lab.py for the classes and the environment variables.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import FreshDatabase, Lab, LabSettings, SlonFleet, unique_dbname  # noqa: E402


def _terminated(signum, frame):
    """SIGTERM (a `timeout` wrapper, CI stopping a job) ends the run like Ctrl-C does, so
    that the fixtures' teardown still kills the slons and stops the lab."""
    del frame
    raise KeyboardInterrupt("terminated by signal %d" % signum)


def pytest_configure(config):
    # Tests that need a fourth server (a clone, a second failed node). The integration
    # stage of scripts/test.sh runs them in a second pass, on a lab of 4 servers of their
    # own; on a lab of 3 they skip.
    config.addinivalue_line("markers", "four_servers: needs a lab of 4 servers (SLONY_LAB_NODES=4)")
    signal.signal(signal.SIGTERM, _terminated)


@pytest.fixture(scope="session")
def lab_settings() -> LabSettings:
    return LabSettings.from_environment()


@pytest.fixture(scope="session")
def lab(lab_settings: LabSettings):
    """The running lab; torn down at the end of the session unless SLONY_LAB_KEEP=1."""
    the_lab = Lab(lab_settings).up()
    yield the_lab
    if not lab_settings.keep:
        the_lab.down()


@pytest.fixture
def make_fresh_db(lab: Lab, request):
    """Factory of isolated databases (sample schema, from the template), dropped afterwards.

    ``make_fresh_db(hint="", nodes=None, cluster_name="lab")``; ``nodes`` restricts the
    database to some node ids (default: every node).  Call it twice for twin clusters.
    """
    created: list[FreshDatabase] = []

    def factory(hint: str = "", nodes=None, cluster_name: str = "lab") -> FreshDatabase:
        name = unique_dbname(hint or request.node.name)
        database = FreshDatabase(lab, name, list(nodes or lab.node_ids), cluster_name=cluster_name)
        created.append(database)
        return database.create()

    yield factory
    if created:
        lab.ensure_servers_running()  # a test may have stopped a server to fail a node
    for database in reversed(created):
        database.drop()


@pytest.fixture
def fresh_db(make_fresh_db) -> FreshDatabase:
    return make_fresh_db()


@pytest.fixture
def make_slons(request, make_fresh_db):
    """Factory of SlonFleet objects; every daemon they started is killed at test end.

    It depends on ``make_fresh_db`` so that the slons die before their databases are
    dropped.

    When the test fails, the tails of the slon logs are added to its report (section
    "slon logs"), so that a failure explains itself.
    """
    fleets: list[SlonFleet] = []
    request.node.slon_fleets = fleets

    def factory(database: FreshDatabase, cluster_name: str | None = None, options=None) -> SlonFleet:
        fleet = SlonFleet(database, cluster_name, options)
        fleets.append(fleet)
        return fleet

    yield factory
    for fleet in fleets:
        fleet.kill_all()


@pytest.fixture
def slons(fresh_db: FreshDatabase, make_slons) -> SlonFleet:
    """SlonFleet of ``fresh_db`` (cluster ``fresh_db.cluster_name``); start with ``slons.start()``."""
    return make_slons(fresh_db)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the slon log tails to the report of a failed test."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        logs = "\n".join(fleet.logs() for fleet in getattr(item, "slon_fleets", []) if fleet.daemons)
        if logs:
            report.sections.append(("slon logs", logs))
