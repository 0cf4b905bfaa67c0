# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tables and sequences of a set: SET ADD / DROP TABLE and SET ADD / DROP SEQUENCE.

Tables and sequences share one mechanism, parametrised by a :class:`MemberKind`:

1. the input (explicit names, regular expressions, schemas, exclusions) is
   normalised without a database (:func:`normalize_entries`);
2. the set's origin is located and its catalog read (:func:`locate_set`);
3. ONE query on the origin resolves every candidate against ``pg_class`` and
   reports its kind, its keys and the set it already belongs to
   (:func:`resolve_candidates`);
4. when something may be added, the ids in use on the other nodes are read: one
   query per node (:func:`read_id_usage`); steps 2 to 4 are :func:`read_members`;
5. :func:`plan_members` - pure - validates everything, collecting every problem
   into one error raised before anything changes, allocates ids and builds the plan.

So the number of queries per node does not depend on the number of tables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import namedtuple

from .slonik import quote as slonik_quote
from .pg import sql

from .catalog import Subscription, feeding_order, read_snapshot
from .errors import SlonyError
from .names import split_qualified_name
from . import waits
from .plan import WAIT, Plan, Planned, Step, call, wait

MAX_ID = 2147483647

RELKIND_NAMES = {
    "r": "an ordinary table",
    "p": "a partitioned table",
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "i": "an index",
    "I": "a partitioned index",
    "c": "a composite type",
    "t": "a TOAST table",
}


class MemberKind:
    """What differs between tables and sequences; everything else is shared."""

    def __init__(self, noun, option, relkind, catalog_table, prefix, add_function,
                 drop_function, snapshot_attr, pattern_comment, has_key):
        self.noun = noun                      # "table"
        self.option = option                  # "tables" (the module option)
        self.relkind = relkind                # the only relkind Slony accepts
        self.catalog_table = catalog_table    # "sl_table"
        self.prefix = prefix                  # column prefix in that table: "tab"
        self.add_function = add_function
        self.drop_function = drop_function
        self.snapshot_attr = snapshot_attr    # Snapshot attribute: "tables"
        self.pattern_comment = pattern_comment  # slonik's default with TABLES= / SEQUENCES=
        self.has_key = has_key

    def column(self, name):
        return sql.Identifier("%s_%s" % (self.prefix, name))


TABLES = MemberKind("table", "tables", "r", "sl_table", "tab", "setAddTable", "setDropTable",
                    "tables", "replicated table", True)
SEQUENCES = MemberKind("sequence", "sequences", "S", "sl_sequence", "seq", "setAddSequence",
                       "setDropSequence", "sequences", "replicated sequence", False)
MOVE_FUNCTIONS = {"table": "setMoveTable", "sequence": "setMoveSequence"}

# Another set of the cluster as the origin sees it, for SET MOVE TABLE / SEQUENCE: its
# origin and the nodes subscribed to it.
OtherSet = namedtuple("OtherSet", "origin receivers")

# One requested object, as the user wrote it.
Entry = namedtuple("Entry", "schema name id key comment")

# One object resolved on the origin. ``index`` points into the entries for explicit
# names, None for objects found by pattern or schema. ``relkind`` is None when the
# object does not exist. key_* describe the index named by the entry's key;
# ``unique_keys`` lists the indexes that could serve as key; member_* describe the
# catalog row (sl_table / sl_sequence) of the object, whatever its set.
Candidate = namedtuple("Candidate", [
    "index", "schema", "name", "relkind", "pk",
    "key_found", "key_unique", "key_partial", "key_expression", "key_valid", "key_nullable",
    "unique_keys", "member_id", "member_set", "member_key", "member_comment"])

# Ids in use cluster-wide: the highest one, and the rows using the ids asked about.
IdUsage = namedtuple("IdUsage", "max_id users")
IdUser = namedtuple("IdUser", "node id set schema name")
# The fields of catalog.Table that member_view reads (catalog.Sequence has no key).
MemberRow = namedtuple("MemberRow", "id set schema name key comment")

_BARE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def candidate(**fields):
    """A Candidate with every field not given set to None (handy in tests)."""
    values = dict((f, None) for f in Candidate._fields)
    values.update(fields)
    return Candidate(**values)


# -- pure helpers ------------------------------------------------------------------------

def quote_part(part):
    """One part of a name as Slony's ``slon_quote_input`` will read it back exactly.

    ``slon_quote_input`` wraps every part that does not start with a double quote in
    double quotes *without* folding case and compares the result with the catalog's
    names; a part that starts with a quote is taken as already quoted. A plain
    identifier therefore passes bare (case kept); anything else is quoted, inner
    quotes doubled, so that dots, quotes and spaces survive.
    """
    if _BARE_PART.match(part):
        return part
    return '"%s"' % part.replace('"', '""')


def fq_name(schema, name):
    """``schema.name`` as Slony's functions expect it (and as it is shown to users)."""
    return "%s.%s" % (quote_part(schema), quote_part(name))


def _validate_id(value, what):
    if isinstance(value, bool):
        raise SlonyError("%s %r is not an integer" % (what, value))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SlonyError("%s %r is not an integer" % (what, value))
    if number < 1 or number > MAX_ID:
        raise SlonyError("%s %r must be a positive 32-bit integer" % (what, value))
    return number


def _string_list(values, what):
    result = []
    for index, value in enumerate(values or []):
        if not isinstance(value, str) or not value:
            raise SlonyError("%s[%d] must be a non-empty string, not %r" % (what, index, value))
        result.append(value)
    return result


def normalize_entries(kind, entries):
    """Validate the explicit list (``tables`` / ``sequences``).

    Each entry is ``schema.name`` or a dict with ``name`` and optionally ``id``,
    ``key`` (tables only) and ``comment``. Malformed entries raise at once;
    duplicates are returned as problems so that they join the one error that
    lists every offender. Returns (entries, problems).
    """
    allowed = ("name", "id", "key", "comment") if kind.has_key else ("name", "id", "comment")
    result, problems = [], []
    seen_names, seen_ids = {}, {}
    for index, raw in enumerate(entries or []):
        what = "%s[%d]" % (kind.option, index)
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict):
            raise SlonyError("%s must be a string (schema.name) or a dict with name, not %r"
                             % (what, raw))
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise SlonyError("%s has unknown key(s) %s; allowed: %s"
                             % (what, ", ".join(unknown), ", ".join(allowed)))
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise SlonyError("%s needs a name (schema.name)" % what)
        schema, rel = split_qualified_name(name, kind.noun)
        ident = None if raw.get("id") is None else _validate_id(raw["id"], "%s.id" % what)
        key = raw.get("key")
        if key is not None and (not isinstance(key, str) or not key):
            raise SlonyError("%s.key must be the name of an index (a non-empty string)" % what)
        comment = raw.get("comment")
        if comment is not None and not isinstance(comment, str):
            comment = str(comment)
        label = fq_name(schema, rel)
        if (schema, rel) in seen_names:
            problems.append("%s is listed twice (%s[%d] and %s)"
                            % (label, kind.option, seen_names[(schema, rel)], what))
            continue
        seen_names[(schema, rel)] = index
        if ident is not None:
            if ident in seen_ids:
                problems.append("id %d is given to both %s and %s"
                                % (ident, seen_ids[ident], label))
            else:
                seen_ids[ident] = label
        result.append(Entry(schema, rel, ident, key, comment))
    return result, problems


def member_view(kind, member):
    """The JSON form of a catalog row (Table / Sequence) for before/after."""
    view = {"id": member.id, "name": fq_name(member.schema, member.name)}
    if kind.has_key:
        view["key"] = member.key
    view["comment"] = member.comment
    return view


def _sorted_views(views):
    """By (schema, name), the order ids are allocated in."""
    return sorted(views, key=lambda v: split_qualified_name(v["name"]))


def _key_problem(label, cand, key):
    if not cand.key_found:
        hint = ""
        if cand.unique_keys:
            hint = " (usable keys: %s)" % ", ".join(cand.unique_keys)
        return "%s has no index named %s%s" % (label, key, hint)
    if not cand.key_unique:
        return "key %s of %s is not a unique index" % (key, label)
    if not cand.key_valid:
        return "key %s of %s is an invalid index (a failed CREATE INDEX CONCURRENTLY?)" \
            % (key, label)
    if cand.key_partial:
        return "key %s of %s is a partial index, which does not make rows unique" % (key, label)
    if cand.key_expression:
        return "key %s of %s is an expression index (Slony needs plain columns)" % (key, label)
    if cand.key_nullable:
        return "key %s of %s has nullable column(s) %s (every key column must be NOT NULL)" \
            % (key, label, ", ".join(cand.key_nullable))
    return None


def _no_key_problem(label, cand):
    if cand.unique_keys:
        return ("%s has no primary key: give its key (a unique index on NOT NULL columns), "
                "e.g. {name: %s, key: %s}" % (label, label, cand.unique_keys[0]))
    return ("%s has no primary key and no unique index on NOT NULL columns, so Slony cannot "
            "replicate it (add a primary key first)" % label)


NO_IDS = IdUsage(0, [])


def _absent_drops(set_id, candidates, members_by_id, members_by_name):
    """The catalog rows of this set that state=absent drops. Pure."""
    to_drop = []
    for cand in candidates:
        member = None
        if cand.member_set == set_id:
            member = members_by_id.get(cand.member_id)
        elif cand.relkind is None:
            # Gone from the database but still in the catalog: drop the row all the same.
            member = members_by_name.get((cand.schema, cand.name))
        if member is not None and member not in to_drop:
            to_drop.append(member)
    return to_drop


def _unusable(kind, namespace, cand, label):
    """Why a resolved object cannot be in any set, or None. Pure."""
    if cand.relkind is None:
        return "%s does not exist" % label
    if cand.schema == namespace:
        return "%s belongs to Slony's own catalog" % label
    if cand.schema.startswith("pg_") or cand.schema == "information_schema":
        return "%s belongs to PostgreSQL's system catalog" % label
    if cand.relkind != kind.relkind:
        what = RELKIND_NAMES.get(cand.relkind, "of relkind %r" % cand.relkind)
        hint = ""
        if cand.relkind == "p" and kind.has_key:
            hint = " (Slony replicates its partitions: add those instead)"
        return "%s is %s, not %s%s" % (label, what, RELKIND_NAMES[kind.relkind], hint)
    return None


def _member_mismatches(kind, set_id, cand, entry, label):
    """What the entry asks of an existing member that only a drop and re-add changes."""
    problems = []
    if entry is None:
        return problems
    if entry.id is not None and entry.id != cand.member_id:
        problems.append(
            "%s is in set %d with id %d, not %d (changing an id needs the %s "
            "dropped from the set and added again)" % (
                label, set_id, cand.member_id, entry.id, kind.noun))
    if kind.has_key and entry.key is not None and entry.key != cand.member_key:
        problems.append(
            "%s is in set %d with key %s, not %s (changing the key needs the "
            "table dropped from the set and added again: state=absent, then "
            "present)" % (label, set_id, cand.member_key, entry.key))
    return problems


def _addition(kind, cand, entry, label):
    """(the object to add as a dict, None) or (None, the problem with its key). Pure."""
    key = None
    if kind.has_key:
        if entry is not None and entry.key is not None:
            key = entry.key
            problem = _key_problem(label, cand, key)
            if problem:
                return None, problem
        elif cand.pk is None:
            return None, _no_key_problem(label, cand)
        else:
            key = cand.pk
    if entry is not None and entry.comment is not None:
        comment = entry.comment
    elif entry is not None:
        comment = label  # slonik's default for FULLY QUALIFIED NAME
    else:
        comment = kind.pattern_comment  # slonik's default for TABLES= / SEQUENCES=
    return {"schema": cand.schema, "name": cand.name, "label": label,
            "id": entry.id if entry is not None else None,
            "key": key, "comment": comment}, None


def _move_problem(kind, set_id, origin, receivers, cand, label, other_sets):
    """Why ``cand`` (a member of another set) cannot move into set ``set_id``, or None:
    slonik's SET MOVE TABLE / SEQUENCE needs both sets on the same origin with the same
    subscribers. Pure."""
    other = other_sets.get(cand.member_set)
    if other is None or other.origin != origin:
        return ("%s is in set %d, whose origin is %s, not node %d: it cannot move into set %d"
                % (label, cand.member_set, "unknown" if other is None else "node %d" % other.origin,
                   origin, set_id))
    if sorted(other.receivers) != sorted(receivers):
        return ("%s is in set %d, subscribed by node(s) %s, and set %d by node(s) %s: Slony "
                "moves a %s only between sets with the same subscribers" % (
                    label, cand.member_set, ", ".join(map(str, sorted(other.receivers))) or "none",
                    set_id, ", ".join(map(str, sorted(receivers))) or "none", kind.noun))
    return None


def _present_members(kind, namespace, set_id, entries, candidates, members_by_id, pending_id,
                     move=None):
    """(to_add, keep, to_move, problems) for state=present. ``move``: None, or (origin,
    receivers of the set, {set id: OtherSet}) to move members of other sets in. Pure."""
    to_add, keep, to_move, problems = [], [], [], []
    for cand in candidates:
        entry = entries[cand.index] if cand.index is not None else None
        label = fq_name(cand.schema, cand.name)
        problem = _unusable(kind, namespace, cand, label)
        if problem:
            problems.append(problem)
        elif pending_id is not None and cand.member_set == pending_id:
            # Already on its way in, through the temporary set of an earlier run.
            keep.append(_member_from(kind, cand))
        elif cand.member_set is not None and cand.member_set != set_id and move is not None:
            problem = _move_problem(kind, set_id, move[0], move[1], cand, label, move[2])
            if problem:
                problems.append(problem)
            else:
                to_move.append(cand)
        elif cand.member_set is not None and cand.member_set != set_id:
            problems.append("%s is already in set %d (as %s id %d); move=true moves it" % (
                label, cand.member_set, kind.noun, cand.member_id))
        elif cand.member_set == set_id:
            problems.extend(_member_mismatches(kind, set_id, cand, entry, label))
            keep.append(members_by_id.get(cand.member_id) or _member_from(kind, cand))
        else:
            add, problem = _addition(kind, cand, entry, label)
            if problem:
                problems.append(problem)
            else:
                to_add.append(add)
    return to_add, keep, to_move, problems


def _allocate_ids(kind, to_add, usage):
    """Check the explicit ids of ``to_add`` against ``usage`` (:class:`IdUsage`) and give
    the others the next free ids, in order. Returns the problems. Pure."""
    problems = []
    explicit = sorted(a["id"] for a in to_add if a["id"] is not None)
    for add in to_add:
        if add["id"] is None:
            continue
        for user in usage.users:
            if user.id == add["id"]:
                problems.append(
                    "id %d (wanted for %s) is already used by %s %s of set %s on "
                    "node %d" % (add["id"], add["label"], kind.noun,
                                 fq_name(user.schema, user.name), user.set, user.node))
                break
    next_id = usage.max_id + 1
    taken = set(explicit)
    for add in to_add:
        if add["id"] is not None:
            continue
        while next_id in taken:
            next_id += 1
        if next_id > MAX_ID:
            problems.append("no %s id left for %s" % (kind.noun, add["label"]))
            break
        add["id"] = next_id
        taken.add(next_id)
        next_id += 1
    return problems


def plan_members(kind, namespace, set_id, origin, entries, candidates, members, receivers,
                 id_usage=NO_IDS, state="present", exclusive=False, problems=(),
                 missing_schemas=(), subscriptions=None, pending=None, new_set_id=None,
                 move=False, other_sets=None):
    """Plan the tables (or sequences) of set ``set_id``. Pure.

    ``entries``: the explicit list (normalised); ``candidates``: every object resolved
    on the origin (explicit ones carry their entry's index); ``members``: the catalog
    rows (snapshot Table / Sequence) of the set on its origin; ``receivers``: the
    nodes subscribed to the set; ``id_usage``: the :class:`IdUsage` across the
    cluster (read when something may be added).
    ``subscriptions``: the set's sl_subscribe rows on the origin (default: each
    receiver fed by the origin, forwarding); ``pending``: the :class:`Pending`
    temporary set of an earlier, interrupted live addition, if any; ``new_set_id``: the
    id a new temporary set gets.
    Adding to a subscribed set is done live (see :func:`build_live_plan`).
    ``move``: members of other sets (``other_sets``: {set id: :class:`OtherSet`}) are
    moved into the set (SET MOVE TABLE / SEQUENCE) instead of refused.
    Returns :class:`plan.Planned`; raises one SlonyError listing every problem.
    """
    if subscriptions is None:
        subscriptions = [Subscription(set_id, origin, r, True, True) for r in receivers]
    pending_id = pending.set_id if pending is not None else None
    problems = list(problems)
    members = sorted(members, key=lambda m: (m.schema, m.name))
    members_by_id = dict((m.id, m) for m in members)
    candidates = sorted(candidates, key=lambda c: (c.schema, c.name))
    to_add, to_drop, to_move = [], [], []

    if state == "absent":
        to_drop = _absent_drops(set_id, candidates, members_by_id,
                                dict(((m.schema, m.name), m) for m in members))
        before = [member_view(kind, m) for m in to_drop]
        after = []
    else:
        problems += ["schema %s does not exist" % quote_part(s) for s in missing_schemas]
        moving = (origin, receivers, other_sets or {}) if move else None
        to_add, keep, to_move, found = _present_members(kind, namespace, set_id, entries,
                                                        candidates, members_by_id, pending_id,
                                                        moving)
        problems += found
        if to_move and to_add and subscriptions:
            problems.append("moving %s and adding new ones to a subscribed set in one task is "
                            "not supported: move them first, then add" % kind.option)
        if exclusive:
            kept_ids = set(k.id for k in keep)
            to_drop = [m for m in members if m.id not in kept_ids]
        if to_add and (any(a["id"] is not None for a in to_add) or not problems):
            # Even when other problems exist, so that id clashes join the same error.
            problems += _allocate_ids(kind, to_add, id_usage)
        before = [member_view(kind, m) for m in (members if exclusive else keep)
                  if pending_id is None or m.set != pending_id]
        after = [member_view(kind, k) for k in keep] + [_added_view(kind, a) for a in to_add]
        for cand in to_move:
            view = member_view(kind, _member_from(kind, cand))
            before.append(dict(view, set=cand.member_set))
            after.append(dict(view, set=set_id))

    if problems:
        raise problems_error(kind.option, set_id, problems, origin)
    if to_move:
        plan = build_move_plan(kind, namespace, set_id, origin, to_move)
        plan.extend(build_plan(kind, namespace, set_id, origin, to_add, to_drop).steps)
        return Planned(plan, _sorted_views(before), _sorted_views(after))

    if subscriptions and (to_add or pending is not None):
        plan = build_plan(kind, namespace, set_id, origin, [], to_drop)
        plan.extend(build_live_plan(kind, namespace, set_id, origin, to_add, subscriptions,
                                    pending, new_set_id).steps)
    else:
        plan = build_plan(kind, namespace, set_id, origin, to_add, to_drop)
    return Planned(plan, _sorted_views(before), _sorted_views(after))


def _short_list(labels, limit=10):
    if len(labels) <= limit:
        return ", ".join(labels)
    return "%s and %d more" % (", ".join(labels[:limit]), len(labels) - limit)


def _member_from(kind, cand):
    """A catalog-like row from a candidate (should the snapshot and the resolution
    query, read in two transactions, disagree)."""
    return MemberRow(cand.member_id, cand.member_set, cand.schema, cand.name,
                     cand.member_key, cand.member_comment)


def problems_error(nouns, set_id, problems, node=None):
    """One error naming every problem."""
    if len(problems) == 1:
        text = problems[0]
    else:
        text = "%d problems: %s" % (len(problems), "; ".join(
            "(%d) %s" % (number, problem) for number, problem in enumerate(problems, 1)))
    return SlonyError("%s of set %d: nothing was changed, because %s" % (
        nouns.capitalize(), set_id, text), node=node)


def _added_view(kind, add):
    view = {"id": add["id"], "name": add["label"]}
    if kind.has_key:
        view["key"] = add["key"]
    view["comment"] = add["comment"]
    return view


def build_plan(kind, namespace, set_id, origin, to_add, to_drop):
    """Drops (by id), then a SYNC and the adds (by name), then one wait. Pure."""
    ns = sql.Identifier(namespace)
    plan = Plan()
    for member in sorted(to_drop, key=lambda m: m.id):
        label = fq_name(member.schema, member.name)
        plan.add(call(ns, origin, kind.drop_function, (member.id,),
                      "drop %s %s (id %d) from set %d" % (kind.noun, label, member.id, set_id),
                      slonik="set drop %s (origin = %d, id = %d);" % (kind.noun, origin,
                                                                      member.id),
                      batch="drop"))
    if to_add:
        # As slonik does before SET ADD TABLE / SEQUENCE: a SYNC, so that the origin's
        # slon has caught up before the configuration changes.
        plan.add(call(ns, origin, "createEvent", (namespace, "SYNC"),
                      "SYNC on node %d before adding %s" % (origin, kind.option)))
    for add in to_add:
        args = [set_id, add["id"], add["label"]]
        slonik = "set add %s (set id = %d, origin = %d, id = %d, fully qualified name = %s" % (
            kind.noun, set_id, origin, add["id"], slonik_quote(add["label"]))
        if kind.has_key:
            args.append(add["key"])
            slonik += ", key = %s" % slonik_quote(add["key"])
        args.append(add["comment"])
        slonik += ", comment = %s);" % slonik_quote(add["comment"])
        plan.add(call(ns, origin, kind.add_function, tuple(args),
                      "add %s %s to set %d as id %d" % (kind.noun, add["label"], set_id,
                                                        add["id"]),
                      slonik=slonik, batch="add"))
    if plan:
        plan.add(wait(origin, "wait until every node has confirmed the %s changes of set %d"
                              % (kind.noun, set_id)))
    return plan


def build_move_plan(kind, namespace, set_id, origin, to_move):
    """SET MOVE TABLE / SEQUENCE of ``to_move`` (candidates in other sets) into set
    ``set_id``: first wait until no subscription of either set is in progress (a receiver
    still copying would otherwise get duplicate rows), then one move event per member,
    then one wait. Pure."""
    ns = sql.Identifier(namespace)
    plan = Plan()
    function = MOVE_FUNCTIONS[kind.noun]
    for other in sorted(set(c.member_set for c in to_move)):
        plan.add(merge_ready_wait(origin, set_id, other))
    for cand in sorted(to_move, key=lambda c: c.member_id):
        label = fq_name(cand.schema, cand.name)
        plan.add(call(ns, origin, function, (cand.member_id, set_id),
                      "move %s %s (id %d) from set %d to set %d" % (
                          kind.noun, label, cand.member_id, cand.member_set, set_id),
                      slonik="set move %s (origin = %d, id = %d, new set = %d);" % (
                          kind.noun, origin, cand.member_id, set_id)))
    plan.add(wait(origin, "wait until every node has moved the %s(s) into set %d"
                          % (kind.noun, set_id)))
    return plan


# -- adding to a subscribed set ------------------------------------------------------------

# Slony refuses new tables in a subscribed set. They go into a temporary set, which every
# receiver subscribes from the same provider; once every copy is done, the temporary set is
# merged into the real one (slonik MERGE SET). The temporary set is recognised by its
# comment, so that a run interrupted half-way is finished by the next one.
PENDING_COMMENT = "dany.slony: objects on their way into set %d"

# A temporary set found in the catalog: its id and {receiver: provider} of its subscriptions.
Pending = namedtuple("Pending", "set_id subscribed")


def find_pending(snap, set_id, origin):
    for entry in sorted(snap.sets.values()):
        if entry.comment == PENDING_COMMENT % set_id and entry.origin == origin:
            subscribed = dict((s.receiver, s.provider) for s in snap.subscriptions.values()
                              if s.set == entry.id)
            return Pending(entry.id, subscribed)
    return None


def _subscribe_slonik(set_id, sub):
    return "subscribe set (id = %d, provider = %d, receiver = %d, forward = %s);" % (
        set_id, sub.provider, sub.receiver, "yes" if sub.forward else "no")


def build_live_plan(kind, namespace, set_id, origin, to_add, subscriptions, pending,
                    new_temp_id=None):
    """Temporary set -> add -> subscribe every receiver as for the real set -> wait until
    every copy is done -> merge. Resumes ``pending`` (an interrupted earlier run) first.
    Pure: the steps only name nodes, functions and arguments."""
    from .subscriptions import completion_wait  # pylint: disable=import-outside-toplevel
    ns = sql.Identifier(namespace)
    plan = Plan()
    cycles = []
    if pending is not None:
        if to_add and not pending.subscribed:
            cycles.append((pending.set_id, False, to_add, {}))
            to_add = []
        else:
            cycles.append((pending.set_id, False, [], pending.subscribed))
    if to_add:
        temp = new_temp_id if new_temp_id is not None else (
            pending.set_id if pending is not None else None)
        cycles.append((temp, True, to_add, {}))
    for temp_id, create, adds, subscribed in cycles:
        if temp_id is None:
            raise SlonyError("internal error: no id for the temporary set")
        if create:
            comment = PENDING_COMMENT % set_id
            plan.add(call(ns, origin, "storeSet", (temp_id, comment),
                          "create temporary set %d for the %s joining set %d"
                          % (temp_id, kind.option, set_id),
                          slonik="create set (id = %d, origin = %d, comment = %s);"
                                 % (temp_id, origin, slonik_quote(comment))))
            plan.add(wait(origin, "wait until every node knows temporary set %d" % temp_id,
                          required=True))
        if adds:
            plan.extend(build_plan(kind, namespace, temp_id, origin, adds, []).steps)
        receivers = []
        for sub in feeding_order(sorted(subscriptions, key=lambda s: s.receiver), origin):
            receivers.append(sub.receiver)
            if sub.provider != origin:
                plan.add(completion_wait(temp_id, sub.provider,
                                         subscribed.get(sub.provider, origin), required=True))
            if subscribed.get(sub.receiver) == sub.provider:
                continue
            plan.add(call(ns, origin, "subscribeSet",
                          (temp_id, sub.provider, sub.receiver, sub.forward, False),
                          "subscribe node %d to temporary set %d from node %d, as to set %d"
                          % (sub.receiver, temp_id, sub.provider, set_id),
                          slonik=_subscribe_slonik(temp_id, sub)))
        for sub in feeding_order(sorted(subscriptions, key=lambda s: s.receiver), origin):
            plan.add(completion_wait(temp_id, sub.receiver, sub.provider, required=True))
        plan.add(wait(origin, "wait until node %d sees every copy of set %d confirmed"
                      % (origin, temp_id), confirmers=receivers, required=True))
        plan.extend(merge_steps(ns, origin, set_id, temp_id, "temporary set"))
    return plan


def merge_steps(ns, origin, set_id, add_id, what="set"):
    """MERGE SET of ``add_id`` into ``set_id``: the wait until no subscription of either
    is in progress (Slony refuses the merge before), the merge, the wait until every node
    has merged. Pure."""
    return [merge_ready_wait(origin, set_id, add_id),
            call(ns, origin, "mergeSet", (set_id, add_id),
                 "merge %s %d into set %d" % (what, add_id, set_id),
                 slonik="merge set (id = %d, add id = %d, origin = %d);" % (set_id, add_id, origin)),
            wait(origin, "wait until every node has merged set %d into set %d" % (add_id, set_id))]


_IN_PROGRESS = "select {ns}.isSubscriptionInProgress(%s) or {ns}.isSubscriptionInProgress(%s)"


def merge_ready_wait(origin, set_id, temp_id):
    """MERGE SET refuses while the origin still sees a subscription in progress."""
    def run(cluster, step, ctx):
        query = sql.SQL(_IN_PROGRESS).format(ns=cluster.ns)

        def probe():
            if not cluster.fetch(origin, query, (set_id, temp_id))[0][0]:
                return True
            return waits.Pending([waits.Behind(
                origin, "isSubscriptionInProgress(%d) or (%d) still true" % (set_id, temp_id))])

        goal = "node %d to see the subscriptions of sets %d and %d complete" % (
            origin, set_id, temp_id)
        waits.poll_until(probe, ctx.timeout,
                         lambda pending: waits.timeout_error(cluster, goal, ctx.timeout, pending),
                         clock=ctx.clock)
    return Step(WAIT, origin, "wait until node %d sees no subscription of set %d or %d in "
                              "progress" % (origin, set_id, temp_id), run=run, required=True)


# -- catalog reads -----------------------------------------------------------------------


def locate_set(cluster, set_id, origin=None):
    """(origin, origin snapshot, {node: snapshot read}) for set ``set_id``.

    Without ``origin``: the origin recorded by the first admin node (by id) that
    knows the set, as slonik does. With it: checked against the origin's catalog.
    """
    snaps = {}

    def snapshot(node):
        if node not in snaps:
            snaps[node] = read_snapshot(cluster, node)
        return snaps[node]

    def find_elsewhere(skip):
        for node in cluster.initialized_nodes():
            if node == skip:
                continue
            found = snapshot(node).sets.get(set_id)
            if found is not None:
                return node, found.origin
        return None, None

    if origin is None:
        seen, origin = find_elsewhere(None)
        if origin is None:
            raise SlonyError("set %d is not known to any reachable node of admin_conninfo "
                             "(nodes %s)" % (set_id, ", ".join(map(str, cluster.nodes()))))
        if not cluster.has_node(origin):
            raise SlonyError("set %d has origin node %d (as node %d sees it), which has no "
                             "entry in admin_conninfo" % (set_id, origin, seen))
    else:
        cluster.require_node(origin, "the origin of set %d" % set_id)
    snap = snapshot(origin)
    current = snap.sets.get(set_id)
    if current is None:
        seen, real = find_elsewhere(origin)
        if real is not None:
            raise SlonyError("set %d has origin node %d (as node %d sees it), not node %d"
                             % (set_id, real, seen, origin), node=origin)
        raise SlonyError("set %d does not exist (node %d does not know it); create it with "
                         "dany.slony.slony_set first" % (set_id, origin), node=origin)
    if current.origin != origin:
        raise SlonyError("set %d has origin node %d, not node %d" % (
            set_id, current.origin, origin), node=origin)
    return origin, snap, snaps


# One query resolves explicit names, patterns and schemas; the result is a single row
# (JSON) like the catalog snapshot, so its size never changes the number of round trips.
_RESOLVE_QUERY = """
with wanted as (
  select w.ord - 1 as idx, w.nsp, w.rel, w.key
    from unnest(%(nsps)s::text[], %(rels)s::text[], %(keys)s::text[])
         with ordinality as w(nsp, rel, key, ord)
),
found as (
  select w.idx, w.nsp, w.rel, w.key, c.oid as reloid, c.relkind::text as relkind
    from wanted w
    left join (pg_catalog.pg_class c
               join pg_catalog.pg_namespace n on n.oid = c.relnamespace)
      on n.nspname = w.nsp and c.relname = w.rel
  union all
  select null, n.nspname::text, c.relname::text, null, c.oid, c.relkind::text
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.relkind = %(relkind)s::"char"
     and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
     and n.nspname <> %(cluster_ns)s and n.nspname <> 'dany_slony'
     and (n.nspname = any(%(schemas)s::text[])
          or (n.nspname || '.' || c.relname) ~ any(%(patterns)s::text[]))
     and not ((n.nspname || '.' || c.relname) ~ any(%(exclude)s::text[]))
     and not exists (select 1 from wanted w where w.nsp = n.nspname and w.rel = c.relname)
)
select
  (select coalesce(json_agg(json_build_array(
            f.idx, f.nsp, f.rel, f.relkind, pk.relname,
            k.found, k.indisunique, k.partial, k.expression, k.indisvalid, k.nullable,
            uk.names, m.id, m.set, m.key, m.comment) order by f.nsp, f.rel), '[]')
     from found f
     left join lateral (
       select i.relname::text as relname
         from pg_catalog.pg_index x join pg_catalog.pg_class i on i.oid = x.indexrelid
        where x.indrelid = f.reloid and x.indisprimary) pk on true
     left join lateral (
       select true as found, x.indisunique, x.indpred is not null as partial,
              0 = any(x.indkey::int2[]) as expression, x.indisvalid,
              array(select a.attname::text from pg_catalog.pg_attribute a
                     where a.attrelid = f.reloid and a.attnum = any(x.indkey::int2[])
                       and not a.attnotnull order by a.attnum) as nullable
         from pg_catalog.pg_index x join pg_catalog.pg_class i on i.oid = x.indexrelid
        where x.indrelid = f.reloid and i.relname = f.key) k on true
     left join lateral (
       select array_agg(i.relname::text order by x.indisprimary desc, i.relname) as names
         from pg_catalog.pg_index x join pg_catalog.pg_class i on i.oid = x.indexrelid
        where x.indrelid = f.reloid and x.indisunique and x.indisvalid
          and x.indpred is null and not 0 = any(x.indkey::int2[])
          and not exists (select 1 from pg_catalog.pg_attribute a
                           where a.attrelid = f.reloid and a.attnum = any(x.indkey::int2[])
                             and not a.attnotnull)) uk on true
     left join lateral (
       select {id} as id, {set} as set, {key} as key, {comment} as comment
         from {ns}.{catalog} where {reloid} = f.reloid) m on true),
  (select coalesce(json_agg(s order by s), '[]')
     from unnest(%(schemas)s::text[]) s
    where not exists (select 1 from pg_catalog.pg_namespace where nspname = s))
"""

_PATTERN_CHECK = "select '' ~ %s"


def resolve_query(cluster, kind):
    return sql.SQL(_RESOLVE_QUERY).format(
        ns=cluster.ns, catalog=sql.Identifier(kind.catalog_table),
        id=kind.column("id"), set=kind.column("set"), reloid=kind.column("reloid"),
        comment=kind.column("comment"),
        key=kind.column("idxname") if kind.has_key else sql.SQL("null::text"))


def resolve_candidates(cluster, kind, origin, entries, patterns=(), schemas=(), exclude=()):
    """Resolve every candidate on the origin in one query: (candidates, missing schemas)."""
    params = {
        "nsps": [e.schema for e in entries],
        "rels": [e.name for e in entries],
        "keys": [e.key for e in entries],
        "relkind": kind.relkind,
        "cluster_ns": cluster.namespace,
        "schemas": list(schemas),
        "patterns": list(patterns),
        "exclude": list(exclude),
    }
    try:
        row = cluster.fetch(origin, resolve_query(cluster, kind), params)[0]
    except SlonyError as exc:
        if "regular expression" not in exc.message:
            raise
        raise bad_patterns_error(cluster, origin, patterns, exclude) or exc
    return [Candidate(*r) for r in row[0]], list(row[1])


def bad_patterns_error(cluster, origin, patterns, exclude):
    """On the error path only: which patterns PostgreSQL refuses, all in one error."""
    bad = []
    for what, values in (("patterns", patterns), ("exclude", exclude)):
        for index, value in enumerate(values):
            try:
                cluster.fetch(origin, _PATTERN_CHECK, (value,))
            except SlonyError as exc:
                reason = exc.message.split(": ", 1)[-1]
                bad.append("%s[%d] %r: %s" % (what, index, value, reason))
    if not bad:
        return None
    return SlonyError("invalid regular expression(s) (PostgreSQL syntax, as slonik's "
                      "TABLES=): %s" % "; ".join(bad), node=origin)


_ID_USAGE_QUERY = """
select (select coalesce(max({id}), 0) from {ns}.{catalog}),
       (select coalesce(json_agg(json_build_array({id}, {set}, {nsp}, {rel})), '[]')
          from {ns}.{catalog} where {id} = any(%s::int4[]))
"""


def read_id_usage(cluster, kind, origin, snaps, explicit_ids):
    """:class:`IdUsage` over every reachable initialised admin node.

    Snapshots already read (the origin's at least) are reused; every other node
    costs one query, whatever the number of ids.
    """
    max_id, users = 0, []
    explicit = set(explicit_ids)
    query = sql.SQL(_ID_USAGE_QUERY).format(
        ns=cluster.ns, catalog=sql.Identifier(kind.catalog_table), id=kind.column("id"),
        set=kind.column("set"), nsp=kind.column("nspname"), rel=kind.column("relname"))
    for node in sorted(set(cluster.initialized_nodes()) | set([origin])):
        if node in snaps:
            rows = list(getattr(snaps[node], kind.snapshot_attr).values())
            max_id = max([max_id] + [r.id for r in rows])
            users += [IdUser(node, r.id, r.set, r.schema, r.name) for r in rows
                      if r.id in explicit]
            continue
        node_max, node_users = cluster.fetch(node, query, (sorted(explicit),))[0]
        max_id = max(max_id, node_max)
        users += [IdUser(node, *u) for u in node_users]
    return IdUsage(max_id, users)


# -- reading, then deciding ---------------------------------------------------------------

# Everything plan_members decides from, read beforehand: the set's origin; the objects
# resolved there and the schemas asked for that do not exist; the set's catalog rows,
# subscriptions and receivers on the origin; an interrupted live addition (Pending) and
# the id a new temporary set gets; and the ids in use cluster-wide (NO_IDS when nothing
# can be added).
MemberFacts = namedtuple("MemberFacts", "origin candidates missing_schemas members "
                                        "subscriptions receivers pending new_set_id id_usage "
                                        "other_sets")


def _may_add(kind, candidates):
    """Whether some candidate may join the set (then the ids in use are needed)."""
    return any(c.relkind == kind.relkind and c.member_set is None for c in candidates)


def read_members(cluster, kind, set_id, origin, entries, patterns=(), schemas=(), exclude=(),
                 state="present"):
    """The reads of :func:`plan_set_members`, as :class:`MemberFacts`: the origin's
    catalog, one resolution query there, and (only when something may be added) one
    id query per other initialised node."""
    origin, snap, snaps = locate_set(cluster, set_id, origin)
    candidates, missing_schemas = resolve_candidates(cluster, kind, origin, entries, patterns,
                                                     schemas, exclude)
    pending = find_pending(snap, set_id, origin) if state == "present" else None
    id_usage = NO_IDS
    if state == "present" and _may_add(kind, candidates):
        id_usage = read_id_usage(cluster, kind, origin, snaps,
                                 sorted(set(e.id for e in entries if e.id is not None)))
    return MemberFacts(
        origin, candidates, missing_schemas,
        [m for m in getattr(snap, kind.snapshot_attr).values() if m.set == set_id],
        [sub for sub in snap.subscriptions.values() if sub.set == set_id],
        snap.receivers(set_id), pending, max([0] + list(snap.sets)) + 1, id_usage,
        dict((s.id, OtherSet(s.origin, snap.receivers(s.id))) for s in snap.sets.values()
             if s.id != set_id))


def plan_set_members(cluster, kind, set_id, origin=None, entries=None, patterns=None,
                     schemas=None, exclude=None, state="present", exclusive=False, move=False):
    """Plan the tables / sequences of a set: validate the input, read
    (:func:`read_members`), then decide (:func:`plan_members`). Returns
    :class:`plan.Planned`."""
    set_id = _validate_id(set_id, "set_id")
    if state not in ("present", "absent"):
        raise SlonyError("state must be present or absent, not %r" % (state,))
    if exclusive and state != "present":
        raise SlonyError("exclusive only applies to state=present")
    if move and state != "present":
        raise SlonyError("move only applies to state=present")
    entries, problems = normalize_entries(kind, entries)
    patterns = _string_list(patterns, "patterns")
    schemas = _string_list(schemas, "schemas")
    exclude = _string_list(exclude, "exclude")
    facts = read_members(cluster, kind, set_id, origin, entries, patterns, schemas, exclude,
                         state)
    plan, before, after, dummy = plan_members(
        kind, cluster.namespace, set_id, facts.origin, entries, facts.candidates,
        facts.members, facts.receivers, facts.id_usage, state=state, exclusive=exclusive,
        problems=problems, missing_schemas=facts.missing_schemas,
        subscriptions=facts.subscriptions, pending=facts.pending, new_set_id=facts.new_set_id,
        move=move, other_sets=facts.other_sets)
    return Planned(plan, before, after, {"origin": facts.origin})


def plan_tables(cluster, set_id, origin=None, tables=None, patterns=None, schemas=None,
                exclude=None, state="present", exclusive=False, move=False):
    """Tables of set ``set_id`` (SET ADD TABLE / SET DROP TABLE).

    Usable as a library, e.g. from a migration that creates a table::

        with Cluster("shop", {1: "host=db1 dbname=shop user=slony"}) as cluster:
            plan, before, after, extra = plan_tables(cluster, 1, tables=["public.orders"])
            execute_plan(cluster, plan)   # or show render_step(...) for a dry run
    """
    return plan_set_members(cluster, TABLES, set_id, origin, tables, patterns, schemas,
                            exclude, state, exclusive, move)


def plan_sequences(cluster, set_id, origin=None, sequences=None, patterns=None, schemas=None,
                   exclude=None, state="present", exclusive=False, move=False):
    """Sequences of set ``set_id`` (SET ADD SEQUENCE / SET DROP SEQUENCE)."""
    return plan_set_members(cluster, SEQUENCES, set_id, origin, sequences, patterns, schemas,
                            exclude, state, exclusive, move)
