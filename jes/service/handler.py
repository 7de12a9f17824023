"""Handling one triggered event, from its config to its ``.finished`` report, exactly once.

Shared by ``jes serve`` (control-plane config and files, a ledger that survives restarts, the
Keptn reporter) and ``jes run`` (a config file, an in-memory ledger, events printed).

For a matching non-silent action: ``.started`` at once (before waiting for a free slot), a
``.status.changed`` per task (best effort), the tasks in order up to the first failure, then one
``.finished`` within the size budget (an errored one is also posted as an error log entry).

The handler is the only writer of the event's claim (:mod:`jes.ledger`), and writes it *before*
every step that has an effect outside jes (docs/exactly-once.md):

1. the claim is created with ``.started`` as ``sending`` — the first durable record, and the
   fence for the ``.started`` POST;
2. each task is recorded ``launching`` before its Job (or process) is created, and ``done`` with
   its outcome as soon as that is known, so a task never runs twice and a vanished Job is reported
   as such;
3. ``.finished`` is recorded ``sending`` (in the same write as the last task's outcome), POSTed,
   then recorded ``sent`` with the claim marked done.

Every POST is preceded by a conditional write of the claim no older than the ledger's ``fence_s``,
so a replica that lost the claim learns it (:class:`errors.ClaimLost`) before sending anything.
A claim read back after a restart knows which reports may have been sent (``sending``): only those
are looked up in the datastore, after its ingestion lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from jes import errors, ledger, models
from jes.ledger import Claim, Delivery, EventRef, Report, TaskRecord, TaskState
from jes.matcher import config as cfg
from jes.matcher import matching as matcher
from jes.models import (
    ContainerLog,
    EventInfo,
    LogText,
    Outcome,
    Plan,
    PlannedAction,
    RenderedTask,
    Status,
    TaskFiles,
    TaskSpec,
)
from jes.reporter import events
from jes.reporter.delivery import Arrival, Reporter
from jes.runner import base as runner_base
from jes.service.metrics import Metrics
from jes.util import logfmt

logger = logging.getLogger(__name__)

_VANISHED = "the Job vanished before jes recorded its outcome"


class ConfigNotFound(errors.JesError):
    """No job/config.yaml exists for the event: another integration may own it."""


class EventGone(errors.JesError):
    """The control plane no longer lists the triggered event (completed, aborted or timed out)."""


class ConfigProvider(Protocol):
    async def load(self, info: EventInfo) -> cfg.LoadedConfig:
        """The config for the event. Raises :class:`ConfigNotFound`, :class:`errors.ConfigError`
        (with where the file came from in its problems) or other :class:`errors.JesError`."""
        ...


class FileProvider(Protocol):
    async def fetch(self, info: EventInfo, task: RenderedTask, into: Path) -> dict[str, int]:
        """Write the task's ``files`` under ``into`` (path relative to /keptn), one at a time;
        their sizes by path."""
        ...


class TriggeredEvents(Protocol):
    async def fetch(self, ref: EventRef) -> dict[str, Any] | None:
        """The triggered event while the control plane still lists it as open, else None."""
        ...


@dataclass(frozen=True)
class Result:
    """What happened to one event (for logs, tests and ``jes run``'s exit code)."""

    event_id: str
    outcome: str
    """``no_match``, ``no_config``, ``silent``, ``succeeded``, ``errored``, ``resumed`` (only the
    bookkeeping was left), ``skipped`` (another holder, or done), ``gone`` (no longer open) or
    ``lost`` (another replica took it over)."""
    finished: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """What the config says about an event, before anything is done about it."""

    plan: Plan | None = None
    error: str = ""
    """The config cannot be used: reported as an errored .finished."""
    no_config: str = ""

    @property
    def reports(self) -> bool:
        """Whether .started/.finished will be sent."""
        return bool(self.error) or (self.plan is not None and any(not a.silent for a in self.plan.actions))


def _no_slot() -> contextlib.AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


class _InMemory:
    """Triggered events for ``jes run``: nothing is ever resumed, so nothing is looked up."""

    async def fetch(self, ref: EventRef) -> dict[str, Any] | None:
        return None


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
    triggered: TriggeredEvents = field(default_factory=_InMemory)
    fence_s: float | None = None
    """How long a write of the claim proves that this process holds it (None: always — one process)."""
    monotonic: Callable[[], float] = time.monotonic
    handing_over: bool = False
    """Set at shutdown: a claim left unfinished is released for any replica to take at once."""
    file_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    """How many tasks may hold spooled files at once (until their Job or process exists)."""

    # -- entry points ------------------------------------------------------------------------------

    async def handle(self, event: Mapping[str, Any]) -> Result:
        """Decide, take the event (if nobody else has) and handle it to the end."""
        info = matcher.event_info(event)
        with logfmt.bind(keptn_context=info.keptn_context, event_id=info.id, event_type=info.type):
            decision = await self._decide(info, event)
            if decision.plan is not None and not decision.plan.matched:
                logger.info("no action matches %s; nothing is sent", info.type)
                self._count_skip("no_match")
                return Result(info.id, "no_match")
            fresh = Claim(ref=EventRef.of(event), holder=self.store.holder, event=dict(event))
            if decision.reports:
                fresh.reports[Report.STARTED] = Delivery.SENDING
            if decision.no_config:
                fresh.mark_done()  # recorded so that replicas and restarts do not log it again
            claim = await self.store.claim(fresh)
            if claim is None:
                return Result(info.id, "skipped")
            if decision.no_config and claim is fresh:
                return await self._no_config(claim, info, decision.no_config)
            return await self._work(claim, info, decision)

    async def resume(self, claim: Claim) -> Result:
        """Finish a claim read back from the ledger (after a restart or a takeover)."""
        with logfmt.bind(keptn_context=claim.ref.keptn_context, event_id=claim.event_id, event_type=claim.ref.type):
            event = claim.event if claim.event is not None else await self.triggered.fetch(claim.ref)
            if event is None and claim.delivery(Report.FINISHED) is Delivery.SENDING:
                logger.info("event %s is closed: the .finished sent before the restart arrived", claim.event_id)
                await self._complete(claim)
                return Result(claim.event_id, "resumed")
            if event is None:
                return await self._gone(claim, "the control plane no longer lists it")
            claim.event = dict(event)
            info = matcher.event_info(event)
            return await self._work(claim, info, await self._decide(info, event))

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
        return Decision(plan=matcher.plan(loaded, event, self.executor))

    # -- working on a claim ------------------------------------------------------------------------

    async def _work(self, claim: Claim, info: EventInfo, decision: Decision) -> Result:
        try:
            try:
                result = await self._proceed(claim, info, decision)
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

    async def _proceed(self, claim: Claim, info: EventInfo, decision: Decision) -> Result:
        if claim.delivery(Report.FINISHED) is Delivery.SENT:
            return Result(info.id, "resumed")
        if claim.resumed and claim.delivery(Report.FINISHED) is Delivery.SENDING:
            claim.checked.add(Report.FINISHED)
            if await self._settle(claim, Report.FINISHED) is Arrival.ARRIVED:
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
        return await self._run_plan(claim, decision.plan)

    async def _complete(self, claim: Claim) -> None:
        if not claim.done:
            claim.mark_done()
            await self.store.save(claim)
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
        if self._must_wait_for_slot() and claim.delivery(Report.STARTED) is Delivery.SENT:
            await self.store.save(claim)  # otherwise the next task record carries ".started sent"
        async with self._free_slot():
            for action in plan.actions:
                if action.silent:
                    await self._run_silent(claim, plan, action)
                else:
                    return await self._run_reporting(claim, plan, action)
        return Result(info.id, "silent")

    def _must_wait_for_slot(self) -> bool:
        locked = getattr(self.run_slot(), "locked", None)
        return bool(locked()) if callable(locked) else False

    @contextlib.asynccontextmanager
    async def _free_slot(self) -> AsyncIterator[None]:
        """Hold one of the run slots; while waiting for it the event counts in jes_events_waiting."""
        waiting = self.metrics.events_waiting if self.metrics else None
        if waiting is not None:
            waiting.inc()
        holding = False
        try:
            async with self.run_slot():
                holding = True
                if waiting is not None:
                    waiting.dec()
                yield
        finally:
            if waiting is not None and not holding:
                waiting.dec()

    async def _run_silent(self, claim: Claim, plan: Plan, action: PlannedAction) -> None:
        with logfmt.bind(action=action.name):
            if action.error:
                logger.warning("silent action %r cannot run: %s", action.name, action.error.strip())
                return
            reports = await self._run_tasks(claim, plan, action, progress=None)
            failed = [r for r in reports if not r.outcome.succeeded]
            if failed:
                logger.warning(
                    "silent action %r: task %r failed: %s", action.name, failed[0].name, failed[0].outcome.reason
                )

    async def _run_reporting(self, claim: Claim, plan: Plan, action: PlannedAction) -> Result:
        info = plan.event
        with logfmt.bind(action=action.name):
            if action.error:
                message = (
                    action.error
                    if action.error.startswith("Forbidden")
                    else f"Error while creating job: {action.error}"
                )
                finished = self._finished(info, action, [], status="errored", result="fail", message=message)
                return await self._send_finished(claim, info, finished, errored=True)
            window_start = self.clock()
            progress: list[asyncio.Task[None]] = []
            try:
                reports = await self._run_tasks(claim, plan, action, progress=progress)
            finally:
                await asyncio.gather(*progress, return_exceptions=True)  # in order: before .finished
            window = (window_start, self.clock())
            failed = next((r for r in reports if not r.outcome.succeeded), None)
            if failed is None:
                message = events.success_message(reports)
                finished = self._finished(
                    info, action, reports, status="succeeded", result="pass", message=message, window=window
                )
            else:
                done = [r for r in reports if r is not failed]
                message = events.failure_message(done, failed)
                finished = self._finished(info, action, reports, status="errored", result="fail", message=message)
            result = await self._send_finished(claim, info, finished, errored=failed is not None)
            await self._forget_jobs(reports)
            return result

    def _finished(
        self,
        info: EventInfo,
        action: PlannedAction,
        reports: list[events.TaskReport],
        *,
        status: str,
        result: str,
        message: str,
        window: tuple[datetime, datetime] | None = None,
    ) -> dict[str, Any]:
        return events.finished(
            info,
            self.identity,
            status=status,
            result=result,
            message=message,
            max_bytes=self.max_event_bytes,
            jes_data=events.summary(self.identity, action.name, reports),
            test_window=window,
        )

    async def _run_tasks(
        self, claim: Claim, plan: Plan, action: PlannedAction, *, progress: list[asyncio.Task[None]] | None
    ) -> list[events.TaskReport]:
        """``progress`` collects the status.changed deliveries (None: a silent action sends none)."""
        reports: list[events.TaskReport] = []
        for task in action.tasks:
            with logfmt.bind(task=task.name):
                outcome = await self._run_task(claim, plan, task, len(action.tasks), progress=progress)
            reports.append(events.TaskReport(task.name, outcome))
            # The outcome that ends a reporting action is saved with its .finished (one write).
            ends_report = progress is not None and (task is action.tasks[-1] or not outcome.succeeded)
            if not ends_report:
                await self.store.save(claim)
            if not outcome.succeeded:
                break
        return reports

    async def _run_task(
        self,
        claim: Claim,
        plan: Plan,
        task: RenderedTask,
        count: int,
        *,
        progress: list[asyncio.Task[None]] | None,
    ) -> Outcome:
        info = plan.event
        job_name = models.job_name(info.id, task.action_index, task.task_index, executor=self.identity.executor)
        record = claim.task(task.action_index, task.task_index)
        if record is not None and record.state is TaskState.DONE:
            return await self._readopt(plan, task, job_name, record)
        if record is not None:  # launched before a restart: adopt it, never create it again
            adopted = await self.runner.run(self._spec(plan, task, job_name), on_log=self.on_log, adopt_only=True)
            if adopted.status is not Status.LOST:
                return self._record_outcome(claim, task, adopted)
            if not self.runner.absent_means_never_started:  # the Job may have existed and be gone
                return self._record_outcome(claim, task, _with_reason(adopted, f"{_VANISHED} ({adopted.reason})"))
        started_at = self.clock()
        async with self._spooling(task) as files:
            try:
                await self._fetch_files(info, task, files)
            except errors.Permanent as exc:
                outcome = _failed_before_start(job_name, f"could not fetch files: {exc}", started_at, self.clock())
                return self._record_outcome(claim, task, outcome)
            running = await self._launch(claim, plan, task, job_name, files, count, record, progress)
            if files:
                await _released_or_done(files, running)  # the file slot is free again after this
        try:
            return self._record_outcome(claim, task, await running)
        except asyncio.CancelledError:
            running.cancel()
            raise

    @contextlib.asynccontextmanager
    async def _spooling(self, task: RenderedTask) -> AsyncIterator[TaskFiles]:
        """A spool for the task's files, under one of the file slots: a bounded number of tasks hold
        files (on disk) at a time; the slot is free once the runner discarded the spool."""
        if not task.files:
            yield TaskFiles()
            return
        async with self.file_slots:
            files = TaskFiles(Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="jes-files-")))
            try:
                yield files
            except BaseException:
                files.discard()
                raise

    async def _fetch_files(self, info: EventInfo, task: RenderedTask, files: TaskFiles) -> None:
        if task.files and files.root is not None:
            files.sizes = await self.files.fetch(info, task, files.root)

    async def _launch(
        self,
        claim: Claim,
        plan: Plan,
        task: RenderedTask,
        job_name: str,
        files: TaskFiles,
        count: int,
        record: TaskRecord | None,
        progress: list[asyncio.Task[None]] | None,
    ) -> asyncio.Task[Outcome]:
        """Record the task ``launching`` and start it; the running task (its files are freed as soon
        as the runner created it)."""
        info = plan.event
        spec = self._spec(plan, task, job_name, files)
        if record is None:
            claim.set_task(task.action_index, task.task_index, TaskRecord(TaskState.LAUNCHING, job_name))
            await self.store.save(claim)  # also records an accepted .started as sent
            if progress is not None:
                changed = events.status_changed(
                    info, self.identity, task=task.name, index=task.task_index, count=count, image=task.image,
                    job=job_name,
                )  # fmt: skip
                # best effort and concurrent: a slow or refusing control plane must not delay the task
                progress.append(asyncio.create_task(self.reporter.best_effort(changed), name=f"jes-status:{job_name}"))
        return asyncio.create_task(self._run_with_metrics(spec, fence=lambda: self._fence(claim)))

    def _record_outcome(self, claim: Claim, task: RenderedTask, outcome: Outcome) -> Outcome:
        record = TaskRecord(
            state=TaskState.DONE,
            job=outcome.job_name,
            status=outcome.status.value,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            started_at=outcome.started_at.isoformat(),
            finished_at=outcome.finished_at.isoformat(),
        )
        claim.set_task(task.action_index, task.task_index, record)
        return outcome

    def _spec(
        self, plan: Plan, task: RenderedTask, job_name: str, files: TaskFiles | None = None
    ) -> TaskSpec:
        files = files if files is not None else TaskFiles()
        return TaskSpec(task=task, event=plan.event, job_name=job_name, config_hash=plan.config_hash, files=files)

    async def _readopt(self, plan: Plan, task: RenderedTask, job_name: str, record: TaskRecord) -> Outcome:
        """A task that finished before a restart: read its outcome again, never start it again."""
        outcome = await self.runner.run(self._spec(plan, task, job_name), on_log=self.on_log, adopt_only=True)
        if outcome.status.value != record.status:  # the Job is gone: the record is what is known
            return _outcome_from_record(job_name, record)
        return outcome

    async def _run_with_metrics(self, spec: TaskSpec, *, fence: runner_base.Fence) -> Outcome:
        jobs = self.metrics.jobs_in_flight if self.metrics else None
        if jobs:
            jobs.inc()
        try:
            outcome = await self.runner.run(spec, on_log=self.on_log, fence=fence)
        finally:
            if jobs:
                jobs.dec()
        if self.metrics:
            self.metrics.task_duration.labels(outcome.status.value).observe(outcome.duration_s)
        logger.info("task %r: %s (%s)", spec.task.name, outcome.status.value, outcome.reason)
        return outcome

    async def _forget_jobs(self, reports: list[events.TaskReport]) -> None:
        forget = getattr(self.runner, "forget", None)
        if forget is None:
            return
        for report in reports:
            with contextlib.suppress(Exception):
                result = forget(report.outcome.job_name)
                if asyncio.iscoroutine(result):
                    await result

    # -- reports ---------------------------------------------------------------------------------

    async def _send_started(self, claim: Claim, info: EventInfo, *, action: str) -> None:
        await self._deliver(claim, Report.STARTED, events.started(info, self.identity, action=action))

    async def _send_finished(
        self, claim: Claim, info: EventInfo, finished: dict[str, Any], *, errored: bool
    ) -> Result:
        await self._deliver(claim, Report.FINISHED, finished)
        if self.metrics:
            self.metrics.events_finished.labels(finished["data"]["result"]).inc()
        if errored and claim.delivery(Report.LOG) is not Delivery.SENT:
            await self.reporter.error_log(events.error_log_entry(finished, integration_id="", info=info))
            claim.reports[Report.LOG] = Delivery.SENT  # saved with the completion that follows at once
        return Result(info.id, "errored" if errored else "succeeded", finished)

    async def _deliver(self, claim: Claim, report: Report, event: dict[str, Any]) -> None:
        """Exactly once: ``sending`` is on record before the POST, ``sent`` after it."""
        state = claim.delivery(report)
        if state is Delivery.SENT:
            return
        if state is Delivery.SENDING and claim.resumed and report not in claim.checked:
            claim.checked.add(report)  # a POST before the restart may have arrived
            if await self._settle(claim, report) is Arrival.ARRIVED:
                claim.reports[report] = Delivery.SENT
                return
        if state is not Delivery.SENDING:
            claim.reports[report] = Delivery.SENDING
            await self.store.save(claim)  # the record before the POST, and its fence
        while await self.reporter.deliver(event, fence=lambda: self._fence(claim)) is not Arrival.ARRIVED:
            decided = await self._decide_unknown(claim, report)
            if decided is None:  # wait until the datastore can tell (a second .started would hang)
                decided = await self._settle(claim, report)
            if decided is Arrival.ARRIVED:
                break
        claim.reports[report] = Delivery.SENT  # saved with the next step's write

    async def _fence(self, claim: Claim) -> None:
        """Prove the claim is still ours right before a POST: a conditional write, unless the last
        one is recent enough that no replica can have taken the claim over since."""
        if self.fence_s is not None and self.monotonic() - claim.saved_at >= self.fence_s:
            await self.store.save(claim)

    async def _settle(self, claim: Claim, report: Report) -> Arrival:
        """Whether a report that may have been POSTed arrived; never UNKNOWN (see _decide_unknown)."""
        probe = events.probe_ref(claim.ref, self.identity, report.value)
        while True:
            arrival = await self.reporter.settle(probe)
            if arrival is not Arrival.UNKNOWN:
                return arrival
            decided = await self._decide_unknown(claim, report)
            if decided is not None:
                return decided

    async def _decide_unknown(self, claim: Claim, report: Report) -> Arrival | None:
        """The datastore cannot tell whether a report arrived; the lesser harm (docs/exactly-once.md):

        - the control plane no longer lists the event: a ``.finished`` counts as arrived (ours or an
          abort closed it); for a ``.started`` the event is gone (EventGone);
        - it still lists the event: a ``.finished`` is sent again (once a task is complete, Keptn
          ignores further .finished events; a lost one would hang the sequence forever); a
          ``.started`` waits for the datastore (None): sending a second one would hang the
          sequence, and if the first never arrived Keptn times the task out visibly.
        """
        open_event = await self.triggered.fetch(claim.ref)
        decision: str
        result: Arrival | None
        if open_event is None:
            if report is not Report.FINISHED:
                self._count_uncertain(report, "gone")
                raise EventGone("the control plane no longer lists it")
            decision, result = "closed", Arrival.ARRIVED
        elif report is Report.FINISHED:
            decision, result = "resent", Arrival.MISSING
        else:
            decision, result = "waited", None
        self._count_uncertain(report, decision)
        logger.warning("whether %s for %s arrived is unknown: %s", report.value, claim.event_id, decision)
        return result

    def _count_uncertain(self, report: Report, decision: str) -> None:
        if self.metrics:
            self.metrics.reports_uncertain.labels(report.value, decision).inc()

    def _count_skip(self, reason: str) -> None:
        if self.metrics:
            self.metrics.events_skipped.labels(reason).inc()


async def _released_or_done(files: TaskFiles, running: asyncio.Task[Outcome]) -> None:
    """Wait until the runner freed the files (it created the task), or the task ended."""
    released = asyncio.ensure_future(files.released.wait())
    try:
        await asyncio.wait([released, running], return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        running.cancel()
        raise
    finally:
        released.cancel()
        files.discard()


def _with_reason(outcome: Outcome, reason: str) -> Outcome:
    return Outcome(
        job_name=outcome.job_name,
        status=outcome.status,
        reason=reason,
        exit_code=outcome.exit_code,
        logs=outcome.logs,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        events=outcome.events,
    )


def _failed_before_start(job_name: str, reason: str, started: datetime, finished: datetime) -> Outcome:
    return Outcome(
        job_name=job_name,
        status=Status.ERROR,
        reason=reason,
        exit_code=None,
        logs=(),
        started_at=started,
        finished_at=finished,
    )


def _outcome_from_record(job_name: str, record: TaskRecord) -> Outcome:
    """A task finished before a restart whose logs are gone: rebuild its outcome from the claim."""
    note = ContainerLog(container=job_name, pod="-", text=LogText.of("(logs no longer available)\n"))
    return Outcome(
        job_name=job_name,
        status=Status(record.status),
        reason=record.reason,
        exit_code=record.exit_code,
        logs=(note,),
        started_at=datetime.fromisoformat(record.started_at),
        finished_at=datetime.fromisoformat(record.finished_at),
    )
