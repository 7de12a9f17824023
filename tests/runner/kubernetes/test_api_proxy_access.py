"""A task with API-proxy access: the token reaches it through a Secret owned by its Job, never
through the Job itself. The Secret is created after the Job with the Job as owner in the create body
(jes never reads or patches a Secret: either answer would hold every Secret's data), goes with the Job
(owner references, garbage collection), and its absence is waited for only within the grace.
Manifests pass ``kubernetes-validate --strict``; the runner runs against the fake API server."""

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
from jes.runner.kubernetes import status as kube_status
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
    assert "ownerReferences" not in secret["metadata"]
    owned = manifests.build_api_proxy_secret(job, TOKEN, owner_uid="0b6f3d3e-8d4e-4c1e-9a55-7c1f0f0e2a11")
    k8s_valid(owned)
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
         "uid": "0b6f3d3e-8d4e-4c1e-9a55-7c1f0f0e2a11"}
    ]  # fmt: skip


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


def _waiting_pod(message: str) -> dict[str, dict[str, Any]]:
    state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
    pod = {"metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"},
           "status": {"containerStatuses": [{"name": "task", "state": state}]}}  # fmt: skip
    return {"p": pod}


def test_only_the_tasks_own_token_secret_not_found_is_passing() -> None:
    own = api_proxy_secret_name("jes-job")
    final, passing = kube_status.stuck(_waiting_pod(f'secret "{own}" not found'), {}, (own,))
    assert final is None
    assert passing == (
        f'CreateContainerConfigError: secret "{own}" not found (container task): the Secret with the '
        "task's API-proxy token, which jes creates right after its Job, is not there"
    )
    for message in (
        'secret "db-password" not found',  # the task's own reference: it will not appear by itself
        f'secret "{api_proxy_secret_name("jes-other-job")}" not found',
        f"couldn't find key token in Secret default/{own}",  # there, but not as jes makes it
    ):
        final, passing = kube_status.stuck(_waiting_pod(message), {}, (own,))
        assert final is not None and final.status is Status.CANNOT_START and passing is None, message
    final, _ = kube_status.stuck(_waiting_pod(f'secret "{own}" not found'), {})
    assert final is not None  # without knowing its own Secrets, nothing is excused


# --- the runner against the fake API server ------------------------------------------------------------

#: What the chart does not grant on Secrets: the answer of each is the whole object (its data).
READING_VERBS = ("get", "list", "watch", "patch", "update")


def forbid_reading_secrets(kube: FakeKube) -> None:
    """The chart's RBAC: jes may create and delete Secrets in a job namespace, nothing else."""
    for verb in READING_VERBS:
        kube.faults.forbid(verb, "secrets")


def secret_requests(kube: FakeKube) -> dict[str, int]:
    return {verb: n for verb in (*READING_VERBS, "create", "delete") if (n := kube.request_count(verb, "secrets"))}


def note_main_container_states(kube: FakeKube, job: str) -> list[str]:
    """Every state (waiting reason, running, terminated) the Job's main container passes through."""
    seen: list[str] = []

    def note(plural: str, _: str, obj: dict[str, Any]) -> None:
        if plural != "pods" or obj["metadata"].get("labels", {}).get("job-name") != job:
            return
        for status in (obj.get("status") or {}).get("containerStatuses") or ():
            state = status.get("state") or {}
            label = (state.get("waiting") or {}).get("reason") or next(iter(state), "")
            if label and (not seen or seen[-1] != label):
                seen.append(label)

    kube.store_listener(note)
    return seen


async def test_the_secret_comes_after_the_job_owned_by_it_and_goes_with_it_at_ttl(
    kube: FakeKube, runner: KubernetesRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forbid_reading_secrets(kube)
    spec = proxy_spec()
    kube.behave(job=spec.job_name, logs="used the proxy\n")
    order: list[str] = []
    kube.store_listener(
        lambda plural, kind, obj: order.append(plural) if kind == "ADDED" and plural in ("jobs", "secrets") else None
    )

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    assert order == ["jobs", "secrets"]
    job = kube.get("jobs", "default", spec.job_name)
    assert job is not None
    name = api_proxy_secret_name(spec.job_name)
    secret = kube.get("secrets", "default", name)
    assert secret is not None and secret["metadata"]["ownerReferences"] == [owner_of(job)]
    assert stored_token(kube, name) == TOKEN
    assert secret_requests(kube) == {"create": 1}  # never read, never patched
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
    await _eventually(lambda: kube.get("secrets", "default", name))

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


async def test_a_secret_that_arrives_a_second_after_the_job_lets_the_task_run(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    """Job first, Secret next: a kubelet quicker than jes finds no Secret, waits and starts the
    container once it is there (CreateContainerConfigError for jes's own Secret is passing)."""
    spec = proxy_spec()
    kube.behave(job=spec.job_name, logs="ran\n")
    states = note_main_container_states(kube, spec.job_name)
    kube.faults.latency(1.0, verb="create", resource="secrets")

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    assert states == ["ContainerCreating", "CreateContainerConfigError", "running", "terminated"]
    name = api_proxy_secret_name(spec.job_name)
    (pod,) = kube.objects("pods", "default", labels=f"job-name={spec.job_name}")
    messages = [e["message"] for e in kube.events("default", pod["metadata"]["name"])]
    assert f'Error: secret "{name}" not found' in messages
    assert outcome.duration_s >= 1.0


async def test_a_secret_that_never_arrives_fails_the_task_after_the_grace(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    """A crash between the Job and its Secret, then a restart that only adopts (it no longer knows
    the token): the pod waits for the Secret until JES_TRANSIENT_GRACE_S, then the task fails saying
    why, and the Job is deleted — its task never ran."""
    spec = proxy_spec()
    kube.behave(job=spec.job_name)
    states = note_main_container_states(kube, spec.job_name)
    kube.put(manifests.job_for(spec, manifests.JobSettings()))
    runner.transient_grace_s = 0.6
    loop = asyncio.get_running_loop()
    began = loop.time()

    outcome = await runner.run(replace(spec, api_proxy=None), adopt_only=True)

    name = api_proxy_secret_name(spec.job_name)
    assert outcome.status is Status.CANNOT_START
    assert outcome.reason.startswith(f'still failing after 0.6s: CreateContainerConfigError: secret "{name}" not found')
    assert (
        "the Secret with the task's API-proxy token, which jes creates right after its Job, is not there"
        in outcome.reason
    )
    assert loop.time() - began >= 0.6
    assert "running" not in states
    await _eventually(lambda: kube.get("jobs", "default", spec.job_name) is None)
    assert kube.created_jobs == []


async def test_another_missing_secret_still_fails_at_once(kube: FakeKube, runner: KubernetesRunner) -> None:
    """Only jes's own token Secret is waited for; a Secret the task names that does not exist is not."""
    spec = proxy_spec()
    job = manifests.job_for(spec, manifests.JobSettings())
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"secretRef": {"name": "nowhere"}}]
    runner.transient_grace_s = 60
    hand_made = helpers.HandMadeSpec(**{f: getattr(spec, f) for f in ("task", "event", "job_name", "config_hash",
                                                                     "api_proxy")}, job=job)  # fmt: skip

    outcome = await runner.run(hand_made)

    assert outcome.status is Status.CANNOT_START
    assert outcome.reason == f'CreateContainerConfigError: secret "nowhere" not found (container {container["name"]})'


async def test_a_secret_left_by_an_earlier_attempt_is_replaced_not_patched(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    """A Secret of that name from an earlier attempt (an older jes made it before the Job): its token
    is unknown to the proxy now. It is deleted and created again, owned by the new Job."""
    forbid_reading_secrets(kube)
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    left = kube.add_secret(name, data={"token": "token-of-a-dead-process"})
    kube.behave(job=spec.job_name)

    assert (await runner.run(spec)).status is Status.SUCCEEDED

    job = kube.get("jobs", "default", spec.job_name)
    secret = kube.get("secrets", "default", name)
    assert job is not None and secret is not None
    assert stored_token(kube, name) == TOKEN
    assert secret["metadata"]["uid"] != left["metadata"]["uid"]
    assert secret["metadata"]["ownerReferences"] == [owner_of(job)]
    assert secret_requests(kube) == {"create": 2, "delete": 1}


async def test_a_lost_answer_creating_the_job_still_gives_it_its_secret(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    """The Job was created but the answer lost: the retry gets 409, adopts the Job and creates its
    Secret for it (owned by the adopted Job)."""
    spec = proxy_spec()
    kube.behave(job=spec.job_name)
    kube.faults.fail(503, verb="create", resource="batch/jobs", commit=True)

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    job = kube.get("jobs", "default", spec.job_name)
    assert job is not None and len(kube.created_jobs) == 2
    name = api_proxy_secret_name(spec.job_name)
    assert (kube.get("secrets", "default", name) or {})["metadata"]["ownerReferences"] == [owner_of(job)]
    assert stored_token(kube, name) == TOKEN


async def test_adopt_only_keeps_whatever_secret_exists(kube: FakeKube, runner: KubernetesRunner) -> None:
    """After a restart the service only adopts (it may not know the token any more): the Job's
    Secret is left as it is — not created, not patched, not deleted."""
    forbid_reading_secrets(kube)
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    kube.behave(job=spec.job_name)
    job = kube.put(manifests.job_for(spec, manifests.JobSettings()))
    kube.put(manifests.build_api_proxy_secret(job, TOKEN, owner_uid=job["metadata"]["uid"]))

    outcome = await runner.run(replace(spec, api_proxy=None), adopt_only=True)

    assert outcome.status is Status.SUCCEEDED
    assert kube.request_count(resource="secrets") == 0
    assert stored_token(kube, name) == TOKEN


async def test_adopt_only_without_a_job_deletes_a_leftover_secret(kube: FakeKube, runner: KubernetesRunner) -> None:
    """A Secret without its Job (an older jes made it before the Job and crashed), then a restart
    that only adopts: the Job never comes, and neither does the token outlive its task."""
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


async def test_a_job_that_cannot_be_created_makes_no_secret(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.faults.forbid("create", "batch/jobs", "default")
    outcome = await runner.run(proxy_spec())
    assert outcome.status is Status.ERROR and "may not create batch/jobs" in outcome.reason
    assert kube.request_count(resource="secrets") == 0


async def test_a_secret_that_cannot_be_created_deletes_the_job_before_its_task_ran(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    spec = proxy_spec()
    name = api_proxy_secret_name(spec.job_name)
    kube.behave(job=spec.job_name)
    states = note_main_container_states(kube, spec.job_name)
    kube.faults.forbid("create", "secrets", "default")

    outcome = await runner.run(spec)

    assert outcome.status is Status.ERROR
    assert outcome.reason.startswith(
        f"could not create Secret default/{name} with the task's API-proxy token: "
        "permission denied: jes may not create secrets in namespace 'default'"
    )
    assert outcome.reason.endswith(f"; Job {spec.job_name} was deleted before its task started")
    await _eventually(lambda: kube.get("jobs", "default", spec.job_name) is None)
    assert kube.objects("pods", "default") == []
    assert "running" not in states  # the task never ran (its waiting container was killed with the pod)
    assert len(kube.created_jobs) == 1


async def test_a_job_deleted_for_its_secret_is_lost_and_never_created_again_after_a_restart(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    """Exactly once: the task was recorded launching; its Job was created and deleted (no Secret);
    jes crashed before recording the outcome. The restart only adopts: no Job, so LOST (the result
    is unknown to the record) — and no second Job, whatever happens."""
    spec = proxy_spec()
    kube.behave(job=spec.job_name)
    kube.faults.forbid("create", "secrets", "default")
    assert (await runner.run(spec)).status is Status.ERROR
    await _eventually(lambda: kube.get("jobs", "default", spec.job_name) is None)

    outcome = await runner.run(replace(spec, api_proxy=None), adopt_only=True)

    assert outcome.status is Status.LOST
    assert len(kube.created_jobs) == 1 and kube.objects("jobs", "default") == []


async def test_temporary_errors_creating_the_secret_delay_the_task(kube: FakeKube, runner: KubernetesRunner) -> None:
    """An outage of the API server after the Job was created: the Secret is retried as long as it
    lasts (the pod waits for it), the Job is not given up."""
    spec = proxy_spec()
    kube.behave(job=spec.job_name)
    kube.faults.fail(503, times=4, verb="create", resource="secrets")  # within the quick back-off

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    assert kube.request_count("create", "secrets") == 5


async def _eventually(predicate: Any, timeout_s: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
    return value
