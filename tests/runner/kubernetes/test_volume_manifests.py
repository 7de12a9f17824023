"""``tasks[].volumes`` in the Job: after jes's own volumes and mounts, readOnly on the claim and the
mount, never in the init container; every manifest passes ``kubernetes-validate --strict``."""

from __future__ import annotations

from jes.matcher import matching as matcher
from jes.models import JES_MOUNT_PATHS, JES_VOLUME_NAMES
from jes.runner.kubernetes import manifests
from jes.runner.outputs import KUBERNETES_OUTPUT_DIR
from tests.conftest import k8s_valid
from tests.runner.kubernetes.test_manifests import job_for, plan_for

VOLUMES = """      - name: t
        image: alpine
        files: [a.txt]
        volumes:
          - {name: cache, mountPath: /cache, emptyDir: {sizeLimit: 1Gi}}
          - {name: scratch, mountPath: /scratch, emptyDir: {}}
          - {name: data, mountPath: /data, persistentVolumeClaim: {claimName: shared-data, readOnly: true}}
          - {name: out, mountPath: /out, persistentVolumeClaim: {claimName: shared-out}}
"""
ALLOWED = matcher.Executor(allowed_volume_claims=("shared-*",))


def test_jes_own_names_and_mounts_are_the_ones_the_matcher_keeps_free() -> None:
    assert set(JES_VOLUME_NAMES) == {
        manifests.JOB_VOLUME, manifests.FILES_VOLUME, manifests.OUTPUT_VOLUME, manifests.NO_TOKEN_VOLUME}  # fmt: skip
    assert JES_MOUNT_PATHS == (manifests.FILES_MOUNT, KUBERNETES_OUTPUT_DIR)


def test_volumes_and_mounts_in_the_job() -> None:
    job = job_for(VOLUMES, executor=ALLOWED)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "job-volume", "emptyDir": {"sizeLimit": "20Mi"}},
        {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "shared-data", "readOnly": True}},
        {"name": "out", "persistentVolumeClaim": {"claimName": "shared-out"}},
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "job-volume", "mountPath": "/keptn"},
        {"name": "cache", "mountPath": "/cache"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "out", "mountPath": "/out"},
    ]


def test_with_files_the_init_container_gets_none_of_the_task_volumes() -> None:
    result = plan_for(VOLUMES, executor=ALLOWED)
    task = result.actions[0].tasks[0]
    job = manifests.build_job(
        task, result.event, config_hash=result.config_hash, settings=manifests.JobSettings(), files={"a.txt": 3}
    )
    k8s_valid(job)
    pod = job["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["job-volume", "job-files", "cache", "scratch", "data", "out"]
    assert [m["name"] for m in pod["initContainers"][0]["volumeMounts"]] == ["job-volume", "job-files"]


def test_a_task_without_volumes_keeps_todays_job() -> None:
    job = job_for("      - name: t\n        image: alpine\n")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "job-volume", "emptyDir": {"sizeLimit": "20Mi"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "job-volume", "mountPath": "/keptn"}]
