"""The local runner: each task is a process on this machine (development and demos).

It keeps the outcome contract of :mod:`jes.runner.base`. How a rendered task becomes a process —
image, command, environment, files, working directory and limits, with container semantics — is
:mod:`.prepare`'s part; starting it under its supervisor :mod:`.launch`'s; following its output
until it ends :mod:`.following`'s; reading how it ended :mod:`.outcome`'s.

Crash safety: every task is supervised by :mod:`jes.runner.local.shim`, started in a session of its own
so that it outlives jes. Its state is a directory ``<state_dir>/local-runner/<job name>/``
(:mod:`.jobdir`): ``output.log`` (stdout and stderr merged, as a container log), ``files/``, the
shim's records and, once the task ended, ``status.json``. ``run`` for a job name with such a
directory adopts the running task or returns the recorded outcome; a directory whose shim died
without a status gives Status.LOST. The directory stays until :meth:`LocalRunner.forget`; the full
output is on disk until then, while jes itself only keeps the head and the tail
(:class:`jes.runner.logs.BoundedBuffer`). One jes process uses a state directory at a time.
A task's ``persistentVolumeClaim`` volumes are directories ``<state_dir>/volumes/<claimName>``,
which outlive every task; its ``emptyDir`` volumes live in its job directory (:mod:`.prepare`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from jes import errors, settings
from jes.models import Outcome, Status, TaskSpec
from jes.runner import base, logs, outputrelay, outputs
from jes.runner.local import jobdir
from jes.runner.local.following import Sink, follow
from jes.runner.local.jobdir import JobDir, Phase
from jes.runner.local.launch import launch
from jes.runner.local.outcome import Refused, now, outcome, refused_outcome
from jes.runner.local.prepare import expand, prepare

log = logging.getLogger(__name__)

RUNS_DIR = "local-runner"
VOLUMES_DIR = "volumes"
"""``<state_dir>/volumes/<claimName>``: a persistentVolumeClaim's directory; in a job's directory
``volumes/<name>``: an emptyDir's."""
OUTPUT_FILE = "output.json"
"""A task's ``$KEPTN_OUTPUT_FILE``, in its state directory."""

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class _KeyedLocks:
    """One asyncio lock per job name, kept only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._entries.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._entries[key]


class LocalRunner:
    """Runs rendered tasks as local processes; see the module docstring."""

    name = "local"
    absent_means_never_started = True

    def __init__(
        self,
        *,
        state_dir: str | Path,
        secrets_dir: str | Path | None = None,
        log_head_bytes: int = 64 * 1024,
        log_tail_bytes: int = 64 * 1024,
        kill_grace_s: float = 2.0,
        task_deadline_s: int = 0,
        task_outputs: bool = False,
        max_output_bytes: int = 64 * 1024,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.task_deadline_s = task_deadline_s
        """As the Jobs' ``activeDeadlineSeconds`` (TASK_DEADLINE_SECONDS; 0: none)."""
        self.secrets_dir = Path(secrets_dir) if secrets_dir is not None else None
        self.log_head_bytes = log_head_bytes
        self.log_tail_bytes = log_tail_bytes
        self.kill_grace_s = kill_grace_s
        self.task_outputs = task_outputs
        """Tasks get ``$KEPTN_OUTPUT_FILE`` (``output.json`` in their state directory), read when they end."""
        self.max_output_bytes = max_output_bytes
        self._runs = self.state_dir / RUNS_DIR
        self._locks = _KeyedLocks()
        self._starting: set[asyncio.Task[bool]] = set()

    @classmethod
    def from_settings(cls, settings: settings.Settings) -> LocalRunner:
        """The runner ``jes serve`` and ``jes run`` use: JES_STATE_DIR, JES_LOCAL_SECRETS_DIR and
        TASK_DEADLINE_SECONDS."""
        return cls(
            state_dir=settings.state_dir,
            secrets_dir=settings.local_secrets_dir,
            task_deadline_s=settings.task_deadline_seconds,
            task_outputs=settings.task_outputs,
            max_output_bytes=settings.max_output_bytes,
        )

    async def start(self) -> None:
        """Create the state directory and clear what an interrupted :meth:`forget` left."""
        try:
            self._runs.mkdir(mode=0o700, parents=True, exist_ok=True)
            leftovers = [p for p in self._runs.iterdir() if p.name.startswith(".trash-")]
        except OSError as exc:
            raise errors.StateError(f"cannot use the local runner's state directory {self._runs}: {exc}") from exc
        for path in leftovers:
            await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)

    async def close(self) -> None:
        """Nothing to stop: running tasks are left alone, their shims keep supervising them."""

    async def run(
        self,
        spec: TaskSpec,
        *,
        on_log: base.LogSink | None = None,
        on_running: Callable[[], None] | None = None,
        adopt_only: bool = False,
        fence: base.Fence = base.no_fence,
        on_attempt: base.AttemptSink | None = None,
    ) -> Outcome:
        """Start the task (or adopt it, or return its recorded outcome) and wait until it ends.

        ``on_running`` is called once when the process has started (also when adopting one).
        Cancelling stops waiting; the process keeps running and can be adopted later. With
        ``adopt_only`` nothing is started: a job without state yields Status.LOST. ``fence`` is
        awaited right before a process is started. ``on_attempt`` hears of each retry of a task
        with ``retries`` (the shim runs them) that starts while jes follows it.
        """
        started_at = now()
        try:
            job = self._job(spec.job_name)
            adopted = await self._start_or_adopt(spec, job, adopt_only=adopt_only, fence=fence)
        except Refused as exc:
            return refused_outcome(spec.job_name, exc, started_at)
        finally:
            spec.files.discard()  # copied into the task's own folder (or not needed): the spool goes
        buffer = logs.BoundedBuffer(head_bytes=self.log_head_bytes, tail_bytes=self.log_tail_bytes)
        sink = Sink(buffer, spec.job_name, on_log, on_running, on_attempt if spec.task.retries > 0 else None)
        sink.attempts_seen = None if adopted else 0  # an adopted task's earlier attempts were reported
        status = await follow(job, sink)
        result = outcome(spec.job_name, status, buffer.result(), spec.task)
        if self.task_outputs and result.status in (Status.SUCCEEDED, Status.FAILED):
            result = await asyncio.to_thread(self._with_output, job, result)
        return result

    def _with_output(self, job: JobDir, result: Outcome) -> Outcome:
        """The outcome with the task's output file judged (it stays in the job's directory, so a
        restarted jes reads it again)."""
        path = job.file(OUTPUT_FILE)
        try:
            raw = outputrelay.read_output_file(str(path), self.max_output_bytes)
        except outputrelay.OutputFileError as exc:
            return outputs.judged(result, None, str(path), str(exc))
        return outputs.judged(result, raw, str(path))

    async def list_jobs(self) -> list[str]:
        """Job names that have state on disk (running, finished and not yet forgotten, lost)."""
        try:
            names = [p.name for p in self._runs.iterdir() if p.is_dir() and _JOB_NAME.match(p.name)]
        except FileNotFoundError:
            return []
        return sorted(names)

    async def forget(self, job_name: str) -> None:
        """Remove the job's state (output, files, records) once its outcome was reported.

        A task that is still running is stopped first, as deleting its Job would.
        """
        job = self._job(job_name)
        async with self._locks.hold(job_name):
            if not job.path.exists():
                return
            await jobdir.stop(job, self.kill_grace_s)
            trash = self._runs / f".trash-{job_name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(job.path, trash)
            except OSError as exc:
                raise errors.StateError(f"cannot remove {job.path}: {exc}") from exc
            await asyncio.to_thread(shutil.rmtree, trash, ignore_errors=True)

    async def cancel(self, spec: TaskSpec) -> str:
        """Stop the task — SIGTERM to its whole process group, SIGKILL after the grace period — and
        remove its state, as deleting its Job would. What was done."""
        await self.forget(spec.job_name)
        return "its process group was stopped"

    # -- starting and adopting -----------------------------------------------------------------

    def _job(self, job_name: str) -> JobDir:
        if not _JOB_NAME.match(job_name):
            raise Refused(Status.ERROR, f"job name {job_name!r} cannot name a local state directory")
        return JobDir(self._runs / job_name)

    async def _start_or_adopt(
        self, spec: TaskSpec, job: JobDir, *, adopt_only: bool, fence: base.Fence = base.no_fence
    ) -> bool:
        """Whether the task existed already (adopted, or finished: nothing was started)."""
        # Shielded: once jes decided to start a task it finishes starting it, even when the
        # caller is cancelled, so that a later run() finds a started task and not half a one.
        starting = self._start_or_adopt_locked(spec, job, adopt_only=adopt_only, fence=fence)
        task = asyncio.create_task(starting, name=f"local-start-{job.name}")
        self._starting.add(task)
        task.add_done_callback(self._started)
        return await asyncio.shield(task)

    def _started(self, task: asyncio.Task[bool]) -> None:
        self._starting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("starting %s failed: %s", task.get_name(), task.exception())

    async def _start_or_adopt_locked(
        self, spec: TaskSpec, job: JobDir, *, adopt_only: bool, fence: base.Fence
    ) -> bool:
        async with self._locks.hold(job.name):
            phase = job.phase()
            if adopt_only and phase in (Phase.ABSENT, Phase.UNSTARTED):
                raise Refused(Status.LOST, f"the local runner has no process or outcome for {job.name}")
            if phase is Phase.ACTIVE:
                log.info("local runner: adopting %s, which is still running", job.name)
                return True
            if phase is Phase.FINISHED:
                log.info("local runner: %s already finished; reporting its recorded outcome", job.name)
                return True
            if phase is Phase.LOST:
                jobdir.record_lost(job)
                return True
            if phase is Phase.UNSTARTED:  # jes died while preparing it: start afresh
                try:
                    await asyncio.to_thread(shutil.rmtree, job.path)
                except OSError as exc:
                    raise errors.StateError(f"cannot clear the unstarted task in {job.path}: {exc}") from exc
            await fence()
            await asyncio.to_thread(self._launch, spec, job)
            return False

    def _launch(self, spec: TaskSpec, job: JobDir) -> None:
        output_file = job.file(OUTPUT_FILE) if self.task_outputs else None
        prepared = prepare(
            spec, job.files, secrets_dir=self.secrets_dir, deadline_s=self.task_deadline_s,
            volume_dirs=self.volume_dirs(spec, job), output_file=output_file,
        )  # fmt: skip
        launch(job, prepared, kill_grace_s=self.kill_grace_s)

    def volume_dirs(self, spec: TaskSpec, job: JobDir) -> dict[str, Path]:
        """Each volume's directory by mountPath: an emptyDir's in the job's own directory (removed
        with it), a claim's ``<state_dir>/volumes/<claimName>`` (kept, shared by every task naming it)."""
        dirs = {}
        for volume in spec.task.volumes:
            if not _JOB_NAME.match(volume.claim_name or volume.name):  # validated names; never a path
                raise Refused(Status.ERROR, f"volume {volume.name!r} cannot name a local directory")
            if volume.claim_name:
                dirs[volume.mount_path] = self.state_dir / VOLUMES_DIR / volume.claim_name
            else:
                dirs[volume.mount_path] = job.path / VOLUMES_DIR / volume.name
        return dirs


__all__ = ["RUNS_DIR", "VOLUMES_DIR", "LocalRunner", "expand"]
