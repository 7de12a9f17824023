"""Running one task of a claimed event: exactly once, with its files (docs/exactly-once.md).

A task is recorded ``launching`` in the claim before its Job (or process) is created and ``done``
with its outcome as soon as that is known: a task recorded before a restart is adopted, never
created again, and a finished one is read again (or rebuilt from the record when its Job is gone).
Files are spooled to disk under one of a few file slots and freed as soon as the runner created the
task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from jes import errors, ledger, models
from jes.ledger import Claim, TaskRecord, TaskState
from jes.models import (
    ApiProxyAccess,
    ContainerLog,
    EventInfo,
    EventRef,
    LogText,
    Outcome,
    Plan,
    RenderedTask,
    Status,
    TaskFiles,
    TaskSpec,
)
from jes.reporter import events
from jes.reporter.delivery import Reporter
from jes.runner import base as runner_base
from jes.service.metrics import Metrics
from jes.service.ports import FileProvider
from jes.util import flag, gates

logger = logging.getLogger(__name__)

_VANISHED = "the Job vanished before jes recorded its outcome"


class ProxyAccess(Protocol):
    """A task's way to the API proxy: a token minted for its record, and its end."""

    def grant(self, ref: EventRef, action_index: int, task_index: int) -> tuple[ApiProxyAccess, str]:
        """The access to give the task and the digest its task record keeps."""
        ...

    def ended(self, job_name: str) -> None: ...


@dataclass
class TaskRunner:
    """Runs the tasks of claimed events on a runner, recording each in the claim."""

    runner: runner_base.Runner
    files: FileProvider
    store: ledger.Ledger
    reporter: Reporter
    identity: events.Identity
    fence: Callable[[Claim], Awaitable[None]]
    """Proves the claim is still this process's right before something is created."""
    metrics: Metrics | None = None
    on_log: runner_base.LogSink | None = None
    clock: Callable[[], datetime] = events.utc_now
    file_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    """How many tasks may hold spooled files at once (until their Job or process exists)."""
    proxy_access: ProxyAccess | None = None

    async def run(
        self,
        claim: Claim,
        plan: Plan,
        task: RenderedTask,
        count: int,
        *,
        progress: list[asyncio.Task[None]] | None,
        abort: flag.Flag | None = None,
    ) -> Outcome:
        """``abort`` set while the task runs (its sequence was aborted): the task is stopped. Once it
        is over its requests still waiting (its progress events, which its ``.finished`` waits for)
        are urgent (:mod:`jes.util.gates`). The runner runs in the caller's task, awaited here: one
        coroutine frame, no task of its own, is what the service keeps for as long as the task runs."""
        urgency = gates.begin()
        try:
            info = plan.event
            job_name = models.job_name(info.id, task.action_index, task.task_index, executor=self.identity.executor)
            record = claim.task(task.action_index, task.task_index)
            if record is not None and record.state is TaskState.DONE:
                return await self._readopt(plan, task, job_name, record)
            if record is not None:  # launched before a restart: adopt it, never create it again
                adopted = await self.runner.run(
                    self._spec(plan, task, job_name), on_log=self.on_log, adopt_only=True,
                    on_attempt=self._attempts_to(info, task, count, job_name, progress),
                )  # fmt: skip
                if adopted.status is not Status.LOST:
                    return self._ended(claim, plan, task, count, adopted, progress)
                if not self.runner.absent_means_never_started:  # the Job may have existed and be gone
                    vanished = _with_reason(adopted, f"{_VANISHED} ({adopted.reason})")
                    return self._ended(claim, plan, task, count, vanished, progress)
            launched = await self._launch(claim, plan, task, job_name, count, record, progress)
            if isinstance(launched, Outcome):
                return self._ended(claim, plan, task, count, launched, progress)
            if abort is not None and abort.is_set():  # aborted while it was launched: nothing is started
                return self._record_outcome(claim, task, self._not_started(launched))
            jobs = self.metrics.jobs_in_flight if self.metrics else None
            if jobs:
                jobs.inc()
            aborting = _Aborting(abort) if abort is not None else None
            try:
                outcome: Outcome | None = await self.runner.run(
                    launched, on_log=self.on_log, fence=functools.partial(self.fence, claim),
                    on_attempt=self._attempts_to(info, task, count, job_name, progress),
                )  # fmt: skip
            except asyncio.CancelledError:
                if aborting is None or not aborting.taken_back():
                    raise  # not (only) the abort: jes is stopping
                outcome = None
            finally:
                if aborting is not None:
                    aborting.close()
                launched.files.discard()  # (the runner did, once it created the task)
                if jobs:
                    jobs.dec()
                if self.proxy_access is not None:
                    self.proxy_access.ended(job_name)
            if outcome is None or (aborting is not None and aborting.taken_back()):  # (a runner that ended anyway)
                return self._record_outcome(claim, task, await self._stop(plan, task, job_name))
            self._observe(task, outcome)
            return self._ended(claim, plan, task, count, outcome, progress)
        finally:
            urgency.make_urgent()  # (its progress deliveries hold it in their context) ...
            gates.end()  # ... the event's own later steps (the next task, a retry) are not urgent

    async def _spool(self, task: RenderedTask) -> TaskFiles:
        """A spool for the task's files, holding one of the file slots until it is discarded (the
        runner does once it created the task): a bounded number of tasks hold files on disk."""
        if not task.files:
            return TaskFiles()
        await self.file_slots.acquire()
        try:
            root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="jes-files-"))
        except BaseException:
            self.file_slots.release()
            raise
        return TaskFiles(root, on_discard=self.file_slots.release)

    async def _fetch_files(self, info: EventInfo, task: RenderedTask, files: TaskFiles) -> None:
        if task.files and files.root is not None:
            files.sizes = await self.files.fetch(info, task, files.root)

    async def _launch(
        self,
        claim: Claim,
        plan: Plan,
        task: RenderedTask,
        job_name: str,
        count: int,
        record: TaskRecord | None,
        progress: list[asyncio.Task[None]] | None,
    ) -> TaskSpec | Outcome:
        """Fetch the task's files and record it ``launching``: what to give the runner, or the
        outcome of a task whose files cannot be fetched."""
        info = plan.event
        started_at = self.clock()
        files = await self._spool(task)
        try:
            await self._fetch_files(info, task, files)
            access, token_digest = (
                self.proxy_access.grant(claim.ref, task.action_index, task.task_index)
                if self.proxy_access
                else (None, "")
            )
            spec = self._spec(plan, task, job_name, files, access)
            if record is None or access is not None:  # (a relaunch gets a new token: its digest is saved)
                launching = TaskRecord(TaskState.LAUNCHING, job_name, token_digest=token_digest)
                claim.set_task(task.action_index, task.task_index, launching)
                await self.store.save(claim)  # also records an accepted .started as sent
        except errors.Permanent as exc:
            files.discard()
            return _failed_before_start(job_name, f"could not fetch files: {exc}", started_at, self.clock())
        except BaseException:
            files.discard()
            raise
        if record is None and progress is not None:
            changed = events.status_changed(
                info, self.identity, task=task.name, index=task.task_index, count=count, image=task.image, job=job_name
            )
            # best effort and concurrent: a slow or refusing control plane must not delay the task
            self._announce(progress, changed, job_name)
        return spec

    def _attempts_to(
        self, info: EventInfo, task: RenderedTask, count: int, job_name: str, progress: list[asyncio.Task[None]] | None
    ) -> runner_base.AttemptSink | None:
        """The runner's ``on_attempt`` for a reporting task with retries: each retry becomes a best
        effort ``.status.changed`` ("task 1/2 'tests' attempt 2/3 after exit code 2"), sent in order
        after the task's earlier progress events. None otherwise."""
        if progress is None or task.retries <= 0:
            return None

        def on_attempt(attempt: int, exit_code: int | None) -> None:
            changed = events.status_changed_attempt(
                info, self.identity, task=task.name, index=task.task_index, count=count, attempt=attempt,
                attempts=task.retries + 1, exit_code=exit_code, job=job_name,
            )  # fmt: skip
            self._announce(progress, changed, job_name)

        return on_attempt

    async def _stop(self, plan: Plan, task: RenderedTask, job_name: str) -> Outcome:
        """The task stopped, its sequence aborted while it ran: README "Cancellation". The runner
        was cancelled (it stops waiting only and leaves the task running), so it is stopped here."""
        started_at = self.clock()
        return self._cancelled(job_name, await self._cancel(self._spec(plan, task, job_name)), started_at)

    def _not_started(self, launched: TaskSpec) -> Outcome:
        launched.files.discard()
        if self.proxy_access is not None:
            self.proxy_access.ended(launched.job_name)
        return self._cancelled(launched.job_name, "the task was not started")

    def _cancelled(self, job_name: str, how: str, started_at: datetime | None = None) -> Outcome:
        if self.metrics:
            self.metrics.tasks_cancelled.inc()
        now = self.clock()
        reason = f"its sequence was aborted in Keptn; {how}"
        return Outcome(job_name, Status.CANCELLED, reason, None, (), started_at or now, now)

    async def _cancel(self, spec: TaskSpec) -> str:
        """Stop the task's Job (or process); what was done."""
        cancel = getattr(self.runner, "cancel", None)
        if cancel is None:
            return f"the {self.runner.name} runner cannot stop it"
        try:
            return str(await cancel(spec))
        except errors.JesError as exc:
            logger.warning("stopping the task of an aborted sequence failed: %s", exc)
            return f"stopping it failed: {exc}"

    def _ended(
        self,
        claim: Claim,
        plan: Plan,
        task: RenderedTask,
        count: int,
        outcome: Outcome,
        progress: list[asyncio.Task[None]] | None,
    ) -> Outcome:
        """Record the outcome of a task that ran (or was adopted running) and announce its end (best
        effort). A task read again after it was recorded done is not announced twice."""
        if progress is not None:
            ended = events.task_ended(
                plan.event, self.identity, task=task.name, index=task.task_index, count=count, outcome=outcome,
                on_error=task.on_error,
            )  # fmt: skip
            self._announce(progress, ended, outcome.job_name)
        return self._record_outcome(claim, task, outcome)

    def _announce(self, progress: list[asyncio.Task[None]], event: dict[str, Any], job_name: str) -> None:
        """Send a progress event after the ones before it (in order, never delaying the task)."""
        before = progress[-1] if progress else None

        async def send() -> None:
            if before is not None:
                await asyncio.wait([before])
            await self.reporter.best_effort(event)

        delivery = asyncio.create_task(send(), name=f"jes-status:{job_name}")
        progress.append(delivery)
        delivery.add_done_callback(functools.partial(_forget_done, progress))

    def _record_outcome(self, claim: Claim, task: RenderedTask, outcome: Outcome) -> Outcome:
        record = TaskRecord(
            state=TaskState.DONE,
            job=outcome.job_name,
            status=outcome.status.value,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            started_at=outcome.started_at.isoformat(),
            finished_at=outcome.finished_at.isoformat(),
            attempts=outcome.attempts,
        )
        claim.set_task(task.action_index, task.task_index, record)
        return outcome

    def _spec(
        self,
        plan: Plan,
        task: RenderedTask,
        job_name: str,
        files: TaskFiles | None = None,
        access: ApiProxyAccess | None = None,
    ) -> TaskSpec:
        files = files if files is not None else TaskFiles()
        return TaskSpec(
            task=task, event=plan.event, job_name=job_name, config_hash=plan.config_hash, files=files, api_proxy=access
        )

    async def _readopt(self, plan: Plan, task: RenderedTask, job_name: str, record: TaskRecord) -> Outcome:
        """A task that finished before a restart: read its outcome again, never start it again."""
        outcome = await self.runner.run(self._spec(plan, task, job_name), on_log=self.on_log, adopt_only=True)
        if outcome.status.value != record.status:  # the Job is gone: the record is what is known
            return _outcome_from_record(job_name, record)
        return outcome

    def _observe(self, task: RenderedTask, outcome: Outcome) -> None:
        if self.metrics:
            self.metrics.task_duration.labels(outcome.status.value).observe(outcome.duration_s)
        logger.info("task %r: %s (%s)", task.name, outcome.status.value, outcome.reason)

    async def forget_jobs(self, reports: list[events.TaskReport]) -> None:
        forget = getattr(self.runner, "forget", None)
        if forget is None:
            return
        for report in reports:
            with contextlib.suppress(Exception):
                result = forget(report.outcome.job_name)
                if asyncio.iscoroutine(result):
                    await result


def _forget_done(progress: list[asyncio.Task[None]], delivery: asyncio.Task[None]) -> None:
    """Forget a delivery that is over (its outcome retrieved, as the handler's gather would): each
    event in flight would otherwise keep its ``.status.changed`` task, done long ago, until it ends."""
    if not delivery.cancelled():
        delivery.exception()
    with contextlib.suppress(ValueError):
        progress.remove(delivery)


class _Aborting:
    """Cancels the task it was made in once ``abort`` is set, until :meth:`close`: the runner runs
    in the event's own task, and cancelling it makes the runner stop waiting (it leaves the Job
    alone; :meth:`TaskRunner._stop` stops it)."""

    __slots__ = ("_closed", "_fired", "_task", "_waiter")

    def __init__(self, abort: flag.Flag) -> None:
        self._task = asyncio.current_task()
        self._closed = False
        self._fired = False
        self._waiter = abort.future()
        self._waiter.add_done_callback(self._fire, context=flag.quiet())

    def _fire(self, waiter: asyncio.Future[Any]) -> None:
        if not self._closed and not waiter.cancelled() and self._task is not None:
            self._fired = True
            self._task.cancel()

    def close(self) -> None:
        """No cancelling from here on (the runner returned or was cancelled)."""
        self._closed = True
        self._waiter.cancel()

    def taken_back(self) -> bool:
        """Whether this cancelled the task — the cancellation is then taken back, once — and nobody
        else (jes stopping) cancelled it too."""
        if not self._fired or self._task is None:
            return False
        self._fired = False
        return self._task.uncancel() == 0


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
        attempts=outcome.attempts,
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
        attempts=record.attempts,
    )
