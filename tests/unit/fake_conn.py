"""A psycopg2 connection double for the unit tests of step runners and check mode:
its cursor hands every statement to ``execute(query, params)`` (which may raise)."""

from __future__ import annotations


class FakeCursor:
    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        self.connection.executed.append((query, params))
        self.connection.on_execute(query, params)

    def fetchone(self):
        return self.connection.answer(self.connection.executed[-1][0])

    def mogrify(self, query, params=None):
        return str(query).encode("utf-8")


class FakeConnection:
    """``on_execute(query, params)`` runs for every statement; ``answer(query)`` gives
    the row fetchone() returns after it; rollbacks and commits are counted."""

    def __init__(self, on_execute=lambda query, params: None, answer=lambda query: None):
        self.on_execute = on_execute
        self.answer = answer
        self.executed = []
        self.rollbacks = 0
        self.commits = 0
        self.closed = False

    def cursor(self):
        return FakeCursor(self)

    def rollback(self):
        self.rollbacks += 1

    def commit(self):
        self.commits += 1

    def close(self):
        self.closed = True
