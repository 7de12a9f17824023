"""Fixtures of the end-to-end tests: a local control plane seeded with the hello-world, as unkind as
Keptn (its datastore lags behind, the page-2 bug is on), and the fake Kubernetes API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.conftest import k8s_valid
from tests.natsserver import through_proxy
from tests.service.support import DATASTORE_LAG_S, SEED, TOKEN


@pytest.fixture
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED, datastore_lag_s=DATASTORE_LAG_S) as control_plane:
        yield control_plane


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    """The fake API; every Job jes created is checked against the Kubernetes schemas at the end."""
    with FakeKube(image_backoff_s=0.05, config_retry_s=0.2) as fake:
        fake.behave(image="alpine", logs="hello from the job\n", duration_s=0.3)
        yield fake
        for job in {json.dumps(j, sort_keys=True): j for j in fake.created_jobs}.values():
            k8s_valid(job)
        assert fake.unauthorized() == {}  # every request (watches, log streams too) had the token


@pytest.fixture
def nats_plane(nats: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED, datastore_lag_s=DATASTORE_LAG_S, nats_url=nats.url) as plane:
        through_proxy(monkeypatch, plane.base_url)  # (the fake Kubernetes API on loopback stays direct)
        yield plane
