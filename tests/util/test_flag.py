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


async def test_until_is_done_when_set_or_when_the_time_is_up() -> None:
    flag = Flag()
    assert await flag.until(0.01) is False  # the time was up
    waiting = flag.until(60)
    flag.set()
    assert await waiting is True
    assert flag.until(60).done()  # set already


async def test_a_cancelled_until_forgets_its_timer() -> None:
    flag = Flag()
    loop = asyncio.get_running_loop()
    waiting = flag.until(60)
    timers = [h for h in loop._scheduled if h._args == (waiting,)]  # type: ignore[attr-defined]
    assert len(timers) == 1 and not timers[0].cancelled()
    waiting.cancel()
    await asyncio.sleep(0)  # (done callbacks run soon after)
    assert timers[0].cancelled()


async def test_waiters_no_longer_waiting_are_dropped_when_the_next_one_comes() -> None:
    from jes.util import flag as flag_module

    flag = Flag()
    for _ in range(100):
        flag.until(60).cancel()
    await asyncio.sleep(0)
    assert flag._waiters is not None and len(flag_module._listed(flag._waiters)) <= 1  # not 100 kept until it is set
    flag.set()
    assert flag._waiters is None


def test_wake_only_callbacks_share_one_context_per_thread() -> None:
    import threading

    from jes.util import flag as flag_module

    here = flag_module.quiet()
    there: list[object] = []
    thread = threading.Thread(target=lambda: there.append(flag_module.quiet()))
    thread.start()
    thread.join()
    assert flag_module.quiet() is here and there[0] is not here  # (a context is entered by one thread at once)
