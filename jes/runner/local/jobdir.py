"""A local task's state directory, ``<state_dir>/local-runner/<job name>/``, and its phases.

The directory holds ``output.log`` (stdout and stderr merged, as a container log), ``files/``,
the shim's records (``lock``, ``shim.json``, ``child.json``, ``shim.log``) and, once the task
ended, ``status.json``. The names and formats are :mod:`jes.runner.local.shim`'s, which writes
them; jes reads them here. Which phase a task is in follows from what exists:

- no directory: the task was never started (:attr:`Phase.ABSENT`);
- ``status.json``: it ended (:attr:`Phase.FINISHED`);
- the ``lock`` held: its shim is alive and supervising it (:attr:`Phase.ACTIVE`) — a ``flock`` is
  released when its holder dies, whatever became of pids;
- ``shim.json`` without a live shim nor a status: the shim died (:attr:`Phase.LOST`); jes then
  kills what is left of the task, if it can tell its processes apart, and records it as lost;
- none of these: jes died while preparing the task, nothing was started (:attr:`Phase.UNSTARTED`).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import fcntl
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jes import errors
from jes.runner.local import shim
from jes.util import fsutil

log = logging.getLogger(__name__)

#: How much of the end of ``shim.log`` is searched for its last line.
_SHIM_LOG_TAIL_BYTES = 2048
#: How often a stopping task is checked for having ended.
_STOP_POLL_S = 0.02
#: How much longer than the kill grace a task may take to stop before jes gives up on it.
_STOP_SLACK_S = 10.0


class Phase(enum.Enum):
    ABSENT = "absent"
    UNSTARTED = "unstarted"
    """jes died while preparing the task: nothing was started."""
    ACTIVE = "active"
    FINISHED = "finished"
    LOST = "lost"


@dataclass(frozen=True)
class JobDir:
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

    def phase(self) -> Phase:
        if not self.path.is_dir():
            return Phase.ABSENT
        if self.file(shim.STATUS).exists():
            return Phase.FINISHED
        if self.shim_alive():
            return Phase.ACTIVE
        if self.file(shim.STATUS).exists():  # written just before the shim ended
            return Phase.FINISHED
        if self.file(shim.SHIM).exists():
            return Phase.LOST
        return Phase.UNSTARTED


def status_if_ended(job: JobDir) -> dict[str, Any] | None:
    """The task's recorded status once it ended (a dead shim is recorded as lost); else None."""
    status = job.record(shim.STATUS)
    if status is not None or job.shim_alive():
        return status
    if not job.path.exists():
        reason = "the task's state was removed (forget) while jes waited for it"
        return {"kind": shim.LOST, "reason": reason, "finished_at": time.time()}
    return job.record(shim.STATUS) or record_lost(job)


def record_lost(job: JobDir) -> dict[str, Any]:
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


async def stop(job: JobDir, kill_grace_s: float) -> None:
    """Ask a live shim to stop its task (SIGTERM) and wait until it has ended."""
    deadline = time.monotonic() + kill_grace_s + _STOP_SLACK_S
    signalled = False
    while job.shim_alive():
        if time.monotonic() > deadline:
            raise errors.RunnerError(f"the local task {job.name} did not stop; its state is kept")
        info = job.record(shim.SHIM)
        if info is not None and not signalled:
            signalled = _signal_process(info, signal.SIGTERM)
        await asyncio.sleep(_STOP_POLL_S)


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
    """Signal the process ``info`` records, unless its pid now names another process."""
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
            file.seek(max(0, file.seek(0, os.SEEK_END) - _SHIM_LOG_TAIL_BYTES))
            lines = file.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
