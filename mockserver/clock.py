"""Time as a dependency: the lifecycle engine reads a clock it is given, never time.time()."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


class Clock(Protocol):
    """Seconds since the Unix epoch, as a float."""

    def now(self) -> float: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to: tests and the control plane advance it."""

    DEFAULT_START = 1_790_000_000.0  # 2026-09-21T12:53:20Z, a fixed, recognisable instant

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never backward); return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds} seconds")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now})"


@runtime_checkable
class SharedTime(Protocol):
    """A store that keeps a manual clock's "now" where every worker reads it."""

    def clock_now(self, start: float) -> float:
        """The stored now (``start`` until the clock is first advanced)."""
        ...

    def clock_advance(self, seconds: float, start: float) -> float:
        """Add ``seconds`` to the stored now atomically (from ``start`` if unset); return it."""
        ...


class StoredManualClock(ManualClock):
    """A manual clock whose "now" lives in a shared store (SQLite, Redis): every worker of a
    server, and a restarted server, sees the same time, and advances add up atomically."""

    def __init__(self, store: SharedTime, start: float = ManualClock.DEFAULT_START) -> None:
        super().__init__(start)
        self._store = store
        self._start = float(start)

    def now(self) -> float:
        self._now = self._store.clock_now(self._start)
        return self._now

    def last_known(self) -> float:
        """The now last read from the store (no I/O: for answering while the store is down)."""
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds} seconds")
        return self._store.clock_advance(float(seconds), self._start)

    def __repr__(self) -> str:
        return f"StoredManualClock(now={self.now()})"
