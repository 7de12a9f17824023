"""Fixtures for the control-plane client tests (helpers live in keptn_fakes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from jes.clients.keptn import auth, client
from tests.clients.keptn.support import FakeClock, RecordingSleep, Script, make_settings


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_client(
    script: Script, sleep: RecordingSleep, clock: FakeClock
) -> AsyncIterator[Callable[..., client.KeptnClient]]:
    """``make_client(**settings)``: a KeptnClient over the scripted transport."""
    opened: list[httpx.AsyncClient] = []

    def build(**overrides: Any) -> client.KeptnClient:
        settings = make_settings(**overrides)
        http = auth.make_http_client(settings, transport=httpx.MockTransport(script), clock=clock)
        opened.append(http)
        return client.KeptnClient.from_settings(http, settings, sleep=sleep)

    yield build
    for http in opened:
        await http.aclose()
