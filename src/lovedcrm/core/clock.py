"""The time the product schedules by, injectable.

Code that decides *when* something happens later — a delayed job, a sandbox receipt, a
retry — asks :func:`now` instead of the system clock. In production that is the system clock
(and the database's ``now()`` stays the authority for "ready now"). Tests install a
:class:`ManualClock` with :func:`use_clock`: time then moves only when the test says so, so a
delayed job runs because the test advanced the clock, never because the machine was slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    manual: bool

    def now(self) -> datetime: ...


class SystemClock:
    manual = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until :meth:`advance` (tests)."""

    manual = True

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        self._now += timedelta(seconds=seconds, **delta)
        return self._now


_clock: Clock = SystemClock()


def current() -> Clock:
    return _clock


def now() -> datetime:
    return _clock.now()


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` for the code run inside (this process)."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous
