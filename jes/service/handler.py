"""Handling one triggered event, from its config to its ``.finished`` report, exactly once.

Shared by ``jes serve`` (control-plane config and files, a ledger that survives restarts, the
Keptn reporter) and ``jes run`` (a config file, an in-memory ledger, events printed).

For a matching non-silent action: ``.started`` at once (before waiting for a free slot, or for a
slot of the action's ``concurrency`` queue — :mod:`jes.service.queues` — with "queued, position N"
progress), a ``.status.changed`` as each task starts and ends (best effort), the tasks in order up
to the first failure of an ``onError: fail`` task (a failed ``onError: warning`` task lets the next
ones run and makes the result ``succeeded/warning``), then one ``.finished`` within the size budget
(an errored one is also posted as an error log entry).

The handler is the only writer of the event's claim (:mod:`jes.ledger`), and writes it *before*
every step that has an effect outside jes (docs/exactly-once.md):

1. the claim is created with ``.started`` as ``sending`` — the first durable record, and the
   fence for the ``.started`` POST (:mod:`jes.service.reports` delivers the reports);
2. each task is recorded ``launching`` before its Job (or process) is created, and ``done`` with
   its outcome as soon as that is known (:mod:`jes.service.tasks`);
3. ``.finished`` is recorded ``sending`` (in the same write as the last task's outcome), POSTed,
   then recorded ``sent`` with the claim marked done.

What the handler needs from outside (config, files, the open triggered events) and what it answers
are in :mod:`jes.service.ports`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jes import errors, ledger
from jes.ledger import Claim, Delivery, EventRef, Report
from jes.matcher import matching as matcher
from jes.models import (
    EventInfo,
    Plan,
    PlannedAction,
    Status,
)
from jes.reporter import actionreport, events
from jes.reporter.delivery import Arrival, Reporter
from jes.runner import base as runner_base
from jes.service.cancelling import RunningEvents
from jes.service.metrics import Metrics
from jes.service.ports import (
    ConfigNotFound,
    ConfigProvider,
    Decision,
    EventGone,
    FileProvider,
    NoTriggeredEvents,
    Result,
    TriggeredEvents,
)
from jes.service.queues import QUEUE_POLL_S, Queues, Release, run_slot
from jes.service.reports import ClaimReports
from jes.service.tasks import ProxyAccess, TaskRunner
from jes.util import logfmt, shared

logger = logging.getLogger(__name__)


#: A block that holds nothing: the queue of an event none of whose actions has a ``concurrency``,
#: and the run slot of a handler without a limit (one for all: it keeps nothing).
_NOTHING_HELD: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()


def _no_slot() -> contextlib.AbstractAsyncContextManager[None]:
    return _NOTHING_HELD


@dataclass
class EventHandler:
    configs: ConfigProvider
    files: FileProvider
    runner: runner_base.Runner
    reporter: Reporter
    store: ledger.Ledger
    executor: matcher.Executor
    identity: events.Identity
    max_event_bytes: int = 65536
    metrics: Metrics | None = None
    run_slot: Callable[[], contextlib.AbstractAsyncContextManager[None]] = _no_slot
    on_log: runner_base.LogSink | None = None
    clock: Callable[[], datetime] = events.utc_now
    triggered: TriggeredEvents = field(default_factory=NoTriggeredEvents)
    fence_s: float | None = None
    """How long a write of the claim proves that this process holds it (None: always — one process)."""
    monotonic: Callable[[], float] = time.monotonic
    handing_over: bool = False
    """Set at shutdown: a claim left unfinished is released for any replica to take at once."""
    file_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    """How many tasks may hold spooled files at once (until their Job or process exists)."""
    proxy_access: ProxyAccess | None = None
    """Mints a task's API-proxy token (None: tasks get no proxy access)."""
    queue_poll_s: float = QUEUE_POLL_S
    """How often an event waiting for a slot of its action's ``concurrency`` reads its queue."""
    running: RunningEvents = field(default_factory=RunningEvents)
    """Events whose tasks run now; :mod:`jes.service.cancelling` marks those aborted in Keptn."""

    def __post_init__(self) -> None:
        self.reports = ClaimReports(
            self.store, self.reporter, self.triggered, self.identity,
            fence_s=self.fence_s, monotonic=self.monotonic, metrics=self.metrics,
        )  # fmt: skip
        self.tasks = TaskRunner(
            self.runner, self.files, self.store, self.reporter, self.identity, self.reports.fence,
            metrics=self.metrics, on_log=self.on_log, clock=self.clock, file_slots=self.file_slots,
            proxy_access=self.proxy_access,
        )  # fmt: skip
        self.queues = Queues(self.store, poll_s=self.queue_poll_s, monotonic=self.monotonic)

    # -- entry points ------------------------------------------------------------------------------

    async def handle(self, event: Mapping[str, Any] | bytes) -> Result:
        """Decide, take the event (if nobody else has) and handle it to the end. ``event`` may be
        packed (:func:`~jes.util.shared.packed_json`, what the service keeps to try again). The
        parsed event is not kept while the tasks run: what the rest needs is in the plan."""
        parsed: Mapping[str, Any] = shared.unpacked_json(event) if isinstance(event, bytes) else event
        del event
        info = matcher.event_info(parsed)
        with logfmt.bind(keptn_context=info.keptn_context, event_id=info.id, event_type=info.type):
            taken = await self._take(parsed, info)
            del parsed
            return taken if isinstance(taken, Result) else await self._work(*taken)

    async def _take(self, event: Mapping[str, Any], info: EventInfo) -> tuple[Claim, EventInfo, Decision] | Result:
        """The claim taken (and what to do), or the result when there is nothing (more) to do."""
        decision = await self._decide(info, event)
        if decision.plan is not None and not decision.plan.matched:
            logger.info("no action matches %s; nothing is sent", info.type)
            self._count_skip("no_match")
            return Result(info.id, "no_match")
        fresh = Claim(ref=EventRef.of(event), holder=self.store.holder)
        if decision.reports:
            fresh.reports[Report.STARTED] = Delivery.SENDING
        if decision.no_config:
            fresh.mark_done()  # recorded so that replicas and restarts do not log it again
        claim = await self.store.claim(fresh)
        if claim is None:
            return Result(info.id, "skipped")
        if decision.no_config and claim is fresh:
            return await self._no_config(claim, info, decision.no_config)
        return claim, info, decision

    async def resume(self, claim: Claim) -> Result:
        """Finish a claim read back from the ledger (after a restart or a takeover)."""
        with logfmt.bind(keptn_context=claim.ref.keptn_context, event_id=claim.event_id, event_type=claim.ref.type):
            decided = await self._decide_resumed(claim)
            return decided if isinstance(decided, Result) else await self._work(claim, *decided)

    async def _decide_resumed(self, claim: Claim) -> tuple[EventInfo, Decision] | Result:
        if claim.delivery(Report.FINISHED) is Delivery.SENT:  # (a resume tried again: only the bookkeeping is left)
            await self._complete(claim)
            return Result(claim.event_id, "resumed")
        event = claim.event if claim.event is not None else await self.triggered.fetch(claim.ref)
        if event is None and claim.delivery(Report.FINISHED) is Delivery.SENDING:
            logger.info("event %s is closed: the .finished sent before the restart arrived", claim.event_id)
            await self._complete(claim)
            return Result(claim.event_id, "resumed")
        if event is None:
            return await self._gone(claim, "the control plane no longer lists it")
        info = matcher.event_info(event)
        return info, await self._decide(info, event)

    # -- deciding ----------------------------------------------------------------------------------

    async def _decide(self, info: EventInfo, event: Mapping[str, Any]) -> Decision:
        try:
            loaded = await self.configs.load(info)
        except ConfigNotFound as exc:
            return Decision(no_config=str(exc))
        except errors.ConfigError as exc:
            return Decision(error=f"job/config.yaml is invalid:\n{exc}")
        except errors.JesError as exc:  # the config source retried already
            return Decision(error=f"could not read job/config.yaml: {exc}")
        return Decision(plan=matcher.plan(loaded, event, self.executor, info))

    # -- working on a claim ------------------------------------------------------------------------

    async def _work(self, claim: Claim, info: EventInfo, decision: Decision) -> Result:
        try:
            try:
                ready = await self._ready(claim, info, decision)  # (its frame is gone while the tasks run)
                result = ready if isinstance(ready, Result) else await self._run_plan(claim, ready)
            except EventGone as exc:
                return await self._gone(claim, str(exc))
            await self._complete(claim)
            return result
        except errors.ClaimLost as exc:
            logger.warning("%s", exc)
            return Result(info.id, "lost")
        except BaseException:
            await self.store.release(claim, handover=self.handing_over)
            raise

    async def _ready(self, claim: Claim, info: EventInfo, decision: Decision) -> Result | Plan:
        """The plan to run, or the result when nothing is left to run (a report may be)."""
        if claim.delivery(Report.FINISHED) is Delivery.SENT:
            return Result(info.id, "resumed")
        if claim.resumed and claim.delivery(Report.FINISHED) is Delivery.SENDING:
            claim.checked |= {Report.FINISHED}
            if await self.reports.settle(claim, Report.FINISHED) is Arrival.ARRIVED:
                return Result(info.id, "resumed")  # accepted before a restart; only the bookkeeping was left
        started = claim.delivery(Report.STARTED) is not None
        if decision.no_config and not started:
            return await self._no_config(claim, info, decision.no_config)
        if decision.no_config:
            decision = Decision(error=f"job/config.yaml is gone after .started was sent: {decision.no_config}")
        if not decision.reports and started:
            # a config that changed since .started was recorded: Keptn still needs a .finished
            decision = Decision(error="job/config.yaml changed after .started was sent: no action reports any more")
        if decision.error or decision.plan is None:
            return await self._report_error(claim, info, decision.error or "no plan")
        if self.metrics:
            self.metrics.events_matched.inc()
        return decision.plan

    async def _complete(self, claim: Claim) -> None:
        if not claim.done:
            claim.mark_done()
            try:
                await self.store.save(claim)
            except BaseException:
                claim.done = False  # not on record: a retry with this claim writes it again
                raise
        await self.store.release(claim)

    async def _gone(self, claim: Claim, why: str) -> Result:
        logger.warning("event %s is no longer open (%s); nothing more is sent for it", claim.event_id, why)
        self._count_skip("gone")
        await self._complete(claim)
        return Result(claim.event_id, "gone")

    async def _no_config(self, claim: Claim, info: EventInfo, why: str) -> Result:
        message = f"could not retrieve config for {self.identity.source}: error retrieving job config: {why}"
        logger.warning("%s; no events are sent (another integration may own this event)", message)
        self._count_skip("no_config")
        await self.reporter.error_log(
            events.error_log_entry({"data": {"message": message}}, integration_id="", info=info)
        )
        return Result(info.id, "no_config")

    async def _report_error(self, claim: Claim, info: EventInfo, message: str) -> Result:
        logger.error("%s", message)
        await self._send_started(claim, info, action="")
        finished = events.finished(
            info,
            self.identity,
            status="errored",
            result="fail",
            message=message,
            max_bytes=self.max_event_bytes,
            jes_data={"executor": self.identity.executor, "action": "", "tasks": []},
        )
        return await self._send_finished(claim, info, finished, errored=True)

    # -- running ---------------------------------------------------------------------------------

    async def _run_plan(self, claim: Claim, plan: Plan) -> Result:
        info = plan.event
        deciding = next((a for a in plan.actions if not a.silent), None)
        if deciding is not None:
            await self._send_started(claim, info, action=deciding.name)
        queued = [a for a in plan.actions if a.concurrency is not None and not a.error]
        if (queued or self._must_wait_for_slot()) and claim.delivery(Report.STARTED) is Delivery.SENT:
            await self.store.save(claim)  # otherwise the next task record carries ".started sent"
        queue = self._queued(claim, plan, queued, reports=deciding is not None) if queued else _NOTHING_HELD
        with self.running.watching(claim.ref):
            async with queue, self._free_slot() as release:  # (no queue: nothing kept while the event runs)
                for action in plan.actions:
                    if self.running.aborted(claim.event_id):
                        return await self._cancelled(claim, [])
                    if action.silent:
                        await self._run_silent(claim, plan, action)
                    else:
                        return await self._run_reporting(claim, plan, action, release)
            if self.running.aborted(claim.event_id):
                return await self._cancelled(claim, [])
        return Result(info.id, "silent")

    @contextlib.asynccontextmanager
    async def _queued(
        self, claim: Claim, plan: Plan, actions: list[PlannedAction], *, reports: bool
    ) -> AsyncIterator[None]:
        """Hold a slot of each action's ``concurrency`` queue, in the plan's order (so no two events
        wait for each other); while waiting, "queued, position N" progress when the event reports."""
        waiting = self.metrics.events_waiting if self.metrics else None
        async with contextlib.AsyncExitStack() as stack:
            if waiting is not None:
                waiting.inc()
            try:
                for action in actions:
                    assert action.concurrency is not None
                    on_position = functools.partial(self._send_queued, plan.event, action) if reports else None
                    slot = self.queues.slot(action.concurrency, claim.event_id, on_position=on_position)
                    with logfmt.bind(action=action.name):
                        await stack.enter_async_context(slot)
            finally:
                if waiting is not None:
                    waiting.dec()
            yield

    async def _send_queued(self, info: EventInfo, action: PlannedAction, position: int) -> None:
        assert action.concurrency is not None
        queued = events.queued(info, self.identity, action=action.name, position=position, queue=action.concurrency)
        await self.reporter.best_effort(queued)

    def _must_wait_for_slot(self) -> bool:
        return bool(locked()) if callable(locked := getattr(self.run_slot(), "locked", None)) else False

    def _free_slot(self) -> contextlib.AbstractAsyncContextManager[Release]:
        return run_slot(self.run_slot(), self.metrics.events_waiting if self.metrics else None)

    async def _run_silent(self, claim: Claim, plan: Plan, action: PlannedAction) -> None:
        with logfmt.bind(action=action.name):
            if action.error:
                logger.warning("silent action %r cannot run: %s", action.name, action.error.strip())
                return
            reports = await self._run_tasks(claim, plan, action, progress=None)
            for report in reports:
                if not report.outcome.succeeded:
                    logger.warning(
                        "silent action %r: task %r failed: %s%s", action.name, report.name, report.outcome.reason,
                        " (onError: warning)" if report.warned else "",
                    )  # fmt: skip

    async def _run_reporting(self, claim: Claim, plan: Plan, action: PlannedAction, release_slot: Release) -> Result:
        info = plan.event
        with logfmt.bind(action=action.name):
            if action.error:
                message = (
                    action.error
                    if action.error.startswith("Forbidden")
                    else f"Error while creating job: {action.error}"
                )
                finished = actionreport.finished_of(
                    info, self.identity, action.name, [], "errored", "fail", message, max_bytes=self.max_event_bytes
                )
                return await self._send_finished(claim, info, finished, errored=True)
            window_start = self.clock()
            progress: list[asyncio.Task[None]] = []
            try:
                reports = await self._run_tasks(claim, plan, action, progress=progress)
                await release_slot()  # its tasks are over: what is left is reporting
                if self.running.aborted(claim.event_id):
                    return await self._cancelled(claim, reports)
                self.running.unwatch(claim.event_id)  # its .finished closes the event: no abort from here on
                finished, errored = actionreport.action_finished(
                    info, self.identity, action.name, len(action.tasks), reports,
                    max_bytes=self.max_event_bytes, window=(window_start, self.clock()),
                )  # fmt: skip
                in_order = functools.partial(asyncio.gather, *progress, return_exceptions=True)  # progress first
                result = await self._send_finished(claim, info, finished, errored=errored, before_post=in_order)
            finally:
                await asyncio.gather(*progress, return_exceptions=True)
            await self.tasks.forget_jobs(reports)
            return result

    async def _run_tasks(
        self, claim: Claim, plan: Plan, action: PlannedAction, *, progress: list[asyncio.Task[None]] | None
    ) -> list[events.TaskReport]:
        """``progress`` collects the status.changed deliveries (None: a silent action sends none)."""
        reports: list[events.TaskReport] = []
        for task in action.tasks:
            if self.running.aborted(claim.event_id):
                break  # its sequence was aborted: no further task starts
            with logfmt.bind(task=task.name):
                outcome = await self.tasks.run(
                    claim, plan, task, len(action.tasks), progress=progress, abort=self.running.signal(claim.event_id)
                )
            report = events.TaskReport(task.name, outcome, task.on_error)
            reports.append(report)
            stops = not outcome.succeeded and not report.warned  # onError: warning goes on
            # The outcome that ends a reporting action is saved with its .finished (one write).
            ends_report = progress is not None and (task is action.tasks[-1] or stops)
            if not ends_report:
                await self.store.save(claim)
            if stops:
                break
        return reports

    async def _cancelled(self, claim: Claim, reports: list[events.TaskReport]) -> Result:
        """The sequence was aborted in Keptn: its running task was stopped, no further task started.
        Nothing is sent — the shipyard-controller deleted the ``.triggered`` event and finished the
        sequence itself (status ``aborted``); a ``.finished`` now would be stored and ignored. The
        claim is recorded done and cancelled, so no restart or replica runs or reports it again."""
        stopped = [r.name for r in reports if r.outcome.status is Status.CANCELLED]
        logger.warning(
            "event %s: its sequence was aborted in Keptn; %s, no further task started, nothing sent",
            claim.event_id, f"task {stopped[0]!r} stopped" if stopped else "its work stopped",
        )  # fmt: skip
        self._count_skip("cancelled")
        claim.cancelled = True
        await self.tasks.forget_jobs(reports)
        return Result(claim.event_id, "cancelled")

    # -- reports ---------------------------------------------------------------------------------

    async def _send_started(self, claim: Claim, info: EventInfo, *, action: str) -> None:
        await self.reports.deliver(claim, Report.STARTED, events.started(info, self.identity, action=action))

    async def _send_finished(
        self,
        claim: Claim,
        info: EventInfo,
        finished: dict[str, Any],
        *,
        errored: bool,
        before_post: Callable[[], Awaitable[object]] | None = None,
    ) -> Result:
        await self.reports.deliver(claim, Report.FINISHED, finished, before_post=before_post)
        if self.metrics:
            self.metrics.events_finished.labels(finished["data"]["result"]).inc()
        if errored and claim.delivery(Report.LOG) is not Delivery.SENT:
            await self.reporter.error_log(events.error_log_entry(finished, integration_id="", info=info))
            claim.reports[Report.LOG] = Delivery.SENT  # saved with the completion that follows at once
        return Result(info.id, "errored" if errored else "succeeded", finished)

    def _count_skip(self, reason: str) -> None:
        if self.metrics:
            self.metrics.events_skipped.labels(reason).inc()
