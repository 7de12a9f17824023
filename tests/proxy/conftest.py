"""Fixtures of the proxy tests: the local control plane (it checks the ``x-token``), and
``make_proxy``: a proxy served on loopback in the test's event loop, its shared client built by
``make_http_client`` so the token is added by the client, as in jes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from jes.clients.keptn.auth import make_http_client
from jes.clients.keptn.client import KeptnClient
from jes.devtools.controlplane.server import LocalControlPlane
from jes.proxy.routes import Routes
from jes.proxy.scopes import ScopeStore
from jes.proxy.server import ProxyServer
from jes.settings import Settings
from jes.util import retry
from tests.proxy.support import SEED, TOKEN, Proxy

MakeProxy = Callable[..., Awaitable[Proxy]]
ONE_ATTEMPT = retry.Backoff(delays_s=())


@pytest.fixture
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED) as control_plane:
        yield control_plane


@pytest.fixture
async def make_proxy(plane: LocalControlPlane) -> AsyncIterator[MakeProxy]:
    """``await make_proxy(endpoint=..., token=..., http=..., routes=..., task=True, **settings)``.

    By default: remote mode against ``plane`` with its token; ``/event`` sends events on with
    ``POST /v1/event`` through the same client; ``task=True`` adds the scoped listener."""
    servers: list[ProxyServer] = []
    clients: list[httpx.AsyncClient] = []

    async def make(
        *,
        endpoint: str | None = None,
        token: str = TOKEN,
        http: httpx.AsyncClient | None = None,
        routes: Routes | None = None,
        task: bool = False,
        **overrides: Any,
    ) -> Proxy:
        settings = Settings(
            keptn_api_endpoint=plane.url if endpoint is None else endpoint,
            keptn_api_token=token,
            http_timeout_s=5.0,
            api_proxy_port=0,
            api_proxy_task_port=0 if task else None,
            **overrides,
        )
        if http is None:
            http = make_http_client(settings)
            clients.append(http)
        keptn = KeptnClient.from_settings(http, settings)
        forwarded: list[dict[str, Any]] = []
        error_logs: list[dict[str, Any]] = []

        async def forward_event(event: dict[str, Any]) -> None:
            await keptn.send_event(event, backoff=ONE_ATTEMPT)
            forwarded.append(event)

        scopes = ScopeStore()
        server = ProxyServer.from_settings(
            settings,
            http=http,
            forward_event=forward_event,
            on_error_log=error_logs.append,
            scopes=scopes,
            routes=routes,
        )
        await server.start()
        servers.append(server)
        return Proxy(server=server, scopes=scopes, forwarded=forwarded, error_logs=error_logs)

    yield make
    for server in servers:
        await server.stop()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def caller() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client for talking to the proxy (no credentials of its own)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
