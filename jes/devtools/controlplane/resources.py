"""The resource-service's storage: a git-like history of files per project.

Every project has a default branch (project-level resources, ``branch=None``) and one branch per
stage (stage-level resources, and service-level ones under the service's name). Each write makes
a commit holding a full snapshot, so a commit id reads a file as it was — the way Keptn pins
``job/config.yaml`` to an event's ``gitcommitid``. Like git, a commit id is looked up in the whole
project, whatever branch it belongs to.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

#: A file's place on a branch: (service name, or "" for the branch level; resource URI).
Key = tuple[str, str]


@dataclass(frozen=True)
class Commit:
    id: str
    branch: str | None
    files: Mapping[Key, bytes]
    at: datetime


class ResourceStore:
    """Branches and commits of every project; not thread-safe (the state's lock guards it)."""

    def __init__(self) -> None:
        self._branches: dict[tuple[str, str | None], list[Commit]] = {}
        self._commits: dict[tuple[str, str], Commit] = {}
        self._counter = itertools.count(1)

    def create_branch(self, project: str, branch: str | None, at: datetime) -> Commit:
        """An empty branch with its first commit (an existing branch is left alone)."""
        if (project, branch) in self._branches:
            return self.head(project, branch)
        self._branches[(project, branch)] = []
        return self._commit(project, branch, {}, at)

    def head(self, project: str, branch: str | None) -> Commit:
        return self._branches[(project, branch)][-1]

    def write(self, project: str, branch: str | None, changes: Mapping[Key, bytes | None], at: datetime) -> Commit:
        """Commit ``changes`` (``None`` deletes a file) on top of the branch head."""
        files = dict(self.head(project, branch).files)
        for key, content in changes.items():
            if content is None:
                files.pop(key, None)
            else:
                files[key] = content
        return self._commit(project, branch, files, at)

    def read(
        self, project: str, branch: str | None, key: Key, commit_id: str | None = None
    ) -> tuple[bytes, Commit] | None:
        """A file at the branch head, or at ``commit_id``; ``None`` when it does not exist there."""
        if commit_id:
            commit = self._commits.get((project, commit_id))
        else:
            commit = self.head(project, branch)
        if commit is None or key not in commit.files:
            return None
        return commit.files[key], commit

    def list(self, project: str, branch: str | None, service: str) -> tuple[list[str], Commit]:
        """The URIs of one level (sorted) and the branch head."""
        head = self.head(project, branch)
        return sorted(uri for svc, uri in head.files if svc == service), head

    def drop_project(self, project: str) -> None:
        for key in [k for k in self._branches if k[0] == project]:
            del self._branches[key]
        for ckey in [k for k in self._commits if k[0] == project]:
            del self._commits[ckey]

    def _commit(self, project: str, branch: str | None, files: dict[Key, bytes], at: datetime) -> Commit:
        seed = f"{project}\n{branch}\n{next(self._counter)}\n{at.isoformat()}".encode()
        commit = Commit(id=hashlib.sha1(seed).hexdigest(), branch=branch, files=files, at=at)
        self._branches[(project, branch)].append(commit)
        self._commits[(project, commit.id)] = commit
        return commit
