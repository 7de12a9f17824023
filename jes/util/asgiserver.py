"""An ASGI app served by uvicorn inside the caller's event loop: the health endpoint, the API proxy.

:class:`AsgiServer` binds its socket itself, so a port that is taken is one clear
:class:`errors.JesError` naming the address and the setting to change — not a traceback from deep
inside uvicorn. It leaves SIGTERM/SIGINT to its owner (uvicorn would capture and re-raise them),
wakes once a second instead of ten times while idle, and stops within a few seconds even with
requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from jes import errors

#: How long requests in flight may take to finish once :meth:`AsgiServer.stop` is called.
GRACEFUL_STOP_S = 3.0


class _QuietServer(uvicorn.Server):
    """uvicorn, stopped by an event rather than its 100 ms polling loop; signals left to the owner."""

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


def bind(host: str, port: int, *, setting: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port), or a :class:`errors.JesError` that names
    the address and ``setting`` — the variable that chose the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio then sets TCP_NODELAY (otherwise answers wait ~40 ms for delayed ACKs)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise errors.JesError(_bind_message(host, port, setting, exc)) from exc
    return sock


def _bind_message(host: str, port: int, setting: str, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: port {port} is already in use; set {setting} to a free port"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); change {setting}"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {where}: {reason}; check the address and {setting}"


class AsgiServer:
    """Serves one ASGI app on ``host:port`` with uvicorn, in the running event loop.

    ``setting`` names the variable that chose the port (for the error when it is taken); ``port``
    holds the bound port after :meth:`start` (useful with ``port=0``).
    """

    def __init__(self, app: Any, *, host: str, port: int, setting: str, name: str = "jes-http") -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=int(GRACEFUL_STOP_S),
        )
        self._server = _QuietServer(config)
        self._setting = setting
        self._name = name
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.port = port

    async def start(self) -> None:
        """Bind and serve; returns once uvicorn listens. :class:`errors.JesError` if it cannot."""
        self._sock = bind(self.host, self.port, setting=self._setting)
        self.port = self._sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name=self._name)
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._close_socket()
            failure = self._task.exception()
            raise errors.JesError(f"{self._name} did not start on {self.host}:{self.port}: {failure}") from failure

    async def stop(self) -> None:
        """Stop accepting, give requests in flight :data:`GRACEFUL_STOP_S`, then close."""
        self._server.request_stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=GRACEFUL_STOP_S + 2.0)
            self._task = None
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
