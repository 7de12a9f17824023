"""Creating a task's Job, or adopting the one that exists already.

The ConfigMaps with the task's ``files`` come first, then the Secret with the task's API-proxy token
(only for a task with :attr:`~jes.models.TaskSpec.api_proxy`), then the Job. ``409 AlreadyExists``
means the Job (or ConfigMap, or Secret) is already there — from an earlier attempt, another replica
or before a restart — and it is adopted, never created twice; an existing token Secret is given this
run's token. Once the Job exists, the ConfigMaps and the token Secret get it as their owner, so
Kubernetes' garbage collector removes them with the Job (TTL or deletion); without the ``patch``
permission they keep no owner, which is logged. When the Job cannot be created, the ConfigMaps
created for it and its token Secret are deleted again.

After a crash: a Job adopted later (also with ``adopt_only``) makes its token Secret its own, and
when the Job turns out not to exist with ``adopt_only`` (it is never created then), a token Secret
left from before the crash is deleted — a credential never outlives its task for long.

Creating the Job retries temporary errors (``429``, ``5xx``, connection errors; ``Retry-After``
honoured) for as long as they last: an outage of the API server delays the task, it does not fail
it. The caller's fence is awaited before every attempt to create the Job or its ConfigMaps. Every
other error is raised as a :class:`~jes.errors.KubeError` (``403`` as
:class:`~jes.errors.KubePermissionError`, naming the missing permission).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from jes import errors
from jes.models import TaskSpec, api_proxy_secret_name
from jes.runner.base import Fence
from jes.runner.kubernetes import manifests
from jes.runner.kubernetes import watch as kube_watch
from jes.runner.kubernetes.task import ApiLookup, JobTask, Obj
from jes.util import retry

logger = logging.getLogger(__name__)

#: The longest pause between two attempts to create a Job while the API server keeps failing.
LONGEST_CREATE_RETRY_S = 30.0


async def create_or_adopt(
    api: ApiLookup,
    spec: JobTask,
    namespace: str,
    tracker: kube_watch.Tracker,
    fence: Fence,
    *,
    backoff: retry.Backoff,
    sleep: retry.Sleep,
) -> tuple[Obj | None, bool]:
    """The Job and whether it existed already (None: it existed but is gone now)."""
    await fence()
    try:
        created_maps = await _create_config_maps(api, spec, namespace)
    finally:
        spec.files.discard()  # in ConfigMaps now: the spool goes, not when the task ends
    try:
        await _put_token_secret(api, spec, namespace)
    except errors.KubeError:
        await _delete_config_maps(api, namespace, created_maps)
        raise
    try:
        job = await _create_job(api, namespace, _in_namespace(spec.job, namespace), fence, backoff, sleep)
    except errors.KubeConflictError:
        logger.info("Job %s/%s exists already; adopting it", namespace, spec.job_name)
        adopted = await adopt(api, spec, namespace, tracker)
        if adopted is not None:
            await _own_config_maps(api, spec, namespace, adopted)
        await settle_token_secret(api, spec, namespace, adopted)
        return adopted, True
    except errors.KubeError:
        await _delete_config_maps(api, namespace, created_maps)
        if spec.api_proxy is not None:
            await _delete_token_secret(api, spec, namespace)
        raise
    tracker.offer_job(job)
    await _own_config_maps(api, spec, namespace, job)
    await settle_token_secret(api, spec, namespace, job)
    return job, False


async def adopt(api: ApiLookup, spec: JobTask, namespace: str, tracker: kube_watch.Tracker) -> Obj | None:
    """An existing Job, read once with its pods (the watches only report changes); None: no such Job."""
    kube = api()
    try:
        job = await kube.get_job(namespace, spec.job_name)
    except errors.KubeNotFoundError:
        return None
    tracker.offer_job(job)
    tracker.offer_pods(await kube.list_pods(namespace, f"job-name={spec.job_name}"))
    return job


async def _create_config_maps(api: ApiLookup, spec: JobTask, namespace: str) -> list[str]:
    """The ConfigMaps with the task's files, built and sent one at a time (read from the spool:
    one ConfigMap's worth of content in memory); the names of those created now."""
    if not spec.files:
        return []
    files = spec.files
    building = manifests.build_config_maps(
        spec.job, lambda piece: files.read(piece.source, piece.offset, piece.length), files.sizes
    )
    created: list[str] = []
    while (config_map := await asyncio.to_thread(next, building, None)) is not None:
        try:
            await api().create_config_map(namespace, _in_namespace(config_map, namespace))
            created.append(config_map["metadata"]["name"])
        except errors.KubeConflictError:
            pass  # an earlier attempt (or replica) made it
        except errors.KubeError:
            await _delete_config_maps(api, namespace, created)
            raise
    return created


async def _create_job(
    api: ApiLookup, namespace: str, body: Obj, fence: Fence, backoff: retry.Backoff, sleep: retry.Sleep
) -> Obj:
    """Create the Job; temporary errors are retried for as long as they last, the fence right
    before every attempt."""
    kube = api()
    delays = iter(retry.Backoff((*backoff.delays_s, LONGEST_CREATE_RETRY_S), forever=True))
    while True:
        await fence()
        try:
            return await kube.create_job(namespace, body, backoff=retry.Backoff(()))
        except errors.KubeTemporaryError as exc:
            delay_s = max(next(delays), exc.retry_after_s or 0.0)
            logger.warning("creating Job %s/%s failed (%s); retrying in %.1fs", namespace, body["metadata"]["name"],
                           exc, delay_s)  # fmt: skip
            await sleep(delay_s)


async def _own_config_maps(api: ApiLookup, spec: JobTask, namespace: str, job: Obj) -> None:
    """Make the Job the owner of its files ConfigMaps (they go when it goes)."""
    owner = _owner(job)
    for name in _config_map_names(spec):
        try:
            await api().patch_config_map(namespace, name, {"metadata": {"ownerReferences": [owner]}})
        except errors.KubeError as exc:
            logger.warning("ConfigMap %s/%s keeps no owner (it outlives its Job): %s", namespace, name, exc)


def _config_map_names(spec: JobTask) -> list[str]:
    """The files ConfigMaps the Job mounts (from its manifest: the spool may be gone)."""
    volumes = spec.pod_spec.get("volumes") or []
    sources: list[Obj] = next(
        (v["projected"]["sources"] for v in volumes if v.get("name") == manifests.FILES_VOLUME), []
    )
    return [str(source["configMap"]["name"]) for source in sources if "configMap" in source]


async def _delete_config_maps(api: ApiLookup, namespace: str, names: list[str]) -> None:
    kube = api()
    for name in names:
        try:
            await kube.delete_config_map(namespace, name)
        except errors.KubeError as exc:
            logger.warning("could not delete ConfigMap %s/%s of a Job never created: %s", namespace, name, exc)


async def _put_token_secret(api: ApiLookup, spec: JobTask, namespace: str) -> None:
    """The Secret with the task's proxy token, before the Job (its pod reads it at start). One left
    from an earlier attempt gets this run's token: the token the proxy knows now."""
    if spec.api_proxy is None:
        return
    body = manifests.build_api_proxy_secret(_in_namespace(spec.job, namespace), spec.api_proxy.token)
    name = body["metadata"]["name"]
    try:
        await api().create_secret(namespace, body)
    except errors.KubeConflictError:
        try:
            await api().patch_secret(namespace, name, {"data": body["data"]})
        except errors.KubeError as exc:
            logger.warning("Secret %s/%s existed already and keeps its earlier token: %s", namespace, name, exc)


async def settle_token_secret(api: ApiLookup, spec: TaskSpec, namespace: str, job: Obj | None) -> None:
    """After the Job was created or adopted (``job``; None: there is none): the token Secret gets the
    Job as its owner, so it goes with the Job; without a Job it is deleted. Only where there may be
    one: the task has proxy access, or the Job reads the Secret."""
    name = api_proxy_secret_name(spec.job_name)
    if job is None:
        await _delete_token_secret(api, spec, namespace)
        return
    if spec.api_proxy is None and not _reads_secret(job, name):
        return
    try:
        await api().patch_secret(namespace, name, {"metadata": {"ownerReferences": [_owner(job)]}})
    except errors.KubeNotFoundError:
        pass  # nothing to own (the Job was made by an attempt without proxy access)
    except errors.KubeError as exc:
        logger.warning("Secret %s/%s keeps no owner (it outlives its Job): %s", namespace, name, exc)


async def _delete_token_secret(api: ApiLookup, spec: TaskSpec, namespace: str) -> None:
    """Delete the task's token Secret if there is one. Where it may never have existed (no proxy
    access in this run), no right to delete it is not worth a warning either."""
    name = api_proxy_secret_name(spec.job_name)
    quiet: tuple[type[errors.KubeError], ...] = (errors.KubeNotFoundError,)
    if spec.api_proxy is None:
        quiet = (errors.KubeNotFoundError, errors.KubePermissionError)
    try:
        await api().delete_secret(namespace, name)
    except quiet:
        pass
    except errors.KubeError as exc:
        logger.warning("could not delete Secret %s/%s, the token of a task without a Job: %s", namespace, name, exc)


def _reads_secret(job: Obj, name: str) -> bool:
    """Whether a container of ``job`` reads Secret ``name`` through ``env[].valueFrom.secretKeyRef``."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or ():
        for entry in container.get("env") or ():
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") == name:
                return True
    return False


def _owner(job: Obj) -> Obj:
    meta = job.get("metadata") or {}
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta.get("name"), "uid": meta.get("uid")}


def _in_namespace(manifest: Mapping[str, Any], namespace: str) -> Obj:
    body = dict(manifest)
    body["metadata"] = dict(body.get("metadata") or {}) | {"namespace": namespace}
    return body
