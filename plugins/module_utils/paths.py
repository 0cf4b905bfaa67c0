# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Paths: STORE PATH and DROP PATH, planned from each client node's catalog."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from .catalog import PENDING_CONNINFO, read_snapshot
from .conninfo import parse_conninfo, redact_conninfo
from .cluster import NODE_INITIALIZED
from .errors import SlonyError
from .names import validate_node_id
from .plan import Plan, Planned, call, wait
from .slonik import quote as slonik_quote

DEFAULT_CONNRETRY = 10


def normalize_paths(paths):
    """Validate a list of path dicts; return them with ints and defaults filled in."""
    result = []
    seen = set()
    for index, entry in enumerate(paths):
        what = "paths[%d]" % index
        server = validate_node_id(entry.get("server"), "%s.server" % what)
        client = validate_node_id(entry.get("client"), "%s.client" % what)
        if server == client:
            raise SlonyError("%s: server and client are both node %d" % (what, server))
        if (server, client) in seen:
            raise SlonyError("%s: the path from node %d to node %d is listed twice"
                             % (what, server, client))
        seen.add((server, client))
        state = entry.get("state") or "present"
        conninfo = entry.get("conninfo")
        connretry = entry.get("connretry")
        if state == "present":
            if not conninfo:
                raise SlonyError("%s: conninfo is required for a present path (node %d to "
                                 "node %d)" % (what, server, client))
            parse_conninfo(conninfo, "%s.conninfo" % what)
            connretry = DEFAULT_CONNRETRY if connretry is None else int(connretry)
            if connretry < 1:
                raise SlonyError("%s: connretry must be at least 1" % what)
        result.append({"server": server, "client": client, "conninfo": conninfo,
                       "connretry": connretry, "state": state})
    return result


def path_view(path, redactor):
    if path is None:
        return None
    return {"server": path.server, "client": path.client,
            "conninfo": redactor.text(redact_conninfo(path.conninfo)),
            "connretry": path.connretry}


def _store_path_slonik(path):
    return "store path (server = %d, client = %d, conninfo = %s, connretry = %d);" % (
        path["server"], path["client"], slonik_quote(redact_conninfo(path["conninfo"])),
        path["connretry"])


def _is_node(cluster, node):
    """Whether ``node``'s own database (when we can reach it) is that node of the cluster.

    During a bring-up a client may not have heard of a freshly stored node yet;
    Slony copes (storePath_int records it as pending until STORE_NODE arrives).
    """
    if not cluster.has_node(node):
        return False
    try:
        return cluster.state(node) == (NODE_INITIALIZED, node)
    except SlonyError:
        return False


# What plan_paths reads before deciding: each client node's snapshot, and for each
# server of a present path that no client knows, whether its own database is that node.
PathFacts = namedtuple("PathFacts", "snaps servers")


def read_paths(cluster, paths):
    """The reads of :func:`plan_paths` for normalised ``paths``: one catalog read per
    client node, and a state probe of each unknown server."""
    snaps = {}
    for client in sorted(set(p["client"] for p in paths)):
        cluster.require_node(client, "storing a path whose client is node %d" % client)
        snaps[client] = read_snapshot(cluster, client)
    known = set()
    for snap in snaps.values():
        known.update(snap.nodes)
    servers = {}
    for p in paths:
        if p["state"] == "present" and p["server"] not in known and p["server"] not in servers:
            servers[p["server"]] = _is_node(cluster, p["server"])
    return PathFacts(snaps, servers)


def _current_view(current, redactor):
    if current is not None and current.conninfo == PENDING_CONNINFO:
        return dict(path_view(current, redactor), conninfo=None)
    return path_view(current, redactor)


def decide_paths(ns, cluster_name, redactor, paths, facts):
    """The plan for normalised ``paths`` from :class:`PathFacts`. Pure."""
    plan = Plan()
    before, after, problems = [], [], []
    for p in paths:
        snap = facts.snaps[p["client"]]
        if p["state"] == "present" and not facts.servers.get(p["server"], True):
            problems.append("node %d is not a node of cluster %s" % (p["server"], cluster_name))
            continue
        current = snap.paths.get((p["server"], p["client"]))
        absent = {"server": p["server"], "client": p["client"], "state": "absent"}
        before.append(_current_view(current, redactor) or absent)
        if p["state"] == "present":
            after.append({"server": p["server"], "client": p["client"],
                          "conninfo": redactor.text(redact_conninfo(p["conninfo"])),
                          "connretry": p["connretry"]})
            if current is None or current.conninfo != p["conninfo"] \
                    or current.connretry != p["connretry"]:
                plan.add(call(ns, p["client"], "storePath",
                              (p["server"], p["client"], p["conninfo"], p["connretry"]),
                              "store the path from node %d to node %d (on node %d)"
                              % (p["server"], p["client"], p["client"]),
                              slonik=_store_path_slonik(p)))
            continue
        after.append({"server": p["server"], "client": p["client"], "state": "absent"})
        if current is None:
            continue
        users = sorted(s.set for s in snap.subscriptions.values()
                       if s.provider == p["server"] and s.receiver == p["client"])
        if users:
            problems.append(
                "the path from node %d to node %d is used by the subscription of "
                "set(s) %s; unsubscribe or change the provider first"
                % (p["server"], p["client"], ", ".join(map(str, users))))
            continue
        plan.add(call(ns, p["client"], "dropPath", (p["server"], p["client"]),
                      "drop the path from node %d to node %d" % (p["server"], p["client"]),
                      slonik="drop path (server = %d, client = %d, event node = %d);"
                             % (p["server"], p["client"], p["client"])))
    if problems:
        raise SlonyError("; ".join(problems))
    # Once everything is stored, wait until each client's path events are known
    # everywhere (they can only travel once paths exist both ways).
    for client in sorted(set(step.node for step in plan.steps)):
        plan.add(wait(client, "wait until every node has confirmed the path changes of "
                              "node %d" % client))
    return Planned(plan, before, after)


def plan_paths(cluster, paths):
    """Plan STORE/DROP PATH for a list of paths. Returns :class:`plan.Planned`.

    Each path is stored on its client node, as slonik does: the client's slon
    connects to the server with that conninfo. One catalog read per client node
    (:func:`read_paths`), then a pure decision (:func:`decide_paths`).
    """
    paths = normalize_paths(paths)
    facts = read_paths(cluster, paths)
    return decide_paths(cluster.ns, cluster.name, cluster.redactor, paths, facts)
