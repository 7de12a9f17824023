"""jes.service.queues.run_slot: a run slot held as a small block, given up at most once."""

from __future__ import annotations

import asyncio

from jes.service.queues import run_slot


async def test_the_slot_is_given_up_once_whether_released_early_or_at_the_end() -> None:
    slots = asyncio.Semaphore(1)
    async with run_slot(slots, None) as release:
        assert slots.locked()
        await release()
        assert not slots.locked()
        await release()  # (a second call does nothing)
        async with slots:  # another event takes it meanwhile
            pass
    assert not slots.locked() and slots._value == 1  # the block's end gave nothing up twice


async def test_a_block_left_by_an_error_gives_its_slot_up() -> None:
    slots = asyncio.Semaphore(1)
    try:
        async with run_slot(slots, None):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not slots.locked()
