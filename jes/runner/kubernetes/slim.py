"""What the kubernetes runner keeps of the Jobs and pods it watches (:mod:`.watch`): only the fields
it reads (:mod:`.status`, :mod:`.waiting`, :mod:`.finishing`), and which Job a pod belongs to.
"""

from __future__ import annotations

from typing import Any, TypeVar

from jes.util.shared import SHARED_MAX_CHARS, shared_text

Obj = dict[str, Any]
T = TypeVar("T", Obj, list[Obj])

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def job_name_of_pod(pod: Obj) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for key in JOB_NAME_LABELS:
        if labels.get(key):
            return str(labels[key])
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == "Job":
            return str(ref.get("name", ""))
    return ""


_METADATA_KEPT = ("name", "resourceVersion", "creationTimestamp", "deletionTimestamp")
_CONDITION_KEPT = ("type", "status", "reason", "message", "lastTransitionTime")
_POD_CONDITION_KEPT = ("type", "status", "reason", "message")  # (the time is read of Jobs only)
_JOB_STATUS_KEPT = ("completionTime", "succeeded", "failed")
_POD_STATUS_KEPT = ("phase", "reason", "message")
_TERMINATED_KEPT = ("exitCode", "reason", "message")
_WAITING_KEPT = ("reason", "message")


def slim(obj: Obj, kind: str) -> Obj:
    """What the runner reads of a Job or pod (:mod:`.status`, :mod:`.waiting`, :mod:`.finishing`):
    with thousands of Jobs in flight the rest of each object (pod specs, managed fields, timestamps,
    images, IPs) is most of jes's memory. A pod keeps what routes it to its Job (the job-name
    labels, the Job owner reference) and its containers' states (reason and message while waiting,
    exit code, reason and message once terminated); a Job its conditions, counts and deadline."""
    metadata = obj.get("metadata") or {}
    kept_metadata = _picked(metadata, _METADATA_KEPT)
    if kind == "pods":  # what job_name_of_pod reads: the first job-name label set, else the owner
        labels = metadata.get("labels") or {}
        label = next((key for key in JOB_NAME_LABELS if labels.get(key)), None)
        owners = [r for r in metadata.get("ownerReferences") or () if r.get("kind") == "Job"]
        if label is not None:
            kept_metadata["labels"] = {label: shared_text(labels[label])}
        elif owners:
            kept_metadata["ownerReferences"] = [{"kind": "Job", "name": shared_text(owners[0].get("name"))}]
    status = obj.get("status") or {}
    if kind == "pods":
        return {"metadata": kept_metadata, "status": _pod_status(status)}
    job_status = _job_status(status)  # (a running Job's is empty: one object for all)
    kept: Obj = {"metadata": kept_metadata, "status": job_status or canonical(job_status)}
    deadline = (obj.get("spec") or {}).get("activeDeadlineSeconds")
    if deadline is not None:
        kept["spec"] = canonical({"activeDeadlineSeconds": deadline})
    return kept


#: Equal parts of the objects kept, one object for all: the container states and scheduling
#: condition of every running pod are the same, and so is the (empty) status of every running Job.
#: The runner only reads what it keeps. Bounded: when full it starts again (what is shared stays
#: shared). Parts with names unique to a Job (its main container's) are not offered.
_CANONICAL: dict[Any, Any] = {}
CANONICAL_MAX = 4096


def canonical(value: T) -> T:
    """The kept object equal to ``value`` (``value`` itself the first time)."""
    key = _key(value)
    if key is None:  # a long message (a termination message, a scheduler's): not kept after its pod
        return value
    found: T | None = _CANONICAL.get(key)
    if found is not None:
        return found
    if len(_CANONICAL) >= CANONICAL_MAX:
        _CANONICAL.clear()
    _CANONICAL[key] = value
    return value


def _key(value: Any) -> Any:
    """What tells equal parts apart (True and 1 are equal, not the same); None: not to be shared."""
    if isinstance(value, dict):
        items = tuple((k, _key(v)) for k, v in value.items())
        return None if any(v is None for _, v in items) else (dict, items)
    if isinstance(value, list):
        keys = tuple(_key(v) for v in value)
        return None if any(k is None for k in keys) else (list, keys)
    if isinstance(value, str) and len(value) > SHARED_MAX_CHARS:
        return None
    return (type(value), value)


#: Only its presence is read: one object for every running container.
_RUNNING: Obj = {}


def _picked(source: Obj, keys: tuple[str, ...]) -> Obj:
    """``keys`` of ``source``, short strings shared ("Running", "True", names repeated in labels)."""
    return {k: shared_text(source[k]) for k in keys if k in source}


def _job_status(status: Obj) -> Obj:
    kept = _picked(status, _JOB_STATUS_KEPT)
    conditions = status.get("conditions")
    if conditions:
        kept["conditions"] = [_picked(c, _CONDITION_KEPT) for c in conditions]
    return kept


def _pod_status(status: Obj) -> Obj:
    kept = _picked(status, _POD_STATUS_KEPT)
    conditions = status.get("conditions") or ()
    scheduling = [_picked(c, _POD_CONDITION_KEPT) for c in conditions if c.get("type") == "PodScheduled"]
    if scheduling:
        kept["conditions"] = canonical(scheduling)
    if "initContainerStatuses" in status:  # (jes's own init containers: the same names in every pod)
        kept["initContainerStatuses"] = canonical([_container_status(s) for s in status["initContainerStatuses"] or ()])
    if "containerStatuses" in status:
        kept["containerStatuses"] = [_container_status(s) for s in status["containerStatuses"] or ()]
    return kept


def _container_status(status: Obj) -> Obj:
    state = status.get("state") or {}
    kept_state: Obj = {}
    if "waiting" in state:
        kept_state["waiting"] = _picked(state["waiting"] or {}, _WAITING_KEPT)
    if "running" in state:
        kept_state["running"] = _RUNNING
    if "terminated" in state:
        kept_state["terminated"] = _picked(state["terminated"] or {}, _TERMINATED_KEPT)
    return {"name": shared_text(status.get("name")), "state": canonical(kept_state)}
