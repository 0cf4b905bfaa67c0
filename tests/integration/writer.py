"""A writer thread: commits one row at a time, continuously, and records every committed key.

``Writer(conninfo, table)`` inserts into ``table`` (a ``bigserial`` key ``id`` and a text
``note``) in its own transaction per row and keeps the key of every row whose COMMIT
succeeded. A failed statement or a lost connection is recorded and retried (a new
connection when the old one is gone); a row whose COMMIT result is unknown (the
connection broke during COMMIT) is recorded in ``uncertain``. The longest time between
two successful commits is the write downtime the application saw.
"""

from __future__ import annotations

import threading
import time

import psycopg2


class Writer(threading.Thread):
    def __init__(self, conninfo: str, table: str = "public.migrate_writes", pause: float = 0.005):
        super().__init__(name="migrate-writer", daemon=True)
        self.conninfo = conninfo
        self.table = table
        self.pause = pause
        self.committed: list[int] = []
        self.commit_times: list[float] = []
        self.uncertain: list[str] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self._conn = None

    # -- control -------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        self._stop_event.set()
        self.join(timeout)

    def wait_for_commits(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more rows are committed (the writer is alive and writing)."""
        target = len(self.committed) + count
        deadline = time.monotonic() + timeout
        while len(self.committed) < target:
            if time.monotonic() > deadline:
                raise TimeoutError("the writer committed %d of %d rows in %.0fs; last errors: %s"
                                   % (len(self.committed) - target + count, count, timeout, self.errors[-3:]))
            time.sleep(0.02)

    # -- measures ------------------------------------------------------------------------

    def max_gap(self, since: float | None = None) -> float:
        """Longest time between two successive commits (after ``since``, a monotonic time)."""
        times = [t for t in self.commit_times if since is None or t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    # -- the thread ----------------------------------------------------------------------

    def _connect(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.conninfo)
        return self._conn

    def run(self) -> None:
        n = 0
        while not self._stop_event.is_set():
            n += 1
            committing = False
            try:
                conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute("insert into %s (note) values (%%s) returning id" % self.table, ("row %d" % n,))
                    key = cur.fetchone()[0]
                committing = True
                conn.commit()
                self.committed.append(key)
                self.commit_times.append(time.monotonic())
            except psycopg2.Error as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.errors.append(message)
                if committing:
                    self.uncertain.append(message)
                try:
                    if self._conn is not None and not self._conn.closed:
                        self._conn.rollback()
                except psycopg2.Error:
                    self._conn.close()
                time.sleep(0.05)
                continue
            if self.pause:
                time.sleep(self.pause)
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
