"""The direct path to the Kubernetes API: credentials, and which configurations it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import kubernetes.client
import pytest

from fakes.fake_kube import FakeKube
from jes import errors
from jes.clients import kube as kube_client
from jes.clients import kubehttp
from jes.util import retry


def test_a_proxy_or_a_tls_server_name_keeps_the_clients_own_path() -> None:
    plain = kubernetes.client.Configuration(host="https://k8s.example:6443")
    assert kubehttp.usable(plain)
    proxied = kubernetes.client.Configuration(host="https://k8s.example:6443")
    proxied.proxy = "http://proxy.example:3128"
    named = kubernetes.client.Configuration(host="https://10.0.0.1:6443")
    named.tls_server_name = "kubernetes.default"
    assert not kubehttp.usable(proxied) and not kubehttp.usable(named)


async def test_the_token_is_asked_for_again_every_ten_seconds() -> None:
    """Its refresh hook (an expiring in-cluster or exec token) runs at most every 10 s, not per call."""
    config = kubernetes.client.Configuration(host="https://k8s.example:6443")
    config.api_key = {"BearerToken": "Bearer token-0"}  # as the in-cluster and kubeconfig loaders keep it
    refreshed: list[int] = []

    def refresh(configuration: Any) -> None:
        refreshed.append(1)
        configuration.api_key["BearerToken"] = f"Bearer token-{len(refreshed)}"

    config.refresh_api_key_hook = refresh  # type: ignore[assignment]
    now = [100.0]
    direct = kubehttp.KubeHttp(config, max_connections=2, monotonic=lambda: now[0])
    try:
        assert direct.authorization() == "Bearer token-1"
        now[0] += 9.9
        assert direct.authorization() == "Bearer token-1" and len(refreshed) == 1
        now[0] += 0.1
        assert direct.authorization() == "Bearer token-2" and len(refreshed) == 2
    finally:
        await direct.aclose()


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


async def test_calls_carry_the_configurations_token_and_a_wrong_one_is_refused(kube: FakeKube) -> None:
    """The fake API server, as a real one, answers 401 to credentials it does not accept."""
    pool = ThreadPoolExecutor(2)
    right = kube_client.KubeApi(kube.api_client(), executor=pool, backoff=retry.Backoff(()), request_timeout_s=5)
    config = kube.configuration()
    config.api_key = {"authorization": "not-the-token"}
    wrong = kube_client.KubeApi(
        kubernetes.client.ApiClient(config), executor=pool, backoff=retry.Backoff(()), request_timeout_s=5
    )
    try:
        assert await right.list_pods("default", "a=b") == []
        with pytest.raises(errors.KubePermanentError, match="401 Unauthorized"):
            await wrong.list_pods("default", "a=b")
        with httpx.Client(timeout=5) as http:  # and without any
            assert http.get(f"{kube.url}/api/v1/namespaces/default/pods").status_code == 401
    finally:
        await asyncio.gather(right.aclose(), wrong.aclose())
        pool.shutdown()
