"""The distributor's HTTP server as one ASGI app: ``/health``, event forwarding and the API proxy.

Routes (reference/distributor.md §4): ``/health`` exactly → 200, empty; ``EVENT_FORWARDING_PATH``
→ a structured CloudEvent handed to ``forward_event`` (``sh.keptn.log.error`` only to the error
log); everything under ``API_PROXY_PATH`` → the control plane through the shared client, which adds
jes's credentials itself. Where the distributor answers an empty 500, this app answers a precise
status with ``{"code": N, "message": "..."}`` (docs/proxy.md lists them): 400, 401, 403, 404, 405,
413 or 502. The caller's own ``x-token``/``Authorization`` never goes upstream, and no value of
``secrets()`` ever leaves in an answer or a log line.

With ``require_scoped_token`` (the listener tasks reach) every route but ``/health`` needs a token
minted by :class:`jes.proxy.scopes.ScopeStore` and is checked against its scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from jes import errors
from jes.clients.keptn.httperrors import transport_error
from jes.proxy import events, headers
from jes.proxy.routes import PREFIXES, Routes, split_prefix
from jes.proxy.scopes import ScopeStore, TaskScope, token_from_headers

logger = logging.getLogger(__name__)

ForwardEvent = Callable[[dict[str, Any]], Awaitable[None]]
ErrorLog = Callable[[dict[str, Any]], None]
Secrets = Callable[[], tuple[str, ...]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATH = "/health"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jes task token"'}
_MISSING_TOKEN = "this listener needs the token jes gave the task: send it as x-token or Authorization: Bearer"


class Refusal(errors.JesError):
    """A request this app answers itself with ``status`` and a JSON message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers
        super().__init__(message)


def proxy_app(
    *,
    http: httpx.AsyncClient,
    routes: Routes,
    forward_event: ForwardEvent,
    on_error_log: ErrorLog | None = None,
    api_proxy_path: str = "/",
    event_forwarding_path: str = "/event",
    max_payload_bytes: int = 64 * 1024,
    timeout_s: float = 30.0,
    secrets: Secrets = lambda: (),
    scopes: ScopeStore | None = None,
    require_scoped_token: bool = False,
) -> ASGIApp:
    """The ASGI app. ``http`` is the shared client (owned by the caller; it adds Keptn's auth in
    remote mode); ``max_payload_bytes`` and ``timeout_s`` of 0 mean no limit."""
    if require_scoped_token and scopes is None:
        raise errors.JesError("a listener that requires scoped tokens needs a ScopeStore")
    return _ProxyApp(
        http=http,
        routes=routes,
        forward_event=forward_event,
        on_error_log=on_error_log,
        mount=api_proxy_path,
        event_path=event_forwarding_path,
        max_bytes=max_payload_bytes,
        timeout_s=timeout_s,
        secrets=secrets,
        scopes=scopes,
        require_token=require_scoped_token,
    )


class _ProxyApp:
    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        routes: Routes,
        forward_event: ForwardEvent,
        on_error_log: ErrorLog | None,
        mount: str,
        event_path: str,
        max_bytes: int,
        timeout_s: float,
        secrets: Secrets,
        scopes: ScopeStore | None,
        require_token: bool,
    ) -> None:
        self._http = http
        self._routes = routes
        self._forward_event = forward_event
        self._on_error_log = on_error_log
        self._mount = mount.rstrip("/")
        self._event_path = event_path
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._secrets = secrets
        self._scopes = scopes
        self._require_token = require_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except Refusal as refusal:
            message = headers.scrub_text(str(refusal), self._secrets())
            self._log_failure(request, refusal.status, message)
            return JSONResponse({"code": refusal.status, "message": message}, refusal.status, headers=refusal.headers)
        except Exception as exc:  # a bug: answered as one, never with a traceback to the caller
            what = type(exc).__name__
            logger.error(
                "proxy: %s %s failed unexpectedly: %s", request.method, _raw_path(request), what, exc_info=True
            )
            return JSONResponse({"code": 500, "message": f"internal error in the proxy ({what})"}, 500)

    async def _route(self, request: Request) -> Response:
        path = request.url.path
        if path == HEALTH_PATH:
            return Response(status_code=200)
        scope = await self._identify(request)
        if path == self._event_path:
            return await self._event(request, scope)
        proxied = self._proxied_path(_raw_path(request))
        if proxied is None:
            raise Refusal(404, _unknown_path_message(_raw_path(request), self._event_path))
        return await self._proxy(request, proxied, scope)

    # -- who is asking -----------------------------------------------------------------------

    async def _identify(self, request: Request) -> TaskScope | None:
        """The task scope of the token (task listener); None on the trusted listener."""
        if not self._require_token:
            return None
        assert self._scopes is not None
        token = token_from_headers(request.headers)
        if not token:
            raise Refusal(401, _MISSING_TOKEN, headers=_CHALLENGE)
        found = await self._scopes.resolve(token)
        if found is None:
            raise Refusal(401, "unknown or revoked task token (a task's token ends with its task)", headers=_CHALLENGE)
        return found

    # -- /event ------------------------------------------------------------------------------

    async def _event(self, request: Request, scope: TaskScope | None) -> Response:
        if request.method != "POST":
            said = f"{self._event_path} accepts only POST of a CloudEvent, not {request.method}"
            raise Refusal(405, said, headers={"Allow": "POST"})
        try:
            event = events.decode_structured(await self._read_body(request))
        except errors.EventError as exc:
            raise Refusal(400, str(exc)) from exc
        if scope is not None and self._scopes is not None:
            refused = self._scopes.check(scope, request.method, (), "", event)
            if refused is not None:
                raise Refusal(403, refused)
        self._feed_error_log(event)
        if not events.is_error_log(event):
            await self._send_event(event)
        return Response(status_code=200)

    def _feed_error_log(self, event: dict[str, Any]) -> None:
        if self._on_error_log is None or not events.feeds_error_log(event):
            return
        try:
            self._on_error_log(event)
        except Exception as exc:  # the error log is best effort, as the distributor's
            said = headers.scrub_text(str(exc), self._secrets())
            logger.warning("proxy: the error log refused an event: %s", said)

    async def _send_event(self, event: dict[str, Any]) -> None:
        try:
            await self._forward_event(event)
        except errors.KeptnError as exc:
            status = exc.status if isinstance(exc, errors.KeptnPermanentError) and exc.status else 502
            raise Refusal(status, f"the event was not accepted: {exc}") from exc
        except errors.JesError as exc:
            raise Refusal(502, f"the event could not be sent on: {exc}") from exc

    # -- the proxy ---------------------------------------------------------------------------

    def _proxied_path(self, raw_path: str) -> str | None:
        """The path to route: the request's own when it starts with a prefix, else with the mount
        (``API_PROXY_PATH``) taken off; None when it is not under the mount at all."""
        if not self._mount:
            return raw_path
        if raw_path != self._mount and not raw_path.startswith(self._mount + "/"):
            return None
        if split_prefix(raw_path)[0] is not None:
            return raw_path  # the distributor never strips the mount: /controlPlane/ as a mount works
        return raw_path[len(self._mount) :] or "/"

    async def _proxy(self, request: Request, proxied: str, scope: TaskScope | None) -> Response:
        query = request.scope.get("query_string", b"").decode("latin-1")
        target = self._routes.target(proxied, query)
        if target is None:
            raise Refusal(404, _unknown_path_message(proxied, self._event_path))
        if _has_dot_segment(proxied):
            raise Refusal(400, "the path has '.' or '..' segments; send the path without them")
        if scope is not None and self._scopes is not None:
            refused = self._scopes.check(scope, request.method, proxied[1:].split("/"), query)
            if refused is not None:
                raise Refusal(403, refused)
        content = await self._read_body(request) if self._max_bytes else _stream(request)
        upstream = await self._send_upstream(request.method, target, request, content)
        return self._downstream(upstream)

    async def _send_upstream(
        self, method: str, target: str, request: Request, content: bytes | AsyncIterator[bytes]
    ) -> httpx.Response:
        limit_s = self._timeout_s or None
        try:
            async with asyncio.timeout(limit_s):
                return await self._http.request(
                    method,
                    target,
                    content=content or None,
                    headers=headers.upstream_request_headers(request.headers),
                    timeout=httpx.Timeout(limit_s, pool=limit_s),
                )
        except (TimeoutError, httpx.TimeoutException) as exc:  # the total, or one of httpx's phases
            said = f"the control plane did not answer {method} {target} within {limit_s:g}s (API_PROXY_HTTP_TIMEOUT)"
            raise Refusal(502, said) from exc
        except httpx.HTTPError as exc:
            reason = transport_error(exc, method, target, limit_s)
            raise Refusal(502, f"the control plane is unreachable: {reason}") from exc
        except errors.KeptnError as exc:  # the client's auth (OAuth token fetch) failed
            raise Refusal(502, f"no credentials for the control plane: {exc}") from exc

    def _downstream(self, upstream: httpx.Response) -> Response:
        secrets = self._secrets()
        response = Response(content=headers.scrub_bytes(upstream.content, secrets), status_code=upstream.status_code)
        response.raw_headers.extend(headers.downstream_headers(upstream.headers, secrets))
        return response

    async def _read_body(self, request: Request) -> bytes:
        """The whole body, refused with 413 as soon as it passes the limit (never forwarded in part)."""
        limit = self._max_bytes
        declared = request.headers.get("content-length", "")
        if limit and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, _too_large_message(limit))
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if limit and size > limit:
                    raise Refusal(413, _too_large_message(limit))
                chunks.append(chunk)
        except ClientDisconnect as exc:
            raise Refusal(400, "the client went away before the body was complete") from exc
        return b"".join(chunks)

    def _log_failure(self, request: Request, status: int, message: str) -> None:
        logger.warning("proxy: %s %s answered %d: %s", request.method, _raw_path(request), status, message)


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path


async def _stream(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives (no limit set)."""
    with contextlib.suppress(ClientDisconnect):
        async for chunk in request.stream():
            yield chunk


def _has_dot_segment(raw_path: str) -> bool:
    return any(segment in (".", "..") for segment in raw_path.split("/"))


def _too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes; raise API_PROXY_MAX_PAYLOAD_BYTES_KB "
        f"(now {limit // 1024}) to allow more"
    )


def _unknown_path_message(path: str, event_path: str) -> str:
    known = ", ".join(f"{prefix}/..." for prefix in PREFIXES)
    return f"{path} is not proxied: the proxy serves {known}; events go to {event_path}, health to {HEALTH_PATH}"
