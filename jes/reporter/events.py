"""Keptn CloudEvents jes sends, and the size budget that keeps them deliverable.

Shared by ``jes run`` and ``jes serve``. Envelope as upstream's SDK built it: new id, ``source``
(``job-executor-service`` by default), specversion 1.0, shkeptnspecversion 0.2.4, the triggered
event's context and id as ``triggeredid``. ``data`` carries project/stage/service/labels, and
``data.jes`` — a key Keptn passes along untouched — identifies the executor and summarises tasks.

A ``.finished`` event is kept within ``JES_MAX_EVENT_BYTES`` counted on the JSON body as POSTed:
when the message is too long its head and tail are kept around one line saying how many bytes
were omitted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from jes.models import Concurrency, ContainerLog, EventInfo, EventRef, Outcome
from jes.reporter.budget import body_size, cut_middle, encode, fit_to_budget
from jes.util.textutil import clean

SPEC_VERSION = "1.0"
KEPTN_SPEC_VERSION = "0.2.4"
TEST_TRIGGERED = "sh.keptn.event.test.triggered"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def keptn_time(moment: datetime) -> str:
    """RFC3339 UTC with milliseconds, as the Keptn API expects: ``2023-12-21T10:00:02.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def seconds_time(moment: datetime) -> str:
    """RFC3339 with second precision (``test.start``/``test.end``): ``2021-08-24T16:10:25Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def task_name_of(event_type: str) -> str:
    """``sh.keptn.event.<task>.triggered`` → ``<task>``; other types are returned whole."""
    parts = event_type.split(".")
    if len(parts) == 5 and parts[:3] == ["sh", "keptn", "event"]:
        return parts[3]
    return event_type


def response_type(triggered_type: str, kind: str) -> str:
    """The type answering a ``.triggered`` event: ``started``, ``finished`` or ``status.changed``."""
    base = triggered_type.rsplit(".", 1)[0] if triggered_type.endswith(".triggered") else triggered_type
    return f"{base}.{kind}"


@dataclass(frozen=True)
class Identity:
    """Who sends: the event ``source`` and the executor id recorded in ``data.jes.executor``."""

    source: str = "job-executor-service"
    executor: str = "default/-"


#: Namespace of the ids of ``.started``/``.finished`` (UUIDv5 of executor, triggered id and type).
_REPORT_IDS = uuid.UUID("6f1c0a8e-3b5d-4c7a-9e21-5d0b8f4a2c13")


def report_id(triggered_id: str, event_type: str, identity: Identity) -> str:
    """The same id for the same report, whichever replica or restart sends it: a stream that drops
    repeated ids (NATS JetStream's ``Nats-Msg-Id``) then keeps one copy. (The api-service gives
    events POSTed to it ids of its own.)"""
    return str(uuid.uuid5(_REPORT_IDS, f"{identity.executor}\n{triggered_id}\n{event_type}"))


def _envelope(
    info: EventInfo,
    event_type: str,
    data: dict[str, Any],
    identity: Identity,
    now: datetime,
    *,
    deterministic_id: bool = False,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": report_id(info.id, event_type, identity) if deterministic_id else str(uuid.uuid4()),
        "source": identity.source,
        "type": event_type,
        "time": keptn_time(now),
        "contenttype": "application/json",
        "shkeptncontext": info.keptn_context,
        "triggeredid": info.id,
        "shkeptnspecversion": KEPTN_SPEC_VERSION,
        "data": data,
    }
    if info.git_commit_id:
        event["gitcommitid"] = info.git_commit_id
    event = clean(event)  # event data may carry escapes of lone surrogates: no report may fail on them
    _check_envelope(event, now)
    return event


def _check_envelope(event: dict[str, Any], now: datetime) -> None:
    """Let the CloudEvents SDK vouch for the envelope (required attributes, extension names);
    it raises on a violation, which would be a bug here, never bad input."""
    attributes = {k: v for k, v in event.items() if k != "data"}
    attributes["time"] = now
    CloudEvent(attributes, event["data"])


def _scope(info: EventInfo) -> dict[str, Any]:
    data: dict[str, Any] = {"project": info.project, "stage": info.stage, "service": info.service}
    if info.labels:
        data["labels"] = dict(info.labels)
    return data


def probe(info: EventInfo, identity: Identity, kind: str) -> dict[str, Any]:
    """What identifies a report of ours in the datastore (type, triggeredid, source, executor)."""
    return _probe(info.type, info.keptn_context, info.id, identity, kind)


def probe_ref(ref: EventRef, identity: Identity, kind: str) -> dict[str, Any]:
    """:func:`probe` for an event known only by its reference (a claim read back)."""
    return _probe(ref.type, ref.keptn_context, ref.id, identity, kind)


def _probe(triggered_type: str, keptn_context: str, triggered_id: str, identity: Identity, kind: str) -> dict[str, Any]:
    return {
        "type": response_type(triggered_type, kind),
        "shkeptncontext": keptn_context,
        "triggeredid": triggered_id,
        "source": identity.source,
        "data": {"jes": {"executor": identity.executor}},
    }


def started(info: EventInfo, identity: Identity, *, now: datetime | None = None, action: str = "") -> dict[str, Any]:
    data = _scope(info)
    data["jes"] = {"executor": identity.executor, "action": action}
    return _envelope(info, response_type(info.type, "started"), data, identity, now or utc_now(), deterministic_id=True)


def status_changed(
    info: EventInfo,
    identity: Identity,
    *,
    task: str,
    index: int,
    count: int,
    image: str,
    job: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Best effort progress report of a task that starts: "task 2/3 'Run tests' started (image ...)"."""
    detail = {"name": task, "index": index, "count": count, "image": image, "job": job}
    return progress(info, identity, f"{_task_label(task, index, count)} started (image {image})", detail, now=now)


def task_ended(
    info: EventInfo,
    identity: Identity,
    *,
    task: str,
    index: int,
    count: int,
    outcome: Outcome,
    on_error: str = "fail",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Best effort progress report of a task that ended: "task 2/3 'Run tests' succeeded in 41 s"."""
    took = _duration_text(outcome.duration_s)
    label = _task_label(task, index, count)
    if outcome.succeeded:
        message = f"{label} succeeded in {took}"
    else:
        message = f"{label} failed after {took}: {outcome.reason}"
        if on_error == "warning":
            message += " — onError: warning, the next tasks still run"
    detail = {
        "name": task,
        "index": index,
        "count": count,
        "job": outcome.job_name,
        "status": outcome.status.value,
        "exitCode": outcome.exit_code,
        "durationSeconds": round(outcome.duration_s, 3),
        "reason": outcome.reason,
    }
    return progress(info, identity, message, detail, now=now)


def progress(
    info: EventInfo, identity: Identity, message: str, task: Mapping[str, Any], *, now: datetime | None = None
) -> dict[str, Any]:
    """A ``.status.changed`` event (best effort: the control plane may reject it; nothing depends on it,
    and it never counts against the exactly-once rules of ``.started`` and ``.finished``)."""
    data = _scope(info)
    data["message"] = message
    data["jes"] = {"executor": identity.executor, "task": dict(task)}
    return _envelope(info, response_type(info.type, "status.changed"), data, identity, now or utc_now())


def status_changed_attempt(
    info: EventInfo, identity: Identity, *, task: str, index: int, count: int, attempt: int, attempts: int,
    exit_code: int | None, job: str, now: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Best effort report of a retry: "task 1/2 'tests' attempt 2/3 after exit code 2" (``attempt``
    counts from 1; ``attempts`` is 1 + the task's retries; ``exit_code`` is the previous attempt's)."""
    after = f"exit code {exit_code}" if exit_code is not None else "a failure without exit code"
    detail = {"name": task, "index": index, "count": count, "job": job, "attempt": attempt, "attempts": attempts,
              "previousExitCode": exit_code}  # fmt: skip
    return progress(info, identity, f"{_task_label(task, index, count)} attempt {attempt}/{attempts} after {after}",
                    detail, now=now)  # fmt: skip


def _task_label(task: str, index: int, count: int) -> str:
    return f"task {index + 1}/{count} '{task}'"


def _duration_text(seconds: float) -> str:
    """41 s, 3.2 s, 0.4 s; minutes from 100 s on (2 min 5 s)."""
    if seconds >= 100:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def queued(
    info: EventInfo, identity: Identity, *, action: str, position: int, queue: Concurrency, now: datetime | None = None
) -> dict[str, Any]:
    """Best effort progress of an event waiting for a slot of its action's ``concurrency`` queue:
    "queued, position 3: ..." (1 runs next); outside the exactly-once rules of .started/.finished."""
    value = cut_middle(queue.value, 200)  # the key's value comes from the event: unbounded
    scope = f" for {queue.key} = {json.dumps(value, ensure_ascii=False)}" if queue.key else ""
    at_most = f"at most {queue.limit} {'event' if queue.limit == 1 else 'events'} at a time"
    data = _scope(info)
    data["message"] = f"queued, position {position}: action '{action}' runs for {at_most}{scope}"
    where = {"action": action, "position": position, "limit": queue.limit, "key": queue.key, "value": value}
    data["jes"] = {"executor": identity.executor, "queue": where}
    return _envelope(info, response_type(info.type, "status.changed"), data, identity, now or utc_now())


# ---------------------------------------------------------------------------------------------
# The finished event


@dataclass(frozen=True)
class TaskReport:
    """One task's part of a finished event."""

    name: str
    outcome: Outcome
    on_error: str = "fail"

    @property
    def warned(self) -> bool:
        """Failed, but ``onError: warning``: the action went on."""
        return not self.outcome.succeeded and self.on_error == "warning"


def render_logs(logs: Sequence[ContainerLog], *, include_init: bool) -> str:
    """Upstream's log blocks: a header per container, the text, then an empty line."""
    blocks = []
    for log in logs:
        if log.init and not include_init:
            continue
        text = log.text.text()
        if not text:
            continue
        blocks.append(f"{_container_header(log)}\n{text}\n\n")
    return "".join(blocks)


def _container_header(log: ContainerLog) -> str:
    failed = log.reason not in ("", "Completed") or (log.exit_code not in (None, 0))
    if not failed:
        return f"Container {log.container} of pod {log.pod}:"
    detail = f"Message: {log.message}" if log.message else f"ExitCode: {log.exit_code}"
    reason = log.reason or "Error"
    return f"Container {log.container} of pod {log.pod} terminated with an error (Reason: {reason}, {detail}):"


def success_message(reports: Sequence[TaskReport]) -> str:
    return "".join(_task_block(r) for r in reports)


def _task_block(report: TaskReport) -> str:
    """A task that ran before the end of the action: its verdict and logs."""
    if report.outcome.succeeded:
        logs = render_logs(report.outcome.logs, include_init=False)
        return f"Task '{report.name}' finished successfully!\n\nLogs:\n{logs}\n\n"
    return _failed_block(report) + "\n"


def _failed_block(report: TaskReport) -> str:
    outcome = report.outcome
    include_init = any(log.init for log in outcome.logs) and not outcome.succeeded
    logs = render_logs(outcome.logs, include_init=include_init)
    text = f"Task '{report.name}' failed: {outcome.reason}\n\nLogs:\n{logs}"
    if outcome.events:
        text += "Kubernetes events:\n" + "".join(f"{line}\n" for line in outcome.events)
    return text


def warning_lines(reports: Sequence[TaskReport], count: int) -> str:
    """One line per ``onError: warning`` task that failed: "task 2/3 'lint' failed (exit code 1) — onError: warning"."""
    return "".join(
        f"task {i}/{count} '{r.name}' failed ({r.outcome.reason}) — onError: warning\n"
        for i, r in enumerate(reports, 1)
        if r.warned
    )


def warning_message(reports: Sequence[TaskReport], count: int) -> str:
    """The message of an action that ended ``succeeded/warning``: the warnings first, then each task."""
    return warning_lines(reports, count) + "\n" + success_message(reports)


def failure_message(done: Sequence[TaskReport], failed: TaskReport, *, count: int = 0) -> str:
    """The failing task's reason first, its logs and Kubernetes events; then the warnings of earlier
    ``onError: warning`` tasks (``count``: the action's number of tasks) and earlier tasks' logs."""
    text = _failed_block(failed)
    warnings = warning_lines([*done, failed], count or len(done) + 1)
    if warnings:
        text += "\n" + warnings
    if done:
        text += "\n" + success_message(done)
    return text


def summary(identity: Identity, action: str, reports: Sequence[TaskReport]) -> dict[str, Any]:
    return {
        "executor": identity.executor,
        "action": action,
        "tasks": [
            {
                "name": r.name,
                "job": r.outcome.job_name,
                "status": r.outcome.status.value,
                "exitCode": r.outcome.exit_code,
                "durationSeconds": round(r.outcome.duration_s, 3),
                "reason": r.outcome.reason,
                "onError": r.on_error,
                **_output_summary(r.outcome.output),
                # a task with retries: how many runs, and each one's exit code
                **({"attempts": len(r.outcome.attempts), "exitCodes": list(r.outcome.attempts)} if r.outcome.attempts
                   else {}),
            }
            for r in reports
        ],
    }


# ---------------------------------------------------------------------------------------------
# Task outputs ($KEPTN_OUTPUT_FILE)

#: Keys of the ``.finished`` data no task output replaces: Keptn's own, and jes's summary.
PROTECTED_KEYS = frozenset({"project", "stage", "service", "labels", "status", "result", "message", "jes"})


def _output_summary(output: Mapping[str, Any] | None) -> dict[str, Any]:
    """``outputKeys`` merged from a task's output and ``ignoredOutputKeys`` (protected ones)."""
    if not output:
        return {}
    summary_: dict[str, Any] = {"outputKeys": sorted(k for k in output if k not in PROTECTED_KEYS)}
    ignored = sorted(k for k in output if k in PROTECTED_KEYS)
    if ignored:
        summary_["ignoredOutputKeys"] = ignored
    return summary_


def merge_outputs(data: dict[str, Any], outputs: Sequence[Mapping[str, Any]]) -> None:
    """Each output's top-level keys into ``data``, in task order (a later task wins), never over
    :data:`PROTECTED_KEYS`."""
    for output in outputs:
        for key, value in output.items():
            if key not in PROTECTED_KEYS:
                data[key] = value


def outputs_too_big(outputs_bytes: int, max_bytes: int) -> str:
    return (
        f"The tasks' outputs ($KEPTN_OUTPUT_FILE, {outputs_bytes} bytes of JSON) do not fit into one event "
        f"of JES_MAX_EVENT_BYTES ({max_bytes} bytes) with the event's other data: they were left out. "
        "Write less output, or raise JES_MAX_EVENT_BYTES (the control plane's limit permitting).\n\n"
    )


def finished(
    info: EventInfo,
    identity: Identity,
    *,
    status: str,
    result: str,
    message: str,
    max_bytes: int,
    jes_data: Mapping[str, Any] | None = None,
    test_window: tuple[datetime, datetime] | None = None,
    now: datetime | None = None,
    outputs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A ``.finished`` event whose JSON body is at most ``max_bytes`` long.

    The tasks' ``outputs`` are merged into its data (:func:`merge_outputs`) and kept whole: the
    message is cut first. When they do not fit even so, the event is ``errored/fail`` without them,
    its message saying why."""
    data = _scope(info)
    data.update({"status": status, "result": result})
    if message:
        data["message"] = message
    data["jes"] = dict(jes_data or {"executor": identity.executor})
    if test_window is not None and info.type == TEST_TRIGGERED:
        data["test"] = {"start": seconds_time(test_window[0]), "end": seconds_time(test_window[1])}
    merge_outputs(data, outputs)
    finished_type = response_type(info.type, "finished")
    event = _envelope(info, finished_type, data, identity, now or utc_now(), deterministic_id=True)
    event = fit_to_budget(event, max_bytes)
    if outputs and body_size(event) > max_bytes:
        size = sum(len(encode(output)) for output in outputs)
        return finished(
            info, identity, status="errored", result="fail", message=outputs_too_big(size, max_bytes) + message,
            max_bytes=max_bytes, jes_data=jes_data, now=now,
        )  # fmt: skip
    return event


def error_log_entry(event: Mapping[str, Any], *, integration_id: str, info: EventInfo) -> dict[str, Any]:
    """The uniform log entry posted for an errored ``.finished`` (shows in the Bridge)."""
    return {
        "integrationid": integration_id,
        "message": str(event.get("data", {}).get("message", "")),
        "time": keptn_time(utc_now()),
        "shkeptncontext": info.keptn_context,
        "task": task_name_of(info.type),
        "triggeredid": info.id,
        "gitcommitid": info.git_commit_id,
    }
