"""Configs and task files from the local disk (``jes run``), with the control plane's semantics.

A resources folder stands in for a service's resources in the Keptn resource service: a
``files`` entry is first taken as one file (``<root>/<path>``), otherwise as a directory whose
files are all copied (``helm`` takes ``helm/values.yaml`` but not ``helm-abc``).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from jes import errors
from jes.matcher import config as cfg
from jes.models import EventInfo, RenderedTask


class FileConfig:
    """Always the same config file (already loaded)."""

    def __init__(self, loaded: cfg.LoadedConfig) -> None:
        self.loaded = loaded

    async def load(self, info: EventInfo) -> cfg.LoadedConfig:
        return self.loaded


def default_resources_root(config_path: str) -> Path:
    """``<root>/job/config.yaml`` → ``<root>``; any other config file → its own folder."""
    path = Path(config_path).resolve()
    if path.parent.name == "job":
        return path.parent.parent
    return path.parent


class DirectoryFiles:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    async def fetch(self, info: EventInfo, task: RenderedTask, into: Path) -> dict[str, int]:
        return await asyncio.to_thread(self._copy, task, into)

    def _copy(self, task: RenderedTask, into: Path) -> dict[str, int]:
        """Copy the task's files into ``into``, one at a time; their sizes by path."""
        sizes: dict[str, int] = {}
        for relative, source in self._sources(task):
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            sizes[relative] = target.stat().st_size
        return dict(sorted(sizes.items()))

    def _sources(self, task: RenderedTask) -> list[tuple[str, Path]]:
        root = self.root.resolve()
        found: list[tuple[str, Path]] = []
        for entry in task.files:
            relative = entry.strip("/")
            target = (root / relative).resolve()
            if not relative or not target.is_relative_to(root):
                raise errors.RunnerError(f"file {entry!r} of task {task.name!r} is outside the resources folder")
            if target.is_file():
                found.append((relative, target))
                continue
            members = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else []
            if not members:
                raise errors.RunnerError(
                    f"could not find file or directory {entry} for task {task.name} (looked in {self.root})"
                )
            found += [(member.relative_to(root).as_posix(), member) for member in members]
        return found
