"""Small hand-made Job manifests and task specs for the kubernetes runner tests (shaped like the
Jobs jes builds). The runner under test gets them through its ``build_job`` seam
(:func:`hand_made_job`), so a test can give a Job any shape."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jes.models import EventInfo, RenderedTask, TaskFiles, TaskSpec
from jes.runner.kubernetes import manifests

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "job-executor-service"

EVENT = EventInfo(
    id="f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b",
    type="sh.keptn.event.test.triggered",
    source="shipyard-controller",
    keptn_context="08735340-6f9e-4b32-97ff-3b6c292bc50i",
    git_commit_id="",
    project="sockshop",
    stage="dev",
    service="carts",
)


def task(*, namespace: str = "default", max_poll_duration_s: int = 30, image: str = "busybox:1.36") -> RenderedTask:
    return RenderedTask(
        action_index=0,
        task_index=0,
        action_name="Run tests",
        name="Run locust",
        image=image,
        image_pull_policy="IfNotPresent",
        cmd=("sh", "-c"),
        args=("echo hello",),
        working_dir="",
        env=(),
        files=(),
        resources=None,
        max_poll_duration_s=max_poll_duration_s,
        ttl_seconds_after_finished=21600,
        namespace=namespace,
        service_account="",
        security_context={},
        annotations={},
        image_pull_secrets=(),
    )


def job_manifest(
    name: str,
    *,
    namespace: str = "default",
    image: str = "busybox:1.36",
    init_image: str | None = None,
    env: list[dict[str, Any]] | None = None,
    env_from: list[dict[str, Any]] | None = None,
    service_account: str = "",
    deadline_s: int | None = None,
    ttl_s: int = 21600,
    config_maps: list[str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["sh", "-c"],
        "args": ["echo hello"],
        "volumeMounts": [{"name": "job-volume", "mountPath": "/keptn"}],
    }
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "job-volume", "emptyDir": {"sizeLimit": "20Mi"}}],
    }
    if init_image:
        pod["initContainers"] = [
            {
                "name": f"init-{name}"[:63],
                "image": init_image,
                "command": ["jes", "copy-files"],
                "volumeMounts": [{"name": "job-volume", "mountPath": "/keptn"}],
            }
        ]
    if service_account:
        pod["serviceAccountName"] = service_account
    if config_maps:
        sources = [{"configMap": {"name": cm}} for cm in config_maps]
        pod["volumes"].append({"name": "job-files", "projected": {"sources": sources}})
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": ttl_s,
        "template": {"metadata": {"labels": {MANAGED_BY: OWNER}}, "spec": pod},
    }
    if deadline_s is not None:
        spec["activeDeadlineSeconds"] = deadline_s
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY: OWNER,
                "keptn.sh/event-id": EVENT.id,
                "keptn.sh/context": EVENT.keptn_context,
                "keptn.sh/jes-action-index": "0",
                "keptn.sh/jes-task-index": "0",
            },
        },
        "spec": spec,
    }


def config_map(name: str, *, namespace: str = "default", data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: OWNER}},
        "data": data or {"f0": "content"},
    }


@dataclass(frozen=True)
class HandMadeSpec(TaskSpec):
    """A task spec with its own Job manifest."""

    job: Mapping[str, Any] = field(default_factory=dict)


def hand_made_job(spec: TaskSpec, settings: manifests.JobSettings) -> Mapping[str, Any]:
    """The runner's ``build_job`` in these tests: the hand-made manifest, else the one jes builds."""
    return spec.job if isinstance(spec, HandMadeSpec) else manifests.job_for(spec, settings)


def spec(
    name: str,
    *,
    namespace: str = "default",
    max_poll_duration_s: int = 30,
    files: dict[str, str] | None = None,
    **job: Any,
) -> TaskSpec:
    maps = [f"{name}-files-0"] if files else []
    manifest = job_manifest(name, namespace=namespace, config_maps=maps, **job)
    spooled = {path: text.encode() for path, text in (files or {}).items()}
    return HandMadeSpec(
        task=task(namespace=namespace, max_poll_duration_s=max_poll_duration_s),
        event=EVENT,
        job_name=name,
        job=manifest,
        files=TaskFiles.of(Path(tempfile.mkdtemp(prefix="jes-test-files-")), spooled) if files else TaskFiles(),
    )


def shape(job: dict[str, Any]) -> str:
    """A Job with its names blanked: equal shapes need validating once."""
    name = job.get("metadata", {}).get("name", "")
    return json.dumps(job, sort_keys=True).replace(name, "NAME") if name else json.dumps(job, sort_keys=True)


def wait_until(predicate: Any, timeout_s: float = 15.0, interval_s: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy (a condition, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
