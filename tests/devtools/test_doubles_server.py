"""The threaded server both doubles serve with: start, stop, a busy port, a failing app, calls onto its loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from jes.devtools.doubles.server import ServerDidNotStart, ThreadedServer


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_it_serves_on_its_own_loop_until_stopped() -> None:
    built_on: list[int] = []
    exited: list[bool] = []

    def build() -> Any:
        asyncio.get_running_loop()  # the app is made on the server's loop
        built_on.append(threading.get_ident())
        return hello

    server = ThreadedServer(build, name="test-server", on_exit=lambda: exited.append(True))
    server.start()
    try:
        assert server.running and server.port > 0
        assert httpx.get(f"http://127.0.0.1:{server.port}/").text == "hello"
        assert server.call(threading.get_ident) == built_on[0] != threading.get_ident()
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 3.0  # no join timeout was waited out (a busy machine is slow)
    assert exited == [True] and not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/", timeout=2)
    with pytest.raises(RuntimeError, match="not running"):
        server.call(lambda: None)


def test_a_busy_port_is_an_os_error() -> None:
    first = ThreadedServer(lambda: hello, name="first")
    first.start()
    try:
        with pytest.raises(OSError):
            ThreadedServer(lambda: hello, name="second", port=first.port).start()
    finally:
        first.stop()


def test_an_app_that_cannot_be_built_is_reported() -> None:
    def build() -> Any:
        raise ValueError("no app today")

    server = ThreadedServer(build, name="broken")
    with pytest.raises(ServerDidNotStart, match="broken did not start") as caught:
        server.start()
    assert isinstance(caught.value.__cause__, ValueError)
    assert not server.running
