"""jes's token never leaves the proxy: not in an answer's body or headers, not in a log line —
even when the upstream echoes every header it was sent — and the caller's own credentials never
reach upstream."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from jes.util.asgiserver import AsgiServer
from tests.proxy.conftest import MakeProxy
from tests.proxy.support import TOKEN, EchoUpstream, header_values


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoUpstream, str]]:
    upstream = EchoUpstream()
    server = AsgiServer(upstream, host="127.0.0.1", port=0, setting="TEST_PORT")
    await server.start()
    yield upstream, f"http://127.0.0.1:{server.port}/api"
    await server.stop()


async def test_an_upstream_echoing_the_token_shows_only_stars_and_the_callers_credentials_stay_behind(
    echo: tuple[EchoUpstream, str], make_proxy: MakeProxy, caller: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    upstream, endpoint = echo
    proxy = await make_proxy(endpoint=endpoint)
    caplog.set_level(logging.INFO)  # httpcore's DEBUG traces show raw headers: jes's log filter redacts those
    caplog.set_level(logging.DEBUG, logger="jes")
    answer = await caller.get(
        f"{proxy.url}/controlPlane/v1/project?b=2&a=%2F",
        headers={
            "x-token": "caller-token",
            "Authorization": "Bearer caller-bearer",
            "X-Custom": "kept",
            "Connection": "keep-alive, x-hop",
            "X-Hop": "dropped",
            "TE": "trailers",
        },
    )
    assert answer.status_code == 200
    assert TOKEN not in answer.text
    assert all(TOKEN not in value for value in answer.headers.values())
    assert answer.headers["x-echo-token"] == "***"
    seen = json.loads(answer.content)
    # upstream got jes's token once (shown here scrubbed), never the caller's credentials
    assert header_values(seen["headers"], "x-token") == ["***"]
    assert header_values(seen["headers"], "authorization") == []
    assert "caller-token" not in answer.text and "caller-bearer" not in answer.text
    assert header_values(seen["headers"], "x-custom") == ["kept"]
    for hop in ("x-hop", "te"):
        assert header_values(seen["headers"], hop) == []
    assert "x-hop" not in header_values(seen["headers"], "connection")[0]  # httpx sends its own
    assert header_values(seen["headers"], "host") == [endpoint.split("/")[2]]
    assert (seen["raw_path"], seen["query"]) == ("/api/controlPlane/v1/project", "b=2&a=%2F")
    # the real token did reach upstream (the echo recorded it unscrubbed)
    assert header_values(upstream.requests[0]["headers"], "x-token") == [TOKEN]
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_the_token_in_an_unreachable_endpoint_is_not_shown_in_the_502_nor_logged(
    make_proxy: MakeProxy, caller: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await make_proxy(endpoint=f"http://127.0.0.1:{port}/{TOKEN}/api")
    caplog.set_level(logging.INFO)  # httpcore's DEBUG traces show raw headers: jes's log filter redacts those
    caplog.set_level(logging.DEBUG, logger="jes")
    answer = await caller.get(f"{proxy.url}/controlPlane/v1/project")
    assert answer.status_code == 502
    assert TOKEN not in answer.text and "***" in answer.json()["message"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("jes.proxy")]
    assert len(warnings) == 1 and "GET /controlPlane/v1/project" in warnings[0].getMessage()
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_an_event_that_cannot_be_sent_is_502_without_the_token(
    make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await make_proxy(endpoint=f"http://127.0.0.1:{port}/{TOKEN}/api")
    answer = await caller.post(f"{proxy.url}/event", json={"specversion": "1.0", "type": "sh.keptn.event.x.triggered"})
    assert answer.status_code == 502
    assert TOKEN not in answer.text and "***" in answer.json()["message"]
