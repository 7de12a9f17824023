"""What the trackers keep of watched Jobs and pods: every answer the runner reads from them is the
same as from the whole object, and the rest (specs, images, IDs, timestamps) is dropped."""

from __future__ import annotations

import json
from typing import Any

from jes.runner.kubernetes import slim as slim_module
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes import watch

POD: dict[str, Any] = {
    "metadata": {
        "name": "j-abc12",
        "resourceVersion": "17",
        "creationTimestamp": "2024-06-01T10:00:00Z",
        "labels": {"batch.kubernetes.io/job-name": "j", "job-name": "j", "app": "x"},
        "ownerReferences": [{"kind": "Job", "name": "j", "uid": "u-1", "controller": True}],
        "managedFields": [{"manager": "kube-controller-manager"}],
    },
    "spec": {"containers": [{"name": "task", "image": "alpine"}]},
    "status": {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "low on memory",
        "hostIP": "10.0.0.1",
        "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2024-06-01T10:00:02Z"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"},
        ],
        "initContainerStatuses": [
            {"name": "init", "image": "busybox", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ],
        "containerStatuses": [
            {
                "name": "task",
                "image": "alpine",
                "imageID": "alpine@sha256:00",
                "containerID": "containerd://1",
                "state": {"terminated": {"exitCode": 2, "reason": "Error", "message": "boom", "startedAt": "t"}},
                "lastState": {},
            },
            {"name": "side", "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}},
        ],
    },
}

JOB: dict[str, Any] = {
    "metadata": {"name": "j", "resourceVersion": "18", "creationTimestamp": "2024-06-01T10:00:00Z", "uid": "u-1"},
    "spec": {"activeDeadlineSeconds": 30, "template": {"spec": {"containers": [{"name": "task"}]}}},
    "status": {
        "active": 0,
        "failed": 1,
        "startTime": "2024-06-01T10:00:00Z",
        "completionTime": None,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "too long",
                "lastTransitionTime": "2024-06-01T10:00:30Z",
                "lastProbeTime": "2024-06-01T10:00:30Z",
            },
        ],
    },
}


def test_a_slim_pod_answers_as_the_whole_pod() -> None:
    slim = watch.slim(POD, "pods")
    assert watch.job_name_of_pod(slim) == watch.job_name_of_pod(POD) == "j"
    for pods in ([slim], [POD]):
        named = {"j-abc12": pods[0]}
        assert kube_status.stuck(named, {}) == kube_status.stuck({"j-abc12": POD}, {})
        assert kube_status.unschedulable(named) == "0/3 nodes"
        assert kube_status.main_started(named, "task")
        assert kube_status.started_containers(pods[0]) == ["init", "task"]
    assert kube_status.failure_detail([slim], "task") == kube_status.failure_detail([POD], "task")
    assert _read(kube_status.log_targets([slim], include_running=True)) == _read(
        kube_status.log_targets([POD], include_running=True)
    )
    assert kube_status.pods_in_order([slim])[0]["metadata"]["name"] == "j-abc12"
    assert not any(word in json.dumps(slim) for word in ("alpine", "containerd", "10.0.0.1", "managedFields", "u-1"))


def test_a_pod_without_job_labels_keeps_its_owner() -> None:
    bare = {**POD, "metadata": {**POD["metadata"], "labels": {}}}
    assert watch.job_name_of_pod(watch.slim(bare, "pods")) == "j"


def test_a_slim_job_answers_as_the_whole_job() -> None:
    slim = watch.slim(JOB, "jobs")
    assert kube_status.job_verdict(slim) == kube_status.job_verdict(JOB)
    assert kube_status.job_verdict(slim).reason.startswith("job deadline exceeded (activeDeadlineSeconds=30)")  # type: ignore[union-attr]
    assert kube_status.finished_at(slim) == kube_status.finished_at(JOB)
    assert kube_status.job_failed_reason(slim) == "DeadlineExceeded"
    assert slim["status"]["failed"] == 1 and "template" not in slim["spec"] and "startTime" not in slim["status"]


def _read(targets: list[kube_status.LogTarget]) -> list[tuple[Any, ...]]:
    """What the runner reads of log targets (tasklogs._container_log)."""
    fields = ("exitCode", "reason", "message")
    return [(t.pod, t.container, t.init, tuple((t.terminated or {}).get(f) for f in fields)) for t in targets]


def _running_pod(job: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{job}-x1", "resourceVersion": "9", "labels": {"job-name": job}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": f"{job} time"}],
            "initContainerStatuses": [{"name": "jes-output", "state": {"running": {"startedAt": f"{job} t"}}}],
            "containerStatuses": [{"name": job, "state": {"running": {"startedAt": f"{job} started"}}}],
        },
    }


def test_running_pods_of_different_jobs_share_their_equal_parts() -> None:
    first, second = watch.slim(_running_pod("a"), "pods"), watch.slim(_running_pod("b"), "pods")
    for key in ("conditions", "initContainerStatuses"):  # one object kept for thousands of running pods
        assert first["status"][key] is second["status"][key]
    assert first["status"]["containerStatuses"][0]["state"] is second["status"]["containerStatuses"][0]["state"]
    assert first["status"]["containerStatuses"][0]["name"] == "a" and watch.job_name_of_pod(second) == "b"
    assert kube_status.main_started({"b-x1": second}, "b") and not kube_status.main_started({"b-x1": second}, "a")
    failed = _running_pod("c")
    failed["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 3}}
    kept = watch.slim(failed, "pods")
    assert kept["status"]["containerStatuses"][0]["state"] is not first["status"]["containerStatuses"][0]["state"]
    assert kube_status.pod_exit_code(kept, "c") == 3  # equal only when equal
    assert watch.slim(JOB | {"status": {}}, "jobs")["status"] is watch.slim({"metadata": {}}, "jobs")["status"]


def test_shared_parts_tell_true_from_one_and_stay_bounded() -> None:
    assert slim_module.canonical({"succeeded": True}) is not slim_module.canonical({"succeeded": 1})
    for n in range(slim_module.CANONICAL_MAX + 10):
        slim_module.canonical({"failed": n})
    assert len(slim_module._CANONICAL) <= slim_module.CANONICAL_MAX


def test_parts_with_long_messages_are_not_kept_after_their_pod() -> None:
    pods = []
    for job in ("d", "e"):
        pod = _running_pod(job)
        pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 1, "message": "x" * 500}}
        pods.append(watch.slim(pod, "pods"))
    first, second = (p["status"]["containerStatuses"][0]["state"] for p in pods)
    assert first == second and first is not second
    assert not any("x" * 500 in repr(key) for key in slim_module._CANONICAL)
