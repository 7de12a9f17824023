"""Events to the recipient — the integration beside the distributor — as structured CloudEvents.

``POST {PUBSUB_RECIPIENT}:{PUBSUB_RECIPIENT_PORT}{PUBSUB_RECIPIENT_PATH}`` with
``Content-Type: application/cloudevents+json`` and the event as JSON: ``specversion``, ``id``,
``source``, ``type``, ``time``, ``datacontenttype``, the Keptn extensions ``shkeptncontext``,
``triggeredid``, ``gitcommitid`` and ``shkeptnspecversion`` (always present, maybe empty), and
``data``. When a control-plane subscription matched, ``data.temporaryData.distributor.subscriptionID``
names it. No credential is ever sent: the recipient's client is not the control plane's.

One delivery is up to :data:`ATTEMPTS` attempts inside :data:`DEADLINE_S`, as the distributor: a
2xx ends it; any other status or a transport error waits about 0.75 s × the attempt number (± 50 %)
before the next one. Unlike the distributor, which forwards NATS messages one at a time, up to
``max_concurrent`` deliveries run at once; :meth:`Recipient.submit` waits for a free slot, so a slow
recipient slows the intake down instead of piling up work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from jes.clients.keptn.wire import now_rfc3339
from jes.util import retry

logger = logging.getLogger(__name__)

ATTEMPTS = 4
DEADLINE_S = 5.0
#: Pauses after attempts 1-3 (go-utils: 0.75 s × attempt), each randomised by ± JITTER.
BACKOFF_S = (0.75, 1.5, 2.25)
JITTER = 0.5
CONTENT_TYPE = "application/cloudevents+json"
EXTENSIONS = ("shkeptncontext", "triggeredid", "gitcommitid", "shkeptnspecversion")

OnFailure = Callable[[], Awaitable[None] | None]


def with_subscription(data: Mapping[str, Any] | None, subscription_id: str) -> dict[str, Any]:
    """``data`` with ``temporaryData.distributor.subscriptionID`` set, other temporary data kept.

    (The distributor adds nothing when ``temporaryData`` exists without a ``distributor`` key;
    here the id is always there.)"""
    result = dict(data or {})
    temporary = result.get("temporaryData")
    temporary = dict(temporary) if isinstance(temporary, dict) else {}
    temporary["distributor"] = {"subscriptionID": subscription_id}
    result["temporaryData"] = temporary
    return result


def cloud_event(event: Mapping[str, Any], subscription_id: str = "") -> dict[str, Any]:
    """The structured CloudEvent the recipient gets for a Keptn event (polled or from NATS)."""
    data = event.get("data")
    body: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    if subscription_id:
        body = with_subscription(body, subscription_id)
    result: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.get("id") or uuid.uuid4()),
        "source": str(event.get("source") or ""),
        "type": str(event.get("type") or ""),
        "time": str(event.get("time") or now_rfc3339()),
        "datacontenttype": "application/json",
    }
    for name in EXTENSIONS:
        value = event.get(name)
        result[name] = value if isinstance(value, str) else ""
    result["data"] = body
    return result


@dataclass
class RecipientStats:
    delivered: int = 0
    failed: int = 0
    attempts: int = 0


class Recipient:
    """POSTs events to one URL; ``http`` is the caller's client (no credentials, redirects followed)."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        max_concurrent: int = 16,
        attempts: int = ATTEMPTS,
        deadline_s: float = DEADLINE_S,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        jitter: float = JITTER,
        sleep: retry.Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._slots = asyncio.Semaphore(max_concurrent)
        self._attempts = attempts
        self._deadline_s = deadline_s
        self._backoff_s = backoff_s
        self._jitter = jitter
        self._sleep = sleep
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = RecipientStats()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(
        self, event: Mapping[str, Any], subscription_id: str, *, on_failure: OnFailure | None = None
    ) -> None:
        """Deliver in the background once a slot is free (waits for it); ``on_failure`` is called
        when the recipient did not take the event."""
        await self._slots.acquire()
        try:
            task = asyncio.create_task(self._deliver_held(event, subscription_id, on_failure), name="jes-recipient")
        except BaseException:
            self._slots.release()
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, event: Mapping[str, Any], subscription_id: str) -> bool:
        """Deliver now (in a slot, waiting for one); whether the recipient took it."""
        async with self._slots:
            return await self.post(event, subscription_id)

    async def _deliver_held(self, event: Mapping[str, Any], subscription_id: str, on_failure: OnFailure | None) -> None:
        try:
            delivered = await self.post(event, subscription_id)
        finally:
            self._slots.release()
        if not delivered and on_failure is not None:
            try:
                outcome = on_failure()
                if outcome is not None:
                    await outcome
            except Exception:
                logger.exception("handling an undelivered event failed")

    async def post(self, event: Mapping[str, Any], subscription_id: str) -> bool:
        """One delivery: up to the attempts that fit in the deadline; whether a 2xx came back."""
        body = json.dumps(cloud_event(event, subscription_id), separators=(",", ":")).encode()
        what = f"{event.get('type')} {event.get('id')}"
        deadline = self._clock() + self._deadline_s
        reason = "no attempt fitted in the deadline"
        for attempt in range(1, self._attempts + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self.stats.attempts += 1
            reason = await self._attempt(body, remaining)
            if not reason:
                self.stats.delivered += 1
                by = f" (subscription {subscription_id})" if subscription_id else ""
                logger.info("forwarded %s to %s%s", what, self.url, by)
                return True
            logger.debug("the recipient did not take %s (attempt %d): %s", what, attempt, reason)
            if attempt == self._attempts:
                break
            pause = self._pause_s(attempt)
            if self._clock() + pause >= deadline:
                break
            await self._sleep(pause)
        self.stats.failed += 1
        logger.warning("the recipient at %s did not take %s within %gs: %s", self.url, what, self._deadline_s, reason)
        return False

    def _pause_s(self, attempt: int) -> float:
        base = self._backoff_s[min(attempt, len(self._backoff_s)) - 1]
        return base * (1 + random.uniform(-self._jitter, self._jitter))

    async def _attempt(self, body: bytes, timeout_s: float) -> str:
        """One POST; "" when the recipient took it, else why not."""
        try:
            response = await self._http.post(
                self.url, content=body, headers={"Content-Type": CONTENT_TYPE}, timeout=httpx.Timeout(timeout_s)
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return ""
        return f"answered {response.status_code} {response.reason_phrase}".rstrip()

    async def close(self, grace_s: float) -> None:
        """Let deliveries in flight finish for ``grace_s``, then abandon the rest."""
        pending = set(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                logger.warning("stopped %d deliveries to the recipient in flight", len(late))
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*late, return_exceptions=True)
