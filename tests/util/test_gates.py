"""The priority gate: a limit whose waiters go in by priority, then by arrival."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics

from jes.util import gates
from jes.util.gates import FINISHING, LOW, NORMAL, URGENT, PriorityGate, RoutineLimit, Urgency


async def test_waiters_go_in_by_priority_then_by_arrival() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.hold():
            await release.wait()

    async def waiter(name: str, priority: int) -> None:
        async with gate.hold(priority):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiters = [
        asyncio.create_task(waiter(name, priority))
        for name, priority in (("low", LOW), ("normal-1", NORMAL), ("urgent", URGENT), ("normal-2", NORMAL))
    ]
    await asyncio.sleep(0)
    assert gate.locked() and order == []
    release.set()
    await asyncio.gather(first, *waiters)
    assert order == ["urgent", "normal-1", "normal-2", "low"]
    assert not gate.locked()


async def test_at_most_size_hold_it_at_once() -> None:
    gate = PriorityGate(3)
    holding = most = 0

    async def work() -> None:
        nonlocal holding, most
        async with gate.hold():
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(work() for _ in range(20)))
    assert most == 3 and holding == 0 and not gate.locked()


async def test_a_cancelled_waiter_neither_holds_nor_blocks_the_next() -> None:
    gate = PriorityGate(1)
    release = asyncio.Event()
    got: list[str] = []

    async def holder() -> None:
        async with gate.hold():
            await release.wait()

    async def waiter(name: str) -> None:
        async with gate.hold():
            got.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(waiter("cancelled"))
    later = asyncio.create_task(waiter("later"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, later)
    assert got == ["later"] and cancelled.cancelled() and not gate.locked()


async def test_a_waiter_cancelled_as_it_is_let_in_passes_its_turn_on() -> None:
    gate = PriorityGate(1)
    got: list[str] = []

    async def waiter(name: str) -> None:
        async with gate.hold():
            got.append(name)

    held = gate.hold()
    await held.__aenter__()
    unlucky = asyncio.create_task(waiter("unlucky"))
    later = asyncio.create_task(waiter("later"))
    await asyncio.sleep(0)
    await held.__aexit__(None, None, None)  # "unlucky" is let in, but has not run yet ...
    unlucky.cancel()  # ... and is cancelled before it does
    async with asyncio.timeout(5):  # (were its turn lost, "later" would wait for ever)
        await later
    assert got == ["later"] and unlucky.cancelled() and not gate.locked()


async def _queue(
    gate: PriorityGate, waiters: list[tuple[str, int, Urgency | None]], order: list[str]
) -> list[asyncio.Task[None]]:
    """Start ``waiters`` (name, priority, the urgency of their work) one after the other, all waiting."""

    async def waiter(name: str, priority: int) -> None:
        async with gate.hold(priority):
            order.append(name)

    tasks = []
    for name, priority, urgency in waiters:
        if urgency is None:
            tasks.append(asyncio.create_task(waiter(name, priority)))
        else:
            with gates.within(urgency):
                tasks.append(asyncio.create_task(waiter(name, priority)))
        await asyncio.sleep(0)
    return tasks


async def test_urgent_work_goes_in_at_its_level_unless_it_asks_higher() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    await gate.acquire()
    early = await _queue(gate, [("normal", NORMAL, None)], order)
    with gates.urgent():
        assert gates.level_now() == FINISHING
        waiting = await _queue(gate, [("urgent work", NORMAL, None), ("its .finished", URGENT, None)], order)
    assert gates.level_now() is None
    gate.release()
    await asyncio.gather(*early, *waiting)
    assert order == ["its .finished", "urgent work", "normal"] and not gate.locked()


async def test_work_that_becomes_urgent_moves_its_waiting_requests_to_the_front() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    finishing = Urgency()
    await gate.acquire()
    waiting = await _queue(
        gate,
        [("new-1", NORMAL, None), ("finishing", NORMAL, finishing), ("new-2", NORMAL, Urgency()), ("low", LOW, None)],
        order,
    )
    finishing.make_urgent()
    finishing.make_urgent()  # (twice: no second entry)
    assert finishing.level == FINISHING
    waiting += await _queue(gate, [(".finished", URGENT, None)], order)
    gate.release()
    await asyncio.gather(*waiting)
    # an event's last step first, then the work of an event near its end, then the rest in order
    assert order == [".finished", "finishing", "new-1", "new-2", "low"]
    assert not gate.locked() and gate._waiting == []  # (the promoted waiter's first entry was skipped)


async def test_a_low_priority_request_of_work_not_urgent_stays_low() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    await gate.acquire()
    waiting = await _queue(gate, [("low", LOW, Urgency()), ("normal", NORMAL, None)], order)
    gate.release()
    await asyncio.gather(*waiting)
    assert order == ["normal", "low"]


async def test_a_promoted_waiter_that_is_cancelled_neither_holds_nor_blocks() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    finishing = Urgency()
    await gate.acquire()
    cancelled, later = await _queue(gate, [("cancelled", NORMAL, finishing), ("later", NORMAL, None)], order)
    finishing.make_urgent()
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.release()
    async with asyncio.timeout(5):
        await later
    assert order == ["later"] and cancelled.cancelled() and not gate.locked()
    assert not finishing._waiting  # (nothing kept of requests no longer waiting)


async def test_work_more_urgent_still_moves_up_and_never_twice_to_the_same_place() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    finishing = Urgency()
    await gate.acquire()
    waiting = await _queue(
        gate, [("finishing", FINISHING, finishing), ("other", FINISHING, None), ("normal", NORMAL, finishing)], order
    )
    finishing.make_urgent(FINISHING)  # (its first request waits at that level already: left as it is)
    assert len(gate._waiting) == 4
    waiting += await _queue(gate, [("finished", URGENT, None)], order)
    finishing.make_urgent(URGENT)
    gate.release()
    await asyncio.gather(*waiting)
    assert order == ["finishing", "normal", "finished", "other"]
    assert not gate.locked() and gate._waiting == []


async def test_work_begun_ends_for_the_task_but_not_for_the_tasks_it_started() -> None:
    urgency = gates.begin()
    started = asyncio.create_task(_level_later())
    urgency.make_urgent()
    gates.end()
    assert gates.level_now() is None  # the event's later steps are not urgent
    assert await started == gates.FINISHING  # its progress deliveries are


async def _level_later() -> int | None:
    await asyncio.sleep(0)
    return gates.level_now()


# -- the routine limit -------------------------------------------------------------------------


async def test_routine_holders_stay_under_the_limit_while_urgent_ones_use_every_place() -> None:
    gate = PriorityGate(4, _limit(4, value=2))
    order: list[str] = []
    assert await gate.acquire() and await gate.acquire(LOW)  # two routine places: the limit
    held_back = await _queue(gate, [("routine", NORMAL, None)], order)
    assert order == [] and gate.locked()
    assert await gate.acquire(FINISHING) is False  # not routine: in at once, past the routine waiter
    with gates.urgent(URGENT):
        assert await gate.acquire() is False  # (the urgency of the work counts, not what it asks)
    assert gate._free == 0
    gate.release(False)  # a free place, but the limit still holds the routine waiter back
    await asyncio.sleep(0)
    assert order == []
    gate.release(True)  # a routine place: in it goes
    await asyncio.gather(*held_back)
    assert order == ["routine"]
    gate.release(True)
    gate.release(False)
    assert gate._free == 4 and gate._routine_held == 0 and not gate.locked()


async def test_a_held_back_routine_request_whose_work_becomes_urgent_goes_in() -> None:
    gate = PriorityGate(2, _limit(2, value=1))
    order: list[str] = []
    finishing = Urgency()
    assert await gate.acquire()  # the one routine place
    (waiting,) = await _queue(gate, [("finishing", NORMAL, finishing)], order)
    assert order == []
    finishing.make_urgent()  # a free place: no release needed
    await waiting
    assert order == ["finishing"] and gate._routine_held == 1 and gate._waiting == []


async def test_a_limit_that_grows_lets_held_back_requests_in() -> None:
    limit = _limit(3, value=1)
    gate = PriorityGate(3, limit)
    order: list[str] = []
    assert await gate.acquire()
    waiting = await _queue(gate, [("a", NORMAL, None), ("b", NORMAL, None)], order)
    gate.observe(0.001, "get pods")  # the first round trip: the base; no queue -> the limit grows to 2
    await asyncio.sleep(0)
    assert limit.value == 2 and order == ["a"]
    gate.observe(0.001, "get pods")
    await asyncio.gather(*waiting)
    assert limit.value == 3 and order == ["a", "b"]


class _CheckedGate(PriorityGate):
    """A gate that checks its limits at every moment it lets a request in."""

    def _let_in(self, priority: int) -> bool:
        routine = super()._let_in(priority)
        assert self._free >= 0 and routine == (priority >= NORMAL)
        assert not routine or self._routine_held <= self._routine_max(), (self._routine_held, self._routine_max())
        return routine


async def test_random_use_of_a_limited_gate_never_breaks_its_limits_nor_loses_a_place() -> None:
    for seed in range(100):
        async with asyncio.timeout(10):  # (a broken gate would leave a waiter for ever: fail, not hang)
            await _random_use(seed)


async def _random_use(seed: int) -> None:
    """40 requests at random levels (each with a random generator of its own, so a seed is one run),
    of work made urgent at random, some cancelled, round trips that move the limit; the gate
    checks its limits as it lets each in (:class:`_CheckedGate`)."""
    rng = random.Random(seed)
    limit = RoutineLimit(4, floor=1)
    gate = _CheckedGate(4, limit)

    async def request(own: random.Random, priority: int, urgency: Urgency | None) -> None:
        with gates.within(urgency) if urgency is not None else contextlib.nullcontext():
            async with gate.hold(priority):
                await asyncio.sleep(own.random() * 0.002)
                gate.observe(own.choice((0.001, 0.001, 0.005, 0.02)), own.choice(("get pods", "create jobs")))

    urgencies = [Urgency() for _ in range(5)]
    tasks = [
        asyncio.create_task(
            request(
                random.Random(rng.random()),
                rng.choice((URGENT, FINISHING, NORMAL, LOW)),
                rng.choice([None, *urgencies]),
            )
        )
        for _ in range(40)
    ]
    for _ in range(10):
        await asyncio.sleep(rng.random() * 0.002)
        rng.choice(urgencies).make_urgent(rng.choice((URGENT, FINISHING)))
        if rng.random() < 0.3:
            rng.choice(tasks).cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), (seed, results)
    assert (gate._free, gate._routine_held, gate._waiting) == (4, 0, []), seed
    assert 1 <= limit.value <= 4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _limit(ceiling: int, *, value: int) -> RoutineLimit:
    """A limit that has learnt to be at ``value``."""
    limit = RoutineLimit(ceiling, floor=1)
    limit.value = value
    return limit


def test_the_limit_grows_to_its_ceiling_while_round_trips_stay_at_the_base() -> None:
    limit = _limit(8, value=1)
    for _ in range(7):
        limit.observe(0.002, "get pods")
    assert limit.value == 8


def test_the_limit_shrinks_to_its_floor_while_a_busy_server_answers_slower_than_its_base() -> None:
    limit = RoutineLimit(32)
    for _ in range(40):
        limit.observe(0.001, "update leases")
    assert limit.value == 32
    for _ in range(40):  # ten times slower: a queue at the server
        limit.observe(0.010, "update leases")
    assert limit.value == limit.floor == 2
    for _ in range(40):
        limit.observe(0.001, "update leases")
    assert limit.value == 32  # the queue is gone: back up


def test_round_trips_that_vary_on_their_own_keep_the_limit_up() -> None:
    """An idle server whose answers spread as a real API server's writes may (lognormal, p99 about
    2.5 times the median; one answer in a hundred 5 times slower): no queue, the limit stays up
    once a window of answers gave the base (in the first one, the least answer so far is the base
    and a spread can hold the limit low for a while: README, "Where the CPU goes")."""
    for seed in range(5):
        rng = random.Random(seed)
        limit = RoutineLimit(32)
        seen = []
        for k in range(3000):
            slow = 5.0 if k % 100 == 50 else 1.0
            limit.observe(0.010 * slow * rng.lognormvariate(0, 0.4), "update leases")
            seen.append(limit.value)
        assert min(seen[400:]) >= 20 and statistics.mean(seen[400:]) >= 30, seed


def test_each_kind_of_request_has_its_own_base() -> None:
    limit = RoutineLimit(8)
    seen = []
    for _ in range(40):  # Lease writes take 1 ms, Job creations 20 ms (an admission webhook): no queue
        limit.observe(0.001, "update leases")
        for _ in range(3):
            limit.observe(0.020, "create jobs")
            seen.append(limit.value)
    assert min(seen) == 8


def test_a_long_overload_does_not_become_the_base() -> None:
    """A quiet window stays part of the base for ``horizon_s``: a burst of a thousand slow answers
    in a few seconds is still judged against it."""
    clock = Clock()
    limit = RoutineLimit(16, window=10, horizon_s=10.0, monotonic=clock)
    for _ in range(20):
        limit.observe(0.001, "get pods")
        clock.now += 0.01
    for _ in range(1000):
        limit.observe(0.010, "get pods")
        clock.now += 0.003  # 3 s in all
    assert limit.value == 2


def test_a_server_slower_for_good_raises_the_base_once_the_old_windows_are_gone() -> None:
    clock = Clock()
    limit = RoutineLimit(16, window=10, horizon_s=1.0, monotonic=clock)
    for _ in range(10):
        limit.observe(0.001, "get pods")
        clock.now += 0.125
    for _ in range(70):  # still judged against the old base: looks queued
        limit.observe(0.005, "get pods")
        clock.now += 0.125
    assert limit.value == 2
    for _ in range(10 + 16):  # eight windows at 5 ms: the base is 5 ms, no queue, the limit grows again
        limit.observe(0.005, "get pods")
        clock.now += 0.125
    assert limit.value == 16


def test_the_limit_stays_within_its_floor_and_ceiling() -> None:
    limit = RoutineLimit(3, floor=2)
    assert limit.value == 3  # (it starts at its ceiling)
    for round_trip_s in (0.001, 0.001, 0.001, 0.001, 1.0, 1.0, 1.0, 1.0, 0.0):
        limit.observe(round_trip_s, "update leases")
        assert 2 <= limit.value <= 3
