"""The outer ASGI layer: what Keptn's API gateway and a flaky network do before the services.

In order: read the body up to the gateway's limit (413 above it, after draining so the client
sees the answer), apply an injected fault (:mod:`faults`), check credentials (:mod:`auth`), then
call the routes. Errors never leak a traceback: an unhandled exception becomes
``500 {"code":500,"message":"internal server error"}`` and is logged.

Dropping a connection needs the transport, which ASGI does not expose: the server runs
:class:`DroppableH11Protocol`, uvicorn's h11 protocol that hands the app a ``close`` callback
in ``scope["extensions"]["jes.connection"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from jes.devtools.controlplane import auth, faults

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONNECTION_EXTENSION = "jes.connection"
#: The in-cluster names of Keptn's services and the gateway path each one serves.
IN_CLUSTER_PREFIXES = {
    "shipyard-controller:8080": "/controlPlane",
    "resource-service:8080": "/resource-service",
    "configuration-service:8080": "/configuration-service",
    "mongodb-datastore:8080": "/mongodb-datastore",
    "api-service:8080": "",
}
#: What a ``garbage_body`` fault answers: a 200 that is not JSON.
GARBAGE = b'{"events": [{"id": "4f1c\x00 <html>502 Bad Gateway</html>'
#: Beyond this, a too-large body is no longer drained; the connection is closed after the 413.
_DRAIN_LIMIT_BYTES = 256 * 1024 * 1024

_FAULT_MESSAGES = {
    401: auth.NGINX_UNAUTHORIZED,
    403: "forbidden",
    404: "not found",
    429: "too many requests",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


class DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, letting the app close the TCP connection without answering."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = {"close": self._close_connection}
            await inner(scope, receive, send)

        self.app = app

    def _close_connection(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _ClientGone(Exception):
    pass


class Gateway:
    """Body limit, faults, authentication and error shapes around the routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str,
        max_body_bytes: int,
        fault_injector: faults.FaultInjector,
        authenticator: auth.Authenticator,
        in_cluster: bool = False,
    ) -> None:
        self._in_cluster = in_cluster
        self._app = app
        self._prefix = prefix
        self._max_body_bytes = max_body_bytes
        self._faults = fault_injector
        self._auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._handle(scope, receive, tracking_send)
        except _ClientGone:
            return
        except Exception:
            logger.exception("local control plane: unhandled error in %s %s", scope["method"], scope["path"])
            if not started:
                await send_json(tracking_send, 500, {"code": 500, "message": "internal server error"})

    def _relative(self, path: str) -> str | None:
        if path == self._prefix or path.startswith(self._prefix + "/"):
            return path[len(self._prefix) :] or "/"
        return None

    @staticmethod
    def _as_origin_form(scope: Scope) -> None:
        """A request sent through an HTTP proxy names the whole URL (absolute form); the control
        plane answers it as the server that URL names, so a client behind ``HTTP_PROXY`` reaches it."""
        path = str(scope["path"])
        if path.startswith("http://"):
            raw = bytes(scope.get("raw_path") or path.encode()).decode("latin-1")
            scope["path"] = urlsplit(path).path or "/"
            scope["raw_path"] = (urlsplit(raw).path or "/").encode("latin-1")

    def _inside_the_cluster(self, scope: Scope, headers: dict[str, str]) -> bool:
        """Whether the request names a Keptn service by its in-cluster name (through an HTTP proxy,
        as a NATS-mode client sends it); then it is rewritten to the gateway path. In-cluster
        services take no token, as in Keptn: only served with ``in_cluster`` (``--nats``)."""
        if not self._in_cluster:
            return False
        path = str(scope["path"])
        raw = bytes(scope.get("raw_path") or path.encode()).decode("latin-1")
        host = headers.get("host", "")
        if path.startswith("http://"):  # an absolute-form request target
            host, path, raw = urlsplit(path).netloc, urlsplit(path).path or "/", urlsplit(raw).path or "/"
        prefix = IN_CLUSTER_PREFIXES.get(host.lower())
        if prefix is None:
            return False
        scope["path"] = f"{self._prefix}{prefix}{path}"
        # no gateway decodes in-cluster: escape the raw path once, for the gateway decoding emulated later
        scope["raw_path"] = f"{self._prefix}{prefix}{quote(raw, safe='/')}".encode("latin-1")
        return True

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"]).upper()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        trusted = self._inside_the_cluster(scope, headers)
        self._as_origin_form(scope)
        path = str(scope["path"])
        body = await self._read_body(receive, headers.get("content-length"))
        if body is None:
            message = f"request body too large: the limit is {self._max_body_bytes} bytes"
            await send_json(send, 413, {"code": 413, "message": message})
            return
        relative = self._relative(path)
        rule = self._faults.take(method, relative if relative is not None else path, body)
        if rule is not None and rule.latency_s > 0:
            await asyncio.sleep(rule.latency_s)
        if rule is not None and rule.status is not None:
            await _send_fault(send, rule)
            return
        if relative is not None and not trusted:
            denial = self._auth.check(method, relative, headers, _client_ip(scope, headers))
            if denial is not None:
                await send_json(send, denial.status, denial.body, denial.headers)
                return
        replay = _replay(body, receive)
        if rule is not None and (rule.drop_connection or rule.garbage_body):
            await self._app(scope, replay, _discard)
            if rule.drop_connection:
                await _drop_connection(scope, receive)
            else:
                await send_raw(send, 200, GARBAGE, "application/json")
            return
        await self._app(scope, replay, send)

    async def _read_body(self, receive: Receive, declared: str | None) -> bytes | None:
        """The whole body, or ``None`` (after draining it) when it exceeds the limit."""
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            await _drain(receive, 0)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self._max_body_bytes:
                if message.get("more_body", False):
                    await _drain(receive, size)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _drain(receive: Receive, size: int) -> None:
    while size <= _DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _discard(message: Message) -> None:
    return None


async def _drop_connection(scope: Scope, receive: Receive) -> None:
    hook = scope.get("extensions", {}).get(CONNECTION_EXTENSION)
    if not hook:
        raise RuntimeError("drop_connection needs the local control plane's uvicorn protocol")
    hook["close"]()
    with contextlib.suppress(asyncio.TimeoutError):
        # uvicorn reports the closed connection as a disconnect; then it sends nothing more.
        await asyncio.wait_for(receive(), timeout=1.0)


async def _send_fault(send: Send, rule: faults.FaultRule) -> None:
    status = rule.status or 500
    headers: dict[str, str] = {}
    if rule.retry_after_s is not None:
        headers["Retry-After"] = f"{rule.retry_after_s:g}"
    if isinstance(rule.body, bytes | str):
        raw = rule.body.encode() if isinstance(rule.body, str) else rule.body
        await send_raw(send, status, raw, "text/plain; charset=utf-8", headers)
        return
    body = (
        rule.body
        if rule.body is not None
        else {"code": status, "message": _FAULT_MESSAGES.get(status, "injected fault")}
    )
    await send_json(send, status, body, headers)


def _client_ip(scope: Scope, headers: dict[str, str]) -> str:
    forwarded = headers.get("x-forwarded-for") or headers.get("x-real-ip")
    if forwarded:
        return forwarded.split(",")[0].strip()
    client = scope.get("client")
    return str(client[0]) if client else ""


async def send_json(send: Send, status: int, body: Any, headers: Any = None) -> None:
    raw = json.dumps(body, separators=(",", ":")).encode()
    await send_raw(send, status, raw, "application/json", headers)


async def send_raw(send: Send, status: int, raw: bytes, content_type: str, headers: Any = None) -> None:
    pairs = [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())]
    pairs += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": raw, "more_body": False})
