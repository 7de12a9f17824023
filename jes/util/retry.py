"""Retrying temporary errors with a backoff that is plain data.

A :class:`Backoff` is a tuple of delays; the last one repeats when ``forever`` is set (that is how
jes keeps trying after a long outage without ever giving up), otherwise the error is re-raised once
the delays are used up. Sleeping goes through an injectable ``sleep`` so tests need not wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from jes import errors

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Delays (seconds) between attempts; ``forever`` repeats the last delay without end."""

    delays_s: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    forever: bool = False

    def __iter__(self) -> Iterator[float]:
        yield from self.delays_s
        while self.forever and self.delays_s:
            yield self.delays_s[-1]

    @property
    def longest_s(self) -> float:
        return max(self.delays_s, default=0.0)


#: Short retries for calls a caller is waiting on (a single request inside a poll).
QUICK = Backoff((0.2, 0.5, 1.0))
#: Reports must eventually arrive: retry until accepted.
UNTIL_ACCEPTED = Backoff((0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0), forever=True)


async def retry_temporary(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    what: str,
    sleep: Sleep = asyncio.sleep,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """Run ``call``; on a :class:`errors.Temporary` error wait and try again.

    A server's ``Retry-After`` (``retry_after_s`` on the error) wins over the backoff delay when it
    is longer. Permanent errors and anything else propagate at once.
    """
    attempt = 0
    delays = iter(backoff)
    while True:
        attempt += 1
        try:
            return await call()
        except errors.Temporary as exc:
            delay = next(delays, None)
            if delay is None:
                raise
            if exc.retry_after_s is not None:
                delay = max(delay, exc.retry_after_s)
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            else:
                logger.warning("%s: attempt #%d failed (%s); retrying in %.1fs", what, attempt, exc, delay)
            await sleep(delay)
