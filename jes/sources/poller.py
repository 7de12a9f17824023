"""Finding work: uniform registration, heartbeat, and one polling loop per subscribed event type.

jes registers with the control plane (name, metadata, one subscription per ``PUBSUB_TOPIC``),
pings it every ``HEARTBEAT_INTERVAL`` and takes its subscriptions from the ping answer — users
edit them in the Bridge, so a topic added there starts being polled and a removed one stops. A
ping that answers 404 (the integration expired) registers again. With ``DISABLE_REGISTRATION``
the ``PUBSUB_TOPIC`` list is polled as it is.

Each subscription gets a loop that asks ``GET /controlPlane/v1/event/triggered/{type}`` every
``HTTP_POLLING_INTERVAL`` (the time spent polling is subtracted from the wait). A filter dimension
with exactly one value goes to the server as a query parameter; the others are applied here, both
the subscription's filters and ``PROJECT_FILTER``/``STAGE_FILTER``/``SERVICE_FILTER``
(:mod:`jes.sources.topics`).

An open ``.triggered`` event is returned by every poll until its task completes, so delivered ids
are remembered per event type and forgotten once the server has stopped returning them for
``forget_after_s`` (a hard cap bounds the memory). A delivery whose callback raised is not
remembered: the next poll offers the event again.

Nothing here ever stops on errors: temporary errors back off up to ``slow_retry_s``, a 401/403 or
another permanent answer waits ``slow_retry_s`` (so a rotated token heals it), and running out of
``MAX_REGISTRATION_RETRIES``/``MAX_HEARTBEAT_RETRIES`` only slows the pace down and makes
:attr:`Poller.ready` false. Problems are logged once per change, never with the token
(:mod:`jes.sources.problems`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jes
from jes import errors
from jes.clients.keptn import client as keptn_client
from jes.clients.keptn import wire
from jes.settings import Settings
from jes.sources.problems import ErrorKind, ProblemLog, error_kind, retry_after_s
from jes.sources.topics import EventFilter, SeenIds, Topic, topics_of
from jes.util import retry

logger = logging.getLogger(__name__)

OnEvent = Callable[[dict[str, Any], str], Awaitable[None]]
OnPollError = Callable[[str], None]
Clock = Callable[[], float]

DISTRIBUTOR_VERSION = "0.15.0"  # the Bridge wants one; the go-sdk reports this
DEFAULT_LOCATION = "remote-execution-plane"
IN_CLUSTER_LOCATION = "control-plane"  # the distributor's default in NATS mode
#: The longest wait between attempts (after MAX_*_RETRIES, on 401/403 and other permanent errors).
SLOW_RETRY_S = 60.0
#: Remembered event ids per event type, at most.
MAX_SEEN_IDS = 10_000
#: Each poll asks once; the next poll is the retry.
NO_RETRY = retry.Backoff(())


@dataclass
class PollerStats:
    """Counters the service can export as metrics."""

    polls_ok: int = 0
    last_poll_ok_at: float = 0.0  # time.time() of the last successful poll; 0 before the first
    polls_failed: int = 0
    poll_errors: Counter[str] = field(default_factory=Counter)
    events_delivered: int = 0
    events_filtered: int = 0
    heartbeats_ok: int = 0
    heartbeats_failed: int = 0
    registrations: int = 0


@dataclass(frozen=True)
class PollResult:
    delivered: int = 0
    error: errors.KeptnError | None = None


# ---------------------------------------------------------------------------------------------
# The poller


class Poller:
    """Registration, heartbeat and polling for one jes process.

    ``on_event(event, subscription_id)`` receives each new event once; it must be cheap (queue
    the work). Use :meth:`run` in the service; :meth:`heartbeat_once` and :meth:`poll_once` do one
    step each (tests).
    """

    def __init__(
        self,
        client: keptn_client.KeptnClient,
        settings: Settings,
        on_event: OnEvent,
        *,
        on_poll_error: OnPollError | None = None,
        sleep: retry.Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        slow_retry_s: float = SLOW_RETRY_S,
        forget_after_s: float | None = None,
        max_seen_ids: int = MAX_SEEN_IDS,
        seen_per_subscription: bool = False,
    ) -> None:
        self._client = client
        self._settings = settings
        self._on_event = on_event
        self._on_poll_error = on_poll_error
        self._sleep = sleep
        self._clock = clock
        self.slow_retry_s = slow_retry_s
        self.forget_after_s = forget_after_s if forget_after_s is not None else max(60.0, 10 * self._interval_s)
        self._max_seen_ids = max_seen_ids
        self._seen_per_subscription = seen_per_subscription
        """Remember ids per subscription, not per event type: an event two subscriptions match is
        handed over once for each (the distributor's rule; jes serve takes an event once)."""
        self.stats = PollerStats()
        self.integration_id: str | None = None
        self._registered = settings.disable_registration
        self._heartbeat_failures = 0
        self._topics: dict[str, Topic] = {}
        self._seen_types: dict[str, Topic] = {}
        """Exact event types received on a wildcard subject (NATS mode), polled in its place."""
        self._topics_changed = asyncio.Event()
        self._last_poll_ok: dict[str, bool] = {}
        self._seen: dict[str, SeenIds] = {}
        self._log = ProblemLog(logger)
        if settings.disable_registration:
            self._topics = {t: Topic(key=t, subscription_id="", event=t) for t in settings.pubsub_topics}

    # -- state -------------------------------------------------------------------------------

    @property
    def _interval_s(self) -> float:
        if self._settings.in_cluster:  # NATS brings the events; polling only reconciles
            return self._settings.nats_reconcile_s
        return self._settings.http_polling_interval_s

    def _pollable(self) -> dict[str, Topic]:
        """What can be asked over HTTP: exact event types (a wildcard subject only through the
        types seen on it)."""
        exact = {k: t for k, t in self._topics.items() if "*" not in t.event and ">" not in t.event}
        return exact | self._seen_types

    def type_seen(self, topic: Topic, event_type: str) -> None:
        """An event of ``event_type`` arrived through the wildcard subscription ``topic``: poll it too."""
        key = f"{topic.key}>{event_type}"
        if key not in self._seen_types and topic.key in self._topics and len(self._seen_types) < 1024:
            self._seen_types[key] = Topic(key=key, subscription_id=topic.subscription_id, event=event_type,
                                          filter=topic.filter)  # fmt: skip
            self._topics_changed.set()

    @property
    def registered(self) -> bool:
        """Registered and heartbeats are getting through (always true without registration)."""
        return self._registered

    @property
    def ready(self) -> bool:
        """Registered, and the latest poll of every subscription succeeded."""
        return self._registered and all(self._last_poll_ok.get(key, False) for key in self._pollable())

    @property
    def topics(self) -> tuple[Topic, ...]:
        return tuple(self._topics.values())

    def remembered_ids(self) -> int:
        """How many delivered event ids are remembered (bounded memory)."""
        return sum(len(seen) for seen in self._seen.values())

    def registration(self) -> wire.Registration:
        """What jes registers: upstream's metadata and one subscription per PUBSUB_TOPIC."""
        s = self._settings
        services = s.service_filter
        if services and not s.stage_filter:
            # The control plane refuses a services filter without stages (400); applied here instead.
            services = ()
        sub_filter = wire.SubscriptionFilter(
            projects=s.project_filter, stages=s.stage_filter, services=services
        )
        return wire.Registration(
            name=s.integration_name,
            metadata=wire.IntegrationMetadata(
                hostname=s.k8s_node_name,
                integrationversion=s.k8s_deployment_version or jes.__version__,
                distributorversion=DISTRIBUTOR_VERSION,
                location=s.location or (IN_CLUSTER_LOCATION if s.in_cluster else DEFAULT_LOCATION),
                kubernetesmetadata=wire.KubernetesMetadata(
                    namespace=s.k8s_namespace, podname=s.k8s_pod_name, deploymentname=s.k8s_deployment_name
                ),
            ),
            subscriptions=tuple(wire.Subscription(event=t, filter=sub_filter) for t in s.pubsub_topics),
        )

    # -- registration and heartbeat ---------------------------------------------------------

    async def register_once(self) -> str:
        """Register (one attempt); the integration id."""
        integration_id = await self._client.register(self.registration(), backoff=NO_RETRY)
        if integration_id != self.integration_id:
            logger.info(
                "registered with the control plane as %s (integration id %s)",
                self._settings.integration_name,
                integration_id,
            )
        self.integration_id = integration_id
        self.stats.registrations += 1
        return integration_id

    async def heartbeat_once(self) -> None:
        """One heartbeat: register first if needed, ping, take the subscriptions it returns.

        A ping answered 404 (the integration expired) registers again. Errors propagate after
        the bookkeeping (readiness, counters).
        """
        if self._settings.disable_registration:
            return
        try:
            integration = await self._register_and_ping()
        except errors.KeptnError as exc:
            self.stats.heartbeats_failed += 1
            self._count_error(error_kind(exc))
            self._heartbeat_failures += 1
            limit = self._settings.max_heartbeat_retries
            if self.integration_id is None or self._heartbeat_failures > limit:
                self._registered = False
            self._log.problem("heartbeat", exc, retry_every_s=self.slow_retry_s)
            raise
        self.stats.heartbeats_ok += 1
        self._heartbeat_failures = 0
        self._registered = True
        self._log.recovery("heartbeat")
        self.apply_subscriptions(integration.subscriptions)

    async def _register_and_ping(self) -> wire.Integration:
        if self.integration_id is None:
            await self.register_once()
        assert self.integration_id is not None
        try:
            return await self._client.ping(self.integration_id, backoff=NO_RETRY)
        except errors.KeptnNotFoundError:
            logger.warning("integration %s is unknown to the control plane (expired?); registering again",
                           self.integration_id)  # fmt: skip
            self._registered = False
            await self.register_once()
            return await self._client.ping(self.integration_id, backoff=NO_RETRY)

    def apply_subscriptions(self, subscriptions: tuple[wire.Subscription, ...]) -> None:
        """Poll these from now on (the heartbeat's answer, or what ``jes distributor`` was told)."""
        topics = topics_of(subscriptions)
        if topics == self._topics:
            return
        added = [t.event for k, t in topics.items() if k not in self._topics]
        removed = [t.event for k, t in self._topics.items() if k not in topics]
        logger.info(
            "subscriptions now: %s (added: %s; removed: %s)",
            ", ".join(sorted(t.event for t in topics.values())) or "none",
            ", ".join(added) or "-",
            ", ".join(removed) or "-",
        )
        self._topics = topics
        self._seen_types = {k: t for k, t in self._seen_types.items() if k.partition(">")[0] in topics}
        for key in list(self._last_poll_ok):
            if key not in self._pollable():
                del self._last_poll_ok[key]
        self._topics_changed.set()

    def _heartbeat_delay_s(self, exc: errors.KeptnError | None) -> float:
        s = self._settings
        if exc is None:
            return s.heartbeat_interval_s
        if isinstance(exc, errors.Permanent) and not isinstance(exc, errors.KeptnNotFoundError):
            return self.slow_retry_s
        if self.integration_id is None:
            quick = self._heartbeat_failures <= s.max_registration_retries
            delay = s.registration_interval_s if quick else self.slow_retry_s
        else:
            quick = self._heartbeat_failures <= s.max_heartbeat_retries
            delay = s.heartbeat_interval_s if quick else self.slow_retry_s
        return max(delay, retry_after_s(exc))

    async def _heartbeat_loop(self) -> None:
        while True:
            problem: errors.KeptnError | None = None
            try:
                await self.heartbeat_once()
            except errors.KeptnError as exc:
                problem = exc
            except Exception:
                logger.exception("heartbeat failed unexpectedly")
                problem = errors.KeptnPermanentError("unexpected heartbeat failure")
            await self._sleep(self._heartbeat_delay_s(problem))

    # -- polling ----------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Poll every subscription once; how many new events were delivered."""
        delivered = 0
        for topic in list(self._pollable().values()):
            delivered += (await self.poll_topic(topic)).delivered
        return delivered

    async def poll_topic(self, topic: Topic) -> PollResult:
        """One poll of one subscription; errors are counted and returned, not raised."""
        event_filter = EventFilter.of(topic.filter, self._settings)
        scope = f"polling {topic.event}"
        if event_filter.impossible:
            self._last_poll_ok[topic.key] = True
            return PollResult()
        query = event_filter.query()
        try:
            events = await self._client.get_triggered(topic.event, backoff=NO_RETRY, **query)
        except errors.KeptnNotFoundError as exc:
            if "project" not in query:
                return self._poll_failed(topic, scope, exc)
            self._log.unknown_project(query["project"], exc)
            events = []
        except errors.KeptnError as exc:
            return self._poll_failed(topic, scope, exc)
        self._log.project_known(query.get("project", ""))
        self._last_poll_ok[topic.key] = True
        self.stats.polls_ok += 1
        self.stats.last_poll_ok_at = time.time()
        self._log.recovery(scope)
        return PollResult(delivered=await self._deliver(topic, event_filter, events))

    def _poll_failed(self, topic: Topic, scope: str, exc: errors.KeptnError) -> PollResult:
        self._last_poll_ok[topic.key] = False
        self.stats.polls_failed += 1
        self._count_error(error_kind(exc))
        self._log.problem(scope, exc, retry_every_s=self.slow_retry_s)
        return PollResult(error=exc)

    def _count_error(self, kind: ErrorKind) -> None:
        self.stats.poll_errors[kind.value] += 1
        if self._on_poll_error is not None:
            try:
                self._on_poll_error(kind.value)
            except Exception:
                logger.exception("on_poll_error hook failed")

    async def _deliver(self, topic: Topic, event_filter: EventFilter, events: list[dict[str, Any]]) -> int:
        now = self._clock()
        key = self._seen_key(topic.event, topic.subscription_id)
        seen = self._seen.setdefault(key, SeenIds(cap=self._max_seen_ids))
        evicted_before = seen.evicted
        delivered = 0
        for event in events:
            event_id = str(event.get("id") or "")
            if not event_id or event.get("type", topic.event) != topic.event:
                continue
            if event_id in seen:
                seen.touch(event_id, now)
                continue
            if not event_filter.matches(event):
                self.stats.events_filtered += 1
                continue
            try:
                await self._on_event(event, topic.subscription_id)
            except Exception:
                logger.exception("handing over event %s (%s) failed; it is offered again", event_id, topic.event)
                self._count_error(ErrorKind.CALLBACK)
                continue
            seen.touch(event_id, now)
            delivered += 1
        seen.forget_older_than(now - self.forget_after_s)
        if seen.evicted > evicted_before:
            logger.warning(
                "more than %d open %s events; the oldest ids were forgotten", self._max_seen_ids, topic.event
            )
        self.stats.events_delivered += delivered
        return delivered

    def _seen_key(self, event_type: str, subscription_id: str) -> str:
        return f"{event_type}|{subscription_id}" if self._seen_per_subscription else event_type

    def forget(self, event_type: str, subscription_id: str, event_id: str) -> None:
        """Offer ``event_id`` again at the next poll: what it was handed to failed later on."""
        seen = self._seen.get(self._seen_key(event_type, subscription_id))
        if seen is not None:
            seen.discard(event_id)

    def _poll_delay_s(self, result: PollResult, failures: int, elapsed_s: float) -> float:
        exc = result.error
        if exc is None:
            return max(0.0, self._interval_s - elapsed_s)
        if isinstance(exc, errors.Permanent):
            return self.slow_retry_s
        delay = min(self.slow_retry_s, self._interval_s * 2.0 ** min(failures, 16))
        return max(delay, retry_after_s(exc))

    async def _topic_loop(self, key: str) -> None:
        failures = 0
        while (topic := self._pollable().get(key)) is not None:
            started = self._clock()
            try:
                result = await self.poll_topic(topic)
            except Exception:
                logger.exception("polling %s failed unexpectedly", topic.event)
                result = PollResult(error=errors.KeptnPermanentError("unexpected polling failure"))
            failures = failures + 1 if result.error is not None else 0
            await self._sleep(self._poll_delay_s(result, failures, self._clock() - started))

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Register, heartbeat and poll until ``stop`` is set; then cancel every loop."""
        loops: dict[str, asyncio.Task[None]] = {}
        heartbeat: asyncio.Task[None] | None = None
        if not self._settings.disable_registration:
            heartbeat = asyncio.create_task(self._heartbeat_loop(), name="jes-poller-heartbeat")
        try:
            while not stop.is_set():
                self._topics_changed.clear()
                self._reconcile(loops)
                await _first_of(stop, self._topics_changed)
        finally:
            tasks = [*loops.values(), *([heartbeat] if heartbeat is not None else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _reconcile(self, loops: dict[str, asyncio.Task[None]]) -> None:
        pollable = self._pollable()
        for key in list(loops):
            if key not in pollable:
                loops.pop(key).cancel()
        for key, topic in pollable.items():
            task = loops.get(key)
            if task is None or task.done():
                loops[key] = asyncio.create_task(self._topic_loop(key), name=f"jes-poll:{topic.event}:{key}")


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.create_task(e.wait(), name=f"jes-poller-wait-{i}") for i, e in enumerate(events)]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
