"""An :class:`asyncio.Event` that costs a few dozen bytes until someone waits on it.

``asyncio.Event`` allocates a ``collections.deque`` for its waiters when it is made (760 bytes on
CPython 3.11, a block of 64 slots); jes keeps several events per event in flight, so with 10,000
in flight those empty deques alone are tens of megabytes. :class:`Flag` has the same
``set``/``clear``/``is_set``/``wait`` semantics (and :meth:`Flag.future`) and keeps its waiters in
a list made on demand.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Literal


class Flag:
    """``set()`` wakes every waiter; ``clear()`` resets; ``wait()`` returns True once set."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: asyncio.Future[bool] | list[asyncio.Future[bool]] | None = None
        """None, the one waiter (mostly), or a list of them."""

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in _listed(waiters):
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    def future(self) -> asyncio.Future[Any]:
        """A future that is done once the flag is set (cancel it when no longer needed): to wait
        for the flag beside something else without a task of its own (``asyncio.wait``)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._set:
            waiter.set_result(True)
            return waiter
        if self._waiters is None or (not isinstance(self._waiters, list) and self._waiters.done()):
            self._waiters = waiter
        else:  # those no longer waiting go now (no callback per waiter to forget it at once)
            self._waiters = [*(w for w in _listed(self._waiters) if not w.done()), waiter]
        return waiter

    def until(self, timeout_s: float) -> asyncio.Future[Any]:
        """A future done once the flag is set or ``timeout_s`` passed, whichever is first (its
        result says nothing of which). Awaited directly, it keeps no coroutine of its own while
        waiting — what thousands of waiters at once hold; cancelling it forgets the timer."""
        waiter = self.future()
        if not waiter.done():
            timer = waiter.get_loop().call_later(max(0.0, timeout_s), _resolve, waiter, context=quiet())
            waiter.add_done_callback(_TimerCancel(timer), context=quiet())
        return waiter

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        if self._waiters is waiter:
            self._waiters = None
        elif isinstance(self._waiters, list) and waiter in self._waiters:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    async def wait(self) -> Literal[True]:
        if self._set:
            return True
        waiter = self.future()
        try:
            await waiter
            return True
        finally:
            self._forget(waiter)


def _listed(
    waiters: asyncio.Future[bool] | list[asyncio.Future[bool]] | None,
) -> list[asyncio.Future[bool]] | tuple[asyncio.Future[bool], ...]:
    if waiters is None:
        return ()
    return waiters if isinstance(waiters, list) else (waiters,)


class _TimerCancel:
    """A done callback that cancels a timer (a few bytes: not a partial, its tuple and its dict)."""

    __slots__ = ("_timer",)

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self._timer = timer

    def __call__(self, _: asyncio.Future[Any]) -> None:
        self._timer.cancel()


_local = threading.local()


def quiet() -> contextvars.Context:
    """The context of callbacks that only wake waiters (they log nothing): one per thread (an event
    loop runs its callbacks one at a time, never nested), not a copy of the caller's per callback."""
    context: contextvars.Context | None = getattr(_local, "context", None)
    if context is None:
        context = _local.context = contextvars.Context()
    return context


def _resolve(waiter: asyncio.Future[Any]) -> None:
    """Wake ``waiter`` (result False) unless it is done already."""
    if not waiter.done():
        waiter.set_result(False)
