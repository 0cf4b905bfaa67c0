# Benchmark helper, not part of the collection: a callback that writes, per task, the wall
# time from its start to the start of the next task (all hosts together) as JSON lines to
# the file named by $DANY_TASK_PROFILE. Enabled by bench/noop.py through
# ANSIBLE_CALLBACK_PLUGINS / ANSIBLE_CALLBACKS_ENABLED.
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_profile
type: aggregate
short_description: per-task wall time as JSON lines (benchmark helper)
description: Writes one JSON line per task to the file named by DANY_TASK_PROFILE.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._current = None
        self._rows = []
        self._hosts = 0

    def _close(self):
        if self._current is not None:
            name, role, start = self._current
            self._rows.append({"task": name, "role": role, "seconds": round(time.monotonic() - start, 3),
                               "hosts": self._hosts})
        self._current = None
        self._hosts = 0

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        role = task._role.get_name() if task._role else ""
        self._current = (task.get_name(), role, time.monotonic())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_ok(self, result, *args, **kwargs):
        self._hosts += 1

    v2_runner_on_failed = v2_runner_on_ok
    v2_runner_on_skipped = v2_runner_on_ok

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("DANY_TASK_PROFILE")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                for row in self._rows:
                    out.write(json.dumps(row) + "\n")
