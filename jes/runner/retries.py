"""What both runners say about a task with ``retries`` (``tasks[].retries``/``retryOnExitCodes``).

The rule itself — which failed attempt runs again — is :meth:`jes.models.RenderedTask.may_retry`; the
kubernetes runner hands it to the Job controller (``backoffLimit`` and ``podFailurePolicy``), the local
runner's shim applies it itself. Both runners report every new attempt through an
:data:`AttemptSink` and word the final reason with :func:`final_reason`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from jes.models import RenderedTask

log = logging.getLogger(__name__)

AttemptSink = Callable[[int, int | None], None]
"""Called with (the number of the attempt that starts, from 2 on; the previous attempt's exit code)."""


def report_attempt(sink: AttemptSink | None, attempt: int, exit_code: int | None) -> None:
    """Tell ``sink`` of a new attempt; a failing sink never disturbs the task."""
    if sink is None:
        return
    try:
        sink(attempt, exit_code)
    except Exception:
        log.exception("on_attempt callback failed (attempt %d)", attempt)


def final_reason(
    detail: str, task: RenderedTask, exit_codes: Sequence[int | None], *, succeeded: bool, cause: str = ""
) -> str:
    """The outcome's reason for a task with retries: ``detail`` (the last attempt's, "exit code 2")
    and why there was no further attempt, e.g. "exit code 2 after 3 attempts, no retry left
    (BackoffLimitExceeded)", "exit code 1, not retried: retryOnExitCodes is [2] (PodFailurePolicy)";
    ``cause`` is the Job condition's reason (kubernetes only). Unchanged for a task without retries."""
    if task.retries <= 0 or not exit_codes:
        return detail
    done, allowed = len(exit_codes), task.retries + 1
    suffix = f" ({cause})" if cause else ""
    if succeeded:
        return detail if done == 1 else f"{detail} on attempt {done}/{allowed}"
    last = exit_codes[-1]
    if not task.may_retry(last):
        codes = ", ".join(str(code) for code in task.retry_on_exit_codes)
        return f"{detail}, not retried: retryOnExitCodes is [{codes}]{suffix}"
    if done >= allowed:
        return f"{detail} after {done} attempts, no retry left{suffix}"
    return f"{detail} on attempt {done}/{allowed}{suffix}"
