"""What the Kubernetes Events about a Job and its pods tell the runner.

- ``FailedCreate`` on a Job without pods: the pods can never be created (a missing service account,
  an admission refusal), so the task cannot start — except for an exceeded quota, which may clear;
- the ``Failed*`` events of the Job and its pods: reported with the outcome of a task that failed;
- the Job controller's events about a Job that is gone (its TTL, a watch gap, jes down meanwhile):
  how it ended, as long as they still exist.

Reading events needs ``events: list``; without it only the messages are lost (logged), except for
a gone Job, where the error is raised (a temporary one must not turn into "lost").
"""

from __future__ import annotations

import logging
from datetime import datetime

from jes import errors
from jes.models import ContainerLog, LogText, Outcome, Status
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes.task import LOST_REASON, ApiLookup, JobTask, Obj, now, outcome_without_logs

logger = logging.getLogger(__name__)


def _selector(kind: str, name: str) -> str:
    return f"involvedObject.kind={kind},involvedObject.name={name}"


def _oldest_first(events: list[Obj]) -> list[Obj]:
    return sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


async def events_about(api: ApiLookup, namespace: str, kind: str, name: str) -> list[Obj]:
    """The events about one object, oldest first; none when they cannot be read (logged)."""
    try:
        items = await api().list_events(namespace, _selector(kind, name))
    except errors.KubeError as exc:
        logger.warning("cannot read the events of %s %s/%s: %s", kind, namespace, name, exc)
        return []
    return _oldest_first(items)


async def failed_create(api: ApiLookup, namespace: str, job_name: str) -> kube_status.Verdict | None:
    """CANNOT_START when the Job controller cannot create the Job's pods (not for a quota)."""
    for event in await events_about(api, namespace, "Job", job_name):
        message = str(event.get("message") or "")
        if event.get("reason") == "FailedCreate" and "exceeded quota" not in message:
            return kube_status.Verdict(Status.CANNOT_START, f"FailedCreate: {message}")
    return None


async def failure_messages(api: ApiLookup, namespace: str, job_name: str, pods: list[Obj]) -> tuple[str, ...]:
    """The ``Failed*`` events of the Job and its pods as ``Reason: message``, each once."""
    found: list[str] = []
    subjects = [("Job", job_name)] + [("Pod", p["metadata"]["name"]) for p in pods]
    for kind, name in subjects:
        for event in await events_about(api, namespace, kind, name):
            reason = str(event.get("reason") or "")
            line = f"{reason}: {event.get('message') or ''}".strip()
            if reason.startswith("Failed") and line not in found:
                found.append(line)
    return tuple(found)


async def outcome_of_gone_job(
    api: ApiLookup, spec: JobTask, namespace: str, started_at: datetime, reason: str = LOST_REASON
) -> Outcome:
    """A Job that is gone: how it ended, as long as the Job controller's Events about it still
    exist; else LOST with ``reason``. Errors reading the Events are raised."""
    events = _oldest_first(await api().list_events(namespace, _selector("Job", spec.job_name)))
    verdict = kube_status.verdict_from_events(events)
    if verdict is None:
        return outcome_without_logs(spec, Status.LOST, reason, started_at)
    logger.info("Job %s/%s is gone; its Events say: %s", namespace, spec.job_name, verdict.reason)
    note = ContainerLog(container=spec.main_container, pod="-", text=LogText.of("(logs no longer available)\n"))
    return Outcome(
        job_name=spec.job_name,
        status=verdict.status,
        reason=verdict.reason,
        exit_code=0 if verdict.status is Status.SUCCEEDED else None,
        logs=(note,),
        started_at=started_at,
        finished_at=max(now(), started_at),
    )
