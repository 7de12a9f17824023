"""The fake Kubernetes API and pod volumes: what the API server's validation refuses, and a pod
whose PersistentVolumeClaim does not exist (yet), as the scheduler treats it."""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from fakes.fake_kube import FakeKube
from tests.runner.kubernetes import helpers


def with_volumes(name: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    job = helpers.job_manifest(name)
    pod = job["spec"]["template"]["spec"]
    pod["volumes"] = [*(pod.get("volumes") or []), *volumes]
    pod["containers"][0]["volumeMounts"] += mounts
    return job


def refusal(api: kubernetes.client.ApiClient, job: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as refused:
        kubernetes.client.BatchV1Api(api).create_namespaced_job("default", job)
    assert refused.value.status == 422
    message: str = json.loads(refused.value.body)["message"]
    return message


def test_volume_specs_kubernetes_refuses(api: kubernetes.client.ApiClient) -> None:
    two = [{"name": "v", "emptyDir": {}, "persistentVolumeClaim": {"claimName": "c"}}]
    assert "spec.template.spec.volumes[1].persistentVolumeClaim: Forbidden: may not specify more than 1 volume type" in (
        refusal(api, with_volumes("two", two, []))
    )
    assert "spec.template.spec.volumes[1]: Required value: must specify a volume type" in refusal(
        api, with_volumes("none", [{"name": "v"}], [])
    )
    duplicate = [{"name": "job-volume", "emptyDir": {}}]
    assert 'spec.template.spec.volumes[1].name: Duplicate value: "job-volume"' in refusal(
        api, with_volumes("dup", duplicate, [])
    )
    unknown = [{"name": "nowhere", "mountPath": "/x"}]
    assert 'spec.template.spec.containers[0].volumeMounts[1].name: Not found: "nowhere"' in refusal(
        api, with_volumes("unknown", [], unknown)
    )
    twice = [{"name": "v", "mountPath": "/keptn"}]
    assert 'volumeMounts[1].mountPath: Invalid value: "/keptn": must be unique' in refusal(
        api, with_volumes("twice", [{"name": "v", "emptyDir": {}}], twice)
    )


def test_a_pod_waits_unschedulable_for_its_claim_and_runs_once_it_exists(
    kube: FakeKube, api: kubernetes.client.ApiClient
) -> None:
    job = with_volumes(
        "claims", [{"name": "data", "persistentVolumeClaim": {"claimName": "late"}}], [{"name": "data", "mountPath": "/d"}]
    )
    kubernetes.client.BatchV1Api(api).create_namespaced_job("default", job)

    def scheduled() -> dict[str, Any] | None:
        pods = kube.objects("pods", "default", labels="job-name=claims")
        conditions = pods[0]["status"].get("conditions") or [] if pods else []
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    condition = helpers.wait_until(scheduled)
    message = (
        '0/3 nodes are available: persistentvolumeclaim "late" not found. preemption: 0/3 nodes are available: '
        "3 Preemption is not helpful for scheduling."
    )
    assert (condition["status"], condition["reason"], condition["message"]) == ("False", "Unschedulable", message)
    pod = kube.objects("pods", "default", labels="job-name=claims")[0]
    assert pod["status"]["phase"] == "Pending"

    def failed_scheduling() -> int:
        found = [e for e in kube.events("default", pod["metadata"]["name"]) if e["reason"] == "FailedScheduling"]
        return found[0]["count"] if found else 0

    assert helpers.wait_until(lambda: failed_scheduling() >= 2)  # tried again, still missing
    kube.put(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "late", "namespace": "default"}}
    )
    done = helpers.wait_until(lambda: (kube.get("jobs", "default", "claims") or {}).get("status", {}).get("succeeded"))
    assert done == 1
