# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading the Slony schema into a node database, as INIT CLUSTER and STORE NODE do."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re

from .pg import psycopg2, sql

from .cluster import NODE_NO_SCHEMA, in_parallel
from .errors import SlonyError

# Where distributions put the SQL files: Debian/Ubuntu, then PGDG RPMs, then source builds.
SHARE_DIR_CANDIDATES = ("/usr/share/slony1", "/usr/pgsql-*/share", "/usr/share/pgsql",
                        "/usr/local/pgsql/share", "/usr/share/postgresql/*")

_FUNCS_FILE = re.compile(r"^slony1_funcs\.(\d+)\.(\d+)\.(\d+)\.sql$")


def _versions_in(directory):
    found = []
    for path in glob.glob(os.path.join(directory, "slony1_funcs.*.sql")):
        match = _FUNCS_FILE.match(os.path.basename(path))
        if match:
            found.append(tuple(int(x) for x in match.groups()))
    return sorted(found)


def find_share_dir(share_dir=None, environ=None):
    """The directory holding ``slony1_base.<version>.sql`` and friends.

    An explicit ``share_dir`` wins, then ``SLONY_SHARE_DIR`` (slonik's own
    override), then the places distributions install to.
    """
    environ = os.environ if environ is None else environ
    if share_dir:
        if not _versions_in(share_dir):
            raise SlonyError("share_dir %s holds no slony1_funcs.<version>.sql file" % share_dir)
        return share_dir
    if environ.get("SLONY_SHARE_DIR") and _versions_in(environ["SLONY_SHARE_DIR"]):
        return environ["SLONY_SHARE_DIR"]
    for pattern in SHARE_DIR_CANDIDATES:
        for directory in sorted(glob.glob(pattern), reverse=True):
            if _versions_in(directory):
                return directory
    raise SlonyError("cannot find the Slony-I SQL files (slony1_funcs.<version>.sql) on the "
                     "controller; install the Slony-I client package (slony1-2-bin on Debian) "
                     "or set share_dir")


def schema_files(share_dir, version, server_version_num):
    """The four files slonik loads, in its order, for this PostgreSQL version."""
    variant = "v83" if server_version_num < 80400 else "v84"
    names = ("slony1_base.%s.sql", "slony1_base.%s.%%s.sql" % variant,
             "slony1_funcs.%s.sql", "slony1_funcs.%s.%%s.sql" % variant)
    paths = [os.path.join(share_dir, name % version) for name in names]
    for path in paths:
        if not os.path.isfile(path):
            raise SlonyError("Slony-I SQL file %s is missing" % path)
    return paths


def substitute(text, cluster_name, quoted_namespace, version):
    """Slonik's token substitution, applied to the whole file text."""
    return (text.replace("@CLUSTERNAME@", cluster_name)
            .replace("@MODULEVERSION@", version)
            .replace("@NAMESPACE@", quoted_namespace)
            .replace("@FUNCVERSION@", version.replace(".", "_") + "_"))


def installed_version(share_dir):
    versions = _versions_in(share_dir)
    return ".".join(str(x) for x in versions[-1])


def install_schema(cluster, node, share_dir=None):
    """Create and load the cluster schema on ``node`` inside the open transaction.

    The caller commits (together with ``initializeLocalNode``) and must discard the
    connection afterwards: the SQL files leave a session-level ``search_path``
    behind and the C functions cache per session. Returns a short description of
    what was loaded, for the query log.
    """
    preloaded = cluster.preloaded_schemas.pop(node, None)
    if preloaded is not None:
        return preloaded
    share_dir = find_share_dir(share_dir)
    version = installed_version(share_dir)
    conn = cluster.connection(node, check_identity=False)
    quoted_ns = cluster.quoted_namespace(node)
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_catalog.pg_namespace where nspname = %s",
                    (cluster.namespace,))
        if cur.fetchone():
            raise SlonyError("node %d: namespace %s already exists" % (node, quoted_ns), node=node)
        cur.execute("select 1 from pg_catalog.pg_language where lanname = 'plpgsql'")
        if cur.fetchone() is None:
            raise SlonyError("node %d: language plpgsql is not installed" % node, node=node)
        cur.execute("show server_version_num")
        server_version_num = int(cur.fetchone()[0])
        try:
            cur.execute(sql.SQL("load {}").format(
                sql.Literal("$libdir/slony1_funcs.%s" % version)))
        except psycopg2.Error as exc:
            raise SlonyError(
                "node %d: the Slony-I %s server library cannot be loaded (%s); install "
                "the Slony-I package for this PostgreSQL version on the database server"
                % (node, version, exc.diag.message_primary or exc), node=node)
        cur.execute(sql.SQL("create schema {}").format(cluster.ns))
        loaded = []
        for path in schema_files(share_dir, version, server_version_num):
            with open(path) as handle:
                text = substitute(handle.read(), cluster.name, quoted_ns, version)
            # No parameters: psycopg2 sends the multi-statement text as a simple query.
            cur.execute(text)
            loaded.append(os.path.basename(path))
    return "-- create schema %s and load %s from %s" % (quoted_ns, ", ".join(loaded), share_dir)


def preload_schemas(cluster, nodes, share_dir=None):
    """Load the schema on several new nodes at the same time, each in the open
    transaction of its connection, for the INIT CLUSTER / STORE NODE steps that follow
    to use (:func:`install_schema` finds it). Loading is most of what creating a node
    costs, and each node loads on its own server. A node whose load fails is left to
    the serial path, which reports the error."""
    nodes = [n for n in nodes if n not in cluster.preloaded_schemas]
    if len(nodes) < 2:
        return
    cluster.open_all(nodes)
    ready = {}
    for node in nodes:
        try:
            if cluster.state(node)[0] == NODE_NO_SCHEMA:
                ready[node] = cluster.connection(node, check_identity=False)
        except SlonyError:
            continue
    results = in_parallel(lambda node: install_schema(cluster, node, share_dir), list(ready))
    for node, conn in ready.items():
        loaded, exc = results[node]
        if exc is not None:
            conn.rollback()
        else:
            cluster.preloaded_schemas[node] = loaded
