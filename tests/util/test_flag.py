"""jes.util.flag.Flag: asyncio.Event's semantics without a deque per instance."""

from __future__ import annotations

import asyncio
import sys

import pytest

from jes.util.flag import Flag


async def test_wait_returns_once_set_and_wakes_every_waiter() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set() and await flag.wait() is True


async def test_clear_makes_wait_block_again() -> None:
    flag = Flag()
    flag.set()
    flag.clear()
    assert not flag.is_set()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await flag.wait()
    assert flag._waiters is None  # the cancelled waiter was forgotten


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    flag = Flag()
    first, second = asyncio.create_task(flag.wait()), asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    flag.set()
    assert await second is True


async def test_future_is_done_once_set_and_forgotten_when_cancelled() -> None:
    flag = Flag()
    done_already = Flag()
    done_already.set()
    assert done_already.future().done()
    waiting = flag.future()
    cancelled = flag.future()
    cancelled.cancel()
    await asyncio.sleep(0)
    flag.set()
    assert waiting.result() is True and flag._waiters is None


def test_an_idle_flag_is_smaller_than_an_asyncio_event() -> None:
    idle = Flag()
    assert sys.getsizeof(idle) < 100 and not hasattr(idle, "__dict__")
