"""Make the collection importable as ``ansible_collections.dany.slony`` for every test.

The tests run in three settings:

- from a clone, with plain pytest (``make units``, ``make integration``):
  scripts/bootstrap.sh links the repository as
  .build/collections/ansible_collections/dany/slony, and putting .build/collections on
  sys.path lets the tests import the core exactly as the modules do;
- from a tree that already is ``<root>/ansible_collections/dany/slony`` (an installed
  collection, the throw-away trees of scripts/sanity.sh and scripts/matrix.sh): <root>
  goes on sys.path, no link is needed;
- under ``ansible-test units`` (such a tree too), whose collection loader already serves
  the collection: nothing to do.

The unit tests import their helpers by name (``from fakes import FakeClock``), so
tests/unit goes on sys.path as well: ansible-test imports each test file as a module of the
collection (``ansible_collections.dany.slony.tests.unit.test_waits``), so pytest does not
add the file's directory to sys.path as it otherwise does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINKED = REPO / ".build" / "collections"
UNIT = REPO / "tests" / "unit"


def collections_root(repo):
    """The directory to put on sys.path so that ``ansible_collections.dany.slony`` is ``repo``.

    None when ``repo`` is not in such a tree and the link of scripts/bootstrap.sh is missing.
    """
    names = [p.name for p in (repo, repo.parent, repo.parent.parent)]
    if names == ["slony", "dany", "ansible_collections"]:
        return repo.parent.parent.parent
    linked = repo / ".build" / "collections"
    if (linked / "ansible_collections" / "dany" / "slony" / "galaxy.yml").is_file():
        return linked
    return None


def _importable():
    try:
        return importlib.util.find_spec("ansible_collections.dany.slony") is not None
    except ImportError:
        return False


def pytest_configure(config):
    del config
    if str(UNIT) not in sys.path:
        sys.path.insert(0, str(UNIT))
    root = collections_root(REPO)
    if root is None:
        if _importable():
            return
        raise pytest.UsageError(
            "%s/ansible_collections/dany/slony is missing: run ./scripts/bootstrap.sh "
            "(or `make bootstrap`) first" % LINKED)
    if str(root) not in sys.path and not _importable():
        sys.path.insert(0, str(root))
