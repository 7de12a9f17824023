"""The fake cluster's controllers: Job controller, TTL and garbage collection, and timers on the fake clock.

Runs on the fake server's event loop. Time is a ticking :class:`FakeClock` (real time plus whatever a
test added with ``advance``), so a test can jump over ``activeDeadlineSeconds`` or
``ttlSecondsAfterFinished`` without waiting. One coroutine per live pod plays the kubelet
(:mod:`._kubelet`); timers cost nothing while waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fakes.fake_kube import _kubelet, _store
from fakes.fake_kube._behaviour import Behaviour
from jes.devtools.doubles.clock import FakeClock

Obj = _store.Obj
_BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
logger = logging.getLogger(__name__)


class Timers:
    """``sleep`` on the fake clock: one heap, one armed loop timer."""

    def __init__(self, clock: FakeClock, loop: asyncio.AbstractEventLoop) -> None:
        self._clock = clock
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        clock.on_advance = self._fire_soon

    def _fire_soon(self) -> None:
        self._loop.call_soon_threadsafe(self._fire)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = self._loop.create_future()
        due = self._clock.monotonic() + seconds
        heapq.heappush(self._heap, (due, next(self._seq), future))
        if self._heap[0][2] is future:
            self._arm()
        await future

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._heap:
            delay = max(0.0, self._heap[0][0] - self._clock.monotonic())
            self._handle = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        now = self._clock.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)
        self._arm()


BehaviourLookup = Callable[[str, Obj, bool], Behaviour]
"""(job name, container spec, is init container) → the container's script."""


class Cluster:
    """Reacts to stored objects the way Kubernetes' controllers and a kubelet would."""

    def __init__(
        self,
        store: _store.Store,
        clock: FakeClock,
        timers: Timers,
        behaviour_for: BehaviourLookup,
        *,
        check_service_accounts: bool,
        image_backoff_s: float,
        config_retry_s: float = 10.0,
        pod_failure_backoff_s: float = 10.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.timers = timers
        self.behaviour_for = behaviour_for
        self.check_service_accounts = check_service_accounts
        self.image_backoff_s = image_backoff_s
        self.config_retry_s = config_retry_s
        """How often the kubelet tries again to start a container whose Secret/ConfigMap is missing."""
        self.pod_failure_backoff_s = pod_failure_backoff_s
        """The Job controller's delay before the pod after the first failed one; it doubles with every
        further failure, up to 60 times this (job_controller.go: ``DefaultJobPodFailureBackOff`` 10 s,
        ``MaxJobPodFailureBackOff`` 10 min; backoff_utils.go ``getRemainingTimeForFailuresCount``)."""
        self._tasks: dict[str, set[asyncio.Task[None]]] = {}
        """Running coroutines per owner uid (job or pod)."""
        self._scripts: dict[tuple[str, str], dict[str, tuple[Behaviour, bool]]] = {}
        """(namespace, pod) → container → (script, is init): what the log endpoint serves."""
        self._changed: dict[tuple[str, str], asyncio.Event] = {}
        self._events: dict[tuple[str, str, str], str] = {}
        self._event_ns = 0
        self._foreground: dict[str, tuple[str, str, str]] = {}
        """Owners deleted with Foreground propagation, waiting for their dependents: uid → where."""
        store.listeners.append(self._on_change)

    # --- bookkeeping -------------------------------------------------------------------------

    def timestamp(self) -> str:
        """Now on the fake clock, as Kubernetes writes times."""
        return _store.kube_time(self.clock.now())

    def _spawn(self, owner_uid: str, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        tasks = self._tasks.setdefault(owner_uid, set())
        tasks.add(task)
        task.add_done_callback(lambda t: self._forget(owner_uid, t))

    def _forget(self, owner_uid: str, task: asyncio.Task[None]) -> None:
        tasks = self._tasks.get(owner_uid)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[owner_uid]
        if not task.cancelled() and task.exception() is not None:
            logger.error("fake cluster task %s failed", task.get_name(), exc_info=task.exception())

    def _cancel(self, owner_uid: str) -> None:
        for task in list(self._tasks.get(owner_uid, ())):
            task.cancel()

    def cancel_all(self) -> None:
        for uid in list(self._tasks):
            self._cancel(uid)

    def reset(self) -> None:
        """Stop every controller coroutine and forget per-object bookkeeping."""
        self.cancel_all()
        self._scripts.clear()
        self._events.clear()
        self._foreground.clear()
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    def _on_change(self, plural: str, event_type: str, obj: Obj) -> None:
        if plural != "pods":
            return
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()
        if event_type == "DELETED":
            self._cancel(meta["uid"])
            self._scripts.pop(key, None)
            for ref in meta.get("ownerReferences") or ():
                if ref.get("uid") in self._foreground:
                    asyncio.get_running_loop().call_soon(self._finish_foreground, ref["uid"])

    async def pod_changed(self, namespace: str, name: str) -> None:
        """Wait until the pod is updated or deleted."""
        event = self._changed.setdefault((namespace, name), asyncio.Event())
        await event.wait()

    def script(self, namespace: str, pod: str, container: str) -> tuple[Behaviour, bool] | None:
        return self._scripts.get((namespace, pod), {}).get(container)

    def mutate(self, plural: str, namespace: str, name: str, change: Callable[[Obj], None]) -> Obj | None:
        """Store ``change`` applied to a copy of the object: a copy on write of its top, metadata,
        spec and status (its dicts and the dicts in its lists too). ``change`` may set fields of the
        top, of ``metadata``, of ``spec``, of ``status``, of the dicts in ``status`` (a container
        status) and of the dicts in its lists — replacing, never changing in place, what lies below
        them (stored objects are never changed in place). An unchanged spec stays the very same
        object, so its encoding is reused (:mod:`._encoding`)."""
        current = self.store.get(plural, namespace, name)
        if current is None:
            return None
        obj: Obj = dict(current)
        obj["metadata"] = dict(current["metadata"])
        spec = current.get("spec")
        if isinstance(spec, dict):
            obj["spec"] = dict(spec)
        if "status" in current:
            obj["status"] = _writable_copy(current["status"])
        change(obj)
        if isinstance(spec, dict) and obj.get("spec") == spec:
            obj["spec"] = spec
        return self.store.update(plural, obj)

    mutate_status = mutate
    """The kubelet's changes (``status``, ``spec.nodeName``): the same copy on write."""

    def event(self, obj: Obj, etype: str, reason: str, message: str, component: str) -> None:
        """Record a Kubernetes Event about ``obj`` (repeats bump ``count``)."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        key = (meta["uid"], reason, message)
        now = self.timestamp()
        existing = self._events.get(key)
        if existing is not None:

            def bump(ev: Obj) -> None:
                ev["count"] = ev.get("count", 1) + 1
                ev["lastTimestamp"] = now

            if self.mutate("events", namespace, existing, bump) is not None:
                return
        self._event_ns = max(self._event_ns + 1, time.time_ns())
        name = f"{meta['name']}.{self._event_ns:x}"  # as Kubernetes names them: sortable by time
        self._events[key] = name
        body: Obj = {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "kind": obj["kind"],
                "namespace": namespace,
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": obj["apiVersion"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": etype,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        self.store.create("events", body, now)

    # --- deletion and garbage collection -------------------------------------------------------

    def delete(
        self, plural: str, namespace: str, name: str, propagation: str | None, *, grace_s: float | None = None
    ) -> Obj | None:
        """Delete like the API server plus the garbage collector and the kubelet; returns the object
        as it is after the request (with ``deletionTimestamp`` while it is still there).

        Pods are deleted gracefully: they stay ``Terminating`` while the kubelet stops their
        containers (``terminationGracePeriodSeconds``, 30 by default). An owner deleted with
        ``Foreground`` propagation keeps the ``foregroundDeletion`` finalizer and a
        ``deletionTimestamp`` until every dependent with ``blockOwnerDeletion`` is gone
        (apiserver ``registry/store.go``, garbage collector ``graph.go``).
        """
        obj = self.store.get(plural, namespace, name)
        if obj is None:
            return None
        if plural == "pods":
            return self._delete_pod(namespace, name, grace_s)
        uid = obj["metadata"]["uid"]
        self._cancel(uid)
        if propagation is None:
            propagation = "Orphan" if plural == "jobs" else "Background"
        if propagation == "Orphan":
            self._orphan(uid, namespace)
            return self.store.remove(plural, namespace, name)
        if propagation == "Foreground":
            marked = obj
            if not obj["metadata"].get("deletionTimestamp"):
                now = self.timestamp()

                def mark(o: Obj) -> None:
                    o["metadata"]["deletionTimestamp"] = now
                    o["metadata"]["deletionGracePeriodSeconds"] = 0
                    o["metadata"]["finalizers"] = [*(o["metadata"].get("finalizers") or []), "foregroundDeletion"]

                marked = self.mutate(plural, namespace, name, mark) or obj
            self._foreground[uid] = (plural, namespace, name)
            self._delete_dependents(uid, namespace)
            self._finish_foreground(uid)
            return self.store.get(plural, namespace, name) or marked
        removed = self.store.remove(plural, namespace, name)
        self._delete_dependents(uid, namespace)
        return removed

    def _delete_pod(self, namespace: str, name: str, grace_s: float | None) -> Obj | None:
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            return None
        if pod["metadata"].get("deletionTimestamp"):
            return pod  # terminating already
        spec = pod.get("spec") or {}
        grace = grace_s if grace_s is not None else float(spec.get("terminationGracePeriodSeconds", 30))
        phase = (pod.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            grace = 0.0  # pod strategy CheckGracefulDelete: nothing runs, nothing to wait for
        uid = pod["metadata"]["uid"]
        self._cancel(uid)  # the kubelet stops following the container scripts
        if grace <= 0:
            return self.store.remove("pods", namespace, name)
        deletion = _store.kube_time(self.clock.now() + timedelta(seconds=grace))

        def mark(o: Obj) -> None:
            o["metadata"]["deletionTimestamp"] = deletion
            o["metadata"]["deletionGracePeriodSeconds"] = int(grace)

        marked = self.mutate("pods", namespace, name, mark)
        self._spawn(uid, self._terminate(namespace, name, grace), "fake-kubelet-terminate")
        return marked

    async def _terminate(self, namespace: str, name: str, grace_s: float) -> None:
        """The kubelet stopping a pod: SIGTERM, up to the grace period, SIGKILL; then the pod is
        Failed (unless it had ended) and removed."""
        scripts = [script for script, init in self._scripts.get((namespace, name), {}).values() if not init]
        exits = [s.sigterm_exit_s for s in scripts if s.sigterm_exit_s is not None]
        stop_s = min([grace_s, *exits]) if exits and len(exits) == len(scripts) else grace_s
        if not self._running_containers(namespace, name, relays=False):
            # nothing to signal (waiting for an image, a volume...): the kubelet is quick; jes's output
            # relay (a native sidecar, SIGTERM-ed after the main containers on 1.29+) exits at once on
            # SIGTERM, having printed its report
            stop_s = 0.0
        await self.timers.sleep(stop_s)
        self._stop_relays(namespace, name)  # after the main containers (1.29+: sidecars stop last)
        code = 143 if stop_s < grace_s else 137
        now = self.timestamp()

        def stopped(pod: Obj) -> None:
            status = pod.setdefault("status", {})
            for cstatus in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
                state = cstatus.get("state") or {}
                if "terminated" not in state:
                    started = (state.get("running") or {}).get("startedAt", now)
                    cstatus["state"] = {
                        "terminated": {"exitCode": code, "reason": "Error", "startedAt": started, "finishedAt": now}
                    }
                    cstatus["ready"], cstatus["started"] = False, False
            if status.get("phase") not in ("Succeeded", "Failed"):
                status["phase"] = "Failed"  # kubelet status manager: a terminated pod is terminal first

        ended = self.mutate_status("pods", namespace, name, stopped)
        self.store.remove("pods", namespace, name)
        if ended is not None:
            self._owner_sees_failed_pod(ended)

    def _owner_sees_failed_pod(self, pod: Obj) -> None:
        """A Job's pod that was stopped (deleted, evicted) ended Failed: its Job counts it as a failed
        pod like any other (the Job controller's pod-tracking finalizer keeps the pod until it is
        counted) — unless the Job itself is being deleted or has finished (:meth:`pod_finished`)."""
        for ref in pod["metadata"].get("ownerReferences") or ():
            if ref.get("kind") == "Job" and ref.get("controller"):
                meta = pod["metadata"]
                self.pod_finished(meta.get("namespace", ""), str(ref["name"]), str(ref["uid"]), False, pod)

    def _stop_relays(self, namespace: str, name: str) -> None:
        """jes's output relay in a pod being deleted: SIGTERM makes it print its report (of the
        file the main container wrote, as far as it did) and exit 0."""
        pod = self.store.get("pods", namespace, name) or {}
        scripts = self._scripts.get((namespace, name), {})
        mains = [c for c in (pod.get("spec") or {}).get("containers") or []]
        main = scripts[mains[0]["name"]][0] if mains and mains[0]["name"] in scripts else Behaviour()
        now = self.timestamp()
        for container in (pod.get("spec") or {}).get("initContainers") or []:
            if not _kubelet.is_relay(container) or not self._running(pod, container["name"]):
                continue
            scripts[container["name"]] = (Behaviour(logs=_kubelet.relay_log(container, main)), True)

            def ended(o: Obj, sidecar: str = container["name"]) -> None:
                for cstatus in (o.get("status") or {}).get("initContainerStatuses") or []:
                    if cstatus.get("name") == sidecar and "running" in (cstatus.get("state") or {}):
                        started = cstatus["state"]["running"].get("startedAt", now)
                        done = {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now}
                        cstatus["state"] = {"terminated": done}
                        cstatus["ready"], cstatus["started"] = False, False

            self.mutate_status("pods", namespace, name, ended)

    @staticmethod
    def _running(pod: Obj, container: str) -> bool:
        status = pod.get("status") or {}
        entries = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        return any(e.get("name") == container and "running" in (e.get("state") or {}) for e in entries)

    def _running_containers(self, namespace: str, name: str, *, relays: bool = True) -> bool:
        pod = self.store.get("pods", namespace, name) or {}
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        skipped = set() if relays else {c["name"] for c in spec.get("initContainers") or [] if _kubelet.is_relay(c)}
        entries = [
            e
            for e in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
            if e.get("name") not in skipped
        ]
        return any("running" in (entry.get("state") or {}) for entry in entries)

    def _finish_foreground(self, owner_uid: str) -> None:
        """Remove an owner being deleted in the foreground once nothing blocks it any more."""
        target = self._foreground.get(owner_uid)
        if target is None:
            return
        plural, namespace, name = target
        for _, dependent in self.store.owned_by(owner_uid, namespace):
            refs = dependent["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion") for r in refs):
                return
        del self._foreground[owner_uid]
        self.store.remove(plural, namespace, name)

    def object_created(self, plural: str, obj: Obj) -> None:
        """The garbage collector on a new object: one whose owners all do not exist (a Job deleted
        before a dependent naming its uid was created) is deleted soon, with a uid precondition
        (``garbagecollector.go``, ``attemptToDeleteItem``: "all owners are absent")."""
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if not refs or any(self._owner_exists(ref, meta.get("namespace", "")) for ref in refs):
            return
        asyncio.get_running_loop().call_soon(self._collect_orphan, plural, meta.get("namespace", ""), meta["name"],
                                             meta["uid"])  # fmt: skip

    def _owner_exists(self, ref: Obj, namespace: str) -> bool:
        try:
            plural = _store.kind_of(str(ref.get("kind") or "")).plural
        except KeyError:
            return True  # a kind the fake does not serve: assume it is there
        owner = self.store.get(plural, namespace, str(ref.get("name") or ""))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def _collect_orphan(self, plural: str, namespace: str, name: str, uid: str) -> None:
        current = self.store.get(plural, namespace, name)
        if current is not None and current["metadata"]["uid"] == uid:
            self.delete(plural, namespace, name, "Background")

    def _delete_dependents(self, uid: str, namespace: str) -> None:
        for plural, dependent in list(self.store.owned_by(uid, namespace)):
            self.delete(plural, namespace, dependent["metadata"]["name"], "Background")

    def _orphan(self, uid: str, namespace: str) -> None:
        for plural, dependent in list(self.store.owned_by(uid, namespace)):

            def strip(o: Obj) -> None:
                refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                o["metadata"]["ownerReferences"] = refs

            self.mutate(plural, namespace, dependent["metadata"]["name"], strip)

    # --- Job controller ------------------------------------------------------------------------

    def job_created(self, job: Obj) -> None:
        meta = job["metadata"]
        self._spawn(meta["uid"], self._run_job(meta["namespace"], meta["name"], meta["uid"]), "fake-job")

    def _job(self, namespace: str, name: str, uid: str) -> Obj | None:
        job = self.store.get("jobs", namespace, name)
        return job if job is not None and job["metadata"]["uid"] == uid else None

    async def _run_job(self, namespace: str, name: str, uid: str) -> None:
        job = self._job(namespace, name, uid)
        if job is None or job["spec"].get("suspend"):
            return
        now = self.timestamp()

        def start(j: Obj) -> None:
            status = j.setdefault("status", {})
            status.setdefault("startTime", now)
            status.setdefault("active", 0)
            status.setdefault("ready", 0)
            status.setdefault("terminating", 0)
            status.setdefault("uncountedTerminatedPods", {})

        self.mutate("jobs", namespace, name, start)
        deadline_s = job["spec"].get("activeDeadlineSeconds")
        if deadline_s is not None:
            self._spawn(uid, self._deadline(namespace, name, uid, float(deadline_s)), "fake-job-deadline")
        await self._create_pod_when_possible(namespace, name, uid)

    async def _create_pod_when_possible(self, namespace: str, name: str, uid: str) -> None:
        backoff_s = 1.0
        while (job := self._job(namespace, name, uid)) is not None:
            spec = job["spec"]["template"].get("spec") or {}
            account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            missing_account = (
                self.check_service_accounts
                and account != "default"
                and self.store.get("serviceaccounts", namespace, account) is None
            )
            if not missing_account:
                self._create_pod(job, f"{name}-{_store.random_suffix()}")
                return
            message = (
                f'Error creating: pods "{name}-" is forbidden: error looking up service account '
                f'{namespace}/{account}: serviceaccount "{account}" not found'
            )
            self.event(job, "Warning", "FailedCreate", message, "job-controller")
            await self.timers.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 10.0)

    def _create_pod(self, job: Obj, pod_name: str) -> None:
        meta = job["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        template = job["spec"]["template"]
        tmeta = template.get("metadata") or {}
        # stored objects are never changed in place: below its top, the pod's spec is the Job's
        spec = dict(template.get("spec") or {})
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("schedulerName", "default-scheduler")
        pod: Obj = {
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        }
        now = self.timestamp()
        created = self.store.create("pods", pod, now)
        self.event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", "job-controller")

        def active(j: Obj) -> None:
            j["status"]["active"] = 1

        self.mutate("jobs", namespace, meta["name"], active)
        scripts: dict[str, tuple[Behaviour, bool]] = {}
        for container in spec.get("initContainers") or []:
            scripts[container["name"]] = (self.behaviour_for(meta["name"], container, True), True)
        for container in spec.get("containers") or []:
            scripts[container["name"]] = (self.behaviour_for(meta["name"], container, False), False)
        self._scripts[(namespace, pod_name)] = scripts
        kubelet = _kubelet.Kubelet(self, namespace, pod_name, meta["name"], uid, scripts)
        self._spawn(created["metadata"]["uid"], kubelet.run(), "fake-kubelet")

    def pod_finished(
        self, namespace: str, job_name: str, job_uid: str, succeeded: bool, pod: Obj | None = None
    ) -> None:
        """The Job controller on a pod of the Job that ended (``pod``: as it ended)."""
        job = self._job(namespace, job_name, job_uid)
        if job is None or _finished(job) or job["metadata"].get("deletionTimestamp"):
            return
        now = self.timestamp()
        if succeeded:

            def complete(j: Obj) -> None:
                status = j["status"]
                status.update(active=0, ready=0, succeeded=status.get("succeeded", 0) + 1, completionTime=now)
                _kubelet.set_condition(status, "SuccessCriteriaMet", "True", now, "CompletionsReached")
                _kubelet.set_condition(
                    status, "Complete", "True", now, "CompletionsReached", "Reached expected number of succeeded pods"
                )

            done = self.mutate("jobs", namespace, job_name, complete)
            self.event(job, "Normal", "Completed", "Job completed", "job-controller")
        else:
            action, message = _match_pod_failure_policy(job["spec"].get("podFailurePolicy"), pod or {})
            if action == "FailJob":
                done = self._fail_job(namespace, job_name, "PodFailurePolicy", message)
                if done is not None:
                    self._after_finish(done)
                return
            failed = (job.get("status") or {}).get("failed", 0) + (0 if action == "Ignore" else 1)
            if failed <= int(job["spec"].get("backoffLimit", 6)):

                def count(j: Obj) -> None:
                    j["status"].update(failed=failed, active=0, ready=0)

                self.mutate("jobs", namespace, job_name, count)
                delay_s = self._pod_backoff_s(namespace, job_uid)
                self._spawn(job_uid, self._retry_pod(namespace, job_name, job_uid, delay_s), "fake-job-retry")
                return
            done = self._fail_job(namespace, job_name, "BackoffLimitExceeded", _BACKOFF_MESSAGE)
        if done is not None:
            self._after_finish(done)

    def _pod_backoff_s(self, namespace: str, job_uid: str) -> float:
        """The delay before the Job's next pod: the base doubled for every failed pod after the first,
        ignored ones too (backoff_utils.go counts every new failed pod), at most 60 times the base."""
        failures = sum(
            1
            for pod in self.store.query("pods", namespace)
            if (pod.get("status") or {}).get("phase") == "Failed"
            and any(r.get("uid") == job_uid for r in pod["metadata"].get("ownerReferences") or ())
        )
        delay_s: float = self.pod_failure_backoff_s * 2 ** max(failures - 1, 0)
        return min(delay_s, self.pod_failure_backoff_s * 60)

    async def _retry_pod(self, namespace: str, name: str, uid: str, delay_s: float) -> None:
        await self.timers.sleep(delay_s)
        await self._create_pod_when_possible(namespace, name, uid)

    def disrupt(self, namespace: str, name: str, reason: str) -> Obj | None:
        """A disruption of a running pod (eviction, preemption, node drain): the ``DisruptionTarget``
        condition, then the pod is stopped gracefully and ends Failed (disruption controller and
        eviction API, pkg/registry/core/pod/storage/eviction.go: condition type DisruptionTarget,
        reason e.g. ``EvictionByEvictionAPI``, message "Eviction API: evicting")."""
        now = self.timestamp()
        messages = {"EvictionByEvictionAPI": "Eviction API: evicting", "PreemptionByScheduler": "preempted"}

        def mark(pod: Obj) -> None:
            status = pod.setdefault("status", {})
            _kubelet.set_condition(status, "DisruptionTarget", "True", now, reason, messages.get(reason, reason))

        if self.mutate_status("pods", namespace, name, mark) is None:
            return None
        return self._delete_pod(namespace, name, None)

    def _fail_job(self, namespace: str, name: str, reason: str, message: str) -> Obj | None:
        now = self.timestamp()

        def fail(j: Obj) -> None:
            status = j.setdefault("status", {})
            status.update(active=0, ready=0, failed=status.get("failed", 0) + 1)
            _kubelet.set_condition(status, "FailureTarget", "True", now, reason, message)
            _kubelet.set_condition(status, "Failed", "True", now, reason, message)

        done = self.mutate("jobs", namespace, name, fail)
        if done is not None:
            self.event(done, "Warning", reason, message, "job-controller")
        return done

    def _after_finish(self, job: Obj) -> None:
        meta = job["metadata"]
        self._cancel(meta["uid"])  # the deadline timer
        ttl_s = job["spec"].get("ttlSecondsAfterFinished")
        if ttl_s is not None:  # due from the finish, not from when the timer's task first runs
            due = self.clock.monotonic() + float(ttl_s)
            self._spawn(meta["uid"], self._ttl(meta["namespace"], meta["name"], meta["uid"], due), "fake-ttl")

    async def _ttl(self, namespace: str, name: str, uid: str, due: float) -> None:
        """The TTL-after-finished controller: Foreground deletion with a UID precondition, ``due``
        (fake monotonic clock) ``ttlSecondsAfterFinished`` after the Job finished."""
        await self.timers.sleep(due - self.clock.monotonic())
        if self._job(namespace, name, uid) is not None:
            asyncio.get_running_loop().call_soon(self.delete, "jobs", namespace, name, "Foreground")

    async def _deadline(self, namespace: str, name: str, uid: str, deadline_s: float) -> None:
        await self.timers.sleep(deadline_s)
        job = self._job(namespace, name, uid)
        if job is None or _finished(job):
            return
        for pod in self.store.query("pods", namespace):
            if any(r.get("uid") == uid for r in pod["metadata"].get("ownerReferences") or ()):
                self._delete_pod(namespace, pod["metadata"]["name"], None)
        done = self._fail_job(namespace, name, "DeadlineExceeded", "Job was active longer than specified deadline")
        if done is not None:
            asyncio.get_running_loop().call_soon(self._after_finish, done)


def _match_pod_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str, str]:
    """(action, message) of the first rule of a Job's ``podFailurePolicy`` that a failed pod matches;
    ("", "") when none does (the failure counts against backoffLimit). As pod_failure_policy.go,
    ``matchPodFailurePolicy``: ``onExitCodes`` looks at terminated containers (then init containers)
    with a non-zero exit code, named ``containerName`` if given, ``In``/``NotIn`` the values;
    ``onPodConditions`` at the pod's conditions of that type and status."""
    status = pod.get("status") or {}
    for index, rule in enumerate((policy or {}).get("rules") or ()):
        action = str(rule.get("action") or "")
        if rule.get("onExitCodes") is not None:
            matched = _matching_container(status, rule["onExitCodes"])
            if matched is not None:
                code = matched["state"]["terminated"]["exitCode"]
                where = f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
                return action, (
                    f"Container {matched['name']} for pod {where} failed with exit code {code} "
                    f"matching {action} rule at index {index}"
                )
        elif rule.get("onPodConditions"):
            for condition in status.get("conditions") or ():
                for pattern in rule["onPodConditions"]:
                    if condition.get("type") == pattern.get("type") and condition.get("status") == pattern.get(
                        "status", "True"
                    ):
                        where = f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
                        return action, (
                            f"Pod {where} has condition {condition['type']} matching {action} rule at index {index}"
                        )
    return "", ""


def _matching_container(status: Obj, requirement: Obj) -> Obj | None:
    for key in ("containerStatuses", "initContainerStatuses"):
        for container in status.get(key) or ():
            terminated = (container.get("state") or {}).get("terminated")
            if terminated is None or not terminated.get("exitCode"):
                continue
            if requirement.get("containerName") not in (None, container.get("name")):
                continue
            inside = terminated["exitCode"] in (requirement.get("values") or ())
            if inside == (requirement.get("operator") == "In"):
                matched: Obj = container
                return matched
    return None


def _writable_copy(status: Any) -> Any:
    """A status whose fields, dicts, and dicts in lists a change may set (see ``mutate``)."""
    if not isinstance(status, dict):
        return _store.clone(status)
    copied: Obj = {}
    for key, value in status.items():
        if isinstance(value, list):
            copied[key] = [dict(item) if isinstance(item, dict) else item for item in value]
        elif isinstance(value, dict):
            copied[key] = dict(value)
        else:
            copied[key] = value
    return copied


def _finished(job: Obj) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or ()
    )
