"""Where events come from, in the mode the settings choose (as the distributor chooses it).

- **Remote** (``KEPTN_API_ENDPOINT`` set): the poller registers, heartbeats and polls the
  triggered-event API every ``HTTP_POLLING_INTERVAL``; reports are POSTed to ``/v1/event``.
- **NATS** (no endpoint: jes runs beside Keptn): events arrive on NATS subjects in the queue group
  ``PUBSUB_GROUP``; reports are published to NATS. The poller still registers and heartbeats (at
  the in-cluster shipyard-controller) and asks the triggered-event API every
  ``JES_NATS_RECONCILE_S``: NATS delivers at most once, so what it lost (jes disconnected, a
  replica killed holding a message) is found there. The ledger makes a second offer harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from jes import settings as jes_settings
from jes.clients.keptn import client as keptn_client
from jes.clients.nats import NatsConnection, NatsEventSender, describe_servers
from jes.sources.poller import OnEvent, OnPollError, Poller
from jes.sources.subscriber import NatsSubscriber

logger = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]


class Intake:
    """The event sources of one jes process and the way its reports leave."""

    def __init__(
        self,
        client: keptn_client.KeptnClient,
        settings: jes_settings.Settings,
        on_event: OnEvent,
        *,
        on_poll_error: OnPollError,
        on_malformed: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.poller = Poller(client, settings, on_event, on_poll_error=on_poll_error)
        self.nats: NatsConnection | None = None
        self.subscriber: NatsSubscriber | None = None
        self.sender: Any = client
        """What sends reports: ``send_event(event, backoff=, before=)`` (the client, or NATS)."""
        if settings.in_cluster:
            self.nats = NatsConnection(settings.pubsub_url, name=f"jes {settings.k8s_pod_name}", pending_bytes=0)
            self.subscriber = NatsSubscriber(
                self.nats, settings, on_event, topics=lambda: self.poller.topics,
                on_type_seen=self.poller.type_seen, on_malformed=on_malformed,
            )  # fmt: skip
            self.sender = NatsEventSender(self.nats)

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.nats is None:
            return f"polling {self.settings.keptn_api_endpoint} every {self.settings.http_polling_interval_s:g}s"
        group = self.settings.pubsub_group or "(none: every replica gets every event)"
        return (
            f"NATS at {describe_servers(self.settings.pubsub_url)}, queue group {group}; Keptn's services at their "
            f"in-cluster names, reconciled every {self.settings.nats_reconcile_s:g}s"
        )

    def loops(self) -> list[tuple[str, Callable[[Any], Coroutine[Any, Any, None]]]]:
        """The forever-tasks, by name; each takes the stop event."""
        loops: list[tuple[str, Callable[[Any], Coroutine[Any, Any, None]]]] = [("poller", self.poller.run)]
        if self.subscriber is not None:
            loops.append(("nats-subscriber", self.subscriber.run))
        return loops

    async def connect(self) -> None:
        """NATS mode: connect now (``--once`` publishes its reports without a subscriber)."""
        if self.nats is not None and not self.nats.connected:
            await self.nats.connect()

    def problems(self) -> list[str]:
        found = []
        if not self.poller.ready:
            found.append("not registered with the control plane, or polling fails")
        if self.subscriber is not None and self.subscriber.problem:
            found.append(self.subscriber.problem)
        return found

    async def close(self) -> None:
        if self.nats is not None:
            await self.nats.close()
