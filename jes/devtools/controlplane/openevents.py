"""The open ``.triggered`` events (Keptn's ``<project>-triggeredEvents`` collections).

An event stays open from its ``.triggered`` until the shipyard-controller closes it; the polling
endpoint answers from here, due events of exactly the asked type, newest first.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(eq=False)
class OpenEvent:
    event: dict[str, Any]
    at: datetime
    seq: int
    project: str

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def type(self) -> str:
        return str(self.event["type"])


class OpenEvents:
    """The open ``.triggered`` events (Keptn's ``<project>-triggeredEvents`` collections)."""

    def __init__(self) -> None:
        self._by_id: dict[str, OpenEvent] = {}
        self._by_project_type: dict[tuple[str, str], dict[str, OpenEvent]] = defaultdict(dict)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, event: dict[str, Any], at: datetime, project: str) -> OpenEvent:
        entry = OpenEvent(event=event, at=at, seq=next(self._seq), project=project)
        self._by_id[entry.id] = entry
        self._by_project_type[(project, entry.type)][entry.id] = entry
        return entry

    def remove(self, event_id: str) -> None:
        entry = self._by_id.pop(event_id, None)
        if entry is not None:
            bucket = self._by_project_type[(entry.project, entry.type)]
            bucket.pop(event_id, None)
            if not bucket:
                del self._by_project_type[(entry.project, entry.type)]

    def query(
        self,
        event_type: str,
        *,
        project: str | None,
        stage: str | None,
        service: str | None,
        event_id: str | None,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Due events of exactly this type, newest first."""
        if event_id is not None:
            entry = self._by_id.get(event_id)
            candidates = [entry] if entry is not None else []
        elif project is not None:
            candidates = list(self._by_project_type.get((project, event_type), {}).values())
        else:
            candidates = [
                e for (_, t), bucket in self._by_project_type.items() if t == event_type for e in bucket.values()
            ]
        chosen = [
            e for e in candidates
            if e.type == event_type and e.at <= now
            and (project is None or e.project == project)
            and (stage is None or e.event["data"].get("stage") == stage)
            and (service is None or e.event["data"].get("service") == service)
        ]  # fmt: skip
        chosen.sort(key=lambda e: (e.at, e.seq), reverse=True)
        return [e.event for e in chosen]
