"""An ASGI app served by uvicorn on its own event loop in a background thread.

Both doubles serve this way, so a test talks to them over real loopback HTTP while its own event
loop (or plain blocking code) runs: :class:`ThreadedServer` binds the socket first (the port is
known before the thread starts, and a busy port is an ``OSError`` at once), builds the app on the
server's loop, and stops within milliseconds instead of uvicorn's 100 ms polling steps — tests
start and stop hundreds of servers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")
ASGIApp = Callable[..., Any]

#: What both doubles want from uvicorn unless they say otherwise: no websockets, no lifespan, no
#: logging configuration of its own, no access log, and one second for open requests at stop.
DEFAULT_OPTIONS: dict[str, Any] = {
    "ws": "none",
    "lifespan": "off",
    "log_config": None,
    "access_log": False,
    "timeout_graceful_shutdown": 1,
}


class ServerDidNotStart(RuntimeError):
    """The server thread ended or timed out before uvicorn listened (the cause is chained)."""


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (0: any free port); ``OSError`` if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by an event instead of a 100 ms polling loop, and shut down fast."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await super().startup(sockets=sockets)

    async def main_loop(self) -> None:
        await self.on_tick(0)
        while not self.should_exit:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
            except TimeoutError:
                await self.on_tick(0)  # refreshes the Date header

    def request_stop(self) -> None:
        self.should_exit = True
        if self.started:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in self.servers:
            listener.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + (self.config.timeout_graceful_shutdown or 1)
        while (self.server_state.connections or self.server_state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()


class ThreadedServer:
    """Serves ``build_app()`` (called on the server's loop) until :meth:`stop`.

    ``uvicorn_options`` go to ``uvicorn.Config`` over :data:`DEFAULT_OPTIONS`; ``on_exit`` runs on
    the server's loop once it stopped serving (to cancel what the app started there).
    """

    def __init__(
        self,
        build_app: Callable[[], ASGIApp],
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = 10.0,
        on_exit: Callable[[], None] | None = None,
        **uvicorn_options: Any,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop while it runs."""
        self._build_app = build_app
        self._on_exit = on_exit
        self._options = DEFAULT_OPTIONS | uvicorn_options
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._thread_id = 0
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.started

    def start(self) -> None:
        """Bind (``OSError`` if the port is taken), serve, and return once listening."""
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, args=(sock,), name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s) or not self.running:
            failure = self._failure
            self.stop()
            raise ServerDidNotStart(f"{self.name} did not start on {self.host}:{self.port}") from failure

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and wait for the thread (forcing uvicorn out if it takes too long)."""
        server, thread = self._server, self._thread
        if server is not None:
            server.request_stop()
        if thread is not None:
            thread.join(timeout=timeout_s)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout=2)
        self._server = self._thread = None

    def call(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Run ``fn`` on the server's loop and return its result (at once on that loop's thread)."""
        loop = self.loop
        if loop is None:
            raise RuntimeError(f"{self.name} is not running")
        if threading.get_ident() == self._thread_id:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=timeout_s)

    def _run(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._serve(sock))
        except BaseException as exc:  # reported by start()
            self._failure = exc
        finally:
            self.loop = None
            sock.close()
            self._ready.set()

    async def _serve(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        server = _Server(uvicorn.Config(self._build_app(), **self._options))
        self._server = server
        serving = self.loop.create_task(server.serve(sockets=[sock]), name=f"{self.name}-uvicorn")
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        self._ready.set()
        try:
            await serving
        finally:
            if self._on_exit is not None:
                self._on_exit()
