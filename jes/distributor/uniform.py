"""Registration and heartbeat, as the distributor does them.

The body (:func:`registration`): ``name`` = ``K8S_DEPLOYMENT_NAME``; ``metadata`` with ``hostname``
(``K8S_NODE_NAME`` or ``keptn-node``), ``integrationversion`` (``VERSION``), ``distributorversion``
(``DISTRIBUTOR_VERSION``), ``location`` (``LOCATION``, else ``control-plane`` in NATS mode and
``remote-execution-plane`` over HTTP) and ``kubernetesmetadata``; one subscription per
``PUBSUB_TOPIC`` entry whose filter holds the ``*_FILTER`` lists (``[]`` when empty).

:meth:`Uniform.register` tries ``MAX_REGISTRATION_RETRIES`` times, :data:`REGISTRATION_PAUSE_S`
apart, then raises :class:`RegistrationFailed` (``jes distributor`` exits 1, as the distributor).
:meth:`Uniform.run` pings every ``HEARTBEAT_INTERVAL`` and hands the subscriptions of each answer to
``on_subscriptions``; after ``MAX_HEARTBEAT_RETRIES`` failures in a row it returns with
:attr:`Uniform.exhausted` set, and the caller shuts down gracefully. Two differences: the first
ping goes out right after registering (the distributor waits one interval, and forwards nothing
meanwhile), and a ping answered 404 — the control plane forgot the integration — registers again
(the distributor keeps failing until it stops, and is registered anew by its restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from jes import errors
from jes.clients.keptn import client as keptn_client
from jes.clients.keptn import wire
from jes.distributor.config import REGISTRATION_PAUSE_S, DistributorConfig
from jes.util import retry

logger = logging.getLogger(__name__)

NO_RETRY = retry.Backoff(())
OnSubscriptions = Callable[[tuple[wire.Subscription, ...]], None]


class RegistrationFailed(errors.JesError):
    """Every registration attempt failed."""


def subscription_filter(config: DistributorConfig) -> wire.SubscriptionFilter:
    return wire.SubscriptionFilter(
        projects=config.project_filter, stages=config.stage_filter, services=config.service_filter
    )


def topic_subscriptions(config: DistributorConfig) -> tuple[wire.Subscription, ...]:
    """``PUBSUB_TOPIC`` with the ``*_FILTER`` lists: what is registered, and what is used while the
    control plane has not named any subscriptions (or without registration)."""
    flt = subscription_filter(config)
    return tuple(wire.Subscription(event=topic, filter=flt) for topic in config.pubsub_topics)


def registration(config: DistributorConfig) -> wire.Registration:
    return wire.Registration(
        name=config.k8s_deployment_name,
        metadata=wire.IntegrationMetadata(
            hostname=config.node_name,
            integrationversion=config.version,
            distributorversion=config.distributor_version,
            location=config.effective_location,
            kubernetesmetadata=wire.KubernetesMetadata(
                namespace=config.k8s_namespace, podname=config.k8s_pod_name, deploymentname=config.k8s_deployment_name
            ),
        ),
        subscriptions=topic_subscriptions(config),
    )


class Uniform:
    """This integration at the control plane: its id and the subscriptions it was last told."""

    def __init__(
        self,
        client: keptn_client.KeptnClient,
        config: DistributorConfig,
        *,
        on_subscriptions: OnSubscriptions,
        pause_s: float = REGISTRATION_PAUSE_S,
        sleep: retry.Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._config = config
        self._on_subscriptions = on_subscriptions
        self._pause_s = pause_s
        self._sleep = sleep
        self.integration_id: str | None = None
        self.subscriptions: tuple[wire.Subscription, ...] | None = None
        """From the last successful heartbeat; None before the first."""
        self.failures = 0
        self.exhausted = False

    async def register(self) -> str:
        """Register, retrying; :class:`RegistrationFailed` once every attempt failed."""
        attempts = self._config.max_registration_retries
        body = registration(self._config)
        for attempt in range(1, attempts + 1):
            try:
                integration_id = await self._client.register(body, backoff=NO_RETRY)
            except errors.KeptnError as exc:
                logger.warning("registration failed (attempt %d of %d): %s", attempt, attempts, exc)
                if attempt == attempts:
                    raise RegistrationFailed(
                        f"could not register with the control plane in {attempts} attempts "
                        f"(MAX_REGISTRATION_RETRIES): {exc}"
                    ) from exc
                await self._sleep(self._pause_s)
                continue
            self.integration_id = integration_id
            logger.info("registered as %s (integration id %s, location %s)", body.name, integration_id,
                        body.metadata.location)  # fmt: skip
            return integration_id
        raise RegistrationFailed("MAX_REGISTRATION_RETRIES allows no attempt")  # pragma: no cover - at least 1

    async def heartbeat(self) -> bool:
        """One ping; whether it worked. The subscriptions it returns go to ``on_subscriptions``."""
        assert self.integration_id is not None, "register first"
        try:
            integration = await self._ping()
        except errors.KeptnError as exc:
            self.failures += 1
            logger.warning("heartbeat failed (%d in a row, MAX_HEARTBEAT_RETRIES=%d): %s",
                           self.failures, self._config.max_heartbeat_retries, exc)  # fmt: skip
            return False
        if self.failures:
            logger.info("heartbeat works again")
        self.failures = 0
        if integration.subscriptions != self.subscriptions:
            events = ", ".join(s.event for s in integration.subscriptions) or "none"
            logger.debug("subscriptions from the control plane: %s", events)
        self.subscriptions = integration.subscriptions
        self._on_subscriptions(integration.subscriptions)
        return True

    async def _ping(self) -> wire.Integration:
        assert self.integration_id is not None
        try:
            return await self._client.ping(self.integration_id, backoff=NO_RETRY)
        except errors.KeptnNotFoundError:
            logger.warning("the control plane no longer knows integration %s: registering again", self.integration_id)
            self.integration_id = await self._client.register(registration(self._config), backoff=NO_RETRY)
            return await self._client.ping(self.integration_id, backoff=NO_RETRY)

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat until ``stop`` is set or ``MAX_HEARTBEAT_RETRIES`` pings in a row failed
        (then :attr:`exhausted` is set)."""
        interval = self._config.heartbeat_interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            await self.heartbeat()
            if self.failures >= self._config.max_heartbeat_retries:
                self.exhausted = True
                logger.error("%d heartbeats in a row failed (MAX_HEARTBEAT_RETRIES): shutting down",
                             self.failures)  # fmt: skip
                return
