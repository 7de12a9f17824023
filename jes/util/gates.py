"""A limit on work at once whose waiters go in by priority, then in their order of arrival.

The priority of a request deep in a client (a Kubernetes call, a connection slot) can come from
the work it is done for: an :class:`Urgency` in the context (:func:`within`; the tasks created in
it share it) lets its requests in at its level once it is urgent — also those already waiting
then. An event's finishing path (its last log reads, the progress events before its ``.finished``)
is :data:`FINISHING`; the ``.finished`` itself and the claim write before it are :data:`URGENT`.
Under a burst an event near its end goes before the events behind it (shortest remaining work
first: the complete -> ``.finished`` latency), and those before the creation of new Jobs and claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator

URGENT = 0
"""An event's last step: its ``.finished`` (and the claim write before it)."""
FINISHING = 1
"""The work of an event whose tasks are over: what its ``.finished`` waits for."""
NORMAL = 2
LOW = 3


class Urgency:
    """How urgent some work is (None: not urgent); it may become so while its requests wait."""

    __slots__ = ("_waiting", "level")

    def __init__(self, level: int | None = None) -> None:
        self.level = level
        self._waiting: dict[asyncio.Future[None], tuple[PriorityGate, int, int]] | None = None
        """Its requests waiting at a gate: their turn → (the gate, their priority, their arrival)
        (made when one waits: none kept per event otherwise)."""

    def make_urgent(self, level: int = FINISHING) -> None:
        """From now on at ``level`` (or higher): its requests waiting at a gate move up its queue."""
        if self.level is not None and self.level <= level:
            return
        self.level = level
        waiting = self._waiting or {}
        for turn, (gate, priority, arrival) in list(waiting.items()):
            if level < priority:
                waiting[turn] = (gate, level, arrival)
                gate._promote(turn, arrival, level)


_urgency: contextvars.ContextVar[Urgency | None] = contextvars.ContextVar("jes_urgency", default=None)


@contextlib.contextmanager
def within(urgency: Urgency) -> Iterator[Urgency]:
    """Run a block (and the tasks it creates) as part of the work ``urgency`` stands for."""
    token = _urgency.set(urgency)
    try:
        yield urgency
    finally:
        _urgency.reset(token)


def begin() -> Urgency:
    """Run the rest of the current task (and the tasks it creates) as part of new work, not urgent
    yet (no block: the next :func:`begin` replaces it; nothing kept per waiting event)."""
    urgency = Urgency()
    _urgency.set(urgency)
    return urgency


def end() -> None:
    """The current task is no longer part of the work :func:`begin` started."""
    _urgency.set(None)


def urgent(level: int = FINISHING) -> contextlib.AbstractContextManager[Urgency]:
    """Run a block (and the tasks it creates) at ``level``."""
    return within(Urgency(level))


def level_now() -> int | None:
    """The level of the work running now (None: not urgent)."""
    urgency = _urgency.get()
    return urgency.level if urgency is not None else None


class PriorityGate:
    """At most ``size`` holders at once. When one leaves, the waiter with the lowest ``priority``
    goes in (among equals, the one that came first); urgent work (:class:`Urgency`) goes in at
    its level if that is higher. Under a burst of new events this lets an event's last report through before the
    ``.started`` of the hundreds queued behind it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        """(priority, arrival, turn); a promoted waiter's first entry stays, skipped once let in."""
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        return self._free == 0

    @contextlib.asynccontextmanager
    async def hold(self, priority: int = NORMAL) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, priority: int = NORMAL) -> None:
        """Wait for a place (by ``priority``, then arrival); :meth:`release` it once done."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        urgency = _urgency.get()
        if urgency is not None and urgency.level is not None:
            priority = min(priority, urgency.level)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        arrival = next(self._arrivals)
        heapq.heappush(self._waiting, (priority, arrival, turn))
        if urgency is not None and priority > URGENT:
            if urgency._waiting is None:
                urgency._waiting = {}
            urgency._waiting[turn] = (self, priority, arrival)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # it was let in as it was cancelled: pass it on
                self.release()
            raise
        finally:
            if urgency is not None and urgency._waiting is not None:
                urgency._waiting.pop(turn, None)
                if not urgency._waiting:
                    urgency._waiting = None

    def release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # (a cancelled waiter's turn is done, as is a promoted one's)
                turn.set_result(None)
                return
        self._free += 1

    def _promote(self, turn: asyncio.Future[None], arrival: int, priority: int) -> None:
        """A waiter's work became urgent: it waits again at ``priority`` (its old entry is skipped)."""
        if not turn.done():
            heapq.heappush(self._waiting, (priority, arrival, turn))
