"""Waiting for a task's Job to end, and failing fast when it never will.

The runner waits through two watches shared by every task of a namespace (Jobs labelled
``app.kubernetes.io/managed-by``, and their pods; see :mod:`jes.runner.kubernetes.watch`). There
is no polling per Job: a completion is seen as soon as the API server sends it.

A pod that can never start would otherwise keep the task waiting until its ``maxPollDuration``,
so the wait ends early with :attr:`~jes.models.Status.CANNOT_START` when

- a container is waiting with ``ErrImagePull``, ``ImagePullBackOff``, ``InvalidImageName``,
  ``ErrImageNeverPull`` or ``CreateContainerConfigError`` (a missing Secret or key) — at once, or
  after ``transient_grace_s`` when its message says it may heal (the kubelet's secret cache not
  synced yet, a registry answering 429 or 5xx, or the task's own API-proxy token Secret that jes
  creates right after the Job not there yet; see :func:`~jes.runner.kubernetes.status.stuck`);
- there is no pod at all and a ``FailedCreate`` event on the Job (see :mod:`.events`). The only
  per-Job reads while waiting are these event lists, and only while a Job has no pod: after
  ``missing_pod_check_s``, then at doubling intervals up to 30 s;
- a pod is unschedulable for longer than ``pending_grace_s``.

Past the task's ``maxPollDuration`` (counted from the Job's creation) the wait ends with
:attr:`~jes.models.Status.TIMED_OUT`. A Job deleted (or gone from a fresh list) before it finished
ends it with :attr:`~jes.models.Status.LOST`. The timers are in :mod:`jes.runner.kubernetes.timers`;
what ending the wait does to the Job is :mod:`.finishing`'s part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from jes import errors
from jes.models import Status, api_proxy_secret_name
from jes.runner.kubernetes import events as kube_events
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes import timers as kube_timers
from jes.runner.kubernetes import watch as kube_watch
from jes.runner.kubernetes.task import LOST_REASON, ApiLookup, JobTask, call_safely, now
from jes.runner.kubernetes.tasklogs import TaskLogs
from jes.runner.retries import AttemptSink, report_attempt

#: The longest interval between two looks at the events of a Job that has no pod yet.
LONGEST_MISSING_POD_CHECK_S = 30.0


@dataclass(frozen=True)
class Graces:
    """How long the runner waits for what may still change."""

    pending_grace_s: float
    """An unschedulable pod."""
    transient_grace_s: float
    """A container waiting for a reason that may heal (secret cache sync, registry 429/5xx)."""
    missing_pod_check_s: float
    """A Job without pods, before its events are read the first time."""


def loop_deadline(limit_s: float, started_at: datetime) -> float:
    """When (event loop time) a task started at ``started_at`` has had ``limit_s`` seconds."""
    age_s = (now() - started_at).total_seconds()
    return asyncio.get_running_loop().time() + limit_s - min(max(age_s, 0.0), limit_s)


async def wait_for_job(
    api: ApiLookup,
    spec: JobTask,
    namespace: str,
    tracker: kube_watch.Tracker,
    deadline: float,
    graces: Graces,
    on_running: Callable[[], None] | None,
    logs: TaskLogs,
    attempts: Attempts | None = None,
) -> kube_status.Verdict:
    """Until the Job ends, or a timer says to stop waiting; following its logs (every pod's: one
    per attempt of a task with retries) meanwhile, and telling ``attempts`` of its pods."""
    loop = asyncio.get_running_loop()
    attempts = attempts or Attempts(None, spec.main_container, known=set())
    main = spec.main_container
    running_reported = on_running is None
    unschedulable = kube_timers.Grace(graces.pending_grace_s, "Unschedulable for more than {grace}: {problem}")
    passing = kube_timers.Grace(graces.transient_grace_s, "still failing after {grace}: {problem}")
    first_check_at = loop.time() + graces.missing_pod_check_s
    missing_pod = kube_timers.Backoff(first_check_at, graces.missing_pod_check_s, LONGEST_MISSING_POD_CHECK_S)
    pull_errors: dict[str, str] = {}
    while True:
        tracker.changed.clear()
        logs.follow_started(tracker.pods)
        attempts.observe(tracker.pods)
        verdict = await _verdict(api, namespace, tracker, pull_errors, passing, loop.time())
        if verdict is not None:
            return verdict
        if not running_reported and kube_status.main_started(tracker.pods, main):
            running_reported = True
            call_safely(on_running)
        now_s = loop.time()
        if (expired := unschedulable.observe(kube_status.unschedulable(tracker.pods), now_s)) is not None:
            return kube_status.Verdict(Status.CANNOT_START, expired)
        if not tracker.pods and missing_pod.due(now_s):
            if (failed_create := await kube_events.failed_create(api, namespace, spec.job_name)) is not None:
                return failed_create
        if now_s >= deadline:
            reason = f"maxPollDuration of {spec.task.max_poll_duration_s}s exceeded; the Job was deleted"
            return kube_status.Verdict(Status.TIMED_OUT, reason)
        wake_at = min(deadline, unschedulable.wake_at, passing.wake_at)
        if not tracker.pods:
            wake_at = min(wake_at, missing_pod.next_at)
        await tracker.changed.until(wake_at - loop.time())  # (a future: no coroutine kept while waiting)


class Attempts:
    """Notices the Job's new pods: each one after the first is another attempt (the Job controller
    replaced a failed pod, :mod:`jes.runner.kubernetes.manifests` ``podFailurePolicy``), told to the
    sink — for an adopted Job (``known`` None) only the pods after those it had already."""

    def __init__(self, sink: AttemptSink | None, main: str, *, known: set[str] | None) -> None:
        self.sink = sink
        self.main = main
        self.known = known
        """Pods seen so far (None: not looked yet — the first look is taken as known, an adoption)."""
        self.last: tuple[str, int | None] | None = None
        """The newest pod seen and its exit code once known (kept when the pod is gone)."""

    def observe(self, pods: dict[str, kube_watch.Obj]) -> None:
        if self.sink is None:
            return
        ordered = kube_status.pods_in_order(pods)
        if self.last is not None and self.last[0] in pods:  # remember its exit code, should it go
            self.last = (self.last[0], kube_status.pod_exit_code(pods[self.last[0]], self.main))
        if self.known is None:
            self.known = {p["metadata"]["name"] for p in ordered}
            if ordered:
                self.last = (ordered[-1]["metadata"]["name"], None)
        for pod in ordered:
            name = pod["metadata"]["name"]
            if name not in self.known:
                self.known.add(name)
                if self.last is not None:
                    report_attempt(self.sink, len(self.known), self._last_code(pods))
                self.last = (name, None)

    def _last_code(self, pods: dict[str, kube_watch.Obj]) -> int | None:
        if self.last is None:
            return None
        name, code = self.last
        pod = pods.get(name)
        return kube_status.pod_exit_code(pod, self.main) if pod is not None else code


async def _verdict(
    api: ApiLookup,
    namespace: str,
    tracker: kube_watch.Tracker,
    pull_errors: dict[str, str],
    passing: kube_timers.Grace,
    now_s: float,
) -> kube_status.Verdict | None:
    """The end of the wait, if the Job or its pods say so."""
    if tracker.error is not None:
        raise tracker.error
    if tracker.relisted_without_job:
        tracker.relisted_without_job = False
        try:
            tracker.offer_job(await api().get_job(namespace, tracker.name))
        except errors.KubeNotFoundError:
            return kube_status.Verdict(Status.LOST, LOST_REASON)
    verdict = kube_status.job_verdict(tracker.job) if tracker.job is not None else None
    if verdict is not None:  # also when the Job was deleted right after finishing
        return verdict
    if tracker.deleted:
        return kube_status.Verdict(Status.LOST, "the Job was deleted before it finished")
    own_secrets = (api_proxy_secret_name(tracker.name),)  # (made when needed: not kept while waiting)
    final, healing = kube_status.stuck(tracker.pods, pull_errors, own_secrets)
    if final is not None:
        return final
    if (expired := passing.observe(healing, now_s)) is not None:
        return kube_status.Verdict(Status.CANNOT_START, expired)
    return None
