"""The claim: what one executor took on for one triggered event, and how far it got.

A claim is small by construction — it never holds the event itself (an event may be larger than
the 256 KiB Kubernetes allows for all annotations of an object); it holds the event's identity
(:class:`EventRef`), the state of each report and of each task, and whether the event is done.
Reasons are cut to :data:`MAX_REASON_CHARS`. The event handler is its only writer.

Report states: absent (never attempted), ``sending`` (recorded before the POST: it may have
arrived), ``sent`` (the control plane accepted it). Task states: absent (never launched),
``launching`` (recorded before the Job or process is created: it may exist or have existed),
``done`` (its outcome is recorded, so it is never started again).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jes import errors
from jes.models import EventRef

#: The longest task reason kept in a claim (the full one is in the .finished message).
MAX_REASON_CHARS = 200
#: Version of the persisted record; a record of another version is refused, not misread.
RECORD_VERSION = 2


class Report(enum.StrEnum):
    STARTED = "started"
    FINISHED = "finished"
    LOG = "log"
    """The error log entry that accompanies an errored .finished (best effort, once)."""


class Delivery(enum.StrEnum):
    SENDING = "sending"
    SENT = "sent"


class TaskState(enum.StrEnum):
    LAUNCHING = "launching"
    DONE = "done"


@dataclass
class TaskRecord:
    state: TaskState
    job: str
    status: str = ""
    """A :class:`jes.models.Status` value once done."""
    reason: str = ""
    exit_code: int | None = None
    started_at: str = ""
    finished_at: str = ""
    token_digest: str = ""
    """SHA-256 of the task's API-proxy token while it runs (any replica can check a token with it)."""
    attempts: tuple[int | None, ...] = ()
    """The exit code of each attempt of a task with retries (saved only when there are some)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state.value, "job": self.job}
        if self.token_digest and self.state is not TaskState.DONE:
            data["token_digest"] = self.token_digest
        if self.state is TaskState.DONE:
            data.update(
                status=self.status,
                reason=self.reason[:MAX_REASON_CHARS],
                exit_code=self.exit_code,
                started_at=self.started_at,
                finished_at=self.finished_at,
            )
            if self.attempts:
                data["attempts"] = list(self.attempts)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskRecord:
        return cls(
            state=TaskState(data["state"]),
            job=str(data["job"]),
            status=str(data.get("status") or ""),
            reason=str(data.get("reason") or ""),
            exit_code=data.get("exit_code"),
            started_at=str(data.get("started_at") or ""),
            finished_at=str(data.get("finished_at") or ""),
            token_digest=str(data.get("token_digest") or ""),
            attempts=tuple(c if isinstance(c, int) else None for c in data.get("attempts") or ()),
        )


@dataclass
class Claim:
    """One taken event. Mutable; the handler changes it and has the ledger save it."""

    ref: EventRef
    holder: str
    reports: dict[Report, Delivery] = field(default_factory=dict)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    done: bool = False
    done_at: float | None = None
    """Wall time (informational: when the event was completed)."""
    unlisted_at: float | None = None
    """Wall time at which a done event was first seen no longer listed by the control plane."""
    cancelled: bool = False
    """Done because its sequence was aborted: its work was stopped and nothing more is sent."""
    # -- not persisted -----------------------------------------------------------------------
    version: str = ""
    """Opaque concurrency token of the store (a Lease's resourceVersion)."""
    resumed: bool = False
    """Read back from the store (after a restart, or taken over from a dead replica)."""
    event: dict[str, Any] | None = None
    """The triggered event, when this process has it (a claim read back has not)."""
    saved_at: float = 0.0
    """Monotonic time of the last successful write: the moment the claim was last proven ours."""
    checked: frozenset[Report] = frozenset()
    """Reports read back as ``sending`` that were already looked up in the datastore (a shared empty
    set until one is: no set of its own per event in flight)."""

    @property
    def event_id(self) -> str:
        return self.ref.id

    def delivery(self, report: Report) -> Delivery | None:
        return self.reports.get(report)

    def task(self, action_index: int, task_index: int) -> TaskRecord | None:
        return self.tasks.get(task_key(action_index, task_index))

    def set_task(self, action_index: int, task_index: int, record: TaskRecord) -> None:
        self.tasks[task_key(action_index, task_index)] = record

    def mark_done(self, now: float | None = None) -> None:
        self.done, self.done_at = True, time.time() if now is None else now

    def to_json(self) -> dict[str, Any]:
        ref = self.ref
        return {
            "v": RECORD_VERSION,
            "event": {
                "id": ref.id,
                "type": ref.type,
                "context": ref.keptn_context,
                "project": ref.project,
                "stage": ref.stage,
                "service": ref.service,
            },
            "holder": self.holder,
            "reports": {k.value: v.value for k, v in self.reports.items()},
            "tasks": {k: v.to_json() for k, v in self.tasks.items()},
            "done": self.done,
            "done_at": self.done_at,
            "unlisted_at": self.unlisted_at,
            **({"cancelled": True} if self.cancelled else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, version: str = "") -> Claim:
        """A claim read back from a store (``resumed``). Raises :class:`errors.StateError`."""
        try:
            if data.get("v") != RECORD_VERSION:
                raise ValueError(f"record version {data.get('v')!r}, expected {RECORD_VERSION}")
            ref = data["event"]
            return cls(
                ref=EventRef(
                    id=str(ref["id"]),
                    type=str(ref["type"]),
                    keptn_context=str(ref.get("context") or ""),
                    project=str(ref.get("project") or ""),
                    stage=str(ref.get("stage") or ""),
                    service=str(ref.get("service") or ""),
                ),
                holder=str(data["holder"]),
                reports={Report(k): Delivery(v) for k, v in (data.get("reports") or {}).items()},
                tasks={str(k): TaskRecord.from_json(v) for k, v in (data.get("tasks") or {}).items()},
                done=bool(data.get("done")),
                done_at=data.get("done_at"),
                unlisted_at=data.get("unlisted_at"),
                cancelled=bool(data.get("cancelled")),
                version=version,
                resumed=True,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise errors.StateError(f"unreadable claim record: {exc}") from exc

    @classmethod
    def loads(cls, text: str, *, version: str = "") -> Claim:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise errors.StateError(f"unreadable claim record: {exc}") from exc
        if not isinstance(data, dict):
            raise errors.StateError("unreadable claim record: not a JSON object")
        return cls.from_json(data, version=version)


def on_record(existing: Claim | None, fresh: Claim) -> Claim | None:
    """What taking ``fresh`` yields in a one-process ledger: ``fresh`` when nothing is on record
    (the caller writes it), None when the record is done, else the record with the event as it
    is now."""
    if existing is None:
        return fresh
    if existing.done:
        return None
    existing.event = fresh.event
    return existing


def task_key(action_index: int, task_index: int) -> str:
    return f"{action_index}/{task_index}"
