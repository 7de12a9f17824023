"""The checks of ``tasks[].volumes`` (jes extension) beyond their shape, and the claim allowlist.

* A volume has exactly one source: ``emptyDir`` or ``persistentVolumeClaim``. Every other
  Kubernetes volume type (hostPath, secret, configMap, nfs, csi, ...) is refused: a task must not
  reach the node's files, other workloads' Secrets or storage nobody allowed it.
* ``name``: unique in the task and none of jes's own (:data:`jes.models.JES_VOLUME_NAMES`);
  Kubernetes' DNS-1123 label rule is :mod:`.checks`' (with the other names a Job carries).
* ``mountPath``: absolute and normalised (no ``.`` or ``..`` parts, no ``//``, no trailing ``/``),
  unique in the task, not ``/keptn`` (where jes puts the task's files) or ``/keptn-output`` (task outputs),
  inside or above them.
* ``emptyDir.sizeLimit``: a Kubernetes quantity, not negative.
* ``persistentVolumeClaim.claimName``: allowed by ``JES_ALLOWED_VOLUME_CLAIMS``, a list of globs
  (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[a-z]``, ``[!a]``); an empty list allows none.
  The claim is looked up in the task's namespace; the globs name claims in any namespace.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable

from jes.matcher import yamlsource
from jes.matcher.schema import Task, Volume
from jes.models import JES_MOUNT_PATHS, JES_VOLUME_NAMES, TaskVolume
from jes.util import parsing

SOURCES = ("emptyDir", "persistentVolumeClaim")
_WHAT_JES_MOUNTS = {"/keptn": "the task's files", "/keptn-output": "the folder of $KEPTN_OUTPUT_FILE"}
SETTING = "JES_ALLOWED_VOLUME_CLAIMS"
CHART_VALUE = "jobConfig.allowedVolumeClaims"


def volume_type_message(field: str) -> str:
    """The error for a field of a volume that is not one jes knows (hostPath, secret, nfs...)."""
    return (
        f"unknown field {field!r}: a task's volume is an emptyDir or a persistentVolumeClaim (with name and "
        "mountPath); other volume types such as hostPath are not allowed, for security: a task must not "
        "reach the node's files or storage nobody allowed it"
    )


def volume_problems(task: Task) -> list[tuple[yamlsource.Path, str]]:
    """What is wrong with ``task``'s volumes: (path below the task, message) pairs."""
    found: list[tuple[yamlsource.Path, str]] = []
    names: set[str] = set()
    paths: set[str] = set()
    for i, volume in enumerate(task.volumes or ()):
        here: yamlsource.Path = ("volumes", i)
        found += [((*here, *where), message) for where, message in _volume_problems(volume)]
        if volume.name in names:
            found.append(((*here, "name"), f'Duplicate value: "{volume.name}": volume names must be unique in a task'))
        names.add(volume.name)
        if volume.mountPath in paths:
            message = f'Invalid value: "{volume.mountPath}": must be unique (another volume is mounted there)'
            found.append(((*here, "mountPath"), message))
        paths.add(volume.mountPath)
    return found


def _volume_problems(volume: Volume) -> list[tuple[yamlsource.Path, str]]:
    found: list[tuple[yamlsource.Path, str]] = []
    sources = [name for name in SOURCES if getattr(volume, name) is not None]
    if len(sources) != 1:
        what = "both emptyDir and" if sources else "neither emptyDir nor"
        message = (
            f"volume {volume.name!r} has {what} persistentVolumeClaim: give exactly one "
            "(emptyDir: {} for an empty directory without a size limit)"
        )
        found.append(((), message))
    if volume.name in JES_VOLUME_NAMES:
        message = f"{volume.name!r} is the name of a volume jes adds to every task's pod; choose another name"
        found.append((("name",), message))
    if (problem := mount_path_problem(volume.mountPath)) is not None:
        found.append((("mountPath",), problem))
    if volume.emptyDir is not None and volume.emptyDir.sizeLimit:
        if (problem := _size_problem(volume.emptyDir.sizeLimit)) is not None:
            found.append((("emptyDir", "sizeLimit"), problem))
    return found


def mount_path_problem(path: str) -> str | None:
    """Why a task may not mount a volume at ``path``, or None."""
    if not path.startswith("/"):
        return f"{path!r} is not an absolute path; write it from the root, e.g. /cache"
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = normal[1:]  # POSIX keeps a leading "//"; Linux means "/"
    if normal != path or "\0" in path:
        return f"{path!r} is not a normalised path; write {normal!r}"
    for own in JES_MOUNT_PATHS:
        relation = _relation(path, own)
        if relation:
            return (
                f"{path!r} is {relation} {own}, where jes mounts {_WHAT_JES_MOUNTS.get(own, 'its own volume')}; "
                "mount the volume elsewhere, e.g. /data or /cache"
            )
    return None


def _relation(path: str, own: str) -> str:
    if path == own:
        return "the same path as"
    if path.startswith(own + "/"):
        return "inside"
    if own.startswith(path.rstrip("/") + "/"):
        return "a parent of"
    return ""


def _size_problem(size: str) -> str | None:
    try:
        parsing.quantity(size)
    except ValueError as exc:
        return str(exc)
    if size.strip().startswith("-"):
        return f"{size!r}: a size limit must not be negative"
    return None


def claim_allowed(claim: str, patterns: Iterable[str]) -> bool:
    """Whether ``claim`` matches one of ``patterns`` (fnmatch globs, case-sensitive); none: no."""
    return any(fnmatch.fnmatchcase(claim, pattern) for pattern in patterns if pattern)


def claim_forbidden(claim: str, patterns: Iterable[str]) -> str:
    """Why a claim outside the allowlist is refused, and how to allow it."""
    listed = ", ".join(p for p in patterns if p)
    shown = f"it allows {listed}" if listed else "it is empty, so no claim is allowed"
    return (
        f"persistentVolumeClaim {claim!r} is not in the executor's allowed volume claims ({SETTING}: {shown}); "
        f"add the claim or a glob matching it to {SETTING} (chart: {CHART_VALUE})"
    )


def forbidden_claims(task: Task, patterns: Iterable[str]) -> list[tuple[yamlsource.Path, str]]:
    """Where ``task`` names a claim the allowlist does not allow: (path below the task, message)."""
    allowed = tuple(patterns)
    found: list[tuple[yamlsource.Path, str]] = []
    for i, volume in enumerate(task.volumes or ()):
        source = volume.persistentVolumeClaim
        if source is not None and not claim_allowed(source.claimName, allowed):
            where = ("volumes", i, "persistentVolumeClaim", "claimName")
            found.append((where, claim_forbidden(source.claimName, allowed)))
    return found


def rendered(task: Task) -> tuple[TaskVolume, ...]:
    """The task's volumes as a runner gets them."""
    out = []
    for volume in task.volumes or ():
        claim = volume.persistentVolumeClaim
        out.append(
            TaskVolume(
                name=volume.name,
                mount_path=volume.mountPath,
                size_limit=volume.emptyDir.sizeLimit.strip() if volume.emptyDir is not None else "",
                claim_name=claim.claimName if claim is not None else "",
                read_only=claim.readOnly if claim is not None else False,
            )
        )
    return tuple(out)
