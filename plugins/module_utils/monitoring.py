# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitoring output from the facts of ``slony_info``: Prometheus metrics and a Nagios check.

Two pure functions of the facts (the dict ``slony_info`` returns, or ``info.gather``):

* :func:`prometheus_text` - the Prometheus text exposition format (version 0.0.4), with
  HELP and TYPE lines, ready for node_exporter's textfile collector
  (:func:`write_textfile` writes it atomically);
* :func:`nagios_check` - ``(exit code, status line)`` as a Nagios / Icinga plugin reports
  them: OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3, one line with performance data, with
  thresholds in the plugin guidelines' range syntax (``10``, ``10:``, ``~:10``,
  ``10:20``, ``@10:20``).

:func:`main` is the check script (``check_slony`` once the ``dany`` package is installed,
or ``python -m dany.monitoring``): it reads the cluster through the Python API and prints
the Nagios line or the metrics.

This file imports only the standard library at import time, so that the
``dany.slony.slony_prometheus`` and ``dany.slony.slony_nagios`` filters work on a
controller without psycopg2; :func:`main` imports the rest of the core when it runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import calendar
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

# The kinds of drift info.find_drift reports; each gets a sample (0 included), so that
# an alert on one kind has a series to look at.
DRIFT_KINDS = ("node", "path", "set", "subscription", "table", "sequence")

# (name, type, help) of every metric family, in output order.
FAMILIES = (
    ("slony_node_reachable", "gauge",
     "1 when the node's catalog could be read through its admin conninfo, else 0."),
    ("slony_node_active", "gauge",
     "1 when the node is active in sl_node (as the node itself records it, else the lowest node read)."),
    ("slony_node_failed", "gauge",
     "1 when a node records this node as failed (FAILOVER), else 0."),
    ("slony_slon_up", "gauge",
     "1 when the node's slon daemon runs (its sl_nodelock registration belongs to a live backend), "
     "0 when it does not; absent when the node could not be read."),
    ("slony_slon_last_activity_seconds", "gauge",
     "Seconds since the most recent activity of a slon thread of the node (sl_components; 1 s precision)."),
    ("slony_lag_events", "gauge",
     "Events of the origin the receiver has not confirmed yet."),
    ("slony_lag_seconds", "gauge",
     "Age of the newest event of the origin the receiver confirmed (sl_status st_lag_time): "
     "the age of the last confirmation; an idle origin climbs to slon's sync_interval_timeout."),
    ("slony_last_event_timestamp_seconds", "gauge",
     "Unix time of the newest event of the origin (origin's clock)."),
    ("slony_last_confirmed_event_timestamp_seconds", "gauge",
     "Unix time of the newest event of the origin the receiver confirmed (origin's clock)."),
    ("slony_subscription_complete", "gauge",
     "1 when the receiver finished copying the set (its own catalog shows the subscription "
     "active and synchronised), 0 while not; absent when the receiver could not be read."),
    ("slony_set_tables", "gauge", "Tables in the set, as its origin records them."),
    ("slony_set_sequences", "gauge", "Sequences in the set, as its origin records them."),
    ("slony_set_locked", "gauge", "1 while the set is locked (LOCK SET), else 0."),
    ("slony_drift_objects", "gauge",
     "Objects on which the catalogs of the nodes read disagree, by kind."),
    ("slony_drift_compared_nodes", "gauge",
     "Nodes whose catalogs were compared for drift (those read, less those marked failed): "
     "below 2, no drift can be seen."),
    ("slony_config_events_in_flight", "gauge",
     "Configuration events of some node that another node has not processed yet."),
    ("slony_unreplicated_relations", "gauge",
     "Tables and sequences of the application database in no set, on each set origin."),
)

_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:(Z)|([+-])(\d\d)(?::?(\d\d))?)?$")


# -- Prometheus -------------------------------------------------------------------------

def unix_time(text):
    """Seconds since the epoch of an ISO 8601 timestamp as PostgreSQL's JSON writes it
    (``2024-05-01T10:00:02.1+00:00``); None when ``text`` is not one. Without an offset
    the time is taken as UTC."""
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP_RE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction = float("0." + match.group(7)) if match.group(7) else 0.0
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11) or 0) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds + fraction


def _label_value(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help_text(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value):
    """A sample value as the text format writes it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def metric_samples(facts):
    """{family name: [(labels, value)]} from ``facts``; labels as (name, value) pairs.

    A value that is not known (null in the facts) gives no sample: a missing series,
    not a made-up 0. Sections absent from ``facts`` (``slony_info``'s ``filter``) give
    no family."""
    cluster = facts.get("cluster_name")
    samples = dict((name, []) for name, _type, _help in FAMILIES)

    def add(name, value, **labels):
        if value is None:
            return
        pairs = [("cluster", cluster)] + sorted((k, v) for k, v in labels.items())
        samples[name].append((pairs, value))

    unreachable = set(entry.get("node") for entry in facts.get("unreachable_nodes") or [])
    if "nodes" in facts:
        for node in facts["nodes"]:
            if node.get("in_admin_conninfo", True) and node.get("reachable") is not None:
                add("slony_node_reachable", bool(node["reachable"]), node=node["id"])
            add("slony_node_active", node.get("active"), node=node["id"])
            add("slony_node_failed", node.get("failed"), node=node["id"])
    elif "slons" in facts:  # reachability from the slons section when nodes is filtered out
        for slon in facts["slons"]:
            add("slony_node_reachable", slon["node"] not in unreachable, node=slon["node"])
    for slon in facts.get("slons") or []:
        add("slony_slon_up", slon.get("running"), node=slon["node"])
        add("slony_slon_last_activity_seconds", slon.get("last_activity_seconds"), node=slon["node"])
    last_event_seen = set()
    for row in facts.get("lag") or []:
        pair = dict(origin=row["origin"], receiver=row["receiver"])
        add("slony_lag_events", row.get("lag_events"), **pair)
        add("slony_lag_seconds", row.get("lag_seconds"), **pair)
        if row["origin"] not in last_event_seen:
            when = unix_time(row.get("last_event_at"))
            if when is not None:
                last_event_seen.add(row["origin"])
                add("slony_last_event_timestamp_seconds", when, origin=row["origin"])
        if row.get("confirmed") is not None:
            add("slony_last_confirmed_event_timestamp_seconds",
                unix_time(row.get("confirmed_event_at")), **pair)
    for sub in facts.get("subscriptions") or []:
        add("slony_subscription_complete", sub.get("complete"), set=sub["set"],
            origin=sub.get("origin"), receiver=sub["receiver"])
    for sset in facts.get("sets") or []:
        labels = dict(set=sset["id"], origin=sset["origin"])
        add("slony_set_tables", sset.get("tables"), **labels)
        add("slony_set_sequences", sset.get("sequences"), **labels)
        add("slony_set_locked", sset.get("locked"), **labels)
    if "drift" in facts:
        for kind in DRIFT_KINDS:
            add("slony_drift_objects", sum(1 for d in facts["drift"] if d.get("kind") == kind),
                kind=kind)
    if "compared_nodes" in facts:
        add("slony_drift_compared_nodes", len(facts["compared_nodes"]))
    if "config_in_flight" in facts:
        add("slony_config_events_in_flight", len(facts["config_in_flight"]))
    if "unreplicated" in facts:
        counts = {}
        for rel in facts["unreplicated"]:
            key = (rel["node"], rel["kind"])
            counts[key] = counts.get(key, 0) + 1
        for (node, kind), count in sorted(counts.items()):
            add("slony_unreplicated_relations", count, node=node, kind=kind)
    return samples


def facts_error(value, name):
    """Why ``value`` is not the result of slony_info (for the filter ``name``), or None."""
    if not isinstance(value, Mapping) or "cluster_name" not in value:
        return ("dany.slony.%s expects the result of dany.slony.slony_info (a dictionary with "
                "cluster_name, lag, slons, ...)" % name)
    return None


def prometheus_text(facts):
    """The facts as Prometheus text-format metrics (HELP, TYPE, samples; ends with a
    newline). Only families with samples are written."""
    samples = metric_samples(facts)
    lines = []
    for name, kind, text in FAMILIES:
        if not samples[name]:
            continue
        lines.append("# HELP %s %s" % (name, _help_text(text)))
        lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples[name]:
            rendered = ",".join('%s="%s"' % (k, _label_value(v)) for k, v in labels)
            lines.append("%s{%s} %s" % (name, rendered, _number(value)))
    return "\n".join(lines) + "\n" if lines else ""


def write_textfile(directory, name, text):
    """Write ``text`` to ``directory/name`` atomically, as node_exporter's textfile
    collector needs: a temporary file in the same directory (named so that the collector,
    which reads ``*.prom``, ignores it), flushed to disk, then renamed over the target.
    Returns the path written."""
    if not name.endswith(".prom"):
        raise ValueError("the textfile collector reads only files named *.prom, not %r" % name)
    target = os.path.join(directory, name)
    handle, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# -- Nagios -----------------------------------------------------------------------------

class Range:
    """A threshold in the Nagios plugin guidelines' syntax: ``10`` alerts outside 0..10,
    ``10:`` below 10, ``~:10`` above 10, ``10:20`` outside 10..20, ``@10:20`` inside."""

    def __init__(self, text):
        self.text = str(text).strip()
        body = self.text
        self.inside = body.startswith("@")
        if self.inside:
            body = body[1:]
        try:
            if ":" in body:
                low, high = body.split(":", 1)
                self.start = float("-inf") if low == "~" else float(low or 0)
                self.end = float(high) if high != "" else float("inf")
            else:
                self.start, self.end = 0.0, float(body)
        except ValueError:
            raise ValueError("invalid threshold %r: use N, N:, ~:N, N:M or @N:M" % self.text)
        if self.start > self.end:
            raise ValueError("invalid threshold %r: its start is above its end" % self.text)

    def alerts(self, value):
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def __repr__(self):
        return "Range(%r)" % self.text


# Measure -> (unit in perfdata, default warning, default critical). None: no threshold.
# Causes before their effects: problems of the same state are reported in this order.
MEASURES = (
    ("nodes_unreachable", "", None, "0"),
    ("slons_stopped", "", None, "0"),
    ("lag_events", "", "100", "1000"),
    ("lag_seconds", "s", "60", "300"),
    ("copies_unfinished", "", "0", None),
    ("drift", "", "0", None),
)
DEFAULT_THRESHOLDS = dict((name + "_" + level, value)
                          for name, _unit, warning, critical in MEASURES
                          for level, value in (("warning", warning), ("critical", critical)))


def _threshold(thresholds, key):
    value = thresholds.get(key, DEFAULT_THRESHOLDS[key])
    if value is None or str(value).strip() == "":
        return None
    return Range(value)


def _fmt(value):
    if isinstance(value, float):
        return ("%.3f" % value).rstrip("0").rstrip(".")
    return str(value)


def _perf_label(label):
    return label if re.match(r"^[A-Za-z0-9_.-]+$", label) else "'%s'" % label.replace("'", "''")


def measures(facts):
    """{measure: (value, detail)} of what the facts hold; a measure whose section is
    absent is left out. ``detail`` names what gives the value (for the status line)."""
    out = {}
    if "lag" in facts:
        rows = [r for r in facts["lag"] if r.get("lag_events") is not None]
        if rows:
            worst = max(rows, key=lambda r: r["lag_events"])
            out["lag_events"] = (worst["lag_events"], worst)
        # An origin whose slon is stopped creates no events: its lag in seconds grows while
        # its receivers have everything (the stopped slon is reported on its own).
        rows = [r for r in facts["lag"] if r.get("lag_seconds") is not None]
        rows = [r for r in rows if r.get("origin_slon_running") is not False]
        if rows:
            worst = max(rows, key=lambda r: r["lag_seconds"])
            out["lag_seconds"] = (float(worst["lag_seconds"]), worst)
    if "slons" in facts:
        stopped = [s["node"] for s in facts["slons"] if s.get("running") is False]
        out["slons_stopped"] = (len(stopped), stopped)
    if "unreachable_nodes" in facts:
        bad = [u["node"] for u in facts["unreachable_nodes"]]
        out["nodes_unreachable"] = (len(bad), bad)
    if "drift" in facts:
        # Drift while configuration events are in flight may settle: not counted.
        real = [d for d in facts["drift"] if not d.get("settling")]
        out["drift"] = (len(real), real)
    if "subscriptions" in facts:
        unfinished = [s for s in facts["subscriptions"] if s.get("complete") is False]
        out["copies_unfinished"] = (len(unfinished), unfinished)
    return out


def _nodes(label, nodes):
    """``node 3`` / ``nodes 2, 3``."""
    return "%s%s %s" % (label, "s" if len(nodes) > 1 else "", ", ".join(str(n) for n in nodes))


def _describe(name, value, detail):
    if name == "lag_events":
        return "node %d is %d events behind node %d" % (detail["receiver"], value, detail["origin"])
    if name == "lag_seconds":
        return "node %d is %.1f s behind node %d" % (detail["receiver"], value, detail["origin"])
    if name == "slons_stopped":
        return "slon of %s stopped" % _nodes("node", detail)
    if name == "nodes_unreachable":
        return "%s unreachable" % _nodes("node", detail)
    if name == "drift":
        return "drift: %s" % "; ".join(d.get("message", d.get("kind", "?")) for d in detail[:3]) + (
            " (and %d more)" % (len(detail) - 3) if len(detail) > 3 else "")
    return "copy unfinished: %s" % ", ".join(
        "set %d on node %d" % (s["set"], s["receiver"]) for s in detail)


def nagios_check(facts, thresholds=None, pair_perfdata=True):
    """(exit code, status line, problems) of the facts against ``thresholds``.

    ``thresholds`` maps ``<measure>_warning`` / ``<measure>_critical`` to a range (see
    :class:`Range`; None or "" - no threshold) over :data:`DEFAULT_THRESHOLDS`; the
    measures are ``lag_events`` and ``lag_seconds`` (the worst pair), ``slons_stopped``,
    ``nodes_unreachable``, ``drift`` (not counting drift that may settle) and
    ``copies_unfinished`` (subscriptions whose copy is not done). The line is
    ``SLONY <STATE> - <summary> | <perfdata>``; the performance data has each measure
    with its thresholds, then (``pair_perfdata``) the lag of every pair,
    ``lag_events_<origin>_<receiver>`` and ``lag_seconds_<origin>_<receiver>`` (leave
    them out on a large cluster when the transport limits the output, as NRPE does to 1 KiB).
    UNKNOWN when the facts hold none of the measures."""
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(DEFAULT_THRESHOLDS))
    if unknown:
        raise ValueError("unknown threshold(s) %s; known: %s"
                         % (", ".join(unknown), ", ".join(sorted(DEFAULT_THRESHOLDS))))
    cluster = facts.get("cluster_name", "?")
    found = measures(facts)
    have = [m for m in MEASURES if m[0] in found]
    if not any(m[0] in found for m in MEASURES if m[0] != "nodes_unreachable"):
        line = "SLONY UNKNOWN - cluster %s: the facts hold no lag, slons, drift or subscriptions" % cluster
        return UNKNOWN, line, []
    code, problems, perf = OK, [], []
    for name, unit, _warning, _critical in have:
        value, detail = found[name]
        warning = _threshold(thresholds, name + "_warning")
        critical = _threshold(thresholds, name + "_critical")
        if critical is not None and critical.alerts(value):
            problems.append((CRITICAL, _describe(name, value, detail)))
            code = CRITICAL
        elif warning is not None and warning.alerts(value):
            problems.append((WARNING, _describe(name, value, detail)))
            code = max(code, WARNING)
        # Counts of nodes have a maximum: the nodes of admin_conninfo (one slon entry each).
        counts_nodes = name in ("slons_stopped", "nodes_unreachable")
        top = str(len(facts["slons"])) if counts_nodes and "slons" in facts else ""
        limits = (warning.text if warning else "", critical.text if critical else "")
        perf.append("%s=%s%s;%s;%s;0;%s" % ((_perf_label(name), _fmt(value), unit) + limits + (top,)))
    for row in (facts.get("lag") or []) if pair_perfdata else []:
        pair = "%d_%d" % (row["origin"], row["receiver"])
        if row.get("lag_events") is not None:
            perf.append("lag_events_%s=%s;;;0;" % (pair, row["lag_events"]))
        if row.get("lag_seconds") is not None:
            perf.append("lag_seconds_%s=%ss;;;0;" % (pair, _fmt(float(row["lag_seconds"]))))
    if problems:
        problems.sort(key=lambda p: -p[0])
        # "|" starts the performance data, and the output is one line.
        summary = re.sub(r"[|\r\n]+", " ", "; ".join(text for _level, text in problems))
    else:
        slons = facts.get("slons") or []
        parts = ["%d nodes read" % len([s for s in slons if s.get("running") is not None])] if slons else []
        if "slons_stopped" in found:
            parts.append("%d slons running" % sum(1 for s in slons if s.get("running")))
        if "lag_events" in found:
            parts.append("max lag %d events" % found["lag_events"][0])
        if "lag_seconds" in found:
            parts.append("%.1f s" % found["lag_seconds"][0])
        summary = ", ".join(parts) or "no problem"
    line = "SLONY %s - cluster %s: %s | %s" % (STATE_NAMES[code], cluster, summary, " ".join(perf))
    return code, line, [text for _level, text in problems]


# -- the check script -------------------------------------------------------------------

class UsageError(Exception):
    """A bad command line (main reports it as UNKNOWN)."""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit UNKNOWN (3), not argparse's 2 (which Nagios reads as CRITICAL)."""

    def error(self, message):
        raise UsageError(message)


def _node_conninfo(text):
    node, sep, conninfo = text.partition("=")
    if not sep or not node.strip().isdigit() or not conninfo.strip():
        raise argparse.ArgumentTypeError("expected NODE=CONNINFO (e.g. 1='host=db1 dbname=shop user=slony')")
    return int(node), conninfo


def build_parser():
    parser = _Parser(
        prog="check_slony",
        description="Check a Slony-I cluster as a Nagios / Icinga plugin (exit status OK 0, "
                    "WARNING 1, CRITICAL 2, UNKNOWN 3; one status line with performance data), "
                    "or print its Prometheus metrics. Reads every node as dany.slony.slony_info "
                    "does. Thresholds are Nagios ranges (N alerts above N; N:, ~:N, N:M, @N:M); "
                    "an empty value disables one.",
        epilog="Keep passwords out of the command line: use ~/.pgpass (or PGPASSFILE) or "
               "a --config file readable only by the monitoring user.")
    parser.add_argument("--cluster-name", help="the cluster name (without the leading underscore)")
    parser.add_argument("--conninfo", action="append", type=_node_conninfo, default=[],
                        metavar="NODE=CONNINFO", help="admin libpq conninfo of a node; once per node")
    parser.add_argument("--config", metavar="FILE",
                        help="a cluster file as dany.api.Cluster.from_config reads it (JSON, or "
                             "YAML with PyYAML): cluster_name and nodes, or an Ansible inventory")
    parser.add_argument("--connect-timeout", type=int, default=5, metavar="SECONDS",
                        help="libpq connect_timeout per node (default 5)")
    parser.add_argument("--format", choices=("nagios", "prometheus", "json"), default="nagios",
                        help="what to print: the Nagios status line (default), the metrics, "
                             "or the facts as JSON")
    parser.add_argument("--textfile-dir", metavar="DIR",
                        help="also write the metrics to DIR/--textfile-name atomically "
                             "(node_exporter's --collector.textfile.directory)")
    parser.add_argument("--textfile-name", metavar="NAME",
                        help="file name in --textfile-dir (default slony_<cluster>.prom)")
    parser.add_argument("--no-pair-perfdata", dest="pair_perfdata", action="store_false",
                        help="leave the lag of each origin/receiver pair out of the performance "
                             "data (a shorter line for a large cluster)")
    for name, _unit, warning, critical in MEASURES:
        option = name.replace("_", "-")
        parser.add_argument("--%s-warning" % option, dest=name + "_warning", default=warning,
                            metavar="RANGE", help="warning threshold of %s (default %s)"
                            % (name, warning if warning is not None else "none"))
        parser.add_argument("--%s-critical" % option, dest=name + "_critical", default=critical,
                            metavar="RANGE", help="critical threshold of %s (default %s)"
                            % (name, critical if critical is not None else "none"))
    return parser


def _read_facts(args):
    from .api import Cluster
    kwargs = {"connect_timeout": args.connect_timeout}
    if args.config:
        if args.config.endswith(".json"):
            with open(args.config) as handle:
                cluster = Cluster.from_config(json.load(handle), **kwargs)
        else:
            cluster = Cluster.from_yaml(args.config, **kwargs)
        if args.cluster_name and args.cluster_name != cluster.name:
            raise ValueError("--cluster-name %s differs from the cluster of %s (%s)"
                             % (args.cluster_name, args.config, cluster.name))
        if args.conninfo:
            raise ValueError("give either --config or --conninfo, not both")
    else:
        if not args.cluster_name or not args.conninfo:
            raise ValueError("give --cluster-name and one --conninfo NODE=CONNINFO per node, or --config")
        nodes = dict(args.conninfo)
        if len(nodes) != len(args.conninfo):
            raise ValueError("a node is given twice in --conninfo")
        cluster = Cluster(args.cluster_name, nodes, **kwargs)
    return cluster.info(["nodes", "sets", "subscriptions", "lag", "slons", "drift"])


def _safe_message(exc):
    text = str(exc) or exc.__class__.__name__
    try:
        from .conninfo import mask_password_patterns
    except ImportError:  # pragma: no cover - without psycopg2 nothing could be read anyway
        return re.sub(r"(password\s*=\s*)\S+", r"\1********", text, flags=re.I)
    return mask_password_patterns(text)


def main(argv=None):
    """The check script; returns the exit status (Nagios codes for ``--format nagios``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write("SLONY UNKNOWN - %s\n" % exc)
        return UNKNOWN
    thresholds = dict((key, getattr(args, key)) for key in DEFAULT_THRESHOLDS)
    try:
        for key, value in thresholds.items():
            if value not in (None, ""):
                Range(value)
        facts = _read_facts(args)
    except Exception as exc:  # anything that stops the check: report UNKNOWN, never a traceback
        sys.stdout.write("SLONY UNKNOWN - %s\n" % _safe_message(exc).replace("\n", " "))
        return UNKNOWN
    text = prometheus_text(facts)
    if args.textfile_dir:
        try:
            write_textfile(args.textfile_dir, args.textfile_name or "slony_%s.prom" % facts["cluster_name"], text)
        except (OSError, ValueError) as exc:
            sys.stdout.write("SLONY UNKNOWN - cannot write the metrics: %s\n" % exc)
            return UNKNOWN
    if args.format == "prometheus":
        sys.stdout.write(text)
        return OK
    if args.format == "json":
        sys.stdout.write(json.dumps(facts, indent=2, sort_keys=True, default=str) + "\n")
        return OK
    code, line, _problems = nagios_check(facts, thresholds, pair_perfdata=args.pair_perfdata)
    sys.stdout.write(line + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
