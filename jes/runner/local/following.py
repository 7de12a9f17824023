"""Following a local task until it ends: its ``output.log`` read as it grows, into a
:class:`~jes.runner.logs.BoundedBuffer` (jes keeps the head and the tail; the full output stays
on disk) and to the caller's callbacks, until the task's status is known (:mod:`.jobdir`).

The file is polled: at once again while it grows, else at intervals doubling from 10 ms to 250 ms.
For a task with retries ``attempts.json`` is read at each poll too: each attempt the shim started
since jes began following is told to the sink's ``on_attempt`` (those before an adoption are not).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import IO, Any

from jes import errors
from jes.runner import base, logs, retries
from jes.runner.local import shim
from jes.runner.local.jobdir import JobDir, status_if_ended

log = logging.getLogger(__name__)

_READ_BYTES = 64 * 1024
_READ_BURST_BYTES = 8 * 1024 * 1024
_POLL_MIN_S = 0.01
_POLL_MAX_S = 0.25


class Sink:
    """Where a task's output goes while jes follows it: the bounded buffer and the callbacks."""

    def __init__(
        self,
        buffer: logs.BoundedBuffer,
        container: str,
        on_log: base.LogSink | None,
        on_running: Callable[[], None] | None,
        on_attempt: base.AttemptSink | None = None,
    ) -> None:
        self.buffer = buffer
        self.container = container
        self._on_log = on_log
        self._on_running = on_running
        self.running_reported = False
        self.on_attempt = on_attempt
        self.attempts_seen: int | None = None
        """Failed attempts already known (None: not looked yet; the first look is the baseline)."""

    def write(self, chunk: bytes) -> None:
        self.buffer.write(chunk)
        if self._on_log is not None:
            try:
                self._on_log(self.container, chunk)
            except Exception:
                log.exception("log sink failed for %s; the task's output is no longer streamed", self.container)
                self._on_log = None

    def attempts(self, exit_codes: list[int | None]) -> None:
        """The shim recorded ``exit_codes`` of failed attempts: report the attempts started since."""
        known = self.attempts_seen
        self.attempts_seen = len(exit_codes)
        if known is None:
            return
        for done in range(known, len(exit_codes)):
            retries.report_attempt(self.on_attempt, done + 2, exit_codes[done])

    def running(self) -> None:
        if self.running_reported:
            return
        self.running_reported = True
        if self._on_running is not None:
            try:
                self._on_running()
            except Exception:
                log.exception("on_running callback failed for %s", self.container)


async def follow(job: JobDir, sink: Sink) -> dict[str, Any]:
    """Stream the task's output into ``sink`` until the task's status is known; that status."""
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
            status = status_if_ended(job)
            if sink.on_attempt is not None:  # after the status: the last attempts are not missed
                sink.attempts(_exit_codes(job))
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


def _exit_codes(job: JobDir) -> list[int | None]:
    """The exit codes of the attempts that failed and were retried so far."""
    try:
        record = job.record(shim.ATTEMPTS)
    except errors.StateError:
        return []
    codes = (record or {}).get("exit_codes")
    return list(codes) if isinstance(codes, list) else []


def _pump(output: IO[bytes], sink: Sink) -> int:
    """Move what the task wrote since the last call into ``sink``; returns the byte count."""
    moved = 0
    while moved < _READ_BURST_BYTES:
        chunk = output.read(_READ_BYTES)
        if not chunk:
            break
        sink.write(chunk)
        moved += len(chunk)
    return moved
