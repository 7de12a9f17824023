"""Starting a prepared local task under its shim.

The job directory is created and filled (the task's files, the first line of its output), then
:mod:`jes.runner.local.shim` is started in a session of its own, so that it outlives jes, with the
job's ``lock`` taken by jes and its descriptor handed over. The task's spec — argv, env, cwd,
limits and the kill grace — goes to the shim's stdin as JSON; the shim forks and its first process
exits once the task is on its own, so jes waits only for that. A directory left behind by a failed
start is removed, unless a shim got as far as recording itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import jes
from jes.models import Status
from jes.runner.local import shim
from jes.runner.local.jobdir import JobDir, Phase
from jes.runner.local.outcome import Refused
from jes.runner.local.prepare import Launch, base_env

_SHIM_START_TIMEOUT_S = 60.0


def launch(job: JobDir, prepared: Launch, *, kill_grace_s: float) -> None:
    """Create the job's directory from ``prepared`` and start the task under its shim."""
    try:
        job.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        job.path.mkdir(mode=0o700)
        _materialise(job, prepared)
    except OSError as exc:
        shutil.rmtree(job.path, ignore_errors=True)
        raise Refused(Status.ERROR, f"cannot prepare the local task in {job.path}: {exc}") from exc
    try:
        _spawn_shim(job, prepared, kill_grace_s)
    except Refused:
        if job.phase() is Phase.UNSTARTED:
            shutil.rmtree(job.path, ignore_errors=True)
        raise


def _materialise(job: JobDir, prepared: Launch) -> None:
    job.files.mkdir(mode=0o700)
    for relative, spooled in prepared.files.items():
        target = job.files.joinpath(*relative.parts)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(spooled, target)
    for folder in prepared.volume_dirs:  # an emptyDir's is new; a claim's is kept from earlier tasks
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(prepared.cwd.is_relative_to(folder) for folder in (job.files, *prepared.volume_dirs)):
        prepared.cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
    job.file(shim.OUTPUT).write_bytes(prepared.note.encode())


def _spawn_shim(job: JobDir, prepared: Launch, kill_grace_s: float) -> None:
    """Start the shim with the job's lock held, hand it the spec, wait until it is on its own."""
    payload = _spec_json(prepared, kill_grace_s)
    try:
        lock_fd = os.open(job.file(shim.LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise Refused(Status.ERROR, f"cannot create the local task's lock: {exc}") from exc
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
        raise Refused(Status.ERROR, f"cannot start the local runner's shim: {exc}") from exc
    finally:
        os.close(lock_fd)
    _hand_over(process, payload)
    code = _wait_for_start(process)
    if code != 0:
        raise Refused(
            Status.ERROR,
            f"the local runner's shim did not start (exit code {code}); see {job.file(shim.SHIM_LOG)}",
        )


def _wait_for_start(process: subprocess.Popen[bytes]) -> int:
    """The exit code of the shim's first process (it exits once the task is on its own)."""
    try:
        return process.wait(timeout=_SHIM_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -signal.SIGKILL


def _shim_env() -> dict[str, str]:
    """The shim's own environment: the base and where to import jes from, nothing else."""
    return {**base_env(), "PYTHONPATH": str(Path(jes.__file__).resolve().parent.parent)}


def _spec_json(prepared: Launch, kill_grace_s: float) -> bytes:
    """The spec :func:`jes.runner.local.shim.main` reads from its stdin."""
    spec = {
        "argv": list(prepared.argv),
        "env": prepared.env,
        "cwd": str(prepared.cwd),
        "limits": [{"name": name, "seconds": seconds} for name, seconds in prepared.limits],
        "kill_grace_s": kill_grace_s,
    }
    if prepared.retries > 0:
        spec["retries"] = prepared.retries
        spec["retry_on_exit_codes"] = list(prepared.retry_on_exit_codes)
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
