"""NATS mode: what happens to an event the recipient did not take, and repeated messages.

Core NATS keeps nothing: the distributor forwards a message once (four attempts in five seconds)
and then it is gone, although the control plane waits ten minutes for a ``.started``. Here an event
the recipient refused is *parked* and offered again after growing pauses (:data:`DELAYS_S`) for
``window_s`` (``JES_RECIPIENT_RETRY_S``, 300 s). A ``.triggered`` event is first looked up: once
the control plane no longer lists it as open (another integration took it, the sequence ended or
timed out) it is let go. At most :data:`MAX_PARKED` events wait; beyond that, and when the window
is over, the event is dropped with an error line naming it. Parked events do not survive a restart.

:class:`RecentlyForwarded` is the distributor's ten-second memory of (subscription, event id): a
message that arrives twice in that time (a re-subscription, two wildcard subjects) is forwarded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from jes.util import retry

logger = logging.getLogger(__name__)

DELAYS_S = (5.0, 10.0, 20.0, 40.0, 60.0)
MAX_PARKED = 1000
#: The distributor's de-duplication window for NATS messages.
RECENT_S = 10.0

Deliver = Callable[[Mapping[str, Any], str], Awaitable[bool]]
StillOpen = Callable[[Mapping[str, Any]], Awaitable[bool | None]]


class Redelivery:
    """Parked events, each in its own task; ``deliver`` is :meth:`Recipient.deliver`, ``still_open``
    answers True/False for a ``.triggered`` event (None: cannot tell, offer it anyway)."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        window_s: float,
        still_open: StillOpen,
        delays_s: tuple[float, ...] = DELAYS_S,
        max_parked: int = MAX_PARKED,
        sleep: retry.Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deliver = deliver
        self._window_s = window_s
        self._still_open = still_open
        self._delays_s = delays_s
        self._max_parked = max_parked
        self._sleep = sleep
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.redelivered = 0
        self.dropped = 0

    @property
    def parked(self) -> int:
        return len(self._tasks)

    def park(self, event: Mapping[str, Any], subscription_id: str) -> None:
        """Offer ``event`` again later (or drop it, saying so, when that is not possible)."""
        what = _describe(event)
        if self._window_s <= 0:
            self._drop(f"{what} is dropped (JES_RECIPIENT_RETRY_S=0: no later attempts)")
            return
        if len(self._tasks) >= self._max_parked:
            self._drop(f"{what} is dropped: {self._max_parked} events already wait for the recipient")
            return
        task = asyncio.create_task(self._again(dict(event), subscription_id), name="jes-redelivery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.warning("%s will be offered to the recipient again for %gs", what, self._window_s)

    async def _again(self, event: dict[str, Any], subscription_id: str) -> None:
        what = _describe(event)
        ends = self._clock() + self._window_s
        for pause in retry.Backoff(self._delays_s, forever=True):
            if self._clock() + pause >= ends:
                break
            await self._sleep(pause)
            if str(event.get("type", "")).endswith(".triggered") and await self._open(event) is False:
                logger.info("%s is no longer open at the control plane: not offered again", what)
                return
            if await self._deliver(event, subscription_id):
                self.redelivered += 1
                logger.info("%s was taken by the recipient on a later attempt", what)
                return
        self._drop(f"{what} is dropped: the recipient did not take it within {self._window_s:g}s")

    async def _open(self, event: Mapping[str, Any]) -> bool | None:
        try:
            return await self._still_open(event)
        except Exception as exc:  # the control plane cannot tell right now: offer it anyway
            logger.debug("cannot tell whether %s is still open: %s", _describe(event), exc)
            return None

    def _drop(self, message: str) -> None:
        self.dropped += 1
        logger.error("%s", message)

    async def close(self) -> None:
        """Stop waiting; what is still parked is lost (said once, with the count)."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            logger.warning("%d events parked for the recipient are lost with this shutdown", len(tasks))


class RecentlyForwarded:
    """(subscription id, event id) pairs seen in the last ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = RECENT_S, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def first_time(self, subscription_id: str, event_id: str) -> bool:
        """True once per pair within the window (and remembers it)."""
        now = self._clock()
        while self._seen and next(iter(self._seen.values())) <= now - self._ttl_s:
            self._seen.popitem(last=False)
        key = (subscription_id, event_id)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def _describe(event: Mapping[str, Any]) -> str:
    return f"event {event.get('id')} ({event.get('type')}, context {event.get('shkeptncontext') or '-'})"
