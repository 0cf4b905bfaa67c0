"""slony_slon: the slon configuration file, run as Ansible runs the module (no daemon)."""

from __future__ import annotations

import getpass
import json
import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.dany.slony.plugins.modules import slony_slon

PASSWORD = "s3cret-Pw"
CONFIG = ("cluster_name = 'shop'\nconn_info = 'host=db1 dbname=shop user=slony password=%s'\n"
          "sync_interval = 100\n" % PASSWORD)


def run(tmp_path, check=False, diff=False, **args):
    args.setdefault("supervisor", "none")
    args.setdefault("user", getpass.getuser())
    args["_ansible_check_mode"] = check
    args["_ansible_diff"] = diff
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run([sys.executable, "-m", "ansible_collections.dany.slony.plugins.modules.slony_slon",
                          str(path)], capture_output=True, text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert PASSWORD not in out.stdout + out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("state, running, changed, action", [
    ("started", False, False, "start"), ("started", True, False, "none"),
    ("started", True, True, "restart"), ("restarted", True, False, "restart"),
    ("restarted", False, False, "start"), ("stopped", True, True, "stop"),
    ("stopped", False, False, "none"), ("absent", True, False, "stop")])
def test_what_happens_to_the_process(state, running, changed, action):
    assert slony_slon.decide_action(state, running, changed) == action


def test_secrets_are_found_plain_and_quoted():
    assert slony_slon.secrets_of("conn_info = 'host=a password=x1 user=b'\npassword = 'q\\'z'") == {
        "x1", "q\\'z"}


def test_the_configuration_is_written_once_for_the_slon_account_only(tmp_path):
    conf = tmp_path / "etc" / "slon-shop-1.conf"
    first = run(tmp_path, config=CONFIG, config_file=str(conf))
    assert first["changed"] and first["config_changed"]
    assert first["files"] == sorted([str(conf.parent), str(conf)])
    assert conf.read_text() == CONFIG
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o755
    second = run(tmp_path, config=CONFIG, config_file=str(conf))
    assert not second["changed"] and second["files"] == [] and second["action"] == "none"


def test_check_mode_writes_nothing_and_diff_masks_the_password(tmp_path):
    conf = tmp_path / "slon.conf"
    run(tmp_path, config=CONFIG, config_file=str(conf))
    changed = CONFIG.replace("sync_interval = 100", "sync_interval = 200")
    checked = run(tmp_path, check=True, diff=True, config=changed, config_file=str(conf))
    assert checked["changed"] and checked["config_changed"]
    assert conf.read_text() == CONFIG
    assert "sync_interval = 200" in checked["diff"]["after"]
    assert "sync_interval = 100" in checked["diff"]["before"]
    assert "password=********" in checked["diff"]["after"]


def test_a_wrong_mode_is_repaired(tmp_path):
    conf = tmp_path / "slon.conf"
    run(tmp_path, config=CONFIG, config_file=str(conf))
    os.chmod(conf, 0o644)
    again = run(tmp_path, config=CONFIG, config_file=str(conf))
    assert again["changed"] and stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_absent_removes_the_configuration(tmp_path):
    conf = tmp_path / "slon.conf"
    run(tmp_path, config=CONFIG, config_file=str(conf))
    assert run(tmp_path, check=True, state="absent", config_file=str(conf))["changed"]
    assert conf.exists()
    gone = run(tmp_path, state="absent", config_file=str(conf))
    assert gone["changed"] and not conf.exists()
    assert not run(tmp_path, state="absent", config_file=str(conf))["changed"]


def test_an_unknown_account_is_refused_and_nothing_is_written(tmp_path):
    conf = tmp_path / "slon.conf"
    failed = run(tmp_path, config=CONFIG, config_file=str(conf), user="no-such-user-here")
    assert failed["failed"] and "user no-such-user-here does not exist" in failed["msg"]
    assert not conf.exists()


PASSFILE = "db1:*:shop:slony:%s\ndb2:5433:shop:slony:%s\n" % (PASSWORD, PASSWORD)
PLAIN_CONFIG = CONFIG.replace(" password=%s" % PASSWORD, "")


def test_the_passfile_is_written_for_the_slon_account_only_and_never_shown(tmp_path):
    conf, passfile = tmp_path / "slon.conf", tmp_path / "slon.pgpass"
    args = dict(config=PLAIN_CONFIG, config_file=str(conf), passfile=str(passfile),
                passfile_content=PASSFILE)
    checked = run(tmp_path, check=True, diff=True, **args)
    assert checked["changed"] and checked["passfile"] == str(passfile)
    assert str(passfile) in checked["files"] and not passfile.exists()
    first = run(tmp_path, diff=True, **args)
    assert first["changed"] and passfile.read_text() == PASSFILE
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert PASSWORD not in json.dumps(first)
    assert not run(tmp_path, **args)["changed"]
    # A new password: the file changes (libpq reads it at each connection).
    rotated = run(tmp_path, **{**args, "passfile_content": PASSFILE.replace(PASSWORD, "n3w-" + PASSWORD)})
    assert rotated["changed"] and rotated["files"] == [str(passfile)]
    # No password left: the file goes, and slon gets no PGPASSFILE.
    gone = run(tmp_path, **{**args, "passfile_content": ""})
    assert gone["changed"] and not passfile.exists() and gone["passfile"] is None
    assert not run(tmp_path, **{**args, "passfile_content": ""})["changed"]


def test_absent_removes_the_passfile_too(tmp_path):
    conf, passfile = tmp_path / "slon.conf", tmp_path / "slon.pgpass"
    run(tmp_path, config=PLAIN_CONFIG, config_file=str(conf), passfile=str(passfile),
        passfile_content=PASSFILE)
    gone = run(tmp_path, state="absent", config_file=str(conf), passfile=str(passfile))
    assert gone["changed"] and not passfile.exists() and not conf.exists()


@pytest.mark.parametrize("line, password", [
    ("db1:*:shop:slony:pw", "pw"), ("db1:5432:shop:slony:p\\:w", "p:w"),
    ("db1:5432:shop:slony:a:b", "a:b"), ("h\\:x:1:d:u:p\\\\q", "p\\q"), ("db1:*:shop", None),
    ("db1:*:shop:slony:", None)])
def test_the_password_field_of_a_passfile_line(line, password):
    assert slony_slon._pgpass_password(line) == password
