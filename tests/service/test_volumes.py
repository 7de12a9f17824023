"""``tasks[].volumes`` end to end with both runners: an emptyDir for one task, a claim shared
between tasks and events, a claim outside ``JES_ALLOWED_VOLUME_CLAIMS`` refused before any task
runs (as the image allowlist refuses), and a claim that does not exist on the cluster."""

from __future__ import annotations

import json
from pathlib import Path

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from jes.models import JES_VOLUME_NAMES
from jes.runner.local.runner import RUNS_DIR, VOLUMES_DIR
from tests.conftest import k8s_valid
from tests.service.support import (
    jes_settings,
    jobs_created,
    ledger_check,
    make_kube_service,
    put_config,
    running,
    sequence_done,
    started,
    task_events,
    trigger_body,
    wait_until,
)
from tests.service.test_end_to_end import config_with

CLAIM = "shared-data"


def local_task(name: str, script: str, volumes: list[dict[str, object]]) -> str:
    """A shell task given each volume's mountPath as $1, $2...: a leading mountPath in args is
    mapped by the local runner, so the script reaches the volume as a container would."""
    paths = [str(v["mountPath"]) for v in volumes]
    args = json.dumps([script, "sh", *paths])
    return (
        f"      - name: {name}\n        image: alpine\n        cmd: [/bin/sh, -c]\n        args: {args}\n"
        f"        volumes: {json.dumps(volumes)}\n"
    )


DATA = {"name": "data", "mountPath": "/data", "persistentVolumeClaim": {"claimName": CLAIM}}
CACHE = {"name": "cache", "mountPath": "/cache", "emptyDir": {"sizeLimit": "1Gi"}}


async def test_local_a_claim_outlives_tasks_and_events_and_an_empty_dir_does_not(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    put_config(
        plane,
        config_with(
            local_task("write", 'echo "from $KEPTN_STAGE" >> "$1/log"; echo scratch > "$2/tmp"; cat "$2/tmp"', [DATA, CACHE])
            + local_task("read", 'cat "$1/log"; ls "$2"; echo "cache has $(ls "$2" | wc -l) files"', [DATA, CACHE])
        ),
    )
    async with running(jes_settings(plane, state, allowed_volume_claims=("shared-*",))):
        first = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, first))
        second = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, second))
        await wait_until(lambda: not list((state / RUNS_DIR).glob("jes-*")), what="the task folders forgotten")
    for context, lines in ((first, "from dev\n"), (second, "from dev\nfrom dev\n")):
        data = task_events(plane, context)[-1]["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert "scratch" in data["message"]
        read_log = data["message"].split("Task 'read' finished successfully!")[1]
        assert lines in read_log, "the claim keeps what earlier tasks and events wrote"
        assert "cache has 0 files" in data["message"], "each task gets an empty emptyDir"
    assert (state / VOLUMES_DIR / CLAIM / "log").read_text() == "from dev\nfrom dev\n"
    assert not list(state.glob(f"{RUNS_DIR}/*/{VOLUMES_DIR}")), "emptyDirs go with their task"
    ledger_check(plane)


async def test_local_a_claim_outside_the_allowlist_is_refused_before_any_task(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    marker = tmp_path / "first-ran"
    put_config(
        plane,
        config_with(
            local_task("first", f"touch {marker}", [CACHE])
            + local_task("second", "echo never", [DATA])
        ),
    )
    async with running(jes_settings(plane, tmp_path / "state", allowed_volume_claims=("cache-*",))):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith(
        "Forbidden: task 'second': persistentVolumeClaim 'shared-data' is not in the executor's allowed volume "
        "claims (JES_ALLOWED_VOLUME_CLAIMS: it allows cache-*)"
    )
    assert not marker.exists(), "no task of a refused action runs"
    assert not (tmp_path / "state" / VOLUMES_DIR).exists()
    ledger_check(plane)


def pvc(name: str, namespace: str = "keptn-jes") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def image_task(name: str, volumes: list[dict[str, object]]) -> str:
    return f"      - name: {name}\n        image: alpine\n        volumes: {json.dumps(volumes)}\n"


async def test_kubernetes_jobs_mount_an_empty_dir_and_an_existing_claim(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.put(pvc(CLAIM))
    kube.behave(image="alpine", logs="wrote\n")
    read_only = {**DATA, "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}
    put_config(plane, config_with(image_task("write", [DATA, CACHE]) + image_task("read", [read_only])))
    service = make_kube_service(plane, kube, tmp_path, "jes-0", allowed_volume_claims=(CLAIM,))
    async with started(service):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    assert len(jobs_created(kube)) == 2
    write, read = kube.created_jobs
    for job in kube.created_jobs:
        k8s_valid(job)
    def own(entries: list[dict[str, object]]) -> list[dict[str, object]]:  # the task's, not jes's own
        return [e for e in entries if e["name"] not in JES_VOLUME_NAMES]

    pod = write["spec"]["template"]["spec"]
    assert own(pod["volumes"]) == [
        {"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}},
        {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    assert own(pod["containers"][0]["volumeMounts"]) == [
        {"name": "data", "mountPath": "/data"},
        {"name": "cache", "mountPath": "/cache"},
    ]
    pod = read["spec"]["template"]["spec"]
    assert own(pod["volumes"]) == [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}]
    assert own(pod["containers"][0]["volumeMounts"]) == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    ledger_check(plane)


async def test_kubernetes_a_missing_claim_leaves_the_pod_unschedulable_and_fails_the_task(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """As on a real cluster: the scheduler cannot place a pod whose claim does not exist; jes
    fails the task after JES_PENDING_GRACE_S (0.5 s here) with the scheduler's words."""
    put_config(plane, config_with(image_task("write", [DATA])))
    service = make_kube_service(plane, kube, tmp_path, "jes-0", allowed_volume_claims=(CLAIM,))
    async with started(service):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert 'persistentvolumeclaim "shared-data" not found' in data["message"]
    assert data["message"].startswith("Task 'write' failed: Unschedulable for more than")
    events = [e for e in kube.events("keptn-jes") if e.get("reason") == "FailedScheduling"]
    assert events and 'persistentvolumeclaim "shared-data" not found' in events[0]["message"]
    ledger_check(plane)
