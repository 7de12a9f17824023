"""Following container logs while the containers run, so that log rotation cannot lose the head.

The kubelet rotates a container's log file at ``containerLogMaxSize`` (10 MiB by default); a
non-follow read of ``pods/log`` returns only the current file, so a task that printed 30 MiB would
be reported without its first 20 MiB. jes therefore follows each container's log from the moment
the container is seen running (``follow=true`` streams across rotation on kubelets 1.29+), into a
:class:`~jes.runner.logs.BoundedBuffer` (head and tail kept, memory bounded), forwarding chunks to
``on_log`` as they arrive.

The streams are plain async HTTP (httpx) with the Kubernetes client's server, credentials and TLS,
so a thousand running containers cost a thousand idle connections, not a thousand threads. At most
``max_streams`` are followed at once; a container beyond that is read once when it ended, as
before. A stream that breaks off before its container ended is completed by that final read: the
report then says that bytes in between may be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import kubernetes.client

from jes.clients import httptransport, kubehttp
from jes.runner.logs import BoundedBuffer

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]

#: A follow stream is an idle connection most of the time: no read timeout.
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Followed:
    """One container's log as followed so far."""

    buffer: BoundedBuffer
    task: asyncio.Task[None] | None = None
    complete: bool = False
    """The stream ended because the container ended (not because the connection broke)."""
    error: str = ""


def http_client(configuration: kubernetes.client.Configuration, max_connections: int = 512) -> httpx.AsyncClient:
    """An async client with the Kubernetes client's server, TLS settings and proxy; without a proxy
    on the lean transport, a connection per followed stream (httpx's own pool rescans all its
    connections and queued requests for every request: quadratic with thousands of streams)."""
    verify = kubehttp.tls_context(configuration)  # (the direct path's: CA, client certificate, or no check)
    timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
    transport = None
    if not kubehttp.proxy_for(configuration):
        transport = httptransport.LeanTransport(ssl_context=verify, max_connections=max_connections)
    return httpx.AsyncClient(
        base_url=configuration.host,
        verify=verify,
        timeout=timeout,
        proxy=kubehttp.proxy_for(configuration),
        transport=transport,
    )


class LogFollower:
    """Follows container logs for the kubernetes runner; see the module docstring."""

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        *,
        head_bytes: int,
        tail_bytes: int,
        max_streams: int = 512,
    ) -> None:
        self._configuration = configuration
        self._head_bytes = head_bytes
        self._tail_bytes = tail_bytes
        self._max_streams = max_streams
        self._streams = asyncio.Semaphore(max_streams)
        self._http: httpx.AsyncClient | None = None
        self._direct: kubehttp.KubeHttp | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = http_client(self._configuration, self._max_streams)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._direct is not None:
            await self._direct.aclose()
            self._direct = None

    async def _open(self, path: str, container: str) -> tuple[int, AsyncIterator[bytes], Closer]:
        """The followed log's status, body and closer: on the lean transport when it serves the
        configuration (no httpx client layer per stream), else through the httpx client."""
        if self._direct is None and kubehttp.usable(self._configuration):
            self._direct = kubehttp.KubeHttp(self._configuration, max_connections=self._max_streams)
        query = {"container": container, "follow": "true"}
        if self._direct is not None:
            opened = await self._direct.stream(path, query=query, timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=None)
            return opened.status, aiter(opened.body), opened.body.aclose
        headers = {"Accept": "*/*"}
        token = await asyncio.to_thread(kubehttp.authorization_of, self._configuration)  # (may run a plugin)
        if token:
            headers["Authorization"] = token
        client = self._client()
        response = await client.send(client.build_request("GET", path, params=query, headers=headers), stream=True)
        return response.status_code, response.aiter_raw(), response.aclose

    def follow(
        self, namespace: str, pod: str, container: str, on_chunk: Callable[[bytes], None] | None
    ) -> Followed | None:
        """Start following a container (None: too many streams already; read it at the end)."""
        if self._streams.locked():
            return None
        followed = Followed(BoundedBuffer(head_bytes=self._head_bytes, tail_bytes=self._tail_bytes))
        followed.task = asyncio.create_task(
            self._stream(followed, namespace, pod, container, on_chunk), name=f"jes-log:{pod}/{container}"
        )
        return followed

    async def _stream(
        self,
        followed: Followed,
        namespace: str,
        pod: str,
        container: str,
        on_chunk: Callable[[bytes], None] | None,
    ) -> None:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        async with self._streams:
            try:
                status, chunks, close = await self._open(path, container)
                try:
                    if status != 200:
                        followed.error = f"{status}: {b''.join([c async for c in chunks])[:200]!r}"
                        return
                    async for chunk in chunks:
                        followed.buffer.write(chunk)
                        if on_chunk is not None:
                            with contextlib.suppress(Exception):
                                on_chunk(chunk)
                finally:
                    await close()
                followed.complete = True
            except httpx.HTTPError as exc:
                followed.error = f"{type(exc).__name__}: {exc}"
                logger.info("following the log of %s/%s (%s) broke off: %s", namespace, pod, container, exc)
