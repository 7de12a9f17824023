"""Reading Job and pod status: is the task over, why, and whose logs matter. Pure functions on JSON."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jes.models import Status

Obj = dict[str, Any]

#: Waiting reasons of a container that will not start by itself: the task fails at once instead of
#: waiting for its maxPollDuration (see :mod:`jes.runner.kubernetes.waiting`).
CANNOT_START_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
)


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str
    exit_code: int | None = None


@dataclass(frozen=True)
class LogTarget:
    pod: str
    container: str
    init: bool
    terminated: Obj | None
    """The container's terminated state; None for a container still running."""


def parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _conditions(job: Obj) -> list[Obj]:
    return [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]


def job_verdict(job: Obj) -> Verdict | None:
    """The Job's own final condition, if it has one (``Complete`` or ``Failed``)."""
    for condition in _conditions(job):
        ctype = condition.get("type")
        reason = str(condition.get("reason") or "")
        message = str(condition.get("message") or "")
        if ctype == "Complete":
            return Verdict(Status.SUCCEEDED, "completed")
        if ctype == "Failed" and reason == "DeadlineExceeded":
            limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
            limit_text = f" (activeDeadlineSeconds={limit})" if limit is not None else ""
            return Verdict(Status.DEADLINE_EXCEEDED, f"job deadline exceeded{limit_text}: {message}".rstrip(": "))
        if ctype == "Failed":
            return Verdict(Status.FAILED, f"Job failed: {reason}: {message}".rstrip(": "))
    return None


def finished_at(job: Obj) -> datetime | None:
    """When the Job finished (``completionTime`` or the final condition's transition)."""
    status = job.get("status") or {}
    done = parse_time(status.get("completionTime"))
    if done is not None:
        return done
    for condition in _conditions(job):
        if condition.get("type") in ("Complete", "Failed"):
            return parse_time(condition.get("lastTransitionTime"))
    return None


def _statuses(pod: Obj) -> list[tuple[bool, Obj]]:
    status = pod.get("status") or {}
    inits = [(True, s) for s in status.get("initContainerStatuses") or []]
    return inits + [(False, s) for s in status.get("containerStatuses") or []]


#: jes's own output relay (the ``jes-output`` native sidecar): never the task's failure, and its log
#: is the task's output file, not text for people — read by :mod:`.finishing`, never shown or streamed.
RELAY_CONTAINER = "jes-output"


def _task_statuses(pod: Obj) -> list[tuple[bool, Obj]]:
    """:func:`_statuses` without jes's output relay. Its exit code does not count for the pod's phase
    either (kubelet ``getPhase``: terminated restartable init containers are not taken into account)."""
    return [(init, s) for init, s in _statuses(pod) if not (init and s.get("name") == RELAY_CONTAINER)]


def relay_state(pods: list[Obj]) -> tuple[str, Obj] | None:
    """(pod name, terminated state) of the newest pod's output relay, once it ended; else None."""
    for pod in reversed(_by_age(pods)):
        for init, status in _statuses(pod):
            if init and status.get("name") == RELAY_CONTAINER:
                terminated = _terminated(status)
                return (pod["metadata"]["name"], terminated) if terminated is not None else None
    return None


def _by_age(pods: dict[str, Obj] | list[Obj]) -> list[Obj]:
    items = list(pods.values()) if isinstance(pods, dict) else list(pods)
    return sorted(
        items, key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", p["metadata"]["name"])
    )


#: Waiting messages that heal by themselves, so they get ``JES_TRANSIENT_GRACE_S`` before the task
#: fails: the kubelet's secret/configmap cache not synced within its one second (kubelet
#: ``watch_based_manager.go``: "failed to sync secret cache: timed out waiting for the condition",
#: retried on the next sync — common when many pods start with the same Secret, jes's ``envFrom``
#: pattern under load), and a registry answering 429 (rate limit) or 5xx (containerd: "429 Too Many
#: Requests", "toomanyrequests", "503 Service Unavailable"). A missing image ("not found", "manifest
#: unknown"), no access, or a missing Secret or key cannot heal by waiting: they fail at once.
_TRANSIENT = re.compile(
    r"failed to sync (secret|configmap) cache|toomanyrequests|\b429 Too Many Requests|"
    r"\b(500|502|503|504) (Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)",
    re.IGNORECASE,
)


def stuck(
    pods: dict[str, Obj], pull_errors: dict[str, str], own_secrets: Collection[str] = ()
) -> tuple[Verdict | None, str | None]:
    """(a reason that will not go away by waiting → fail now, a reason that may heal → wait).

    ``pull_errors`` remembers the last ``ErrImagePull`` message per container (updated here):
    ``ImagePullBackOff`` repeats it only on newer kubelets ("Back-off pulling image "x":
    ErrImagePull: ..."), so a bare back-off message is judged by the error seen before it.

    ``own_secrets`` are Secrets jes itself creates for the task right after its Job (the API-proxy
    token Secret, :mod:`.creation`): a container waiting with ``CreateContainerConfigError``,
    ``secret "<one of them>" not found`` is waiting for jes, and the kubelet starts it on its next
    sync once the Secret exists — a passing reason, not a final one. Any other missing Secret is."""
    passing: str | None = None
    for pod in _by_age(pods):
        for _, status in _statuses(pod):
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason not in CANNOT_START_REASONS:
                continue
            name = str(status.get("name"))
            message = str(waiting.get("message") or "").strip()
            if reason == "ErrImagePull":
                pull_errors[name] = message
            judged = message
            if reason == "ImagePullBackOff" and ": " not in message.split('"')[-1]:
                judged = pull_errors.get(name, message)
            shown = message if judged == message else f"{message}; the pull failed with: {judged}"
            where = f"{reason}: {shown} (container {name})" if shown else f"{reason} (container {name})"
            if reason == "CreateContainerConfigError" and _own_secret_missing(message, own_secrets):
                passing = passing or f"{where}: {_OWN_SECRET_MISSING}"
                continue
            if _TRANSIENT.search(judged):
                passing = passing or where
                continue
            return Verdict(Status.CANNOT_START, where), None
    return None, passing


_OWN_SECRET_MISSING = "the Secret with the task's API-proxy token, which jes creates right after its Job, is not there"


def _own_secret_missing(message: str, own_secrets: Collection[str]) -> bool:
    """Whether the kubelet's message says one of ``own_secrets`` does not exist (kubelet
    ``makeEnvironmentVariables``: the secret manager's NotFound error, ``secret "<name>" not found``)."""
    return any(message == f'secret "{name}" not found' for name in own_secrets)


def cannot_start(pods: dict[str, Obj]) -> Verdict | None:
    """A container stuck for a reason that will not go away by waiting (image, config)."""
    return stuck(pods, {})[0]


def unschedulable(pods: dict[str, Obj]) -> str | None:
    """The scheduler's message when a pod cannot be placed on any node."""
    for pod in _by_age(pods):
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                return str(condition.get("message") or "Unschedulable")
    return None


def main_started(pods: dict[str, Obj], main: str) -> bool:
    """Whether the task's main container is running (or already ran)."""
    for pod in pods.values():
        for init, status in _statuses(pod):
            state = status.get("state") or {}
            if not init and status.get("name") == main and ("running" in state or "terminated" in state):
                return True
    return False


def describe_termination(terminated: Obj) -> str:
    """'exit code 1: message', 'OOMKilled (exit code 137)', 'exit code 2 (ContainerCannotRun)'."""
    code = terminated.get("exitCode")
    reason = str(terminated.get("reason") or "")
    message = str(terminated.get("message") or "").strip()
    text = f"OOMKilled (exit code {code})" if reason == "OOMKilled" else f"exit code {code}"
    if reason and reason not in ("OOMKilled", "Error", "Completed"):
        text += f" ({reason})"
    return f"{text}: {message}" if message else text


def _terminated(status: Obj) -> Obj | None:
    state: Obj | None = (status.get("state") or {}).get("terminated")
    return state


def _failed(terminated: Obj) -> bool:
    return terminated.get("exitCode") != 0 or terminated.get("reason") not in ("Completed", None)


def failure_detail(pods: list[Obj], main: str) -> Verdict | None:
    """Why the (last) pod failed: a failed init container, the main container, or an eviction."""
    for pod in reversed(_by_age(pods)):
        failed = [(init, s, t) for init, s in _task_statuses(pod) if (t := _terminated(s)) is not None and _failed(t)]
        failed.sort(key=lambda item: (not item[0], item[1].get("name") != main))
        if failed:
            init, status, terminated = failed[0]
            detail = describe_termination(terminated)
            if init:
                detail = f"init container {status.get('name')} failed: {detail}"
            return Verdict(Status.FAILED, detail, terminated.get("exitCode"))
        pod_status = pod.get("status") or {}
        if pod_status.get("phase") == "Failed" and pod_status.get("reason"):
            text = f"pod {pod_status['reason']}: {pod_status.get('message', '')}".rstrip(": ")
            return Verdict(Status.FAILED, text)
    return None


def job_failed_reason(job: Obj) -> str:
    """The reason of the Job's ``Failed`` condition (``BackoffLimitExceeded``, ``PodFailurePolicy``,
    ``DeadlineExceeded``), or ""."""
    for condition in _conditions(job):
        if condition.get("type") == "Failed":
            return str(condition.get("reason") or "")
    return ""


def pods_in_order(pods: dict[str, Obj] | list[Obj]) -> list[Obj]:
    """The Job's pods oldest first: one per attempt. (``creationTimestamp`` has whole seconds; the
    Job controller waits at least 10 s before it replaces a failed pod, so attempts do not share one.)"""
    return _by_age(pods)


def pod_exit_code(pod: Obj, main: str) -> int | None:
    """The exit code of the pod's main container once it ended (None: not ended, or never ran)."""
    terminated = _main_terminated(pod, main)
    return _exit_code(terminated) if terminated is not None else None


def main_exit_code(pods: list[Obj], main: str) -> int | None:
    """The exit code of the newest pod whose main container ended."""
    for pod in reversed(_by_age(pods)):
        terminated = _main_terminated(pod, main)
        if terminated is not None:
            return _exit_code(terminated)
    return None


def _main_terminated(pod: Obj, main: str) -> Obj | None:
    for init, status in _statuses(pod):
        terminated = _terminated(status)
        if not init and status.get("name") == main and terminated is not None:
            return terminated
    return None


def _exit_code(terminated: Obj) -> int | None:
    code = terminated.get("exitCode")
    return int(code) if code is not None else None


def log_targets(pods: list[Obj], *, include_running: bool) -> list[LogTarget]:
    """Containers whose logs belong in the outcome (upstream's rules).

    Every terminated container; init containers only when some terminated container's reason is
    not ``Completed``; running containers too when ``include_running`` (a task being stopped).
    """
    targets: list[LogTarget] = []
    failed = False
    for pod in _by_age(pods):
        for init, status in _task_statuses(pod):
            terminated = _terminated(status)
            name = str(status.get("name"))
            if terminated is not None:
                targets.append(LogTarget(pod["metadata"]["name"], name, init, terminated))
                failed = failed or terminated.get("reason") != "Completed"
            elif include_running and "running" in (status.get("state") or {}):
                targets.append(LogTarget(pod["metadata"]["name"], name, init, None))
    if not failed:
        targets = [t for t in targets if not t.init]
    return targets


#: Reasons of the Job controller's final Event on a Job (pkg/controller/job/job_controller.go,
#: ``recordJobFinished`` and ``syncJob``): they outlive the Job by the API server's event TTL (1 h).
_FINAL_EVENT_STATUS = {
    "Completed": Status.SUCCEEDED,
    "BackoffLimitExceeded": Status.FAILED,
    "PodFailurePolicy": Status.FAILED,
    "FailedIndexes": Status.FAILED,
    "MaxFailedIndexesExceeded": Status.FAILED,
    "DeadlineExceeded": Status.DEADLINE_EXCEEDED,
}


def verdict_from_events(events: list[Obj]) -> Verdict | None:
    """How a Job that is gone ended, from the Job controller's Events about it (None: unknown)."""
    for event in reversed(events):
        status = _FINAL_EVENT_STATUS.get(str(event.get("reason") or ""))
        if status is None:
            continue
        what = f"{event.get('reason')}: {event.get('message') or ''}".rstrip(": ")
        return Verdict(status, f"{what} (the Job was deleted before jes saw it end; its logs are gone)")
    return None


def started_containers(pod: Obj) -> list[str]:
    """The pod's containers (init ones too) that are running or have ended: their logs exist."""
    names = []
    for _, status in _task_statuses(pod):
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            names.append(str(status.get("name")))
    return names
