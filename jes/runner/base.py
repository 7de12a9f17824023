"""The runner contract: a rendered task in, a finished :class:`Outcome` out.

Two implementations: :mod:`jes.runner.kubernetes.runner` (production: one batch/v1 Job per task, watched
to completion) and :mod:`jes.runner.local.runner` (development and demos: a local process).

``run`` is idempotent per ``job_name``: calling it again for a task that already has a Job (or a
local process) adopts it instead of starting a second one; a finished one yields its outcome. That
is how jes finishes the work of events it had taken before a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from jes.models import Outcome, TaskSpec

Fence = Callable[[], Awaitable[None]]
"""Awaited right before a runner creates anything; raises (ClaimLost) when the work is no longer
this process's to do."""


async def no_fence() -> None:
    return None


LogSink = Callable[[str, bytes], None]
"""Called with (container name, chunk) as output arrives; used by ``jes run`` to stream logs."""

AttemptSink = Callable[[int, int | None], None]
"""Called when a task with ``retries`` starts another attempt: (its number, from 2 on; the exit
code of the attempt before, None when it had none). Same as :data:`jes.runner.retries.AttemptSink`."""


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
        on_attempt: AttemptSink | None = None,
    ) -> Outcome:
        """Create (or adopt) the task's Job or process and wait until it ends.

        ``on_running`` is called once when the task's container starts running. Cancelling the
        call stops waiting but leaves the task running, so that it can be adopted later.
        With ``adopt_only`` nothing is created: a task without a Job (or process state) yields
        :attr:`Status.LOST` — used for tasks launched before a restart — and temporary errors are
        raised (the caller tries again later) rather than reported as an outcome. ``fence`` is
        awaited right before each attempt to create something. ``on_attempt`` is called for every
        retry of a task with ``retries`` noticed while waiting (not for those that happened before
        an adoption).
        """
        ...

    async def close(self) -> None:
        """Stop shared machinery. Running tasks are left alone."""
