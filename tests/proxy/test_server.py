"""The listeners: the trusted one on localhost, the task one on every address; a port that is
taken is one clear error naming the setting to change; stop() is quick."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jes import errors
from jes.proxy.scopes import ScopeStore
from jes.proxy.server import ProxyServer
from jes.settings import Settings


async def forward_nothing(event: dict[str, Any]) -> None:
    return None


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def server_for(http: httpx.AsyncClient, **settings: Any) -> ProxyServer:
    chosen = Settings(keptn_api_endpoint="http://127.0.0.1:9/api", **settings)
    return ProxyServer.from_settings(chosen, http=http, forward_event=forward_nothing, scopes=ScopeStore())


async def test_a_taken_proxy_port_is_one_clear_error(taken_port: int) -> None:
    async with httpx.AsyncClient() as http:
        server = server_for(http, api_proxy_port=taken_port)
        with pytest.raises(errors.JesError) as raised:
            await server.start()
    message = str(raised.value)
    assert f"127.0.0.1:{taken_port}" in message and "already in use" in message and "API_PROXY_PORT" in message


async def test_a_taken_task_port_names_its_setting_and_leaves_nothing_listening(taken_port: int) -> None:
    async with httpx.AsyncClient() as http:
        server = server_for(http, api_proxy_port=0, api_proxy_task_port=taken_port)
        with pytest.raises(errors.JesError, match="JES_API_PROXY_TASK_PORT"):
            await server.start()
        trusted_port = server.trusted.port
    with socket.socket() as probe:  # the trusted listener was closed again
        assert probe.connect_ex(("127.0.0.1", trusted_port)) != 0


async def test_the_trusted_listener_is_local_and_the_task_listener_is_on_every_address() -> None:
    async with httpx.AsyncClient() as http:
        server = server_for(http, api_proxy_port=0, api_proxy_task_port=0)
        assert (server.trusted.host, server.task and server.task.host) == ("127.0.0.1", "0.0.0.0")
        assert server_for(http).trusted.port == 8081 and server_for(http).task is None
        await server.start()
        try:
            assert server.task is not None
            for port in (server.trusted.port, server.task.port):
                assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        finally:
            await server.stop()


async def test_a_task_port_without_a_scope_store_is_refused() -> None:
    async with httpx.AsyncClient() as http:
        settings = Settings(api_proxy_port=0, api_proxy_task_port=0)
        with pytest.raises(errors.JesError, match="ScopeStore"):
            ProxyServer.from_settings(settings, http=http, forward_event=forward_nothing)


async def test_stop_is_quick_even_with_a_request_in_flight() -> None:
    with socket.socket() as silent:  # an upstream that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        async with httpx.AsyncClient() as http, httpx.AsyncClient(timeout=30) as caller:
            settings = Settings(keptn_api_endpoint=endpoint, api_proxy_port=0, api_proxy_http_timeout_s=60)
            server = ProxyServer.from_settings(settings, http=http, forward_event=forward_nothing)
            await server.start()
            pending = asyncio.create_task(caller.get(f"http://127.0.0.1:{server.trusted.port}/controlPlane/v1/project"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 6.0
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
