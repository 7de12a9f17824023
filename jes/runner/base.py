"""The runner contract: a rendered task in, a finished :class:`Outcome` out.

Two implementations: :mod:`jes.runner.kubernetes` (production: one batch/v1 Job per task, watched
to completion) and :mod:`jes.runner.local` (development and demos: a local process).

``run`` is idempotent per ``job_name``: calling it again for a task that already has a Job (or a
local process) adopts it instead of starting a second one; a finished one yields its outcome. That
is how jes finishes the work of events it had taken before a restart.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jes.plan import EventInfo, RenderedTask
from jes.runner.logs import LogText


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The task ran and failed: non-zero exit code, OOMKilled, init container failure."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """activeDeadlineSeconds (TASK_DEADLINE_SECONDS) was reached."""
    TIMED_OUT = "timed_out"
    """maxPollDuration passed; the Job (or process) was stopped."""
    CANNOT_START = "cannot_start"
    """The pod can never start: image pull error, missing Secret/key or service account,
    unschedulable past the grace period."""
    LOST = "lost"
    """The Job (or process) disappeared before its result was known."""
    ERROR = "error"
    """jes could not create the Job at all (permission, invalid spec, API error)."""


@dataclass(frozen=True)
class ContainerLog:
    """The retained output of one container (or the local process)."""

    container: str
    pod: str
    text: LogText
    exit_code: int | None = None
    reason: str = ""
    """Termination reason as Kubernetes reports it (``Completed``, ``Error``, ``OOMKilled``)."""
    message: str = ""
    init: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened to one task."""

    job_name: str
    status: Status
    reason: str
    """One line for people: 'exit code 1', 'ErrImagePull: ...', 'maxPollDuration of 300s exceeded'."""
    exit_code: int | None
    logs: tuple[ContainerLog, ...]
    started_at: datetime
    finished_at: datetime
    events: tuple[str, ...] = ()
    """Messages of the Job's ``Failed*`` Kubernetes events, as ``Reason: message``."""

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCEEDED

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class TaskSpec:
    """Everything a runner needs for one task of one event."""

    task: RenderedTask
    event: EventInfo
    job_name: str
    job: Mapping[str, Any]
    """The batch/v1 Job manifest (from :mod:`jes.manifests`); used by the kubernetes runner."""
    config_maps: tuple[Mapping[str, Any], ...] = ()
    """ConfigMaps carrying the task's ``files``; created before the Job (kubernetes runner)."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Path relative to /keptn → content; materialised by the local runner."""


Fence = Callable[[], Awaitable[None]]
"""Awaited right before a runner creates anything; raises (ClaimLost) when the work is no longer
this process's to do."""


async def no_fence() -> None:
    return None


LogSink = Callable[[str, bytes], None]
"""Called with (container name, chunk) as output arrives; used by ``jes run`` to stream logs."""


class Runner(Protocol):
    """Runs tasks; see the module docstring for the idempotency contract."""

    name: str
    absent_means_never_started: bool
    """Whether a task without a Job (or process state) certainly never ran. True for the local
    runner (its state directory is never cleaned behind its back); False for Kubernetes, where a
    finished Job may have been deleted by its TTL."""

    async def start(self) -> None:
        """Prepare shared machinery (watches, state directories)."""

    async def run(
        self,
        spec: TaskSpec,
        *,
        on_log: LogSink | None = None,
        on_running: Callable[[], None] | None = None,
        adopt_only: bool = False,
        fence: Fence = no_fence,
    ) -> Outcome:
        """Create (or adopt) the task's Job or process and wait until it ends.

        ``on_running`` is called once when the task's container starts running. Cancelling the
        call stops waiting but leaves the task running, so that it can be adopted later.
        With ``adopt_only`` nothing is created: a task without a Job (or process state) yields
        :attr:`Status.LOST` — used for tasks launched before a restart — and temporary errors are
        raised (the caller tries again later) rather than reported as an outcome. ``fence`` is
        awaited right before each attempt to create something.
        """
        ...

    async def close(self) -> None:
        """Stop shared machinery. Running tasks are left alone."""
