"""Creating a task's Job, or adopting the one that exists already.

The ConfigMaps with the task's ``files`` come first, then the Job, then — only for a task with
:attr:`~jes.models.TaskSpec.api_proxy` — the Secret with the task's API-proxy token. ``409
AlreadyExists`` for the Job means it is already there — from an earlier attempt, another replica or
before a restart — and it is adopted, never created twice. Once the Job exists, the ConfigMaps get it
as their owner (a merge patch), so Kubernetes' garbage collector removes them with the Job (TTL or
deletion); without the ``patch`` permission they keep no owner, which is logged. When the Job cannot
be created, the ConfigMaps created for it are deleted again.

**The token Secret is never patched, and never read.** A PATCH (like a GET) answers with the whole
object, so a right to patch Secrets is a right to read every Secret of the namespace — Keptn's own
among them when Jobs run beside Keptn. jes only creates and deletes: the Secret is created *after*
the Job, with the Job (its ``uid`` from the create answer) as owner already in the create body, so
it goes with the Job. Until it exists the Job's pod waits: the kubelet cannot build the container's
environment (``CreateContainerConfigError``, ``secret "<job>-api-proxy" not found``) and tries again
on its next sync; the waiting runner counts that as passing for the task's *own* token Secret
(``JES_TRANSIENT_GRACE_S``, :mod:`.waiting`). A Secret of that name left from an earlier attempt
(``409``) holds a token the proxy no longer knows: it is deleted and created again (without a uid
precondition: the ``409`` does not name the uid, and learning it would take a read). Temporary errors
creating it are retried for as long as they last, as for the Job (an outage delays the task). When it
cannot be created at all (no permission, a quota, an invalid object), the Job just created is
deleted — its pod cannot have started its task without the Secret — and the task ends with
:attr:`~jes.models.Status.ERROR` and the reason. For an adopted Job (``409``) a failure is only
logged: its pod may be running already; if it is still waiting, the wait ends it after the grace.

After a crash: an adopted Job keeps whatever token Secret exists (with ``adopt_only`` the service no
longer knows a token to give); a Job whose Secret never came fails after ``JES_TRANSIENT_GRACE_S``
with that reason. When the Job turns out not to exist with ``adopt_only`` (it is never created then),
a token Secret left from an older jes that created it before the Job is deleted — a credential never
outlives its task for long.

Creating the Job retries temporary errors (``429``, ``5xx``, connection errors; ``Retry-After``
honoured) for as long as they last: an outage of the API server delays the task, it does not fail
it. The caller's fence is awaited before every attempt to create the Job or its ConfigMaps. Every
other error is raised as a :class:`~jes.errors.KubeError` (``403`` as
:class:`~jes.errors.KubePermissionError`, naming the missing permission).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from jes import errors
from jes.models import TaskSpec, api_proxy_secret_name
from jes.runner.base import Fence
from jes.runner.kubernetes import manifests
from jes.runner.kubernetes import watch as kube_watch
from jes.runner.kubernetes.status import RELAY_CONTAINER
from jes.runner.kubernetes.task import ApiLookup, JobTask, Obj
from jes.util import retry

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The longest pause between two attempts to create a Job while the API server keeps failing.
LONGEST_CREATE_RETRY_S = 30.0


class TokenSecretError(errors.KubePermanentError):
    """The token Secret of a Job just created could not be created; the Job was deleted again."""


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
    """The Job and whether it existed already (None: it existed but is gone now).

    Raises :class:`TokenSecretError` when the Job was created but its token Secret could not be
    (the Job is deleted again), and :class:`~jes.errors.KubeError` when the Job could not be created."""
    await fence()
    try:
        created_maps = await _create_config_maps(api, spec, namespace)
    finally:
        spec.files.discard()  # in ConfigMaps now: the spool goes, not when the task ends
    try:
        job = await _create_job(api, namespace, _in_namespace(spec.job, namespace), fence, backoff, sleep)
    except errors.KubeConflictError:
        logger.info("Job %s/%s exists already; adopting it", namespace, spec.job_name)
        adopted = await adopt(api, spec, namespace, tracker)
        if adopted is not None:
            await _own_config_maps(api, spec, namespace, adopted)
            try:
                await _create_token_secret(api, spec, namespace, adopted, backoff, sleep)
            except errors.KubeError as exc:
                logger.warning("Secret %s/%s with the token of adopted Job %s was not created: %s",
                               namespace, api_proxy_secret_name(spec.job_name), spec.job_name, exc)  # fmt: skip
        return adopted, True
    except errors.KubeError:
        await _delete_config_maps(api, namespace, created_maps)
        raise
    tracker.offer_job(job)
    await _own_config_maps(api, spec, namespace, job)
    if _sidecar_dropped(job):  # (its ConfigMaps go with it)
        raise NoNativeSidecars(await _give_up_unsupported(api, spec, namespace))
    try:
        await _create_token_secret(api, spec, namespace, job, backoff, sleep)
    except errors.KubeError as exc:
        raise TokenSecretError(await _give_up_job(api, spec, namespace, exc), status=exc.status) from exc
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
    name = body["metadata"]["name"]

    async def create() -> Obj:
        await fence()
        return await api().create_job(namespace, body, backoff=retry.Backoff(()))

    return await _create_retrying(api, namespace, "Job", name, create, backoff, sleep)


async def _create_retrying(
    api: ApiLookup,
    namespace: str,
    kind: str,
    name: str,
    create: Callable[[], Awaitable[T]],
    backoff: retry.Backoff,
    sleep: retry.Sleep,
) -> T:
    """``create()``, retried on temporary errors for as long as they last (``Retry-After`` honoured)."""
    delays = iter(retry.Backoff((*backoff.delays_s, LONGEST_CREATE_RETRY_S), forever=True))
    while True:
        try:
            return await create()
        except errors.KubeTemporaryError as exc:
            delay_s = max(next(delays), exc.retry_after_s or 0.0)
            logger.warning("creating %s %s/%s failed (%s); retrying in %.1fs", kind, namespace, name, exc, delay_s)
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


async def _create_token_secret(
    api: ApiLookup, spec: JobTask, namespace: str, job: Obj, backoff: retry.Backoff, sleep: retry.Sleep
) -> None:
    """Create the Secret with the task's proxy token, owned by ``job`` from the start (no patch
    ever). One of that name left from an earlier attempt holds a token the proxy no longer knows: it
    is deleted and created again, once. Temporary errors are retried for as long as they last."""
    if spec.api_proxy is None:
        return
    owner_uid = str((job.get("metadata") or {}).get("uid") or "")
    if not owner_uid:
        raise errors.KubePermanentError(f"the answer creating Job {namespace}/{spec.job_name} has no uid")
    body = manifests.build_api_proxy_secret(
        _in_namespace(spec.job, namespace), spec.api_proxy.token, owner_uid=owner_uid
    )
    name = body["metadata"]["name"]

    async def create() -> None:
        await api().create_secret(namespace, body, backoff=retry.Backoff(()))

    try:
        await _create_retrying(api, namespace, "Secret", name, create, backoff, sleep)
        return
    except errors.KubeConflictError:
        logger.info("Secret %s/%s exists already (an earlier attempt); creating it again", namespace, name)
    try:
        await api().delete_secret(namespace, name)
    except errors.KubeNotFoundError:
        pass  # gone meanwhile (its owner was deleted): create it
    await _create_retrying(api, namespace, "Secret", name, create, backoff, sleep)


class NoNativeSidecars(errors.KubePermanentError):
    """The API server dropped the output relay's ``restartPolicy: Always`` (Kubernetes before 1.29):
    as a plain init container it would wait forever, so the Job was deleted again."""


def _sidecar_dropped(job: Obj) -> bool:
    """Whether the Job as created has jes's output relay without ``restartPolicy: Always``."""
    inits = ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("initContainers") or []
    return any(c.get("name") == RELAY_CONTAINER and c.get("restartPolicy") != "Always" for c in inits)


async def _give_up_unsupported(api: ApiLookup, spec: JobTask, namespace: str) -> str:
    reason = (
        "this cluster does not support native sidecars (Kubernetes 1.29+): it dropped restartPolicy: Always of "
        "the jes-output container that relays $KEPTN_OUTPUT_FILE; set JES_TASK_OUTPUTS=false (the chart's "
        "jobConfig.taskOutputs=false)"
    )
    return await _delete_before_start(api, spec, namespace, reason)


async def _give_up_job(api: ApiLookup, spec: JobTask, namespace: str, exc: errors.KubeError) -> str:
    """Delete a Job just created whose token Secret could not be created; the task's reason. Its
    pod cannot have started the task: the kubelet does not start a container whose environment
    names a Secret that does not exist."""
    secret = api_proxy_secret_name(spec.job_name)
    reason = f"could not create Secret {namespace}/{secret} with the task's API-proxy token: {exc}"
    return await _delete_before_start(api, spec, namespace, reason, if_it_stays=": its pod waits for the Secret")


async def _delete_before_start(
    api: ApiLookup, spec: JobTask, namespace: str, reason: str, *, if_it_stays: str = ""
) -> str:
    """Delete a Job just created whose task cannot start; ``reason`` plus what became of the Job."""
    try:
        await api().delete_job(namespace, spec.job_name)
    except errors.KubeError as delete_exc:
        return f"{reason}; deleting Job {spec.job_name} failed too ({delete_exc}){if_it_stays}"
    logger.warning("Job %s/%s deleted before its task started: %s", namespace, spec.job_name, reason)
    return f"{reason}; Job {spec.job_name} was deleted before its task started"


async def forget_token_secret(api: ApiLookup, spec: TaskSpec, namespace: str, job: Obj | None) -> None:
    """After adopting (``job``; None: there is none): a token Secret without a Job is deleted (one
    left by an older jes that created it before the Job). An existing Job keeps whatever exists."""
    if job is None:
        await _delete_token_secret(api, spec, namespace)


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


def _owner(job: Obj) -> Obj:
    meta = job.get("metadata") or {}
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta.get("name"), "uid": meta.get("uid")}


def _in_namespace(manifest: Mapping[str, Any], namespace: str) -> Obj:
    body = dict(manifest)
    body["metadata"] = dict(body.get("metadata") or {}) | {"namespace": namespace}
    return body
