"""Fixtures: a fake Kubernetes API over loopback HTTP and a kubernetes runner talking to it.

Every Job the client sends to the fake is checked with ``kubernetes-validate --strict`` when the
test ends (equal shapes once).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kubernetes.client
import kubernetes_validate
import pytest

from fakes.fake_kube import FakeKube
from jes.runner.kubernetes.runner import KubernetesRunner
from jes.util import retry
from tests.runner.kubernetes import helpers

K8S_VERSION = "1.33.0"
FAST = retry.Backoff((0.01, 0.02, 0.05, 0.1))


def validate_jobs(kube: FakeKube) -> None:
    seen: set[str] = set()
    for job in kube.created_jobs:
        shape = helpers.shape(job)
        if shape in seen:
            continue
        seen.add(shape)
        try:
            kubernetes_validate.validate(job, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"invalid Job {job['metadata'].get('name')}: {exc.message} at {list(exc.path)}")


@pytest.fixture(scope="module")
def kube_server() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval_s=0.5, image_backoff_s=0.05, config_retry_s=0.2) as fake:
        yield fake


@pytest.fixture
def kube(kube_server: FakeKube) -> Iterator[FakeKube]:
    """The module's fake API server, emptied for this test; its Jobs are validated at the end."""
    kube_server.reset()
    yield kube_server
    validate_jobs(kube_server)
    assert kube_server.unauthorized() == {}  # every request (watches, log streams too) had the token


@pytest.fixture
def api(kube: FakeKube) -> Iterator[kubernetes.client.ApiClient]:
    client = kube.api_client()
    yield client
    client.close()


@contextlib.asynccontextmanager
async def started_runner(api: kubernetes.client.ApiClient, **options: Any) -> AsyncIterator[KubernetesRunner]:
    """A started runner on the fake API with the tests' short waits; ``options`` add or override."""
    kube_runner = KubernetesRunner(
        api_client=api,
        **{
            "backoff": FAST,
            "pending_grace_s": 0.3,
            "missing_pod_check_s": 0.1,
            "watch_timeout_s": 5,
            "request_timeout_s": 10,
            "log_head_bytes": 4096,
            "log_tail_bytes": 4096,
            **options,
        },
    )
    await kube_runner.start()
    try:
        yield kube_runner
    finally:
        await kube_runner.close()


@pytest.fixture
async def runner(api: kubernetes.client.ApiClient) -> AsyncIterator[KubernetesRunner]:
    async with started_runner(api, build_job=helpers.hand_made_job) as kube_runner:
        yield kube_runner
