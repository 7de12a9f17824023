"""``jes serve``: the stages wired together, supervised, and shut down in order.

::

    poller ──event──▶ handler (config → match → claim → .started → run slot → tasks → .finished)
                         │            │                                 │
                      ledger      matcher                    runner ── reporter

Start: runner and ledger first, then claims left open by an earlier process are resumed (their
Jobs adopted, reports that may have been sent looked up), then the health server, the poller, the
claim sweep and the ledger's heartbeat — each a supervised task: if one ends unexpectedly, that is
logged and the process stops (a half-working executor is worse than a restarted one).

An event handed over by the poller is handled, or retried with backoff until it is (the service
never drops it: ``INTAKE_BACKOFF``). The sweep, every ``JES_LEASE_RENEW_S``, resumes this
replica's open claims and takes over those of replicas seen dead; less often it deletes done claims
``JES_DONE_RETENTION_S`` after the control plane stopped listing their events.

Stop (SIGTERM, SIGINT — also during start-up): 1. stop polling, 2. let in-flight events finish for
``JES_SHUTDOWN_GRACE_S``, 3. cancel what is left — its claims are handed over (free for any
replica) and its Jobs keep running, so the next holder adopts them — 4. close the runner, the
ledger and the HTTP client. Exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any

import httpx

from jes import errors, ledger
from jes import settings as jes_settings
from jes.clients.keptn import auth, configsource
from jes.clients.keptn import client as keptn_client
from jes.matcher import matching as matcher
from jes.reporter import delivery as reporter
from jes.reporter import events
from jes.runner import base as runner_base
from jes.runner import choice
from jes.service import apiproxy, cancelling, handler, ports, providers, queues, retention
from jes.service.health import HealthServer
from jes.service.health import app as health_app
from jes.service.intake import Intake
from jes.service.metrics import Metrics
from jes.util import parsing, retry, shared

logger = logging.getLogger(__name__)
Work = Callable[[Any], Awaitable[ports.Result]]

#: Between attempts to handle an event that failed (an outage of the Kubernetes API or the control
#: plane, a bug): never given up while the process runs.
INTAKE_BACKOFF = retry.Backoff((1.0, 2.0, 5.0, 10.0, 30.0, 60.0), forever=True)
#: How often done claims are checked against the control plane's listing.
RETENTION_CHECK_S = 300.0
#: A heartbeat Lease of another replica seen unchanged this long (a pod killed uncleanly) is deleted.
STALE_HEARTBEAT_S = 3600.0


def build_ledger(settings: jes_settings.Settings, kube: Any) -> ledger.Ledger:
    """The ledger the settings ask for: files beside the local runner, else Leases (on ``kube``,
    the process's Kubernetes client)."""
    if settings.runner == "local":
        return ledger.FileLedger(settings.state_dir, holder=settings.k8s_pod_name)
    leases = importlib.import_module("jes.ledger.leases")
    store: ledger.Ledger = leases.LeaseLedger.from_settings(kube, settings)
    return store


class Service:
    """One jes process. ``run(stop)`` returns after a staged shutdown once ``stop`` is set."""

    def __init__(
        self,
        settings: jes_settings.Settings,
        *,
        runner: runner_base.Runner | None = None,
        store: ledger.Ledger | None = None,
        kube: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
        health_host: str = "0.0.0.0",  # probes come from the kubelet
        sweep_interval_s: float | None = None,
        retention_check_s: float = RETENTION_CHECK_S,
        intake_backoff: retry.Backoff = INTAKE_BACKOFF,
        rejected_retry_s: float = reporter.REJECTED_RETRY_S,
        wall_clock: Callable[[], float] = time.time,
        queue_poll_s: float = queues.QUEUE_POLL_S,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        builds_its_own = runner is None or store is None
        self.kube = choice.kube_client_for(settings) if kube is None and builds_its_own else kube
        """The process's one Kubernetes client (None with the local runner), shared by the runner
        and the ledger; closed last. Built first: without a cluster nothing else is opened."""
        self.http = auth.make_http_client(settings, transport=transport)
        self.client = keptn_client.KeptnClient.from_settings(self.http, settings)
        source = configsource.ConfigSource(self.client)
        self.runner = runner or choice.build_runner(settings, self.kube)
        self.store = store or build_ledger(settings, self.kube)
        bad = self.metrics.poll_errors.labels("malformed").inc
        self.intake = Intake(self.client, settings, self._on_event, on_poll_error=self._poll_error, on_malformed=bad)
        self.poller = self.intake.poller
        self.metrics.last_poll_ok.set_function(lambda: self.poller.stats.last_poll_ok_at)
        self.reporter = reporter.KeptnReporter(
            self.client,
            sender=self.intake.sender,
            integration_id=lambda: self.poller.integration_id,
            settle_s=settings.datastore_settle_s,
            rejected_retry_s=rejected_retry_s,
            on_error=lambda kind: self.metrics.report_errors.labels(kind).inc(),
            on_rejected=lambda kind: self.metrics.reports_rejected.labels(kind).inc(),
            on_delivered=lambda kind, seconds: self.metrics.report_latency.labels(kind).observe(seconds),
        )
        self.api_proxy = (
            apiproxy.ApiProxy(
                settings, http=self.http, sender=self.intake.sender, reporter=self.reporter, store=self.store
            )
            if settings.api_proxy_port is not None
            else None
        )
        self.triggered = providers.ControlPlaneTriggered(self.client)
        self.retention = retention.DoneClaims(self.store, self.client, settings, self.metrics, wall_clock=wall_clock)
        self._slots = asyncio.Semaphore(settings.max_concurrent_events)
        self.handler = handler.EventHandler(
            configs=providers.ControlPlaneConfigs(source, max_config_bytes=settings.max_config_bytes),
            files=providers.ControlPlaneFiles(
                source, max_total_bytes=parsing.size_in_bytes(settings.files_size_limit)
            ),
            runner=self.runner,
            reporter=self.reporter,
            store=self.store,
            executor=matcher.executor_from_settings(settings),
            identity=events.Identity(source=settings.event_source, executor=settings.executor_id),
            max_event_bytes=settings.max_event_bytes,
            metrics=self.metrics,
            run_slot=lambda: self._slots,
            triggered=self.triggered,
            fence_s=getattr(self.store, "fence_s", None),
            proxy_access=self.api_proxy.task_access() if self.api_proxy is not None else None,
            queue_poll_s=queue_poll_s,
        )
        self.cancel_checker = cancelling.checker(self.handler.running, self.client, settings.cancel_check_s)
        self.health = HealthServer(
            health_app(problems=self.problems, metrics=self.metrics),
            host=health_host,
            port=settings.health_endpoint_port,
        )
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # bound methods made once (not one each per event in flight): what _spawn gives and gets
        self._handle, self._resume, self._forget_handled = self.handler.handle, self.handler.resume, self._handled
        self._stop_polling = asyncio.Event()
        self._root_tasks: list[asyncio.Task[None]] = []
        self._sweep_interval_s = sweep_interval_s if sweep_interval_s is not None else settings.lease_renew_s
        self._retention_check_s = retention_check_s
        self._intake_backoff = intake_backoff
        self._wall_clock = wall_clock
        self._accepting = True
        self._failed = asyncio.Event()
        self.failure: str | None = None
        self._started_parts: list[str] = []

    # -- state -----------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why jes is not ready (empty: ready)."""
        found = []
        if not self._accepting:
            found.append("shutting down")
        found.extend(self.intake.problems())
        for what, answer in self.reporter.rejections.items():
            found.append(f"the control plane rejects {what}: {answer}")
        return found

    def ready(self) -> bool:
        return not self.problems()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until ``stop`` is set or a root task fails, shut down in stages.

        A stop during start-up interrupts the start and shuts down what was started."""
        starting = asyncio.create_task(self.start(), name="jes-start")
        try:
            await _first_of(starting, stop.wait())
            if not starting.done():
                logger.info("stopping during start-up")
                starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            if not stop.is_set():
                await _first_of(stop.wait(), self._failed.wait())
        finally:
            await self.shutdown()
        if self.failure is not None:
            raise errors.JesError(self.failure)

    async def run_once(self, stop: asyncio.Event | None = None) -> None:
        """Register, poll every subscription once, handle what was found to the end, stop (also
        when ``stop`` is set first: then with the staged shutdown)."""
        await self.start(poll=False)
        try:
            once = asyncio.create_task(self._poll_once_and_finish(), name="jes-once")
            await _first_of(once, (stop or asyncio.Event()).wait())
            if not once.done():
                once.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await once
        finally:
            await self.shutdown()

    async def _poll_once_and_finish(self) -> None:
        await self.intake.connect()
        if not self.settings.disable_registration:
            await self.poller.heartbeat_once()
        await self.poller.poll_once()
        while self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))

    async def start(self, *, poll: bool = True) -> None:
        logger.info(
            "jes starting: %s (auth: %s), runner %s, location %s, topics %s",
            self.intake.describe(),
            auth.describe(self.settings),
            self.settings.runner,
            self.settings.location or "(none)",
            ", ".join(self.settings.pubsub_topics) or "(from the control plane)",
        )
        self._started_parts.append("runner")
        await self.runner.start()
        self._started_parts.append("ledger")
        await self.store.start()
        self._supervise("ledger-heartbeat", self.store.maintain)
        if self.settings.cancel_check_s > 0:
            self._supervise("cancel-check", self.cancel_checker.run_forever)
        try:
            await self._resume_open_claims()
        except errors.JesError as exc:  # e.g. the Kubernetes API is down: the sweep tries again
            logger.warning("cannot look for claims to resume yet (retried every %.0fs): %s",
                           self._sweep_interval_s, exc)  # fmt: skip
        if self.settings.health_endpoint_enabled:
            self._started_parts.append("health")
            await self.health.start()
        if self.api_proxy is not None:
            self._started_parts.append("api-proxy")
            await self.api_proxy.start()
        if poll:
            for name, loop in self.intake.loops():
                self._supervise(name, lambda loop=loop: loop(self._stop_polling), until=self._stop_polling)  # type: ignore[misc]
            self._supervise("claim-sweep", self._sweep_forever)

    def _supervise(
        self, name: str, work: Callable[[], Coroutine[Any, Any, None]], until: asyncio.Event | None = None
    ) -> None:
        """Run a root task; its failure, or an end before ``until`` is set, stops the process."""

        async def guarded() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("jes's %s failed; stopping", name)
                self._fail(f"jes's {name} failed: {type(exc).__name__}: {exc}")
                return
            if until is None or not until.is_set():
                logger.error("jes's %s ended unexpectedly; stopping", name)
                self._fail(f"jes's {name} ended unexpectedly")

        self._root_tasks.append(asyncio.create_task(guarded(), name=f"jes-{name}"))

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self._failed.set()

    async def _resume_open_claims(self) -> None:
        fresh = [c for c in await self.store.resumable(busy=self._in_flight) if c.event_id not in self._in_flight]
        if fresh:
            logger.info("resuming %d event(s) taken before a restart or left by a replica that died", len(fresh))
        for claim in fresh:
            self._spawn(claim.event_id, self._resume, claim, what="resuming")

    async def _sweep_forever(self) -> None:
        """Resume open claims (ours, or taken over from dead replicas) and expire done ones."""
        next_retention = time.monotonic()
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self._resume_open_claims()
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self._retention_check_s
                    await self.retention.expire_done_claims()
                    forget = getattr(self.store, "forget_stale_heartbeats", None)
                    if forget is not None:
                        await forget(unchanged_for_s=STALE_HEARTBEAT_S)
            except errors.JesError as exc:
                logger.warning("sweeping claims failed (retried in %.0fs): %s", self._sweep_interval_s, exc)

    async def shutdown(self) -> None:
        logger.info("stopping: no new events; %d in flight", len(self._in_flight))
        self._accepting = False
        self._stop_polling.set()
        # the heartbeat goes on while in-flight events finish: the grace period may be longer than
        # the lease, and other replicas must not take over work that is still being done here
        heartbeat = [t for t in self._root_tasks if t.get_name() == "jes-ledger-heartbeat"]
        others = [t for t in self._root_tasks if t not in heartbeat]
        for task in others:
            if task.get_name() != "jes-poller":
                task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        self.handler.handing_over = True
        await self._drain(self.settings.shutdown_grace_s)
        for task in heartbeat:
            task.cancel()
        await asyncio.gather(*heartbeat, return_exceptions=True)
        if "api-proxy" in self._started_parts and self.api_proxy is not None:
            await self.api_proxy.stop()  # after the drain: tasks still running may use it
        if "health" in self._started_parts:
            await self.health.stop()
        if "ledger" in self._started_parts:
            await self.store.close()  # before the runner: the lease ledger uses its client
        if "runner" in self._started_parts:
            await self.runner.close()
        await self._close_clients()
        logger.info("stopped")

    async def abandon(self) -> None:
        """Stop everything at once without a handover, as if the process had died (tests)."""
        self._accepting = False
        tasks = [*self._root_tasks, *self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.health.stop()
        if self.api_proxy is not None:
            await self.api_proxy.stop()
        await self.runner.close()
        await self.store.close(abandon=True)
        await self._close_clients()

    async def _close_clients(self) -> None:
        await self.intake.close()
        await self.http.aclose()
        if self.kube is not None:
            await asyncio.to_thread(self.kube.close)

    async def _drain(self, grace_s: float) -> None:
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=grace_s)
        if pending:
            what = "%d event(s) still running after %.0fs; handing them over (their Jobs keep running)"
            logger.warning(what, len(pending), grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- events ----------------------------------------------------------------------------------

    async def _on_event(self, event: dict[str, Any], subscription_id: str) -> None:
        if not self._accepting:
            raise errors.JesError("shutting down")  # the poller offers it again after a restart
        self.metrics.events_received.labels(str(event.get("type", ""))).inc()
        try:
            info = matcher.event_info(event)
        except errors.EventError as exc:
            await self._invalid_event(event, exc)
            return
        if info.id not in self._in_flight:
            taken_at = self._wall_clock()
            self.metrics.observe_pickup(info.time, taken_at)
            kept = shared.packed_json(event)  # (kept for as long as the event is in flight: to try again)
            self._spawn(info.id, self._handle, kept, what="handling", taken_at=taken_at)

    def _spawn(self, event_id: str, work: Work, about: Any, *, what: str, taken_at: float | None = None) -> None:
        """``work(about)`` in a task of its own (``taken_at``: picked up then, for the latency)."""
        task = asyncio.create_task(self._until_handled(event_id, work, about, what, taken_at), name=f"jes:{event_id}")
        self._in_flight[event_id] = task
        self.metrics.events_in_flight.set(len(self._in_flight))
        task.add_done_callback(self._forget_handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task.get_name().removeprefix("jes:"), None)
        self.metrics.events_in_flight.set(len(self._in_flight))

    async def _until_handled(self, event_id: str, work: Work, about: Any, what: str, taken_at: float | None) -> None:
        """Handle an event; when that fails, try again with backoff for as long as jes runs."""
        delays: Iterator[float] | None = None  # (made on the first failure: not kept while all goes well)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await work(about)
                if taken_at is not None and result.finished is not None:
                    self.metrics.completion_latency.observe(max(0.0, self._wall_clock() - taken_at))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delays = delays or iter(self._intake_backoff)
                delay = next(delays, self._intake_backoff.longest_s)
                self.metrics.event_retries.inc()
                if isinstance(exc, errors.JesError):
                    logger.warning("%s event %s failed (attempt %d): %s; retrying in %.0fs",
                                   what, event_id, attempt, exc, delay)  # fmt: skip
                else:
                    logger.exception("%s event %s failed (attempt %d); retrying in %.0fs",
                                     what, event_id, attempt, delay)  # fmt: skip
                await asyncio.sleep(delay)

    async def _invalid_event(self, event: Mapping[str, Any], exc: errors.EventError) -> None:
        self.metrics.events_skipped.labels("invalid").inc()
        logger.error("skipping event %s: %s", event.get("id", "(no id)"), exc)
        entry = {
            "message": f"{self.settings.integration_name} cannot handle event {event.get('id')}: {exc}",
            "time": events.keptn_time(events.utc_now()),
            "shkeptncontext": str(event.get("shkeptncontext") or ""),
            "task": events.task_name_of(str(event.get("type") or "")),
            "triggeredid": str(event.get("id") or ""),
            "gitcommitid": str(event.get("gitcommitid") or ""),
        }
        await self.reporter.error_log(entry)

    def _poll_error(self, kind: str) -> None:
        self.metrics.poll_errors.labels(kind).inc()


async def _first_of(*waitables: Awaitable[Any]) -> None:
    """Wait until any of ``waitables`` is done; the others are cancelled (a Task given is left alone)."""
    tasks = [w if isinstance(w, asyncio.Task) else asyncio.ensure_future(w) for w in waitables]
    owned = [t for t, w in zip(tasks, waitables, strict=True) if t is not w]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()
        await asyncio.gather(*owned, return_exceptions=True)
