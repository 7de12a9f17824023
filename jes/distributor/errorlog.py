"""The uniform error log: errors an integration reports, shown on its page in the Bridge.

Events sent through ``/event`` feed it (the proxy calls :meth:`ErrorLog.offer`): a ``.finished``
whose ``data.status`` is ``errored`` and every ``sh.keptn.log.error`` (which goes nowhere else).
Entries are queued and posted together (``POST /controlPlane/v1/log``) every ``interval_s`` (a
minute, as the distributor) while the integration is registered; a failed post keeps them for the
next round. Unlike the distributor, nothing is dropped because the log was busy, entries carry the
time they were made (the distributor sends Go's zero time), the queue is bounded
(:data:`MAX_QUEUED`, the oldest go first) and what is queued at shutdown is posted once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from jes import errors
from jes.clients.keptn import client as keptn_client
from jes.clients.keptn import wire

logger = logging.getLogger(__name__)

INTERVAL_S = 60.0
MAX_QUEUED = 1000
FINAL_FLUSH_S = 5.0


class ErrorLog:
    """Queued entries for the integration whose id ``integration_id()`` answers (None: not yet)."""

    def __init__(
        self,
        client: keptn_client.KeptnClient,
        *,
        integration_id: Callable[[], str | None],
        interval_s: float = INTERVAL_S,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._client = client
        self._integration_id = integration_id
        self.interval_s = interval_s
        self._queue: deque[wire.LogEntry] = deque(maxlen=max_queued)
        self.posted = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, event: Mapping[str, Any]) -> None:
        entry = wire.log_entry_for(event)
        if entry is None:
            return
        if len(self._queue) == self._queue.maxlen:
            logger.warning("the error log holds %d entries: the oldest is dropped", self._queue.maxlen)
        self._queue.append(entry)
        logger.info("error log entry queued (%s): %s", entry.task or "-", entry.message[:200])

    async def flush(self) -> bool:
        """Post what is queued; whether the queue is empty afterwards."""
        own = self._integration_id()
        if not self._queue:
            return True
        if own is None:
            return False
        entries = list(self._queue)
        body = [e if e.integrationid else e.model_copy(update={"integrationid": own}) for e in entries]
        try:
            await self._client.post_logs(body)
        except errors.KeptnError as exc:
            logger.warning("posting %d error log entries failed (kept for the next round): %s", len(body), exc)
            return False
        sent = {id(e) for e in entries}
        self._queue = deque((e for e in self._queue if id(e) not in sent), maxlen=self._queue.maxlen)
        self.posted += len(entries)
        return not self._queue

    async def run(self, stop: asyncio.Event) -> None:
        """Post every ``interval_s`` until ``stop``; then once more, briefly."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            if not stop.is_set():
                await self.flush()
        if self._queue:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), FINAL_FLUSH_S)
