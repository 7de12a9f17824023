"""The priority gate: a limit whose waiters go in by priority, then by arrival."""

from __future__ import annotations

import asyncio

from jes.util.gates import LOW, NORMAL, URGENT, PriorityGate


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
