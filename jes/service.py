"""``jes serve``: the stages wired together, supervised, and shut down in order.

::

    poller ──event──▶ handler (claim → config → match → .started → run slot → tasks → .finished)
                         │            │                                 │
                      ledger      matcher                    runner ── reporter

Start: runner and ledger first, then claims left open by an earlier process are resumed (their
Jobs adopted, pending reports checked and sent), then the health server and the poller.

Stop (SIGTERM): 1. stop polling, 2. let in-flight events finish for ``JES_SHUTDOWN_GRACE_S``,
3. cancel what is left — its claims stay open and its Jobs keep running, so the next start
adopts them — 4. close the runner, the ledger and the HTTP client. Exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from jes import errors, events, handler, ledger, manifests, matcher, reporter
from jes import settings as jes_settings
from jes.health import HealthServer
from jes.health import app as health_app
from jes.keptn import auth, configsource, providers
from jes.keptn import client as keptn_client
from jes.metrics import Metrics
from jes.poller import Poller
from jes.runner import base as runner_base
from jes.runner import choice

logger = logging.getLogger(__name__)

#: How often an event whose handling crashed (a bug, a broken state store) is retried in-process.
HANDLER_RETRY_DELAYS_S = (1.0, 5.0, 30.0)


def build_ledger(settings: jes_settings.Settings, runner: runner_base.Runner) -> ledger.Ledger:
    if settings.runner == "local":
        return ledger.FileLedger(settings.state_dir, holder=settings.k8s_pod_name)
    kubeledger = importlib.import_module("jes.kubeledger")
    store: ledger.Ledger = kubeledger.LeaseLedger.from_runner(runner, settings)
    return store


class Service:
    """One jes process. ``run(stop)`` returns after a staged shutdown once ``stop`` is set."""

    def __init__(
        self,
        settings: jes_settings.Settings,
        *,
        runner: runner_base.Runner | None = None,
        store: ledger.Ledger | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        health_host: str = "0.0.0.0",  # probes come from the kubelet
        check_delay_s: float = 2.0,
        sweep_interval_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.http = auth.make_http_client(settings, transport=transport)
        self.client = keptn_client.KeptnClient.from_settings(self.http, settings)
        source = configsource.ConfigSource(self.client)
        self.runner = runner or choice.build_runner(settings)
        self.store = store or build_ledger(settings, self.runner)
        self.poller = Poller(self.client, settings, self._on_event, on_poll_error=self._poll_error)
        self.reporter = reporter.KeptnReporter(
            self.client,
            self.store,
            integration_id=lambda: self.poller.integration_id,
            check_delay_s=check_delay_s,
            on_error=lambda kind: self.metrics.report_errors.labels(kind).inc(),
            on_delivered=lambda kind, seconds: self.metrics.report_latency.labels(kind).observe(seconds),
        )
        self._slots = asyncio.Semaphore(settings.max_concurrent_events)
        self.handler = handler.EventHandler(
            configs=providers.ControlPlaneConfigs(source),
            files=providers.ControlPlaneFiles(source),
            runner=self.runner,
            reporter=self.reporter,
            store=self.store,
            executor=matcher.executor_from_settings(settings),
            job_settings=manifests.JobSettings.from_settings(settings),
            identity=events.Identity(source=settings.event_source, executor=settings.executor_id),
            max_event_bytes=settings.max_event_bytes,
            metrics=self.metrics,
            run_slot=lambda: self._slots,
        )
        self.health = HealthServer(
            health_app(ready=self.ready, metrics=self.metrics), host=health_host, port=settings.health_endpoint_port
        )
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._stop_polling = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._sweep_interval_s = sweep_interval_s
        self._accepting = True

    # -- state -----------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self._accepting and self.poller.ready

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def run_once(self) -> None:
        """Register, poll every subscription once, handle what was found to the end, stop."""
        await self.start(poll=False)
        try:
            if not self.settings.disable_registration:
                await self.poller.heartbeat_once()
            await self.poller.poll_once()
            while self._in_flight:
                await asyncio.wait(list(self._in_flight.values()))
        finally:
            await self.shutdown()

    async def start(self, *, poll: bool = True) -> None:
        logger.info(
            "jes starting: endpoint %s (%s), runner %s, location %s, topics %s",
            self.settings.keptn_api_endpoint,
            auth.describe(self.settings),
            self.settings.runner,
            self.settings.location or "(none)",
            ", ".join(self.settings.pubsub_topics) or "(from the control plane)",
        )
        await self.runner.start()
        await self.store.start()
        await self._resume_open_claims()
        if self.settings.health_endpoint_enabled:
            await self.health.start()
        if poll:
            self._poll_task = asyncio.create_task(self.poller.run(self._stop_polling), name="jes-poller")
            self._sweep_task = asyncio.create_task(self._sweep_forever(), name="jes-claim-sweep")

    async def _resume_open_claims(self) -> None:
        claims = await self.store.resumable()
        claims = [c for c in claims if c.event_id not in self._in_flight]
        if claims:
            logger.info("resuming %d event(s) taken before a restart or left by a replica that died", len(claims))
        for claim in claims:
            self._spawn(claim.event_id, self._resume(claim))

    async def _sweep_forever(self) -> None:
        """Pick up claims whose holder died (another replica) and expire old ones, periodically."""
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self._resume_open_claims()
            except errors.JesError as exc:
                logger.warning("sweeping open claims failed: %s", exc)

    async def shutdown(self) -> None:
        logger.info("stopping: no new events; %d in flight", len(self._in_flight))
        self._accepting = False
        self._stop_polling.set()
        if self._sweep_task is not None:
            self._sweep_task.cancel()
        if self._poll_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        await self._drain(self.settings.shutdown_grace_s)
        await self.health.stop()
        await self.store.close()  # before the runner: the lease ledger uses its client
        await self.runner.close()
        await self.http.aclose()
        logger.info("stopped")

    async def abandon(self) -> None:
        """Stop everything at once without a handover, as if the process had died (tests)."""
        self._accepting = False
        tasks = [t for t in (self._poll_task, self._sweep_task, *self._in_flight.values()) if t is not None]
        renewer = getattr(self.store, "_renewer", None)
        if renewer is not None:
            tasks.append(renewer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.health.stop()
        await self.runner.close()
        await self.http.aclose()

    async def _drain(self, grace_s: float) -> None:
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=grace_s)
        if pending:
            logger.warning(
                "%d event(s) still running after %.0fs; leaving them to the next start (their Jobs keep running)",
                len(pending),
                grace_s,
            )
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
        if info.id in self._in_flight:
            return
        self._spawn(info.id, self._handle(event))

    def _spawn(self, event_id: str, work: Any) -> None:
        task = asyncio.create_task(work, name=f"jes-event:{event_id}")
        self._in_flight[event_id] = task
        self.metrics.events_in_flight.set(len(self._in_flight))

        def done(finished: asyncio.Task[None]) -> None:
            self._in_flight.pop(event_id, None)
            self.metrics.events_in_flight.set(len(self._in_flight))

        task.add_done_callback(done)

    async def _handle(self, event: Mapping[str, Any]) -> None:
        for attempt, delay in enumerate((*HANDLER_RETRY_DELAYS_S, None)):
            try:
                await self.handler.handle(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("handling event %s failed (attempt %d)", event.get("id"), attempt + 1)
                if delay is None:
                    logger.error("giving up on event %s until the next start", event.get("id"))
                    return
                await asyncio.sleep(delay)

    async def _resume(self, claim: ledger.Claim) -> None:
        try:
            await self.handler.resume(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("resuming event %s failed; it stays open for the next start", claim.event_id)
            await self.store.release(claim)

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
