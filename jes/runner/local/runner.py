"""The local runner: each task is a process on this machine (development and demos).

It keeps the outcome contract of :mod:`jes.runner.base`; how a rendered task becomes a process:

- **image**: not pulled; the task's log starts with one line saying so and what runs instead.
- **command**: ``cmd`` + ``args`` with container semantics: ``cmd`` replaces the image's
  entrypoint; without ``cmd`` the ``args`` alone are the command (there is no entrypoint to put
  in front); with neither the task errors. ``$(VAR)`` references are expanded from the task's
  environment as the kubelet does (:func:`expand`). The argv is executed directly, never through a
  shell, and the program is looked up in the task's ``PATH``.
- **environment**: ``PATH``, ``HOME`` and ``LANG`` of jes (nothing else of jes's environment, so
  never its API token), ``JES_FILES_DIR``, then the task's variables built as the kubelet builds
  them: every ``EnvSecret`` contributes one variable per file ``<secrets dir>/<secret>/<key>``
  (content verbatim: ``printf`` rather than ``echo`` when writing one), then the literal entries in
  order, each value with ``$(VAR)`` expanded against the variables defined before it; for a name
  defined twice the later one wins. ``$(VAR)`` in cmd and args sees only the task's variables.
- **files**: materialised in a fresh directory per task (``JES_FILES_DIR``), which stands in for
  the ``/keptn`` volume: a leading ``/keptn`` in cmd, args and workingDir is replaced by that
  directory, after ``$(VAR)`` expansion. Only whole leading paths are mapped (``-f /keptn/a.py``
  works, ``--file=/keptn/a.py`` does not), and environment values are not rewritten: a task that
  must also run locally can read ``JES_FILES_DIR``.
- **workingDir**: as given; a ``/keptn`` one is created inside the files directory, a relative one
  is taken from the files directory, an empty one means the files directory. Other directories
  must exist.
- **limits**: the task's ``maxPollDuration`` (Status.TIMED_OUT) and the Job's
  ``activeDeadlineSeconds`` (Status.DEADLINE_EXCEEDED) stop the task's whole process group:
  SIGTERM, then SIGKILL after ``kill_grace_s``. When the task's main process ends, what is left
  of its group is killed, as a container's processes end with it (processes that start a session
  of their own escape this, as they would escape any supervisor without cgroups).

Crash safety: every task is supervised by :mod:`jes.runner.local.shim`, started in a session of its own
so that it outlives jes. Its state is a directory ``<state_dir>/local-runner/<job name>/``:
``output.log`` (stdout and stderr merged, as a container log), ``files/``, the shim's records and,
once the task ended, ``status.json``. ``run`` for a job name with such a directory adopts the
running task or returns the recorded outcome; a directory whose shim died without a status gives
Status.LOST. The directory stays until :meth:`LocalRunner.forget`; the full output is on disk until
then, while jes itself only keeps the head and the tail (:class:`jes.runner.logs.BoundedBuffer`).
One jes process uses a state directory at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

import jes
from jes import errors, settings
from jes.models import ContainerLog, EnvSecret, EnvValue, LogText, Outcome, RenderedTask, Status, TaskFiles, TaskSpec
from jes.runner import base, logs
from jes.runner.local import shim
from jes.util import fsutil

log = logging.getLogger(__name__)

POD = "local"
KEPTN_DIR = "/keptn"
RUNS_DIR = "local-runner"
BASE_ENV = ("PATH", "HOME", "LANG")

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_SECRET_KEY = re.compile(r"^[-._A-Za-z0-9]+$")
_READ_BYTES = 64 * 1024
_READ_BURST_BYTES = 8 * 1024 * 1024
_POLL_MIN_S = 0.01
_POLL_MAX_S = 0.25
_SHIM_START_TIMEOUT_S = 60.0
_NOTE_COMMAND_CHARS = 300


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Expand ``$(VAR)`` in ``text`` the way the kubelet expands container commands and env.

    ``$$`` is an escaped ``$`` (so ``$$(VAR)`` gives a literal ``$(VAR)``); a reference to an
    unknown variable, an unclosed ``$(`` and any other ``$`` stay as they are.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(" and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(variables.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append(char + following)
            i += 2
    return "".join(out)


class _Refused(errors.RunnerError):
    """The task cannot be started; ``status`` says how the outcome reports it."""

    def __init__(self, status: Status, message: str) -> None:
        self.status = status
        super().__init__(message)


def _cannot_start(message: str) -> _Refused:
    return _Refused(Status.CANNOT_START, message)


class _Phase(enum.Enum):
    ABSENT = "absent"
    UNSTARTED = "unstarted"
    """jes died while preparing the task: nothing was started."""
    ACTIVE = "active"
    FINISHED = "finished"
    LOST = "lost"


@dataclass(frozen=True)
class _JobDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def files(self) -> Path:
        return self.path / shim.FILES

    def file(self, name: str) -> Path:
        return self.path / name

    def record(self, name: str) -> dict[str, Any] | None:
        try:
            return fsutil.read_json(self.file(name))
        except (OSError, ValueError) as exc:
            raise errors.StateError(f"cannot read {self.file(name)}: {exc}") from exc

    def shim_alive(self) -> bool:
        """Whether a shim holds the job's lock (the lock is released when its holder dies)."""
        try:
            fd = os.open(self.file(shim.LOCK), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also releases the lock if the probe got it
        return False

    def phase(self) -> _Phase:
        if not self.path.is_dir():
            return _Phase.ABSENT
        if self.file(shim.STATUS).exists():
            return _Phase.FINISHED
        if self.shim_alive():
            return _Phase.ACTIVE
        if self.file(shim.STATUS).exists():  # written just before the shim ended
            return _Phase.FINISHED
        if self.file(shim.SHIM).exists():
            return _Phase.LOST
        return _Phase.UNSTARTED


@dataclass(frozen=True)
class _Launch:
    """What the shim needs to start one task."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    files: dict[PurePosixPath, Path]
    """Where each file goes under the files folder → where it is spooled now."""
    limits: tuple[tuple[str, int], ...]
    note: str


class _Sink:
    """Where a task's output goes while jes follows it: the bounded buffer and the callbacks."""

    def __init__(
        self,
        buffer: logs.BoundedBuffer,
        container: str,
        on_log: base.LogSink | None,
        on_running: Callable[[], None] | None,
    ) -> None:
        self.buffer = buffer
        self.container = container
        self._on_log = on_log
        self._on_running = on_running
        self.running_reported = False

    def write(self, chunk: bytes) -> None:
        self.buffer.write(chunk)
        if self._on_log is not None:
            try:
                self._on_log(self.container, chunk)
            except Exception:
                log.exception("log sink failed for %s; the task's output is no longer streamed", self.container)
                self._on_log = None

    def running(self) -> None:
        if self.running_reported:
            return
        self.running_reported = True
        if self._on_running is not None:
            try:
                self._on_running()
            except Exception:
                log.exception("on_running callback failed for %s", self.container)


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
    ) -> None:
        self.state_dir = Path(state_dir)
        self.task_deadline_s = task_deadline_s
        """As the Jobs' ``activeDeadlineSeconds`` (TASK_DEADLINE_SECONDS; 0: none)."""
        self.secrets_dir = Path(secrets_dir) if secrets_dir is not None else None
        self.log_head_bytes = log_head_bytes
        self.log_tail_bytes = log_tail_bytes
        self.kill_grace_s = kill_grace_s
        self._runs = self.state_dir / RUNS_DIR
        self._locks = _KeyedLocks()
        self._starting: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: settings.Settings) -> LocalRunner:
        """The runner ``jes serve`` and ``jes run`` use: JES_STATE_DIR, JES_LOCAL_SECRETS_DIR and
        TASK_DEADLINE_SECONDS."""
        return cls(
            state_dir=settings.state_dir,
            secrets_dir=settings.local_secrets_dir,
            task_deadline_s=settings.task_deadline_seconds,
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
    ) -> Outcome:
        """Start the task (or adopt it, or return its recorded outcome) and wait until it ends.

        ``on_running`` is called once when the process has started (also when adopting one).
        Cancelling stops waiting; the process keeps running and can be adopted later. With
        ``adopt_only`` nothing is started: a job without state yields Status.LOST. ``fence`` is
        awaited right before a process is started.
        """
        started_at = _now()
        try:
            job = self._job(spec.job_name)
            await self._start_or_adopt(spec, job, adopt_only=adopt_only, fence=fence)
        except _Refused as exc:
            return _refused_outcome(spec.job_name, exc, started_at)
        finally:
            spec.files.discard()  # copied into the task's own folder (or not needed): the spool goes
        buffer = logs.BoundedBuffer(head_bytes=self.log_head_bytes, tail_bytes=self.log_tail_bytes)
        sink = _Sink(buffer, spec.job_name, on_log, on_running)
        status = await self._follow(job, sink)
        return _outcome(spec.job_name, status, buffer.result())

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
            await self._stop(job)
            trash = self._runs / f".trash-{job_name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(job.path, trash)
            except OSError as exc:
                raise errors.StateError(f"cannot remove {job.path}: {exc}") from exc
            await asyncio.to_thread(shutil.rmtree, trash, ignore_errors=True)

    # -- starting and adopting -----------------------------------------------------------------

    def _job(self, job_name: str) -> _JobDir:
        if not _JOB_NAME.match(job_name):
            raise _Refused(Status.ERROR, f"job name {job_name!r} cannot name a local state directory")
        return _JobDir(self._runs / job_name)

    async def _start_or_adopt(
        self, spec: TaskSpec, job: _JobDir, *, adopt_only: bool, fence: base.Fence = base.no_fence
    ) -> None:
        # Shielded: once jes decided to start a task it finishes starting it, even when the
        # caller is cancelled, so that a later run() finds a started task and not half a one.
        starting = self._start_or_adopt_locked(spec, job, adopt_only=adopt_only, fence=fence)
        task = asyncio.create_task(starting, name=f"local-start-{job.name}")
        self._starting.add(task)
        task.add_done_callback(self._started)
        await asyncio.shield(task)

    def _started(self, task: asyncio.Task[None]) -> None:
        self._starting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("starting %s failed: %s", task.get_name(), task.exception())

    async def _start_or_adopt_locked(
        self, spec: TaskSpec, job: _JobDir, *, adopt_only: bool, fence: base.Fence
    ) -> None:
        async with self._locks.hold(job.name):
            phase = job.phase()
            if adopt_only and phase in (_Phase.ABSENT, _Phase.UNSTARTED):
                raise _Refused(Status.LOST, f"the local runner has no process or outcome for {job.name}")
            if phase is _Phase.ACTIVE:
                log.info("local runner: adopting %s, which is still running", job.name)
                return
            if phase is _Phase.FINISHED:
                log.info("local runner: %s already finished; reporting its recorded outcome", job.name)
                return
            if phase is _Phase.LOST:
                self._record_lost(job)
                return
            if phase is _Phase.UNSTARTED:  # jes died while preparing it: start afresh
                try:
                    await asyncio.to_thread(shutil.rmtree, job.path)
                except OSError as exc:
                    raise errors.StateError(f"cannot clear the unstarted task in {job.path}: {exc}") from exc
            await fence()
            await asyncio.to_thread(self._launch, spec, job)

    def _launch(self, spec: TaskSpec, job: _JobDir) -> None:
        launch = self._prepare(spec, job)
        try:
            self._runs.mkdir(mode=0o700, parents=True, exist_ok=True)
            job.path.mkdir(mode=0o700)
            _materialise(job, launch)
        except OSError as exc:
            shutil.rmtree(job.path, ignore_errors=True)
            raise _Refused(Status.ERROR, f"cannot prepare the local task in {job.path}: {exc}") from exc
        try:
            self._spawn_shim(job, launch)
        except _Refused:
            if job.phase() is _Phase.UNSTARTED:
                shutil.rmtree(job.path, ignore_errors=True)
            raise

    def _prepare(self, spec: TaskSpec, job: _JobDir) -> _Launch:
        task = spec.task
        command = [*(task.cmd or ()), *(task.args or ())]
        if not command:
            raise _Refused(
                Status.ERROR,
                f"task {task.name!r} has neither cmd nor args: the local runner needs a cmd, "
                f"since there is no image entrypoint to run (image {task.image!r} is not pulled)",
            )
        files = _file_paths(spec.files)
        variables = self._task_variables(task)
        argv = tuple(_map_keptn(expand(part, variables), job.files) for part in command)
        env = {**_base_env(), "JES_FILES_DIR": str(job.files), **variables}
        _check_no_nul(argv, env)
        return _Launch(
            argv=argv,
            env=env,
            cwd=_working_dir(task.working_dir, job.files),
            files=files,
            limits=_limits(spec, self.task_deadline_s),
            note=_note(task, command),
        )

    def _task_variables(self, task: RenderedTask) -> dict[str, str]:
        """The task's variables as the kubelet builds them: secrets first, then literal entries."""
        variables: dict[str, str] = {}
        for entry in task.env:
            if isinstance(entry, EnvSecret):
                variables.update(self._secret(entry.secret))
        for entry in task.env:
            if isinstance(entry, EnvValue):
                variables[entry.name] = expand(entry.manifest_value, variables)
        return variables

    def _secret(self, name: str) -> dict[str, str]:
        if self.secrets_dir is None:
            raise _cannot_start(
                f'CreateContainerConfigError: secret "{name}" not found: the local runner reads '
                "secrets from files DIR/<secret>/<key>; set JES_LOCAL_SECRETS_DIR=DIR"
            )
        folder = self.secrets_dir / name
        if "/" in name or name.startswith(".") or not folder.is_dir():
            raise _cannot_start(f'CreateContainerConfigError: secret "{name}" not found (looked in {folder})')
        values: dict[str, str] = {}
        try:
            for path in sorted(folder.iterdir()):
                # Mounted Kubernetes secrets also hold ..data links and timestamped folders.
                if path.name.startswith("..") or path.is_dir():
                    continue
                if not _SECRET_KEY.match(path.name):
                    raise _cannot_start(
                        f'CreateContainerConfigError: secret "{name}" has an invalid key {path.name!r} '
                        f"(file {path}); keys consist of letters, digits, '-', '_' and '.'"
                    )
                values[path.name] = os.fsdecode(path.read_bytes())
        except OSError as exc:
            raise _cannot_start(f'CreateContainerConfigError: cannot read secret "{name}": {exc}') from exc
        return values

    def _spawn_shim(self, job: _JobDir, launch: _Launch) -> None:
        """Start the shim with the job's lock held, hand it the spec, wait until it is on its own."""
        payload = _spec_json(launch, self.kill_grace_s)
        try:
            lock_fd = os.open(job.file(shim.LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _Refused(Status.ERROR, f"cannot create the local task's lock: {exc}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(job.file(shim.SHIM_LOG), "ab") as shim_log:
                process = subprocess.Popen(
                    [sys.executable or "python3", "-m", "jes.runner.local.shim", str(job.path), str(lock_fd)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=shim_log,
                    env=_shim_env(),
                    cwd=job.path,
                    pass_fds=(lock_fd,),
                    start_new_session=True,
                )
        except OSError as exc:
            raise _Refused(Status.ERROR, f"cannot start the local runner's shim: {exc}") from exc
        finally:
            os.close(lock_fd)
        _hand_over(process, payload)
        try:
            code = process.wait(timeout=_SHIM_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -signal.SIGKILL
        if code != 0:
            raise _Refused(
                Status.ERROR,
                f"the local runner's shim did not start (exit code {code}); see {job.file(shim.SHIM_LOG)}",
            )

    # -- following -------------------------------------------------------------------------------

    async def _follow(self, job: _JobDir, sink: _Sink) -> dict[str, Any]:
        """Stream the task's output into ``sink`` until the task's status is known."""
        delay_s = _POLL_MIN_S
        try:
            output = open(job.file(shim.OUTPUT), "rb")
        except OSError as exc:
            raise errors.StateError(f"cannot read the output of {job.name}: {exc}") from exc
        with output:
            while True:
                got = _pump(output, sink)
                if not sink.running_reported and job.file(shim.CHILD).exists():
                    sink.running()
                status = self._status_if_ended(job)
                if status is not None:
                    while _pump(output, sink):
                        await asyncio.sleep(0)
                    return status
                if got:
                    delay_s = _POLL_MIN_S
                    await asyncio.sleep(0)
                else:
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, _POLL_MAX_S)

    def _status_if_ended(self, job: _JobDir) -> dict[str, Any] | None:
        status = job.record(shim.STATUS)
        if status is not None or job.shim_alive():
            return status
        if not job.path.exists():
            reason = "the task's state was removed (forget) while jes waited for it"
            return {"kind": shim.LOST, "reason": reason, "finished_at": time.time()}
        return job.record(shim.STATUS) or self._record_lost(job)

    def _record_lost(self, job: _JobDir) -> dict[str, Any]:
        """The shim died without a status: kill what is left of the task and record it as lost."""
        shim_info = job.record(shim.SHIM) or {}
        child = job.record(shim.CHILD)
        reason = f"the local task's supervisor (shim, pid {shim_info.get('pid', '?')}) ended without a status"
        if child is not None:
            reason += "; " + _kill_orphans(child)
        last = _last_line(job.file(shim.SHIM_LOG))
        if last:
            reason += f"; shim.log: {last}"
        started = child["started_at"] if child else time.time()
        status = {"kind": shim.LOST, "reason": reason, "started_at": started, "finished_at": time.time()}
        try:
            fsutil.write_json_atomic(job.file(shim.STATUS), status)
        except OSError as exc:
            raise errors.StateError(f"cannot record that {job.name} was lost: {exc}") from exc
        log.warning("local runner: %s was lost: %s", job.name, reason)
        return status

    async def _stop(self, job: _JobDir) -> None:
        """Ask a live shim to stop its task (SIGTERM) and wait until it has ended."""
        deadline = time.monotonic() + self.kill_grace_s + 10.0
        signalled = False
        while job.shim_alive():
            if time.monotonic() > deadline:
                raise errors.RunnerError(f"the local task {job.name} did not stop; its state is kept")
            info = job.record(shim.SHIM)
            if info is not None and not signalled:
                signalled = _signal_process(info, signal.SIGTERM)
            await asyncio.sleep(0.02)


# -- preparing a task ------------------------------------------------------------------------------


def _base_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in BASE_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


def _shim_env() -> dict[str, str]:
    """The shim's own environment: the base and where to import jes from, nothing else."""
    return {**_base_env(), "PYTHONPATH": str(Path(jes.__file__).resolve().parent.parent)}


def _map_keptn(value: str, files_dir: Path) -> str:
    if value == KEPTN_DIR or value.startswith(KEPTN_DIR + "/"):
        return str(files_dir) + value[len(KEPTN_DIR) :]
    return value


def _working_dir(working_dir: str, files_dir: Path) -> Path:
    if not working_dir:
        return files_dir
    mapped = _map_keptn(working_dir, files_dir)
    path = Path(os.path.normpath(mapped if os.path.isabs(mapped) else files_dir / mapped))
    if path.is_relative_to(files_dir) or path.is_dir():
        return path
    raise _cannot_start(
        f"StartError: working directory {working_dir!r} does not exist on this machine "
        "(the local runner creates only /keptn directories)"
    )


def _file_paths(files: TaskFiles) -> dict[PurePosixPath, Path]:
    paths: dict[PurePosixPath, Path] = {}
    for name in files.sizes:
        path = PurePosixPath(name.lstrip("/"))
        if name.startswith(KEPTN_DIR + "/"):
            path = PurePosixPath(name[len(KEPTN_DIR) + 1 :])
        if not path.parts or any(part in ("..", ".") for part in path.parts):
            raise _Refused(Status.ERROR, f"file {name!r} does not name a file under {KEPTN_DIR}")
        paths[path] = files.path(name)
    return paths


def _limits(spec: TaskSpec, deadline_s: int) -> tuple[tuple[str, int], ...]:
    limits = [("maxPollDuration", spec.task.max_poll_duration_s)]
    if deadline_s > 0:
        limits.append(("activeDeadlineSeconds", deadline_s))
    return tuple(limits)


def _note(task: RenderedTask, command: Iterable[str]) -> str:
    shown = shlex.join(command)
    if len(shown) > _NOTE_COMMAND_CHARS:
        shown = shown[: _NOTE_COMMAND_CHARS - 3] + "..."
    image = task.image or "(none)"
    return f"local runner: image {image} is not pulled; running `{shown}` on this machine\n"


def _check_no_nul(argv: Iterable[str], env: Mapping[str, str]) -> None:
    for value in (*argv, *env.keys(), *env.values()):
        if "\0" in value:
            raise _cannot_start("StartError: a command argument or environment variable contains a NUL byte")
    for name in env:
        if not name or "=" in name:
            raise _cannot_start(f"StartError: {name!r} cannot be an environment variable name")


def _materialise(job: _JobDir, launch: _Launch) -> None:
    job.files.mkdir(mode=0o700)
    for relative, spooled in launch.files.items():
        target = job.files.joinpath(*relative.parts)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(spooled, target)
    if launch.cwd.is_relative_to(job.files):
        launch.cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
    job.file(shim.OUTPUT).write_bytes(launch.note.encode())


def _spec_json(launch: _Launch, kill_grace_s: float) -> bytes:
    spec = {
        "argv": list(launch.argv),
        "env": launch.env,
        "cwd": str(launch.cwd),
        "limits": [{"name": name, "seconds": seconds} for name, seconds in launch.limits],
        "kill_grace_s": kill_grace_s,
    }
    return json.dumps(spec).encode()


def _hand_over(process: subprocess.Popen[bytes], payload: bytes) -> None:
    stdin: IO[bytes] | None = process.stdin
    if stdin is None:  # pragma: no cover - Popen was asked for a pipe
        return
    try:
        stdin.write(payload)
        stdin.close()
    except BrokenPipeError:
        pass  # the shim died: its exit code tells


# -- following and outcomes -------------------------------------------------------------------------


def _pump(output: IO[bytes], sink: _Sink) -> int:
    """Move what the task wrote since the last call into ``sink``; returns the byte count."""
    moved = 0
    while moved < _READ_BURST_BYTES:
        chunk = output.read(_READ_BYTES)
        if not chunk:
            break
        sink.write(chunk)
        moved += len(chunk)
    return moved


def _kill_orphans(child: Mapping[str, Any]) -> str:
    """Kill the process group of a lost shim's task, if it can be told apart from other processes."""
    pid = int(child["pid"])
    recorded = child.get("start_ticks")
    current = shim.process_start_ticks(pid)
    if recorded is None or not Path("/proc/self/stat").exists():
        return f"the task's process group {pid} may still be running (it cannot be identified here)"
    if current is not None and current != recorded:
        return "the task's processes are gone"  # the pid now names another process
    # The main process is ours, or gone: a process group id cannot be reused while in use.
    if shim.group_alive(pid):
        shim.kill_group(pid, signal.SIGKILL)
        return f"its remaining processes (group {pid}) were killed"
    return "the task's processes are gone"


def _signal_process(info: Mapping[str, Any], sig: signal.Signals) -> bool:
    pid = int(info["pid"])
    recorded = info.get("start_ticks")
    if recorded is not None and shim.process_start_ticks(pid) != recorded:
        return False
    try:
        os.kill(pid, sig)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 2048))
            lines = file.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _now() -> datetime:
    return datetime.now(UTC)


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC) if value is not None else _now()


def _refused_outcome(job_name: str, exc: _Refused, started_at: datetime) -> Outcome:
    return Outcome(
        job_name=job_name,
        status=exc.status,
        reason=str(exc),
        exit_code=None,
        logs=(),
        started_at=started_at,
        finished_at=_now(),
    )


def _outcome(job_name: str, status: Mapping[str, Any], text: LogText) -> Outcome:
    state, reason, exit_code, container_code = _interpret(status)
    container_reason = {Status.SUCCEEDED: "Completed", Status.CANNOT_START: "StartError"}
    container = ContainerLog(
        container=job_name,
        pod=POD,
        text=text,
        exit_code=container_code,
        reason=container_reason.get(state, "Error"),
        message="" if state in (Status.SUCCEEDED, Status.FAILED) else reason,
    )
    return Outcome(
        job_name=job_name,
        status=state,
        reason=reason,
        exit_code=exit_code,
        logs=(container,),
        started_at=_time(status.get("started_at")),
        finished_at=_time(status.get("finished_at")),
    )


def _interpret(status: Mapping[str, Any]) -> tuple[Status, str, int | None, int | None]:
    """(status, reason, outcome exit code, container exit code) of a recorded status."""
    kind = status.get("kind")
    code = _container_code(status.get("returncode"))
    if kind == shim.EXITED and code is not None:
        return (Status.SUCCEEDED if code == 0 else Status.FAILED), f"exit code {code}", code, code
    if kind == shim.SIGNALED and code is not None:
        return Status.FAILED, f"killed by {_signal_name(code - 128)} (exit code {code})", code, code
    if kind == shim.LIMIT:
        limit = status["limit"]
        if limit["name"] == "activeDeadlineSeconds":
            reason = f"activeDeadlineSeconds of {limit['seconds']}s exceeded (TASK_DEADLINE_SECONDS)"
            return Status.DEADLINE_EXCEEDED, reason + "; the task was stopped", None, code
        reason = f"maxPollDuration of {limit['seconds']}s exceeded; the task's processes were stopped"
        return Status.TIMED_OUT, reason, None, code
    if kind == shim.CANNOT_START:
        return Status.CANNOT_START, str(status.get("reason", "the task could not start")), None, None
    if kind == shim.STOPPED:
        return Status.LOST, "the task was stopped because jes forgot it", None, code
    if kind == shim.LOST:
        return Status.LOST, str(status.get("reason", "the task was lost")), None, None
    return Status.ERROR, f"unknown state of the local task: {status!r}", None, None


def _container_code(returncode: Any) -> int | None:
    """A process return code as a container reports it (a signal N is exit code 128 + N)."""
    if not isinstance(returncode, int):
        return None
    return 128 - returncode if returncode < 0 else returncode


def _signal_name(number: int) -> str:
    try:
        return f"signal {signal.Signals(number).name} ({number})"
    except ValueError:
        return f"signal {number}"
