"""NATS, as Keptn runs it: one connection per process, queue subscriptions, event publishing.

Keptn publishes every event as a structured CloudEvent (JSON, attributes at the top level) on the
subject named by its type, and its chart runs NATS with JetStream: the shipyard-controller keeps a
stream ``keptn`` over ``sh.keptn.>`` and consumes it with a durable consumer. So a publish that the
stream acknowledges is stored and will be processed, also while the shipyard-controller restarts;
jes publishes through JetStream with the event id as ``Nats-Msg-Id`` (the stream drops a repeated
publish of the same id within its duplicate window). Without a stream over the subject (a NATS
without JetStream) a publish is confirmed only as far as the server (a flush): that window is in
docs/exactly-once.md.

Core NATS delivers at most once to a queue group: a member that dies holding a message loses it.
jes does not rely on delivery (the service reconciles against the triggered-event API); this module
only connects, retries and translates errors into :class:`jes.errors.NatsError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from jes import errors
from jes.clients.keptn.httperrors import EventMaybeDeliveredError
from jes.util import retry

logger = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]
#: Between attempts to reach NATS at start; nats-py reconnects by itself after that.
CONNECT_BACKOFF = retry.Backoff((0.5, 1.0, 2.0, 5.0, 10.0, 30.0), forever=True)
#: How long one publish may wait for the server's (or the stream's) acknowledgement.
PUBLISH_TIMEOUT_S = 5.0
#: How long the answer to "which stream stores this subject" is trusted.
STREAM_CHECK_S = 60.0
#: Outgoing data nats-py keeps while disconnected (the distributor's reconnect buffer). ``jes serve``
#: keeps none: a report that cannot leave now fails at once and is sent again after a fresh fence,
#: instead of leaving later from a buffer when another replica may have taken the event over.
PENDING_BYTES = 8 * 1024 * 1024


def servers_of(url: str) -> list[str]:
    """``PUBSUB_URL``: one server or a comma list, as the distributor's client accepts."""
    return [s.strip() for s in url.split(",") if s.strip()]


def describe_servers(url: str) -> str:
    """The servers for logs: without credentials a URL may carry."""
    shown = []
    for server in servers_of(url):
        scheme, sep, rest = server.partition("://")
        host = rest.rpartition("@")[2] if sep else server.rpartition("@")[2]
        shown.append(f"{scheme}://{host}" if sep else host)
    return ", ".join(shown)


class NatsConnection:
    """One NATS connection: connected by :meth:`connect` (retrying), then kept by nats-py.

    :attr:`problem` says why it is not usable right now (None: connected), for ``/ready``.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "jes",
        connect_timeout_s: float = 2.0,
        backoff: retry.Backoff = CONNECT_BACKOFF,
        sleep: retry.Sleep = asyncio.sleep,
        pending_bytes: int = PENDING_BYTES,
    ) -> None:
        self.url = url
        self._pending_bytes = pending_bytes
        self._name = name
        self._connect_timeout_s = connect_timeout_s
        self._backoff = backoff
        self._sleep = sleep
        self._nc: Client | None = None
        self.problem: str | None = f"not connected to NATS at {describe_servers(url)} yet"
        self._streams: dict[str, tuple[bool, float]] = {}
        self._closing = False
        self.jetstream_subjects: bool | None = None
        """Whether the last publish was stored by a JetStream stream (None: nothing published yet)."""

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect, retrying with backoff until it works (cancel to give up)."""
        delays = iter(self._backoff)
        attempt = 0
        while True:
            attempt += 1
            try:
                self._nc = await nats.connect(
                    servers=servers_of(self.url),
                    name=self._name,
                    connect_timeout=self._connect_timeout_s,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    pending_size=self._pending_bytes,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                delay = next(delays, self._backoff.longest_s)
                self.problem = f"cannot reach NATS at {describe_servers(self.url)}: {_reason(exc)}"
                log = logger.warning if attempt == 1 or attempt % 10 == 0 else logger.debug
                log("%s (attempt %d); retrying in %.1fs", self.problem, attempt, delay)
                await self._sleep(delay)
                continue
            self.problem = None
            logger.info("connected to NATS at %s", describe_servers(self.url))
            return

    async def _on_error(self, exc: Exception) -> None:
        """nats-py keeps trying by itself (also the first connection): say why, once per change."""
        problem = f"cannot reach NATS at {describe_servers(self.url)}: {_reason(exc)}"
        if self.connected:
            logger.warning("NATS: %s", _reason(exc))
        elif problem != self.problem:
            self.problem = problem
            logger.warning("%s; retrying every second", problem)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self.problem = f"disconnected from NATS at {describe_servers(self.url)}; reconnecting"
        logger.warning("%s", self.problem)

    async def _on_reconnected(self) -> None:
        self.problem = None
        logger.info("reconnected to NATS at %s", describe_servers(self.url))

    def _client(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            raise errors.NatsError(self.problem or "not connected to NATS")
        return self._nc

    async def subscribe(self, subject: str, queue: str, handler: Handler) -> Subscription:
        """A queue subscription (a plain one when ``queue`` is empty); nats-py renews it after a
        reconnect."""
        try:
            return await self._client().subscribe(subject, queue=queue, cb=handler)
        except nats.errors.Error as exc:
            raise errors.NatsError(f"cannot subscribe to {subject}: {_reason(exc)}") from exc

    async def unsubscribe(self, subscription: Subscription) -> None:
        try:
            await subscription.unsubscribe()
        except nats.errors.Error as exc:  # the connection is gone: so is the subscription
            logger.debug("unsubscribing failed: %s", _reason(exc))

    async def publish_event(
        self, event: Mapping[str, Any], *, timeout_s: float = PUBLISH_TIMEOUT_S, stored: bool | None = None
    ) -> None:
        """Publish a CloudEvent on the subject named by its type.

        Raises :class:`NatsError` when it certainly did not leave (not connected, too large), and
        :class:`EventMaybeDeliveredError` when it may have been stored although no acknowledgement
        came back. ``stored``: whether a stream stores the subject, when the caller asked already."""
        subject = str(event.get("type") or "")
        if not subject:
            raise errors.NatsError("an event without a type cannot be published (its type is the subject)")
        payload = json.dumps(event, separators=(",", ":")).encode()
        client = self._client()
        if not client.is_connected:
            raise errors.NatsError(self.problem or "not connected to NATS")
        msg_id = str(event.get("id") or "")
        if stored is None:
            stored = await self.stored_by_a_stream(subject, timeout_s=timeout_s)
        if not stored:
            await self._publish_core(client, subject, payload, timeout_s)
            return
        try:
            await client.jetstream(timeout=timeout_s).publish(
                subject, payload, timeout=timeout_s, headers={"Nats-Msg-Id": msg_id} if msg_id else None
            )
            self.jetstream_subjects = True
            return
        except nats.js.errors.NoStreamResponseError:
            pass  # no stream stores this subject: core NATS below
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise EventMaybeDeliveredError(f"NATS: no acknowledgement for {subject} within {timeout_s:g}s") from exc
        except nats.errors.Error as exc:
            raise errors.NatsError(f"publishing {subject} failed: {_reason(exc)}") from exc
        await self._publish_core(client, subject, payload, timeout_s)

    async def stored_by_a_stream(self, subject: str, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> bool:
        """Whether a JetStream stream captures ``subject`` (asked once a minute per subject). A
        JetStream publish to a subject no stream captures would wait for an answer nobody gives;
        when NATS cannot tell (denied, no answer), the publish goes to core NATS and is checked in
        the datastore."""
        now = time.monotonic()
        known = self._streams.get(subject)
        if known is not None and known[1] > now:
            return known[0]
        try:
            await self._client().jetstream(timeout=timeout_s).find_stream_name_by_subject(subject)
            stored = True
        except (TimeoutError, nats.errors.Error) as exc:  # NotFound, no JetStream, denied, no answer
            if not isinstance(exc, nats.js.errors.NotFoundError | nats.js.errors.ServiceUnavailableError):
                logger.warning("NATS cannot tell which stream stores %s (%s): publishing to core NATS",
                               subject, _reason(exc))  # fmt: skip
            stored = False
        self._streams[subject] = (stored, now + STREAM_CHECK_S)
        return stored

    async def _publish_core(self, client: Client, subject: str, payload: bytes, timeout_s: float) -> None:
        if self.jetstream_subjects is not False:
            logger.warning(
                "no JetStream stream stores %s: events are published to core NATS and each one is looked "
                "up in the datastore before it counts as arrived (docs/exactly-once.md)", subject,
            )  # fmt: skip
        self.jetstream_subjects = False
        try:
            await client.publish(subject, payload)
            await client.flush(timeout=max(1, round(timeout_s)))
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise EventMaybeDeliveredError(f"NATS: no flush confirmation for {subject}") from exc
        except nats.errors.Error as exc:
            raise errors.NatsError(f"publishing {subject} failed: {_reason(exc)}") from exc
        # The server has it, but core NATS drops it if no consumer listens right now: only the
        # datastore can tell whether it arrived (the reporter asks it, and sends again if not).
        raise EventMaybeDeliveredError(f"published {subject} to core NATS (no stream confirms it)")

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5.0)
            except (TimeoutError, nats.errors.Error, OSError):
                await self._nc.close()
        self._nc = None


class NatsEventSender:
    """Sends jes's reports by publishing them (NATS mode); same contract as ``KeptnClient.send_event``."""

    def __init__(self, connection: NatsConnection, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self._connection = connection
        self._timeout_s = timeout_s

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        backoff: retry.Backoff | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """Publish once (the caller retries); the event's keptnContext. The fence (``before``) is the
        last thing before the publish: the stream is looked up first."""
        cloud = structured(event)
        stored = await self._connection.stored_by_a_stream(str(cloud.get("type") or ""), timeout_s=self._timeout_s)
        if before is not None:
            await before()
        await self._connection.publish_event(cloud, timeout_s=self._timeout_s, stored=stored)
        return str(event.get("shkeptncontext") or "")


def structured(event: Mapping[str, Any]) -> dict[str, Any]:
    """A Keptn event as the structured CloudEvent Keptn publishes (``datacontenttype``, no
    ``contenttype``)."""
    cloud = {k: v for k, v in event.items() if k != "contenttype"}
    cloud.setdefault("specversion", "1.0")
    cloud.setdefault("datacontenttype", "application/json")
    return cloud


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
