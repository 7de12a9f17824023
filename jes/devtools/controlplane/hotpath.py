"""The api-service's ``POST /v1/event`` served without Starlette's routing and response objects.

An integration sends four events per task (``.started``, progress, ``.finished``), so this is
the control plane's busiest route by far; Starlette's middleware stack, router and
``Request``/``JSONResponse`` cost more CPU than the work itself. :class:`HotRoutes` sits between
the gateway (:mod:`asgi`: body limit, faults, authentication) and Starlette and answers exact
(method, path) matches itself — same status codes, same JSON bytes, same headers as the Starlette
route gave; every other request goes on to Starlette unchanged.

An accepted event is still processed by the shipyard-controller asynchronously, after the answer,
as in Keptn: not on the pump thread (waking it costs two thread switches per event) but by a
callback the server's event loop runs soon after the answer was sent, possibly after other requests
it has already read (:meth:`state.ControlPlaneState.drain`; the pump's 50 ms tick catches anything
left should the loop stop first).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from jes.devtools.controlplane import asgi, httputil, models, state

#: What the api-service consumes (a request without a Content-Type is let through).
EVENT_CONTENT_TYPES = ("application/json", "application/cloudevents+json")

#: (request headers, body) → (status, JSON body).
Handler = Callable[[list[tuple[bytes, bytes]], bytes], tuple[int, Any]]

#: Starlette's ``JSONResponse.render``, without building its encoder for every answer.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode


class HotRoutes:
    """ASGI: answer the routes in ``routes`` (by exact method and path), pass the rest to ``app``."""

    def __init__(
        self, app: asgi.ASGIApp, routes: dict[tuple[str, str], Handler], *, after_answer: Callable[[], None]
    ) -> None:
        self._app = app
        self._routes = routes
        self._after_answer = after_answer

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        handler = None
        if scope["type"] == "http" and not scope.get("root_path"):
            handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            await self._app(scope, receive, send)
            return
        body = await _body(receive)
        try:
            status, answer = handler(scope["headers"], body)
        except models.ApiProblem as exc:
            status, answer = exc.status, {"code": exc.code, "message": exc.message}
        try:
            await send_json(send, status, answer)
        finally:
            asyncio.get_running_loop().call_soon(self._after_answer)


async def _body(receive: asgi.Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: asgi.Send, status: int, answer: Any) -> None:
    """What Starlette's ``JSONResponse(answer, status_code=status)`` sends."""
    raw = _encode(answer).encode("utf-8")
    headers = [(b"content-length", str(len(raw)).encode("latin-1")), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The first value of a header (``name`` in lower case), "" when absent."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class EventIntake:
    """``POST /v1/event``: the api-service's checks, then :meth:`state.ControlPlaneState.accept_event`."""

    def __init__(self, cp_state: state.ControlPlaneState, *, strict_validation: bool, max_event_size_bytes: int):
        self._state = cp_state
        self._strict = strict_validation
        self._max_event_size_bytes = max_event_size_bytes

    def __call__(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, Any]:
        content_type = header(headers, b"content-type").split(";")[0].strip().lower()
        if content_type and content_type not in EVENT_CONTENT_TYPES:
            return _error(415, f"unsupported media type {content_type!r}: send application/json")
        try:
            decoded = httputil.json_loads(body)
        except ValueError as exc:
            return _error(400, f"parsing body failed: {exc}")
        incoming = models.parse_incoming_event(decoded)
        if self._strict:
            if len(body) > self._max_event_size_bytes:
                limit_kb = self._max_event_size_bytes // 1024
                return _error(400, f"event size exceeds the maximum of {limit_kb} KB")
            problem = models.strict_problem(incoming)
            if problem is not None:
                return _error(400, problem)
        event, _ = self._state.accept_event(incoming, defer=True)
        return 200, {"keptnContext": event["shkeptncontext"]}


def _error(status: int, message: str) -> tuple[int, Any]:
    return status, {"code": status, "message": message}
