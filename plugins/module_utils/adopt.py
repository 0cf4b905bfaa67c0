# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting a cluster built by hand: its catalog as an inventory for the ``cluster`` role.

:func:`inventory_from_facts` turns what ``slony_info`` returns (sections nodes, paths,
sets, tables, sequences, subscriptions; drift if read) into an inventory in the shape of
``inventory/lab.yml``, such that ``playbooks/site.yml`` with it has nothing to change:

* every node is a host of group ``slony_nodes`` with ``slony_node_id`` and
  ``slony_node_comment``; its connection is the conninfo the other nodes' paths use to
  reach it, as ``slony_db_host``/``_port``/``_name``/``_user`` when the cluster role's
  ``dany.slony.conninfo`` filter rebuilds it byte for byte from those parts, else as a
  whole ``slony_conninfo``. Values every node shares go to the group's vars;
* a node that copies its sets from another node than their origin gets ``slony_provider``
  (the most common one); a set it copies from another node gets a ``providers`` map;
* the paths are the role's default full mesh when they are one (same conninfo from every
  client, one connretry), else an explicit ``cluster_paths`` list;
* the sets (``slony_sets``) list their tables and sequences with their ids and keys,
  their subscribers and their forward flag (a map receiver -> flag when they differ).

Passwords are never written: a password found in a conninfo becomes a reference to the
variable ``slony_db_password``, itself set to ``{{ <password_variable> }}`` (default
``vault_slony_db_password``), to be defined in a vault. What the role cannot express (a
locked set, failed nodes, drift, ...) is written as the role would
see it and listed in ``warnings``: site.yml would change it.

Pure: plain data in, plain data out (:func:`render_yaml` needs PyYAML).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import Counter

from .conninfo import parse_conninfo, redact_conninfo
from .errors import SlonyError
from .info import MASKED_PASSWORD, verbatim_conninfo
from .pg import make_dsn
from .tables import fq_name

DEFAULT_PASSWORD_VARIABLE = "vault_slony_db_password"
DEFAULT_CONNRETRY = 10
NODES_GROUP = "slony_nodes"

# The parts the cluster role builds a node's conninfo from, in the order it passes them to
# the dany.slony.conninfo filter (roles/cluster/tasks/facts.yml), and their variables.
DB_PARTS = (("host", "slony_db_host"), ("port", "slony_db_port"), ("dbname", "slony_db_name"),
            ("user", "slony_db_user"), ("password", "slony_db_password"))

# Where a conninfo needs the password back: the template the written file holds instead.
PASSWORD_TEMPLATE = "{{ {'password': slony_db_password} | dany.slony.conninfo }}"
_MASKED_TOKEN = re.compile(r"(?:(?<=\s)|^)%s(?=\s|$)" % re.escape(MASKED_PASSWORD))
_JINJA = re.compile(r"{{|{%|{#")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")

REQUIRED_SECTIONS = ("nodes", "paths", "sets", "tables", "sequences", "subscriptions")


def literal(value):
    """A string from a catalog as an inventory value: Ansible templates inventory strings,
    so one holding Jinja delimiters is wrapped in raw/endraw (it renders to itself)."""
    if isinstance(value, str) and _JINJA.search(value):
        return "{% raw %}" + value + "{% endraw %}"
    return value


def conninfo_template(text):
    """A masked conninfo as the inventory writes it: ``password=********`` replaced by the
    template that puts ``slony_db_password`` back the way libpq's quoting rules write it
    (the dany.slony.conninfo filter), so that the rendered text is the original. Returns
    (template, whether it needs the password)."""
    if _JINJA.search(text):
        text = literal(text)
    template, count = _MASKED_TOKEN.subn(lambda m: PASSWORD_TEMPLATE, text)
    return template, count > 0


def db_parts(text):
    """{part: value} when the cluster role rebuilds ``text`` (a masked conninfo) byte for
    byte from ``slony_db_*`` host variables, else None."""
    try:
        params = parse_conninfo(text)
    except SlonyError:
        return None
    names = [part for part, dummy in DB_PARTS if part in params]
    if "host" not in params or set(params) != set(names):
        return None
    if _JINJA.search(text):
        return None
    ordered = [(part, params[part]) for part in names]
    rebuilt = " ".join(make_dsn(**{k: v}) for k, v in ordered)
    if rebuilt != text:
        return None
    return dict(ordered)


def _most_common(values):
    """The most frequent value; ties go to the first one seen (callers sort first)."""
    counts = Counter(values)
    best = max(counts.values())
    for value in values:
        if counts[value] == best:
            return value
    return None


def _path_text(path, warnings):
    """What the inventory reproduces of a path's conninfo (masked, never a password)."""
    text = path.get("conninfo_verbatim")
    if text is None:
        warnings.append(
            "path %d -> %d: its conninfo is not known as written (a URI, or a password "
            "written otherwise than libpq's quoting rules do), so the inventory has it "
            "normalised; site.yml would store the path again with that equivalent "
            "conninfo" % (path["server"], path["client"]))
        text = path["conninfo"]
    return text


def _admin_text(node, admin_conninfo, warnings):
    raw = (admin_conninfo or {}).get(node)
    if raw is None:
        raw = (admin_conninfo or {}).get(str(node))
    if raw is None:
        return None
    text = verbatim_conninfo(raw)
    if text is None:
        text = redact_conninfo(raw)
    warnings.append("node %d is the server of no path: its connection is its admin conninfo"
                    % node)
    return text


def _plain_host(host):
    """A host name or address an inventory host can be named after (no socket, no list)."""
    if not host or host.startswith("/") or host in _LOOPBACK:
        return False
    return bool(re.match(r"^[A-Za-z0-9_.:-]+$", host))


def _host_names(node_ids, texts, host_names):
    """Inventory host name of every node: ``host_names`` first, then the host of its
    conninfo when those differ from node to node and are no loopback, else node<id>."""
    given = dict((int(k), str(v)) for k, v in (host_names or {}).items())
    hosts = {}
    for node in node_ids:
        try:
            hosts[node] = parse_conninfo(texts[node]).get("host")
        except SlonyError:
            hosts[node] = None
    values = list(hosts.values())
    usable = all(_plain_host(h) for h in values)
    by_host = usable and len(set(values)) == len(values)
    names = {}
    for node in node_ids:
        names[node] = given.get(node) or (hosts[node] if by_host else "node%d" % node)
    if len(set(names.values())) != len(names):
        raise SlonyError("host_names: two nodes would have the same inventory host name (%s)"
                         % ", ".join("%d: %s" % kv for kv in sorted(names.items())))
    return names


def _connection_vars(text, password_reference):
    """Host variables of a node's connection from its masked conninfo."""
    parts = db_parts(text)
    if parts is not None:
        out = {}
        for part, var in DB_PARTS:
            if part not in parts:
                continue
            value = parts[part]
            if part == "password":
                value = password_reference
            elif part == "port" and value.isdigit():
                value = int(value)
            out[var] = value
        return out
    template, needs_password = conninfo_template(text)
    out = {"slony_conninfo": template}
    if needs_password:
        out["slony_db_password"] = password_reference
    return out


def _providers(subscriptions):
    """({receiver: slony_provider} for the receivers fed by another node than the origin,
    {set: {receiver: provider}} for the subscriptions that provider does not describe:
    the set's ``providers`` map)."""
    by_receiver = {}
    for sub in subscriptions:
        by_receiver.setdefault(sub["receiver"], []).append(sub)
    providers, per_set = {}, {}
    for receiver, subs in sorted(by_receiver.items()):
        others = [s["provider"] for s in subs if s["provider"] != s["origin"]]
        chosen = _most_common(sorted(others)) if others else None
        if chosen is not None:
            providers[receiver] = chosen
        for sub in subs:
            if sub["provider"] != (sub["origin"] if chosen is None else chosen):
                per_set.setdefault(sub["set"], {})[receiver] = sub["provider"]
    return providers, per_set


def _set_entries(facts, nodes, warnings, per_set_providers=None):
    tables, sequences, subs = {}, {}, {}
    for row in facts.get("tables") or []:
        tables.setdefault(row["set"], []).append(row)
    for row in facts.get("sequences") or []:
        sequences.setdefault(row["set"], []).append(row)
    for row in facts.get("subscriptions") or []:
        if row["receiver"] in nodes:
            subs.setdefault(row["set"], []).append(row)
    entries = []
    for sset in sorted(facts.get("sets") or [], key=lambda s: s["id"]):
        set_id = sset["id"]
        entry = {"id": set_id, "origin": sset["origin"]}
        if sset.get("comment") is not None:
            entry["comment"] = literal(sset["comment"])
        if sset.get("locked"):
            warnings.append("set %d is locked (a LOCK SET or MOVE SET in progress): adopt the "
                            "cluster again once it is done" % set_id)
        members = []
        for row in sorted(tables.get(set_id, []), key=lambda r: r["id"]):
            name = fq_name(row["schema"], row["name"])
            item = {"name": literal(name), "id": row["id"], "key": literal(row["key"])}
            if row.get("comment") not in (None, name):
                item["comment"] = literal(row["comment"])
            members.append(FlowDict(item))
        if members:
            entry["tables"] = members
        members = []
        for row in sorted(sequences.get(set_id, []), key=lambda r: r["id"]):
            name = fq_name(row["schema"], row["name"])
            item = {"name": literal(name), "id": row["id"]}
            if row.get("comment") not in (None, name):
                item["comment"] = literal(row["comment"])
            members.append(FlowDict(item))
        if members:
            entry["sequences"] = members
        receivers = sorted(subs.get(set_id, []), key=lambda r: r["receiver"])
        entry["subscribers"] = FlowList(r["receiver"] for r in receivers)
        if receivers:
            forwards = [bool(r["forward"]) for r in receivers]
            if len(set(forwards)) == 1:
                entry["forward"] = forwards[0]
            else:
                # Mixed flags (slonik scripts often subscribe leaves with forward = no).
                entry["forward"] = FlowDict((r["receiver"], bool(r["forward"])) for r in receivers)
        if (per_set_providers or {}).get(set_id):
            entry["providers"] = FlowDict(sorted(per_set_providers[set_id].items()))
        entries.append(entry)
    return entries


def _path_vars(paths, node_ids, own):
    """cluster_paths / cluster_path_connretry, or nothing for the default mesh (the
    warnings about the paths' conninfos were given with the nodes' own)."""
    keys = set((p["server"], p["client"]) for p in paths)
    mesh = set((s, c) for s in node_ids for c in node_ids if s != c)
    retries = [p["connretry"] for p in paths]
    common = _most_common(retries) if retries else DEFAULT_CONNRETRY
    texts = dict(((p["server"], p["client"]), _path_text(p, [])) for p in paths)
    same = all(texts[k] == own[k[0]] for k in texts)
    out = {}
    if common != DEFAULT_CONNRETRY:
        out["cluster_path_connretry"] = common
    if keys == mesh and same and all(r == common for r in retries):
        return out
    listed = []
    for path in sorted(paths, key=lambda p: (p["server"], p["client"])):
        item = {"server": path["server"], "client": path["client"]}
        text = texts[(path["server"], path["client"])]
        if text != own[path["server"]]:
            item["conninfo"] = conninfo_template(text)[0]
        if path["connretry"] != common:
            item["connretry"] = path["connretry"]
        listed.append(FlowDict(item))
    out["cluster_paths"] = listed
    return out


def inventory_from_facts(facts, password_variable=DEFAULT_PASSWORD_VARIABLE, host_names=None,
                         node_vars=None, admin_conninfo=None, localhost=True):
    """The inventory of the cluster ``facts`` (slony_info's result) describes.

    ``password_variable``: the variable ``slony_db_password`` refers to when a conninfo has
    a password. ``host_names``: {node id: inventory host name}. ``node_vars``: variables
    added to group ``slony_nodes`` (e.g. ``ansible_connection``). ``admin_conninfo``:
    {node id: conninfo}, only used (masked) for a node that is the server of no path.
    ``localhost``: add host localhost (connection local), which runs the cluster tasks.

    Returns {"inventory": dict, "warnings": [str], "variables": [names the file needs]}.
    Raises SlonyError when the facts lack a section or a node's connection is unknown.
    """
    missing = [s for s in REQUIRED_SECTIONS if s not in (facts or {})]
    if not isinstance(facts, dict) or missing:
        raise SlonyError("slony_inventory needs the slony_info sections %s (missing: %s); "
                         "run slony_info without a filter that leaves them out"
                         % (", ".join(REQUIRED_SECTIONS), ", ".join(missing or ["all"])))
    if not isinstance(password_variable, str) or not _VARIABLE_NAME.match(password_variable):
        raise SlonyError("password_variable must be a variable name, not %r" % (password_variable,))
    if node_vars is not None and not isinstance(node_vars, dict):
        raise SlonyError("node_vars must be a mapping of variables")
    warnings = []
    for entry in facts.get("unreachable_nodes") or []:
        warnings.append("node %d could not be read (%s): the inventory has what the other "
                        "nodes know of it" % (entry["node"], entry["error"]))
    for entry in facts.get("drift") or []:
        warnings.append("the nodes' catalogs disagree, the inventory follows the set origins "
                        "and path clients: %s" % entry["message"])

    nodes = {}
    for row in sorted(facts["nodes"], key=lambda n: n["id"]):
        if row.get("failed"):
            warnings.append("node %d is marked failed and is left out" % row["id"])
            continue
        if row.get("comment") is None:
            warnings.append("node %d is in admin_conninfo but in no catalog read, and is left "
                            "out" % row["id"])
            continue
        if row.get("active") is False:
            warnings.append("node %d is not active: site.yml would leave it so only if it is "
                            "removed from the inventory" % row["id"])
        nodes[row["id"]] = row
    if not nodes:
        raise SlonyError("no node of cluster %s could be read" % facts.get("cluster_name"))
    node_ids = sorted(nodes)

    paths = []
    for path in sorted(facts["paths"], key=lambda p: (p["server"], p["client"])):
        if path["server"] not in nodes or path["client"] not in nodes:
            continue
        if path.get("pending"):
            warnings.append("path %d -> %d is still pending (<event pending>), left out"
                            % (path["server"], path["client"]))
            continue
        paths.append(path)

    # Each node's own conninfo: the one most of its paths use to reach it.
    own = {}
    for node in node_ids:
        texts = [_path_text(p, warnings) for p in paths if p["server"] == node]
        own[node] = _most_common(texts) if texts else _admin_text(node, admin_conninfo, warnings)
        if own[node] is None:
            raise SlonyError("node %d is the server of no path and has no admin conninfo: its "
                             "connection is unknown" % node)

    reference = "{{ %s }}" % password_variable
    names = _host_names(node_ids, own, host_names)
    providers, per_set = _providers([s for s in facts["subscriptions"] if s["receiver"] in nodes])
    hosts = {}
    for node in node_ids:
        host = {"slony_node_id": node, "slony_node_comment": literal(nodes[node]["comment"])}
        host.update(_connection_vars(own[node], reference))
        if node in providers:
            host["slony_provider"] = providers[node]
        hosts[names[node]] = host

    # What every host has alike goes to the group's vars (as inventory/lab.yml does).
    group_vars = {}
    for dummy, var in DB_PARTS + ((None, "slony_conninfo"),):
        values = [h.get(var) for h in hosts.values()]
        if values[0] is not None and all(v == values[0] for v in values) and len(hosts) > 1:
            group_vars[var] = values[0]
            for host in hosts.values():
                del host[var]
    group_vars.update(node_vars or {})

    all_vars = {"slony_cluster_name": facts["cluster_name"],
                "slony_sets": _set_entries(facts, nodes, warnings, per_set)}
    all_vars.update(_path_vars(paths, node_ids, own))
    if any(conninfo_template(_path_text(p, []))[1] for p in paths):
        # The cluster role leaves passwords out of sl_path unless told: keep them as they
        # are (the cluster's slons may not have a passfile yet).
        all_vars["slony_path_passwords"] = True

    nodes_group = {"hosts": hosts}
    if group_vars:
        nodes_group["vars"] = group_vars
    inventory = {"all": {"vars": all_vars}}
    if localhost:
        inventory["all"]["hosts"] = {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}
    inventory["all"]["children"] = {NODES_GROUP: nodes_group}
    needs_password = any(reference == v for h in list(hosts.values()) + [group_vars]
                         for v in h.values())
    return {"inventory": inventory, "warnings": warnings,
            "variables": [password_variable] if needs_password else []}


# -- YAML -----------------------------------------------------------------------------------

class FlowDict(dict):
    """A mapping written on one line ({name: ..., id: ...}), as inventory/lab.yml does."""


class FlowList(list):
    """A list of scalars written on one line ([2, 3])."""


def header_lines(adoption, cluster_name):
    """The comment block at the top of the written file."""
    lines = ["# Slony-I cluster %s, as its catalogs describe it: written by dany.slony's"
             % cluster_name,
             "# playbooks/adopt.yml (filter dany.slony.slony_inventory). With it,",
             "# playbooks/site.yml --check has nothing to change.",
             "#",
             "# No password is written here."]
    if adoption["variables"]:
        lines += ["# The conninfos of the paths have passwords: slony_db_password refers to",
                  "# the variable %s, which you define in a vault, e.g." % adoption["variables"][0],
                  "#   ansible-vault encrypt_string --name %s  (into group_vars/all/vault.yml)"
                  % adoption["variables"][0],
                  "# With a password per node, set slony_db_password on each host instead.",
                  "# slony_path_passwords: true keeps the passwords in sl_path as they are;",
                  "# once site.yml runs the slons (each with its passfile), remove it and",
                  "# the next run stores the paths without passwords."]
    else:
        lines += ["# The conninfos of the paths have no password (~/.pgpass, or trust)."]
    if adoption["warnings"]:
        lines += ["#", "# Notes (review them: where the cluster role cannot express the cluster as it",
                  "# is, site.yml would change it):"]
        for warning in adoption["warnings"]:
            lines += _wrapped("#   - ", "#     ", warning)
    return lines


def _wrapped(first, rest, text, width=92):
    words, lines, line = text.split(), [], first
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip("# -"):
            lines.append(line.rstrip())
            line = rest
        line += word + " "
    lines.append(line.rstrip())
    return lines


def render_yaml(adoption, cluster_name=None):
    """The file: a comment header, then the inventory in YAML (needs PyYAML)."""
    try:
        import yaml
    except ImportError:
        raise SlonyError("writing the inventory as YAML needs PyYAML (pip install PyYAML)")

    class Dumper(yaml.SafeDumper):
        # Items of a list indented below their key, as in inventory/lab.yml.
        def increase_indent(self, flow=False, indentless=False):
            return super(Dumper, self).increase_indent(flow, False)

    def plain_dict(dumper, data):
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items())

    Dumper.add_representer(FlowDict, lambda d, data: d.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=True))
    Dumper.add_representer(FlowList, lambda d, data: d.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=True))
    Dumper.add_representer(dict, plain_dict)
    name = cluster_name or adoption["inventory"]["all"]["vars"]["slony_cluster_name"]
    body = yaml.dump(_plain(adoption["inventory"]), Dumper=Dumper, default_flow_style=False,
                     sort_keys=False, width=160, allow_unicode=True, indent=2)
    return "\n".join(["---"] + header_lines(adoption, name)) + "\n" + body


def _plain(value):
    """Builtin types (Ansible hands its own str/dict subclasses), keeping the flow marks."""
    if isinstance(value, FlowDict):
        return FlowDict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, FlowList):
        return FlowList(_plain(v) for v in value)
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def adopt(facts, **options):
    """:func:`inventory_from_facts` plus its YAML text: the dict the filter returns."""
    adoption = inventory_from_facts(facts, **options)
    adoption["text"] = render_yaml(adoption, facts.get("cluster_name"))
    return adoption
