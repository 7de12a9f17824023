"""The runner contract: a rendered task in, a finished :class:`Outcome` out.

Two implementations: :mod:`jes.runner.kubernetes.runner` (production: one batch/v1 Job per task, watched
to completion) and :mod:`jes.runner.local.runner` (development and demos: a local process).

``run`` is idempotent per ``job_name``: calling it again for a task that already has a Job (or a
local process) adopts it instead of starting a second one; a finished one yields its outcome. That
is how jes finishes the work of events it had taken before a restart.
"""

from __future__ import annotations

import asyncio
import enum
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from jes import errors
from jes.models import EventInfo, RenderedTask
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


class TaskFiles:
    """A task's ``files``, spooled to a folder while they were fetched — one file in memory at a
    time, never all of them — as ``root/<path relative to /keptn>``.

    The runner reads them while it creates the task (ConfigMaps, or the local files folder) and
    then calls :meth:`discard`: the folder goes at once, not when the task ends, and
    :attr:`released` tells whoever limits how many spools exist at a time.
    """

    def __init__(self, root: Path | None = None, sizes: Mapping[str, int] | None = None) -> None:
        self.root = root
        self.sizes: dict[str, int] = dict(sizes or {})
        """Relative path → size in bytes, in path order."""
        self.released = asyncio.Event()

    def __bool__(self) -> bool:
        return bool(self.sizes)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def path(self, relative: str) -> Path:
        if self.root is None:
            raise errors.RunnerError("the task's files were discarded already")
        return self.root / relative

    def read(self, relative: str, offset: int = 0, length: int = -1) -> bytes:
        with self.path(relative).open("rb") as file:
            file.seek(offset)
            return file.read(length)

    def discard(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.released.set()

    @classmethod
    def of(cls, root: Path, contents: Mapping[str, bytes]) -> TaskFiles:
        """Spool ``contents`` (tests, small files) into ``root``."""
        for relative, content in contents.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return cls(root, {k: len(v) for k, v in sorted(contents.items())})


@dataclass(frozen=True)
class TaskSpec:
    """Everything a runner needs for one task of one event."""

    task: RenderedTask
    event: EventInfo
    job_name: str
    job: Mapping[str, Any]
    """The batch/v1 Job manifest (from :mod:`jes.runner.kubernetes.manifests`); used by the kubernetes runner."""
    files: TaskFiles = field(default_factory=TaskFiles)
    """The task's files; the runner discards the spool once the task exists."""


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
