"""The grammar of Keptn event types, classified by segment count as go-utils does.

``sh.keptn.event.<task>.<kind>`` (5 segments) is a task event, ``sh.keptn.event.<stage>.<sequence>.<kind>``
(6 segments) a sequence event. ``sh.keptn.event.<task>.status.changed`` therefore reads as a
sequence event of kind ``changed`` — exactly why strict validation rejects it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

PREFIX = "sh.keptn.event."


@dataclass(frozen=True)
class TaskType:
    task: str
    kind: str


@dataclass(frozen=True)
class SequenceType:
    stage: str
    sequence: str
    kind: str


@functools.lru_cache(maxsize=4096)
def parse(event_type: str) -> TaskType | SequenceType | None:
    """Classify an event type; ``None`` for anything else (e.g. ``sh.keptn.log.error``). Cached:
    every event is classified, and a control plane sees few distinct types (the results are frozen)."""
    if not event_type.startswith(PREFIX):
        return None
    parts = event_type[len(PREFIX) :].split(".")
    if any(not part for part in parts):
        return None
    if len(parts) == 2:
        return TaskType(parts[0], parts[1])
    if len(parts) == 3:
        return SequenceType(parts[0], parts[1], parts[2])
    return None


def task_type(task: str, kind: str) -> str:
    return f"{PREFIX}{task}.{kind}"


def sequence_type(stage: str, sequence: str, kind: str) -> str:
    return f"{PREFIX}{stage}.{sequence}.{kind}"
