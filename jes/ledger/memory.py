"""A ledger that forgets everything when the process ends (``jes run``, tests).

Claims are kept serialised, as a real store keeps them: a change the handler did not save is not
there when the claim is read back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

from jes.ledger.claim import Claim, on_record
from jes.ledger.slots import Queue


class MemoryLedger:
    def __init__(self, holder: str = "memory") -> None:
        self.holder = holder
        self.records: dict[str, str] = {}
        self._versions = 0
        self.queues: dict[str, tuple[str, str]] = {}
        """Concurrency queues: name → (record, version)."""

    def get(self, event_id: str) -> Claim | None:
        """The stored claim (tests)."""
        text = self.records.get(event_id)
        return Claim.loads(text) if text is not None else None

    async def maintain(self) -> None:
        """Nothing to keep alive (one process): waits until cancelled."""
        await asyncio.Event().wait()

    async def start(self) -> None:
        return None

    async def claim(self, claim: Claim) -> Claim | None:
        existing = self.get(claim.event_id)
        if existing is None:
            self._write(claim)
        return on_record(existing, claim)

    async def read(self, event_id: str) -> Claim | None:
        return self.get(event_id)

    async def save(self, claim: Claim) -> None:
        self._write(claim)

    def _write(self, claim: Claim) -> None:
        self._versions += 1
        claim.version = str(self._versions)
        self.records[claim.event_id] = claim.dumps()
        claim.saved_at = time.monotonic()

    async def release(self, claim: Claim, *, handover: bool = False) -> None:
        return None

    async def resumable(self, *, busy: Collection[str] = ()) -> list[Claim]:
        found = (self.get(event_id) for event_id in list(self.records) if event_id not in busy)
        return [c for c in found if c is not None and not c.done]

    async def done_claims(self) -> list[Claim]:
        found = (self.get(event_id) for event_id in list(self.records))
        return [c for c in found if c is not None and c.done]

    async def forget(self, claim: Claim) -> None:
        self.records.pop(claim.event_id, None)

    async def close(self, *, abandon: bool = False) -> None:
        return None

    # -- concurrency queues (:mod:`jes.ledger.slots`) ---------------------------------------------

    async def read_queue(self, name: str) -> Queue | None:
        stored = self.queues.get(name)
        return Queue.loads(name, stored[0], version=stored[1]) if stored is not None else None

    async def write_queue(self, queue: Queue) -> bool:
        if self.queues.get(queue.name, ("", ""))[1] != queue.version:
            return False
        self._versions += 1
        queue.version = str(self._versions)
        self.queues[queue.name] = (queue.dumps(), queue.version)
        return True

    async def delete_queue(self, queue: Queue) -> bool:
        if self.queues.get(queue.name, ("", ""))[1] != queue.version:
            return False
        self.queues.pop(queue.name, None)
        return True
