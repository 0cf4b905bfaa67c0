"""Test doubles shared by the unit tests."""

from __future__ import annotations


class FakeClock:
    """A waits.Clock whose time only moves when something sleeps."""

    def __init__(self, start: float = 1000.0):
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.time += seconds

    @property
    def waited(self) -> float:
        return sum(self.sleeps)
