"""The mongodb-datastore: every event the control plane received or emitted, indexed.

Events are kept as the JSON dicts that were stored (never modified afterwards). Queries pick the
smallest matching index (context, triggered id, project + type, project, type) and filter the
rest, so asking for one context's events stays cheap however many events there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredEvent:
    """One event with its arrival order and time (the sort key, newest = largest)."""

    seq: int
    at: datetime
    event: dict[str, Any]

    @property
    def sort_key(self) -> tuple[datetime, int]:
        return (self.at, self.seq)


@dataclass(frozen=True)
class EventQuery:
    """Filters of ``GET /mongodb-datastore/event`` (and of the Python API); ``None`` = any."""

    project: str | None = None
    keptn_context: str | None = None
    type: str | None = None
    stage: str | None = None
    service: str | None = None
    event_id: str | None = None
    source: str | None = None
    triggered_id: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        checks = (
            (self.project, data.get("project")),
            (self.stage, data.get("stage")),
            (self.service, data.get("service")),
            (self.keptn_context, event.get("shkeptncontext")),
            (self.type, event.get("type")),
            (self.event_id, event.get("id")),
            (self.source, event.get("source")),
            (self.triggered_id, event.get("triggeredid")),
        )
        return all(wanted is None or wanted == actual for wanted, actual in checks)


class EventStore:
    """All events, oldest first, with indexes; not thread-safe (the state's lock guards it)."""

    def __init__(self) -> None:
        self._all: list[StoredEvent] = []
        self._by_context: dict[str, list[StoredEvent]] = defaultdict(list)
        self._by_triggered_id: dict[str, list[StoredEvent]] = defaultdict(list)
        self._by_project_type: dict[tuple[str, str], list[StoredEvent]] = defaultdict(list)
        self._by_project: dict[str, list[StoredEvent]] = defaultdict(list)
        self._by_type: dict[str, list[StoredEvent]] = defaultdict(list)
        self._by_id: dict[str, list[StoredEvent]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._all)

    def add(self, event: dict[str, Any], at: datetime) -> StoredEvent:
        stored = StoredEvent(seq=len(self._all), at=at, event=event)
        self._all.append(stored)
        data = event.get("data")
        project = data.get("project") if isinstance(data, dict) else None
        etype = event.get("type")
        for index, key in (
            (self._by_context, event.get("shkeptncontext")),
            (self._by_triggered_id, event.get("triggeredid")),
            (self._by_project, project),
            (self._by_type, etype),
            (self._by_id, event.get("id")),
        ):
            if isinstance(key, str) and key:
                index[key].append(stored)
        if isinstance(project, str) and isinstance(etype, str):
            self._by_project_type[(project, etype)].append(stored)
        return stored

    def query(self, query: EventQuery) -> list[StoredEvent]:
        """Matching events, oldest first."""
        candidates = self._candidates(query)
        return [s for s in candidates if query.matches(s.event)]

    def newest_first(self, query: EventQuery) -> list[StoredEvent]:
        return sorted(self.query(query), key=lambda s: s.sort_key, reverse=True)

    def _candidates(self, query: EventQuery) -> Iterable[StoredEvent]:
        if query.event_id is not None:
            return self._by_id.get(query.event_id, [])
        if query.keptn_context is not None:
            return self._by_context.get(query.keptn_context, [])
        if query.triggered_id is not None:
            return self._by_triggered_id.get(query.triggered_id, [])
        if query.project is not None and query.type is not None:
            return self._by_project_type.get((query.project, query.type), [])
        if query.project is not None:
            return self._by_project.get(query.project, [])
        if query.type is not None:
            return self._by_type.get(query.type, [])
        return self._all
