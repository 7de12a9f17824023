"""The supervisor of one local task: ``python -m jes.runner.local.shim JOB_DIR LOCK_FD``.

:mod:`jes.runner.local.launch` starts this module for every task, in a new session, so that the task
outlives jes (a restarted jes adopts it). The shim

1. reads the task's spec as JSON from stdin (argv, env, cwd, limits); an incomplete spec means
   jes died while starting it: the shim then exits without a trace and jes starts afresh;
2. forks and lets the first process exit, so the shim is nobody's child and jes is told that
   the start worked;
3. records itself in ``shim.json``, starts the task in a process group of its own with stdout and
   stderr appended to ``output.log``, and records the task in ``child.json``;
4. stops the whole process group when a limit passes (SIGTERM, SIGKILL after the grace period)
   or when the shim gets SIGTERM (jes forgets a running task), kills what is left of the group
   once the task's main process ended (a container's processes end with it), and
5. writes what happened atomically to ``status.json``.

A task with ``retries`` (the spec's ``retries`` and ``retry_on_exit_codes``) runs again, at once and
in the same job directory, when its process exited non-zero (or was killed by a signal, exit code
128 + N) and the exit code may be retried — the rule of the kubernetes runner's ``podFailurePolicy``
(:meth:`jes.models.RenderedTask.may_retry`, repeated here because the shim imports no jes model).
Before each further attempt it appends a marker line to ``output.log`` and records the exit codes so
far in ``attempts.json`` (jes follows them, also after a restart); ``status.json`` gets them all. The
limits count from the first attempt (a Job's ``activeDeadlineSeconds`` covers all of its pods); a
limit, a stop or a failed start ends the task without a further attempt.

The shim holds an exclusive ``flock`` on the job directory's ``lock`` file for its whole life
(jes takes the lock before starting it and hands the descriptor over): the lock being free means
no shim is alive, whatever became of pids. Only the standard library (and :mod:`jes.util.fsutil`,
itself standard library only) is imported here. The names of the job directory's files, the status
kinds and the process helpers are shared with :mod:`jes.runner.local.jobdir`, which reads the
directory, and :mod:`jes.runner.local.outcome`, which reads the status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from jes.util.fsutil import write_json_atomic

LOCK = "lock"
SHIM = "shim.json"
CHILD = "child.json"
STATUS = "status.json"
OUTPUT = "output.log"
SHIM_LOG = "shim.log"
ATTEMPTS = "attempts.json"
FILES = "files"

_WAIT_SLICE_S = 0.1
_GROUP_POLL_S = 0.02

# Status kinds written to status.json.
EXITED = "exited"
SIGNALED = "signaled"
LIMIT = "limit"
STOPPED = "stopped"
CANNOT_START = "cannot_start"
LOST = "lost"


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if unknown or gone.

    Together with the pid this identifies a process across pid reuse (Linux ``/proc``).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of the whole line: starttime


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Supervisor:
    """Runs the task of one job directory and reports how it ended."""

    def __init__(self, job_dir: Path, spec: dict[str, Any]) -> None:
        self.job_dir = job_dir
        self.argv: list[str] = spec["argv"]
        self.env: dict[str, str] = spec["env"]
        self.cwd: str = spec["cwd"]
        self.limits: list[dict[str, Any]] = spec["limits"]
        self.kill_grace_s: float = spec["kill_grace_s"]
        self.retries: int = int(spec.get("retries", 0))
        self.retry_on: list[int] = list(spec.get("retry_on_exit_codes") or ())
        self.stop_requested = False
        self.started_s = time.monotonic()

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def run(self) -> dict[str, Any]:
        started = time.time()
        self.started_s = time.monotonic()
        exit_codes: list[int | None] = []
        while True:
            report = self._attempt(started)
            code = _exit_code(report)
            exit_codes.append(code)
            if not self._retried(report, code, len(exit_codes)):
                break
            write_json_atomic(self.job_dir / ATTEMPTS, {"exit_codes": exit_codes})
            self._mark_attempt(len(exit_codes) + 1, code)
        if self.retries > 0:
            report = {**report, "attempts": exit_codes}
        return {**report, "started_at": started, "finished_at": time.time()}

    def _attempt(self, started: float) -> dict[str, Any]:
        try:
            child = self._spawn()
        except (OSError, ValueError) as exc:
            return {"kind": CANNOT_START, "reason": self._describe(exc)}
        write_json_atomic(
            self.job_dir / CHILD,
            {"pid": child.pid, "start_ticks": process_start_ticks(child.pid), "started_at": started},
        )
        report = self._wait(child)
        kill_group(child.pid, signal.SIGKILL)  # whatever the main process left behind
        return report

    def _retried(self, report: dict[str, Any], code: int | None, attempts: int) -> bool:
        """Whether the task runs again: it failed by itself, retries are left and the code may be retried."""
        if report["kind"] not in (EXITED, SIGNALED) or not code or self.stop_requested:
            return False
        return attempts <= self.retries and (not self.retry_on or code in self.retry_on)

    def _mark_attempt(self, attempt: int, previous: int | None) -> None:
        line = f"\n--- jes: attempt {attempt}/{self.retries + 1} (the last one ended with exit code {previous}) ---\n"
        with open(self.job_dir / OUTPUT, "ab") as output:
            output.write(line.encode())

    def _spawn(self) -> subprocess.Popen[bytes]:
        log_fd = os.open(self.job_dir / OUTPUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            return subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
            )
        finally:
            os.close(log_fd)

    def _describe(self, exc: OSError | ValueError) -> str:
        if isinstance(exc, ValueError):
            return f"StartError: {exc}"
        what = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.filename == self.cwd:
            return f"StartError: chdir to working directory {self.cwd!r}: {what.lower()}"
        program = self.argv[0]
        if isinstance(exc, FileNotFoundError) and "/" not in program:
            return f"StartError: exec: {program!r}: executable file not found in $PATH"
        return f"StartError: exec: {program!r}: {what.lower()}"

    def _wait(self, child: subprocess.Popen[bytes]) -> dict[str, Any]:
        started = self.started_s  # the limits cover every attempt
        limits = sorted(self.limits, key=lambda limit: float(limit["seconds"]))
        while True:
            try:
                return _ended(child.wait(timeout=_WAIT_SLICE_S))
            except subprocess.TimeoutExpired:
                pass
            if self.stop_requested:
                return {"kind": STOPPED, "returncode": self._stop_group(child)}
            elapsed_s = time.monotonic() - started
            for limit in limits:
                if elapsed_s >= float(limit["seconds"]):
                    returncode = self._stop_group(child)
                    return {"kind": LIMIT, "limit": limit, "returncode": returncode}

    def _stop_group(self, child: subprocess.Popen[bytes]) -> int:
        """SIGTERM to the whole group, SIGKILL to what is left after the grace period.

        Returns the main process's return code (negative: the signal that ended it).
        """
        kill_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        while time.monotonic() < deadline:
            if child.poll() is not None and not group_alive(child.pid):
                return child.returncode
            time.sleep(_GROUP_POLL_S)
        kill_group(child.pid, signal.SIGKILL)
        return child.wait()


def _exit_code(report: dict[str, Any]) -> int | None:
    """A finished attempt's exit code as a container reports it (a signal N is 128 + N)."""
    returncode = report.get("returncode")
    if report["kind"] not in (EXITED, SIGNALED) or not isinstance(returncode, int):
        return None
    return 128 - returncode if returncode < 0 else returncode


def _ended(returncode: int) -> dict[str, Any]:
    if returncode < 0:
        return {"kind": SIGNALED, "returncode": returncode}
    return {"kind": EXITED, "returncode": returncode}


def main(argv: list[str]) -> int:
    job_dir = Path(argv[1])
    lock_fd = int(argv[2])
    try:
        spec = json.loads(sys.stdin.buffer.read())
    except ValueError:
        return 3  # jes died while handing the spec over; nothing was started
    if os.fork() > 0:
        os._exit(0)  # the first process ends at once: jes reaps it, the shim lives on alone
    supervisor = _Supervisor(job_dir, spec)
    signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
    write_json_atomic(job_dir / SHIM, {"pid": os.getpid(), "start_ticks": process_start_ticks(os.getpid())})
    status = supervisor.run()
    write_json_atomic(job_dir / STATUS, status)
    os.close(lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
