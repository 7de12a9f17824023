"""Time for the test doubles: the real clock, or a :class:`FakeClock` that tests move by hand.

The control plane's task timeouts, integration expiry, ``triggeredAfter`` and OAuth token expiry,
and the fake Kubernetes API's pod durations, deadlines and TTLs all read a clock, so a test can
advance it instead of waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class Clock:
    """The real clock: wall time in UTC, and monotonic seconds."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock(Clock):
    """A clock tests move with :meth:`advance`; thread-safe.

    Frozen (the default), it stands still between moves: every instant a test sees is one it
    chose (the control plane's timeouts). ``ticking=True`` runs with real time plus what tests
    added: the fake Kubernetes API's pods take their scripted durations in real time, while a test
    can still jump over a deadline.
    """

    def __init__(self, start: datetime | None = None, *, ticking: bool = False) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        if start is not None and ticking:
            raise ValueError("a ticking FakeClock starts at the real time")
        self._ticking = ticking
        self._start = start or datetime.now(UTC)
        self._start_monotonic = time.monotonic()
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        self.on_advance: Callable[[], None] | None = None
        """Called after each :meth:`advance` (the fake Kubernetes API fires its due timers)."""

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return (datetime.now(UTC) if self._ticking else self._start) + offset

    def monotonic(self) -> float:
        with self._lock:
            offset_s = self._offset.total_seconds()
        return (time.monotonic() if self._ticking else self._start_monotonic) + offset_s

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        if self.on_advance is not None:
            self.on_advance()

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (a ticking clock then runs on from there)."""
        with self._lock:
            self._offset = when - (datetime.now(UTC) if self._ticking else self._start)

    def reset(self) -> None:
        """Forget every move: back to the start (frozen) or to real time (ticking)."""
        with self._lock:
            self._offset = timedelta(0)
