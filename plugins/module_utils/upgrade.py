# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""UPDATE FUNCTIONS: reload a node's Slony stored functions when the version they report
differs from the installed Slony-I, as slonik 2.2 does (one transaction: the functions
files, ``upgradeSchema(<old version>)``, then the restart notification its slon obeys)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from collections import namedtuple

from .pg import psycopg2, sql

from .errors import SlonyError
from .plan import CALLBACK, Plan, Planned, Step
from .schema import find_share_dir, installed_version, schema_files, substitute

# What the planner reads: {node: the version slonyVersion() reports there}, and the
# version of the Slony-I SQL files installed beside the module (the target).
VersionsRead = namedtuple("VersionsRead", "versions target")


def read_versions(cluster, nodes, share_dir=None):
    """The Slony schema version of each node of ``nodes`` (initialised nodes)."""
    target = installed_version(find_share_dir(share_dir))
    versions = {}
    for node in nodes:
        cluster.require_initialized(node)
        versions[node] = cluster.fetch(
            node, sql.SQL("select {}.slonyversion()").format(cluster.ns))[0][0]
    return VersionsRead(versions, target)


def _major(version):
    return version.split(".")[0]


def decide_update(ns, nodes, read):
    """One UPDATE FUNCTIONS step per node of ``nodes`` whose functions report another
    version than ``read.target``. Pure. A 1.x schema is refused (it needs Slony's
    slony_upgrade_20 first), so is a downgrade."""
    plan = Plan()
    problems = []
    for node in nodes:
        version = read.versions[node]
        if version == read.target:
            continue
        if _major(version) == "1":
            problems.append("node %d runs Slony-I %s functions: upgrading to %s requires "
                            "Slony's slony_upgrade_20 first" % (node, version, read.target))
        elif _key(version) > _key(read.target):
            problems.append("node %d runs Slony-I %s functions, newer than the installed %s: "
                            "install Slony-I %s beside the module (share_dir)"
                            % (node, version, read.target, version))
        else:
            plan.add(Step(CALLBACK, node, "reload the Slony-I functions of node %d (%s -> %s) "
                          "and restart its slon" % (node, version, read.target),
                          slonik="update functions (id = %d);" % node,
                          query=sql.SQL("select {}.upgradeschema(%s)").format(ns),
                          params=(version,), function="upgradeSchema", args=(version,),
                          run=_update_functions))
    if problems:
        raise SlonyError("; ".join(problems))
    before = [{"id": n, "version": read.versions[n]} for n in nodes]
    after = [{"id": n, "version": read.target} for n in nodes]
    return Planned(plan, before, after, {"target_version": read.target})


def _key(version):
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def plan_update_functions(cluster, nodes, share_dir=None):
    """Plan for the Slony functions of ``nodes`` to be those of the installed Slony-I.
    Returns :class:`plan.Planned`; before/after: [{id, version}]."""
    return decide_update(cluster.ns, nodes, read_versions(cluster, nodes, share_dir))


def _update_functions(cluster, step, ctx):
    """slonik's UPDATE FUNCTIONS on ``step.node``, in one transaction."""
    node, old = step.node, step.args[0]
    share_dir = find_share_dir(ctx.share_dir)
    version = installed_version(share_dir)
    conn = cluster.connection(node)
    quoted_ns = cluster.quoted_namespace(node)
    upgrade = cluster.render(node, step.query, step.params)
    loaded = []
    try:
        with conn.cursor() as cur:
            cur.execute("show server_version_num")
            server_version_num = int(cur.fetchone()[0])
            cur.execute(sql.SQL("load {}").format(sql.Literal("$libdir/slony1_funcs.%s" % version)))
            for path in schema_files(share_dir, version, server_version_num)[2:]:
                with open(path) as handle:
                    cur.execute(substitute(handle.read(), cluster.name, quoted_ns, version))
                loaded.append(os.path.basename(path))
            cur.execute(step.query, step.params)
            cur.execute(sql.SQL("notify {}").format(sql.Identifier(cluster.namespace + "_Restart")))
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise cluster.error(node, exc, doing="UPDATE FUNCTIONS (%s -> %s)" % (old, version))
    finally:
        # The files leave a session search_path behind; the C functions cache per session.
        cluster.discard(node)
    cluster.log(node, "-- load %s from %s" % (", ".join(loaded), share_dir))
    cluster.log(node, upgrade)
    cluster.log(node, 'notify "%s_Restart"' % cluster.namespace)
    return []


__all__ = ["plan_update_functions", "decide_update", "read_versions", "VersionsRead"]
