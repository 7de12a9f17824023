"""The uvicorn wrapper shared by the health endpoint and the API proxy."""

from __future__ import annotations

import socket

import httpx
import pytest
from starlette.applications import Starlette

from jes import errors
from jes.service.health import HealthServer
from jes.util.asgiserver import AsgiServer


async def test_serves_and_reports_the_port_it_bound() -> None:
    server = AsgiServer(Starlette(), host="127.0.0.1", port=0, setting="SOME_PORT")
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{server.port}/missing")).status_code == 404
    finally:
        await server.stop()


async def test_a_taken_health_port_names_health_endpoint_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(errors.JesError) as raised:
            await HealthServer(Starlette(), host="127.0.0.1", port=port).start()
    assert f"port {port} is already in use" in str(raised.value) and "HEALTH_ENDPOINT_PORT" in str(raised.value)


async def test_an_address_that_is_not_ours_is_a_clear_error() -> None:
    with pytest.raises(errors.JesError, match="cannot listen on 192.0.2.1:0: .*SOME_PORT"):
        await AsgiServer(Starlette(), host="192.0.2.1", port=0, setting="SOME_PORT").start()
