"""The direct path to the Kubernetes API: credentials, and which configurations it serves."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import kubernetes.client
import pytest
import trustme

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
    exempt = kubernetes.client.Configuration(host="https://k8s.example:6443")
    exempt.proxy, exempt.no_proxy = "http://proxy.example:3128", "localhost,.example"
    assert kubehttp.usable(exempt) and kubehttp.proxy_for(exempt) is None  # as the client: no proxy for it


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
        assert await direct.authorization() == "Bearer token-1"
        now[0] += 9.9
        assert await direct.authorization() == "Bearer token-1" and len(refreshed) == 1
        now[0] += 0.1
        assert await direct.authorization() == "Bearer token-2" and len(refreshed) == 2
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


async def test_a_failing_refresh_keeps_the_token_before_and_the_event_loop_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hook runs in a thread (an exec plugin may take seconds); when it fails, the token it gave
    before is sent again and the API server decides."""
    config = kubernetes.client.Configuration(host="https://k8s.example:6443")
    config.api_key = {"BearerToken": "Bearer first"}
    threads: list[str] = []

    def refresh(configuration: Any) -> None:
        threads.append(threading.current_thread().name)
        if len(threads) > 1:
            raise RuntimeError("exec plugin exited with 1")

    config.refresh_api_key_hook = refresh  # type: ignore[assignment]
    now = [0.0]
    direct = kubehttp.KubeHttp(config, max_connections=2, monotonic=lambda: now[0])
    try:
        assert await direct.authorization() == "Bearer first"
        now[0] += 10
        assert await direct.authorization() == "Bearer first"
    finally:
        await direct.aclose()
    assert len(threads) == 2 and threading.main_thread().name not in threads
    assert "exec plugin exited with 1" in caplog.text


async def test_a_rotated_ca_is_used_for_the_next_connections(tmp_path: Path) -> None:
    """As the client's urllib3 pool (which loads the CA per connection) did: after the CA file
    changed, new connections trust the new CA."""
    old_ca, new_ca = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "ca.crt"
    old_ca.cert_pem.write_to_path(str(ca_file))
    config = kubernetes.client.Configuration(host="https://k8s.example:6443")
    config.ssl_ca_cert = str(ca_file)
    now = [0.0]
    direct = kubehttp.KubeHttp(config, max_connections=2, monotonic=lambda: now[0])
    try:
        await direct.authorization()
        before = direct.transport._tls()
        assert _trusts(before, old_ca) and not _trusts(before, new_ca)
        new_ca.cert_pem.write_to_path(str(ca_file))
        os.utime(ca_file, (1, 1))  # (a new modification time, however fast the test runs)
        now[0] += 10
        await direct.authorization()
        after = direct.transport._tls()
        assert _trusts(after, new_ca) and not _trusts(after, old_ca)
    finally:
        await direct.aclose()


def _trusts(context: ssl.SSLContext, ca: trustme.CA) -> bool:
    subjects = {tuple(c["subject"]) for c in context.get_ca_certs()}
    issued = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode()).get_ca_certs()
    return any(tuple(c["subject"]) in subjects for c in issued)
