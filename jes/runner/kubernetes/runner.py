"""The production runner: one batch/v1 Job per task, watched (not polled) to completion.

The runner builds each task's Job manifest (and the ConfigMaps for its ``files``) from the
runner-neutral :class:`~jes.models.TaskSpec` with :mod:`jes.runner.kubernetes.manifests` and its
:class:`~jes.runner.kubernetes.manifests.JobSettings`. :meth:`KubernetesRunner.run`:

1. creates the ConfigMaps, the Job, then the API-proxy token Secret owned by the Job (for a task
   with proxy access), or adopts the Job that exists already — from an earlier attempt, another
   replica or before a restart (:mod:`.creation`); a Job whose token Secret cannot be created is
   deleted again (its task cannot have started) and the task ends with ERROR;
2. waits for the Job through two watches shared by every task of a namespace, failing fast when its
   pod can never start, and stopping the wait past the task's ``maxPollDuration``
   (:mod:`.waiting`); meanwhile the containers' logs are followed (:mod:`.tasklogs`);
3. when the Job is over, reads its pods, logs and, for a failure, the ``Failed*`` events; a Job
   past its ``maxPollDuration`` or whose pod can never start is deleted (:mod:`.finishing`);
4. a Job that is gone before its result was known is judged by the Job controller's events about
   it, else :attr:`~jes.models.Status.LOST` (:mod:`.events`).

Cancelling ``run()`` stops waiting and leaves the Job alone; calling ``run()`` again adopts it (a
finished Job yields its outcome from its status and logs).

Kubernetes API errors: ``409`` → adopt; ``429``, ``5xx`` and connection errors → retried with the
runner's :class:`~jes.util.retry.Backoff` (``Retry-After`` honoured; creating the Job, for as long
as they last); ``403`` → :class:`~jes.errors.KubePermissionError`, reported as an outcome with
status :attr:`~jes.models.Status.ERROR` whose reason names the missing permission; any other error
creating the Job → ERROR with the API server's message. The permissions jes needs are listed in
:mod:`jes.runner.kubernetes`.

The cluster: the process's one ``kubernetes.client.ApiClient`` (:func:`jes.clients.kube.connect`),
built by the service and passed in; the runner has threads of its own but never closes the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import kubernetes.client

from jes import errors
from jes.clients import kube as kube_client
from jes.models import Outcome, Status, TaskSpec
from jes.runner.base import AttemptSink, Fence, LogSink, no_fence
from jes.runner.kubernetes import creation, finishing, manifests, waiting
from jes.runner.kubernetes import events as kube_events
from jes.runner.kubernetes import logs as kube_logs
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes import watch as kube_watch
from jes.runner.kubernetes.task import JobTask, Obj, now, outcome_without_logs
from jes.runner.kubernetes.tasklogs import TaskLogs
from jes.settings import Settings
from jes.util import gates, retry

MANAGED_BY = "app.kubernetes.io/managed-by"
#: Retries of one API call: about 16 s in all, then the error is reported.
DEFAULT_BACKOFF = retry.Backoff((0.2, 0.5, 1.0, 2.0, 4.0, 8.0))

JobBuilder = Callable[[TaskSpec, manifests.JobSettings], Mapping[str, Any]]
"""Makes a task's Job manifest (tests give hand-made manifests through it)."""


def watch_key(spec: JobTask) -> kube_watch.WatchKey:
    """Which shared watches see this task's Job and pods (from the manifest's labels)."""
    labels = (spec.job.get("metadata") or {}).get("labels") or {}
    value = labels.get(MANAGED_BY)
    if not value:
        raise errors.RunnerError(f"the Job manifest has no {MANAGED_BY} label; jes finds its Jobs by it")
    template = ((spec.job.get("spec") or {}).get("template") or {}).get("metadata") or {}
    pod_value = (template.get("labels") or {}).get(MANAGED_BY)
    pod_selector = f"{MANAGED_BY}={pod_value}" if pod_value else "job-name"
    return kube_watch.WatchKey(spec.namespace, f"{MANAGED_BY}={value}", pod_selector)


class KubernetesRunner:
    """Runs tasks as Kubernetes Jobs; see the module docstring."""

    name = "kubernetes"
    absent_means_never_started = False

    def __init__(
        self,
        *,
        api_client: kubernetes.client.ApiClient,
        job_settings: manifests.JobSettings | None = None,
        build_job: JobBuilder = manifests.job_for,
        pending_grace_s: float = 120.0,
        transient_grace_s: float = 120.0,
        backoff: retry.Backoff = DEFAULT_BACKOFF,
        request_timeout_s: float = 30.0,
        watch_timeout_s: float = 60.0,
        log_head_bytes: int = 64 * 1024,
        log_tail_bytes: int = 64 * 1024,
        max_workers: int = 16,
        missing_pod_check_s: float = 3.0,
        delete_unstartable: bool = True,
        max_followed_logs: int = 512,
        sleep: retry.Sleep = asyncio.sleep,
    ) -> None:
        self.pending_grace_s = pending_grace_s
        self.transient_grace_s = transient_grace_s
        self.backoff = backoff
        self.request_timeout_s = request_timeout_s
        self.watch_timeout_s = watch_timeout_s
        self.log_head_bytes = log_head_bytes
        self.log_tail_bytes = log_tail_bytes
        self.max_workers = max_workers
        self.missing_pod_check_s = missing_pod_check_s
        self.delete_unstartable = delete_unstartable
        self._sleep = sleep
        self._client = api_client
        self.job_settings = job_settings or manifests.JobSettings()
        self._build_job = build_job
        self._api: kube_client.KubeApi | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._watches: dict[kube_watch.WatchKey, kube_watch.Trackers] = {}
        self._start_lock = asyncio.Lock()
        self._log_streams = asyncio.Semaphore(max(1, max_workers // 2))
        """Final (non-follow) log reads hold a thread between chunks: at most this many at once."""
        self.max_followed_logs = max_followed_logs
        self._follower: kube_logs.LogFollower | None = None
        # one bound method each for every task waiting, not one per task
        self._api_lookup = self._require_api
        self._follower_lookup = self._current_follower
        self._graces = waiting.Graces(pending_grace_s, transient_grace_s, missing_pod_check_s)

    @classmethod
    def from_settings(
        cls, settings: Settings, api_client: kubernetes.client.ApiClient, **overrides: Any
    ) -> KubernetesRunner:
        options: dict[str, Any] = {
            "api_client": api_client,
            "job_settings": manifests.JobSettings.from_settings(settings),
            "pending_grace_s": settings.pending_grace_s,
            "transient_grace_s": settings.transient_grace_s,
        }
        options.update(overrides)
        return cls(**options)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._api is not None:
                return
            client = self._client
            self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="jes-kube")
            self._api = kube_client.KubeApi(
                client,
                executor=self._executor,
                backoff=self.backoff,
                request_timeout_s=self.request_timeout_s,
                sleep=self._sleep,
            )
            self._follower = kube_logs.LogFollower(
                client.configuration,
                head_bytes=self.log_head_bytes,
                tail_bytes=self.log_tail_bytes,
                max_streams=self.max_followed_logs,
            )

    async def close(self) -> None:
        """Stop the watches; Jobs are left alone (anyone still waiting gets a RunnerError)."""
        threads = []
        for trackers in self._watches.values():
            threads += trackers.stop()
        self._watches.clear()
        for thread in threads:
            await asyncio.to_thread(thread.join, 5.0)
        if self._api is not None:
            await self._api.aclose()
        self._api = None
        if self._follower is not None:
            await self._follower.close()
            self._follower = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _current_follower(self) -> kube_logs.LogFollower | None:
        return self._follower

    def _require_api(self) -> kube_client.KubeApi:
        if self._api is None:
            raise errors.RunnerError("the kubernetes runner is not started")
        return self._api

    def _trackers(self, key: kube_watch.WatchKey) -> kube_watch.Trackers:
        trackers = self._watches.get(key)
        if trackers is None:
            trackers = kube_watch.Trackers(
                key,
                self._require_api(),
                asyncio.get_running_loop(),
                watch_timeout_s=self.watch_timeout_s,
                backoff=self.backoff,
            )
            self._watches[key] = trackers
            trackers.start()
        return trackers

    @property
    def api(self) -> kube_client.KubeApi:
        """The runner's API access (after :meth:`start`): any request via
        :meth:`~jes.clients.kube.KubeApi.send`, off the loop, retried, errors translated."""
        return self._require_api()

    def watch_count(self) -> int:
        """Shared watch streams in use (two per namespace)."""
        return sum(len(t.watches) for t in self._watches.values())

    # --- run -------------------------------------------------------------------------------------

    async def run(
        self,
        spec: TaskSpec,
        *,
        on_log: LogSink | None = None,
        on_running: Callable[[], None] | None = None,
        adopt_only: bool = False,
        fence: Fence = no_fence,
        on_attempt: AttemptSink | None = None,
    ) -> Outcome:
        """Create (or adopt) the task's Job and wait for it; see the module docstring.

        ``on_running`` is called once, when the main container is seen running (or already
        finished: an adopted Job). ``on_log`` gets each container's output in chunks as it arrives
        (followed while the container runs, else read once after it ended). With ``adopt_only``
        nothing is created: a missing Job yields :attr:`Status.LOST`, and temporary API errors are
        raised, not reported. ``fence`` is awaited before every attempt to create the Job or its
        ConfigMaps. ``on_attempt`` hears of each new pod of a task with retries (the Job controller
        retrying it). Raises :class:`errors.RunnerError`
        when the runner is closed while waiting; every other problem is an :class:`Outcome`.
        """
        await self.start()
        started_at = now()
        task = JobTask.of(spec, self._build_job(spec, self.job_settings))
        del spec
        try:
            trackers = self._trackers(watch_key(task))
        except errors.RunnerError as exc:
            return outcome_without_logs(task, Status.ERROR, str(exc), started_at)
        tracker = trackers.track(task.job_name)
        try:  # (one coroutine frame while the Job runs: this one, awaiting the wait below)
            there = await self._create(task, trackers, tracker, started_at, adopt_only, fence)
            if isinstance(there, Outcome):
                return there
            task, started_at, adopted = there
            del there, fence  # (created: neither is kept while the Job runs)
            namespace = task.namespace
            logs = self._task_logs(namespace, on_log)
            on_attempt = on_attempt if task.task.retries > 0 else None
            known = None if adopted or on_attempt is None else set[str]()  # (no set kept when nobody hears)
            attempts = waiting.Attempts(on_attempt, task.main_container, known=known)
            try:
                try:
                    verdict = await waiting.wait_for_job(
                        self._api_lookup, task, namespace, tracker,
                        waiting.loop_deadline(float(task.task.max_poll_duration_s), started_at),
                        self._current_graces(),
                        on_running, logs, attempts,
                    )  # fmt: skip
                except errors.KubeError as exc:
                    return outcome_without_logs(task, Status.ERROR, str(exc), started_at)
                return await self._finish(task, namespace, tracker, verdict, started_at, logs, attempts, adopted)
            finally:
                await logs.stop_following()
        finally:
            trackers.untrack(tracker)
            task.files.discard()  # (already, once the ConfigMaps exist)

    async def cancel(self, spec: TaskSpec) -> str:
        """Stop the task: delete its Job with foreground propagation (its pods are deleted first,
        with their grace period; the ConfigMaps and the token Secret it owns follow). What was done."""
        await self.start()
        job = JobTask.of(spec, self._build_job(spec, self.job_settings))
        await self._require_api().delete_job(job.namespace, spec.job_name)
        return f"its Job {job.namespace}/{spec.job_name} was deleted"

    async def _create(
        self,
        task: JobTask,
        trackers: kube_watch.Trackers,
        tracker: kube_watch.Tracker,
        started_at: datetime,
        adopt_only: bool,
        fence: Fence,
    ) -> tuple[JobTask, datetime, bool] | Outcome:
        """The task once its Job exists, when it started and whether it was adopted; or the outcome
        of a task that ends here (no Job, an API error)."""
        namespace = trackers.key.namespace
        try:
            await trackers.wait_synced()
            job, adopted = await self._create_or_adopt(task, namespace, tracker, adopt_only, fence)
        except errors.KubeError as exc:
            if adopt_only and isinstance(exc, errors.Temporary):
                raise  # whether the Job exists is unknown: the caller tries again later
            return outcome_without_logs(task, Status.ERROR, str(exc), started_at)
        if job is None:
            return await kube_events.outcome_of_gone_job(self._require_api, task, namespace, started_at)
        created = kube_status.parse_time((job.get("metadata") or {}).get("creationTimestamp"))
        if adopted and created is not None:
            started_at = min(created, started_at)
        # of the manifest and the answer only what waiting and finishing read is kept while it runs
        return task.created(), started_at, adopted

    async def _create_or_adopt(
        self, spec: JobTask, namespace: str, tracker: kube_watch.Tracker, adopt_only: bool, fence: Fence
    ) -> tuple[Obj | None, bool]:
        """The Job and whether it existed already (None: there is none, or it is gone now)."""
        if adopt_only:
            job = await creation.adopt(self._require_api, spec, namespace, tracker)
            await creation.forget_token_secret(self._require_api, spec, namespace, job)
            return job, True
        return await creation.create_or_adopt(
            self._require_api, spec, namespace, tracker, fence, backoff=self.backoff, sleep=self._sleep
        )

    def _current_graces(self) -> waiting.Graces:
        """The graces as set now, one object for every task waiting (not one each)."""
        graces = waiting.Graces(self.pending_grace_s, self.transient_grace_s, self.missing_pod_check_s)
        if graces != self._graces:
            self._graces = graces
        return self._graces

    def _task_logs(self, namespace: str, on_log: LogSink | None) -> TaskLogs:
        return TaskLogs(
            self._api_lookup,
            self._follower_lookup,
            namespace,
            on_log,
            head_bytes=self.log_head_bytes,
            tail_bytes=self.log_tail_bytes,
            final_reads=self._log_streams,
        )

    async def _finish(
        self,
        spec: JobTask,
        namespace: str,
        tracker: kube_watch.Tracker,
        verdict: kube_status.Verdict,
        started_at: datetime,
        logs: TaskLogs,
        attempts: waiting.Attempts,
        adopted: bool,
    ) -> Outcome:
        """Its requests are :data:`~jes.util.gates.FINISHING`: before those of tasks being created."""
        with gates.urgent():
            if verdict.status is Status.LOST:
                reason = verdict.reason
                return await kube_events.outcome_of_gone_job(self._api_lookup, spec, namespace, started_at, reason)
            return await finishing.finish(
                self._api_lookup, spec, namespace, tracker, verdict, started_at, logs,
                adopted=adopted, delete_unstartable=self.delete_unstartable, attempts_seen=attempts,
            )  # fmt: skip


__all__ = ["DEFAULT_BACKOFF", "MANAGED_BY", "KubernetesRunner", "watch_key"]
