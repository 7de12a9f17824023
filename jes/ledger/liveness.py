"""Judging whether another replica is alive without trusting its clock.

As client-go's leader election does: a record (a heartbeat Lease, a claim) counts as alive while
its version keeps changing; once this process has seen the *same* version for ``duration_s`` on
its *own monotonic clock*, it is expired. A timestamp written by another host is never compared
with the local clock, so clock skew between nodes cannot make a live replica look dead. The price:
a record seen for the first time is alive for at least ``duration_s``, even if it stopped long ago.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Liveness:
    def __init__(self, duration_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.duration_s = duration_s
        self._clock = clock
        self._seen: dict[str, tuple[str, float]] = {}

    def alive(self, key: str, version: str) -> bool:
        """Record that ``key`` is at ``version`` now; whether it changed within ``duration_s``.

        ``version`` "" stands for "absent": an absent record also gets ``duration_s`` to appear.
        """
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or seen[0] != version:
            self._seen[key] = (version, now)
            return True
        return now - seen[1] < self.duration_s

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def keep_only(self, keys: set[str]) -> None:
        """Drop what is no longer observed (bounded memory)."""
        for key in [k for k in self._seen if k not in keys]:
            del self._seen[key]
