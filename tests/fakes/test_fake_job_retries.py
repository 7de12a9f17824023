"""The fake Job controller's retries as Kubernetes does them: ``backoffLimit`` with the pod failure
back-off (10 s doubling, on the fake clock), ``podFailurePolicy`` ``FailJob`` on exit codes (reason
``PodFailurePolicy``) and ``Ignore`` on ``DisruptionTarget`` (not counted in ``failed``), the API's
validation of a policy, and ``BackoffLimitExceeded`` once the retries are used up."""

from __future__ import annotations

from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from fakes.fake_kube import FakeKube
from tests.runner.kubernetes import helpers


def retried_job(name: str, retries: int, codes: list[int] | None = None) -> dict[str, Any]:
    manifest = helpers.job_manifest(name)
    rules: list[dict[str, Any]] = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    if codes:
        rules.append(
            {"action": "FailJob", "onExitCodes": {"containerName": name, "operator": "NotIn", "values": codes}}
        )
    manifest["spec"].update(backoffLimit=retries, podFailurePolicy={"rules": rules})
    return manifest


def create(api: kubernetes.client.ApiClient, manifest: dict[str, Any]) -> None:
    kubernetes.client.BatchV1Api(api).create_namespaced_job("default", manifest)


def failed_condition(kube: FakeKube, name: str) -> dict[str, Any] | None:
    job = kube.get("jobs", "default", name) or {}
    return next(
        (c for c in job.get("status", {}).get("conditions", []) if c["type"] == "Failed" and c["status"] == "True"),
        None,
    )


def pods(kube: FakeKube, name: str) -> list[dict[str, Any]]:
    found = kube.objects("pods", "default", labels=f"job-name={name}")
    return sorted(found, key=lambda p: p["metadata"]["creationTimestamp"])


def exit_codes(kube: FakeKube, name: str) -> list[int]:
    return [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods(kube, name)]


def test_a_retried_exit_code_runs_until_the_backoff_limit(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="two", exit_code=2)
    create(api, retried_job("two", 2, [2]))
    condition = helpers.wait_until(lambda: failed_condition(kube, "two") or kube.clock.advance(2))
    assert (condition["reason"], condition["message"]) == (
        "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    )  # fmt: skip
    assert exit_codes(kube, "two") == [2, 2, 2]
    assert kube.get("jobs", "default", "two")["status"]["failed"] == 3  # type: ignore[index]


def test_the_pod_failure_backoff_doubles_on_the_clock(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="slow", exit_code=2)
    create(api, retried_job("slow", 2))
    helpers.wait_until(lambda: exit_codes_or_none(kube, "slow") == [2])
    kube.clock.advance(9)
    assert len(pods(kube, "slow")) == 1, "no new pod before 10 s"
    kube.clock.advance(1.5)
    helpers.wait_until(lambda: exit_codes_or_none(kube, "slow") == [2, 2])
    kube.clock.advance(15)
    assert len(pods(kube, "slow")) == 2, "the second back-off is 20 s"
    kube.clock.advance(6)
    helpers.wait_until(lambda: failed_condition(kube, "slow"))
    first, second, third = (p["metadata"]["creationTimestamp"] for p in pods(kube, "slow"))
    assert first < second < third


def exit_codes_or_none(kube: FakeKube, name: str) -> list[int] | None:
    try:
        return exit_codes(kube, name)
    except KeyError:
        return None


def test_an_exit_code_outside_the_list_fails_the_job_at_once(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="one", exit_code=1)
    create(api, retried_job("one", 2, [2]))
    condition = helpers.wait_until(lambda: failed_condition(kube, "one"))
    assert condition["reason"] == "PodFailurePolicy"
    (pod,) = pods(kube, "one")
    assert condition["message"] == (
        f"Container one for pod default/{pod['metadata']['name']} failed with exit code 1 matching FailJob rule at index 1"
    )
    assert kube.get("jobs", "default", "one")["status"]["failed"] == 1  # type: ignore[index]


def test_a_success_on_a_later_attempt_completes_the_job(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave_attempts("later", {"exit_code": 2}, {"exit_code": 0})
    create(api, retried_job("later", 2, [2]))
    job = helpers.wait_until(
        lambda: (
            (j := kube.get("jobs", "default", "later")) and j["status"].get("succeeded") and j or kube.clock.advance(2)
        )
    )
    assert job["status"]["failed"] == 1 and exit_codes(kube, "later") == [2, 0]


def test_a_disruption_is_not_counted(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave_attempts("evicted", {"duration_s": 3600, "sigterm_exit_s": 0.1}, {"exit_code": 0})
    create(api, retried_job("evicted", 1, [2]))
    first = helpers.wait_until(
        lambda: (
            (found := pods(kube, "evicted"))
            and "running" in (found[0]["status"].get("containerStatuses") or [{"state": {}}])[0]["state"]
            and found[0]
        )
    )
    assert kube.disrupt("default", first["metadata"]["name"])
    job = helpers.wait_until(
        lambda: (
            (j := kube.get("jobs", "default", "evicted"))
            and j["status"].get("succeeded")
            and j
            or kube.clock.advance(2)
        )
    )
    assert job["status"].get("failed", 0) == 0, "an ignored pod failure is not counted"


def test_without_a_policy_a_disruption_counts(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="plain", duration_s=3600, sigterm_exit_s=0.1)
    create(api, helpers.job_manifest("plain"))  # backoffLimit 0, as jes's Jobs without retries
    pod = helpers.wait_until(
        lambda: (
            (found := pods(kube, "plain"))
            and "running" in (found[0]["status"].get("containerStatuses") or [{"state": {}}])[0]["state"]
            and found[0]
        )
    )
    kube.disrupt("default", pod["metadata"]["name"])
    condition = helpers.wait_until(lambda: failed_condition(kube, "plain") or kube.clock.advance(1))
    assert condition["reason"] == "BackoffLimitExceeded"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["spec"]["template"]["spec"].update(restartPolicy="OnFailure"), "spec.template.spec.restartPolicy"),
        (lambda m: m["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(values=[3, 2]),
         "spec.podFailurePolicy.rules[1].onExitCodes.values"),
        (lambda m: m["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(containerName="other"),
         "spec.podFailurePolicy.rules[1].onExitCodes.containerName"),
    ],
)  # fmt: skip
def test_the_api_refuses_an_invalid_policy(
    kube: FakeKube, api: kubernetes.client.ApiClient, change: Any, field: str
) -> None:
    manifest = retried_job("bad", 1, [2, 3])
    change(manifest)
    with pytest.raises(ApiException) as refused:
        create(api, manifest)
    assert refused.value.status == 422 and field in refused.value.body
    kube.created_jobs.clear()  # (refused on purpose: not checked by kubernetes-validate at the end)
