"""Sequence and task runs, and the rules the shipyard-controller applies to them.

Records and pure functions only: how a task's ``.finished`` events aggregate into a status and a
result, how event data merges, which sequences a ``triggeredOn`` selects, and the sequence state
``GET /sequence/{project}`` shows. The state transitions are :mod:`sequences`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jes.devtools.controlplane import keptntime, shipyard
from jes.devtools.controlplane.openevents import OpenEvent


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``; nested objects are merged, everything else replaced."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def aggregate(finished: list[dict[str, Any]]) -> tuple[str, str]:
    """(status, result) of a task from the data of all its ``.finished`` events."""
    results = [f.get("result") for f in finished]
    statuses = [f.get("status") for f in finished]
    if any(r not in ("pass", "warning") for r in results):
        result = "fail"
    elif "warning" in results:
        result = "warning"
    else:
        result = "pass"
    if "errored" in statuses:
        return "errored", result
    if "aborted" in statuses:
        return "aborted", result
    if all(s == "succeeded" for s in statuses):
        return "succeeded", result
    return "unknown", "fail"


@dataclass(eq=False)
class SequenceRun:
    """One sequence execution in one stage."""

    trigger_id: str
    context: str
    project: str
    stage: str
    service: str
    name: str
    definition: shipyard.ShipyardSequence
    gitcommitid: str
    data: dict[str, Any]
    created: datetime
    state: str = "triggered"
    next_task: int = 0
    current: TaskRun | None = None
    worst_result: str = "pass"
    status: str = ""
    result: str = ""
    latest: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    held: list[tuple[dict[str, Any], datetime]] = field(default_factory=list)
    """Task ``.triggered`` events opened while paused: pollable, but not yet sent (NATS, datastore)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.project, self.stage, self.service)


@dataclass(eq=False)
class TaskRun:
    """One open task: its ``.triggered`` event and the responses counted so far."""

    open: OpenEvent
    task: str
    context: str
    sequence: SequenceRun | None
    started: int = 0
    finished: list[dict[str, Any]] = field(default_factory=list)

    @property
    def responded(self) -> bool:
        return self.started > 0 or bool(self.finished)


def selects(on: shipyard.TriggeredOn, event_name: str, run: SequenceRun) -> bool:
    """Whether a ``triggeredOn`` entry starts a sequence after ``run`` finished as ``event_name``."""
    if on.event != event_name:
        return False
    if on.selector is None or not on.selector.match:
        return run.result in ("pass", "warning")
    finished = {"result": run.result, "status": run.status}
    return all(str(finished.get(key, run.data.get(key))) == value for key, value in on.selector.match.items())


def summary(event: dict[str, Any]) -> dict[str, str]:
    """An event as a sequence state's ``latestEvent``."""
    return {"id": str(event.get("id", "")), "type": str(event.get("type", "")), "time": str(event.get("time", ""))}


def state_view(runs: list[SequenceRun]) -> dict[str, Any]:
    """One context's sequence state, its runs per stage oldest first, as Keptn shows it."""
    first, last = runs[0], runs[-1]
    return {
        "name": first.name,
        "project": first.project,
        "service": first.service,
        "shkeptncontext": first.context,
        "state": "paused" if last.paused else last.state,
        "time": keptntime.keptn_time(first.created),
        "stages": [
            {
                "name": r.stage,
                "state": "paused" if r.paused else r.state,
                "latestEvent": r.latest,
                "result": r.result,
                "status": r.status,
            }  # fmt: skip
            for r in runs
        ],
    }
