"""Run dany.slony modules the way users do: through the `ansible` command.

Each call is one ad-hoc `ansible localhost -m dany.slony.<module>` run; the module's
result is read back from the tree callback's per-host JSON file, and stdout/stderr are
kept so that tests can search them (for passwords, for instance).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = REPO_ROOT / ".venv" / "bin" / "ansible"
SLONIK = shutil.which("slonik") or "/usr/bin/slonik"
_PREAMBLE = re.compile(r"^(cluster name = .*|node \d+ admin conninfo = .*);$")


@dataclass
class ModuleRun:
    module: str
    args: dict
    result: dict
    stdout: str
    stderr: str
    returncode: int
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed")) or self.returncode != 0

    @property
    def msg(self) -> str:
        return self.result.get("msg", "")

    def everything(self) -> str:
        """All text the run produced: the result, stdout and stderr."""
        return json.dumps(self.result) + self.stdout + self.stderr


def ansible_environment() -> dict:
    """The environment of every ansible and ansible-playbook run of the tests: this one,
    with the repository's ansible.cfg, no colours and no deprecation warnings."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    return env


def site_inventory(db, hosts: dict, slon_dir: Path, all_vars: dict | None = None,
                   **node_vars) -> dict:
    """An inventory for the collection's playbooks on a fresh database of the lab.

    ``hosts`` ({name: host vars}) make the group ``slony_nodes``, whose variables are the
    connection settings of ``db`` (the lab's user and password), slons at the tests'
    intervals with their files under ``slon_dir`` (etc, run, log), and ``node_vars``;
    ``all_vars`` are variables of every host; ``localhost`` runs the admin plays. Every
    host is reached locally."""
    lab = db.lab
    local = {"ansible_connection": "local",
             "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    group_vars = dict(local)
    group_vars.update({
        "slony_db_host": "127.0.0.1",
        "slony_db_name": db.dbname,
        "slony_db_user": lab.user,
        "slony_db_password": lab.password,
        "slony_slon_sync_interval": 100,
        "slony_slon_sync_interval_timeout": 1000,
        "slon_config_dir": str(slon_dir / "etc"),
        "slon_run_dir": str(slon_dir / "run"),
        "slon_log_dir": str(slon_dir / "log"),
        "slon_logrotate": False,
    })
    group_vars.update(node_vars)
    inventory = {"all": {"hosts": {"localhost": dict(local)},
                         "children": {"slony_nodes": {"hosts": hosts, "vars": group_vars}}}}
    if all_vars:
        inventory["all"]["vars"] = dict(all_vars)
    return inventory


def write_private_json(path: Path, data) -> None:
    """``data`` as JSON (which is YAML) in ``path``, readable by its owner only: the
    inventories hold the lab password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)


def run_module(module: str, args: dict, check: bool = False, diff: bool = False,
               verbosity: int = 0, expect_failure: bool = False, timeout: float = 600) -> ModuleRun:
    env = ansible_environment()
    name = module if "." in module else "dany.slony." + module
    with tempfile.TemporaryDirectory(prefix="ansible-tree-") as tree:
        cmd = [str(ANSIBLE), "localhost", "-m", name, "-a", json.dumps(args), "--tree", tree]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        result_file = Path(tree) / "localhost"
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
    run = ModuleRun(name, args, result, proc.stdout, proc.stderr, proc.returncode,
                    time.monotonic() - started)
    if os.environ.get("DANY_SLONY_TIMINGS"):
        print("%6.2fs %s%s %s" % (run.seconds, name, " (check)" if check else "",
                                  {k: v for k, v in args.items() if k not in ("admin_conninfo", "paths")}))
    if expect_failure:
        assert run.failed, f"{name} {args} was expected to fail but returned {result}"
    else:
        assert not run.failed, (f"{name} failed: {result.get('msg')}\n"
                                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
        assert_slonik_parses(result.get("slonik") or "", name,
                             "\n".join(s.get("sql", "") for s in result.get("statements") or []))
    return run


def assert_slonik_parses(script: str, what: str = "the script", script_sql: str = "") -> None:
    """The slonik text a module returns must be a script slonik accepts: slonik parses
    and checks a whole script (syntax, an admin conninfo for every node a command
    names, that a ``filename`` exists) before it runs the first command, so ``exit 0;``
    right after the preamble proves that without connecting anywhere. It runs in a
    directory holding ``script.sql`` (``script_sql``), where slony_script's text for a
    long script tells the user to save it."""
    if not script.strip():
        return
    lines = script.splitlines()
    cut = 0
    while cut < len(lines) and _PREAMBLE.match(lines[cut]):
        cut += 1
    assert cut, f"{what}: the slonik script has no preamble:\n{script}"
    text = "\n".join(lines[:cut] + ["exit 0;"] + lines[cut:]) + "\n"
    with tempfile.TemporaryDirectory(prefix="slonik-check-") as workdir:
        Path(workdir, "script.sql").write_text(script_sql + "\n")
        proc = subprocess.run([SLONIK], input=text, capture_output=True, text=True, timeout=30,
                              check=False, cwd=workdir)
    assert proc.returncode == 0, (f"slonik rejects the script {what} returned:\n"
                                  f"{proc.stderr}{proc.stdout}\n--- script ---\n{text}")
