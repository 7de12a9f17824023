"""Handling one triggered event, from its config to its ``.finished`` report.

Shared by ``jes serve`` (control-plane config and files, a ledger that survives restarts, the
Keptn reporter) and ``jes run`` (a config file, an in-memory ledger, events printed).

For a matching non-silent action: ``.started`` at once (before waiting for a free slot), a
``.status.changed`` per task (best effort), the tasks in order up to the first failure, then one
``.finished`` within the size budget (an errored one is also posted as an error log entry). Every
step is recorded in the claim first, so a restarted executor finishes the work without repeating
any of it (see :mod:`jes.ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from jes import config as cfg
from jes import errors, events, ledger, logfmt, manifests, matcher
from jes.metrics import Metrics
from jes.plan import EventInfo, Plan, PlannedAction, RenderedTask
from jes.reporter import Reporter
from jes.runner import base as runner_base
from jes.runner.logs import LogText

logger = logging.getLogger(__name__)


class ConfigNotFound(errors.JesError):
    """No job/config.yaml exists for the event: another integration may own it."""


class ConfigProvider(Protocol):
    async def load(self, info: EventInfo) -> cfg.LoadedConfig:
        """The config for the event. Raises :class:`ConfigNotFound`, :class:`errors.ConfigError`
        (with where the file came from in its problems) or other :class:`errors.JesError`."""
        ...


class FileProvider(Protocol):
    async def fetch(self, info: EventInfo, task: RenderedTask) -> dict[str, bytes]:
        """The task's ``files``, keyed by path relative to /keptn."""
        ...


@dataclass(frozen=True)
class Result:
    """What happened to one event (for logs, tests and ``jes run``'s exit code)."""

    event_id: str
    outcome: str
    """``no_match``, ``no_config``, ``silent``, ``succeeded``, ``errored`` or ``skipped``."""
    finished: dict[str, Any] | None = None


def _no_slot() -> contextlib.AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


@dataclass
class EventHandler:
    configs: ConfigProvider
    files: FileProvider
    runner: runner_base.Runner
    reporter: Reporter
    store: ledger.Ledger
    executor: matcher.Executor
    job_settings: manifests.JobSettings
    identity: events.Identity
    max_event_bytes: int = 65536
    metrics: Metrics | None = None
    run_slot: Callable[[], contextlib.AbstractAsyncContextManager[None]] = _no_slot
    on_log: runner_base.LogSink | None = None
    clock: Callable[[], datetime] = events.utc_now

    async def handle(self, event: Mapping[str, Any]) -> Result:
        """Take the event (if nobody else has) and handle it to the end."""
        claim = await self.store.claim(event)
        if claim is None:
            return Result(str(event.get("id", "")), "skipped")
        return await self.resume(claim)

    async def resume(self, claim: ledger.Claim) -> Result:
        """Handle (or finish handling) a claimed event. Cancelling leaves the claim open."""
        info = matcher.event_info(claim.event)
        with logfmt.bind(keptn_context=info.keptn_context, event_id=info.id, event_type=info.type):
            try:
                result = await self._handle(claim, info)
            except asyncio.CancelledError:
                await self.store.release(claim)
                raise
            await self.store.complete(claim)
            return result

    async def _handle(self, claim: ledger.Claim, info: EventInfo) -> Result:
        if await self.reporter.delivered_before(claim, "finished", events.probe(info, self.identity, "finished")):
            return Result(info.id, "resumed")  # finished before a restart; only the bookkeeping was left
        try:
            loaded = await self.configs.load(info)
        except ConfigNotFound as exc:
            return await self._no_config(claim, info, exc)
        except errors.ConfigError as exc:
            return await self._report_error(claim, info, f"job/config.yaml is invalid:\n{exc}")
        except errors.JesError as exc:
            return await self._report_error(claim, info, f"could not read job/config.yaml: {exc}")
        plan = matcher.plan(loaded, claim.event, self.executor)
        if not plan.matched:
            logger.info("no action matches %s; nothing is sent", info.type)
            self._count_skip("no_match")
            return Result(info.id, "no_match")
        if self.metrics:
            self.metrics.events_matched.inc()
        return await self._run_plan(claim, plan)

    # -- outcomes without tasks ------------------------------------------------------------------

    async def _no_config(self, claim: ledger.Claim, info: EventInfo, exc: ConfigNotFound) -> Result:
        message = f"could not retrieve config for {self.identity.source}: error retrieving job config: {exc}"
        logger.warning("%s; no events are sent (another integration may own this event)", message)
        self._count_skip("no_config")
        if claim.report_state("log") != ledger.SENT:
            await self.reporter.error_log(
                events.error_log_entry({"data": {"message": message}}, integration_id="", info=info)
            )
            claim.reports["log"] = ledger.SENT
            await self.store.save(claim)
        return Result(info.id, "no_config")

    async def _report_error(self, claim: ledger.Claim, info: EventInfo, message: str) -> Result:
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

    async def _run_plan(self, claim: ledger.Claim, plan: Plan) -> Result:
        info = plan.event
        deciding = next((a for a in plan.actions if not a.silent), None)
        if deciding is not None:
            await self._send_started(claim, info, action=deciding.name)
        async with self._free_slot():
            for action in plan.actions:
                if action.silent:
                    await self._run_silent(claim, plan, action)
                else:
                    return await self._run_reporting(claim, plan, action)
        return Result(info.id, "silent")

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

    async def _run_silent(self, claim: ledger.Claim, plan: Plan, action: PlannedAction) -> None:
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

    async def _run_reporting(self, claim: ledger.Claim, plan: Plan, action: PlannedAction) -> Result:
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
        self, claim: ledger.Claim, plan: Plan, action: PlannedAction, *, progress: list[asyncio.Task[None]] | None
    ) -> list[events.TaskReport]:
        """``progress`` collects the status.changed deliveries (None: a silent action sends none)."""
        reports: list[events.TaskReport] = []
        for task in action.tasks:
            # The last task of a reporting action is recorded by the completion that follows at
            # once; a restart in between adopts its Job again by name.
            last = progress is not None and task is action.tasks[-1]
            with logfmt.bind(task=task.name):
                outcome = await self._run_task(claim, plan, task, len(action.tasks), progress=progress, save=not last)
            reports.append(events.TaskReport(task.name, outcome))
            if not outcome.succeeded:
                break
        return reports

    async def _run_task(
        self,
        claim: ledger.Claim,
        plan: Plan,
        task: RenderedTask,
        count: int,
        *,
        progress: list[asyncio.Task[None]] | None,
        save: bool = True,
    ) -> runner_base.Outcome:
        info = plan.event
        record = claim.task(task.action_index, task.task_index)
        job_name = manifests.job_name(info.id, task.action_index, task.task_index, executor=self.job_settings.executor)
        if record.get("state") == ledger.DONE:
            return await self._readopt(plan, task, job_name, record)
        started_at = self.clock()
        try:
            files = await self.files.fetch(info, task) if task.files else {}
        except errors.JesError as exc:
            return _failed_before_start(job_name, f"could not fetch files: {exc}", started_at, self.clock())
        spec = self._spec(plan, task, job_name, files)
        if progress is not None and claim.report_state(f"status/{job_name}") is None:
            claim.reports[f"status/{job_name}"] = ledger.SENT
            changed = events.status_changed(
                info, self.identity, task=task.name, index=task.task_index, count=count, image=task.image, job=job_name
            )
            # best effort and concurrent: a slow or refusing control plane must not delay the task
            progress.append(asyncio.create_task(self.reporter.best_effort(changed), name=f"jes-status:{job_name}"))
        outcome = await self._run_with_metrics(spec)
        record.update(
            {
                "state": ledger.DONE,
                "status": outcome.status.value,
                "reason": outcome.reason,
                "exit_code": outcome.exit_code,
                "started_at": outcome.started_at.isoformat(),
                "finished_at": outcome.finished_at.isoformat(),
            }
        )
        if save:
            await self.store.save(claim)
        return outcome

    def _spec(self, plan: Plan, task: RenderedTask, job_name: str, files: dict[str, bytes]) -> runner_base.TaskSpec:
        job = manifests.build_job(
            task, plan.event, config_hash=plan.config_hash, settings=self.job_settings, files=files
        )
        return runner_base.TaskSpec(
            task=task,
            event=plan.event,
            job_name=job_name,
            job=job,
            config_maps=tuple(manifests.build_config_maps(job, files)),
            files=files,
        )

    async def _readopt(
        self, plan: Plan, task: RenderedTask, job_name: str, record: Mapping[str, Any]
    ) -> runner_base.Outcome:
        """A task that finished before a restart: read its outcome again, never start it again."""
        outcome = await self.runner.run(self._spec(plan, task, job_name, {}), on_log=self.on_log, adopt_only=True)
        if outcome.status is runner_base.Status.LOST:
            return _outcome_from_record(job_name, record)
        return outcome

    async def _run_with_metrics(self, spec: runner_base.TaskSpec) -> runner_base.Outcome:
        jobs = self.metrics.jobs_in_flight if self.metrics else None
        if jobs:
            jobs.inc()
        try:
            outcome = await self.runner.run(spec, on_log=self.on_log)
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

    async def _send_started(self, claim: ledger.Claim, info: EventInfo, *, action: str) -> None:
        if claim.report_state("started") == ledger.SENT:
            return
        # not saved: a resumed claim looks unsent reports up in the datastore before sending them
        await self.reporter.deliver(claim, "started", events.started(info, self.identity, action=action), persist=False)

    async def _send_finished(
        self, claim: ledger.Claim, info: EventInfo, finished: dict[str, Any], *, errored: bool
    ) -> Result:
        # not saved here: completing the claim right after records it in the same write
        await self.reporter.deliver(claim, "finished", finished, persist=False)
        if self.metrics:
            self.metrics.events_finished.labels(finished["data"]["result"]).inc()
        if errored and claim.report_state("log") != ledger.SENT:
            await self.reporter.error_log(events.error_log_entry(finished, integration_id="", info=info))
            claim.reports["log"] = ledger.SENT
        return Result(info.id, "errored" if errored else "succeeded", finished)

    def _count_skip(self, reason: str) -> None:
        if self.metrics:
            self.metrics.events_skipped.labels(reason).inc()


def _failed_before_start(job_name: str, reason: str, started: datetime, finished: datetime) -> runner_base.Outcome:
    return runner_base.Outcome(
        job_name=job_name,
        status=runner_base.Status.ERROR,
        reason=reason,
        exit_code=None,
        logs=(),
        started_at=started,
        finished_at=finished,
    )


def _outcome_from_record(job_name: str, record: Mapping[str, Any]) -> runner_base.Outcome:
    """A task finished before a restart whose logs are gone: rebuild its outcome from the claim."""
    started = datetime.fromisoformat(record["started_at"])
    finished = datetime.fromisoformat(record["finished_at"])
    note = runner_base.ContainerLog(container=job_name, pod="-", text=LogText.of("(logs no longer available)\n"))
    return runner_base.Outcome(
        job_name=job_name,
        status=runner_base.Status(record["status"]),
        reason=record.get("reason", ""),
        exit_code=record.get("exit_code"),
        logs=(note,),
        started_at=started,
        finished_at=finished,
    )
