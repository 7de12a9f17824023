"""A task with API-proxy access: the token reaches it through a Secret owned by its Job, never
through the Job itself; the Secret goes with the Job (owner references, garbage collection) and
survives no crash for long. Manifests pass ``kubernetes-validate --strict``; the runner runs against
the fake API server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes.models import ApiProxyAccess, Status, TaskSpec, api_proxy_secret_name, job_name
from jes.runner.kubernetes import manifests
from jes.runner.kubernetes.runner import KubernetesRunner
from jes.runner.kubernetes.task import JobTask
from tests.conftest import k8s_valid
from tests.runner.kubernetes import helpers

URL = "http://job-executor-service-api-proxy.keptn-jes.svc:8082"
TOKEN = "scoped-token-4c1f9e"
ACCESS = ApiProxyAccess(URL, TOKEN)


def proxy_spec(*, access: ApiProxyAccess | None = ACCESS, namespace: str = "default") -> TaskSpec:
    """A task built by jes's own manifests (not hand-made): what the service hands the runner."""
    task = helpers.task(namespace=namespace)
    name = job_name(helpers.EVENT.id, task.action_index, task.task_index)
    return TaskSpec(task=task, event=helpers.EVENT, job_name=name, config_hash="abc", api_proxy=access)


def container_env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def owner_of(job: dict[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}


def stored_token(kube: FakeKube, name: str, namespace: str = "default") -> str | None:
    secret = kube.get("secrets", namespace, name)
    return None if secret is None else base64.b64decode(secret["data"]["token"]).decode()


# --- manifests ------------------------------------------------------------------------------------


def test_the_job_reads_the_token_from_its_secret_and_never_holds_it() -> None:
    spec = proxy_spec()
    job = manifests.job_for(spec, manifests.JobSettings())
    k8s_valid(job)
    env = container_env(job)
    secret_name = api_proxy_secret_name(spec.job_name)
    assert secret_name == f"{spec.job_name}-api-proxy"
    assert env["KEPTN_API_PROXY_URL"] == {"name": "KEPTN_API_PROXY_URL", "value": URL}
    assert env["KEPTN_API_PROXY_TOKEN"] == {
        "name": "KEPTN_API_PROXY_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "token"}},
    }
    names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names[-2:] == ["KEPTN_API_PROXY_URL", "KEPTN_API_PROXY_TOKEN"]  # last: nothing overrides them
    assert TOKEN not in json.dumps(job)  # not in env, annotations, labels or anywhere else


def test_the_token_secret_is_labelled_like_the_jobs_other_objects() -> None:
    spec = proxy_spec()
    job = manifests.job_for(spec, manifests.JobSettings())
    secret = manifests.build_api_proxy_secret(job, TOKEN)
    k8s_valid(secret)
    config_map = next(manifests.build_config_maps(job, lambda piece: b"x", {"a.txt": 1}))
    assert secret["metadata"]["labels"] == config_map["metadata"]["labels"]
    assert secret["metadata"]["name"] == api_proxy_secret_name(job["metadata"]["name"])
    assert secret["metadata"]["namespace"] == job["metadata"]["namespace"]
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN


def test_without_proxy_access_the_job_is_unchanged() -> None:
    without = manifests.job_for(proxy_spec(access=None), manifests.JobSettings())
    assert "KEPTN_API_PROXY_URL" not in container_env(without)
    assert "KEPTN_API_PROXY_TOKEN" not in container_env(without)
    assert manifests.job_for(replace(proxy_spec(), api_proxy=None), manifests.JobSettings()) == without


def test_the_url_is_literal_for_kubernetes() -> None:
    job = manifests.job_for(proxy_spec(access=ApiProxyAccess("http://proxy/$(HOME)", TOKEN)), manifests.JobSettings())
    assert container_env(job)["KEPTN_API_PROXY_URL"]["value"] == "http://proxy/$$(HOME)"


def test_the_token_is_not_in_the_specs_repr() -> None:
    spec = proxy_spec()
    assert TOKEN not in repr(spec) and TOKEN not in repr(JobTask.of(spec, {}))
    assert URL in repr(spec)


# --- the runner against the fake API server ------------------------------------------------------------


async def test_the_secret_is_owned_by_the_job_and_goes_with_it_at_ttl(
    kube: FakeKube, runner: KubernetesRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = proxy_spec()
    kube.behave(job=spec.job_name, logs="used the proxy\n")

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    job = kube.get("jobs", "default", spec.job_name)
    assert job is not None
    name = api_proxy_secret_name(spec.job_name)
    secret = kube.get("secrets", "default", name)
    assert secret is not None and secret["metadata"]["ownerReferences"] == [owner_of(job)]
    assert stored_token(kube, name) == TOKEN
    (sent,) = kube.created_jobs
    assert TOKEN not in json.dumps(sent) and TOKEN not in json.dumps(job)
    assert container_env(sent)["KEPTN_API_PROXY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == name
    assert TOKEN not in caplog.text

    kube.clock.advance(job["spec"]["ttlSecondsAfterFinished"] + 1)  # the TTL controller deletes the Job

    await _eventually(lambda: kube.get("jobs", "default", spec.job_name) is None)
    assert kube.get("secrets", "default", name) is None  # garbage-collected with its owner


async def test_deleting_the_job_in_the_foreground_deletes_the_secret(kube: FakeKube, runner: KubernetesRunner) -> None:
    spec = proxy_spec()
    kube.behave(job=spec.job_name, duration_s=3600)
    running = asyncio.create_task(runner.run(spec), name="run-proxy-task")
    name = api_proxy_secret_name(spec.job_name)
    await _eventually(lambda: (kube.get("secrets", "default", name) or {}).get("metadata", {}).get("ownerReferences"))

    kube.delete("jobs", "default", spec.job_name, propagation="Foreground")  # as jes stops a task

    # the Job waits (foregroundDeletion) for its pod to terminate; its dependents go at once
    await _eventually(lambda: kube.get("secrets", "default", name) is None)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_without_proxy_access_no_secret_is_made(kube: FakeKube, runner: KubernetesRunner) -> None:
    spec = proxy_spec(access=None)
    kube.behave(job=spec.job_name)
    assert (await runner.run(spec)).status is Status.SUCCEEDED
    assert kube.objects("secrets", "default") == []
    assert kube.request_count(resource="secrets") == 0


async def test_a_secret_left_by_an_earlier_attempt_gets_this_runs_token(kube: FakeKube, runner: KubernetesRunner) -> None:
    """A crash after the Secret, before the Job: the next attempt creates the Job with the Secret
    holding the token the proxy knows now, owned by the Job."""
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    kube.add_secret(name, data={"token": "token-of-a-dead-process"})
    kube.behave(job=spec.job_name)

    assert (await runner.run(spec)).status is Status.SUCCEEDED

    job = kube.get("jobs", "default", spec.job_name)
    assert job is not None
    assert stored_token(kube, name) == TOKEN
    assert (kube.get("secrets", "default", name) or {})["metadata"]["ownerReferences"] == [owner_of(job)]


async def test_an_existing_job_adopts_the_secret(kube: FakeKube, runner: KubernetesRunner) -> None:
    """A crash after the Job, before the owner reference: the next attempt (409) makes it the owner."""
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    kube.behave(job=spec.job_name)
    kube.add_secret(name, data={"token": TOKEN})
    kube.put(manifests.job_for(spec, manifests.JobSettings()))

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED
    job = kube.get("jobs", "default", spec.job_name)
    assert job is not None
    assert (kube.get("secrets", "default", name) or {})["metadata"]["ownerReferences"] == [owner_of(job)]


async def test_adopt_only_owns_the_secret_of_a_job_that_reads_it(kube: FakeKube, runner: KubernetesRunner) -> None:
    """After a restart the service only adopts (it may not know the token any more): a Job that reads
    a token Secret still becomes its owner."""
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    kube.behave(job=spec.job_name)
    kube.add_secret(name, data={"token": TOKEN})
    kube.put(manifests.job_for(spec, manifests.JobSettings()))

    outcome = await runner.run(replace(spec, api_proxy=None), adopt_only=True)

    assert outcome.status is Status.SUCCEEDED
    job = kube.get("jobs", "default", spec.job_name)
    assert job is not None
    assert (kube.get("secrets", "default", name) or {})["metadata"]["ownerReferences"] == [owner_of(job)]


async def test_adopt_only_without_a_job_deletes_a_leftover_secret(kube: FakeKube, runner: KubernetesRunner) -> None:
    """A crash after the Secret, before the Job, then a restart that only adopts: the Job never
    comes, and neither does the token outlive its task."""
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    kube.add_secret(name, data={"token": TOKEN})

    outcome = await runner.run(replace(spec, api_proxy=None), adopt_only=True)

    assert outcome.status is Status.LOST
    assert kube.get("secrets", "default", name) is None
    assert kube.created_jobs == []


async def test_adopt_only_without_secrets_rights_stays_quiet(
    kube: FakeKube, runner: KubernetesRunner, caplog: pytest.LogCaptureFixture
) -> None:
    """Without proxy access for tasks the chart grants no rights on Secrets: looking for a leftover
    token Secret then is not worth a warning."""
    kube.faults.forbid("delete", "secrets", "default")
    outcome = await runner.run(proxy_spec(access=None), adopt_only=True)
    assert outcome.status is Status.LOST
    assert "Secret" not in caplog.text


async def test_a_job_that_cannot_be_created_leaves_no_secret(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.faults.forbid("create", "batch/jobs", "default")
    outcome = await runner.run(proxy_spec())
    assert outcome.status is Status.ERROR and "may not create batch/jobs" in outcome.reason
    assert kube.objects("secrets", "default") == []


async def test_no_right_to_create_secrets_is_an_error_before_any_job(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.faults.forbid("create", "secrets", "default")
    outcome = await runner.run(proxy_spec())
    assert outcome.status is Status.ERROR
    assert outcome.reason.startswith("permission denied: jes may not create secrets in namespace 'default'")
    assert kube.created_jobs == []


async def test_no_right_to_patch_leaves_the_secret_without_an_owner_and_says_so(
    kube: FakeKube, runner: KubernetesRunner, caplog: pytest.LogCaptureFixture
) -> None:
    spec = proxy_spec()
    kube.behave(job=spec.job_name)
    kube.faults.forbid("patch", "secrets", "default")

    assert (await runner.run(spec)).status is Status.SUCCEEDED

    name = api_proxy_secret_name(spec.job_name)
    assert not (kube.get("secrets", "default", name) or {})["metadata"].get("ownerReferences")
    assert f"Secret default/{name} keeps no owner" in caplog.text
    assert TOKEN not in caplog.text


async def _eventually(predicate: Any, timeout_s: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
    return value
