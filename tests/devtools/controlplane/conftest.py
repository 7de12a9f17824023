"""Fixtures: local control planes started on loopback, and HTTP clients for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers


@pytest.fixture
def make_cp() -> Iterator[Callable[..., server.LocalControlPlane]]:
    """``make_cp(**options)``: a started control plane seeded with the hello-world by default."""
    started: list[server.LocalControlPlane] = []

    def make(**options: Any) -> server.LocalControlPlane:
        options.setdefault("token", helpers.TOKEN)
        options.setdefault("seed_dir", helpers.SEED)
        control_plane = server.LocalControlPlane(**options)
        control_plane.start()
        started.append(control_plane)
        return control_plane

    yield make
    for control_plane in started:
        control_plane.stop()


@pytest.fixture
def make_client() -> Iterator[Callable[..., httpx.Client]]:
    """``make_client(cp, token=...)``: an httpx client on ``cp.url`` sending ``x-token``."""
    opened: list[httpx.Client] = []

    def make(control_plane: server.LocalControlPlane, *, token: str | None = helpers.TOKEN) -> httpx.Client:
        headers = {"x-token": token} if token is not None else {}
        client = httpx.Client(base_url=control_plane.url, headers=headers, timeout=5, verify=helpers.SSL_CONTEXT)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def clock() -> server.FakeClock:
    return server.FakeClock(datetime(2024, 1, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def cp(make_cp: Callable[..., server.LocalControlPlane], clock: server.FakeClock) -> server.LocalControlPlane:
    return make_cp(clock=clock)


@pytest.fixture
def client(cp: server.LocalControlPlane, make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client(cp)
