"""What is polled: the subscriptions as topics, their event filters, and the ids already delivered.

A filter dimension with exactly one allowed value goes to the server as a query parameter; the
others are applied here, both the subscription's filters and ``PROJECT_FILTER``/``STAGE_FILTER``/
``SERVICE_FILTER``. An open ``.triggered`` event is returned by every poll until its task
completes, so delivered ids are remembered (:class:`SeenIds`) until the server stops returning them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jes.clients.keptn import wire
from jes.settings import Settings

# ---------------------------------------------------------------------------------------------
# Filters


def _combine(*lists: tuple[str, ...]) -> frozenset[str] | None:
    """The values allowed by every non-empty list; None when no list restricts."""
    allowed: frozenset[str] | None = None
    for values in lists:
        if values:
            allowed = frozenset(values) if allowed is None else allowed & frozenset(values)
    return allowed


@dataclass(frozen=True)
class EventFilter:
    """Allowed projects/stages/services; ``None`` allows every value of that dimension."""

    projects: frozenset[str] | None = None
    stages: frozenset[str] | None = None
    services: frozenset[str] | None = None

    @classmethod
    def of(cls, subscription: wire.SubscriptionFilter, settings: Settings) -> EventFilter:
        """The subscription's filter narrowed by PROJECT_FILTER/STAGE_FILTER/SERVICE_FILTER."""
        return cls(
            projects=_combine(subscription.projects, settings.project_filter),
            stages=_combine(subscription.stages, settings.stage_filter),
            services=_combine(subscription.services, settings.service_filter),
        )

    def _dimensions(self) -> tuple[tuple[str, frozenset[str] | None], ...]:
        return (("project", self.projects), ("stage", self.stages), ("service", self.services))

    @property
    def impossible(self) -> bool:
        """No event can match (the lists had nothing in common)."""
        return any(allowed is not None and not allowed for _, allowed in self._dimensions())

    def query(self) -> dict[str, str]:
        """Query parameters for the dimensions that allow exactly one value."""
        return {name: next(iter(allowed)) for name, allowed in self._dimensions() if allowed and len(allowed) == 1}

    def matches(self, event: Mapping[str, Any]) -> bool:
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        return all(allowed is None or data.get(name) in allowed for name, allowed in self._dimensions())


# ---------------------------------------------------------------------------------------------
# Topics and remembered ids


@dataclass(frozen=True)
class Topic:
    """One subscription being polled."""

    key: str
    """Stable within one registration: the subscription id (or the event type without one)."""
    subscription_id: str
    event: str
    filter: wire.SubscriptionFilter = field(default_factory=wire.SubscriptionFilter)


def topics_of(subscriptions: tuple[wire.Subscription, ...]) -> dict[str, Topic]:
    topics: dict[str, Topic] = {}
    for index, sub in enumerate(subscriptions):
        if not sub.event:
            continue
        key = sub.id or f"{sub.event}#{index}"
        topics[key] = Topic(key=key, subscription_id=sub.id, event=sub.event, filter=sub.filter)
    return topics


class SeenIds:
    """Delivered event ids of one event type with when the server last returned them."""

    def __init__(self, *, cap: int) -> None:
        self._last_returned: OrderedDict[str, float] = OrderedDict()
        self._cap = cap
        self.evicted = 0

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._last_returned

    def __len__(self) -> int:
        return len(self._last_returned)

    def touch(self, event_id: str, now: float) -> None:
        """Remember (or refresh) an id as returned by the server at ``now``."""
        self._last_returned[event_id] = now
        self._last_returned.move_to_end(event_id)
        while len(self._last_returned) > self._cap:
            self._last_returned.popitem(last=False)
            self.evicted += 1

    def discard(self, event_id: str) -> None:
        self._last_returned.pop(event_id, None)

    def forget_older_than(self, cutoff: float) -> int:
        """Drop ids not returned since ``cutoff``; how many were dropped."""
        dropped = 0
        while self._last_returned:
            event_id, last = next(iter(self._last_returned.items()))
            if last >= cutoff:
                break
            del self._last_returned[event_id]
            dropped += 1
        return dropped
