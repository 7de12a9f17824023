"""The ``.finished`` of a reporting action, from the reports of the tasks it ran."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jes.models import EventInfo
from jes.reporter import events


def action_finished(
    info: EventInfo,
    identity: events.Identity,
    action: str,
    count: int,
    reports: Sequence[events.TaskReport],
    *,
    max_bytes: int,
    window: tuple[datetime, datetime],
) -> tuple[dict[str, Any], bool]:
    """The ``.finished`` of action ``action`` (of ``count`` tasks) and whether it says errored: the
    first failure of an ``onError: fail`` task fails it, failures of ``onError: warning`` tasks make
    it a warning, else it passed (with the test window)."""
    failed = next((r for r in reports if not r.outcome.succeeded and not r.warned), None)
    if failed is not None:
        done = [r for r in reports if r is not failed]
        message = events.failure_message(done, failed, count=count)
        finished = finished_of(info, identity, action, reports, "errored", "fail", message, max_bytes=max_bytes)
    elif any(r.warned for r in reports):
        message = events.warning_message(reports, count)
        finished = finished_of(
            info, identity, action, reports, "succeeded", "warning", message, max_bytes=max_bytes, window=window
        )
    else:
        message = events.success_message(reports)
        finished = finished_of(
            info, identity, action, reports, "succeeded", "pass", message, max_bytes=max_bytes, window=window
        )
    return finished, failed is not None or finished["data"]["status"] == "errored"  # (outputs too big)


def finished_of(
    info: EventInfo,
    identity: events.Identity,
    action: str,
    reports: Sequence[events.TaskReport],
    status: str,
    result: str,
    message: str,
    *,
    max_bytes: int,
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """A ``.finished`` of action ``action`` with the summary and outputs of its tasks' ``reports``."""
    return events.finished(
        info,
        identity,
        status=status,
        result=result,
        message=message,
        max_bytes=max_bytes,
        jes_data=events.summary(identity, action, reports),
        test_window=window,
        outputs=[r.outcome.output for r in reports if r.outcome.output],
    )
