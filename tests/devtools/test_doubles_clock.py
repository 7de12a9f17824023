"""The one fake clock both doubles run on: frozen for the control plane, ticking for the fake cluster."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from jes.devtools.doubles.clock import Clock, FakeClock

START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def test_the_real_clock_is_utc_and_monotonic() -> None:
    clock = Clock()
    assert clock.now().tzinfo is UTC
    assert abs(clock.monotonic() - time.monotonic()) < 1


def test_a_frozen_clock_moves_only_when_told() -> None:
    clock = FakeClock(START)
    before = clock.monotonic()
    time.sleep(0.01)
    assert clock.now() == START and clock.monotonic() == before
    clock.advance(0.1)
    clock.advance(59.9)
    assert clock.now() == START + timedelta(minutes=1)
    assert clock.monotonic() == pytest.approx(before + 60)
    clock.set(START + timedelta(hours=1))
    assert clock.now() == START + timedelta(hours=1)
    clock.reset()
    assert clock.now() == START


def test_a_ticking_clock_runs_with_real_time_plus_the_moves() -> None:
    clock = FakeClock(ticking=True)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1
    clock.advance(3600)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds() - 3600) < 1
    assert abs(clock.monotonic() - time.monotonic() - 3600) < 1
    first = clock.monotonic()
    time.sleep(0.01)
    assert clock.monotonic() > first
    clock.reset()
    assert abs(clock.monotonic() - time.monotonic()) < 1


def test_advancing_tells_the_listener() -> None:
    clock = FakeClock()
    moves: list[datetime] = []
    clock.on_advance = lambda: moves.append(clock.now())
    clock.advance(5)
    assert moves == [clock.now()]


@pytest.mark.parametrize(
    ("start", "ticking", "problem"),
    [(datetime(2024, 1, 1), False, "timezone-aware"), (START, True, "real time")],
)
def test_bad_starts_are_refused(start: datetime, ticking: bool, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FakeClock(start, ticking=ticking)
