"""A limit on work at once whose waiters go in by priority, then in their order of arrival."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

URGENT = 0
NORMAL = 1
LOW = 2


class PriorityGate:
    """At most ``size`` holders at once. When one leaves, the waiter with the lowest ``priority``
    goes in (among equals, the one that came first). Under a burst of new events this lets an
    event's last report through before the ``.started`` of the hundreds queued behind it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        return self._free == 0

    @contextlib.asynccontextmanager
    async def hold(self, priority: int = NORMAL) -> AsyncIterator[None]:
        await self._enter(priority)
        try:
            yield
        finally:
            self._leave()

    async def _enter(self, priority: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # it was let in as it was cancelled: pass it on
                self._leave()
            raise

    def _leave(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # (a cancelled waiter's turn is done)
                turn.set_result(None)
                return
        self._free += 1
