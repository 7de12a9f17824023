"""Fixtures of the Helm chart tests (see support.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.chart.support import HELMS, FakeKubeApi, Helm, helm_binary, serve


@pytest.fixture(params=sorted(HELMS), scope="session")
def helm(request: pytest.FixtureRequest) -> Helm:
    return Helm(request.param, helm_binary(request.param))


@pytest.fixture
def kube_api() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi()
    server = serve(api)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-kube-api", daemon=True
    )
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
