"""Queues of events that wait for a slot of an action's ``concurrency``, kept in the ledger.

One record per queue (see :func:`jes.models.queue_of`): the events of that queue in arrival
order — the order in which they joined it, which the record itself keeps, so every replica and
every restart sees the same order — each either *holding* a slot or *waiting*. Every change is a
compare-and-swap on the record's version (a Lease's ``resourceVersion``, a file's revision): of two
writers that read the same version, one wins and the other reads again.

Rules (:func:`admit`): while fewer than ``limit`` entries hold a slot, the first waiters are
promoted to holders — by whichever writer changes the record, so a waiter never depends on another
process to let it in. An entry belongs to an *event*, not to a replica: when a replica dies, the
replica that takes its claim over resumes the event, finds its entry and goes on holding (or
waiting at its place). An entry leaves the queue only when its event leaves it (its action is done)
or when its claim is seen done or gone (:meth:`Slots.stale`: an event that ended another way, e.g.
closed by Keptn meanwhile) — never because a replica looks dead.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from jes import errors
from jes.ledger.claim import Claim

#: Version of the persisted record; a record of another version is refused, not misread.
RECORD_VERSION = 1
#: A record shows this much of its queue's name (the key's value comes from the event: unbounded).
MAX_SHOWN_NAME_CHARS = 200


@dataclass
class Entry:
    event_id: str
    holding: bool = False


@dataclass
class Queue:
    """One queue as stored. ``version`` is the store's concurrency token ("" = not stored yet)."""

    name: str
    entries: list[Entry] = field(default_factory=list)
    version: str = ""

    def find(self, event_id: str) -> Entry | None:
        return next((e for e in self.entries if e.event_id == event_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "queue": self.name[:MAX_SHOWN_NAME_CHARS],  # for people; the key's value may be long
            "entries": [{"event": e.event_id, "holding": e.holding} for e in self.entries],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, name: str, text: str, *, version: str = "") -> Queue:
        """The record of queue ``name`` (stores find records by name). Raises
        :class:`errors.StateError` for a record that is not one of ours."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != RECORD_VERSION:
                raise ValueError(f"record version {data.get('v') if isinstance(data, dict) else None!r}")
            entries = [Entry(str(e["event"]), bool(e["holding"])) for e in data["entries"]]
            return cls(name, entries, version)
        except (KeyError, ValueError, TypeError) as exc:
            raise errors.StateError(f"unreadable concurrency queue record: {exc}") from exc


@dataclass(frozen=True)
class Standing:
    """Where one event stands in its queue."""

    holding: bool
    position: int
    """0 while holding a slot; else 1 + the number of waiters ahead (1: the next to run)."""
    checks: tuple[str, ...]
    """Whose claims this waiter checks when the queue stands still (:meth:`Slots.stale`): the first
    waiter checks the holders, every other waiter the waiter right ahead of it — so each entry is
    watched by someone, and the reads per check stay one per waiter (``limit`` for the first)."""
    version: str


def admit(queue: Queue, limit: int) -> None:
    """Promote the first waiters while fewer than ``limit`` entries hold a slot."""
    free = limit - sum(e.holding for e in queue.entries)
    for entry in queue.entries:
        if free <= 0:
            return
        if not entry.holding:
            entry.holding = True
            free -= 1


def standing(queue: Queue, event_id: str) -> Standing:
    entry = queue.find(event_id)
    if entry is None:
        raise errors.StateError(f"event {event_id} is not in its concurrency queue")  # (enter adds it)
    if entry.holding:
        return Standing(True, 0, (), queue.version)
    ahead = [e for e in queue.entries[: queue.entries.index(entry)] if not e.holding]
    checks = [ahead[-1].event_id] if ahead else [e.event_id for e in queue.entries if e.holding]
    return Standing(False, len(ahead) + 1, tuple(checks), queue.version)


class QueueStore(Protocol):
    """What a ledger offers for queues: compare-and-swap on one record per queue."""

    async def read_queue(self, name: str) -> Queue | None:
        """The record (None: no event in this queue)."""
        ...

    async def write_queue(self, queue: Queue) -> bool:
        """Store ``queue`` if its record is still at ``queue.version`` (absent for ""); sets the
        new version. False: someone changed it meanwhile (read again)."""
        ...

    async def delete_queue(self, queue: Queue) -> bool:
        """Delete the record if it is still at ``queue.version``; False: changed meanwhile."""
        ...

    async def read(self, event_id: str) -> Claim | None: ...


class Slots:
    """Joining, waiting in and leaving queues, by compare-and-swap on the ledger's records."""

    def __init__(self, store: QueueStore, *, attempts: int = 50) -> None:
        self.store = store
        self.attempts = attempts

    async def enter(self, name: str, event_id: str, limit: int, *, gone: Collection[str] = ()) -> Standing:
        """Join the queue (at its end), or find this event's place in it; drop the ``gone`` events
        and let waiters in while slots are free. Idempotent: a retried call changes nothing more."""
        for _ in range(self.attempts):
            queue = await self.store.read_queue(name) or Queue(name)
            before = queue.to_json()
            queue.entries = [e for e in queue.entries if e.event_id not in gone or e.event_id == event_id]
            if queue.find(event_id) is None:
                queue.entries.append(Entry(event_id))
            admit(queue, limit)
            if queue.to_json() == before or await self.store.write_queue(queue):
                return standing(queue, event_id)
        raise errors.StateError(f"the concurrency queue {name!r} changed {self.attempts} times while joining it")

    async def leave(self, name: str, event_id: str, limit: int) -> None:
        """Leave the queue (the action is done) and let the next waiters in."""
        for _ in range(self.attempts):
            queue = await self.store.read_queue(name)
            if queue is None or queue.find(event_id) is None:
                return
            queue.entries = [e for e in queue.entries if e.event_id != event_id]
            admit(queue, limit)
            written = await self.store.write_queue(queue) if queue.entries else await self.store.delete_queue(queue)
            if written:
                return
        raise errors.StateError(f"the concurrency queue {name!r} changed {self.attempts} times while leaving it")

    async def stale(self, event_ids: Collection[str]) -> list[str]:
        """Those of ``event_ids`` whose claim is done or gone: they will never leave by themselves."""
        found = []
        for event_id in event_ids:
            claim = await self.store.read(event_id)
            if claim is None or claim.done:
                found.append(event_id)
        return found
