"""The fake API server's HTTP surface (starlette): routing, verbs, watches, logs, fault injection."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fakes.fake_kube import _cluster, _faults, _store
from fakes.fake_kube._routes import Route, Router, StreamingResponse

Obj = _store.Obj

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ITEM = ["GET", "PUT", "PATCH", "DELETE"]
_STATUS = ["GET", "PUT", "PATCH"]
SERVICE_ACCOUNT_USER = "system:serviceaccount:keptn:job-executor-service"


# ---------------------------------------------------------------------------------------------
# Helpers


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_store.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def _stored(text: str, status: int = 200) -> Response:
    """An answer carrying stored objects, already encoded."""
    return Response(text.encode(), status_code=status, media_type="application/json")


#: The bearer token the fake API server accepts (in its kubeconfig and client configuration).
TOKEN = "fake-token"


def _key(obj: Obj) -> str:
    """An object's place in a list (etcd's key order: namespace, then name)."""
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> Response:
    return _json(_store.status_body(code, reason, message, details), code)


def _details(kind: _store.Kind, name: str | None) -> Obj:
    details: Obj = {"group": kind.group, "kind": kind.plural}
    if name:
        details["name"] = name
    return details


def _not_found(kind: _store.Kind, name: str) -> Response:
    return _status(404, "NotFound", f'{kind.resource} "{name}" not found', _details(kind, name))


def _conflict(kind: _store.Kind, name: str, why: str) -> Response:
    message = f'Operation cannot be fulfilled on {kind.resource} "{name}": {why}'
    return _status(409, "Conflict", message, _details(kind, name))


_STALE = "the object has been modified; please apply your changes to the latest version and try again"


def _invalid(kind: _store.Kind, name: str, causes: list[tuple[str, str]]) -> Response:
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    details = _details(kind, name) | {
        "kind": kind.kind,
        "causes": [{"reason": _cause_reason(m), "message": m, "field": f} for f, m in causes],
    }
    group = f".{kind.group}" if kind.group else ""
    return _status(422, "Invalid", f'{kind.kind}{group} "{name}" is invalid: {text}', details)


def _cause_reason(message: str) -> str:
    return "FieldValueTooLong" if message.startswith("Too long") else "FieldValueInvalid"


# The API server's limits (k8s.io/apiserver and k8s.io/apimachinery, 1.32+ wording of field.TooLong):
#: ``MaxRequestBodyBytes`` in apiserver ``server/config.go``: bigger bodies get 413.
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
#: etcd's default request limit (1.5 MiB): bigger objects fail with a 500 from the storage layer.
MAX_STORED_OBJECT_BYTES = 1536 * 1024
#: ``TotalAnnotationSizeLimitB`` in apimachinery ``api/validation/objectmeta.go``: keys + values.
MAX_ANNOTATIONS_BYTES = 256 * 1024
#: ``MaxSecretSize`` in ``core/v1/types.go``: the data of a ConfigMap or Secret.
MAX_CONFIG_DATA_BYTES = 1024 * 1024


def _too_long(limit: int) -> str:
    return f"Too long: may not be more than {limit} bytes"


def _validate_size(kind: _store.Kind, obj: Obj) -> list[tuple[str, str]]:
    """What the API server's validation refuses for size (422 ``Invalid``)."""
    causes = []
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if sum(len(str(k)) + len(str(v)) for k, v in annotations.items()) > MAX_ANNOTATIONS_BYTES:
        causes.append(("metadata.annotations", _too_long(MAX_ANNOTATIONS_BYTES)))
    if kind.plural == "configmaps":
        size = sum(len(str(v).encode()) for v in (obj.get("data") or {}).values())
        size += sum(len(_decoded(v)) for v in (obj.get("binaryData") or {}).values())
        if size > MAX_CONFIG_DATA_BYTES:  # validation.ValidateConfigMap: the whole object, field ""
            causes.append(("[]", _too_long(MAX_CONFIG_DATA_BYTES)))
    if kind.plural == "secrets":
        size = sum(len(_decoded(v)) for v in (obj.get("data") or {}).values())
        size += sum(len(str(v).encode()) for v in (obj.get("stringData") or {}).values())
        if size > MAX_CONFIG_DATA_BYTES:
            causes.append(("data", _too_long(MAX_CONFIG_DATA_BYTES)))
    return causes


def _decoded(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except (ValueError, binascii.Error):
        return str(value).encode()


def _too_large_for_etcd(obj: Obj) -> Response | None:
    """Objects above etcd's request limit pass validation and fail in storage: the API server
    does not map that error, so clients get a 500 with etcd's words (kubernetes#112152)."""
    if len(_store.dumps(obj)) <= MAX_STORED_OBJECT_BYTES:
        return None
    return _status(500, "", "etcdserver: request is too large")


def _fault_response(
    fault: _faults.Fault, kind: _store.Kind, verb: str, namespace: str | None, name: str | None
) -> Response:
    if fault.drop:
        return _faults.DropResponse()
    code = fault.status
    if code == 403:
        subject = f'{kind.resource} "{name}"' if name else kind.resource
        resource = kind.plural
        message = fault.message or (
            f'{subject} is forbidden: User "{SERVICE_ACCOUNT_USER}" cannot {verb} resource "{resource}" '
            f'in API group "{kind.group}"'
            + (f' in the namespace "{namespace}"' if namespace else " at the cluster scope")
        )
        return _status(403, "Forbidden", message, _details(kind, name))
    if code == 429:
        headers = {"Retry-After": str(max(1, round(fault.retry_after_s or 1)))}
        body = _store.status_body(429, "TooManyRequests", fault.message or "Too many requests, please try again later.")
        body["details"] = {"retryAfterSeconds": int(headers["Retry-After"])}
        return _json(body, 429, headers)
    if code == 409:
        target = name or "object"
        message = fault.message or f'{kind.resource} "{target}" already exists'
        return _status(409, "AlreadyExists", message, _details(kind, name))
    if code == 404:
        return _not_found(kind, name or "")
    reasons = {500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout", 502: "InternalError"}
    reason = reasons.get(code, "InternalError" if code >= 500 else "BadRequest")
    return _status(code, reason, fault.message or f"fake fault: {code}")


def _validate_meta(kind: _store.Kind, meta: Obj) -> list[tuple[str, str]]:
    name = meta.get("name", "")
    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        )
    elif kind.plural == "jobs" and len(name) > 63:
        causes.append(("metadata.name", f'Invalid value: "{name}": must be no more than 63 characters'))
    for key, value in (meta.get("labels") or {}).items():
        causes += _label_key_causes(key)
        if not isinstance(value, str):
            causes.append((f"metadata.labels: Invalid value: {value!r}", "a valid label must be 63 characters or less"))
        else:
            causes += _label_value_causes(value)
    return causes


@functools.lru_cache(maxsize=4096)
def _label_key_causes(key: str) -> tuple[tuple[str, str], ...]:
    """What validation says about a label's key (the same few keys come again and again)."""
    prefix, _, short = key.rpartition("/")
    if not _LABEL_NAME.match(short) or (prefix and not _DNS_SUBDOMAIN.match(prefix)):
        return ((f"metadata.labels: Invalid value: {key!r}", "name part must consist of alphanumerics"),)
    return ()


@functools.lru_cache(maxsize=4096)
def _label_value_causes(value: str) -> tuple[tuple[str, str], ...]:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return ((f"metadata.labels: Invalid value: {value!r}", "a valid label must be 63 characters or less"),)
    return ()


def _validate_job(job: Obj) -> list[tuple[str, str]]:
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    causes = []
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(("spec.template.spec.restartPolicy", 'Required value: valid values: "OnFailure", "Never"'))
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("spec.template.spec.containers", "Required value"))
    for i, container in enumerate([*containers, *(spec.get("initContainers") or [])]):
        if not container.get("name") or not _DNS_LABEL.match(container["name"]):
            causes.append((f"spec.template.spec.containers[{i}].name", "Invalid value: must be a DNS-1123 label"))
        if not container.get("image"):
            causes.append((f"spec.template.spec.containers[{i}].image", "Required value"))
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if policy is not None:
        names = {c.get("name") for c in [*containers, *(spec.get("initContainers") or [])]}
        causes += _pod_failure_policy_problems(policy, spec.get("restartPolicy"), names)
    return causes + _validate_volumes(spec)


def _validate_volumes(spec: Obj) -> list[tuple[str, str]]:
    """``ValidateVolumes`` and ``ValidateVolumeMounts`` (``pkg/apis/core/validation/validation.go``):
    volume names are unique DNS-1123 labels with exactly one source ("must specify a volume type",
    "may not specify more than 1 volume type" at the second source), and each container's mounts
    name a volume of the pod at a path of their own."""
    causes: list[tuple[str, str]] = []
    names: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        where, name = f"spec.template.spec.volumes[{i}]", volume.get("name", "")
        if not name or not _DNS_LABEL.match(name):
            causes.append((f"{where}.name", f'Invalid value: "{name}": must be a DNS-1123 label'))
        elif name in names:
            causes.append((f"{where}.name", f'Duplicate value: "{name}"'))
        names.add(name)
        sources = [key for key in volume if key != "name"]
        if not sources:
            causes.append((where, "Required value: must specify a volume type"))
        for extra in sources[1:]:
            causes.append((f"{where}.{extra}", "Forbidden: may not specify more than 1 volume type"))
    for group in ("containers", "initContainers"):
        for c, container in enumerate(spec.get(group) or []):
            paths: set[str] = set()
            for m, mount in enumerate(container.get("volumeMounts") or []):
                where = f"spec.template.spec.{group}[{c}].volumeMounts[{m}]"
                if mount.get("name") not in names:
                    causes.append((f"{where}.name", f'Not found: "{mount.get("name", "")}"'))
                path = mount.get("mountPath", "")
                if not path:
                    causes.append((f"{where}.mountPath", "Required value"))
                elif path in paths:
                    causes.append((f"{where}.mountPath", f'Invalid value: "{path}": must be unique'))
                paths.add(path)
    return causes


def _pod_failure_policy_problems(policy: Obj, restart_policy: Any, names: set[Any]) -> list[tuple[str, str]]:
    """What batch validation.go (``validatePodFailurePolicy`` and its rules) refuses."""
    causes = []
    if restart_policy != "Never":
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                'Invalid value: only "Never" is supported when podFailurePolicy is specified',
            )
        )
    for i, rule in enumerate(policy.get("rules") or ()):
        path = f"spec.podFailurePolicy.rules[{i}]"
        if rule.get("action") not in ("Count", "FailIndex", "FailJob", "Ignore"):
            causes.append((f"{path}.action", "Unsupported value"))
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (not conditions):
            causes.append((path, "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"))
        if codes is None:
            continue
        values = list(codes.get("values") or ())
        if codes.get("containerName") is not None and codes["containerName"] not in names:
            causes.append(
                (
                    f"{path}.onExitCodes.containerName",
                    "Invalid value: must be one of the container or initContainer names in the pod template",
                )
            )
        if codes.get("operator") not in ("In", "NotIn"):
            causes.append((f"{path}.onExitCodes.operator", 'Unsupported value: supported values: "In", "NotIn"'))
        if not values or len(values) > 255 or len(set(values)) != len(values) or values != sorted(values):
            causes.append((f"{path}.onExitCodes.values", "Invalid value: at least one, at most 255, unique, ordered"))
        if codes.get("operator") == "In" and 0 in values:
            causes.append((f"{path}.onExitCodes.values", "Invalid value: must not be 0 for the In operator"))
    return causes


def default_job(job: Obj, uid: str) -> None:
    meta, spec = job["metadata"], job.setdefault("spec", {})
    for key, value in (
        ("backoffLimit", 6),
        ("completions", 1),
        ("parallelism", 1),
        ("completionMode", "NonIndexed"),
        ("suspend", False),
        ("podReplacementPolicy", "TerminatingOrFailed"),
    ):
        spec.setdefault(key, value)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": uid,
            "job-name": meta["name"],
        }
    )
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("schedulerName", "default-scheduler")
    for container in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = container.get("image", "")
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    job["status"] = {}


def drop_sidecar_restart_policy(job: Obj) -> None:
    """What an API server without native sidecars does with ``initContainers[].restartPolicy``: it
    drops the field (before 1.28 an unknown field; in 1.28 with the SidecarContainers gate off,
    ``dropDisabledFields`` in ``pkg/api/pod/util.go`` clears it) — the init container then has to
    run to completion before the main container starts."""
    for container in ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("initContainers") or []:
        container.pop("restartPolicy", None)


def default_secret(secret: Obj) -> None:
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {}) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    secret["data"] = data
    secret.setdefault("type", "Opaque")


def _query_flag(request: Request, key: str) -> bool:
    return request.query_params.get(key, "").lower() in ("true", "1")


# ---------------------------------------------------------------------------------------------
# The application


@dataclass(frozen=True)
class Target:
    kind: _store.Kind
    namespace: str | None
    name: str | None
    sub: str

    @property
    def resource(self) -> str:
        return f"{self.kind.plural}/{self.sub}" if self.sub else self.kind.plural


class Api:
    """Request handlers over a :class:`_store.Store` and a :class:`_cluster.Cluster`."""

    def __init__(
        self,
        store: _store.Store,
        cluster: _cluster.Cluster,
        faults: _faults.Faults,
        *,
        bookmark_interval_s: float,
        on_job_create: Callable[[Obj], None],
        container_log_max_bytes: int = 10 * 1024 * 1024,
        native_sidecars: Callable[[], bool] = lambda: True,
    ) -> None:
        self.native_sidecars = native_sidecars
        self.container_log_max_bytes = container_log_max_bytes
        self.store = store
        self.cluster = cluster
        self.faults = faults
        self.bookmark_interval_s = bookmark_interval_s
        self.on_job_create = on_job_create
        self.requests: Counter[tuple[str, str]] = Counter()
        routes = [
            Route("/version", self.version, methods=["GET"]),
            Route("/api/v1/namespaces/{namespace}/pods/{name}/log", self.handle, methods=["GET"]),
            Route("/api/v1/namespaces/{namespace}/{plural}", self.handle, methods=["GET", "POST"]),
            Route("/api/v1/namespaces/{namespace}/{plural}/{name}", self.handle, methods=_ITEM),
            Route("/api/v1/namespaces/{namespace}/{plural}/{name}/status", self.handle, methods=_STATUS),
            Route("/api/v1/{plural}", self.handle, methods=["GET"]),
            Route("/apis/{group}/{version}/namespaces/{namespace}/{plural}", self.handle, methods=["GET", "POST"]),
            Route("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", self.handle, methods=_ITEM),
            Route(
                "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status", self.handle, methods=_STATUS
            ),
            Route("/apis/{group}/{version}/{plural}", self.handle, methods=["GET"]),
        ]
        self.app = Router(routes)

    async def version(self, request: Request) -> Response:
        return _json({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"})

    def _target(self, request: Request) -> Target | None:
        params = request.path_params
        path = request.scope["path"]
        if path.endswith("/log") and "plural" not in params:
            return Target(_store.KINDS["pods"], params["namespace"], params["name"], "log")
        kind = _store.KINDS.get(params["plural"])
        if kind is None or kind.group != params.get("group", "") or kind.version != params.get("version", "v1"):
            return None
        sub = "status" if path.endswith("/status") else ""
        return Target(kind, params.get("namespace"), params.get("name"), sub)

    @staticmethod
    def _verb(request: Request, target: Target) -> str:
        method = request.method
        if method == "GET":
            if target.name:
                return "get"
            return "watch" if _query_flag(request, "watch") else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]

    async def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            # kube-apiserver's answer to a request whose credentials no authenticator accepts
            # (k8s.io/apiserver endpoints/handlers/responsewriters: Status "Unauthorized", 401)
            self.requests[("unauthorized", request.scope["path"])] += 1
            return _status(401, "Unauthorized", "Unauthorized")
        target = self._target(request)
        if target is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        verb = self._verb(request, target)
        self.requests[(verb, target.resource)] += 1
        latency_s, fault = self.faults.take(verb, target.resource, target.namespace, target.name)
        if latency_s:
            await asyncio.sleep(latency_s)
        if fault is not None and not fault.commit:
            return _fault_response(fault, target.kind, verb, target.namespace, target.name)
        response = await self._serve(request, target, verb)
        if fault is not None:
            return _fault_response(fault, target.kind, verb, target.namespace, target.name)
        return response

    async def _serve(self, request: Request, target: Target, verb: str) -> Response:
        if target.sub == "log":
            return self.logs(request, target)
        if verb == "get":
            obj = self.store.get(target.kind.plural, target.namespace or "", target.name or "")
            return self._stored(obj) if obj is not None else _not_found(target.kind, target.name or "")
        if verb in ("list", "watch"):
            return self.collection(request, target, verb == "watch")
        body = await request.body()
        if len(body) > MAX_REQUEST_BODY_BYTES:
            message = f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}"
            return _status(413, "RequestEntityTooLarge", message)
        payload = json.loads(body) if body else None
        if verb == "create":
            return self.create(request, target, payload)
        if verb == "update":
            return self.update(target, payload)
        if verb == "patch":
            return self.patch(request, target, payload)
        return self.delete(request, target, payload)

    # --- reads ---------------------------------------------------------------------------------

    def collection(self, request: Request, target: Target, watch: bool) -> Response:
        query = request.query_params
        labels = _store.label_selector(query.get("labelSelector"))
        fields = _store.field_selector(query.get("fieldSelector"))
        if watch:
            return self.watch(request, target, labels, fields)
        items = self.store.query(target.kind.plural, target.namespace, labels=labels, fields=fields)
        meta: Obj = {"resourceVersion": self.store.now_rv()}
        limit = int(query.get("limit") or 0)
        if limit:
            # As kube-apiserver (storage/etcd3): items in key order, the token names the revision
            # of the first page and the last key given; once the store compacted past that revision
            # the answer is 410 Expired ("The provided continue parameter is too old"). Later
            # pages are cut from the current items, not from that revision's snapshot (objects
            # changed meanwhile show as they are now; none before the last key is skipped).
            first_rv, _, after = (query.get("continue") or f"{meta['resourceVersion']}:").partition(":")
            if int(first_rv) < self.store.compacted[target.kind.plural]:
                message = "The provided continue parameter is too old to display a consistent list result."
                return _status(410, "Expired", message + " You can start a new list without the continue parameter.")
            items = sorted(items, key=_key)
            items = [item for item in items if _key(item) > after] if after else items
            if len(items) > limit:
                meta["continue"] = f"{first_rv}:{_key(items[limit - 1])}"
            items = items[:limit]
        kind = target.kind
        head = _store.dumps({"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta}).decode()
        encoded = ",".join(self.store.encoder.encode(item) for item in items)
        return _stored(f'{head[:-1]},"items":[{encoded}]}}')

    def _stored(self, obj: Obj, status: int = 200) -> Response:
        return _stored(self.store.encoder.text(obj), status)

    def watch(self, request: Request, target: Target, labels: _store.Predicate, fields: _store.Predicate) -> Response:
        query = request.query_params
        plural = target.kind.plural
        timeout_s = float(query.get("timeoutSeconds") or 1800)
        bookmarks = _query_flag(request, "allowWatchBookmarks")
        watcher = _store.Watcher(target.namespace, labels, fields)
        raw_rv = query.get("resourceVersion") or "0"
        if raw_rv == "0":
            initial = [
                self.store.encoder.line("ADDED", o)
                for o in self.store.query(plural, target.namespace, labels=labels, fields=fields)
            ]
        elif int(raw_rv) < self.store.compacted[plural]:
            return StreamingResponse(_once(self.expired_line(int(raw_rv))), media_type="application/json")
        else:
            initial = self.store.since(plural, int(raw_rv), watcher)
        self.store.watchers[plural].add(watcher)
        stream = self._stream(target.kind, watcher, initial, timeout_s, bookmarks)
        return StreamingResponse(stream, media_type="application/json")

    def expired_line(self, rv: int) -> bytes:
        message = f"too old resource version: {rv} ({self.store.rv})"
        event = {"type": "ERROR", "object": _store.status_body(410, "Expired", message)}
        return _store.dumps(event) + b"\n"

    async def _stream(
        self, kind: _store.Kind, watcher: _store.Watcher, initial: list[bytes], timeout_s: float, bookmarks: bool
    ) -> AsyncIterator[bytes]:
        """The watch stream: events as they come; a BOOKMARK after ``bookmark_interval_s`` without
        one (if asked for); the end at ``timeoutSeconds`` or when the server ends it (None).

        One timer per interval, not one per event: it wakes the stream with an empty line
        (:data:`_TICK`; real lines never are), and the stream looks at the clock."""
        clock = _StreamClock(asyncio.get_running_loop(), watcher, timeout_s, self.bookmark_interval_s, bookmarks)
        try:
            if initial:
                yield b"".join(initial)
            clock.waiting()
            while True:
                lines = [await watcher.queue.get()]
                while not watcher.queue.empty():
                    lines.append(watcher.queue.get_nowait())
                real = [line for line in lines if line != _TICK]
                if not real:
                    if clock.over():
                        return
                    if clock.bookmark_due():
                        yield self._bookmark(kind)
                        clock.waiting()
                    clock.arm()
                    continue
                if None in real:
                    yield b"".join(x for x in real[: real.index(None)] if x is not None)
                    return
                yield b"".join(x for x in real if x is not None)
                if clock.over():
                    return
                clock.waiting()
        finally:
            clock.stop()
            self.store.watchers[kind.plural].discard(watcher)

    def _bookmark(self, kind: _store.Kind) -> bytes:
        obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {"resourceVersion": self.store.now_rv()}}
        return _store.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    def close_watches(self, plural: str | None = None, *, expired: bool = False) -> None:
        """End open watch streams, optionally with a 410 ERROR event first."""
        for name in [plural] if plural else list(self.store.watchers):
            for watcher in list(self.store.watchers[name]):
                if expired:
                    watcher.queue.put_nowait(self.expired_line(self.store.rv))
                watcher.queue.put_nowait(None)

    def logs(self, request: Request, target: Target) -> Response:
        namespace, name = target.namespace or "", target.name or ""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            return _not_found(target.kind, name)
        spec = pod.get("spec") or {}
        mains = [c["name"] for c in spec.get("containers") or []]
        inits = [c["name"] for c in spec.get("initContainers") or []]
        container = request.query_params.get("container") or (mains[0] if len(mains) == 1 else "")
        if not container:
            message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(mains)}]"
            if inits:
                message += f" or one of the init containers: [{' '.join(inits)}]"
            return _status(400, "BadRequest", message)
        if container not in mains and container not in inits:
            return _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        state = _container_state(pod, container)
        if "running" not in state and "terminated" not in state:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            message = f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            return _status(400, "BadRequest", message)
        script = self.cluster.script(namespace, name, container)
        query = request.query_params
        chunks = script[0].log_chunks() if script is not None else iter(())
        if script is not None and not _query_flag(request, "follow"):
            chunks = _current_file(chunks, script[0].total_log_bytes, self.container_log_max_bytes)
        body = self._log_stream(
            chunks,
            namespace=namespace,
            pod=name,
            container=container,
            follow=_query_flag(request, "follow"),
            rate_bytes_per_s=script[0].log_rate_bytes_per_s if script is not None else 0.0,
            timestamps=_query_flag(request, "timestamps"),
            limit_bytes=int(query.get("limitBytes") or 0),
            tail_lines=int(query["tailLines"]) if query.get("tailLines") else None,
        )
        return StreamingResponse(body, media_type="text/plain")

    async def _log_stream(
        self,
        chunks: Iterator[bytes],
        *,
        namespace: str,
        pod: str,
        container: str,
        follow: bool,
        rate_bytes_per_s: float,
        timestamps: bool,
        limit_bytes: int,
        tail_lines: int | None,
    ) -> AsyncIterator[bytes]:
        if tail_lines is not None:
            lines = b"".join(chunks).splitlines(keepends=True)
            chunks = iter([b"".join(lines[-tail_lines:] if tail_lines else [])])
        sent = 0
        stamp = self.cluster.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f000Z ").encode()
        for chunk in chunks:
            if timestamps:
                chunk = b"".join(stamp + line for line in chunk.splitlines(keepends=True))
            if limit_bytes:
                chunk = chunk[: max(0, limit_bytes - sent)]
                if not chunk:
                    return
            sent += len(chunk)
            yield chunk
            if follow and rate_bytes_per_s > 0:
                await asyncio.sleep(len(chunk) / rate_bytes_per_s)
        while follow:
            current = self.store.get("pods", namespace, pod)
            if current is None or "terminated" in _container_state(current, container):
                return
            await self.cluster.pod_changed(namespace, pod)

    # --- writes --------------------------------------------------------------------------------

    def create(self, request: Request, target: Target, body: Any) -> Response:
        kind = target.kind
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "the body of the request was not a JSON object")
        meta = body.setdefault("metadata", {})
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(key, None)
        if body.get("kind") not in (None, kind.kind) or body.get("apiVersion") not in (None, kind.api_version):
            return _status(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match")
        if meta.get("namespace") not in (None, target.namespace):
            message = "the namespace of the provided object does not match the namespace sent on the request"
            return _status(400, "BadRequest", message)
        meta["namespace"] = target.namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _store.random_suffix()
        if kind.plural == "jobs":
            self.on_job_create(_store.clone(body))
        name = meta.get("name", "")
        refused = self._refusal(kind, name, body)
        if refused is not None:
            return refused
        if self.store.get(kind.plural, target.namespace or "", name) is not None:
            return _status(409, "AlreadyExists", f'{kind.resource} "{name}" already exists', _details(kind, name))
        uid = _store.new_uid()
        if kind.plural == "jobs":
            default_job(body, uid)
            if not self.native_sidecars():
                drop_sidecar_restart_policy(body)
        elif kind.plural == "secrets":
            default_secret(body)
        if request.query_params.get("dryRun"):
            return _json(body, 201)
        created = self.store.create(kind.plural, body, self.cluster.timestamp(), uid=uid)
        if kind.plural == "jobs":
            self.cluster.job_created(created)
        self.cluster.object_created(kind.plural, created)
        return self._stored(created, 201)

    @staticmethod
    def _refusal(kind: _store.Kind, name: str, body: Obj) -> Response | None:
        """What validation (422) or storage (500, too large for etcd) answers a new object with."""
        causes = _validate_meta(kind, body["metadata"]) + _validate_size(kind, body)
        if kind.plural == "jobs":
            causes += _validate_job(body)
        if causes:
            return _invalid(kind, name, causes)
        return _too_large_for_etcd(body)

    def _replace(self, target: Target, current: Obj, new: Obj) -> Response:
        kind = target.kind
        meta = new["metadata"] = dict(new.get("metadata") or {})  # a patch may share the stored one
        old_meta = current["metadata"]
        for key in ("uid", "name", "namespace", "creationTimestamp", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
        new["kind"], new["apiVersion"] = kind.kind, kind.api_version
        if target.sub == "status":
            merged = _store.clone(current)
            merged["status"] = new.get("status", {})
            new = merged
        elif "status" in current and kind.plural in ("jobs", "pods"):
            new["status"] = current["status"]
        causes = _validate_meta(kind, new["metadata"]) + _validate_size(kind, new)
        if causes:
            return _invalid(kind, meta["name"], causes)
        if (too_large := _too_large_for_etcd(new)) is not None:
            return too_large
        if kind.plural == "secrets":
            default_secret(new)
        return self._stored(self.store.update(kind.plural, new))

    def update(self, target: Target, body: Any) -> Response:
        kind, name = target.kind, target.name or ""
        current = self.store.get(kind.plural, target.namespace or "", name)
        if current is None:
            return _not_found(kind, name)
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "the body of the request was not a JSON object")
        if (body.get("metadata") or {}).get("name", name) != name:
            return _status(400, "BadRequest", "the name of the object does not match the name on the URL")
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            return _conflict(kind, name, _STALE)
        return self._replace(target, current, body)

    def patch(self, request: Request, target: Target, body: Any) -> Response:
        kind, name = target.kind, target.name or ""
        current = self.store.get(kind.plural, target.namespace or "", name)
        if current is None:
            return _not_found(kind, name)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            if content_type == "application/json-patch+json" and isinstance(body, list):
                new = _store.json_patch(current, body)
            elif content_type == "application/merge-patch+json":
                new = _store.merge_patch(current, body)
            elif content_type == "application/strategic-merge-patch+json":
                new = _store.merge_patch(current, body, strategic=True)
            else:
                message = f"the body of the request was in an unknown format: {content_type}"
                return _status(415, "UnsupportedMediaType", message)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return _status(422, "Invalid", f"the patch could not be applied: {exc}")
        sent_rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            return _conflict(kind, name, _STALE)
        return self._replace(target, current, new)

    def delete(self, request: Request, target: Target, body: Any) -> Response:
        kind, name, namespace = target.kind, target.name or "", target.namespace or ""
        current = self.store.get(kind.plural, namespace, name)
        if current is None:
            return _not_found(kind, name)
        options = body if isinstance(body, dict) else {}
        propagation = request.query_params.get("propagationPolicy") or options.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is not None:
            propagation = "Orphan" if options["orphanDependents"] else "Background"
        pre = options.get("preconditions") or {}
        meta = current["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            why = f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}"
            return _conflict(kind, name, why)
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            why = (
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}"
            )
            return _conflict(kind, name, why)
        grace = request.query_params.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        grace_s = float(grace) if grace is not None else None
        final = self.cluster.delete(kind.plural, namespace, name, propagation, grace_s=grace_s)
        if final is not None and final["metadata"].get("deletionTimestamp"):
            return _json(final)  # still there: terminating, or waiting for its dependents
        details = _details(kind, name) | {"uid": meta["uid"]}
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})


def _current_file(chunks: Iterator[bytes], total: int, max_file_bytes: int) -> Iterator[bytes]:
    """What a non-follow read returns once the kubelet rotated the log at ``containerLogMaxSize``:
    only the current file, the output after the last rotation (kubelet ``ReadLogs`` opens the one
    current path; rotated files are never read)."""
    skip = ((total - 1) // max_file_bytes) * max_file_bytes if total > max_file_bytes else 0
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield chunk[skip:]
        skip = 0


def _container_state(pod: Obj, container: str) -> Obj:
    status = pod.get("status") or {}
    for entry in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        if entry.get("name") == container:
            state: Obj = entry.get("state") or {}
            return state
    return {}


async def _once(line: bytes) -> AsyncIterator[bytes]:
    yield line


_TICK = b""
"""What the watch stream's timer puts into its queue: time to look at the clock."""


class _StreamClock:
    """A watch stream's deadline and bookmark interval, kept by one lazily re-armed loop timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        watcher: _store.Watcher,
        timeout_s: float,
        interval_s: float,
        bookmarks: bool,
    ) -> None:
        self.loop = loop
        self.watcher = watcher
        self.deadline = loop.time() + timeout_s
        self.interval_s = interval_s
        self.bookmarks = bookmarks
        self.wait_started = loop.time()
        self.timer: asyncio.TimerHandle | None = None

    def waiting(self) -> None:
        """A new wait for events starts now (the bookmark interval counts from here)."""
        self.wait_started = self.loop.time()
        if self.timer is None:
            self.arm()

    def due(self) -> float:
        return min(self.deadline, self.wait_started + self.interval_s) if self.bookmarks else self.deadline

    def arm(self) -> None:
        """The timer at :meth:`due`; one due earlier stays (it wakes the stream, which arms again)."""
        due = self.due()
        if self.timer is not None:
            if self.timer.when() <= due:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self.timer = None
        self.watcher.queue.put_nowait(_TICK)

    def over(self) -> bool:
        return self.loop.time() >= self.deadline

    def bookmark_due(self) -> bool:
        return self.bookmarks and self.loop.time() >= self.wait_started + self.interval_s

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
