"""The fake Kubernetes API, driven by the unmodified official client over loopback HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from fakes.fake_kube import FakeKube
from tests.runner.kubernetes import helpers


def _batch(api: kubernetes.client.ApiClient) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(api)


def _core(api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


def _status(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def _job(kube: FakeKube, name: str, namespace: str = "default") -> dict[str, Any]:
    job = kube.get("jobs", namespace, name)
    assert job is not None
    return job


def _finished(kube: FakeKube, name: str) -> dict[str, Any] | None:
    job = kube.get("jobs", "default", name)
    types = {c["type"] for c in (job or {}).get("status", {}).get("conditions", []) if c["status"] == "True"}
    return job if types & {"Complete", "Failed"} else None


def _pod(kube: FakeKube, job: str) -> dict[str, Any]:
    pods = helpers.wait_until(lambda: kube.objects("pods", "default", labels=f"job-name={job}"))
    pod: dict[str, Any] = pods[0]
    return pod


def _container_state(kube: FakeKube, job: str, *, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = _pod(kube, job)["status"].get(key) or [{}]
    state: dict[str, Any] = statuses[0].get("state", {})
    return state


# --- objects -------------------------------------------------------------------------------------


def test_create_get_list_and_errors_carry_status_bodies(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    core = _core(api)
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        body = {"metadata": {"name": name, "labels": {"tier": tier, "app": "x"}}, "data": {"k": "v"}}
        core.create_namespaced_config_map("default", body)

    created = core.read_namespaced_config_map("a", "default")
    assert created.metadata.uid and int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None

    def names(**kwargs: str) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map("default", **kwargs).items)

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier in (db,cache)") == ["b"]
    assert names(label_selector="tier!=web,app") == ["b"]
    assert names(label_selector="!tier") == []
    assert names(field_selector="metadata.name=c") == ["c"]

    with pytest.raises(ApiException) as conflict:
        core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert conflict.value.status == 409
    assert _status(conflict.value) | {"details": None} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "a" already exists',
        "reason": "AlreadyExists",
        "code": 409,
        "details": None,
    }
    with pytest.raises(ApiException) as missing:
        _batch(api).read_namespaced_job("nope", "default")
    assert missing.value.status == 404
    assert _status(missing.value)["reason"] == "NotFound"
    assert _status(missing.value)["message"] == 'jobs.batch "nope" not found'


def test_invalid_names_labels_and_job_specs_are_rejected(api: kubernetes.client.ApiClient) -> None:
    bad_name = helpers.job_manifest("Upper_Case")
    with pytest.raises(ApiException) as invalid:
        _batch(api).create_namespaced_job("default", bad_name)
    assert invalid.value.status == 422
    assert _status(invalid.value)["reason"] == "Invalid"

    too_long = helpers.job_manifest("x" * 64)
    with pytest.raises(ApiException, match="must be no more than 63 characters"):
        _batch(api).create_namespaced_job("default", too_long)

    no_restart_policy = helpers.job_manifest("ok-name")
    no_restart_policy["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException, match="restartPolicy"):
        _batch(api).create_namespaced_job("default", no_restart_policy)


def test_update_with_a_stale_resource_version_conflicts(api: kubernetes.client.ApiClient) -> None:
    coordination = kubernetes.client.CoordinationV1Api(api)
    lease = {"metadata": {"name": "claim"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    created = coordination.create_namespaced_lease("jes", lease)
    stale = created.metadata.resource_version

    first = coordination.replace_namespaced_lease(
        "claim",
        "jes",
        {
            "metadata": {"name": "claim", "resourceVersion": stale},
            "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15},
        },
    )
    assert first.spec.holder_identity == "b"
    assert int(first.metadata.resource_version) > int(stale)

    with pytest.raises(ApiException) as conflict:
        coordination.replace_namespaced_lease(
            "claim", "jes", {"metadata": {"name": "claim", "resourceVersion": stale}, "spec": {"holderIdentity": "c"}}
        )
    assert conflict.value.status == 409
    assert _status(conflict.value)["reason"] == "Conflict"
    assert "the object has been modified" in _status(conflict.value)["message"]

    patched = coordination.patch_namespaced_lease(
        "claim", "jes", {"spec": {"holderIdentity": "d"}}, _content_type="application/merge-patch+json"
    )
    assert patched.spec.holder_identity == "d"
    assert patched.spec.lease_duration_seconds == 15
    with pytest.raises(ApiException) as stale_patch:
        coordination.patch_namespaced_lease(
            "claim",
            "jes",
            {"metadata": {"resourceVersion": stale}, "spec": {"holderIdentity": "e"}},
            _content_type="application/merge-patch+json",
        )
    assert stale_patch.value.status == 409

    with pytest.raises(ApiException) as precondition:
        coordination.delete_namespaced_lease("claim", "jes", body={"preconditions": {"resourceVersion": stale}})
    assert precondition.value.status == 409
    coordination.delete_namespaced_lease(
        "claim", "jes", body={"preconditions": {"resourceVersion": patched.metadata.resource_version}}
    )
    assert coordination.list_namespaced_lease("jes").items == []


def test_patches_merge_strategically_and_by_json_patch(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    core = _core(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "m"}, "data": {"a": "1", "b": "2"}})
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u1"}
    core.patch_namespaced_config_map("m", "default", {"metadata": {"ownerReferences": [owner]}})
    other = owner | {"name": "k", "uid": "u2"}
    strategic = core.patch_namespaced_config_map("m", "default", {"metadata": {"ownerReferences": [other]}})
    assert [r.uid for r in strategic.metadata.owner_references] == ["u1", "u2"]
    merged = core.patch_namespaced_config_map(
        "m", "default", {"data": {"a": None, "c": "3"}}, _content_type="application/merge-patch+json"
    )
    assert merged.data == {"b": "2", "c": "3"}
    ops = [{"op": "replace", "path": "/data/b", "value": "20"}, {"op": "remove", "path": "/data/c"}]
    patched = core.patch_namespaced_config_map("m", "default", ops)
    assert patched.data == {"b": "20"}


def test_kubeconfig_file_points_the_client_at_the_fake(kube: FakeKube, tmp_path: Path) -> None:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kube.kubeconfig(tmp_path / "config")), client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        assert _core(client).list_namespaced_pod("default").items == []


# --- the Job controller and the kubelet --------------------------------------------------------------


def test_a_job_runs_one_pod_to_completion(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(image="busybox", logs="hello\nworld\n", duration_s=0.05)
    _batch(api).create_namespaced_job("default", helpers.job_manifest("job-ok"))

    job = helpers.wait_until(lambda: _finished(kube, "job-ok"))
    status = job["status"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert status["succeeded"] == 1 and status["startTime"] and status["completionTime"]
    uid = job["metadata"]["uid"]

    pod = _pod(kube, "job-ok")
    assert pod["metadata"]["name"].startswith("job-ok-") and len(pod["metadata"]["name"]) == len("job-ok-") + 5
    assert pod["metadata"]["labels"] == {
        helpers.MANAGED_BY: helpers.OWNER,
        "job-name": "job-ok",
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": "job-ok",
        "batch.kubernetes.io/controller-uid": uid,
    }
    assert pod["metadata"]["ownerReferences"][0]["uid"] == uid
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")

    log = _core(api).read_namespaced_pod_log(pod["metadata"]["name"], "default")
    assert log == "hello\nworld\n"
    assert [e["reason"] for e in kube.events("default", "job-ok")] == ["SuccessfulCreate", "Completed"]


def test_failures_end_in_failed_conditions_with_reasons(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="exit-1", exit_code=1, message="assertion failed")
    kube.behave(job="oom", oom_killed=True)
    kube.behave(job="init-fails", init_exit_code=255, init_logs="Error while copying files\n")
    _batch(api).create_namespaced_job("default", helpers.job_manifest("exit-1"))
    _batch(api).create_namespaced_job("default", helpers.job_manifest("oom"))
    _batch(api).create_namespaced_job("default", helpers.job_manifest("init-fails", init_image="ghcr.io/jes/jes:1"))

    for name in ("exit-1", "oom", "init-fails"):
        job = helpers.wait_until(lambda name=name: _finished(kube, name))
        assert [c["type"] for c in job["status"]["conditions"]] == ["FailureTarget", "Failed"]
        assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
        assert job["status"]["failed"] == 1

    assert _container_state(kube, "exit-1")["terminated"] | {"startedAt": 0, "finishedAt": 0, "containerID": 0} == {
        "exitCode": 1,
        "reason": "Error",
        "message": "assertion failed",
        "startedAt": 0,
        "finishedAt": 0,
        "containerID": 0,
    }
    oom = _container_state(kube, "oom")["terminated"]
    assert (oom["exitCode"], oom["reason"]) == (137, "OOMKilled")
    init = _container_state(kube, "init-fails", init=True)["terminated"]
    assert (init["exitCode"], init["reason"]) == (255, "Error")
    assert _container_state(kube, "init-fails")["waiting"]["reason"] == "PodInitializing"
    pod = _pod(kube, "init-fails")
    init_log = _core(api).read_namespaced_pod_log(pod["metadata"]["name"], "default", container="init-init-fails")
    assert init_log == "Error while copying files\n"
    with pytest.raises(ApiException, match="is waiting to start: PodInitializing"):
        _core(api).read_namespaced_pod_log(pod["metadata"]["name"], "default")  # the only container


def test_backoff_limit_retries_with_new_pods(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="retry", exit_code=2)
    manifest = helpers.job_manifest("retry")
    manifest["spec"]["backoffLimit"] = 1
    _batch(api).create_namespaced_job("default", manifest)
    job = helpers.wait_until(lambda: _finished(kube, "retry") or kube.clock.advance(1))  # over the 10 s back-off
    assert job["status"]["failed"] == 2
    assert len(kube.objects("pods", "default", labels="job-name=retry")) == 2


def test_pods_that_cannot_start_say_why(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(image="registry.example/missing", image_pull="ErrImagePull")
    kube.behave(job="unschedulable", unschedulable=True)
    batch = _batch(api)
    batch.create_namespaced_job("default", helpers.job_manifest("pull", image="registry.example/missing:1"))
    batch.create_namespaced_job("default", helpers.job_manifest("invalid", image="Not/A Valid:image"))
    secret_ref = [{"secretRef": {"name": "creds"}}]
    batch.create_namespaced_job("default", helpers.job_manifest("no-secret", env_from=secret_ref))
    key_ref = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "present", "key": "token"}}}]
    kube.add_secret("present", data={"other": "x"})
    batch.create_namespaced_job("default", helpers.job_manifest("no-key", env=key_ref))
    batch.create_namespaced_job("default", helpers.job_manifest("unschedulable"))

    def waiting(job: str) -> dict[str, Any] | None:
        state = _container_state(kube, job)
        return state.get("waiting") if state.get("waiting", {}).get("reason") != "ContainerCreating" else None

    assert helpers.wait_until(lambda: waiting("pull")["reason"] == "ImagePullBackOff")  # type: ignore[index]
    reasons = [
        (e["reason"], e["message"]) for e in kube.events("default") if e["involvedObject"]["name"].startswith("pull-")
    ]
    assert ("Failed", "Error: ErrImagePull") in reasons
    assert ("BackOff", 'Back-off pulling image "registry.example/missing:1"') in reasons
    assert helpers.wait_until(lambda: waiting("invalid"))["reason"] == "InvalidImageName"
    assert helpers.wait_until(lambda: waiting("no-secret")) == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "creds" not found',
    }
    assert (
        helpers.wait_until(lambda: waiting("no-key"))["message"] == "couldn't find key token in Secret default/present"
    )

    pod = _pod(kube, "unschedulable")
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert "FailedScheduling" in [e["reason"] for e in kube.events("default", pod["metadata"]["name"])]
    with pytest.raises(ApiException, match="waiting to start: ImagePullBackOff"):
        _core(api).read_namespaced_pod_log(_pod(kube, "pull")["metadata"]["name"], "default")


def test_a_container_waits_for_its_secret_and_starts_once_it_exists(
    kube: FakeKube, api: kubernetes.client.ApiClient
) -> None:
    """As a real kubelet: CreateContainerConfigError while the Secret is missing, the pod Pending,
    the same event again at each retry; the container starts once the Secret is there."""
    key_ref = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]
    _batch(api).create_namespaced_job("default", helpers.job_manifest("late", env=key_ref))
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "late" not found'}
    assert helpers.wait_until(lambda: _container_state(kube, "late").get("waiting") == waiting)
    pod = _pod(kube, "late")
    assert pod["status"]["phase"] == "Pending"

    def failed_count() -> int:
        found = [e for e in kube.events("default", pod["metadata"]["name"]) if e["reason"] == "Failed"]
        return found[0]["count"] if found else 0

    assert helpers.wait_until(lambda: failed_count() >= 2)  # retried, still missing
    assert _container_state(kube, "late").get("waiting") == waiting
    kube.add_secret("late", data={"other": "x"})  # the Secret, but not the key yet
    missing_key = "couldn't find key token in Secret default/late"
    assert helpers.wait_until(lambda: _container_state(kube, "late").get("waiting", {}).get("message") == missing_key)
    kube.add_secret("late", data={"token": "t"})

    job = helpers.wait_until(lambda: _finished(kube, "late"))
    assert job["status"]["succeeded"] == 1


def test_a_dependent_created_for_an_owner_that_is_gone_is_garbage_collected(
    kube: FakeKube, api: kubernetes.client.ApiClient
) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "gone", "uid": "4f1e2c3a-0000-4000-8000-000000000000"}
    body = kubernetes.client.V1Secret(metadata=kubernetes.client.V1ObjectMeta(name="orphan", owner_references=[owner]))
    _core(api).create_namespaced_secret("default", body)
    helpers.wait_until(lambda: kube.get("secrets", "default", "orphan") is None)
    job = _batch(api).create_namespaced_job("default", helpers.job_manifest("here"))
    owned = dict(owner, name="here", uid=job.metadata.uid)
    body = kubernetes.client.V1Secret(metadata=kubernetes.client.V1ObjectMeta(name="kept", owner_references=[owned]))
    _core(api).create_namespaced_secret("default", body)
    names = [s.metadata.name for s in _core(api).list_namespaced_secret("default").items]  # after the GC's turn
    assert names == ["kept"]


def test_a_missing_service_account_means_no_pod_and_failed_create_events(api: kubernetes.client.ApiClient) -> None:
    with FakeKube(check_service_accounts=True) as kube, kube.api_client() as client:
        _batch(client).create_namespaced_job("default", helpers.job_manifest("needs-sa", service_account="robot"))
        events = helpers.wait_until(lambda: kube.events("default", "needs-sa"))
        assert events[0]["reason"] == "FailedCreate"
        assert events[0]["message"] == (
            'Error creating: pods "needs-sa-" is forbidden: error looking up service account default/robot: '
            'serviceaccount "robot" not found'
        )
        assert kube.objects("pods", "default") == []
        kube.add_service_account("robot")
        kube.clock.advance(30)
        assert helpers.wait_until(lambda: _finished(kube, "needs-sa"))


def test_missing_configmap_volumes_keep_the_pod_creating(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    _batch(api).create_namespaced_job("default", helpers.job_manifest("files", config_maps=["files-files-0"]))
    events = helpers.wait_until(lambda: [e for e in kube.events("default") if e["reason"] == "FailedMount"])
    assert 'configmap "files-files-0" not found' in events[0]["message"]
    assert _container_state(kube, "files")["waiting"]["reason"] == "ContainerCreating"


def test_deadline_and_ttl_follow_the_fake_clock(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="slow", duration_s=3600)
    _batch(api).create_namespaced_job("default", helpers.job_manifest("slow", deadline_s=60, ttl_s=120))
    helpers.wait_until(lambda: "running" in _container_state(kube, "slow"))
    kube.clock.advance(61)
    job = helpers.wait_until(lambda: _finished(kube, "slow"))
    assert job["status"]["conditions"][-1]["reason"] == "DeadlineExceeded"
    (terminating,) = helpers.wait_until(lambda: kube.objects("pods", "default"))
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30  # the default grace period
    kube.clock.advance(31)  # the container ignores SIGTERM: killed at the end of the grace period
    assert helpers.wait_until(lambda: kube.objects("pods", "default") == [])

    owned = {"apiVersion": "batch/v1", "kind": "Job", "name": "slow", "uid": job["metadata"]["uid"]}
    kube.put({"kind": "ConfigMap", "metadata": {"name": "slow-files-0", "ownerReferences": [owned]}})
    kube.clock.advance(121)
    helpers.wait_until(lambda: kube.get("jobs", "default", "slow") is None)
    assert kube.objects("configmaps", "default") == []


def test_deleting_a_job_collects_its_pods_unless_orphaned(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(image="busybox", duration_s=3600)
    batch = _batch(api)
    for name in ("fg", "orphan"):
        batch.create_namespaced_job("default", helpers.job_manifest(name))
        helpers.wait_until(lambda name=name: "running" in _container_state(kube, name))
    batch.delete_namespaced_job("fg", "default", propagation_policy="Foreground")
    batch.delete_namespaced_job("orphan", "default")
    orphaned = kube.objects("pods", "default", labels="job-name=orphan")
    assert len(orphaned) == 1 and orphaned[0]["metadata"]["ownerReferences"] == []
    # Foreground: the Job waits, marked, until its pod has terminated (grace period: 30 s)
    (pod,) = kube.objects("pods", "default", labels="job-name=fg")
    assert pod["metadata"]["deletionTimestamp"] and pod["status"]["phase"] == "Running"
    job = batch.read_namespaced_job("fg", "default")
    assert job.metadata.deletion_timestamp is not None and job.metadata.finalizers == ["foregroundDeletion"]
    kube.clock.advance(31)
    helpers.wait_until(lambda: kube.get("jobs", "default", "fg") is None)
    assert kube.objects("pods", "default", labels="job-name=fg") == []


def test_a_container_that_exits_on_sigterm_ends_the_grace_period_early(
    kube: FakeKube, api: kubernetes.client.ApiClient
) -> None:
    kube.behave(job="polite", duration_s=3600, sigterm_exit_s=2)
    _batch(api).create_namespaced_job("default", helpers.job_manifest("polite"))
    name = helpers.wait_until(lambda: "running" in _container_state(kube, "polite") and _pod(kube, "polite"))[
        "metadata"
    ]["name"]
    seen: list[dict[str, Any]] = []
    kube.store_listener(lambda plural, kind, obj: seen.append(obj) if plural == "pods" else None)
    _core(api).delete_namespaced_pod(name, "default")
    kube.clock.advance(2.5)
    helpers.wait_until(lambda: kube.get("pods", "default", name) is None)
    last = [o for o in seen if o["metadata"]["name"] == name][-1]
    (status,) = last["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 143 and last["status"]["phase"] == "Failed"


def test_objects_over_the_api_servers_size_limits_are_refused(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    core = _core(api)
    big = "x" * (1024 * 1024 + 1)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map("default", {"metadata": {"name": "big"}, "data": {"f": big}})
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"] == (
        'ConfigMap "big" is invalid: []: Too long: may not be more than 1048576 bytes'
    )
    lease = {"metadata": {"name": "l", "annotations": {"a": "y" * (256 * 1024)}}, "spec": {}}
    with pytest.raises(ApiException) as refused:
        kubernetes.client.CoordinationV1Api(api).create_namespaced_lease("default", lease)
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"] == (
        'Lease.coordination.k8s.io "l" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes'
    )
    huge = {"metadata": {"name": "huge"}, "data": {"a": "z" * 1_000_000, "b": "z" * 1_000_000}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_secret("default", huge | {"stringData": None})
    assert refused.value.status == 422
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map("default", {"metadata": {"name": "h"}, "data": {"a": "z" * 3_200_000}})
    assert refused.value.status == 413
    assert "Request entity too large: limit is 3145728" in refused.value.body


# --- logs ------------------------------------------------------------------------------------------


def test_logs_stream_lazily_with_timestamps_and_follow(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    kube.behave(job="big", logs="BEGIN\n", log_bytes=5_000_000, log_tail="END\n")
    _batch(api).create_namespaced_job("default", helpers.job_manifest("big"))
    big = helpers.wait_until(lambda: _finished(kube, "big") and _pod(kube, "big"))["metadata"]["name"]

    response = _core(api).read_namespaced_pod_log(big, "default", _preload_content=False)
    assert response.headers.get("transfer-encoding") == "chunked"
    size, first, last = 0, b"", b""
    for chunk in response.stream(65536):
        first = first or chunk
        size, last = size + len(chunk), chunk
    assert size == len("BEGIN\n") + 5_000_000 + len("END\n")
    assert first.startswith(b"BEGIN\n") and last.endswith(b"END\n")

    stamped = _core(api).read_namespaced_pod_log(big, "default", timestamps=True, limit_bytes=200)
    assert stamped.split(" ", 1)[1].startswith("BEGIN\n") and stamped.split(" ", 1)[0].endswith("Z")
    assert _core(api).read_namespaced_pod_log(big, "default", tail_lines=1) == "END\n"

    # created only now, and running for 1 s: reading 5 MB above may take longer than a short task
    kube.behave(job="follow", logs="line\n", duration_s=1.0)
    _batch(api).create_namespaced_job("default", helpers.job_manifest("follow"))
    follower = helpers.wait_until(lambda: "running" in _container_state(kube, "follow") and _pod(kube, "follow"))
    started = time.monotonic()
    followed = _core(api).read_namespaced_pod_log(follower["metadata"]["name"], "default", follow=True)
    assert followed == "line\n"
    assert "terminated" in _container_state(kube, "follow")
    assert time.monotonic() - started < 5


# --- watches ---------------------------------------------------------------------------------------


def _watch_lines(
    api: kubernetes.client.ApiClient, count: int, until: Any = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Events of a watch of jobs, until there are ``count`` or ``until(event)`` (then it is closed)."""
    response = _batch(api).list_namespaced_job("default", watch=True, _preload_content=False, **kwargs)
    events: list[dict[str, Any]] = []
    pending = b""
    try:
        for chunk in response.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            events += [json.loads(line) for line in lines if line.strip()]
            if len(events) >= count or (until is not None and any(until(e) for e in events)):
                break
    finally:
        response.close()
        response.release_conn()
    return events


def test_watches_resume_from_a_resource_version(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    batch = _batch(api)
    start = batch.list_namespaced_job("default").metadata.resource_version
    batch.create_namespaced_job("default", helpers.job_manifest("w1"))
    helpers.wait_until(lambda: _finished(kube, "w1"))

    def done(event: dict[str, Any]) -> bool:
        return bool(event["object"].get("status", {}).get("succeeded"))

    events = _watch_lines(api, 100, done, resource_version=start, timeout_seconds=5)
    assert [e["type"] for e in events][0] == "ADDED"
    assert events[-1]["object"]["status"]["succeeded"] == 1
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)

    from_now = _watch_lines(api, 1, resource_version=str(versions[-1]), timeout_seconds=5, allow_watch_bookmarks=True)
    assert [e["type"] for e in from_now] == ["BOOKMARK"]
    assert int(from_now[0]["object"]["metadata"]["resourceVersion"]) >= versions[-1]

    initial = _watch_lines(api, 1, timeout_seconds=5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "w1")]


def test_watches_end_at_their_timeout(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    started = time.monotonic()
    response = _batch(api).list_namespaced_job("default", watch=True, timeout_seconds=1, _preload_content=False)
    assert response.data == b""
    assert 1.0 <= time.monotonic() - started < 5


def test_expired_watches_answer_410_gone(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    batch = _batch(api)
    start = batch.list_namespaced_job("default").metadata.resource_version
    batch.create_namespaced_job("default", helpers.job_manifest("w2"))
    kube.expire_watches("jobs")
    events = _watch_lines(api, 1, resource_version=start, timeout_seconds=5)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"

    watch = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as gone:
        for _ in watch.stream(batch.list_namespaced_job, "default", resource_version=start, timeout_seconds=1):
            pass
    assert gone.value.status == 410


def test_small_history_expires_old_versions(api: kubernetes.client.ApiClient) -> None:
    with FakeKube(history_size=3) as kube, kube.api_client() as client:
        core = _core(client)
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"m{i}"}})
        response = core.list_namespaced_config_map(
            "default", watch=True, resource_version=start, timeout_seconds=1, _preload_content=False
        )
        assert json.loads(response.data.splitlines()[0])["object"]["code"] == 410


# --- faults ----------------------------------------------------------------------------------------


def test_faults_answer_like_a_real_api_server(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    batch = _batch(api)
    kube.faults.fail(503, times=2, verb="list", resource="batch/jobs")
    for _ in range(2):
        with pytest.raises(ApiException) as unavailable:
            batch.list_namespaced_job("default")
        assert unavailable.value.status == 503
    batch.list_namespaced_job("default")

    kube.faults.throttle(retry_after_s=3, verb="create", resource="pods")  # urllib3 itself retries GETs
    with pytest.raises(ApiException) as throttled:
        _core(api).create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert throttled.value.status == 429 and throttled.value.headers["Retry-After"] == "3"

    kube.faults.forbid("create", "batch/jobs", "ci")
    with pytest.raises(ApiException) as forbidden:
        batch.create_namespaced_job("ci", helpers.job_manifest("x", namespace="ci"))
    body = _status(forbidden.value)
    assert (forbidden.value.status, body["reason"], body["details"]) == (
        403,
        "Forbidden",
        {"group": "batch", "kind": "jobs"},
    )
    assert body["message"] == (
        'jobs.batch is forbidden: User "system:serviceaccount:keptn:job-executor-service" cannot create '
        'resource "jobs" in API group "batch" in the namespace "ci"'
    )
    batch.create_namespaced_job("default", helpers.job_manifest("x"))  # other namespaces are fine

    kube.faults.drop(verb="get", resource="jobs")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        batch.read_namespaced_job("x", "default")

    kube.faults.fail(409, verb="create", resource="configmaps", commit=True)
    with pytest.raises(ApiException) as lost:
        _core(api).create_namespaced_config_map("default", {"metadata": {"name": "committed"}})
    assert lost.value.status == 409
    assert kube.get("configmaps", "default", "committed") is not None

    kube.faults.latency(0.2, verb="get", resource="configmaps")
    started = time.monotonic()
    _core(api).read_namespaced_config_map("committed", "default")
    assert time.monotonic() - started >= 0.2
    assert kube.request_count("create", "batch/jobs") == 2


def test_stored_versions_are_never_changed_afterwards(kube: FakeKube, api: kubernetes.client.ApiClient) -> None:
    """The fake keeps encodings of stored objects (watch lines, specs) on the promise that nothing
    changes a stored version in place: a Job run, a patch, an orphaning and a Foreground deletion
    leave every version as it was when it was stored."""
    versions: list[tuple[dict[str, Any], str]] = []
    kube.store_listener(lambda plural, kind, obj: versions.append((obj, json.dumps(obj, sort_keys=True))))
    kube.behave(image="busybox", logs="hello\n", duration_s=0.05)
    batch = _batch(api)
    batch.create_namespaced_job("default", helpers.job_manifest("kept"))
    helpers.wait_until(lambda: _finished(kube, "kept"))
    batch.patch_namespaced_job("kept", "default", {"metadata": {"labels": {"patched": "yes"}}})
    batch.patch_namespaced_job_status("kept", "default", {"status": {"active": 0}})
    kube.behave(image="busybox", duration_s=3600)
    for name in ("fg", "orphan"):
        batch.create_namespaced_job("default", helpers.job_manifest(name))
        helpers.wait_until(lambda name=name: "running" in _container_state(kube, name))
    batch.delete_namespaced_job("fg", "default", propagation_policy="Foreground")
    batch.delete_namespaced_job("orphan", "default")
    kube.clock.advance(31)
    helpers.wait_until(lambda: kube.get("jobs", "default", "fg") is None)
    changed = [obj["metadata"]["name"] for obj, text in versions if json.dumps(obj, sort_keys=True) != text]
    assert len(versions) > 20 and changed == []
