"""The instrumentation the benchmarks read from the fakes: when a Job was marked finished (fake
Kubernetes API) and when open events of a type were polled (local control plane)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.runner.kubernetes import helpers


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


def test_job_finished_at_is_the_moment_the_controller_marked_the_job(kube: FakeKube) -> None:
    kube.behave(image="busybox", duration_s=0.1)
    kube.behave(job="bad", exit_code=3)
    before = time.time()
    for name in ("good", "bad"):
        kube.put(helpers.job_manifest(name, namespace="ns1"))
    helpers.wait_until(lambda: len(kube.job_finished_at("ns1")) == 2)
    finished = kube.job_finished_at("ns1")
    assert before + 0.1 <= finished["good"] <= time.time()
    assert before <= finished["bad"] < finished["good"]
    assert set(kube.job_finished_at()) == {"ns1/good", "ns1/bad"}
    assert kube.job_finished_at("other") == {}


def test_job_finished_at_keeps_the_first_moment_and_survives_deletion_until_reset(kube: FakeKube) -> None:
    kube.put(helpers.job_manifest("once"))
    helpers.wait_until(lambda: "once" in kube.job_finished_at("default"))
    first = kube.job_finished_at("default")["once"]
    job = kube.get("jobs", "default", "once")
    assert job is not None
    kube.put(job | {"metadata": job["metadata"] | {"labels": {"touched": "yes"}}})
    kube.delete("jobs", "default", "once")
    assert kube.job_finished_at("default") == {"once": first}
    kube.reset()
    assert kube.job_finished_at() == {}


def test_the_control_plane_remembers_when_each_type_was_polled() -> None:
    with LocalControlPlane(token="t") as plane, httpx.Client(headers={"x-token": "t"}, timeout=5) as http:
        before = time.time()
        for _ in range(2):
            answer = http.get(f"{plane.url}/controlPlane/v1/event/triggered/sh.keptn.event.a.triggered")
            assert answer.status_code == 200
        http.get(f"{plane.url}/controlPlane/v1/event/triggered/sh.keptn.event.b.triggered")
        polls = plane.triggered_poll_times("sh.keptn.event.a.triggered")
        assert len(polls) == 2 and before <= polls[0] <= polls[1] <= time.time()
        assert len(plane.triggered_poll_times("sh.keptn.event.b.triggered")) == 1
        assert plane.triggered_poll_times("sh.keptn.event.c.triggered") == []


def test_both_fakes_count_the_requests_they_serve(kube: FakeKube) -> None:
    with LocalControlPlane(token="t") as plane, httpx.Client(headers={"x-token": "t"}, timeout=5) as http:
        for _ in range(2):
            http.get(f"{plane.url}/controlPlane/v1/event/triggered/sh.keptn.event.a.triggered")
        http.post(f"{plane.url}/v1/event", json={})  # refused (no type): still a request
        counts = plane.request_counts()
        assert counts["GET /api/controlPlane/v1"] == 2 and counts["POST /api/v1/event"] == 1
    kube.put(helpers.job_manifest("counted", namespace="ns1"))
    with httpx.Client(timeout=5, headers={"Authorization": "Bearer fake-token"}) as http:
        http.get(f"{kube.url}/apis/batch/v1/namespaces/ns1/jobs/counted")
        http.get(f"{kube.url}/apis/batch/v1/namespaces/ns1/jobs")
    counts = kube.request_counts()
    assert counts == {"get jobs": 1, "list jobs": 1}  # by RBAC verb and resource
    assert kube.request_count("get", "batch/jobs") == 1
