"""The production runner: one batch/v1 Job per task, watched (not polled) to completion.

The runner builds each task's Job manifest (and the ConfigMaps for its ``files``) from the
runner-neutral :class:`~jes.models.TaskSpec` with :mod:`jes.runner.kubernetes.manifests` and its
:class:`~jes.runner.kubernetes.manifests.JobSettings`. :meth:`KubernetesRunner.run`:

1. creates the ConfigMaps, then the Job; ``409 AlreadyExists`` means the Job (or ConfigMap) is
   already there — from an earlier attempt, another replica or before a restart — and it is adopted,
   never created twice. Once the Job exists, the ConfigMaps get it as their owner, so Kubernetes'
   garbage collector removes them with the Job (TTL or deletion);
2. waits for the Job through two watches shared by every task of a namespace (Jobs labelled
   ``app.kubernetes.io/managed-by``, and their pods; see :mod:`jes.runner.kubernetes.watch`). There is no
   polling per Job: a completion is seen as soon as the API server sends it. While waiting it fails
   fast when the pod can never start (DESIGN decision 9): a container waiting with ``ErrImagePull``,
   ``ImagePullBackOff``, ``InvalidImageName``, ``ErrImageNeverPull`` or
   ``CreateContainerConfigError`` (a missing Secret or key); no pod at all and a ``FailedCreate``
   event on the Job (a missing service account, an admission refusal — but not an exceeded quota,
   which may clear; the only per-Job reads while waiting are these event lists, and only while a
   Job has no pod: after ``missing_pod_check_s``, then at doubling intervals up to 30 s); a pod
   unschedulable for longer than ``pending_grace_s``. Such a Job is deleted
   (``delete_unstartable``), since it would otherwise wait forever and never be cleaned up;
3. past the task's ``maxPollDuration`` (counted from the Job's creation) the Job is deleted with
   foreground propagation and the outcome is :attr:`~jes.models.Status.TIMED_OUT`;
4. when the Job is over, reads its pods once, the logs (every terminated container; init containers
   only when a container did not end ``Completed``; running ones too for a stopped task) and, for a
   failure, the ``Failed*`` Kubernetes events of the Job and its pods.

Logs are streamed in 64 KiB chunks into a :class:`~jes.runner.logs.BoundedBuffer` (head and tail
kept, the rest counted) and forwarded to ``on_log``, so a task printing 200 MB costs no more memory
than one printing 200 KB. Cancelling ``run()`` stops waiting and leaves the Job alone; calling
``run()`` again adopts it (a finished Job yields its outcome from its status and logs).

Kubernetes API errors: ``409`` → adopt; ``429``, ``5xx`` and connection errors → retried with the
runner's :class:`~jes.util.retry.Backoff` (``Retry-After`` honoured); ``403`` →
:class:`~jes.errors.KubePermissionError`, reported as an outcome with status
:attr:`~jes.models.Status.ERROR` whose reason names the missing permission; any other error
creating the Job → ERROR with the API server's message.

The cluster: the process's one ``kubernetes.client.ApiClient`` (:func:`jes.clients.kube.connect`),
built by the service and passed in; the runner has threads of its own but never closes the client.

RBAC — what jes's service account needs **in every namespace Jobs run in** (a Role and a
RoleBinding per namespace)::

    rules:
      - apiGroups: ["batch"]
        resources: ["jobs"]
        verbs: ["create", "get", "list", "watch", "delete"]   # create/adopt, wait, stop
      - apiGroups: [""]
        resources: ["pods"]
        verbs: ["get", "list", "watch"]                       # fail fast, exit codes, log targets
      - apiGroups: [""]
        resources: ["pods/log"]
        verbs: ["get"]                                        # task output
      - apiGroups: [""]
        resources: ["events"]
        verbs: ["list"]                                       # FailedCreate, Failed* messages
      - apiGroups: [""]
        resources: ["configmaps"]
        verbs: ["create", "get", "patch", "delete"]           # files; owner reference; clean-up

Missing ``events: list`` only loses event messages (logged); missing ``configmaps: patch`` leaves
the ConfigMaps without an owner (logged). Everything else fails the task with a reason such as
``permission denied: jes may not create batch/jobs in namespace 'ci'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import kubernetes.client

from jes import errors
from jes.clients import kube as kube_client
from jes.models import ContainerLog, LogText, Outcome, Status, TaskSpec
from jes.runner.base import Fence, LogSink, no_fence
from jes.runner.kubernetes import logs as kube_logs
from jes.runner.kubernetes import manifests
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes import timers as kube_timers
from jes.runner.kubernetes import watch as kube_watch
from jes.runner.logs import BoundedBuffer
from jes.settings import Settings
from jes.util import retry

Obj = dict[str, Any]
logger = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
#: Retries of one API call: about 16 s in all, then the error is reported.
DEFAULT_BACKOFF = retry.Backoff((0.2, 0.5, 1.0, 2.0, 4.0, 8.0))
_LOST = "the Job disappeared before its result was known"
#: How long a followed log may take to end after its container ended before it is read instead.
FOLLOW_END_WAIT_S = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


JobBuilder = Callable[[TaskSpec, manifests.JobSettings], Mapping[str, Any]]
"""Makes a task's Job manifest (tests give hand-made manifests through it)."""


@dataclass(frozen=True)
class _Task(TaskSpec):
    """A task with the Job manifest the runner built for it."""

    job: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: TaskSpec, job: Mapping[str, Any]) -> _Task:
        return cls(**{f.name: getattr(spec, f.name) for f in fields(TaskSpec)}, job=job)


def _namespace(spec: _Task) -> str:
    meta = spec.job.get("metadata") or {}
    return str(meta.get("namespace") or spec.task.namespace or "default")


def _main_container(spec: _Task) -> str:
    containers = (((spec.job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return str(containers[0].get("name", "")) if containers else ""


def watch_key(spec: _Task) -> kube_watch.WatchKey:
    """Which shared watches see this task's Job and pods (from the manifest's labels)."""
    labels = (spec.job.get("metadata") or {}).get("labels") or {}
    value = labels.get(MANAGED_BY)
    if not value:
        raise errors.RunnerError(f"the Job manifest has no {MANAGED_BY} label; jes finds its Jobs by it")
    template = ((spec.job.get("spec") or {}).get("template") or {}).get("metadata") or {}
    pod_value = (template.get("labels") or {}).get(MANAGED_BY)
    pod_selector = f"{MANAGED_BY}={pod_value}" if pod_value else "job-name"
    return kube_watch.WatchKey(_namespace(spec), f"{MANAGED_BY}={value}", pod_selector)


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
        self._api = None
        if self._follower is not None:
            await self._follower.close()
            self._follower = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

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
        """The runner's API access (after :meth:`start`): any generated client method via
        :meth:`~jes.clients.kube.KubeApi.call`, off the loop, retried, errors translated."""
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
    ) -> Outcome:
        """Create (or adopt) the task's Job and wait for it; see the module docstring.

        ``on_running`` is called once, when the main container is seen running (or already
        finished: an adopted Job). ``on_log`` gets each container's output in chunks as it is read
        after the container ended. With ``adopt_only`` nothing is created: a missing Job yields
        :attr:`Status.LOST`, and temporary API errors are raised, not reported. ``fence`` is awaited
        before every attempt to create the Job or its ConfigMaps. Raises :class:`errors.RunnerError`
        when the runner is closed while waiting; every other problem is an :class:`Outcome`.
        """
        await self.start()
        started_at = _now()
        spec = _Task.of(spec, self._build_job(spec, self.job_settings))
        try:
            key = watch_key(spec)
        except errors.RunnerError as exc:
            return _outcome(spec, Status.ERROR, str(exc), started_at)
        trackers = self._trackers(key)
        tracker = trackers.track(spec.job_name)
        try:
            return await self._run(spec, trackers, tracker, started_at, on_log, on_running, adopt_only, fence)
        finally:
            trackers.untrack(tracker)
            spec.files.discard()  # (already, once the ConfigMaps exist)

    async def _run(
        self,
        spec: _Task,
        trackers: kube_watch.Trackers,
        tracker: kube_watch.Tracker,
        started_at: datetime,
        on_log: LogSink | None,
        on_running: Callable[[], None] | None,
        adopt_only: bool,
        fence: Fence,
    ) -> Outcome:
        namespace = trackers.key.namespace
        try:
            await trackers.wait_synced()
            if adopt_only:
                job, adopted = await self._adopt(spec, namespace, tracker), True
            else:
                job, adopted = await self._create_or_adopt(spec, namespace, tracker, fence)
        except errors.KubeError as exc:
            if adopt_only and isinstance(exc, errors.Temporary):
                raise  # whether the Job exists is unknown: the caller tries again later
            return _outcome(spec, Status.ERROR, str(exc), started_at)
        if job is None:
            return await self._vanished(spec, namespace, started_at)
        limit_s = float(spec.task.max_poll_duration_s)
        created = kube_status.parse_time((job.get("metadata") or {}).get("creationTimestamp"))
        del job  # the tracker keeps what is needed; the full answer would stay alive while waiting
        if adopted and created is not None:
            started_at = min(created, started_at)
        age_s = (_now() - started_at).total_seconds()
        deadline = asyncio.get_running_loop().time() + limit_s - min(max(age_s, 0.0), limit_s)
        followed: dict[tuple[str, str], kube_logs.Followed | None] = {}
        try:
            try:
                verdict = await self._wait(spec, namespace, tracker, deadline, on_running, followed, on_log)
            except errors.KubeError as exc:
                return _outcome(spec, Status.ERROR, str(exc), started_at)
            if verdict.status is Status.LOST:
                return await self._vanished(spec, namespace, started_at, verdict.reason)
            return await self._finish(
                spec, namespace, tracker, verdict, started_at, on_log, adopted=adopted, followed=followed
            )
        finally:
            streams = [f.task for f in followed.values() if f is not None and f.task is not None]
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    async def _vanished(self, spec: _Task, namespace: str, started_at: datetime, reason: str = _LOST) -> Outcome:
        """A Job that is gone (its TTL, a watch gap, jes down meanwhile): how it ended, as long as
        the Job controller's Events about it still exist; else LOST. Errors reading the Events are
        raised (a temporary one must not turn into "lost")."""
        selector = f"involvedObject.kind=Job,involvedObject.name={spec.job_name}"
        events = await self._require_api().list_events(namespace, selector)
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        verdict = kube_status.verdict_from_events(events)
        if verdict is None:
            return _outcome(spec, Status.LOST, reason, started_at)
        logger.info("Job %s/%s is gone; its Events say: %s", namespace, spec.job_name, verdict.reason)
        note = ContainerLog(
            container=_main_container(spec), pod="-", text=LogText.of("(logs no longer available)\n")
        )
        return Outcome(
            job_name=spec.job_name,
            status=verdict.status,
            reason=verdict.reason,
            exit_code=0 if verdict.status is Status.SUCCEEDED else None,
            logs=(note,),
            started_at=started_at,
            finished_at=max(_now(), started_at),
        )

    async def _create_or_adopt(
        self, spec: _Task, namespace: str, tracker: kube_watch.Tracker, fence: Fence
    ) -> tuple[Obj | None, bool]:
        """The Job and whether it existed already (None: it existed but is gone now)."""
        await fence()
        try:
            created_maps = await self._create_config_maps(spec, namespace)
        finally:
            spec.files.discard()  # in ConfigMaps now: the spool goes, not when the task ends
        try:
            job = await self._create_job(namespace, _in_namespace(spec.job, namespace), fence)
        except errors.KubeConflictError:
            logger.info("Job %s/%s exists already; adopting it", namespace, spec.job_name)
            adopted = await self._adopt(spec, namespace, tracker)
            if adopted is not None:
                await self._own_config_maps(spec, namespace, adopted)
            return adopted, True
        except errors.KubeError:
            await self._delete_config_maps(namespace, created_maps)
            raise
        tracker.offer_job(job)
        await self._own_config_maps(spec, namespace, job)
        return job, False

    async def _create_config_maps(self, spec: _Task, namespace: str) -> list[str]:
        """The ConfigMaps with the task's files, built and sent one at a time (read from the spool:
        one ConfigMap's worth of content in memory); the names of those created now."""
        if not spec.files:
            return []
        files = spec.files
        building = manifests.build_config_maps(
            spec.job, lambda piece: files.read(piece.source, piece.offset, piece.length), files.sizes
        )
        created: list[str] = []
        while (config_map := await asyncio.to_thread(next, building, None)) is not None:
            try:
                await self._require_api().create_config_map(namespace, _in_namespace(config_map, namespace))
                created.append(config_map["metadata"]["name"])
            except errors.KubeConflictError:
                pass  # an earlier attempt (or replica) made it
            except errors.KubeError:
                await self._delete_config_maps(namespace, created)
                raise
        return created

    async def _create_job(self, namespace: str, body: Obj, fence: Fence) -> Obj:
        """Create the Job; temporary errors are retried for as long as they last (an outage of the
        API server delays the task, it does not fail it), the fence right before every attempt."""
        api = self._require_api()
        delays = iter(retry.Backoff((*self.backoff.delays_s, 30.0), forever=True))
        while True:
            await fence()
            try:
                return await api.create_job(namespace, body, backoff=retry.Backoff(()))
            except errors.KubeTemporaryError as exc:
                delay = max(next(delays), exc.retry_after_s or 0.0)
                logger.warning("creating Job %s/%s failed (%s); retrying in %.1fs", namespace, body["metadata"]["name"],
                               exc, delay)  # fmt: skip
                await self._sleep(delay)

    async def _adopt(self, spec: _Task, namespace: str, tracker: kube_watch.Tracker) -> Obj | None:
        """An existing Job, read once with its pods (the watches only report changes)."""
        api = self._require_api()
        try:
            job = await api.get_job(namespace, spec.job_name)
        except errors.KubeNotFoundError:
            return None
        tracker.offer_job(job)
        tracker.offer_pods(await api.list_pods(namespace, f"job-name={spec.job_name}"))
        return job

    async def _own_config_maps(self, spec: _Task, namespace: str, job: Obj) -> None:
        meta = job.get("metadata") or {}
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta.get("name"), "uid": meta.get("uid")}
        for name in self._config_map_names(spec):
            try:
                await self._require_api().patch_config_map(namespace, name, {"metadata": {"ownerReferences": [owner]}})
            except errors.KubeError as exc:
                logger.warning("ConfigMap %s/%s keeps no owner (it outlives its Job): %s", namespace, name, exc)

    @staticmethod
    def _config_map_names(spec: _Task) -> list[str]:
        """The files ConfigMaps the Job mounts (from its manifest: the spool may be gone)."""
        volumes = (((spec.job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
        sources: list[Obj] = next(
            (v["projected"]["sources"] for v in volumes if v.get("name") == manifests.FILES_VOLUME), []
        )
        return [str(source["configMap"]["name"]) for source in sources if "configMap" in source]

    async def _delete_config_maps(self, namespace: str, names: list[str]) -> None:
        api = self._require_api()
        for name in names:
            try:
                await api.delete_config_map(namespace, name)
            except errors.KubeError as exc:
                logger.warning("could not delete ConfigMap %s/%s of a Job never created: %s", namespace, name, exc)

    # --- waiting ---------------------------------------------------------------------------------

    async def _wait(
        self,
        spec: _Task,
        namespace: str,
        tracker: kube_watch.Tracker,
        deadline: float,
        on_running: Callable[[], None] | None,
        followed: dict[tuple[str, str], kube_logs.Followed | None],
        on_log: LogSink | None,
    ) -> kube_status.Verdict:
        """Until the Job ends, or a timer says to stop waiting (see :mod:`jes.runner.kubernetes.timers`)."""
        loop = asyncio.get_running_loop()
        main = _main_container(spec)
        running_reported = on_running is None
        unschedulable = kube_timers.Grace(self.pending_grace_s, "Unschedulable for more than {grace}: {problem}")
        passing = kube_timers.Grace(self.transient_grace_s, "still failing after {grace}: {problem}")
        missing_pod = kube_timers.Backoff(loop.time() + self.missing_pod_check_s, self.missing_pod_check_s, 30.0)
        pull_errors: dict[str, str] = {}
        while True:
            tracker.changed.clear()
            self._follow_started(namespace, tracker, followed, on_log)
            verdict = await self._verdict(namespace, tracker, pull_errors, passing, loop.time())
            if verdict is not None:
                return verdict
            if not running_reported and kube_status.main_started(tracker.pods, main):
                running_reported = True
                _call_safely(on_running)
            now = loop.time()
            if (expired := unschedulable.observe(kube_status.unschedulable(tracker.pods), now)) is not None:
                return kube_status.Verdict(Status.CANNOT_START, expired)
            if not tracker.pods and missing_pod.due(now):
                if (failed_create := await self._failed_create(namespace, spec.job_name)) is not None:
                    return failed_create
            if now >= deadline:
                reason = f"maxPollDuration of {spec.task.max_poll_duration_s}s exceeded; the Job was deleted"
                return kube_status.Verdict(Status.TIMED_OUT, reason)
            wake_at = min(deadline, unschedulable.wake_at, passing.wake_at)
            if not tracker.pods:
                wake_at = min(wake_at, missing_pod.next_at)
            # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancellation that
            # arrives together with the event, and run() would then not stop when cancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake_at - loop.time())):
                    await tracker.changed.wait()

    async def _verdict(
        self,
        namespace: str,
        tracker: kube_watch.Tracker,
        pull_errors: dict[str, str],
        passing: kube_timers.Grace,
        now: float,
    ) -> kube_status.Verdict | None:
        """The end of the wait, if the Job or its pods say so."""
        if tracker.error is not None:
            raise tracker.error
        if tracker.relisted_without_job:
            tracker.relisted_without_job = False
            try:
                tracker.offer_job(await self._require_api().get_job(namespace, tracker.name))
            except errors.KubeNotFoundError:
                return kube_status.Verdict(Status.LOST, _LOST)
        verdict = kube_status.job_verdict(tracker.job) if tracker.job is not None else None
        if verdict is not None:  # also when the Job was deleted right after finishing
            return verdict
        if tracker.deleted:
            return kube_status.Verdict(Status.LOST, "the Job was deleted before it finished")
        final, healing = kube_status.stuck(tracker.pods, pull_errors)
        if final is not None:
            return final
        if (expired := passing.observe(healing, now)) is not None:
            return kube_status.Verdict(Status.CANNOT_START, expired)
        return None

    async def _failed_create(self, namespace: str, job_name: str) -> kube_status.Verdict | None:
        for event in await self._events(namespace, "Job", job_name):
            message = str(event.get("message") or "")
            if event.get("reason") == "FailedCreate" and "exceeded quota" not in message:
                return kube_status.Verdict(Status.CANNOT_START, f"FailedCreate: {message}")
        return None

    async def _events(self, namespace: str, kind: str, name: str) -> list[Obj]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        try:
            items = await self._require_api().list_events(namespace, selector)
        except errors.KubeError as exc:
            logger.warning("cannot read the events of %s %s/%s: %s", kind, namespace, name, exc)
            return []
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    # --- the outcome -------------------------------------------------------------------------------

    async def _finish(
        self,
        spec: _Task,
        namespace: str,
        tracker: kube_watch.Tracker,
        verdict: kube_status.Verdict,
        started_at: datetime,
        on_log: LogSink | None,
        *,
        adopted: bool,
        followed: dict[tuple[str, str], kube_logs.Followed | None],
    ) -> Outcome:
        main = _main_container(spec)
        pods = await self._final_pods(namespace, tracker)
        if verdict.status is Status.FAILED:
            verdict = kube_status.failure_detail(pods, main) or verdict
        exit_code = verdict.exit_code if verdict.exit_code is not None else kube_status.main_exit_code(pods, main)
        stopping = verdict.status is Status.TIMED_OUT or (
            verdict.status is Status.CANNOT_START and self.delete_unstartable
        )
        targets = kube_status.log_targets(pods, include_running=stopping)
        logs: list[ContainerLog] = []
        for target in targets:
            stream = followed.get((target.pod, target.container))
            logs.append(await self._container_log(namespace, target, stream, on_log))
        logs += _logs_of_vanished_pods(followed, {p["metadata"]["name"] for p in pods})
        events: tuple[str, ...] = ()
        if verdict.status is not Status.SUCCEEDED:
            events = await self._failure_events(namespace, spec.job_name, pods)
        reason = verdict.reason
        if stopping:
            try:
                await self._require_api().delete_job(namespace, spec.job_name)
            except errors.KubeError as exc:
                reason += f" (deleting the Job failed: {exc})"
        finished = _now()
        if adopted:  # the cluster's clock for both ends
            finished = kube_status.finished_at(tracker.job or {}) or finished
        return Outcome(
            job_name=spec.job_name,
            status=verdict.status,
            reason=reason,
            exit_code=exit_code,
            logs=tuple(logs),
            started_at=started_at,
            finished_at=max(finished, started_at),
            events=events,
        )

    async def _final_pods(self, namespace: str, tracker: kube_watch.Tracker) -> list[Obj]:
        """The Job's pods: as watched when every one of them has ended, else read once now (the
        pod watch may lag behind the Job watch)."""
        watched = list(tracker.pods.values())
        if watched and all((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in watched):
            return watched
        try:
            pods = await self._require_api().list_pods(namespace, f"job-name={tracker.name}")
        except errors.KubeError as exc:
            logger.warning("cannot list the pods of Job %s/%s: %s", namespace, tracker.name, exc)
            return list(tracker.pods.values())
        return pods

    async def _failure_events(self, namespace: str, job_name: str, pods: list[Obj]) -> tuple[str, ...]:
        found: list[str] = []
        subjects = [("Job", job_name)] + [("Pod", p["metadata"]["name"]) for p in pods]
        for kind, name in subjects:
            for event in await self._events(namespace, kind, name):
                reason = str(event.get("reason") or "")
                line = f"{reason}: {event.get('message') or ''}".strip()
                if reason.startswith("Failed") and line not in found:
                    found.append(line)
        return tuple(found)

    def _follow_started(
        self,
        namespace: str,
        tracker: kube_watch.Tracker,
        followed: dict[tuple[str, str], kube_logs.Followed | None],
        on_log: LogSink | None,
    ) -> None:
        """Start following every container seen running (or already ended) for the first time."""
        if self._follower is None:
            return
        for pod_name, pod in tracker.pods.items():
            for container in kube_status.started_containers(pod):
                if (pod_name, container) in followed:
                    continue
                sink = None if on_log is None else (lambda chunk, c=container: _call_safely(on_log, c, chunk))
                followed[(pod_name, container)] = self._follower.follow(namespace, pod_name, container, sink)

    async def _container_log(
        self,
        namespace: str,
        target: kube_status.LogTarget,
        followed: kube_logs.Followed | None,
        on_log: LogSink | None,
    ) -> ContainerLog:
        """A container's log: as followed while it ran; read once now when it was not followed, or
        when the stream broke off (then joined to what was followed, with a line saying so)."""
        if followed is not None and followed.task is not None and target.terminated is None:
            followed.task.cancel()  # still running (a task being stopped): what was seen so far
            await asyncio.gather(followed.task, return_exceptions=True)
            return _container_log(target, followed.buffer.result())
        if followed is not None and followed.task is not None:
            with contextlib.suppress(TimeoutError):  # the stream ends moments after the container
                await asyncio.wait_for(asyncio.shield(followed.task), timeout=FOLLOW_END_WAIT_S)
        if followed is not None and followed.complete:
            return _container_log(target, followed.buffer.result())
        async with self._log_streams:
            read = await self._read_log(namespace, target, on_log if followed is None else None)
        if followed is None or not followed.buffer.total_bytes:
            return read
        joined = followed.buffer
        note = f"\n[jes: following this log broke off ({followed.error or 'the stream ended early'}); what follows is "
        joined.write((note + "the container's current log file, which may repeat or miss some output]\n").encode())
        joined.write(read.text.head)
        joined.write(read.text.tail)
        return _container_log(target, joined.result())

    async def _read_log(self, namespace: str, target: kube_status.LogTarget, on_log: LogSink | None) -> ContainerLog:
        api = self._require_api()
        buffer = BoundedBuffer(head_bytes=self.log_head_bytes, tail_bytes=self.log_tail_bytes)
        try:
            response = await api.open_log_retrying(namespace, target.pod, target.container)
            complete = False
            try:
                while chunk := await api.read_chunk(response, namespace):
                    buffer.write(chunk)
                    if on_log is not None:
                        _call_safely(on_log, target.container, chunk)
                complete = True
            finally:
                if not complete:  # a connection with unread data cannot be reused
                    response.close()
                response.release_conn()
        except errors.KubeError as exc:
            buffer.write(f"{chr(10) if buffer.total_bytes else ''}Unable to query logs of container: {exc}".encode())
        return _container_log(target, buffer.result())


def _logs_of_vanished_pods(
    followed: dict[tuple[str, str], kube_logs.Followed | None], pods: set[str]
) -> list[ContainerLog]:
    """What was seen of containers whose pod is gone (evicted, deleted), with a line saying so."""
    found = []
    for (pod, container), stream in followed.items():
        if pod in pods or stream is None or not stream.buffer.total_bytes:
            continue
        note = f"\n[jes: pod {pod} is gone (evicted or deleted); its output after this is missing]\n"
        stream.buffer.write(note.encode())
        found.append(ContainerLog(container=container, pod=pod, text=stream.buffer.result(), reason="PodGone"))
    return found


def _container_log(target: kube_status.LogTarget, text: LogText) -> ContainerLog:
    terminated = target.terminated or {}
    code = terminated.get("exitCode")
    return ContainerLog(
        container=target.container,
        pod=target.pod,
        text=text,
        exit_code=int(code) if code is not None else None,
        reason=str(terminated.get("reason") or ""),
        message=str(terminated.get("message") or ""),
        init=target.init,
    )


def _in_namespace(manifest: Mapping[str, Any], namespace: str) -> Obj:
    body = dict(manifest)
    body["metadata"] = dict(body.get("metadata") or {}) | {"namespace": namespace}
    return body


def _call_safely(callback: Callable[..., None] | None, *args: Any) -> None:
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        logger.exception("a runner callback failed")


def _outcome(spec: TaskSpec, status: Status, reason: str, started_at: datetime) -> Outcome:
    return Outcome(
        job_name=spec.job_name,
        status=status,
        reason=reason,
        exit_code=None,
        logs=(),
        started_at=started_at,
        finished_at=_now(),
    )


__all__ = ["DEFAULT_BACKOFF", "MANAGED_BY", "KubernetesRunner", "watch_key"]
