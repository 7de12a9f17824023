"""Waiting for a slot of an action's ``concurrency`` (``actions[].concurrency``).

The queues are records in the ledger (:mod:`jes.ledger.slots`), shared by every replica and kept
across restarts. An event joins its queue once its ``.started`` is sent, reads the queue every
``poll_s`` (a release in this process wakes its waiters at once) and runs when it holds a slot.
It leaves the queue when its action is done; when it ends any other way (an error, a crash, a
shutdown, a replica that lost its claim) its entry stays — the event's claim is still open, so the
event will be resumed, here or by the replica that takes the claim over, and carries on holding
its slot or waiting at its place. Entries whose claim is done or gone are dropped by the waiters
(:meth:`Queues._stale`), checked when the queue did not change for ``STALE_CHECK_POLLS`` polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from jes import errors
from jes.ledger import slots
from jes.models import Concurrency

if TYPE_CHECKING:
    from prometheus_client import Gauge

logger = logging.getLogger(__name__)

#: How often a waiting event reads its queue (in seconds).
QUEUE_POLL_S = 1.0
#: After this many polls of an unchanged queue, a waiter asks whether the events it waits for are
#: still open (an event that ended without leaving must not hold a slot for ever).
STALE_CHECK_POLLS = 5

PositionSink = Callable[[int], Awaitable[None]]


class Queues:
    def __init__(
        self,
        store: slots.QueueStore,
        *,
        poll_s: float = QUEUE_POLL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots.Slots(store)
        self.poll_s = poll_s
        self._monotonic = monotonic
        self._released = asyncio.Event()
        """Set (and replaced) when an event of this process leaves a queue: its waiters look at once."""

    @contextlib.asynccontextmanager
    async def slot(
        self, concurrency: Concurrency, event_id: str, *, on_position: PositionSink | None = None
    ) -> AsyncIterator[None]:
        """Hold a slot of the queue while the body runs; leave the queue only when it ends normally."""
        await self._acquire(concurrency, event_id, on_position)
        yield
        try:
            await self.slots.leave(concurrency.queue, event_id, concurrency.limit)
        except errors.StateError as exc:  # the waiters will find the claim done and drop the entry
            logger.warning("could not leave the concurrency queue (the next waiter takes over later): %s", exc)
        self._wake()

    async def _acquire(self, concurrency: Concurrency, event_id: str, on_position: PositionSink | None) -> None:
        gone: list[str] = []
        shown = 0
        version, unchanged_since = "", self._monotonic()
        while True:
            try:
                standing = await self.slots.enter(concurrency.queue, event_id, concurrency.limit, gone=gone)
            except errors.StateError as exc:
                logger.warning("cannot read the concurrency queue (trying again): %s", exc)
                await self._wait()
                continue
            gone = []
            if standing.holding:
                return
            if standing.position != shown:
                shown = standing.position
                logger.info("waiting for a slot (limit %d): position %d", concurrency.limit, shown)
                if on_position is not None:
                    await on_position(shown)
            now = self._monotonic()
            if standing.version != version:
                version, unchanged_since = standing.version, now
            elif now - unchanged_since >= STALE_CHECK_POLLS * self.poll_s:
                unchanged_since = now
                gone = await self._stale(standing)
                if gone:
                    continue
            await self._wait()

    async def _stale(self, standing: slots.Standing) -> list[str]:
        try:
            gone = await self.slots.stale(standing.checks)
        except errors.StateError as exc:
            logger.warning("cannot read the claims ahead in the concurrency queue: %s", exc)
            return []
        if gone:
            logger.info("dropping %d event(s) that ended without leaving the concurrency queue", len(gone))
        return gone

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), self.poll_s)

    def _wake(self) -> None:
        released, self._released = self._released, asyncio.Event()
        released.set()


Release = Callable[[], Awaitable[None]]
"""Gives a held run slot up (at most once; later calls do nothing)."""


def run_slot(slot: contextlib.AbstractAsyncContextManager[None], waiting: Gauge | None) -> RunSlot:
    """Hold one of the service's run slots (``JES_MAX_CONCURRENT_EVENTS``), counted in ``waiting``
    while waiting for it. Gives a release: an event whose tasks have ended gives its slot up
    before it reports, so that reporting never keeps another event's tasks waiting."""
    return RunSlot(slot, waiting)


class RunSlot:
    """:func:`run_slot`'s block: a few dozen bytes for as long as the event runs (no generator
    frame, closure and context manager kept per event)."""

    __slots__ = ("_held", "_slot", "_waiting")

    def __init__(self, slot: contextlib.AbstractAsyncContextManager[None], waiting: Gauge | None) -> None:
        self._slot = slot
        self._waiting = waiting
        self._held = False

    async def __aenter__(self) -> Release:
        if self._waiting is not None:
            self._waiting.inc()
        try:
            await self._slot.__aenter__()
        finally:
            if self._waiting is not None:
                self._waiting.dec()
        self._held = True
        return self.release

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def release(self) -> None:
        """Give the slot up (at most once; later calls do nothing)."""
        if self._held:
            self._held = False
            await self._slot.__aexit__(None, None, None)
