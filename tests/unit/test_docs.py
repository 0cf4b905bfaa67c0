# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' documentation against their code, without a database.

For every module: DOCUMENTATION (with its doc fragments merged by ansible's own
``get_docstring``) against the argument spec the module really passes to AnsibleModule
(captured by stopping the module at that call); every EXAMPLES task against that spec;
RETURN against the keys the module returns, where they can be known; no text promising
or denying features; and the README's option names against the specs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

try:
    import ansible_collections.dany.slony  # noqa: F401 pylint: disable=unused-import
except ImportError:  # run from a plain checkout: use the tree scripts/bootstrap.sh links
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".build",
                                    "collections"))

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.playbook.task import Task
from ansible.utils.plugin_docs import get_docstring

from ansible_collections.dany.slony.plugins.module_utils import slony_module
from ansible_collections.dany.slony.plugins.module_utils.info import SECTIONS, build_facts

from test_info import reads_of_healthy_cluster

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODULES_DIR = os.path.join(REPO, "plugins", "modules")
MODULE_UTILS_DIR = os.path.join(REPO, "plugins", "module_utils")
COLLECTION = "dany.slony"
MODULES = sorted(f[:-3] for f in os.listdir(MODULES_DIR)
                 if f.endswith(".py") and not f.startswith("_"))

# Modules that run on a node host and take no cluster connection: not in the action group.
HOST_MODULES = frozenset(["slony_slon"])
CLUSTER_MODULES = sorted(set(MODULES) - HOST_MODULES)

# What SlonyModule.run returns besides the planner's extra keys (and ``changed``).
RUN_KEYS = frozenset(["queries", "slonik", "events", "before", "after"])

# Text that promises a feature for later or denies one; none may appear in the docs.
FORBIDDEN = [
    r"planned but not",
    r"not (yet )?(done|supported|implemented) (by|in) this version",
    r"not yet (done|supported|implemented)",
    r"\bTODO\b",
    r"\bFIXME\b",
]

TASK_KEYWORDS = frozenset(Task.fattributes) | frozenset(["local_action"])


# -- loading -------------------------------------------------------------------------------

class _FragmentLoader:
    """The part of ansible's fragment_loader that get_docstring uses: ``get(name)``."""

    def get(self, name):
        if not name.startswith(COLLECTION + "."):
            return None
        try:
            module = importlib.import_module(
                "ansible_collections.dany.slony.plugins.doc_fragments." + name.split(".", 2)[2])
        except ImportError:
            return None
        return type("Fragment", (module.ModuleDocFragment,), {"ansible_name": name})


def module_path(name):
    return os.path.join(MODULES_DIR, name + ".py")


def load_docs(name):
    """(DOCUMENTATION with fragments merged, EXAMPLES text, RETURN) of module ``name``."""
    doc, examples, returns, dummy = get_docstring(
        module_path(name), _FragmentLoader(), collection_name=COLLECTION, is_module=True)
    return doc, examples, returns or {}


class _Captured(Exception):
    def __init__(self, argument_spec, kwargs):
        Exception.__init__(self, "AnsibleModule called")
        self.argument_spec = argument_spec
        self.kwargs = kwargs


def capture_spec(name, monkeypatch):
    """(argument_spec, AnsibleModule keyword arguments) of module ``name``."""

    def fake_module(argument_spec, **kwargs):
        raise _Captured(argument_spec, kwargs)

    monkeypatch.setattr(slony_module, "AnsibleModule", fake_module)
    module = importlib.import_module("ansible_collections.dany.slony.plugins.modules." + name)
    if hasattr(module, "AnsibleModule"):  # a host module (HOST_MODULES) builds its own
        monkeypatch.setattr(module, "AnsibleModule", fake_module)
    with pytest.raises(_Captured) as info:
        module.main()
    return info.value.argument_spec, info.value.kwargs


def validator(spec, kwargs):
    keep = ("mutually_exclusive", "required_together", "required_one_of", "required_if",
            "required_by")
    return ArgumentSpecValidator(spec, **dict((k, v) for k, v in kwargs.items() if k in keep))


# -- DOCUMENTATION against the argument spec --------------------------------------------------

def _norm(value):
    return sorted(value) if isinstance(value, (list, tuple)) else value


def compare_options(spec, documented, where=""):
    """Every difference between an argument spec and its documented options."""
    problems = []
    documented = documented or {}
    for option in sorted(set(spec) - set(documented)):
        problems.append("%s%s: in the argument spec, not documented" % (where, option))
    for option in sorted(set(documented) - set(spec)):
        problems.append("%s%s: documented, not in the argument spec" % (where, option))
    for option in sorted(set(spec) & set(documented)):
        code, doc = spec[option], documented[option]
        label = where + option
        fields = (
            ("type", code.get("type", "str"), doc.get("type", "str")),
            ("elements", code.get("elements"), doc.get("elements")),
            ("default", code.get("default"), doc.get("default")),
            ("choices", _norm(code.get("choices")), _norm(doc.get("choices"))),
            ("required", bool(code.get("required", False)), bool(doc.get("required", False))),
            ("aliases", _norm(code.get("aliases") or []), _norm(doc.get("aliases") or [])),
        )
        for field, in_code, in_doc in fields:
            if in_code != in_doc:
                problems.append("%s: %s is %r in the spec but %r in the docs"
                                % (label, field, in_code, in_doc))
        if code.get("options") or doc.get("suboptions"):
            problems += compare_options(code.get("options") or {}, doc.get("suboptions"),
                                        label + ".")
    return problems


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_the_argument_spec(name, monkeypatch):
    doc, dummy, dummy2 = load_docs(name)
    spec, dummy3 = capture_spec(name, monkeypatch)
    assert doc["module"] == name
    problems = compare_options(spec, doc.get("options"))
    assert not problems, "%s:\n  %s" % (name, "\n  ".join(problems))


@pytest.mark.parametrize("name", MODULES)
def test_every_module_takes_the_common_options_and_declares_its_attributes(name, monkeypatch):
    doc, dummy, dummy2 = load_docs(name)
    spec, kwargs = capture_spec(name, monkeypatch)
    attributes = doc.get("attributes") or {}
    assert set(attributes) >= set(["check_mode", "diff_mode", "idempotent"])
    for attribute in attributes.values():
        assert attribute["support"] in ("full", "partial", "none", "N/A")
    assert kwargs.get("supports_check_mode", True) == (
        attributes["check_mode"]["support"] != "none")
    if name in HOST_MODULES:
        assert "action_group" not in attributes, "%s takes no cluster connection" % name
        assert not set(slony_module.common_argument_spec()) & set(spec)
        return
    for option, common in slony_module.common_argument_spec().items():
        assert spec[option] == common, option
    assert attributes["action_group"]["membership"] == ["dany.slony.slony"]


def _load_runtime():
    with open(os.path.join(REPO, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)


def test_every_module_is_in_the_action_group():
    assert sorted(_load_runtime()["action_groups"]["slony"]) == CLUSTER_MODULES


# -- honest attributes ---------------------------------------------------------------------------

def _source(name):
    with open(module_path(name)) as handle:
        return handle.read()


def _uses_run(name):
    """Whether the module returns through SlonyModule.run (directly or through the
    shared main of slony_table and slony_sequence)."""
    return "slony.run(" in _source(name) or "set_members_main(" in _source(name)


def _returns_diff(name):
    """Whether the module returns a diff: through SlonyModule.run or run_steps, or its own."""
    source = _source(name)
    return _uses_run(name) or "slony.run_steps(" in source or 'result["diff"] = ' in source


@pytest.mark.parametrize("name", MODULES)
def test_diff_mode_is_declared_as_the_module_does_it(name):
    """A module that goes through SlonyModule.run returns a diff of before/after; one
    whose before and after are always empty declares no diff support."""
    doc, dummy, dummy2 = load_docs(name)
    support = doc["attributes"]["diff_mode"]["support"]
    if not _returns_diff(name):
        assert support == "none", "%s returns no diff" % name
    elif name == "slony_sync":
        assert support == "none", "a SYNC has nothing to compare (before and after are {})"
    else:
        assert support == "full"


def test_slony_sync_plans_a_change_every_time():
    # The idempotent attribute says "none": the plan always holds a step that changes.
    from ansible_collections.dany.slony.plugins.module_utils.pg import sql
    from ansible_collections.dany.slony.plugins.module_utils.plan import Plan
    from ansible_collections.dany.slony.plugins.module_utils.sync import SyncRun
    run = SyncRun(sql.Identifier("_shop"), "_shop", 1, None, 300)
    assert Plan(run.steps()).changes()
    doc, dummy, dummy2 = load_docs("slony_sync")
    assert doc["attributes"]["idempotent"]["support"] == "none"


# -- EXAMPLES ------------------------------------------------------------------------------------

_TEMPLATE_STANDINS = {"dict": {1: "host=db1 dbname=shop"}, "list": [], "int": 1,
                      "bool": True, "float": 1.0, "raw": "x", "path": "/x", "str": "x"}


def _untemplate(spec, args):
    """Templated values ("{{ ... }}") replaced by a value of the option's type."""
    result = {}
    for key, value in args.items():
        if isinstance(value, str) and "{{" in value and key in spec:
            value = _TEMPLATE_STANDINS.get(spec[key].get("type", "str"), value)
        result[key] = value
    return result


def example_tasks(examples):
    tasks = yaml.safe_load(examples)
    assert isinstance(tasks, list) and tasks, "EXAMPLES must be a list of tasks"
    for task in tasks:
        actions = [k for k in task if k not in TASK_KEYWORDS and not k.startswith("with_")]
        assert len(actions) == 1, "task %r: cannot tell its module (%s)" % (
            task.get("name"), actions)
        yield task, actions[0], task[actions[0]]


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_fqcns_and_valid_arguments(name, monkeypatch):
    dummy, examples, dummy2 = load_docs(name)
    spec, kwargs = capture_spec(name, monkeypatch)
    used = 0
    for task, action, args in example_tasks(examples):
        assert task.get("name"), "every example task has a name"
        assert action.count(".") >= 2, "task %r: %s is not a FQCN" % (task["name"], action)
        if action != "%s.%s" % (COLLECTION, name):
            continue
        used += 1
        result = validator(spec, kwargs).validate(_untemplate(spec, args or {}))
        assert not result.error_messages, "task %r: %s" % (task["name"], result.error_messages)
    assert used, "no example uses %s itself" % name


# -- RETURN --------------------------------------------------------------------------------------

def _dict_keys(node):
    return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def _name_of(node):
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def extra_keys_in(path):
    """Keys a planner file puts into the ``extra`` of its Planned, found in its source.

    The names passed as Planned's fourth argument (``extra``, ``run.report``, ...) are the
    extra dicts; their keys are those of dict literals assigned to such a name or passed
    to Planned directly, of ``name["key"] = ...`` and of ``dict(name, key=...)``.
    """
    with open(path) as handle:
        tree = ast.parse(handle.read())
    names, keys = set(), set()
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and _name_of(n.func) == "Planned"]
    for call in calls:
        for arg in list(call.args[3:4]) + [k.value for k in call.keywords if k.arg == "extra"]:
            if isinstance(arg, ast.Dict):
                keys.update(_dict_keys(arg))
            elif _name_of(arg):
                names.add(_name_of(arg))
    for node in ast.walk(tree):  # passed on as Class(..., report=extra): self.report
        if isinstance(node, ast.Call):
            names.update(k.arg for k in node.keywords if k.arg and _name_of(k.value) in names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if _name_of(target) in names and isinstance(node.value, ast.Dict):
                    keys.update(_dict_keys(node.value))
                if isinstance(target, ast.Subscript) and _name_of(target.value) in names \
                        and isinstance(target.slice, ast.Constant):
                    keys.add(target.slice.value)
        elif isinstance(node, ast.Call) and _name_of(node.func) == "dict" and node.args \
                and _name_of(node.args[0]) in names:
            keys.update(k.arg for k in node.keywords if k.arg)
    return keys


def planner_files(name):
    """The module_utils files module ``name`` imports its planner from."""
    files = set()
    for match in re.finditer(r"module_utils\.(\w+) import \(?([\w, \n]+)", _source(name)):
        if match.group(1) != "slony_module" and "plan_" in match.group(2):
            files.add(os.path.join(MODULE_UTILS_DIR, match.group(1) + ".py"))
    return files


def popped_keys(name):
    """Extra keys the module takes out before returning (e.g. warnings it issues), or its
    planner does (failover's single-node form drops the per-pair node ids)."""
    keys = set(re.findall(r"extra\.pop\(\"(\w+)\"", _source(name)))
    for path in planner_files(name):
        with open(path) as handle:
            keys |= set(re.findall(r"report\.pop\(\"(\w+)\"", handle.read()))
    return keys


@pytest.mark.parametrize("name", [m for m in MODULES if _uses_run(m)])
def test_return_documents_what_the_module_returns(name):
    dummy, dummy2, returns = load_docs(name)
    files = planner_files(name) or set(
        [os.path.join(MODULE_UTILS_DIR, "tables.py")])  # slony_table, slony_sequence
    extra = set()
    for path in files:
        extra |= extra_keys_in(path)
    # SlonyModule.run turns a "warnings" key of the report into ansible warnings.
    extra -= popped_keys(name) | {"warnings"}
    missing = sorted((RUN_KEYS | extra) - set(returns))
    assert not missing, "%s returns %s, not in RETURN" % (name, missing)
    unknown = sorted(set(returns) - RUN_KEYS - extra)
    assert not unknown, "%s: RETURN documents %s, which the module does not return " \
                        "(or this test cannot see it)" % (name, unknown)


# What SlonyModule.run_steps returns besides ``changed``.
RUN_STEPS_KEYS = frozenset(["queries", "slonik", "events", "steps", "not_planned"])


@pytest.mark.parametrize("name", [m for m in MODULES if "slony.run_steps(" in _source(m)])
def test_return_documents_what_run_steps_returns(name):
    dummy, dummy2, returns = load_docs(name)
    assert sorted(returns) == sorted(RUN_STEPS_KEYS)


def test_slony_info_return_matches_the_facts():
    dummy, dummy2, returns = load_docs("slony_info")
    facts = build_facts("shop", "_shop", reads_of_healthy_cluster(), SECTIONS)
    assert sorted(set(facts)) == sorted(set(returns))
    for key, rows in facts.items():
        sample = returns[key].get("sample")
        if not (isinstance(rows, list) and rows and isinstance(rows[0], dict)):
            continue
        shapes = [set(s) for s in sample if isinstance(s, dict)]
        for row in rows:
            assert set(row) in shapes, "%s: a row has keys %s, the samples %s" % (
                key, sorted(row), [sorted(s) for s in shapes])


@pytest.mark.parametrize("name", MODULES)
def test_return_entries_are_complete(name):
    dummy, dummy2, returns = load_docs(name)
    for key, entry in returns.items():
        for field in ("description", "returned", "type"):
            assert entry.get(field) not in (None, ""), "%s: %s has no %s" % (name, key, field)
        if entry["type"] == "list":
            assert entry.get("elements"), "%s: %s has no elements" % (name, key)


# -- words -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODULES)
def test_docs_neither_promise_nor_deny_features(name):
    doc, examples, returns = load_docs(name)
    text = json.dumps([doc, returns]) + examples
    for phrase in FORBIDDEN:
        found = re.search(phrase, text, re.I)
        assert not found, "%s: %r" % (name, found.group(0))


def test_the_forbidden_phrases_are_found():
    text = "Adding them live to a subscribed set is planned but not done by this version."
    assert any(re.search(p, text, re.I) for p in FORBIDDEN)


# -- README -----------------------------------------------------------------------------------

def _readme():
    with open(os.path.join(REPO, "README.md")) as handle:
        return handle.read()


def _walk_tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _walk_tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue",
                    "always"):
            yield from _walk_tasks(node.get(key))


def readme_option_uses():
    """(module, option, where) for every option name the README shows for a module."""
    readme = _readme()
    uses = []
    for block in re.findall(r"```ya?ml\n(.*?)```", readme, re.S):
        for task in _walk_tasks(yaml.safe_load(block)):
            defaults = task.get("module_defaults") or {}
            for group, values in defaults.items():
                if group == "group/%s.slony" % COLLECTION:
                    uses += [(None, key, "module_defaults") for key in values]
            for key, args in task.items():
                if key.startswith(COLLECTION + ".") and isinstance(args, dict):
                    uses += [(key.split(".")[2], option, "yaml example") for option in args]
    for line in readme.splitlines():
        match = re.match(r"\|\s*`%s\.(slony_\w+)`\s*\|(.*)" % re.escape(COLLECTION), line)
        if match:
            uses += [(match.group(1), option, "content table")
                     for option in re.findall(r"`(\w+):`", match.group(2))]
    common = re.search(r"Every module takes the common options (.*?);", readme, re.S)
    if common:  # the names, not what the parentheses say about them
        names = re.sub(r"\([^)]*\)", "", common.group(1))
        uses += [(None, option, "common options") for option in re.findall(r"`(\w+)`", names)]
    return uses


def test_readme_option_names_exist(monkeypatch):
    uses = readme_option_uses()
    assert len(uses) > 10, "the README's examples were not found"
    specs = {}
    problems = []
    for module, option, where in uses:
        if module is None:
            spec = slony_module.common_argument_spec()
        else:
            if module not in MODULES:
                problems.append("%s: no module %s" % (where, module))
                continue
            if module not in specs:
                specs[module] = capture_spec(module, monkeypatch)[0]
            spec = specs[module]
        if option not in spec:
            problems.append("%s: %s has no option %s" % (where, module or "the common spec",
                                                         option))
    assert not problems, "\n".join(problems)


# -- what users see -------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("ansible-doc") is None
                    and not os.path.exists(os.path.join(REPO, ".venv", "bin", "ansible-doc")),
                    reason="ansible-doc not installed")
def test_ansible_doc_renders_every_module():
    program = shutil.which("ansible-doc") or os.path.join(REPO, ".venv", "bin", "ansible-doc")
    # The collections path is the folder above ansible_collections/: the clone's
    # .build/collections link, or the tree ansible-test (or an install) put us in.
    root = os.path.realpath(REPO)
    parts = root.split(os.sep)
    if len(parts) > 3 and parts[-3:-2] == ["ansible_collections"]:
        collections = os.sep.join(parts[:-3])
    else:
        collections = os.path.join(REPO, ".build", "collections")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections)
    if os.path.exists(os.path.join(REPO, "ansible.cfg")):
        env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    out = subprocess.run([program, "--json"] + ["%s.%s" % (COLLECTION, m) for m in MODULES],
                         env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    assert "WARNING" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    docs = json.loads(out.stdout)
    for name in MODULES:
        entry = docs["%s.%s" % (COLLECTION, name)]
        assert entry["return"], name
        if name in HOST_MODULES:
            continue
        assert "cluster_name" in entry["doc"]["options"]      # the common fragment
        assert "action_group" in entry["doc"]["attributes"]   # the attributes fragment


# -- what the docs promise for slony_switchover's lag limits -----------------------------------

class _FakeSlony:
    def __init__(self, **params):
        self.params = params
        self.failed = None

    def fail(self, exc):
        self.failed = exc.message
        raise SystemExit(1)


def test_switchover_lag_limits_take_null_numbers_and_numeric_strings():
    from ansible.module_utils.common.validation import check_type_float, check_type_int
    from ansible_collections.dany.slony.plugins.modules.slony_switchover import limit
    assert limit(_FakeSlony(x=None), "x", check_type_int) is None      # null: no check
    assert limit(_FakeSlony(x=100), "x", check_type_int) == 100
    assert limit(_FakeSlony(x="7"), "x", check_type_int) == 7          # a templated value
    assert limit(_FakeSlony(x=60), "x", check_type_float) == 60.0
    slony = _FakeSlony(x="lots")
    with pytest.raises(SystemExit):
        limit(slony, "x", check_type_int)
    assert slony.failed.startswith("x: ")
