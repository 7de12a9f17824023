"""The Kubernetes API calls jes makes (the kubernetes runner, the Lease ledger), as plain JSON;
:func:`connect` builds the one ``ApiClient`` a process uses.

The official ``kubernetes`` client provides the configuration (server, credentials, TLS, proxy);
its generated API methods are not used: they validate every body with pydantic and project it into
model objects, which costs more CPU than the request itself. JSON calls and log reads go out on the
event loop over :mod:`jes.clients.kubehttp` (the lean HTTP/1.1 transport), about a third of the CPU
of the client's own synchronous path; a configuration that path cannot serve exactly as the client
would (an HTTP proxy, a TLS server name of its own) keeps the client's path, each call in a small
thread pool. Watches and the lists they start from use the client in the watch threads. Errors are
translated into :mod:`jes.errors` where they enter (:mod:`jes.clients.kubeerrors`). Temporary errors
(connection problems, 5xx, 429 with its ``Retry-After``) are retried with the runner's
:class:`jes.util.retry.Backoff`; 403 becomes :class:`errors.KubePermissionError` naming the verb,
resource and namespace.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import httpx
import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException

from jes import errors
from jes.clients import kubehttp
from jes.clients.httptransport import Answer, Opened
from jes.clients.kubeerrors import answer_error, translate
from jes.util import gates, retry

T = TypeVar("T")
Obj = dict[str, Any]


class DirectLog:
    """A log being read over the direct path."""

    def __init__(self, opened: Opened) -> None:
        self.opened = opened
        self.chunks = aiter(opened.body)


LogResponse = urllib3.BaseHTTPResponse | DirectLog
"""A log being read: over the direct path or the client's (urllib3)."""

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
#: Connections kept per API server: the runner's threads, the ledger's and the log streams'.
DEFAULT_POOL_SIZE = 32
ROUTINE_TOLERANCE = 3.0
"""Routine requests (creating Jobs and claims, below :data:`~jes.util.gates.FINISHING`) are held
back at the client while answers come this many times slower than usual for their kind
(:class:`~jes.util.gates.RoutineLimit`): under a burst the requests of finishing events then pass
the rest at the client instead of queueing behind them in the API server (``make bench``: complete
-> ``.finished`` p95 in the 1,000-event burst). A server with time to spare gets all
:data:`DEFAULT_POOL_SIZE` connections."""


def connect(
    *, kubeconfig: str | None = None, context: str | None = None, pool_size: int = DEFAULT_POOL_SIZE
) -> kubernetes.client.ApiClient:
    """The process's one Kubernetes client: from ``kubeconfig`` when given; else the in-cluster
    service account; else the default kubeconfig (``$KUBECONFIG``, ``~/.kube/config``).

    Raises :class:`errors.KubeConfigError` when none of them is usable."""
    config = kubernetes.client.Configuration()
    try:
        if kubeconfig:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                kubeconfig, context, client_configuration=config
            )
        else:
            try:
                kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                    context=context, client_configuration=config
                )
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise errors.KubeConfigError(
            f"no Kubernetes configuration: not running in a cluster and no usable kubeconfig ({exc})"
        ) from exc
    config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, pool_size)
    return kubernetes.client.ApiClient(config)


_JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"


def _collection(kind: str, namespace: str) -> tuple[str, str]:
    """Path and RBAC resource name of the Jobs or pods of a namespace."""
    if kind == "jobs":
        return _JOBS.format(namespace=namespace), "batch/jobs"
    return f"/api/v1/namespaces/{namespace}/pods", "pods"


class KubeApi:
    """The calls the runner needs; each returns plain JSON (dicts) and raises :mod:`jes.errors`."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        executor: ThreadPoolExecutor,
        backoff: retry.Backoff,
        request_timeout_s: float,
        sleep: retry.Sleep = asyncio.sleep,
        direct: bool = True,
        max_connections: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.api_client = api_client
        self.executor = executor
        self.backoff = backoff
        self.request_timeout_s = request_timeout_s
        self.sleep = sleep
        self.max_connections = max_connections
        self._direct: kubehttp.KubeHttp | None = None
        self._direct_usable = direct and kubehttp.usable(api_client.configuration)

    async def aclose(self) -> None:
        """Close the connections of the direct path (the client's own pool is its owner's)."""
        if self._direct is not None:
            await self._direct.aclose()
            self._direct = None

    def _direct_http(self) -> kubehttp.KubeHttp | None:
        if self._direct is None and self._direct_usable:
            self._direct = kubehttp.KubeHttp(
                self.api_client.configuration,
                max_connections=self.max_connections,
                routine=gates.RoutineLimit(self.max_connections, tolerance=ROUTINE_TOLERANCE),
            )
        return self._direct

    # --- plumbing ------------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def _raw(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        timeout: Any,
    ) -> Any:
        """Blocking: one request with the client's configuration (server, auth, TLS, pool); the
        response unread. It skips the generated API methods, whose pydantic validation and model
        projection of a body cost more CPU than the request itself. Non-2xx → ApiException."""
        headers = {"Accept": "application/json, */*"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method, url, header_params=headers, body=body, post_params=post, _request_timeout=timeout
        )
        if not 200 <= response.status <= 299:
            data = response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=data.decode(errors="replace"), data=None)
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        verb: str,
        resource: str,
        namespace: str,
    ) -> Obj:
        """Blocking: :meth:`_raw`, the body parsed as JSON; errors translated."""
        try:
            response = self._raw(
                method, path, query=query, body=body, content_type=content_type, timeout=self.request_timeout_s
            )
            data = response.read()
        except Exception as exc:
            raise translate(exc, verb=verb, resource=resource, namespace=namespace) from exc
        result: Obj = json.loads(data) if data else {}
        return result

    async def send(self, method: str, path: str, *, backoff: retry.Backoff | None = None, **options: Any) -> Obj:
        """:meth:`request`, on the event loop (:mod:`jes.clients.kubehttp`) or else in the pool,
        retried on temporary errors (same options; ``backoff`` defaults to the client's)."""
        direct = self._direct_http()

        async def attempt() -> Obj:
            if direct is not None:
                return await self._request_direct(direct, method, path, **options)
            return await self.in_thread(functools.partial(self.request, method, path, **options))

        what = f"{options.get('verb', method)} {options.get('resource', path)}"
        chosen = backoff if backoff is not None else self.backoff
        return await retry.retry_temporary(attempt, backoff=chosen, what=what, sleep=self.sleep)

    async def _request_direct(
        self,
        direct: kubehttp.KubeHttp,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        verb: str,
        resource: str,
        namespace: str,
    ) -> Obj:
        """:meth:`request` without the client: the same answer, the same errors."""
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            answer = await direct.call(
                method, path, query=query, body=payload, content_type=content_type, timeout_s=self.request_timeout_s,
                kind="" if verb == "list" else f"{verb} {resource}",  # (a list takes as long as it is long)
            )
        except httpx.HTTPError as exc:
            raise translate(exc, verb=verb, resource=resource, namespace=namespace) from exc
        if not 200 <= answer.status <= 299:
            raise answer_error(answer, verb, resource, namespace)
        result: Obj = json.loads(answer.body) if answer.body else {}
        return result

    # --- the calls -----------------------------------------------------------------------------

    async def create_job(self, namespace: str, body: Mapping[str, Any], *, backoff: retry.Backoff | None = None) -> Obj:
        return await self.send(
            "POST",
            _JOBS.format(namespace=namespace),
            body=dict(body),
            verb="create",
            resource="batch/jobs",
            namespace=namespace,
            backoff=backoff,
        )

    async def get_job(self, namespace: str, name: str) -> Obj:
        return await self.send(
            "GET", f"{_JOBS.format(namespace=namespace)}/{name}", verb="get", resource="batch/jobs", namespace=namespace
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete with foreground propagation (its pods go first); a missing Job is fine."""
        try:
            await self.send(
                "DELETE",
                f"{_JOBS.format(namespace=namespace)}/{name}",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"},
                verb="delete",
                resource="batch/jobs",
                namespace=namespace,
            )
        except errors.KubeNotFoundError:
            pass

    async def list_pods(self, namespace: str, label_selector: str) -> list[Obj]:
        return await self._list_core(namespace, "pods", {"labelSelector": label_selector})

    async def list_events(self, namespace: str, field_selector: str) -> list[Obj]:
        return await self._list_core(namespace, "events", {"fieldSelector": field_selector})

    async def _list_core(self, namespace: str, resource: str, query: Mapping[str, str]) -> list[Obj]:
        """The items of a core/v1 collection in ``namespace`` that match ``query``."""
        path = f"/api/v1/namespaces/{namespace}/{resource}"
        result = await self.send("GET", path, query=dict(query), verb="list", resource=resource, namespace=namespace)
        return list(result.get("items") or [])

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return await self.send(
            "POST",
            f"/api/v1/namespaces/{namespace}/configmaps",
            body=dict(body),
            verb="create",
            resource="configmaps",
            namespace=namespace,
        )

    async def patch_config_map(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        return await self.send(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/{name}",
            body=dict(patch),
            content_type="application/merge-patch+json",
            verb="patch",
            resource="configmaps",
            namespace=namespace,
        )

    async def delete_config_map(self, namespace: str, name: str) -> None:
        await self.send(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/configmaps/{name}",
            verb="delete",
            resource="configmaps",
            namespace=namespace,
        )

    async def create_secret(
        self, namespace: str, body: Mapping[str, Any], *, backoff: retry.Backoff | None = None
    ) -> None:
        """Create a Secret (a task's proxy token); the answer, which holds the data, is dropped.
        There is no call to read or patch a Secret: both answer with the whole object, so the right
        to either is a right to read every Secret of the namespace."""
        await self.send(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            body=dict(body),
            verb="create",
            resource="secrets",
            namespace=namespace,
            backoff=backoff,
        )

    async def delete_secret(self, namespace: str, name: str) -> None:
        await self.send(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            verb="delete",
            resource="secrets",
            namespace=namespace,
        )

    # --- streams (blocking; the caller owns the response) ---------------------------------------

    def open_log(self, namespace: str, pod: str, container: str) -> urllib3.BaseHTTPResponse:
        """Blocking: the log of a container as an unread response."""
        try:
            response = self._raw(
                "GET",
                f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
                query={"container": container},
                body=None,
                content_type="",
                timeout=(self.request_timeout_s, self.request_timeout_s),
            )
        except Exception as exc:
            raise translate(exc, verb="get", resource="pods/log", namespace=namespace) from exc
        return cast(urllib3.BaseHTTPResponse, response.response)

    async def open_log_retrying(self, namespace: str, pod: str, container: str) -> LogResponse:
        """The log of a container as an unread response (on the event loop when the direct path
        serves; else in the pool); temporary errors retried. Read it with :meth:`read_chunk`,
        then :meth:`close_log`."""
        direct = self._direct_http()

        async def attempt() -> LogResponse:
            if direct is None:
                return await self.in_thread(self.open_log, namespace, pod, container)
            return await self._open_log_direct(direct, namespace, pod, container)

        return await retry.retry_temporary(attempt, backoff=self.backoff, what="get pods/log", sleep=self.sleep)

    async def _open_log_direct(self, direct: kubehttp.KubeHttp, namespace: str, pod: str, container: str) -> DirectLog:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        try:
            timeout_s = self.request_timeout_s
            opened = await direct.stream(
                path, query={"container": container}, timeout_s=timeout_s, read_timeout_s=timeout_s
            )
            if opened.status != 200:
                try:
                    body = b"".join([chunk async for chunk in opened.body])
                finally:
                    await opened.body.aclose()  # (read to its end it is back in the pool already)
                answer = Answer(opened.status, opened.reason, opened.headers, body)
                raise answer_error(answer, "get", "pods/log", namespace)
        except httpx.HTTPError as exc:
            raise translate(exc, verb="get", resource="pods/log", namespace=namespace) from exc
        return DirectLog(opened)

    async def read_chunk(self, response: LogResponse, namespace: str) -> bytes:
        """The next part of a log (b"": its end)."""
        try:
            if isinstance(response, DirectLog):
                return await anext(response.chunks, b"")
            chunk: bytes = await self.in_thread(response.read, CHUNK_BYTES)
        except Exception as exc:
            raise translate(exc, verb="get", resource="pods/log", namespace=namespace) from exc
        return chunk

    @staticmethod
    async def close_log(response: LogResponse, *, complete: bool) -> None:
        """Done with a log; one not read to its end (``complete`` False) loses its connection."""
        if isinstance(response, DirectLog):
            await response.opened.body.aclose()
            return
        if not complete:  # a connection with unread data cannot be reused
            response.close()
        response.release_conn()

    def open_watch(
        self, kind: str, namespace: str, label_selector: str, resource_version: str, timeout_s: float
    ) -> urllib3.BaseHTTPResponse:
        """Blocking: a watch stream of jobs or pods from ``resource_version``."""
        path, resource = _collection(kind, namespace)
        query = {
            "labelSelector": label_selector,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout_s))),
        }
        try:
            response = self._raw(
                "GET", path, query=query, body=None, content_type="", timeout=(self.request_timeout_s, timeout_s + 30)
            )
        except Exception as exc:
            raise translate(exc, verb="watch", resource=resource, namespace=namespace) from exc
        return cast(urllib3.BaseHTTPResponse, response.response)

    def list_raw(self, kind: str, namespace: str, label_selector: str) -> Obj:
        """Blocking: a list of jobs or pods (for a watch to start from)."""
        path, resource = _collection(kind, namespace)
        return self.request(
            "GET", path, query={"labelSelector": label_selector}, verb="list", resource=resource, namespace=namespace
        )
