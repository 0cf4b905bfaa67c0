# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of names and ids (pure)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from .errors import SlonyError

# Slony's own rule (slony1_funcs.sql refuses anything else at load time).
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def validate_cluster_name(name):
    if not isinstance(name, str) or not CLUSTER_NAME_RE.fullmatch(name):
        raise SlonyError(
            "invalid cluster_name %r: Slony requires a letter or underscore followed by at "
            "most 62 letters, digits, underscores or dollar signs" % (name,))
    return name


def cluster_namespace(name):
    """The schema Slony keeps the cluster in (unquoted)."""
    return "_" + validate_cluster_name(name)


def validate_node_id(value, what="node id"):
    try:
        node = int(value)
    except (TypeError, ValueError):
        raise SlonyError("%s %r is not an integer" % (what, value))
    if isinstance(value, float) and value != node:
        raise SlonyError("%s %r is not an integer" % (what, value))
    if isinstance(value, bool) or node < 1 or node > 2147483647:
        raise SlonyError("%s %r must be a positive 32-bit integer" % (what, value))
    return node


def split_qualified_name(name, what="table"):
    """Split ``schema.name`` (parts may be double-quoted) into (schema, name).

    Slony matches names case-sensitively and only when schema-qualified, so an
    unqualified name is an error here rather than a silent non-match later.
    """
    parts = []
    buf = ""
    i = 0
    text = name or ""
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j = i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise SlonyError("%s name %r has an unterminated quote" % (what, name))
                if k + 1 < len(text) and text[k + 1] == '"':
                    buf += text[j:k] + '"'
                    j = k + 2
                    continue
                buf += text[j:k]
                i = k + 1
                break
            continue
        if ch == ".":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    parts.append(buf)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise SlonyError("%s name %r must be schema-qualified, like public.orders" % (what, name))
    return parts[0], parts[1]
