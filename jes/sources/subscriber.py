"""Finding work in NATS mode: queue subscriptions on the subjects of the subscribed event types.

Keptn publishes each event as a structured CloudEvent on the subject named by its type. jes
subscribes once per subject — the ``event`` of each control-plane subscription (from the
heartbeat), or ``PUBSUB_TOPIC`` while there are none (before the first heartbeat, or without
registration) — in the queue group ``PUBSUB_GROUP``, so replicas share the events: NATS gives each
message to one member. Subjects may be wildcards (``sh.keptn.event.*.triggered``).

A message is decoded, filtered (the subscription's filter and ``PROJECT_FILTER``/...; the first
subscription of the subject that matches gives the subscription id) and handed to ``on_event``. A
message that is not a CloudEvent is logged with its subject and skipped.

Core NATS delivers at most once: a message published while jes is disconnected, or delivered to a
replica that dies before claiming it, is gone. jes does not depend on delivery: the poller keeps
asking the triggered-event API every ``JES_NATS_RECONCILE_S`` (docs/exactly-once.md), and for
wildcard subjects it is told each exact event type seen (``on_type_seen``) so it can ask for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from jes import errors
from jes.clients.nats import NatsConnection
from jes.settings import Settings
from jes.sources.topics import EventFilter, Topic

logger = logging.getLogger(__name__)

OnEvent = Callable[[dict[str, Any], str], Awaitable[None]]
#: How often the subscribed subjects are compared with the current subscriptions.
RESYNC_S = 0.5


def is_wildcard(subject: str) -> bool:
    return any(token in ("*", ">") for token in subject.split("."))


def decode(data: bytes) -> dict[str, Any]:
    """A structured CloudEvent from a message body; ValueError saying what is wrong."""
    try:
        event = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {str(exc)[:120]}") from exc
    if not isinstance(event, dict):
        raise ValueError(f"expected a JSON object (a structured CloudEvent), got {type(event).__name__}")
    for name in ("id", "type"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise ValueError(f"the CloudEvent has no {name}")
    if "data" in event and not isinstance(event["data"], dict):
        raise ValueError("the CloudEvent's data is not a JSON object")
    return event


class NatsSubscriber:
    """Queue subscriptions following ``topics()``; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        connection: NatsConnection,
        settings: Settings,
        on_event: OnEvent,
        *,
        topics: Callable[[], tuple[Topic, ...]],
        on_type_seen: Callable[[Topic, str], None] | None = None,
        on_malformed: Callable[[], None] | None = None,
        each_subscription: bool = False,
    ) -> None:
        self._connection = connection
        self._settings = settings
        self._on_event = on_event
        self._topics = topics
        self._on_type_seen = on_type_seen or (lambda topic, event_type: None)
        self._on_malformed = on_malformed or (lambda: None)
        self._each_subscription = each_subscription
        """Hand a message over once per matching subscription (the distributor), not only to the first."""
        self._subscriptions: dict[str, Subscription] = {}
        self.received = 0
        self.skipped = 0

    @property
    def ready(self) -> bool:
        return self._connection.connected and bool(self._subscriptions)

    @property
    def problem(self) -> str | None:
        if self._connection.problem:
            return self._connection.problem
        return None if self._subscriptions else "no NATS subjects subscribed yet"

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted(self._subscriptions))

    def _current_topics(self) -> tuple[Topic, ...]:
        """The control plane's subscriptions, else PUBSUB_TOPIC (as the distributor does)."""
        topics = self._topics()
        if topics:
            return topics
        return tuple(Topic(key=t, subscription_id="", event=t) for t in self._settings.pubsub_topics)

    async def run(self, stop: asyncio.Event) -> None:
        await self._connection.connect()
        try:
            while not stop.is_set():
                await self.sync()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESYNC_S)
        finally:
            for subscription in self._subscriptions.values():
                await self._connection.unsubscribe(subscription)
            self._subscriptions.clear()

    async def sync(self) -> None:
        """Subscribe to new subjects, drop those no subscription names any more."""
        wanted = {topic.event for topic in self._current_topics()}
        for subject in [s for s in self._subscriptions if s not in wanted]:
            await self._connection.unsubscribe(self._subscriptions.pop(subject))
            logger.info("NATS: unsubscribed from %s", subject)
        for subject in sorted(wanted - set(self._subscriptions)):
            try:
                self._subscriptions[subject] = await self._connection.subscribe(
                    subject, self._settings.pubsub_group, self._handler(subject)
                )
            except errors.NatsError as exc:
                logger.warning("%s; retrying", exc)
                continue
            group = self._settings.pubsub_group
            logger.info("NATS: subscribed to %s (%s)", subject, f"queue group {group}" if group else "no queue group")

    def _handler(self, subject: str) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            await self.handle(subject, msg.subject, msg.data)

        return handle

    async def handle(self, subscribed: str, subject: str, data: bytes) -> None:
        """One message that arrived on ``subject`` through the subscription of ``subscribed``."""
        self.received += 1
        try:
            event = decode(data)
        except ValueError as exc:
            self.skipped += 1
            self._on_malformed()
            logger.warning("NATS: skipping a malformed message on %s: %s", subject, exc)
            return
        for topic in self._current_topics():
            if topic.event != subscribed or not EventFilter.of(topic.filter, self._settings).matches(event):
                continue
            if is_wildcard(subscribed):
                self._on_type_seen(topic, str(event["type"]))
            try:
                await self._on_event(event, topic.subscription_id)
            except Exception as exc:  # shutting down: the reconciliation offers it again
                logger.warning("NATS: event %s (%s) not taken: %s", event["id"], subject, exc)
            if not self._each_subscription:
                return
