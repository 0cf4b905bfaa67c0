# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DDL through Slony: slonik's EXECUTE SCRIPT, plus a SYNC and a bounded wait.

What slonik 2.2 does, and so what this does (reference section 2.25):

1. substitute ``@CLUSTERNAME@``, ``@MODULEVERSION@`` and ``@NAMESPACE@`` in the script;
2. split it into statements (:func:`split_statements`);
3. in ONE transaction on the event node E, in ``session_replication_role = local``,
   run ``select "_<cl>".ddlCapture(<statement>, <nodes>)`` for each statement (it logs
   the statement into ``sl_log_script`` and executes it), then
   ``select "_<cl>".ddlScript_complete(<nodes>)``; commit.

No event is created: the script travels in ``sl_log_script`` and every node that
processes E's SYNC events applies it (with ``only_on``, only the listed nodes do),
in order with E's other data. So, to know when it is applied everywhere, a SYNC is
created on E after the commit and waited for until every node (or every ``only_on``
node) has confirmed it.

Idempotence (``key``). Slony's catalog keeps no durable trace of a script
(``sl_log_script`` is purged), so a re-run cannot be detected from it. When a key is
given, three statements are added to the script itself - ``create schema if not
exists dany_slony``, ``create table if not exists dany_slony.script_log (...)`` and
an upsert of the key - so they travel and are applied exactly like the user's DDL:
on every node, the key row exists if and only if the script was applied there, in
the same transaction (a replica applies a SYNC's script rows in one transaction).
A re-run looks the key up on the event node and does nothing when it is there. The
table lives in a schema of our own, never in Slony's ``_<cluster>`` schema, which
Slony owns (UNINSTALL NODE drops it, upgrades rewrite it). It is written with
``session_replication_role = local`` on every node, so even a set that happened to
include it would not replicate its rows twice.

Check mode runs every statement on the event node in a transaction that is rolled
back (through a temporary PL/pgSQL function that ``EXECUTE``s it, as ``ddlCapture``
does), so parse and planning errors are reported with the failing statement and
nothing stays behind - except what PostgreSQL never rolls back: values taken from
existing sequences (``nextval``/``setval``) by the script. The statements of a script
often take ACCESS EXCLUSIVE locks; so that a check neither queues behind the
application nor makes the application queue behind it, the check waits at most
``lock_timeout`` seconds for each lock (``set local lock_timeout``), and when a lock is
not granted in time, fails naming the relation and the sessions holding it.

Planning reads first (:func:`read_for_script`: the event node's catalog, its settings,
the key's records), then decides from what was read (:func:`decide_script`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
from collections import namedtuple

from .slonik import MAX_LITERAL, fits_a_literal, quote as slonik_quote
from .pg import psycopg2, sql

from .catalog import read_snapshot
from .cluster import NODE_INITIALIZED
from .errors import SlonyError
from .events import submit_event
from .names import validate_node_id
from .plan import CALLBACK, Plan, Planned, Step, wait

KEY_SCHEMA = "dany_slony"
KEY_TABLE = "script_log"
MAX_KEY_LENGTH = 200

# One statement of a script: its 1-based number, the line of the script where its first
# token is, and its text (surrounding whitespace removed, comments before it kept, ``;``
# kept).
Statement = namedtuple("Statement", "index line sql")

# A key already recorded on a node.
KeyRecord = namedtuple("KeyRecord", "checksum event_node only_on applied_at")


class ScriptSyntaxError(SlonyError):
    """The script cannot be split into statements (an unterminated quote, ...)."""


# -- token substitution -------------------------------------------------------------------

def substitute_tokens(text, cluster_name, module_version):
    """The three tokens slonik replaces in EXECUTE SCRIPT (and only those three)."""
    namespace = '"_%s"' % cluster_name.replace('"', '""')
    return (text.replace("@CLUSTERNAME@", cluster_name)
            .replace("@MODULEVERSION@", module_version)
            .replace("@NAMESPACE@", namespace))


# -- statement splitting ------------------------------------------------------------------

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_DOLLAR_TAG_RE = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")


def _ident_start(ch):
    return ch.isalpha() or ch == "_" or ch >= "\x80"


def _ident_cont(ch):
    return ch.isalnum() or ch in "_$" or ch >= "\x80"


def _line_of(text, pos):
    return text.count("\n", 0, pos) + 1


# (Long for its docstring: the rules below are the contract of the scanner loop.)
def split_statements(text, standard_conforming_strings=True):
    """Split a script into :class:`Statement` the way slonik's scanner does.

    The rules (slonik's ``scan_for_statements``, read against PostgreSQL's lexer):

    * a statement ends at a ``;`` that is outside quotes and comments **and** at
      nesting depth zero of ``()``, ``[]`` and ``{}`` - so ``CREATE RULE ... DO
      (stmt; stmt)`` stays one statement;
    * quotes: ``'...'`` (``''`` inside), ``"..."`` (``""`` inside), ``$$...$$`` and
      ``$tag$...$tag$``; backslash escapes in ``E'...'`` strings, and in plain strings
      when ``standard_conforming_strings`` is off;
    * comments: ``-- ...`` to the end of the line and ``/* ... */`` (nested, as in
      PostgreSQL); a comment after a ``;`` belongs to the next statement;
    * each statement keeps its ``;``; text after the last ``;`` is a statement too
      (a final statement without ``;`` is not lost).

    Where slonik's scanner disagrees with PostgreSQL, PostgreSQL wins: slonik treats a
    backslash as an escape in every quoted text (``'C:\\'`` would swallow the rest of
    the script), stops splitting after a division sign ``/``, does not nest comments
    and takes ``foo$bar$`` for the start of a dollar quote. Pieces holding nothing but
    whitespace and comments (which slonik sends as no-op statements) are left out.
    Unterminated quotes or comments and unbalanced brackets are reported with their
    line instead of producing a statement PostgreSQL would reject anyway.
    """
    n = len(text)
    statements = []
    opened = {"(": [], "[": [], "{": []}  # positions of the open brackets, per kind
    start = 0          # where the current piece starts
    content = None     # where its first token (not whitespace, not comment) is, if any
    i = 0

    def finish(end):
        stripped = text[start:end].strip()
        if content is not None and stripped:
            statements.append(Statement(len(statements) + 1, _line_of(text, content), stripped))

    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if text.startswith("--", i):
            j = i + 2
            while j < n and text[j] not in "\r\n":
                j += 1
            i = j
            continue
        if text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        if ch == ";" and not any(opened.values()):
            finish(i + 1)  # a piece with nothing but ";" is no statement
            start, content = i + 1, None
            i += 1
            continue
        if content is None:
            content = i
        if ch == "'":
            i = _skip_string(text, i, not standard_conforming_strings)
        elif ch == '"':
            i = _skip_quoted(text, i, '"', "quoted identifier")
        elif ch == "$":
            i = _skip_dollar_quote(text, i)
        elif _ident_start(ch):
            j = i + 1
            while j < n and _ident_cont(text[j]):
                j += 1
            if j < n and text[j] == "'" and text[i:j] in ("E", "e"):
                i = _skip_string(text, j, True)
            else:
                i = j
        elif ch in _OPENERS:
            opened[ch].append(i)
            i += 1
        elif ch in _CLOSERS:
            if not opened[_CLOSERS[ch]]:
                raise ScriptSyntaxError("unbalanced '%s' at line %d of the script (no '%s' "
                                        "open)" % (ch, _line_of(text, i), _CLOSERS[ch]))
            opened[_CLOSERS[ch]].pop()
            i += 1
        else:
            i += 1
    for opener, positions in sorted(opened.items()):
        if positions:
            raise ScriptSyntaxError("'%s' opened at line %d of the script is never closed "
                                    "with '%s'" % (opener, _line_of(text, positions[-1]),
                                                   _OPENERS[opener]))
    finish(n)
    return statements


def _skip_block_comment(text, i, strict=True):
    """Position after the (nested) ``/* */`` comment starting at ``i``; an unterminated
    one is an error, or (``strict`` false) runs to the end of the text."""
    n = len(text)
    depth, j = 1, i + 2
    while depth:
        if j >= n:
            if not strict:
                return n
            raise ScriptSyntaxError("unterminated /* comment starting at line %d of "
                                    "the script" % _line_of(text, i))
        if text.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif text.startswith("*/", j):
            depth, j = depth - 1, j + 2
        else:
            j += 1
    return j


def _skip_dollar_quote(text, i):
    """Position after the dollar-quoted string at ``i``, or after the ``$`` when it
    starts none (a parameter ``$1``, a lone ``$``)."""
    match = _DOLLAR_TAG_RE.match(text, i)
    if match is None:
        return i + 1
    tag = match.group(0)
    close = text.find(tag, match.end())
    if close < 0:
        raise ScriptSyntaxError("unterminated dollar-quoted string %s starting at line "
                                "%d of the script" % (tag, _line_of(text, i)))
    return close + len(tag)


def _skip_string(text, i, backslash_escapes):
    """Position after the string literal whose opening quote is at ``i``."""
    n = len(text)
    j = i + 1
    while j < n:
        ch = text[j]
        if ch == "\\" and backslash_escapes:
            j += 2
        elif ch == "'":
            if j + 1 < n and text[j + 1] == "'":
                j += 2
            else:
                return j + 1
        else:
            j += 1
    raise ScriptSyntaxError("unterminated quoted string starting at line %d of the script"
                            % _line_of(text, i))


def _skip_quoted(text, i, quote, what):
    n = len(text)
    j = i + 1
    while True:
        k = text.find(quote, j)
        if k < 0:
            raise ScriptSyntaxError("unterminated %s starting at line %d of the script"
                                    % (what, _line_of(text, i)))
        if k + 1 < n and text[k + 1] == quote:
            j = k + 2
            continue
        return k + 1


_WORDS_RE = re.compile(r"[A-Za-z_]+")


def first_token_offset(statement_sql):
    """Where the first token of a statement is, after whitespace and (nested) comments."""
    text, i, n = statement_sql, 0, len(statement_sql)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            while i < n and text[i] not in "\r\n":
                i += 1
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i, strict=False)
        else:
            break
    return i


def first_words(statement_sql, count=2):
    """The first ``count`` words of a statement, upper case, after leading comments."""
    body = statement_sql[first_token_offset(statement_sql):]
    words = []
    for match in _WORDS_RE.finditer(body):
        if len(words) == count:
            break
        words.append(match.group(0).upper())
    return words


_TRANSACTION_CONTROL = {
    "BEGIN": None, "START": "TRANSACTION", "COMMIT": None, "END": None, "ABORT": None,
    "ROLLBACK": None, "PREPARE": "TRANSACTION",
}


def transaction_control(statement_sql):
    """The transaction-control command a statement is, or None (SAVEPOINT and
    ROLLBACK TO are allowed: they stay inside the script's transaction)."""
    words = first_words(statement_sql)
    if not words or words[0] not in _TRANSACTION_CONTROL:
        return None
    second = _TRANSACTION_CONTROL[words[0]]
    if second is not None and (len(words) < 2 or words[1] != second):
        return None
    if words[0] == "ROLLBACK" and len(words) > 1 and words[1] == "TO":
        return None
    return " ".join(words[:2]) if second else words[0]


def check_statements(statements):
    """Refuse what cannot run inside the one transaction EXECUTE SCRIPT uses."""
    if not statements:
        raise SlonyError("the script contains no SQL statement")
    bad = []
    for stmt in statements:
        command = transaction_control(stmt.sql)
        if command:
            bad.append("statement %d (line %d) is %s" % (stmt.index, stmt.line, command))
    if bad:
        raise SlonyError("the script must not control transactions (Slony runs it in one "
                         "transaction on the event node, and replays it in the SYNC's "
                         "transaction on every other node; SAVEPOINT is fine): %s"
                         % "; ".join(bad))


# -- key bookkeeping ----------------------------------------------------------------------

def quote_literal(text):
    """A PostgreSQL string literal for ``text``, whatever standard_conforming_strings is."""
    if "\x00" in text:
        raise SlonyError("text for an SQL literal must not contain NUL characters")
    if "\\" in text:
        return "E'%s'" % text.replace("\\", "\\\\").replace("'", "''")
    return "'%s'" % text.replace("'", "''")


def validate_key(key):
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip():
        raise SlonyError("key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise SlonyError("key is %d characters long; at most %d are allowed"
                         % (len(key), MAX_KEY_LENGTH))
    if any(ord(ch) < 32 for ch in key):
        raise SlonyError("key %r must not contain control characters" % key)
    return key


def script_checksum(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_statements(cluster_name, key, checksum, event_node, only_on):
    """The statements that record ``key``; they travel with the script."""
    qualified = '%s.%s' % (KEY_SCHEMA, KEY_TABLE)
    only_on_literal = ("'{%s}'::integer[]" % ",".join(str(n) for n in only_on)
                       if only_on else "null")
    return [
        "create schema if not exists %s;" % KEY_SCHEMA,
        ("create table if not exists %s (\n"
         "    cluster_name name not null,\n"
         "    key text not null,\n"
         "    checksum text not null,\n"
         "    event_node integer not null,\n"
         "    only_on integer[],\n"
         "    applied_at timestamptz not null default now(),\n"
         "    primary key (cluster_name, key));" % qualified),
        ("insert into %s (cluster_name, key, checksum, event_node, only_on)\n"
         "values (%s, %s, %s, %d, %s)\n"
         "on conflict (cluster_name, key) do update\n"
         "   set checksum = excluded.checksum, event_node = excluded.event_node,\n"
         "       only_on = excluded.only_on, applied_at = now();"
         % (qualified, quote_literal(cluster_name), quote_literal(key), quote_literal(checksum),
            event_node, only_on_literal)),
    ]


_KEY_LOOKUP = ("select checksum, event_node, only_on, applied_at::text from {}.{} "
               "where cluster_name = %s and key = %s")


def read_key(cluster, node, key):
    """The :class:`KeyRecord` of ``key`` on ``node``, or None."""
    rows = cluster.fetch(node, "select to_regclass(%s) is not null",
                         ("%s.%s" % (KEY_SCHEMA, KEY_TABLE),))
    if not rows[0][0]:
        return None
    rows = cluster.fetch(node, sql.SQL(_KEY_LOOKUP).format(
        sql.Identifier(KEY_SCHEMA), sql.Identifier(KEY_TABLE)), (cluster.name, key))
    return KeyRecord(*rows[0]) if rows else None


# -- choosing the nodes ---------------------------------------------------------------------

def normalize_only_on(only_on):
    if only_on is None:
        return None
    if not isinstance(only_on, (list, tuple)) or not only_on:
        raise SlonyError("only_on must be a non-empty list of node ids")
    return sorted(set(validate_node_id(n, "only_on entry") for n in only_on))


def choose_event_node(snapshot, admin_nodes, event_node=None, only_on=None):
    """The node the script is submitted on.

    The given ``event_node``; else the lowest node that is the origin of a set (the
    script then travels in order with that origin's data, which is what DDL on its
    tables needs); else the lowest node of the cluster. With ``only_on``, only its
    nodes are candidates (Slony requires the event node to be in the list). Only
    nodes of ``admin_nodes`` (which we can connect to) qualify.
    """
    nodes = dict((n.id, n) for n in snapshot.nodes.values())
    if event_node is not None:
        if event_node not in nodes:
            raise SlonyError("event_node %d is not a node of the cluster (nodes: %s)" % (
                event_node, _ids(nodes)), node=event_node)
        if event_node not in admin_nodes:
            raise SlonyError("event_node %d has no entry in admin_conninfo" % event_node,
                             node=event_node)
        if only_on is not None and event_node not in only_on:
            raise SlonyError(
                "event_node %d is not in only_on (%s): Slony runs the script on the event "
                "node first, so the event node must be one of the only_on nodes; leave "
                "event_node out to use the lowest only_on node" % (event_node, _ids(only_on)),
                node=event_node)
        return event_node
    candidates = [n for n in sorted(nodes)
                  if nodes[n].active and n in admin_nodes and (only_on is None or n in only_on)]
    if not candidates:
        raise SlonyError("no node can be the event node: it must be an active node of the "
                         "cluster with an entry in admin_conninfo%s" % (
                             " and one of only_on (%s)" % _ids(only_on) if only_on else ""))
    origins = set(s.origin for s in snapshot.sets.values())
    for node in candidates:
        if node in origins:
            return node
    return candidates[0]


def _ids(nodes):
    return ", ".join(str(n) for n in sorted(nodes))


def check_only_on(snapshot, only_on):
    if only_on is None:
        return
    unknown = [n for n in only_on if n not in snapshot.nodes]
    if unknown:
        raise SlonyError("only_on names node(s) %s, which node %d does not know as nodes of "
                         "the cluster (nodes: %s)" % (_ids(unknown), snapshot.node,
                                                      _ids(snapshot.nodes)),
                         node=snapshot.node)
    inactive = [n for n in only_on if not snapshot.nodes[n].active]
    if inactive:
        raise SlonyError("only_on names inactive node(s) %s" % _ids(inactive),
                         node=snapshot.node)


def target_nodes(snapshot, event_node, only_on):
    """The nodes the script runs on: ``only_on``, or every active node."""
    if only_on is not None:
        return list(only_on)
    return sorted(n.id for n in snapshot.nodes.values() if n.active or n.id == event_node)


# -- the plan ------------------------------------------------------------------------------

def slonik_text(statements, event_node, only_on, source=None):
    """EXECUTE SCRIPT of ``statements``: ``filename`` for a script from a file, ``sql`` for
    one short enough for slonik's string literals, else ``filename = 'script.sql'`` after
    a comment saying that the SQL (the returned queries) goes there."""
    body = "\n".join(s.sql for s in statements)
    prefix = ""
    if source is not None:
        what = "filename = %s" % slonik_quote(source)
    elif fits_a_literal(body):
        what = "sql = %s" % slonik_quote(body)
    else:
        prefix = ("# slonik 2.2 aborts on a string literal of more than %d characters: "
                  "save the script's SQL (%d characters) as script.sql\n" % (MAX_LITERAL, len(body)))
        what = "filename = 'script.sql'"
    text = prefix + "execute script (%s, event node = %d" % (what, event_node)
    if only_on is not None:
        text += ", execute only on = %s" % (
            str(only_on[0]) if len(only_on) == 1 else "'%s'" % ",".join(map(str, only_on)))
    return text + ");"


def _nodes_param(only_on):
    return ",".join(str(n) for n in only_on) if only_on is not None else None


def capture_query(ns, statements, only_on):
    """[(query, params)]: one ddlCapture call per statement, then ddlScript_complete.

    The node list is NULL (every node) or ``'3'`` / ``'1,3'``, as slonik passes it."""
    nodes = _nodes_param(only_on)
    capture = sql.SQL("select {}.ddlcapture(%s, %s)").format(ns)
    complete = sql.SQL("select {}.ddlscript_complete(%s)").format(ns)
    calls = [(capture, (s.sql, nodes)) for s in statements] + [(complete, (nodes,))]
    return calls


def build_plan(ns, cluster_name, event_node, statements, only_on, confirmers, key=None,
               source=None, wait_timeout=None):
    """The steps of a script run (pure; ``statements`` already include the key's)."""
    calls = capture_query(ns, statements, only_on)
    shown = sql.SQL(";\n").join(q for q, dummy in calls)
    params = tuple(p for dummy, ps in calls for p in ps)
    plan = Plan()
    run = plan.add(Step(
        CALLBACK, event_node,
        "execute %d statement(s) through Slony in one transaction on node %d%s%s" % (
            len(statements), event_node,
            "" if only_on is None else " (only on node(s) %s)" % _ids(only_on),
            "" if key is None else ", recording key %r" % key),
        slonik=slonik_text(statements, event_node, only_on, source),
        query=shown, params=params, run=_run_capture))
    run.calls = calls
    run.statements = statements
    sync = sql.SQL("select {}.createevent(%s, 'SYNC')").format(ns)
    plan.add(Step(CALLBACK, event_node,
                  "create a SYNC on node %d: the nodes apply the script when they process it"
                  % event_node, slonik="sync (id = %d);" % event_node,
                  query=sync, params=("_" + cluster_name,), run=_run_sync))
    others = [n for n in confirmers if n != event_node]
    if others:
        slonik = None
        if wait_timeout is not None:
            slonik = "\n".join(
                "wait for event (origin = %d, confirmed = %s, wait on = %d, timeout = %d);"
                % (event_node, "all" if only_on is None else n, event_node, wait_timeout)
                for n in (["all"] if only_on is None else others))
        plan.add(wait(event_node, "wait until node(s) %s have applied the script (confirmed "
                                  "the SYNC)" % _ids(others),
                      confirmers=None if only_on is None else others, slonik=slonik))
    return plan


def describe_statement(stmt, limit=300):
    text = stmt.sql if len(stmt.sql) <= limit else stmt.sql[:limit - 3] + "..."
    where = ("line %d of the script" % stmt.line if stmt.line
             else "added to record the key")
    return "statement %d (%s): %s" % (stmt.index, where, text)


def statement_error(cluster, node, stmt, exc, what):
    """A SlonyError naming the statement, the node and PostgreSQL's message, with the
    line of the script PostgreSQL's error position points at, when it gives one."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc)).strip()
    where = ""
    position = getattr(diag, "internal_position", None)
    if stmt.line and position and getattr(diag, "internal_query", None) == stmt.sql:
        # stmt.line is the line of the first token, after the comments the text starts with.
        before_token = stmt.sql.count("\n", 0, first_token_offset(stmt.sql))
        before_error = stmt.sql.count("\n", 0, int(position) - 1)
        where = " (at line %d of the script)" % (stmt.line - before_token + before_error)
    text = "%s failed on node %d at %s: %s%s" % (what, node, describe_statement(stmt), message,
                                                 where)
    return SlonyError(cluster.redactor.text(text), node=node, queries=cluster.queries)


def _run_capture(cluster, step, ctx):
    """One transaction on the event node: every ddlCapture, then ddlScript_complete."""
    del ctx
    node = step.node
    conn = cluster.connection(node)
    done = []
    try:
        with conn.cursor() as cur:
            for number, (query, params) in enumerate(step.calls):
                current = step.statements[number] if number < len(step.statements) else None
                try:
                    cur.execute(query, params)
                except psycopg2.Error as exc:
                    conn.rollback()
                    if current is None:
                        raise cluster.error(node, exc, doing="ddlScript_complete")
                    raise statement_error(cluster, node, current, exc,
                                          "the script (rolled back; nothing was changed)")
                done.append(cluster.render(node, query, params))
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise cluster.error(node, exc, doing="commit of the script")
    for text in done:
        cluster.log(node, text)
    return []


def _run_sync(cluster, step, ctx):
    del ctx
    return submit_event(cluster, step.node, step.query, step.params, locks=("sl_event_lock",))


_TRY_FUNCTION = """
create function pg_temp.dany_slony_try(p_statement text) returns void
language plpgsql as $body$ begin execute p_statement; end $body$
"""

# How long check mode's validation waits for a lock before it gives up, by default.
DEFAULT_LOCK_TIMEOUT = 5
LOCK_NOT_AVAILABLE = "55P03"


def lock_timeout_setting(lock_timeout):
    """The value of ``set local lock_timeout`` for ``lock_timeout`` seconds, or None
    (0 or None: no limit of ours, the server's setting applies)."""
    if lock_timeout is None or lock_timeout == 0:
        return None
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) \
            or lock_timeout < 0:
        raise SlonyError("lock_timeout must be a number of seconds, 0 or more (0: no limit); "
                         "got %r" % (lock_timeout,))
    return "%dms" % max(1, int(round(lock_timeout * 1000)))


def validate_on_node(cluster, node, statements, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    """Run the statements on ``node`` as ddlCapture would, then roll everything back.

    Each lock the statements take is waited for at most ``lock_timeout`` seconds (the
    statements of a script often take ACCESS EXCLUSIVE locks: a check must not queue
    behind the application, and make the application queue behind it)."""
    setting = lock_timeout_setting(lock_timeout)
    conn = cluster.connection(node)
    conn.rollback()
    failed = None
    try:
        with conn.cursor() as cur:
            # Check mode's sessions are read-only; this transaction writes, and is rolled
            # back whatever happens.
            cur.execute("set transaction read write")
            if setting is not None:
                cur.execute("set local lock_timeout = %s", (setting,))
            cur.execute(_TRY_FUNCTION)
            for stmt in statements:
                try:
                    cur.execute("select pg_temp.dany_slony_try(%s)", (stmt.sql,))
                except psycopg2.Error as exc:
                    if setting is None or exc.pgcode != LOCK_NOT_AVAILABLE:
                        raise statement_error(cluster, node, stmt, exc,
                                              "check mode: the script (rolled back)")
                    failed = stmt
                    break
    finally:
        conn.rollback()
    if failed is not None:
        raise lock_timeout_error(cluster, node, failed, lock_timeout,
                                 read_lock_holders(cluster, node, failed))


_IDENTIFIER_RE = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)')

# Who holds locks on the relations named in a statement (other sessions only).
_LOCK_HOLDERS = """
select n.nspname, c.relname, l.mode, l.pid, a.state, a.application_name,
       extract(epoch from pg_catalog.clock_timestamp() - a.xact_start)::integer
  from pg_catalog.pg_locks l
  join pg_catalog.pg_class c on c.oid = l.relation
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  left join pg_catalog.pg_stat_activity a on a.pid = l.pid
 where l.locktype = 'relation' and l.granted and l.pid <> pg_catalog.pg_backend_pid()
   and l.database = (select oid from pg_catalog.pg_database
                      where datname = pg_catalog.current_database())
   and c.relname = any (%s)
 order by 1, 2, 4, 3
"""

# One lock another session holds: the relation, the lock mode, the session.
LockHolder = namedtuple("LockHolder", "schema name mode pid state application seconds")


def named_identifiers(statement_sql):
    """The identifiers a statement names, as PostgreSQL folds them (candidates for the
    relations it locks)."""
    names = set()
    for quoted, plain in _IDENTIFIER_RE.findall(statement_sql):
        names.add(quoted.replace('""', '"') if quoted else plain.lower())
    return sorted(names)


def read_lock_holders(cluster, node, stmt):
    """The :class:`LockHolder` of the relations ``stmt`` names; [] when they cannot be read."""
    try:
        rows = cluster.fetch(node, _LOCK_HOLDERS, (named_identifiers(stmt.sql),))
    except SlonyError:
        return []
    return [LockHolder(*row) for row in rows]


def lock_timeout_error(cluster, node, stmt, lock_timeout, holders):
    """Check mode could not get a lock within ``lock_timeout``: which relation, and who
    holds it (``holders``: :class:`LockHolder`)."""
    relations = []
    for holder in holders:
        relation = "%s.%s" % (holder.schema, holder.name)
        if relation not in relations:
            relations.append(relation)
    where = ("line %d of the script" % stmt.line if stmt.line else "added to record the key")
    text = "check mode: statement %d (%s) could not get %s on node %d within lock_timeout " \
        "(%ss)" % (stmt.index, where, "its lock on %s" % ", ".join(relations) if relations
                   else "a lock it needs", node, "%g" % lock_timeout)
    if holders:
        text += ": " + "; ".join(
            "%s on %s.%s held by pid %d (%s%s%s)" % (
                h.mode, h.schema, h.name, h.pid, h.state or "state unknown",
                " for %ds" % h.seconds if h.seconds is not None and h.state != "idle" else "",
                ", application %s" % h.application if h.application else "")
            for h in holders)
    else:
        text += ": another session holds a conflicting lock"
    text += (". Nothing was changed; run the check when the lock is free, or raise "
             "lock_timeout (0: no limit). The %s" % describe_statement(stmt))
    return SlonyError(cluster.redactor.text(text), node=node, queries=cluster.queries)


# -- planning against the cluster ---------------------------------------------------------------


_NODE_SETTINGS = ("select {}.getModuleVersion(), "
                  "current_setting('standard_conforming_strings') = 'on'")

# What plan_script reads before it decides: the event node's catalog, its Slony module
# version and standard_conforming_strings, the key's record there (a KeyRecord or
# None), and when it is recorded, {node: KeyRecord or None} on the other nodes that
# can be read.
ScriptRead = namedtuple("ScriptRead", "snapshot version standard_conforming_strings "
                                      "key_record key_elsewhere")


def read_for_script(cluster, event_node=None, only_on=None, key=None):
    """Everything :func:`plan_script` needs from the cluster (:data:`ScriptRead`)."""
    reachable = cluster.initialized_nodes()
    if not reachable:
        raise SlonyError("no node of admin_conninfo is a reachable, initialised node of "
                         "cluster %s" % cluster.name)
    if event_node is not None:
        cluster.require_node(event_node, "event_node")
        cluster.require_initialized(event_node)
        snap = read_snapshot(cluster, event_node)
    else:
        snap = read_snapshot(cluster, reachable[0])
    node = choose_event_node(snap, reachable, event_node, only_on)
    if node != snap.node:
        snap = read_snapshot(cluster, node)
    check_only_on(snap, only_on)
    version, scs = cluster.fetch(node, sql.SQL(_NODE_SETTINGS).format(cluster.ns))[0]
    record = read_key(cluster, node, key) if key is not None else None
    elsewhere = {}
    if record is not None:
        for other in record.only_on or target_nodes(snap, node, only_on):
            if other == node or not cluster.has_node(other):
                continue
            try:
                if cluster.state(other)[0] == NODE_INITIALIZED:
                    elsewhere[other] = read_key(cluster, other, key)
            except SlonyError:
                continue
    return ScriptRead(snap, version, scs, record, elsewhere)


def plan_script(cluster, script, event_node=None, only_on=None, key=None, validate=False,
                source=None, wait_timeout=None, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    """Plan an EXECUTE SCRIPT. Returns :class:`plan.Planned`.

    ``validate`` (check mode) runs the script in a rolled-back transaction on the event
    node, waiting at most ``lock_timeout`` seconds for each lock (0: no limit).
    ``source`` is the file the script came from (for the slonik text only).
    """
    key = validate_key(key)
    only_on = normalize_only_on(only_on)
    if event_node is not None:
        event_node = validate_node_id(event_node, "event_node")
    if not isinstance(script, str):
        raise SlonyError("the script must be text")
    lock_timeout_setting(lock_timeout)
    read = read_for_script(cluster, event_node, only_on, key)
    planned, statements = decide_script(cluster.name, cluster.ns, script, read, only_on, key,
                                        source, wait_timeout)
    if validate and planned.plan:
        validate_on_node(cluster, read.snapshot.node, statements, lock_timeout)
    return planned


def decide_script(cluster_name, ns, script, read, only_on=None, key=None, source=None,
                  wait_timeout=None):
    """:func:`plan_script` from ``read`` alone: (Planned, the statements to run)."""
    node = read.snapshot.node
    text = substitute_tokens(script, cluster_name, read.version)
    statements = split_statements(text, standard_conforming_strings=read.standard_conforming_strings)
    check_statements(statements)
    checksum = script_checksum(text)
    targets = target_nodes(read.snapshot, node, only_on)

    extra = {"event_node": node, "only_on": only_on, "nodes": targets,
             "statements": [s._asdict() for s in statements], "checksum": checksum,
             "key": key}
    before = {"key": key, "applied": False}
    after = {"key": key, "applied": True, "checksum": checksum, "event_node": node,
             "only_on": only_on, "statements": len(statements)}

    if key is not None:
        if read.key_record is not None:
            return already_applied(key, read.key_record, checksum, node, targets, extra,
                                   read.key_elsewhere), []
        statements = statements + [
            Statement(len(statements) + 1 + i, None, text_)
            for i, text_ in enumerate(key_statements(cluster_name, key, checksum, node,
                                                     only_on))]
    plan = build_plan(ns, cluster_name, node, statements, only_on, targets, key=key,
                      source=source, wait_timeout=wait_timeout)
    return Planned(plan, before, after, extra), statements


def already_applied(key, record, checksum, node, targets, extra, elsewhere):
    """Nothing to do: ``key`` is recorded on the event node (``record``). Warn when the
    script changed, or when it is not recorded yet on every node it ran on
    (``elsewhere``: {node: KeyRecord or None}, the nodes that could be read)."""
    view = {"key": key, "applied": True, "checksum": record.checksum,
            "event_node": record.event_node, "only_on": record.only_on,
            "applied_at": record.applied_at}
    warnings = []
    if record.checksum != checksum:
        warnings.append(
            "key %r was applied on %s with a different script (checksum %s, now %s); it is "
            "not applied again - give the changed script a new key" % (
                key, record.applied_at, record.checksum[:12], checksum[:12]))
    wanted = record.only_on if record.only_on else targets
    missing = [other for other in wanted
               if other != node and other in elsewhere and elsewhere[other] is None]
    if missing:
        warnings.append(
            "key %r is recorded on node %d but not yet on node(s) %s: the script is still "
            "on its way there (or their slon is stopped or failing), or the node joined the "
            "cluster after the script ran" % (key, node, _ids(missing)))
    extra = dict(extra, missing_on=missing)
    if warnings:
        extra["warnings"] = warnings
    return Planned(Plan(), view, dict(view), extra)
