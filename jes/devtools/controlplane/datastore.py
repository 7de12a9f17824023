"""The mongodb-datastore: every event the control plane received or emitted, indexed.

Events are kept as the JSON dicts that were stored (never modified afterwards). Queries pick the
smallest matching index (context, triggered id, project + type, project, type) and filter the
rest, so asking for one context's events stays cheap however many events there are.

The same store serves two views: the control plane's own record of every event (at once, for
tests and the demo) and the datastore as Keptn's clients see it — fed asynchronously, so an event
becomes visible only at its ``visible_at`` (see :class:`IngestionModel`).
"""

from __future__ import annotations

import math
import pickle
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredEvent:
    """One event with its arrival order and time (the sort key, newest = largest)."""

    seq: int
    at: datetime
    event: dict[str, Any]
    visible_at: float = 0.0
    """Monotonic time from which the datastore's HTTP API shows it (``inf``: never, it was lost)."""

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
        return (
            (self.project is None or self.project == data.get("project"))
            and (self.stage is None or self.stage == data.get("stage"))
            and (self.service is None or self.service == data.get("service"))
            and (self.keptn_context is None or self.keptn_context == event.get("shkeptncontext"))
            and (self.type is None or self.type == event.get("type"))
            and (self.event_id is None or self.event_id == event.get("id"))
            and (self.source is None or self.source == event.get("source"))
            and (self.triggered_id is None or self.triggered_id == event.get("triggeredid"))
        )


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
        self._blobs: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, event: dict[str, Any], at: datetime, *, visible_at: float = 0.0) -> StoredEvent:
        stored = StoredEvent(seq=len(self._all), at=at, event=event, visible_at=visible_at)
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

    def copies(self, found: list[StoredEvent]) -> list[dict[str, Any]]:
        """Deep copies of the events, by unpickling: each is pickled once, when first copied (a
        stored event never changes), so a caller that reads the same events again and again (the
        benchmark, every second) pays half a copy each time."""
        copied = []
        for stored in found:
            blob = self._blobs.get(stored.seq)
            if blob is None:
                blob = self._blobs[stored.seq] = pickle.dumps(stored.event, pickle.HIGHEST_PROTOCOL)
            copied.append(pickle.loads(blob))
        return copied

    def query(self, query: EventQuery, *, visible_at: float | None = None) -> list[StoredEvent]:
        """Matching events, oldest first; with ``visible_at`` only those ingested by then."""
        candidates = self._candidates(query)
        if visible_at is not None:
            candidates = [s for s in candidates if s.visible_at <= visible_at]
        return [s for s in candidates if query.matches(s.event)]

    def newest_first(self, query: EventQuery, *, visible_at: float | None = None) -> list[StoredEvent]:
        return sorted(self.query(query, visible_at=visible_at), key=lambda s: s.sort_key, reverse=True)

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


class IngestionModel:
    """When an event reaches Keptn's datastore, as Keptn 1.x feeds it.

    The api-service publishes an accepted event on core NATS and answers; the mongodb-datastore,
    subscribed to ``sh.keptn.event.>`` with a plain queue subscription (no JetStream, no ack),
    stores it when it gets it (keptn/keptn 1.4.5: ``api/handlers/event.go``,
    ``mongodb-datastore/restapi/configure_mongodb_datastore.go``). So: an event shows up ``lag_s``
    after it was accepted; one published while the datastore is down is lost to it for good; other
    types (``sh.keptn.log.error``) are never stored. Times are real monotonic seconds, because
    clients wait in real time.
    """

    def __init__(self, lag_s: float = 0.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lag_s = lag_s
        self._clock = clock
        self._down: list[tuple[float, float]] = []
        self.lost = 0

    def now(self) -> float:
        return self._clock()

    def take_down(self, seconds: float) -> None:
        """The datastore is unavailable from now for ``seconds`` (``inf``: until :meth:`bring_up`)."""
        start = self._clock()
        self._down.append((start, start + seconds))

    def bring_up(self) -> None:
        now = self._clock()
        self._down = [(start, min(end, now)) for start, end in self._down]

    def is_down(self, at: float | None = None) -> bool:
        moment = self._clock() if at is None else at
        return any(start <= moment < end for start, end in self._down)

    def visible_at(self, event: dict[str, Any]) -> float:
        """When the datastore will show ``event``, accepted now (``inf``: never)."""
        if not str(event.get("type") or "").startswith("sh.keptn.event."):
            return math.inf
        arrival = self._clock() + self.lag_s
        if self.is_down(arrival):
            self.lost += 1
            return math.inf
        return arrival
