"""Rendered tasks → batch/v1 Job manifests (and the ConfigMaps that carry ``files``). Pure.

The Job has the shape of those upstream (Keptn's job-executor-service) creates, with these differences:

* **Name**: ``jes-<readable part of the event id>-<hash>-<action>-<task>``. The hash covers the
  whole event id and the executor (its namespace and location), so any event id (short, upper-case, odd
  characters) gives a valid DNS-1123 name of at most 45 characters, one task never gets two names
  and two tasks never share one.
* **Secrets**: ``valueFrom: secret`` becomes ``envFrom.secretRef`` — every key of the Secret, as
  upstream, without jes needing permission to read Secrets.
* **Files**: jes fetches the task's ``files`` itself and puts them into ConfigMaps (``<job>-files-N``)
  projected into the pod; an init container (the jes image, ``jes copy-files``) copies them into
  the writable ``/keptn`` emptyDir. Task pods never see the Keptn API token, and there is no
  init container when a task has no files. A ConfigMap may hold 1 MiB (the API server refuses
  more), so files are packed into ConfigMaps of at most :data:`CONFIGMAP_CHUNK_BYTES`, and a bigger
  file is cut into pieces (``.jes-parts/<path>/00000``, ``00001``...) that the init container joins.
* **Volumes** (``tasks[].volumes``): each an ``emptyDir`` (with its ``sizeLimit``) or a
  ``persistentVolumeClaim`` (``readOnly`` on the source and the mount), after jes's own volumes,
  mounted into the task container only (never the init container), after ``/keptn``.
* **Retries**: ``tasks[].retries`` sets ``backoffLimit`` (else 0: one pod) and a ``podFailurePolicy``
  (:func:`pod_failure_policy`): disruptions do not count, exit codes outside ``retryOnExitCodes``
  fail the Job at once.
* **API proxy**: a task that may use jes's API proxy (:class:`~jes.models.ApiProxyAccess`) gets
  ``KEPTN_API_PROXY_URL`` as a value and ``KEPTN_API_PROXY_TOKEN`` through ``secretKeyRef`` from
  the Secret ``<job>-api-proxy`` (key ``token``, :func:`build_api_proxy_secret`): the token itself
  is never part of the Job. Both come after the task's own variables, so nothing overrides them.
* **Outputs** (``JobSettings.task_outputs``): an emptyDir at ``/keptn-output`` shared by the task
  (``KEPTN_OUTPUT_FILE=/keptn-output/output.json``, replacing a variable of the task's own of that
  name) and the ``jes-output`` native sidecar (:func:`output_sidecar`), which relays the file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jes.models import (
    API_PROXY_TOKEN_ENV,
    API_PROXY_URL_ENV,
    OUTPUT_FILE_ENV,
    EnvSecret,
    EnvValue,
    EventInfo,
    RenderedTask,
    Resources,
    TaskSpec,
    TaskVolume,
    api_proxy_secret_name,
    job_name,
    k8s_literal,
)
from jes.runner.kubernetes.outputsidecar import NO_TOKEN_VOLUME as NO_TOKEN_VOLUME
from jes.runner.kubernetes.outputsidecar import OUTPUT_CONTAINER as OUTPUT_CONTAINER
from jes.runner.kubernetes.outputsidecar import OUTPUT_VOLUME as OUTPUT_VOLUME
from jes.runner.kubernetes.outputsidecar import output_sidecar, output_volume_size
from jes.runner.outputs import KUBERNETES_OUTPUT_DIR, KUBERNETES_OUTPUT_FILE
from jes.settings import Settings

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_CONTEXT = "keptn.sh/context"
LABEL_EVENT_ID = "keptn.sh/event-id"
LABEL_COMMIT = "keptn.sh/commitid"
LABEL_ACTION = "keptn.sh/jes-action"
LABEL_TASK = "keptn.sh/jes-task"
LABEL_CONFIG_HASH = "keptn.sh/jes-job-confighash"
LABEL_ACTION_INDEX = "keptn.sh/jes-action-index"
LABEL_TASK_INDEX = "keptn.sh/jes-task-index"
ANNOTATION_EVENT_ID = "jes.keptn.sh/event-id"
ANNOTATION_TASK = "jes.keptn.sh/task"

FILES_MOUNT = "/keptn"
FILES_SOURCE_MOUNT = "/jes-files"
JOB_VOLUME = "job-volume"
FILES_VOLUME = "job-files"
CONFIGMAP_CHUNK_BYTES = 900 * 1024
"""A ConfigMap holds at most 1 MiB; files are spread over as many as needed."""
API_PROXY_TOKEN_KEY = "token"
"""The key of the proxy token in a task's ``<job>-api-proxy`` Secret."""


@dataclass(frozen=True)
class JobSettings:
    """The executor settings that shape Jobs."""

    managed_by: str = "job-executor-service"
    executor: str = ""
    """The executor's identity (``<namespace>/<location>``): executors sharing a job namespace
    (regions, releases) never share Job names."""
    task_deadline_seconds: int = 0
    pod_security_context: Mapping[str, Any] | None = None
    job_labels: Mapping[str, str] | None = None
    files_size_limit: str = "20Mi"
    init_image: str = "ghcr.io/jes-project/jes:0.1.0"
    init_resources: Resources = Resources("1", "512Mi", "50m", "128Mi")
    task_outputs: bool = False
    """Give tasks ``$KEPTN_OUTPUT_FILE`` and the ``jes-output`` sidecar that relays it (JES_TASK_OUTPUTS)."""
    max_output_bytes: int = 64 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> JobSettings:
        return cls(
            managed_by=settings.full_deployment_name,
            executor=settings.executor_id,
            task_deadline_seconds=settings.task_deadline_seconds,
            pod_security_context=dict(settings.pod_security_context),
            job_labels=dict(settings.job_labels),
            files_size_limit=settings.files_size_limit,
            init_image=settings.init_image,
            init_resources=Resources.defaults_of(settings),
            task_outputs=settings.task_outputs,
            max_output_bytes=settings.max_output_bytes,
        )


# ---------------------------------------------------------------------------------------------
# Names and labels


def sanitise_label_value(value: str) -> str:
    """Upstream's rule: runs of characters outside ``[-A-Za-z0-9_.]`` become ``_``, cut to 63,
    then leading/trailing ``-``, ``_`` and ``.`` are removed."""
    return re.sub(r"[^-A-Za-z0-9_.]+", "_", value)[:63].strip("-_.")


def job_labels(task: RenderedTask, event: EventInfo, config_hash: str, settings: JobSettings) -> dict[str, str]:
    labels = dict(settings.job_labels or {})
    labels.update(
        {
            MANAGED_BY: settings.managed_by,
            LABEL_CONTEXT: sanitise_label_value(event.keptn_context),
            LABEL_EVENT_ID: sanitise_label_value(event.id),
            LABEL_COMMIT: sanitise_label_value(event.git_commit_id),
            LABEL_ACTION: sanitise_label_value(task.action_name),
            LABEL_TASK: sanitise_label_value(task.name),
            LABEL_CONFIG_HASH: config_hash,
            LABEL_ACTION_INDEX: str(task.action_index),
            LABEL_TASK_INDEX: str(task.task_index),
        }
    )
    return labels


# ---------------------------------------------------------------------------------------------
# The Job


def job_for(spec: TaskSpec, settings: JobSettings) -> dict[str, Any]:
    """The batch/v1 Job that runs ``spec``."""
    return build_job(
        spec.task, spec.event, config_hash=spec.config_hash, settings=settings, files=spec.files.sizes,
        name=spec.job_name, api_proxy_url=spec.api_proxy.url if spec.api_proxy is not None else None,
    )  # fmt: skip


def build_job(
    task: RenderedTask,
    event: EventInfo,
    *,
    config_hash: str,
    settings: JobSettings,
    files: Mapping[str, int] | None = None,
    name: str = "",
    api_proxy_url: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job for one task of one event; ``files`` maps each file to its size. Its name is
    ``name``, else :func:`jes.models.job_name` for the event, task and executor. With
    ``api_proxy_url`` the task gets the proxy's URL and its token from the Job's token Secret."""
    name = name or job_name(event.id, task.action_index, task.task_index, executor=settings.executor)
    annotations = dict(task.annotations)
    annotations.update({ANNOTATION_EVENT_ID: event.id, ANNOTATION_TASK: task.name})
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": task.ttl_seconds_after_finished,
        "template": {
            "metadata": {"labels": {MANAGED_BY: settings.managed_by}},
            "spec": _pod_spec(name, task, settings, files or {}, api_proxy_url),
        },
    }
    if settings.task_deadline_seconds > 0:
        spec["activeDeadlineSeconds"] = settings.task_deadline_seconds
    if task.retries > 0:
        spec["backoffLimit"] = task.retries
        spec["podFailurePolicy"] = pod_failure_policy(task, name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": task.namespace,
            "labels": job_labels(task, event, config_hash, settings),
            "annotations": annotations,
        },
        "spec": spec,
    }


def pod_failure_policy(task: RenderedTask, container: str) -> dict[str, Any]:
    """The Job's ``podFailurePolicy`` for a task with retries (batch/v1; the pod's restartPolicy is
    Never, as the API requires). A pod failed by a disruption (eviction, preemption, node drain: the
    ``DisruptionTarget`` condition) is replaced without counting against ``backoffLimit``; with
    ``retryOnExitCodes``, the task container ending with any other non-zero exit code fails the Job
    at once (reason ``PodFailurePolicy``). The API wants the values unique and ascending, at most 255."""
    rules: list[dict[str, Any]] = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    if task.retry_on_exit_codes:
        values = sorted(set(task.retry_on_exit_codes))
        rules.append(
            {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "NotIn", "values": values}}
        )
    return {"rules": rules}


def _pod_spec(
    name: str, task: RenderedTask, settings: JobSettings, files: Mapping[str, int], api_proxy_url: str | None
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": dict(settings.pod_security_context or {}),
        "containers": [_main_container(name, task, api_proxy_url, outputs=settings.task_outputs)],
        "volumes": [{"name": JOB_VOLUME, "emptyDir": {"sizeLimit": settings.files_size_limit}}],
    }
    if task.service_account:
        pod["serviceAccountName"] = task.service_account
    if task.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in task.image_pull_secrets]
    if files:
        pod["initContainers"] = [_init_container(name, task, settings)]
        pod["volumes"].append(_files_volume(name, files))
    pod["volumes"] += [task_volume(volume) for volume in task.volumes]
    if settings.task_outputs:
        pod.setdefault("initContainers", []).append(output_sidecar(settings.init_image, settings.max_output_bytes))
        room = output_volume_size(settings.max_output_bytes)
        pod["volumes"].append({"name": OUTPUT_VOLUME, "emptyDir": {"sizeLimit": room}})
        pod["volumes"].append({"name": NO_TOKEN_VOLUME, "emptyDir": {"sizeLimit": "1Ki"}})
    return pod


def task_volume(volume: TaskVolume) -> dict[str, Any]:
    """A task's own volume in the pod spec."""
    if volume.claim_name:
        claim: dict[str, Any] = {"claimName": volume.claim_name}
        if volume.read_only:
            claim["readOnly"] = True
        return {"name": volume.name, "persistentVolumeClaim": claim}
    return {"name": volume.name, "emptyDir": {"sizeLimit": volume.size_limit} if volume.size_limit else {}}


def task_volume_mount(volume: TaskVolume) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": volume.name, "mountPath": volume.mount_path}
    if volume.read_only:
        mount["readOnly"] = True
    return mount


def _main_container(
    name: str, task: RenderedTask, api_proxy_url: str | None, *, outputs: bool = False
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": task.image}
    if task.image_pull_policy:
        container["imagePullPolicy"] = task.image_pull_policy
    if task.cmd is not None:
        container["command"] = list(task.cmd)
    if task.args is not None:
        container["args"] = list(task.args)
    if task.working_dir:
        container["workingDir"] = task.working_dir
    env: list[dict[str, Any]] = [
        {"name": e.name, "value": e.manifest_value}
        for e in task.env
        if isinstance(e, EnvValue) and not (outputs and e.name == OUTPUT_FILE_ENV)
    ]
    if api_proxy_url is not None:
        env += api_proxy_env(name, api_proxy_url)
    if outputs:
        env.append({"name": OUTPUT_FILE_ENV, "value": KUBERNETES_OUTPUT_FILE})
    if env:
        container["env"] = env
    env_from = [{"secretRef": {"name": e.secret}} for e in task.env if isinstance(e, EnvSecret)]
    if env_from:
        container["envFrom"] = env_from
    resources = task.resources.as_k8s() if task.resources is not None else {}
    if resources:
        container["resources"] = resources
    container["securityContext"] = dict(task.security_context)
    container["volumeMounts"] = [{"name": JOB_VOLUME, "mountPath": FILES_MOUNT}]
    container["volumeMounts"] += [task_volume_mount(volume) for volume in task.volumes]
    if outputs:
        container["volumeMounts"].append({"name": OUTPUT_VOLUME, "mountPath": KUBERNETES_OUTPUT_DIR})
    return container


def api_proxy_env(job: str, url: str) -> list[dict[str, Any]]:
    """The task container's proxy variables: the URL as a literal value (no ``$(VAR)`` expansion),
    the token by reference to the Job's token Secret."""
    secret = {"name": api_proxy_secret_name(job), "key": API_PROXY_TOKEN_KEY}
    return [
        {"name": API_PROXY_URL_ENV, "value": k8s_literal(url)},
        {"name": API_PROXY_TOKEN_ENV, "valueFrom": {"secretKeyRef": secret}},
    ]


def build_api_proxy_secret(job: Mapping[str, Any], token: str, *, owner_uid: str | None = None) -> dict[str, Any]:
    """The Secret with the proxy token of ``job``'s task, labelled like the Job's ConfigMaps. jes
    creates it after the Job, with the Job (``owner_uid``, from the create answer) as its owner in
    the create body: it goes with the Job, and is never patched (:mod:`.creation`)."""
    metadata = job["metadata"]
    labels = {k: v for k, v in metadata["labels"].items() if k in (MANAGED_BY, LABEL_EVENT_ID)}
    secret_meta: dict[str, Any] = {
        "name": api_proxy_secret_name(metadata["name"]),
        "namespace": metadata["namespace"],
        "labels": labels,
    }
    if owner_uid is not None:
        secret_meta["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": metadata["name"], "uid": owner_uid}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": secret_meta,
        "type": "Opaque",
        "data": {API_PROXY_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def _init_container(name: str, task: RenderedTask, settings: JobSettings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": f"init-{name}"[:63],
        "image": settings.init_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["jes", "copy-files", FILES_SOURCE_MOUNT, FILES_MOUNT],
        "securityContext": dict(task.security_context),
        "volumeMounts": [
            {"name": JOB_VOLUME, "mountPath": FILES_MOUNT},
            {"name": FILES_VOLUME, "mountPath": FILES_SOURCE_MOUNT, "readOnly": True},
        ],
    }
    resources = settings.init_resources.as_k8s()
    if resources:
        container["resources"] = resources
    return container


# ---------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class Piece:
    """Bytes ``offset``..``offset + length`` of file ``source``, at ``path`` in the volume."""

    key: str
    path: str
    source: str
    offset: int
    length: int


PARTS_DIR = ".jes-parts"
"""Where the pieces of a big file land in the files volume; ``jes copy-files`` joins them."""


def file_pieces(sizes: Mapping[str, int]) -> list[list[Piece]]:
    """The task's files (path → size) packed into ConfigMaps of at most CONFIGMAP_CHUNK_BYTES each;
    a file bigger than that is cut into pieces that fill ConfigMaps of their own."""
    chunks: list[list[Piece]] = [[]]
    used = 0
    for number, path in enumerate(sorted(sizes)):
        size, relative = sizes[path], path.lstrip("/")
        if size <= CONFIGMAP_CHUNK_BYTES:
            if chunks[-1] and used + size > CONFIGMAP_CHUNK_BYTES:
                chunks.append([])
                used = 0
            chunks[-1].append(Piece(f"f{number}", relative, path, 0, size))
            used += size
            continue
        for index, offset in enumerate(range(0, size, CONFIGMAP_CHUNK_BYTES)):
            length = min(CONFIGMAP_CHUNK_BYTES, size - offset)
            piece = Piece(f"f{number}p{index}", f"{PARTS_DIR}/{relative}/{index:05d}", path, offset, length)
            if chunks[-1]:
                chunks.append([])
            chunks[-1].append(piece)
            used = length
    return chunks if chunks[0] else []


def configmap_name(job: str, chunk: int) -> str:
    return f"{job}-files-{chunk}"


def configmap_names(job: str, sizes: Mapping[str, int]) -> list[str]:
    return [configmap_name(job, i) for i in range(len(file_pieces(sizes)))]


def _files_volume(name: str, sizes: Mapping[str, int]) -> dict[str, Any]:
    sources = [
        {"configMap": {"name": configmap_name(name, i), "items": [{"key": p.key, "path": p.path} for p in chunk]}}
        for i, chunk in enumerate(file_pieces(sizes))
    ]
    return {"name": FILES_VOLUME, "projected": {"sources": sources}}


def build_config_maps(
    job: Mapping[str, Any], read: Callable[[Piece], bytes], sizes: Mapping[str, int]
) -> Iterator[dict[str, Any]]:
    """The ConfigMaps carrying a task's files for ``job`` (binaryData, base64 as the API wants it),
    one at a time: ``read(piece)`` gives the bytes of a piece, so at most one ConfigMap's worth of
    file content is in memory."""
    metadata = job["metadata"]
    labels = {k: v for k, v in metadata["labels"].items() if k in (MANAGED_BY, LABEL_EVENT_ID)}
    for i, chunk in enumerate(file_pieces(sizes)):
        yield {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": configmap_name(metadata["name"], i),
                "namespace": metadata["namespace"],
                "labels": labels,
            },
            "binaryData": {piece.key: base64.b64encode(read(piece)).decode() for piece in chunk},
        }
