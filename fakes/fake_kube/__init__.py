"""A fake Kubernetes API server over real HTTP, with a Job controller and a kubelet that follow scripts.

No Kubernetes API server can run where jes is developed and tested, so this one stands in: the
unmodified official ``kubernetes`` client talks to it over loopback HTTP (starlette + uvicorn in a
background thread), and it plays the controllers a real cluster runs. Tests and benchmarks use it::

    from fakes.fake_kube import FakeKube

    with FakeKube() as kube:
        kube.behave(image="busybox:1.36", exit_code=1, logs="boom\\n", duration_s=0.2)
        kube.behave(job="job-a", log_bytes=20_000_000)          # per Job name wins over image
        api = kubernetes.client.BatchV1Api(kubernetes.client.ApiClient(kube.configuration()))
        ...
        kube.objects("jobs", "default")      # deep copies of stored objects
        kube.created_jobs                     # every Job create request body, as sent
        kube.clock.advance(3600)              # jump over deadlines and TTLs
        kube.faults.fail(503, times=3, verb="create", resource="batch/jobs")

**Objects.** Namespaced batch/v1 jobs, v1 pods, events, configmaps, secrets, serviceaccounts,
persistentvolumeclaims and coordination.k8s.io/v1 leases, stored generically with ``uid``,
``resourceVersion`` (one global counter) and ``creationTimestamp``. Verbs: create (409
``AlreadyExists``; 422 ``Invalid`` for bad names, labels and Job specs — including pod volumes:
unique names, exactly one source, mounts that name a volume at a path of their own), get (404
``NotFound``), list (``labelSelector``: ``a=b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``,
``a notin (x)``; ``fieldSelector``: ``path=value``/``!=`` such as
``metadata.name=`` or ``involvedObject.name=``; ``limit``/``continue``), update (a stale
``metadata.resourceVersion`` → 409 ``Conflict``), patch (merge, strategic merge with merge keys for
containers/env/volumes/ownerReferences/conditions, JSON patch; a ``resourceVersion`` in the patch is a
precondition), delete (``propagationPolicy`` Foreground/Background/Orphan — the API default for Jobs
is Orphan — and ``preconditions``; dependents found by ``ownerReferences`` are garbage-collected, so
deleting a Job deletes its pods and the ConfigMaps it owns; an object created with owners that all do
not exist is garbage-collected right after). All error answers carry a real
``Status`` body.

**Watches.** ``?watch=true&resourceVersion=N`` streams JSON lines ADDED/MODIFIED/DELETED (and
BOOKMARK every ``bookmark_interval_s`` with ``allowWatchBookmarks=true``); ``resourceVersion`` unset
or ``0`` starts with the current objects as ADDED; ``timeoutSeconds`` is honoured. History is kept
per kind (``history_size`` events); resuming from before it answers with an ``ERROR`` event whose
Status has code 410 ("too old resource version"). :meth:`FakeKube.expire_watches` forgets the
history at once (and by default ends open streams with that ERROR event).

**Controllers.** A created Job gets ``startTime`` and one pod ``<job>-<5 chars>`` labelled with the
template labels plus ``job-name``/``controller-uid`` (and their ``batch.kubernetes.io/`` forms),
owned by the Job. The pod is scheduled (or stays ``PodScheduled=False``, reason ``Unschedulable``,
with a ``FailedScheduling`` event), waits in ``ContainerCreating``, runs its init containers one by
one, then its containers, and ends ``Succeeded`` or ``Failed`` with terminated states (``exitCode``,
``reason`` ``Completed``/``Error``/``OOMKilled``, ``message``). The Job then gets ``Complete``
(after ``SuccessCriteriaMet``) with ``completionTime`` and ``succeeded``, or — once ``backoffLimit``
retries are used — ``FailureTarget`` + ``Failed`` (``BackoffLimitExceeded``) and ``failed``. A failed
pod is replaced after the controller's back-off (``pod_failure_backoff_s``, 10 s as in Kubernetes,
doubling per failure; on the fake clock, so a test can ``advance`` over it). A ``podFailurePolicy`` is
followed: a ``FailJob`` rule fails the Job at once (reason ``PodFailurePolicy``), an ``Ignore`` rule
replaces the pod without counting it in ``failed``. A pod deleted or disrupted
(:meth:`FakeKube.disrupt`: condition ``DisruptionTarget``) while running ends ``Failed`` and counts
as a failed pod of its Job.
``activeDeadlineSeconds`` fails it with ``DeadlineExceeded`` and deletes its pods;
``ttlSecondsAfterFinished`` deletes it (foreground). Automatic problems, each with the event a real
cluster records: a container image that is not a valid reference → ``InvalidImageName``; an
``envFrom.secretRef``/``configMapRef`` or ``secretKeyRef``/``configMapKeyRef`` naming a missing
object or key → ``CreateContainerConfigError`` (``secret "x" not found``, ``couldn't find key k in
Secret ns/x``), the pod ``Pending``, tried again every ``config_retry_s`` (fake clock; a real
kubelet's pod worker backs off 10 s) until the object appears, then the container starts; a missing
ConfigMap/Secret volume → stuck in ``ContainerCreating`` with ``FailedMount``; a
``persistentVolumeClaim`` naming a claim that does not exist in the pod's namespace → the pod stays
``PodScheduled=False``/``Unschedulable`` with ``FailedScheduling`` ``persistentvolumeclaim "x" not
found`` (the scheduler's VolumeBinding plugin), tried again every ``config_retry_s`` until it exists; with
``check_service_accounts=True`` a missing ``serviceAccountName`` (other than ``default``) → no pod,
a repeated ``FailedCreate`` event on the Job.

**Scripts.** :meth:`FakeKube.behave` registers a :class:`Behaviour` per Job name (main containers)
or per image (any container; ``busybox`` also matches ``busybox:1.36``). Init containers without an
image script follow the ``init_*`` fields of the Job's (or the default) script. Fields: ``exit_code``,
``logs``, ``log_bytes`` (lazily generated filler: 200 MB cost no memory), ``log_tail``,
``duration_s``, ``pending_s``, ``message``, ``oom_killed``, ``image_pull`` (``"ErrImagePull"``,
which turns into ``ImagePullBackOff`` after ``image_backoff_s``, or ``"InvalidImageName"``),
``unschedulable``, ``never_start``, ``init_exit_code``, ``init_logs``, ``init_message``,
``init_duration_s``. :meth:`FakeKube.behave_attempts` gives a Job's successive pods different
scripts. The log endpoint (``GET .../pods/{name}/log?container=&follow=&timestamps=
&limitBytes=&tailLines=``) streams the script's output chunked; a container that has not started
answers 400 "is waiting to start", as Kubernetes does.

**Faults.** ``kube.faults`` (:class:`Faults`): ``fail(status, times=, verb=, resource=, namespace=,
name=, commit=)`` (5xx, 404, 409 ``AlreadyExists``...; ``commit=True`` carries the request out
first — a lost response), ``throttle(retry_after_s=)`` (429 with ``Retry-After``),
``forbid(verb, resource, namespace)`` (403 with RBAC's message and ``reason: Forbidden``),
``latency(seconds)``, ``drop()`` (the connection breaks after the headers), ``clear()``. Verbs are
RBAC verbs (get, list, watch, create, update, patch, delete); resources plural, with or without
group (``batch/jobs``) or subresource (``pods/log``).

**Time.** ``kube.clock.advance(s)`` moves the fake clock: timers due by then (pod durations,
deadlines, TTLs, image pull back-off) fire at once, and timestamps move along.

**Inspection.** :meth:`~FakeKube.objects`, :meth:`~FakeKube.get`, :meth:`~FakeKube.put`,
:meth:`~FakeKube.delete`, :meth:`~FakeKube.events`, :attr:`~FakeKube.created_jobs`,
:meth:`~FakeKube.request_count` (by verb and resource), :meth:`~FakeKube.open_watches`,
:meth:`~FakeKube.job_finished_at` (the wall-clock moment the Job controller marked each Job
``Complete`` or ``Failed``: the source end of the benchmarks' completion latency);
:meth:`~FakeKube.reset` empties the cluster for the next test without restarting the server.

Everything runs on the server's own event loop; the methods here are thread-safe and may be called
from a test's event loop (they block for the few microseconds a store operation takes).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client
import yaml

from fakes.fake_kube import _cluster, _faults, _http, _routes, _store, _wire
from fakes.fake_kube._behaviour import Behaviour
from fakes.fake_kube._faults import Fault, Faults
from jes.devtools.doubles.clock import FakeClock
from jes.devtools.doubles.server import ThreadedServer

__all__ = ["Behaviour", "FakeClock", "FakeKube", "Fault", "Faults"]

T = TypeVar("T")
Obj = dict[str, Any]


def _image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


class FakeKube:
    """The fake API server; a context manager (``with FakeKube() as kube``)."""

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        check_service_accounts: bool = False,
        history_size: int = 20_000,
        bookmark_interval_s: float = 1.0,
        image_backoff_s: float = 0.2,
        config_retry_s: float = 10.0,
        pod_failure_backoff_s: float = 10.0,
        start_timeout_s: float = 10.0,
        container_log_max_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.default = default or Behaviour()
        self.container_log_max_bytes = container_log_max_bytes
        self._initial_default = self.default
        self.check_service_accounts = check_service_accounts
        self.history_size = history_size
        self.bookmark_interval_s = bookmark_interval_s
        self.image_backoff_s = image_backoff_s
        self.config_retry_s = config_retry_s
        self.pod_failure_backoff_s = pod_failure_backoff_s
        self.start_timeout_s = start_timeout_s
        self.clock = FakeClock(ticking=True)
        self.faults = Faults()
        self.created_jobs: list[Obj] = []
        self.native_sidecars = True
        """False: the API server drops ``initContainers[].restartPolicy`` (Kubernetes before 1.29)."""
        """Every Job create request body as the client sent it (also rejected or duplicate ones)."""
        self._by_job: dict[str, Behaviour] = {}
        self._by_image: dict[str, Behaviour] = {}
        self._by_attempt: dict[str, list[Behaviour]] = {}
        self._pods_of: dict[str, int] = {}
        self._server = ThreadedServer(
            self._build,
            name="fake-kube",
            start_timeout_s=start_timeout_s,
            on_exit=self._cancel_controllers,
            http=_wire.LeanHttpProtocol,
            timeout_keep_alive=30,
        )
        self._store: _store.Store | None = None
        self._cluster: _cluster.Cluster | None = None
        self._api: _http.Api | None = None
        self._drop_filter = _faults.DropFilter()
        self._finished_at: dict[tuple[str, str], float] = {}
        """(namespace, Job name) → ``time.time()`` when the Job first got Complete/Failed=True."""

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeKube:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        logging.getLogger("uvicorn.error").addFilter(self._drop_filter)
        self._server.start()

    def stop(self) -> None:
        loop, api = self._server.loop, self._api
        if loop is not None and api is not None and loop.is_running():
            loop.call_soon_threadsafe(api.close_watches)
        self._server.stop(timeout_s=10)
        logging.getLogger("uvicorn.error").removeFilter(self._drop_filter)

    def reset(self) -> None:
        """A fresh, empty cluster on the same server: objects, history, scripts, faults, counters,
        recorded Jobs and the clock offset are all forgotten; open watches are ended."""
        store, cluster, api = self._parts()
        self.faults.clear()
        self._by_job.clear()
        self._by_image.clear()
        self._by_attempt.clear()
        self._pods_of.clear()
        self.default = self._initial_default
        self.native_sidecars = True
        self.created_jobs.clear()

        def reset() -> None:
            api.close_watches()
            cluster.reset()
            store.clear()
            api.requests.clear()
            self._finished_at.clear()

        self._call(reset)
        self.clock.reset()

    def _build(self) -> _routes.Router:
        """The store, the controllers and the HTTP API, made on the server's loop (its only thread)."""
        store = _store.Store(history_size=self.history_size)
        store.listeners.append(self._note_finished)
        timers = _cluster.Timers(self.clock, asyncio.get_running_loop())
        cluster = _cluster.Cluster(
            store,
            self.clock,
            timers,
            self._behaviour_for,
            check_service_accounts=self.check_service_accounts,
            image_backoff_s=self.image_backoff_s,
            config_retry_s=self.config_retry_s,
            pod_failure_backoff_s=self.pod_failure_backoff_s,
        )
        api = _http.Api(
            store,
            cluster,
            self.faults,
            bookmark_interval_s=self.bookmark_interval_s,
            container_log_max_bytes=self.container_log_max_bytes,
            on_job_create=self.created_jobs.append,
            native_sidecars=lambda: self.native_sidecars,
        )
        self._store, self._cluster, self._api = store, cluster, api
        return api.app

    def _cancel_controllers(self) -> None:
        if self._cluster is not None:
            self._cluster.cancel_all()

    def store_listener(self, listener: Callable[[str, str, Obj], None]) -> None:
        """Call ``listener(plural, ADDED|MODIFIED|DELETED, object)`` on every change (on the server's
        thread; keep it short): to see states a test would miss by polling."""
        self._call(lambda: self._parts()[0].listeners.append(listener))

    def _note_finished(self, plural: str, event_type: str, obj: Obj) -> None:
        """Store listener (server loop): remember when a Job first became Complete or Failed."""
        if plural != "jobs" or event_type == "DELETED":
            return
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if key in self._finished_at:
            return
        conditions = (obj.get("status") or {}).get("conditions") or ()
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            self._finished_at[key] = time.time()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (the store's only thread) and return its result."""
        if self._server.loop is None:
            raise RuntimeError("FakeKube is not running (use it as a context manager)")
        return self._server.call(fn)

    # --- client configuration -------------------------------------------------------------------

    def configuration(self) -> kubernetes.client.Configuration:
        """A client configuration pointing at this server (its token, a roomy connection pool)."""
        config = kubernetes.client.Configuration(host=self.url, api_key={"authorization": _http.TOKEN})
        config.api_key_prefix = {"authorization": "Bearer"}
        config.connection_pool_maxsize = 64
        return config

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.configuration())

    def kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig file for this server (context ``fake``) and return its path."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": _http.TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(document))
        return target

    # --- scripts ----------------------------------------------------------------------------------

    def behave(self, *, image: str | None = None, job: str | None = None, **script: Any) -> Behaviour:
        """Register what containers do: per Job name, per image, or (neither) the default."""
        if image is not None and job is not None:
            raise ValueError("behave() takes image= or job=, not both")
        behaviour = Behaviour(**script)
        if job is not None:
            self._by_job[job] = behaviour
        elif image is not None:
            self._by_image[image] = behaviour
        else:
            self.default = behaviour
        return behaviour

    def behave_attempts(self, job: str, *scripts: Mapping[str, Any]) -> list[Behaviour]:
        """Per pod of a Job (of one container): its first pod follows the first script, the second
        pod the second..., later pods the last one (a task that fails, then succeeds on a retry)."""
        behaviours = [Behaviour(**script) for script in scripts]
        self._by_attempt[job] = behaviours
        self._by_job[job] = behaviours[0]
        return behaviours

    def disrupt(self, namespace: str, pod: str, *, reason: str = "EvictionByEvictionAPI") -> bool:
        """Disrupt a pod as an eviction or preemption does: it gets the ``DisruptionTarget``
        condition and is stopped gracefully; its Job sees it fail (False: no such pod)."""
        cluster = self._parts()[1]
        return self._call(lambda: cluster.disrupt(namespace, pod, reason)) is not None

    def _behaviour_for(self, job_name: str, container: Obj, init: bool) -> Behaviour:
        if not init and job_name in self._by_attempt:
            attempt = self._pods_of.get(job_name, 0)
            self._pods_of[job_name] = attempt + 1
            scripts = self._by_attempt[job_name]
            return scripts[min(attempt, len(scripts) - 1)]
        image = container.get("image", "")
        by_image = self._by_image.get(image) or self._by_image.get(_image_repository(image))
        if init:
            return by_image or (self._by_job.get(job_name) or self.default).init_part()
        return self._by_job.get(job_name) or by_image or self.default

    # --- objects ----------------------------------------------------------------------------------

    def _parts(self) -> tuple[_store.Store, _cluster.Cluster, _http.Api]:
        if self._store is None or self._cluster is None or self._api is None:
            raise RuntimeError("FakeKube is not running (use it as a context manager)")
        return self._store, self._cluster, self._api

    def objects(self, kind: str, namespace: str | None = None, *, labels: str = "") -> list[Obj]:
        """Deep copies of the stored objects of a kind (``"jobs"``, ``"Pod"``, ``"leases"``...)."""
        store = self._parts()[0]
        plural = _store.kind_of(kind).plural
        selector = _store.label_selector(labels)
        return self._call(lambda: _store.clone(store.query(plural, namespace, labels=selector)))

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        store = self._parts()[0]
        plural = _store.kind_of(kind).plural
        return self._call(lambda: _store.clone(store.get(plural, namespace, name)))

    def put(self, obj: Mapping[str, Any]) -> Obj:
        """Create ``obj`` (its ``kind`` and ``metadata.namespace`` say where), or replace it."""
        store, cluster, _ = self._parts()
        body: Obj = _store.clone(dict(obj))
        plural = _store.kind_of(body["kind"]).plural
        body.setdefault("metadata", {}).setdefault("namespace", "default")
        if plural == "secrets":
            _http.default_secret(body)

        def put() -> Obj:
            meta = body["metadata"]
            current = store.get(plural, meta["namespace"], meta["name"])
            if current is not None:
                for key in ("uid", "creationTimestamp"):
                    meta[key] = current["metadata"][key]
                return _store.clone(store.update(plural, body))
            uid = _store.new_uid()
            if plural == "jobs":
                _http.default_job(body, uid)
            created = store.create(plural, body, cluster.timestamp(), uid=uid)
            if plural == "jobs":
                cluster.job_created(created)
            return _store.clone(created)

        return self._call(put)

    def delete(self, kind: str, namespace: str, name: str, *, propagation: str | None = None) -> bool:
        """Delete like the API would (with garbage collection); False if it did not exist."""
        cluster = self._parts()[1]
        plural = _store.kind_of(kind).plural
        return self._call(lambda: cluster.delete(plural, namespace, name, propagation)) is not None

    def add_secret(self, name: str, namespace: str = "default", data: Mapping[str, str] | None = None) -> Obj:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in (data or {}).items()}
        return self.put({"kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded})

    def add_service_account(self, name: str, namespace: str = "default") -> Obj:
        return self.put({"kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})

    def events(self, namespace: str, involved: str | None = None) -> list[Obj]:
        """Kubernetes Events in a namespace, optionally only those about the named object."""
        found = self.objects("events", namespace)
        return [e for e in found if involved is None or e["involvedObject"]["name"] == involved]

    # --- watches and counters ---------------------------------------------------------------------

    def expire_watches(self, kind: str | None = None, *, close: bool = True) -> None:
        """Forget the watch history (resuming from before now → 410 Gone); end open streams too."""
        store, _, api = self._parts()
        plurals = [_store.kind_of(kind).plural] if kind else list(_store.KINDS)

        def expire() -> None:
            for plural in plurals:
                store.expire(plural)
                if close:
                    api.close_watches(plural, expired=True)

        self._call(expire)

    def close_watches(self, kind: str | None = None) -> None:
        """End open watch streams cleanly (as the server does at ``timeoutSeconds``)."""
        api = self._parts()[2]
        plural = _store.kind_of(kind).plural if kind else None
        self._call(lambda: api.close_watches(plural))

    def open_watches(self, kind: str, namespace: str | None = None) -> int:
        """How many watch streams of a kind are open (in a namespace, or in all)."""
        store = self._parts()[0]
        plural = _store.kind_of(kind).plural
        return self._call(
            lambda: sum(1 for w in store.watchers[plural] if namespace is None or w.namespace == namespace)
        )

    def job_finished_at(self, namespace: str | None = None) -> dict[str, float]:
        """When each Job was marked finished, as ``time.time()`` (wall clock, sub-millisecond), by
        Job name (in one namespace) or ``namespace/name`` (all namespaces).

        Recorded the moment the Job controller stores the Job with a ``Complete`` or ``Failed``
        condition that is ``True`` — before any watch or GET can see it — so a client's reaction
        time can be measured from the source. Forgotten by :meth:`reset`, kept when the Job is
        deleted."""
        found = self._call(lambda: dict(self._finished_at))
        if namespace is None:
            return {f"{ns}/{name}": at for (ns, name), at in found.items()}
        return {name: at for (ns, name), at in found.items() if ns == namespace}

    def unauthorized(self) -> dict[str, int]:
        """Requests refused for their credentials (401), by path."""
        prefix = "unauthorized "
        return {key[len(prefix) :]: n for key, n in self.request_counts().items() if key.startswith(prefix)}

    def request_counts(self) -> dict[str, int]:
        """Requests served so far, by ``"verb resource"`` (``"create batch/jobs"``, ``"watch pods"``)."""
        api = self._parts()[2]
        counts = self._call(lambda: dict(api.requests))
        return {f"{verb} {resource}": n for (verb, resource), n in sorted(counts.items())}

    def request_count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests served so far by RBAC verb and resource (``pods/log``); None matches all."""
        api = self._parts()[2]
        wanted = _faults.normal_resource(resource)
        counts = self._call(lambda: dict(api.requests))
        return sum(n for (v, r), n in counts.items() if (verb is None or v == verb) and (wanted is None or r == wanted))
