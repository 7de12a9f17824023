"""How a local task's end is reported: its recorded status (``status.json``, written by
:mod:`jes.runner.local.shim` or by jes for a lost shim) read as an :class:`~jes.models.Outcome`,
with the output as the log of one container named after the job on the pod ``local``.

A process's return code is reported as a container reports it: a signal N is exit code 128 + N.
A task that could not be started at all (:class:`Refused`) has an outcome without logs.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jes import errors
from jes.models import ContainerLog, LogText, Outcome, RenderedTask, Status
from jes.runner import retries
from jes.runner.local import shim

POD = "local"


class Refused(errors.RunnerError):
    """The task cannot be started; ``status`` says how the outcome reports it."""

    def __init__(self, status: Status, message: str) -> None:
        self.status = status
        super().__init__(message)


def cannot_start(message: str) -> Refused:
    return Refused(Status.CANNOT_START, message)


def now() -> datetime:
    return datetime.now(UTC)


def refused_outcome(job_name: str, exc: Refused, started_at: datetime) -> Outcome:
    return Outcome(
        job_name=job_name,
        status=exc.status,
        reason=str(exc),
        exit_code=None,
        logs=(),
        started_at=started_at,
        finished_at=now(),
    )


def outcome(job_name: str, status: Mapping[str, Any], text: LogText, task: RenderedTask | None = None) -> Outcome:
    """The outcome of a task whose status was recorded; ``text`` is its output (with a marker line
    before each further attempt of a task with retries, whose exit codes ``status`` lists)."""
    state, reason, exit_code, container_code = _interpret(status)
    attempts = _attempts(status)
    if task is not None and attempts and state in (Status.SUCCEEDED, Status.FAILED):
        reason = retries.final_reason(reason, task, attempts, succeeded=state is Status.SUCCEEDED)
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
        attempts=attempts,
    )


def _attempts(status: Mapping[str, Any]) -> tuple[int | None, ...]:
    codes = status.get("attempts")
    if not isinstance(codes, list):
        return ()
    return tuple(code if isinstance(code, int) else None for code in codes)


def _interpret(status: Mapping[str, Any]) -> tuple[Status, str, int | None, int | None]:
    """(status, reason, outcome exit code, container exit code) of a recorded status."""
    kind = status.get("kind")
    code = _container_code(status.get("returncode"))
    if kind == shim.EXITED and code is not None:
        return (Status.SUCCEEDED if code == 0 else Status.FAILED), f"exit code {code}", code, code
    if kind == shim.SIGNALED and code is not None:
        return Status.FAILED, f"killed by {_signal_name(code - 128)} (exit code {code})", code, code
    if kind == shim.LIMIT:
        return _limit_passed(status["limit"], code)
    if kind == shim.CANNOT_START:
        return Status.CANNOT_START, str(status.get("reason", "the task could not start")), None, None
    if kind == shim.STOPPED:
        return Status.LOST, "the task was stopped because jes forgot it", None, code
    if kind == shim.LOST:
        return Status.LOST, str(status.get("reason", "the task was lost")), None, None
    return Status.ERROR, f"unknown state of the local task: {status!r}", None, None


def _limit_passed(limit: Mapping[str, Any], code: int | None) -> tuple[Status, str, int | None, int | None]:
    if limit["name"] == "activeDeadlineSeconds":
        reason = f"activeDeadlineSeconds of {limit['seconds']}s exceeded (TASK_DEADLINE_SECONDS)"
        return Status.DEADLINE_EXCEEDED, reason + "; the task was stopped", None, code
    reason = f"maxPollDuration of {limit['seconds']}s exceeded; the task's processes were stopped"
    return Status.TIMED_OUT, reason, None, code


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


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC) if value is not None else now()
