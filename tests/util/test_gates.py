"""The priority gate: a limit whose waiters go in by priority, then by arrival."""

from __future__ import annotations

import asyncio

from jes.util import gates
from jes.util.gates import FINISHING, LOW, NORMAL, URGENT, PriorityGate, Urgency


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
