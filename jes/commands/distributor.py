"""``jes distributor``: the Keptn distributor as a drop-in, wired from the stages.

The mode is the distributor's: **NATS** when ``KEPTN_API_ENDPOINT`` is empty (events from NATS
subscriptions in the queue group ``PUBSUB_GROUP``; Keptn's services at their in-cluster names),
**HTTP polling** otherwise (the poller asks the triggered-event API of every subscription). Either
way events go to the recipient (:mod:`jes.distributor.recipient`) with the id of the control-plane
subscription that matched, and one HTTP server on ``127.0.0.1:API_PROXY_PORT`` serves the API proxy,
``EVENT_FORWARDING_PATH`` (NATS publish, or ``POST /v1/event``) and ``/health``
(:mod:`jes.proxy`). Registration, heartbeat and the uniform error log run when the registration
constraints hold (:mod:`jes.distributor.uniform`, :mod:`jes.distributor.errorlog`).

Exit codes: 0 after SIGTERM/SIGINT (graceful); 1 for a bad variable (one line each on stderr),
a failed OAuth discovery, a taken port, registration given up, or heartbeats given up (the
distributor exits 0 there; 1 tells a supervisor that restarts only failures to restart it).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Mapping
from typing import Any

import httpx

from jes import errors
from jes.clients.keptn import auth, wire
from jes.clients.keptn import client as keptn_client
from jes.clients.keptn.httperrors import EventMaybeDeliveredError
from jes.clients.nats import NatsConnection, describe_servers
from jes.commands import signals
from jes.distributor import config as dconfig
from jes.distributor import errorlog, recipient, redelivery, uniform
from jes.proxy.server import ProxyServer
from jes.sources.poller import Poller
from jes.sources.subscriber import NatsSubscriber
from jes.sources.topics import Topic, topics_of
from jes.util import logfmt, retry

logger = logging.getLogger("jes.distributor")

#: On a stop, how long deliveries to the recipient in flight may still finish.
SHUTDOWN_GRACE_S = recipient.DEADLINE_S
#: How long the event sources get to stop taking events (a NATS connection still being retried
#: is simply cancelled).
SOURCE_STOP_S = 1.0
API_EVENT_FIELDS = ("specversion", "id", "source", "type", "time", "shkeptncontext", "triggeredid",
                    "shkeptnspecversion", "gitcommitid", "data")  # fmt: skip


def main(environ: Mapping[str, str] | None = None) -> int:
    """Read the variables, run until stopped; the exit code."""
    try:
        loaded = dconfig.load(environ)
    except errors.SettingsError as exc:
        for problem in exc.problems:
            print(f"jes distributor: {problem}", file=sys.stderr)
        return 1
    logfmt.setup(fmt=loaded.log_format, secrets=(loaded.keptn_api_token, loaded.oauth_client_secret))
    try:
        return asyncio.run(_run(loaded))
    except errors.JesError as exc:
        logger.error("jes distributor stopped: %s", exc)
        return 1


async def _run(loaded: dconfig.DistributorConfig) -> int:
    stop = asyncio.Event()
    signals.on_stop(stop)
    return await Distributor(loaded).run(stop)


def api_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudEvent from ``/event`` as the Keptn API takes it (``contenttype`` instead of
    ``datacontenttype``; the Keptn extensions kept), as the distributor converts it."""
    converted = {name: event[name] for name in API_EVENT_FIELDS if name in event}
    converted["contenttype"] = "application/json"
    return converted


class Distributor:
    """One ``jes distributor`` process: :meth:`run` until ``stop`` (or heartbeats give up)."""

    def __init__(
        self,
        config: dconfig.DistributorConfig,
        *,
        log_interval_s: float = errorlog.INTERVAL_S,
        registration_pause_s: float = dconfig.REGISTRATION_PAUSE_S,
        recipient_options: Mapping[str, Any] | None = None,
        redelivery_delays_s: tuple[float, ...] = redelivery.DELAYS_S,
    ) -> None:
        self.config = config
        self.settings = config.settings()
        self.http = auth.make_http_client(self.settings)
        self.client = keptn_client.KeptnClient.from_settings(self.http, self.settings)
        self._recipient_http = httpx.AsyncClient(follow_redirects=True, timeout=recipient.DEADLINE_S)
        self.recipient = recipient.Recipient(
            config.recipient_url, self._recipient_http, max_concurrent=config.max_concurrent_forwards,
            **(recipient_options or {}),
        )  # fmt: skip
        self.uniform: uniform.Uniform | None = None
        self.error_log: errorlog.ErrorLog | None = None
        if config.registration_blocked is None:
            self.uniform = uniform.Uniform(
                self.client, config, on_subscriptions=self._subscriptions_changed, pause_s=registration_pause_s
            )
            self.error_log = errorlog.ErrorLog(
                self.client, integration_id=self._integration_id, interval_s=log_interval_s
            )
        self.nats: NatsConnection | None = None
        self.subscriber: NatsSubscriber | None = None
        self.poller: Poller | None = None
        self.recent = redelivery.RecentlyForwarded()
        self.redelivery = redelivery.Redelivery(
            self.recipient.deliver, window_s=config.recipient_retry_s, still_open=self._still_open,
            delays_s=redelivery_delays_s,
        )  # fmt: skip
        if config.nats_mode:
            self.nats = NatsConnection(config.pubsub_url, name=f"jes distributor {config.k8s_pod_name}".strip())
            self.subscriber = NatsSubscriber(
                self.nats, self.settings, self._received, topics=self._topics, each_subscription=True
            )
        else:
            self.poller = Poller(self.client, self.settings, self._polled, seen_per_subscription=True)
        self.proxy = ProxyServer.from_settings(
            self.settings, http=self.http, forward_event=self._send_event, on_error_log=self._error_log_entry
        )
        self._topics_cache: tuple[tuple[wire.Subscription, ...], tuple[Topic, ...]] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._source_stop = asyncio.Event()
        self._uniform_stop = asyncio.Event()
        self.running = asyncio.Event()
        """Set once events are taken (after registration and the first heartbeat)."""

    # -- what is subscribed --------------------------------------------------------------------

    def _integration_id(self) -> str | None:
        return self.uniform.integration_id if self.uniform is not None else None

    def subscriptions(self) -> tuple[wire.Subscription, ...]:
        """The control plane's, once a heartbeat named them; until then (and without registration)
        ``PUBSUB_TOPIC`` with the ``*_FILTER`` lists."""
        if self.uniform is not None and self.uniform.subscriptions is not None:
            return self.uniform.subscriptions
        return uniform.topic_subscriptions(self.config)

    def _topics(self) -> tuple[Topic, ...]:
        current = self.subscriptions()
        if self._topics_cache is None or self._topics_cache[0] is not current:
            self._topics_cache = (current, tuple(topics_of(current).values()))
        return self._topics_cache[1]

    def _subscriptions_changed(self, subscriptions: tuple[wire.Subscription, ...]) -> None:
        if self.poller is not None:
            self.poller.apply_subscriptions(subscriptions)

    # -- events in -----------------------------------------------------------------------------

    async def _polled(self, event: dict[str, Any], subscription_id: str) -> None:
        poller = self.poller
        assert poller is not None
        event_type, event_id = str(event.get("type")), str(event.get("id"))
        await self.recipient.submit(
            event, subscription_id, on_failure=lambda: poller.forget(event_type, subscription_id, event_id)
        )

    async def _received(self, event: dict[str, Any], subscription_id: str) -> None:
        if not self.recent.first_time(subscription_id, str(event["id"])):
            logger.debug("event %s arrived again within %gs: forwarded once", event["id"], redelivery.RECENT_S)
            return
        await self.recipient.submit(
            event, subscription_id, on_failure=lambda: self.redelivery.park(event, subscription_id)
        )

    async def _still_open(self, event: Mapping[str, Any]) -> bool | None:
        event_id = str(event.get("id"))
        data = event.get("data")
        project = data.get("project") if isinstance(data, dict) and isinstance(data.get("project"), str) else None
        found = await self.client.get_triggered(
            str(event.get("type")), project=project or None, event_id=event_id, backoff=uniform.NO_RETRY
        )
        return any(e.get("id") == event_id for e in found)

    # -- events out (/event) and the error log -----------------------------------------------

    async def _send_event(self, event: dict[str, Any]) -> None:
        if self.nats is None:
            await self.client.send_event(api_event(event), backoff=retry.QUICK)
            return
        try:
            await self.nats.publish_event(event)
        except EventMaybeDeliveredError as exc:  # core NATS confirms no more than the server has it
            logger.debug("published %s: %s", event.get("type"), exc)

    def _error_log_entry(self, event: dict[str, Any]) -> None:
        if self.error_log is not None:
            self.error_log.offer(event)
            return
        entry = wire.log_entry_for(event)
        if entry is not None:
            logger.warning("not registered (%s): error log entry not posted: %s", self.config.registration_blocked,
                           entry.message[:200])  # fmt: skip

    # -- running -------------------------------------------------------------------------------

    def describe(self) -> list[str]:
        c = self.config
        mode = (f"NATS at {describe_servers(c.pubsub_url)}, queue group {c.pubsub_group or '(none)'}" if c.nats_mode
                else f"HTTP polling of {c.keptn_api_endpoint} every {c.http_polling_interval_s}s")  # fmt: skip
        return [
            f"jes distributor: {mode}; auth: {auth.describe(self.settings)}",
            f"forwarding to {c.recipient_url}; topics {', '.join(c.pubsub_topics) or '(none)'}",
            f"K8S_DEPLOYMENT_NAME={c.k8s_deployment_name or 'unknown'} K8S_NAMESPACE={c.k8s_namespace or 'unknown'} "
            f"K8S_POD_NAME={c.k8s_pod_name or 'unknown'} K8S_NODE_NAME={c.k8s_node_name or 'unknown'}",
        ]

    async def start(self) -> None:
        """Everything before the event source: OAuth discovery, the HTTP server, registration."""
        for line in self.describe():
            logger.info("%s", line)
        for warning in self.config.warnings:
            logger.warning("%s", warning)
        wildcards = [t for t in self.config.pubsub_topics if "*" in t or ">" in t]
        if wildcards and not self.config.nats_mode:
            logger.warning("PUBSUB_TOPIC: %s cannot be polled over HTTP (the triggered-event API takes exact types); "
                           "list exact event types", ", ".join(wildcards))  # fmt: skip
        if not self.config.k8s_node_name:
            logger.warning("K8S_NODE_NAME is not set: registering with hostname %s", dconfig.DEFAULT_NODE_NAME)
        if self.uniform is None:
            logger.warning("not registering with the control plane: %s (no heartbeat, no error log)",
                           self.config.registration_blocked)  # fmt: skip
        await self._discover_oauth()
        await self.proxy.start()
        logger.info("API proxy, %s and /health on 127.0.0.1:%d", self.config.event_forwarding_path,
                    self.proxy.trusted.port)  # fmt: skip
        if self.uniform is None:
            return
        await self.uniform.register()
        await self.uniform.heartbeat()

    async def _discover_oauth(self) -> None:
        source = self.http.auth.oauth if isinstance(self.http.auth, auth.KeptnAuth) else None
        if source is None:
            return
        try:
            await source.token_url()
        except errors.KeptnError as exc:
            raise errors.JesError(f"OAuth discovery failed: {exc}") from exc

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self._tasks[name] = asyncio.create_task(work, name=f"jes-distributor-{name}")

    async def run(self, stop: asyncio.Event) -> int:
        """Start, forward until ``stop`` is set or heartbeats give up, shut down; the exit code."""
        try:
            starting = asyncio.create_task(self.start(), name="jes-distributor-start")
            if not await _first(starting, stop):
                logger.info("stopped while starting")
                return 0
            if self.poller is not None:
                self.poller.apply_subscriptions(self.subscriptions())
                self._spawn("poller", self.poller.run(self._source_stop))
            if self.subscriber is not None:
                self._spawn("nats", self.subscriber.run(self._source_stop))
            if self.uniform is not None and self.error_log is not None:
                self._spawn("heartbeat", self.uniform.run(self._uniform_stop))
                self._spawn("error-log", self.error_log.run(self._uniform_stop))
            self.running.set()
            heartbeat = self._tasks.get("heartbeat")
            if heartbeat is None:
                await stop.wait()
            else:
                await _first(heartbeat, stop, cancel=False)
            return 1 if self.uniform is not None and self.uniform.exhausted else 0
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop taking events, let deliveries in flight finish, post the error log, then close."""
        self._source_stop.set()
        await self._join("poller", "nats", timeout_s=SOURCE_STOP_S)
        await self.recipient.close(SHUTDOWN_GRACE_S)
        await self.redelivery.close()
        self._uniform_stop.set()
        await self._join("heartbeat", "error-log")
        await self.proxy.stop()
        if self.nats is not None:
            await self.nats.close()
        await self._recipient_http.aclose()
        await self.http.aclose()

    async def _join(self, *names: str, timeout_s: float = SHUTDOWN_GRACE_S) -> None:
        """Wait for the tasks ``names`` (cancelled after ``timeout_s``)."""
        for name in names:
            task = self._tasks.pop(name, None)
            if task is None:
                continue
            try:
                await asyncio.wait_for(task, timeout=timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                logger.debug("%s cancelled after %gs", name, timeout_s)
            except Exception:
                logger.exception("%s failed", name)


async def _first(task: asyncio.Task[Any], stop: asyncio.Event, *, cancel: bool = True) -> bool:
    """Wait for ``task`` or ``stop``; True when ``task`` finished (its error raised), False when
    ``stop`` came first (``task`` cancelled unless ``cancel`` is False)."""
    stopping = asyncio.create_task(stop.wait(), name="jes-distributor-stop")
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        task.result()
        return True
    if cancel:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return False
