"""jes serve with the kubernetes runner: local control plane + fake Kubernetes API over loopback.

Claims are Leases, so several replicas share the work: each event is taken once, each task gets one
Job, and a replica that dies mid-task is replaced by another that adopts its Job."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jes import retry
from jes.keptn.controlplane.server import LocalControlPlane
from jes.ledger import leases
from jes.runner import kube_client
from jes.runner.kubernetes import KubernetesRunner
from jes.service import Service
from jes.testing.fake_kube import FakeKube
from tests.conftest import k8s_valid
from tests.service.support import jes_settings, ledger_check, sequence_done, trigger_body, wait_until

FAST = retry.Backoff((0.01, 0.05, 0.1, 0.2))


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    """The fake API; every Job jes created is checked against the Kubernetes schemas at the end."""
    with FakeKube(image_backoff_s=0.05) as fake:
        fake.behave(image="alpine", logs="hello from the job\n", duration_s=0.3)
        yield fake
        for job in {json.dumps(j, sort_keys=True): j for j in fake.created_jobs}.values():
            k8s_valid(job)


def make_service(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, holder: str, **overrides: Any) -> Service:
    settings = jes_settings(
        plane, tmp_path / holder, runner="kubernetes", k8s_pod_name=holder, job_namespace="keptn-jes", **overrides
    )
    runner = KubernetesRunner(api_client=kube.api_client(), backoff=FAST, pending_grace_s=0.5, watch_timeout_s=5)
    store = leases.LeaseLedger(
        lambda: kube_client.KubeApi(runner.api_client, executor=runner.executor, backoff=FAST, request_timeout_s=5),
        namespace="keptn-jes",
        executor_id=settings.executor_id,
        holder=holder,
        renew_interval_s=settings.lease_renew_s,
        lease_duration_s=settings.lease_duration_s,
    )
    return Service(settings, runner=runner, store=store, health_host="127.0.0.1")


@contextlib.asynccontextmanager
async def started(service: Service) -> AsyncIterator[Service]:
    await service.start()
    try:
        yield service
    finally:
        if not service.http.is_closed:  # abandon() already stopped it
            await service.shutdown()


def jobs_created(kube: FakeKube) -> Counter[str]:
    """Create requests per Job name (a second request is answered 409 and the Job adopted)."""
    return Counter(job["metadata"]["name"] for job in kube.created_jobs)


def job_uids(kube: FakeKube) -> dict[str, str]:
    return {job["metadata"]["name"]: job["metadata"]["uid"] for job in kube.objects("jobs", "keptn-jes")}


async def test_hello_world_runs_as_a_job_and_reports_its_logs(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    async with started(make_service(plane, kube, tmp_path, "jes-0")):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context))
    finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]
    assert finished["data"]["result"] == "pass"
    assert "hello from the job" in finished["data"]["message"]
    (job,) = kube.created_jobs
    k8s_valid(job)
    assert job["metadata"]["namespace"] == "keptn-jes"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["Hello, world from Europe!"]
    all_leases = kube.objects("leases", "keptn-jes")
    claims = [lease for lease in all_leases if lease["metadata"]["labels"][leases.CLAIM_LABEL] == "event"]
    assert len(claims) == 1 and '"done":true' in claims[0]["metadata"]["annotations"][leases.RECORD_ANNOTATION]
    ledger_check(plane)


@pytest.mark.parametrize(("replicas", "count"), [(2, 12), (3, 20)])
async def test_replicas_take_each_event_once(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, replicas: int, count: int
) -> None:
    """Replicas racing for the same events: every claim conflict resolves to one owner."""
    async with contextlib.AsyncExitStack() as stack:
        for i in range(replicas):
            await stack.enter_async_context(started(make_service(plane, kube, tmp_path, f"jes-{i}")))
        ids = plane.inject_triggered(
            task="sayhello", project="my-first-project", stage="dev", service="service1",
            data={"sayhello": {"location": "EU"}}, count=count,
        )  # fmt: skip
        await wait_until(
            lambda: all(plane.events(type="sh.keptn.event.sayhello.finished", triggered_id=i) for i in ids),
            timeout_s=30,
        )
    ledger_check(plane)
    created = jobs_created(kube)
    assert len(created) == count and set(created.values()) == {1}
    holders = Counter(event["data"]["jes"]["executor"] for event in plane.events(type="sh.keptn.event.sayhello.finished"))
    assert holders == {"keptn-jes/-": count}


async def test_a_replica_that_dies_mid_task_is_replaced_and_its_job_adopted(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="alpine", logs="long task\n", duration_s=1.5)
    first = make_service(plane, kube, tmp_path, "jes-a")
    await first.start()
    context = plane.trigger_sequence(trigger_body("EU"))
    await wait_until(lambda: len(kube.created_jobs) == 1, what="the Job")
    original = job_uids(kube)
    await first.abandon()  # the pod dies: no handover, its heartbeat stops
    async with started(make_service(plane, kube, tmp_path, "jes-b")):
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20, what="the second replica to finish")
    ledger_check(plane)
    assert job_uids(kube) == original  # adopted (the second create was answered 409), never recreated
    finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]
    assert "long task" in finished["data"]["message"]


async def test_the_same_replica_resumes_at_once_after_a_restart(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="alpine", logs="resumed\n", duration_s=0.8)
    first = make_service(plane, kube, tmp_path, "jes-0")
    await first.start()
    context = plane.trigger_sequence(trigger_body("EU"))
    await wait_until(lambda: len(kube.created_jobs) == 1)
    original = job_uids(kube)
    await first.abandon()
    async with started(make_service(plane, kube, tmp_path, "jes-0")):
        await wait_until(lambda: sequence_done(plane, context), timeout_s=10)
    ledger_check(plane)
    assert job_uids(kube) == original


async def test_kubernetes_api_faults_are_retried_or_reported(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.faults.fail(503, times=3, verb="create", resource="batch/jobs")
    async with started(make_service(plane, kube, tmp_path, "jes-0")):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context))
        assert (
            plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]["data"]["result"] == "pass"
        )
        kube.behave(image="alpine", image_pull="ErrImagePull")
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context))
    data = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]["data"]
    assert data["result"] == "fail" and ("ErrImagePull" in data["message"] or "ImagePullBackOff" in data["message"])
    assert data["jes"]["tasks"][0]["status"] == "cannot_start"
    ledger_check(plane)


async def test_a_missing_permission_is_named_in_the_report(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.faults.forbid("create", "batch/jobs", "keptn-jes")
    async with started(make_service(plane, kube, tmp_path, "jes-0")):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context))
    message = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]["data"]["message"]
    assert "jes may not create batch/jobs in namespace 'keptn-jes'" in message
