#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dany.slony contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slony_slon
short_description: Run one slon daemon under start-stop-daemon, with its configuration file, in one task
version_added: 0.1.0
description:
  - Converges one slon daemon on the host in a single task; the C(dany.slony.slon) role uses
    it, and sets every option from its own variables.
  - Writes the slon configuration file O(config_file) with the content O(config) (mode
    C(0600), owned by O(user), written atomically), and creates the directories of the
    configuration, the pid file and the log.
  - With O(supervisor=start-stop-daemon) it also creates the log file (mode C(0640), owned
    by O(user); slon logs its conninfo at start-up), installs O(logrotate) as
    O(logrotate_file) when the host has C(/etc/logrotate.d), and starts, stops or restarts
    slon with C(start-stop-daemon) (pid file O(pid_file), process name O(process_name)). A
    running slon is restarted when the configuration file changed. After a start it waits
    O(start_check_delay) seconds and fails, showing the end of the log with passwords
    masked, when slon exited.
  - With O(supervisor=none) only the configuration file and its directory are managed (for
    a service manager such as systemd, which the role drives with its own tasks); C(changed)
    then says whether the configuration changed.
  - With O(passfile) and a non-empty O(passfile_content) it writes that libpq password file
    (mode C(0600), owned by O(user)) and starts slon with C(PGPASSFILE) pointing to it, so
    that the configuration's conninfo and the C(sl_path) conninfos need no password (and
    slon, which logs every conninfo it connects with, logs none). The role builds the content
    with P(dany.slony.pgpass#filter). An empty O(passfile_content) removes the file. libpq
    reads the file at each connection, so a changed password needs no restart; a passfile
    that appears or goes away restarts a running slon (its environment changes).
  - With O(state=absent) slon is stopped and the configuration, passfile, pid and logrotate
    files are removed; the log is kept.
  - It reads everything first (files, account, process) and changes only what differs, so a
    second run reports no change; check mode changes nothing and reports what would.
  - It takes no cluster connection, so it is not in the action group C(dany.slony.slony).
attributes:
  check_mode:
    support: full
    description: Nothing is written, started or stopped; the result says what would be.
  diff_mode:
    support: full
    description: The configuration file before and after, passwords masked.
  idempotent:
    support: full
    description: A second run with the same arguments reports no change (O(state=restarted) excepted).
  platform:
    support: full
    platforms: posix
    description: Linux with C(start-stop-daemon) (Debian's C(dpkg) package) for O(supervisor=start-stop-daemon).
options:
  state:
    description:
      - V(started) runs slon (and restarts it when the configuration changed), V(restarted)
        restarts it in any case, V(stopped) stops it, V(absent) stops it and removes its files.
    type: str
    choices: [started, stopped, restarted, absent]
    default: started
  supervisor:
    description:
      - Who runs the daemon; see the description.
      - V(auto) is V(none) on a host booted with systemd (C(/run/systemd/system) exists),
        else V(start-stop-daemon). RV(supervisor) returns the choice.
    type: str
    choices: [auto, start-stop-daemon, none]
    default: start-stop-daemon
  config:
    description:
      - The content of the slon configuration file (C(slon -f)). Required unless
        O(state=absent). It holds the conninfo, so it is never shown.
    type: str
  config_file:
    description: The slon configuration file.
    type: path
    required: true
  user:
    description: The account slon runs as; it owns the configuration and the log.
    type: str
    default: postgres
  binary:
    description: The slon program.
    type: path
    default: /usr/bin/slon
  process_name:
    description: The process name that identifies the daemon with its pid file; the base
      name of O(binary) when not given.
    type: str
  pid_file:
    description: The pid file start-stop-daemon writes (O(supervisor=start-stop-daemon)).
    type: path
  log_file:
    description: Where slon's output goes (O(supervisor=start-stop-daemon)).
    type: path
  logrotate:
    description: The content of the logrotate configuration of the log; none when not given.
    type: str
  logrotate_file:
    description: The logrotate configuration file, installed when C(/etc/logrotate.d) exists.
    type: path
  passfile:
    description:
      - The libpq password file of this slon; see the description. Nothing is written
        without it.
    type: path
  passfile_content:
    description:
      - The content of O(passfile), in C(~/.pgpass) format
        (C(host:port:database:user:password) lines). Never shown.
      - Empty or not given, O(passfile) is removed and slon gets no C(PGPASSFILE).
    type: str
    default: ""
  environment:
    description:
      - Extra environment variables of the daemon. slon starts with an empty environment
        (C(env -i)) plus C(PATH), C(HOME) and C(USER) of O(user), C(LANG=C.UTF-8),
        C(PGPASSFILE) when a passfile is written (see O(passfile)), and these.
      - Its values are never shown.
    type: dict
    default: {}
  extra_args:
    description: Extra command-line arguments after C(-f config_file).
    type: list
    elements: str
    default: []
  stop_timeout:
    description: Seconds slon gets to exit after C(SIGTERM) before C(SIGKILL).
    type: int
    default: 30
  start_check_delay:
    description: Seconds to wait after a start before checking that slon still runs (V(0) skips the check).
    type: int
    default: 1
seealso:
  - module: dany.slony.slony_info
author:
  - Dany Slony developers (@dany-slony)
'''

EXAMPLES = r'''
- name: Run the slon of node 2 (the dany.slony.slon role does this from its variables)
  dany.slony.slony_slon:
    config_file: /etc/dany-slony/slon-shop-2.conf
    config: |
      cluster_name = 'shop'
      conn_info = 'host=db2 dbname=shop user=slony'
      sync_interval = 2000
    pid_file: /run/dany-slony/slon-shop-2.pid
    log_file: /var/log/dany-slony/slon-shop-2.log
    user: postgres

- name: The same slon, its password in a passfile rather than in the configuration
  dany.slony.slony_slon:
    config_file: /etc/dany-slony/slon-shop-2.conf
    config: |
      cluster_name = 'shop'
      conn_info = 'host=db2 dbname=shop user=slony'
    passfile: /etc/dany-slony/slon-shop-2.pgpass
    passfile_content: "{{ [slony_node_conninfos[2], slony_node_conninfos[1]] | dany.slony.pgpass }}"
    pid_file: /run/dany-slony/slon-shop-2.pid
    log_file: /var/log/dany-slony/slon-shop-2.log

- name: Stop it and remove its files
  dany.slony.slony_slon:
    state: absent
    config_file: /etc/dany-slony/slon-shop-2.conf
    pid_file: /run/dany-slony/slon-shop-2.pid
    log_file: /var/log/dany-slony/slon-shop-2.log
'''

RETURN = r'''
supervisor:
  description: The supervisor the run used, V(start-stop-daemon) or V(none) (see O(supervisor)).
  returned: always
  type: str
  sample: start-stop-daemon
action:
  description: What was (in check mode, would be) done with the process.
  returned: always
  type: str
  choices: [none, start, stop, restart]
  sample: none
running:
  description: Whether slon runs after the task (in check mode, before it).
  returned: always
  type: bool
  sample: true
pid:
  description: The pid of the running slon, or null.
  returned: always
  type: int
  sample: 4242
config_changed:
  description: Whether the configuration file was (would be) written.
  returned: always
  type: bool
  sample: false
files:
  description: The files and directories created, changed or removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["/etc/dany-slony/slon-shop-2.conf"]
passfile:
  description: The passfile slon uses (C(PGPASSFILE)), or null when it has none.
  returned: always
  type: str
  sample: /etc/dany-slony/slon-shop-2.pgpass
'''

import os
import pwd
import re
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dany.slony.plugins.module_utils.conninfo import mask_password_patterns

# start-stop-daemon --status: running, dead with a stale pid file, not running.
STATUS_RUNNING = 0
STATUS_STALE = 1
STATUS_STOPPED = 3
_SECRET = re.compile(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s'\\]+))")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def secrets_of(text):
    """The password values in a configuration or log text."""
    return set(a or b for a, b in _SECRET.findall(text or "") if a or b)


def _pgpass_password(line):
    """The password field of a pgpass line (the fifth, ``:`` escaped as ``\\:``)."""
    fields, current, escaped = [], "", False
    for char in line:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields.append(current)
            current = ""
        else:
            current += char
    return current if len(fields) == 4 and current else None


def decide_action(state, running, config_changed):
    """What to do with the process (pure)."""
    if state in ("stopped", "absent"):
        return "stop" if running else "none"
    if state == "restarted":
        return "restart" if running else "start"
    if not running:
        return "start"
    return "restart" if config_changed else "none"


class Slon:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.files = []
        for secret in secrets_of(self.params["config"]):
            module.no_log_values.add(secret)
        for line in (self.params["passfile_content"] or "").splitlines():
            secret = _pgpass_password(line)
            if secret:
                module.no_log_values.add(secret)

    # -- files --------------------------------------------------------------------------
    def _owner(self):
        user = self.params["user"]
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            self.module.fail_json(msg="user %s does not exist on this host (slon runs as it)" % user)
        return entry

    def directory(self, path):
        if os.path.isdir(path):
            return False
        self.files.append(path)
        if not self.check:
            try:
                os.makedirs(path, 0o755)
            except OSError:
                # Several hosts of one machine (the slons of a lab) create it at once.
                if not os.path.isdir(path):
                    raise
            os.chmod(path, 0o755)
        return True

    def content(self, path, text, uid, gid, mode):
        """Write ``text`` to ``path`` unless it is there already; returns (changed, old text)."""
        old = None
        try:
            with open(path, "r") as handle:
                old = handle.read()
            info = os.stat(path)
        except (IOError, OSError):
            info = None
        same = old == text and info is not None
        if same:
            same = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, uid, gid)
        if same:
            return False, old
        self.files.append(path)
        if self.check:
            return True, old
        directory = os.path.dirname(path)
        self.directory(directory)
        handle, temp = tempfile.mkstemp(dir=directory, prefix=".dany-slony-")
        try:
            os.fchmod(handle, mode)
            os.fchown(handle, uid, gid)
            os.write(handle, text.encode("utf-8"))
            os.fsync(handle)
        finally:
            os.close(handle)
        os.rename(temp, path)
        return True, old

    def log_file(self, path, uid, gid):
        """Create the log for the slon account only (start-stop-daemon would make it 0644)."""
        try:
            info = os.stat(path)
        except OSError:
            info = None
        if info is not None and (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, uid, gid):
            return
        self.files.append(path)
        if self.check:
            return
        self.directory(os.path.dirname(path))
        if info is None:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640))
        os.chown(path, uid, gid)
        os.chmod(path, 0o640)

    def remove(self, path):
        if path and (os.path.lexists(path)):
            self.files.append(path)
            if not self.check:
                os.unlink(path)

    # -- the process --------------------------------------------------------------------
    def ssd(self, *args):
        command = ["start-stop-daemon"] + list(args)
        command += ["--pidfile", self.params["pid_file"], "--name", self.process_name]
        return self.module.run_command(command)

    @property
    def process_name(self):
        return self.params["process_name"] or os.path.basename(self.params["binary"])

    def status(self):
        rc, out, err = self.ssd("--status")
        if rc not in (STATUS_RUNNING, STATUS_STALE, STATUS_STOPPED):
            self.module.fail_json(msg="start-stop-daemon --status cannot tell whether slon runs "
                                      "(rc %d): %s" % (rc, (err or out).strip()))
        return rc == STATUS_RUNNING

    def pid(self):
        try:
            with open(self.params["pid_file"]) as handle:
                return int(handle.read().strip())
        except (IOError, OSError, ValueError):
            return None

    def stop(self):
        rc, out, err = self.ssd("--stop", "--retry", "TERM/%d/KILL/5" % self.params["stop_timeout"],
                                "--remove-pidfile")
        if rc not in (0, 1):
            self.module.fail_json(msg="start-stop-daemon could not stop slon (rc %d): %s"
                                      % (rc, (err or out).strip()))

    @property
    def uses_passfile(self):
        return bool(self.params["passfile"] and self.params["passfile_content"])

    def start(self, home):
        p = self.params
        env = ["PATH=" + SAFE_PATH, "HOME=" + home, "USER=" + p["user"], "LANG=C.UTF-8"]
        if self.uses_passfile:
            env.append("PGPASSFILE=" + p["passfile"])
        env += ["%s=%s" % (k, v) for k, v in sorted(p["environment"].items())
                if not (k == "PGPASSFILE" and self.uses_passfile)]
        argv = ["start-stop-daemon", "--start", "--background", "--make-pidfile",
                "--pidfile", p["pid_file"], "--name", self.process_name,
                "--chuid", p["user"], "--chdir", "/", "--umask", "027",
                "--output", p["log_file"], "--startas", "/usr/bin/env", "--", "-i"]
        argv += env + [p["binary"], "-f", p["config_file"]] + list(p["extra_args"])
        rc, out, err = self.module.run_command(argv)
        if rc not in (0, 1):  # 1: already running (started by someone else meanwhile)
            self.module.fail_json(msg="start-stop-daemon could not start slon (rc %d): %s"
                                      % (rc, mask_password_patterns((err or out).strip())))

    def check_started(self):
        delay = self.params["start_check_delay"]
        if delay <= 0:
            return
        time.sleep(delay)
        if self.status():
            return
        tail = []
        try:
            with open(self.params["log_file"], "r") as handle:
                tail = handle.read().splitlines()[-25:]
        except (IOError, OSError):
            pass
        for line in tail:
            for secret in secrets_of(line):
                self.module.no_log_values.add(secret)
        self.module.fail_json(
            msg="slon exited right after its start; end of %s (passwords masked): %s"
                % (self.params["log_file"], " | ".join(mask_password_patterns(line) for line in tail)),
            log_tail=[mask_password_patterns(line) for line in tail])

    # -- the whole run ------------------------------------------------------------------
    @property
    def supervisor(self):
        choice = self.params["supervisor"]
        if choice == "auto":
            return "none" if os.path.isdir("/run/systemd/system") else "start-stop-daemon"
        return choice

    def run(self):
        p = self.params
        state, supervised = p["state"], self.supervisor == "start-stop-daemon"
        if state == "absent":
            return self.run_absent(supervised)
        entry = self._owner()
        uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        if supervised and not (os.path.isfile(p["binary"]) and os.access(p["binary"], os.X_OK)):
            if not self.check:
                self.module.fail_json(msg="%s does not exist or is not executable: install "
                                          "Slony-I (role dany.slony.packages) or set slon_binary"
                                      % p["binary"])
        self.directory(os.path.dirname(p["config_file"]))
        config_changed, old = self.content(p["config_file"], p["config"], uid, gid, 0o600)
        # The passfile: written when there is content, else removed. Its appearing or going
        # away changes slon's environment (a restart); a new password does not.
        had_passfile = bool(p["passfile"]) and os.path.lexists(p["passfile"])
        if self.uses_passfile:
            self.content(p["passfile"], p["passfile_content"], uid, gid, 0o600)
        elif p["passfile"]:
            self.remove(p["passfile"])
        environment_changed = bool(p["passfile"]) and had_passfile != self.uses_passfile
        result = dict(config_changed=config_changed, action="none", running=False, pid=None,
                      supervisor=self.supervisor,
                      passfile=p["passfile"] if self.uses_passfile else None)
        if self.module._diff:
            result["diff"] = dict(before=mask_password_patterns(old or ""),
                                  after=mask_password_patterns(p["config"]),
                                  before_header=p["config_file"], after_header=p["config_file"])
        if not supervised:
            return result
        self.directory(os.path.dirname(p["pid_file"]))
        self.log_file(p["log_file"], uid, gid)
        if p["logrotate"] and p["logrotate_file"] and os.path.isdir(os.path.dirname(p["logrotate_file"])):
            self.content(p["logrotate_file"], p["logrotate"], 0, 0, 0o644)
        running = self.status()
        action = decide_action(state, running, config_changed or environment_changed)
        result.update(action=action, running=running)
        if action != "none" and not self.check:
            if action in ("stop", "restart"):
                self.stop()
            if action in ("start", "restart"):
                self.start(home)
                self.check_started()
            result["running"] = action != "stop"
        result["pid"] = self.pid() if result["running"] and not self.check else (
            self.pid() if running else None)
        return result

    def run_absent(self, supervised):
        p = self.params
        result = dict(config_changed=os.path.lexists(p["config_file"]), action="none",
                      running=False, pid=None, supervisor=self.supervisor, passfile=None)
        if supervised and p["pid_file"]:
            running = self.status()
            if running:
                result["action"] = "stop"
                if not self.check:
                    self.stop()
        self.remove(p["config_file"])
        self.remove(p["passfile"])
        if supervised:
            self.remove(p["pid_file"])
            self.remove(p["logrotate_file"])
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["started", "stopped", "restarted", "absent"],
                       default="started"),
            supervisor=dict(type="str", choices=["auto", "start-stop-daemon", "none"],
                            default="start-stop-daemon"),
            config=dict(type="str", no_log=True),
            config_file=dict(type="path", required=True),
            user=dict(type="str", default="postgres"),
            binary=dict(type="path", default="/usr/bin/slon"),
            process_name=dict(type="str"),
            pid_file=dict(type="path"),
            log_file=dict(type="path"),
            logrotate=dict(type="str"),
            logrotate_file=dict(type="path"),
            passfile=dict(type="path"),
            passfile_content=dict(type="str", default="", no_log=True),
            environment=dict(type="dict", default={}, no_log=True),
            extra_args=dict(type="list", elements="str", default=[]),
            stop_timeout=dict(type="int", default=30),
            start_check_delay=dict(type="int", default=1),
        ),
        required_if=[("state", "started", ("config",)), ("state", "restarted", ("config",)),
                     ("state", "stopped", ("config",)),
                     ("supervisor", "start-stop-daemon", ("pid_file", "log_file")),
                     ("supervisor", "auto", ("pid_file", "log_file"))],
        supports_check_mode=True,
    )
    if module.params["stop_timeout"] < 1 or module.params["start_check_delay"] < 0:
        module.fail_json(msg="stop_timeout must be >= 1 and start_check_delay >= 0")
    slon = Slon(module)
    result = slon.run()
    files = sorted(set(slon.files))
    module.exit_json(changed=bool(files) or result["action"] != "none", files=files, **result)


if __name__ == "__main__":
    main()
