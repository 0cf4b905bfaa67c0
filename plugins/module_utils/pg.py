# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one import of psycopg2 (the core's only dependency).

Every file of the core takes psycopg2 from here, so that a machine without it gets
one clear message (from the module wrapper) instead of an ImportError per file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

try:
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extensions import make_dsn, parse_dsn, quote_ident
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module wrapper
    psycopg2 = sql = make_dsn = parse_dsn = quote_ident = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

__all__ = ["psycopg2", "sql", "make_dsn", "parse_dsn", "quote_ident", "HAS_PSYCOPG2",
           "PSYCOPG2_IMPORT_ERROR"]
