"""The fault-rule base both doubles build on: counting, using up, first match, pass-through rules."""

from __future__ import annotations

from dataclasses import dataclass

from jes.devtools.doubles.faults import FaultRule, FaultRules


@dataclass(eq=False, kw_only=True)
class Rule(FaultRule):
    path: str
    slow_only: bool = False


class Rules(FaultRules[Rule]):
    def add(self, path: str, *, times: int | None = None, slow_only: bool = False, latency_s: float = 0.0) -> Rule:
        return self._add(Rule(path=path, times=times, slow_only=slow_only, latency_s=latency_s))

    def take(self, path: str) -> tuple[list[Rule], Rule | None]:
        return self._fire(lambda rule: rule.path == path, passes=lambda rule: rule.slow_only)


def test_the_first_match_fires_and_is_dropped_when_used_up() -> None:
    rules = Rules()
    first = rules.add(path="/a", times=2)
    second = rules.add(path="/a")
    assert rules.take("/a") == ([], first)
    assert rules.take("/b") == ([], None)
    assert rules.take("/a") == ([], first)
    assert rules.take("/a") == ([], second)
    assert (first.fired, first.used_up, second.fired, second.used_up) == (2, True, 1, False)
    assert rules.rules == [second]


def test_pass_through_rules_fire_and_let_the_next_one_fire_too() -> None:
    rules = Rules()
    slow = rules.add(path="/a", slow_only=True, latency_s=0.5)
    error = rules.add(path="/a", times=1)
    later = rules.add(path="/a")
    assert rules.take("/a") == ([slow], error)
    assert rules.take("/a") == ([slow], later)
    assert (slow.fired, error.fired, later.fired) == (2, 1, 1)


def test_remove_and_clear() -> None:
    rules = Rules()
    rule = rules.add(path="/a")
    rules.remove(rule)
    rules.remove(rule)  # already gone: nothing happens
    assert rules.take("/a") == ([], None)
    rules.add(path="/a")
    rules.clear()
    assert rules.rules == []
