"""The fake API server's ASGI application: Starlette's routing answers, without its layers.

A ``Starlette(routes=[Route(...)])`` app passes every request through its error middleware,
exception middleware, router (a regular expression per route) and route wrapper. This does what that
stack does for the fake's routes — the first route whose path and method match serves it, with its
path parameters in ``scope["path_params"]``; a path that matches only with another method answers
405 ``Method Not Allowed`` (``Allow`` header), no path 404 ``Not Found``, a path that matches only
with or without a trailing slash a 307 redirect; an exception in an endpoint answers 500 ``Internal
Server Error`` (if the answer has not started) and is raised on to the server — at a fraction of the
cost per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from starlette import responses
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class Route:
    """A path such as ``/api/v1/namespaces/{namespace}/{plural}`` (each ``{name}`` one non-empty
    segment, as Starlette's ``str`` convertor) and the methods it serves (HEAD with GET)."""

    def __init__(self, path: str, endpoint: Endpoint, methods: Iterable[str]) -> None:
        self.parts = [(part[1:-1], True) if part.startswith("{") else (part, False) for part in path.split("/")]
        self.endpoint = endpoint
        self.methods = {method.upper() for method in methods}
        if "GET" in self.methods:
            self.methods.add("HEAD")

    def params(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if the path matches (whatever the method), else None."""
        if len(segments) != len(self.parts):
            return None
        found = {}
        for segment, (name, is_param) in zip(segments, self.parts, strict=True):
            if is_param:
                if not segment:
                    return None
                found[name] = segment
            elif segment != name:
                return None
        return found


class Router:
    """The ASGI application over :class:`Route` s (HTTP only: the server runs no lifespan)."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            response = await self._answer(scope, receive, send)
        except Exception:  # Starlette's ServerErrorMiddleware (not in debug mode), then on to the server
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        # every answer starts before anything in it can fail: an exception from here on goes to the
        # server, which closes the connection (no 500 after an answer started, as with Starlette)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> Response:
        route, params, allowed = self._match(scope["path"], scope["method"])
        if route is not None and params is not None:
            scope["endpoint"] = route.endpoint
            scope["path_params"] = params
            return await route.endpoint(Request(scope, receive, send))
        if allowed is not None:
            return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": ", ".join(allowed)})
        return self._redirect(scope) or PlainTextResponse("Not Found", 404)

    def _match(self, path: str, method: str) -> tuple[Route | None, dict[str, str] | None, set[str] | None]:
        """(route, params) of the first full match; else the methods of the first path-only match."""
        segments = path.split("/")
        allowed = None
        for route in self.routes:
            params = route.params(segments)
            if params is None:
                continue
            if method in route.methods:
                return route, params, None
            if allowed is None:
                allowed = route.methods
        return None, None, allowed

    def _redirect(self, scope: Scope) -> Response | None:
        """Starlette's ``redirect_slashes``: the same path with (or without) a trailing slash."""
        path = scope["path"]
        if path == "/":
            return None
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        route, _, allowed = self._match(other, scope["method"])
        if route is None and allowed is None:
            return None
        redirect_scope = dict(scope)
        redirect_scope["path"] = other
        return RedirectResponse(url=str(URL(scope=redirect_scope)))


class StreamingResponse(responses.StreamingResponse):
    """Starlette's streaming answer, with the client's disconnect watched by one plain task instead
    of an anyio task group: the stream runs in the request's task and is cancelled (its generator's
    ``finally`` runs) when the client goes away, as with Starlette (ASGI spec 2.3)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        gone = False

        async def listen() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streaming.cancel()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone:
                raise
            streaming.uncancel()
        finally:
            listener.cancel()
        if self.background is not None:
            await self.background()
