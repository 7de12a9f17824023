"""The timers of waiting for a Job: small objects instead of timestamps interleaved in one loop.

:class:`Grace` — how long a problem that may heal (an unschedulable pod, a passing kubelet error)
may last before the task fails with it; :class:`Backoff` — checks that are due at growing
intervals (the Events of a Job that has no pod yet).
"""

from __future__ import annotations

import math


class Grace:
    """A problem may last ``grace_s``; observed again and again, it expires with ``message``
    (``{grace}`` and ``{problem}`` filled in). A moment without the problem starts it over."""

    def __init__(self, grace_s: float, message: str) -> None:
        self.grace_s = grace_s
        self.message = message
        self.since: float | None = None

    def observe(self, problem: str | None, now: float) -> str | None:
        """The failure message once the problem has lasted the grace; else None."""
        if problem is None:
            self.since = None
            return None
        if self.since is None:
            self.since = now
        if now - self.since >= self.grace_s:
            return self.message.format(grace=f"{self.grace_s:g}s", problem=problem)
        return None

    @property
    def wake_at(self) -> float:
        """When the grace runs out (``inf``: no problem now)."""
        return math.inf if self.since is None else self.since + self.grace_s


class Backoff:
    """A check due at ``first_at``, then at doubling intervals up to ``longest_s``."""

    def __init__(self, first_at: float, interval_s: float, longest_s: float) -> None:
        self.next_at = first_at
        self.interval_s = max(interval_s, 0.1)
        self.longest_s = longest_s

    def due(self, now: float) -> bool:
        """Whether the check is due now; if so, the next one is scheduled."""
        if now < self.next_at:
            return False
        self.interval_s = min(self.interval_s * 2, self.longest_s)
        self.next_at = now + self.interval_s
        return True
