"""The outcome of a Job whose wait is over.

The Job's pods are read once (unless the watch already saw every one of them end); a failure is
explained by the container that failed (its exit code, ``OOMKilled``, an init container). The logs
are collected (:mod:`.tasklogs`): every terminated container's; the init containers' only when a
container did not end ``Completed``; the running ones' too for a task being stopped. A task that
did not succeed also reports the ``Failed*`` Kubernetes events of the Job and its pods
(:mod:`.events`). The output relay's log is read while the containers' logs are collected, and
the runner runs all of it :data:`~jes.util.gates.FINISHING`: under a burst, the requests of an
event that is finishing go before those of the tasks being created (complete -> ``.finished``).

A Job is stopped — deleted with foreground propagation, its pods with it — when the task's
``maxPollDuration`` passed (:attr:`~jes.models.Status.TIMED_OUT`) and, with ``delete_unstartable``,
when its pod can never start (:attr:`~jes.models.Status.CANNOT_START`): it would otherwise wait
forever and never be cleaned up. A deletion that fails is told in the outcome's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from jes import errors
from jes.models import Outcome, Status
from jes.runner import outputrelay, outputs, retries
from jes.runner.kubernetes import events as kube_events
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes import watch as kube_watch
from jes.runner.kubernetes.task import ApiLookup, JobTask, Obj, now
from jes.runner.kubernetes.tasklogs import TaskLogs
from jes.runner.kubernetes.waiting import Attempts

logger = logging.getLogger(__name__)


async def finish(
    api: ApiLookup,
    spec: JobTask,
    namespace: str,
    tracker: kube_watch.Tracker,
    verdict: kube_status.Verdict,
    started_at: datetime,
    logs: TaskLogs,
    *,
    adopted: bool,
    delete_unstartable: bool,
    attempts_seen: Attempts | None = None,
) -> Outcome:
    """The task's outcome from ``verdict``, its pods, logs and events; the Job stopped if need be.
    ``attempts_seen`` hears of the pods the watch had not shown yet (a retry that ended quickly)."""
    main = spec.main_container
    pods = await _final_pods(api, namespace, tracker)
    if attempts_seen is not None:
        attempts_seen.observe({pod["metadata"]["name"]: pod for pod in pods})
    if verdict.status is Status.FAILED:
        verdict = kube_status.failure_detail(pods, main) or verdict
    exit_code = verdict.exit_code if verdict.exit_code is not None else kube_status.main_exit_code(pods, main)
    stopping = verdict.status is Status.TIMED_OUT or (verdict.status is Status.CANNOT_START and delete_unstartable)
    targets = kube_status.log_targets(pods, include_running=stopping)
    relay = spec.has_relay and verdict.status in (Status.SUCCEEDED, Status.FAILED)
    async with _reading_relay(api, namespace, pods, relay, logs.final_reads) as relayed:
        container_logs = await logs.collect(targets, {p["metadata"]["name"] for p in pods})
        events: tuple[str, ...] = ()
        if verdict.status is not Status.SUCCEEDED:
            events = await kube_events.failure_messages(api, namespace, spec.job_name, pods)
        reason = verdict.reason
        attempts: tuple[int | None, ...] = ()
        if spec.task.retries > 0:  # one pod per attempt; the Job's condition says why there was no other
            attempts = tuple(kube_status.pod_exit_code(pod, main) for pod in kube_status.pods_in_order(pods))
            if verdict.status in (Status.SUCCEEDED, Status.FAILED):
                cause = kube_status.job_failed_reason(tracker.job or {})
                succeeded = verdict.status is Status.SUCCEEDED
                reason = retries.final_reason(reason, spec.task, attempts, succeeded=succeeded, cause=cause)
        if stopping:
            reason += await _stop_job(api, namespace, spec.job_name)
        finished = now()
        if adopted:  # the cluster's clock for both ends
            finished = kube_status.finished_at(tracker.job or {}) or finished
        outcome = Outcome(
            job_name=spec.job_name,
            status=verdict.status,
            reason=reason,
            exit_code=exit_code,
            logs=tuple(container_logs),
            started_at=started_at,
            finished_at=max(finished, started_at),
            events=events,
            attempts=attempts,
        )
        if relayed is not None:
            outcome = _with_output(outcome, await relayed)
    return outcome


#: The most of the relay's log jes reads: the largest output (1 MiB) in base64 lines, and slack.
RELAY_LOG_MAX_BYTES = 2 * 1024 * 1024


@contextlib.asynccontextmanager
async def _reading_relay(
    api: ApiLookup, namespace: str, pods: list[Obj], wanted: bool, reads: asyncio.Semaphore
) -> AsyncIterator[asyncio.Future[bytes | errors.KubeError | None] | None]:
    """The relay's log being read (:func:`_relay_log`; None unless ``wanted``), stopped if left early."""
    if not wanted:
        yield None
        return
    relayed = asyncio.ensure_future(_relay_log(api, namespace, pods, reads))
    try:
        yield relayed
    finally:
        if not relayed.done():
            relayed.cancel()
            await asyncio.gather(relayed, return_exceptions=True)
        elif not relayed.cancelled():
            relayed.exception()  # (retrieved: left early, its error is not the one that matters)


async def _relay_log(
    api: ApiLookup, namespace: str, pods: list[Obj], reads: asyncio.Semaphore
) -> bytes | errors.KubeError | None:
    """The log of the task's ``jes-output`` sidecar, or why it cannot be read; None: it did not end.

    A pod ends only after its sidecars ended (kubelet ``getPhase``: a running restartable init
    container keeps the pod ``Running``), so the relay's log is complete when the Job has its final
    condition (it is read while the containers' logs are collected)."""
    relay = kube_status.relay_state(pods)
    if relay is None:
        return None
    try:
        async with reads:  # (one of the runner's final reads: threads on the client's path)
            return await _read_relay_log(api, namespace, relay[0])
    except errors.KubeError as exc:
        return exc


def _with_output(outcome: Outcome, log: bytes | errors.KubeError | None) -> Outcome:
    """The outcome with the task's output, as its ``jes-output`` sidecar printed it at its end
    (``log``, :func:`_relay_log`). A task that failed before its relay ended (an eviction) simply
    has no output."""
    if log is None:
        if not outcome.succeeded:
            return outcome
        return outputs.judged(
            outcome,
            None,
            outputs.KUBERNETES_OUTPUT_FILE,
            "the output relay (container jes-output) did not end, its output is unknown",
        )
    if isinstance(log, errors.KubeError):
        return outputs.judged(
            outcome, None, outputs.KUBERNETES_OUTPUT_FILE, f"could not read the log of container jes-output: {log}"
        )
    relayed = outputrelay.decode(log)
    return outputs.judged(outcome, relayed.data, outputs.KUBERNETES_OUTPUT_FILE, relayed.problem)


async def _read_relay_log(api: ApiLookup, namespace: str, pod: str) -> bytes:
    """The relay's log, at most :data:`RELAY_LOG_MAX_BYTES` of it."""
    kube = api()
    response = await kube.open_log_retrying(namespace, pod, kube_status.RELAY_CONTAINER)
    chunks: list[bytes] = []
    size, complete = 0, False
    try:
        while size < RELAY_LOG_MAX_BYTES and (chunk := await kube.read_chunk(response, namespace)):
            chunks.append(chunk)
            size += len(chunk)
        complete = size < RELAY_LOG_MAX_BYTES
    finally:
        await kube.close_log(response, complete=complete)
    return b"".join(chunks)


async def _final_pods(api: ApiLookup, namespace: str, tracker: kube_watch.Tracker) -> list[Obj]:
    """The Job's pods: as watched when every one of them has ended and none is missing, else read
    once now (the pod watch may lag behind the Job watch: a retried Job may be over before its
    last pod was seen; the Job's ``succeeded`` + ``failed`` count its pods)."""
    watched = list(tracker.pods.values())
    counts = (tracker.job or {}).get("status") or {}
    counted = int(counts.get("succeeded") or 0) + int(counts.get("failed") or 0)
    ended = all((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in watched)
    if watched and ended and len(watched) >= counted:
        return watched
    try:
        pods = await api().list_pods(namespace, f"job-name={tracker.name}")
    except errors.KubeError as exc:
        logger.warning("cannot list the pods of Job %s/%s: %s", namespace, tracker.name, exc)
        return list(tracker.pods.values())
    return pods


async def _stop_job(api: ApiLookup, namespace: str, job_name: str) -> str:
    """Delete the Job; what to add to the outcome's reason (nothing when it worked)."""
    try:
        await api().delete_job(namespace, job_name)
    except errors.KubeError as exc:
        return f" (deleting the Job failed: {exc})"
    return ""
