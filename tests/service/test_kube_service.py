"""jes serve with the kubernetes runner: local control plane + fake Kubernetes API over loopback.

Claims are Leases, so several replicas share the work: each event is taken once, each task gets one
Job, and a replica that dies mid-task is replaced by another that adopts its Job."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from jes.ledger import leases
from jes.service.core import Service
from tests.conftest import k8s_valid
from tests.service.support import (
    job_uids,
    jobs_created,
    ledger_check,
    make_kube_service,
    sequence_done,
    started,
    trigger_body,
    wait_until,
)

make_service = make_kube_service


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


# --- tasks with the API proxy: the token Secret after the Job ------------------------------------------


def _with_task_proxy(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path) -> Service:
    from tests.natsserver import free_port

    return make_service(plane, kube, tmp_path, "jes-0", api_proxy_port=0, api_proxy_task_port=free_port())


async def test_a_task_with_proxy_access_runs_when_its_secret_comes_late(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """The Job first, its token Secret a second later (a slow API server): the pod waits for it
    (CreateContainerConfigError for jes's own Secret passes) and the task runs."""
    kube.faults.latency(1.0, verb="create", resource="secrets")
    async with started(_with_task_proxy(plane, kube, tmp_path)):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]
    assert finished["data"]["result"] == "pass", finished["data"].get("message")
    (job,) = kube.created_jobs
    name = job["metadata"]["name"]
    waited = [e["message"] for e in kube.events("keptn-jes") if e["reason"] == "Failed"]
    assert waited and all(m == f'Error: secret "{name}-api-proxy" not found' for m in waited)
    assert kube.request_count("patch", "secrets") == kube.request_count("get", "secrets") == 0
    ledger_check(plane)


async def test_a_task_whose_secret_cannot_be_created_is_reported_failed_once_and_never_runs(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """No right to create the token Secret: the Job is deleted before its task started, the event
    gets one .started and one errored .finished saying why, and the task is never tried again."""
    kube.faults.forbid("create", "secrets", "keptn-jes")
    async with started(_with_task_proxy(plane, kube, tmp_path)):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]
    data = finished["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    (job,) = kube.created_jobs
    name = job["metadata"]["name"]
    assert f"could not create Secret keptn-jes/{name}-api-proxy with the task's API-proxy token" in data["message"]
    assert f"Job {name} was deleted before its task started" in data["message"]
    assert kube.objects("jobs", "keptn-jes") == []
    ledger_check(plane)
