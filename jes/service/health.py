"""``/health`` (alive), ``/ready`` (registered and polling) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jes.service.metrics import Metrics

logger = logging.getLogger(__name__)


def app(*, problems: Callable[[], list[str]], metrics: Metrics) -> Starlette:
    """``problems()`` lists why jes is not ready (empty: ready); ``/ready`` answers them."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "OK"})

    async def readiness(request: Request) -> Response:
        found = problems()
        metrics.ready.set(0 if found else 1)
        if not found:
            return JSONResponse({"status": "OK"})
        return JSONResponse({"status": "not ready: " + "; ".join(found), "problems": found}, status_code=503)

    async def exposition(request: Request) -> Response:
        metrics.ready.set(0 if problems() else 1)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[Route("/health", health), Route("/ready", readiness), Route("/metrics", exposition)],
    )


class _QuietServer(uvicorn.Server):
    """uvicorn, quieter: leaves SIGTERM/SIGINT to the service (uvicorn would capture and re-raise
    them) and wakes once a second instead of ten times while idle (stopped by an event)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop = asyncio.Event()
        await super().startup(sockets=sockets)

    async def main_loop(self) -> None:
        await self.on_tick(0)
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
            await self.on_tick(0)  # refreshes the Date header

    def request_stop(self) -> None:
        self.should_exit = True
        if getattr(self, "_stop", None) is not None:
            self._stop.set()


class HealthServer:
    """uvicorn serving :func:`app` inside the service's event loop."""

    def __init__(self, application: Starlette, *, host: str = "0.0.0.0", port: int = 8080) -> None:
        config = uvicorn.Config(
            application, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = _QuietServer(config)
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        # IPPROTO_TCP: asyncio then sets TCP_NODELAY (otherwise answers wait ~40 ms for delayed ACKs)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self._server.config.host, self.port))
        self.port = self._sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="jes-health-server")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        self._server.request_stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()
