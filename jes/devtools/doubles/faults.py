"""The base of an injected failure and the list of them a double consults on each request.

What both doubles mean the same way: a rule fires a number of ``times`` (``None``: until it is
removed), counts how often it ``fired``, may wait ``latency_s`` first and may ask the client to
come back after ``retry_after_s``. Which requests a rule matches and what it answers are each
double's own (:mod:`jes.devtools.controlplane.faults`, ``fakes.fake_kube._faults``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar


@dataclass(eq=False, kw_only=True)
class FaultRule:
    """One injected failure; ``fired`` counts how often it matched."""

    times: int | None = None
    latency_s: float = 0.0
    retry_after_s: float | None = None
    fired: int = 0

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.fired >= self.times


R = TypeVar("R", bound=FaultRule)


def _never(rule: FaultRule) -> bool:
    return False


class FaultRules(Generic[R]):
    """The active rules, in the order they were added; thread-safe. A used-up rule is dropped."""

    def __init__(self) -> None:
        self._rules: list[R] = []
        self._lock = threading.Lock()

    def _add(self, rule: R) -> R:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: R) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[R]:
        with self._lock:
            return list(self._rules)

    def _fire(self, matches: Callable[[R], bool], *, passes: Callable[[R], bool] = _never) -> tuple[list[R], R | None]:
        """Fire the rules that match a request, in order, each counted once.

        A rule that ``passes`` (one that only slows the request down) lets the next rules fire
        too; the first other one ends the walk. Returns the passing rules and that one.
        """
        passed: list[R] = []
        with self._lock:
            for rule in list(self._rules):
                if not matches(rule):
                    continue
                rule.fired += 1
                if rule.used_up:
                    self._rules.remove(rule)
                if not passes(rule):
                    return passed, rule
                passed.append(rule)
        return passed, None
