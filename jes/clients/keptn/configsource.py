"""Where jes reads ``job/config.yaml`` and a task's ``files`` from: the Keptn resource service.

The config is looked up service → stage → project, as upstream does: service and stage pinned
to the event's ``gitcommitid`` when it has one, the project level always at its latest version
(the stage commit does not exist on the project's default branch). Unlike upstream, only a 404
moves on to the next level: any other error is retried (temporary errors, by the client) and then
raised, so jes never silently runs a different config than the one that is there.

Task files (README, "What a task gets") are read from the service level only, at the latest version: a
path is first tried as one file, else as a directory (every listed resource under ``/<path>/``).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from jes import errors
from jes.clients.keptn import client as keptn_client

CONFIG_URI = "job/config.yaml"


class Level(enum.StrEnum):
    SERVICE = "service"
    STAGE = "stage"
    PROJECT = "project"


@dataclass(frozen=True)
class ConfigFile:
    """The config as found: raw bytes, where, and at which version."""

    content: bytes = field(repr=False)
    level: Level
    uri: str
    version: str
    project: str
    stage: str
    service: str

    @property
    def digest(self) -> str:
        """SHA3-224 of the bytes (upstream's ``keptn.sh/jes-job-confighash`` label)."""
        return hashlib.sha3_224(self.content).hexdigest()

    @property
    def location(self) -> str:
        """Human-readable origin for messages, e.g. ``service podtato/dev/hello: job/config.yaml``."""
        scope = {
            Level.SERVICE: f"{self.project}/{self.stage}/{self.service}",
            Level.STAGE: f"{self.project}/{self.stage}",
            Level.PROJECT: self.project,
        }[self.level]
        at = f" at {self.version}" if self.version else ""
        return f"{self.level} {scope}: {self.uri}{at}"


class ConfigNotFoundError(errors.KeptnNotFoundError):
    """No ``job/config.yaml`` at service, stage or project level (every lookup answered 404)."""

    def __init__(self, message: str, *, tried: tuple[str, ...]) -> None:
        super().__init__(message, status=404)
        self.tried = tried


class FilesNotFoundError(errors.KeptnNotFoundError):
    """A ``files`` entry names neither a service-level file nor a directory with files."""

    def __init__(self, *, path: str, task: str) -> None:
        super().__init__(f"could not find file or directory {path} for task {task}", status=404)
        self.path = path
        self.task = task


class ConfigSource:
    """Reads configs and task files through a :class:`keptn_client.KeptnClient`."""

    def __init__(self, client: keptn_client.KeptnClient, *, uri: str = CONFIG_URI) -> None:
        self._client = client
        self._uri = uri

    async def fetch_config(self, project: str, stage: str, service: str, git_commit_id: str = "") -> ConfigFile:
        """The first config found service → stage → project.

        Raises :class:`ConfigNotFoundError` when every level answers 404; any other error
        (after the client's retries) propagates — it never falls back past it.
        """
        pinned = git_commit_id or None
        lookups: tuple[tuple[Level, str | None, str | None, str | None], ...] = (
            (Level.SERVICE, stage, service, pinned),
            (Level.STAGE, stage, None, pinned),
            (Level.PROJECT, None, None, None),
        )
        tried = []
        for level, at_stage, at_service, commit in lookups:
            try:
                resource = await self._client.get_resource(
                    project, self._uri, stage=at_stage, service=at_service, git_commit_id=commit
                )
            except errors.KeptnNotFoundError as exc:
                tried.append(f"{level}: {exc.server_message or 'not found'}")
                continue
            return ConfigFile(
                content=resource.content,
                level=level,
                uri=self._uri,
                version=resource.version,
                project=project,
                stage=stage,
                service=service,
            )
        raise ConfigNotFoundError(
            f"unable to find job configuration {self._uri} for {project}/{stage}/{service} "
            f"(service, stage and project level: {'; '.join(tried)})",
            tried=tuple(tried),
        )

    async def fetch_files(
        self,
        project: str,
        stage: str,
        service: str,
        paths: list[str] | tuple[str, ...],
        into: Path,
        *,
        task: str = "",
        max_total_bytes: int | None = None,
    ) -> dict[str, int]:
        """Write the files of a task's ``files`` list under ``into`` (by their path relative to
        ``/keptn``), one at a time; their sizes by path.

        Each entry is one service-level file, or else a directory: every service-level resource
        whose URI starts with ``/<path>/``. An entry with neither raises :class:`FilesNotFoundError`;
        more than ``max_total_bytes`` in all (the ``/keptn`` volume) raises :class:`FilesTooBigError`.
        """
        sizes: dict[str, int] = {}
        listing: list[str] | None = None
        for path in paths:
            single = await self._single_file(project, stage, service, path)
            if single is not None:
                await _spool(into, path.strip("/"), single, sizes, max_total_bytes, task)
                continue
            if listing is None:
                listing = await self._client.list_resources(project, stage, service)
            prefix = "/" + path.strip("/") + "/"
            members = [uri for uri in listing if uri.startswith(prefix)]
            if not members:
                raise FilesNotFoundError(path=path, task=task)
            for uri in members:
                resource = await self._client.get_resource(project, uri, stage=stage, service=service)
                await _spool(into, uri.lstrip("/"), resource.content, sizes, max_total_bytes, task)
        return dict(sorted(sizes.items()))

    async def _single_file(self, project: str, stage: str, service: str, path: str) -> bytes | None:
        if not path.strip("/"):
            return None
        try:
            resource = await self._client.get_resource(project, path, stage=stage, service=service)
        except errors.KeptnNotFoundError:
            return None
        return resource.content


class FilesTooBigError(errors.JesError, errors.Permanent):
    """A task's files add up to more than its /keptn volume holds."""


async def _spool(
    into: Path, relative: str, content: bytes, sizes: dict[str, int], limit: int | None, task: str
) -> None:
    if limit is not None and sum(sizes.values()) + len(content) > limit:
        raise FilesTooBigError(
            f"the files of task {task!r} add up to more than {limit} bytes, the size of /keptn "
            "(JES_FILES_SIZE_LIMIT); raise it, or give the task fewer files"
        )
    target = into / relative
    if not target.resolve().is_relative_to(into.resolve()):
        raise FilesNotFoundError(path=relative, task=task)
    await asyncio.to_thread(_write, target, content)
    sizes[relative] = len(content)


def _write(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
