"""Make the collection importable as ``ansible_collections.dany.slony`` for every test.

scripts/bootstrap.sh links the repository as
.build/collections/ansible_collections/dany/slony; putting .build/collections on
sys.path lets the tests import the core exactly as the modules do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / ".build" / "collections"


def pytest_configure(config):
    del config
    if not (COLLECTIONS / "ansible_collections" / "dany" / "slony" / "galaxy.yml").is_file():
        raise pytest.UsageError(
            "%s/ansible_collections/dany/slony is missing: run ./scripts/bootstrap.sh "
            "(or `make bootstrap`) first" % COLLECTIONS)
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
