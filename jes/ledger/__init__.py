"""ledger: the durable record of which triggered events this executor took and how far it got.

Rule: the ledger stores and fences claims; it never decides what to do with them (the service's
event handler does, and is the only writer of a claim's content).

One :class:`~jes.ledger.claim.Claim` per taken event. Every write is conditional on the version
the writer read, so a write by a replica that lost the claim fails with
:class:`jes.errors.ClaimLost` — that failure is the fence that keeps a replica from reporting for
an event it no longer holds. A claim is taken over only when its holder has been seen making no
progress for the lease duration on the reader's own monotonic clock (:mod:`jes.ledger.liveness`).

Implementations: :class:`MemoryLedger` (``jes run``, tests), :class:`FileLedger` (the local
runner: ``JES_STATE_DIR``, one process) and :class:`jes.ledger.leases.LeaseLedger` (the kubernetes
runner: one Lease per event, shared by every replica).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from jes.ledger.claim import Claim, Delivery, Report, TaskRecord, TaskState
from jes.ledger.files import FileLedger
from jes.ledger.memory import MemoryLedger
from jes.ledger.slots import Queue
from jes.models import EventRef


class Ledger(Protocol):
    holder: str

    async def start(self) -> None: ...

    async def claim(self, claim: Claim) -> Claim | None:
        """Record a new claim and return it; when the event has a claim already, return that one
        if this process may work on it (its own, or taken over from a dead holder; then
        ``resumed`` is set), else None (done, or held by a live replica). The ledger does not
        know what is in progress in this process: the service runs one worker per event."""
        ...

    async def read(self, event_id: str) -> Claim | None:
        """The claim on record for an event, whoever holds it (None: none); never takes it."""
        ...

    async def save(self, claim: Claim) -> None:
        """Write the claim if nobody else changed it since it was read; else :class:`ClaimLost`."""
        ...

    async def release(self, claim: Claim, *, handover: bool = False) -> None:
        """Stop working on a claim in this process (it stays open for a later resume); with
        ``handover`` (a clean shutdown) other replicas may take it at once."""
        ...

    async def maintain(self) -> None:
        """Forever: keep this replica's liveness visible to the others (single-process ledgers just
        wait to be cancelled). The service runs it as a supervised task."""
        ...

    async def resumable(self, *, busy: Collection[str] = ()) -> list[Claim]:
        """Open claims this process should work on: its own, and those of holders seen dead
        (taken over) — without its own claims of the events in ``busy`` (those it is working on)."""
        ...

    async def done_claims(self) -> list[Claim]:
        """Every done claim of this executor (for retention)."""
        ...

    async def forget(self, claim: Claim) -> None:
        """Delete a done claim."""
        ...

    async def close(self, *, abandon: bool = False) -> None:
        """Release what the ledger holds; with ``abandon`` write nothing, as if the process had died
        (its claims and heartbeat stay as they are: tests of takeovers)."""
        ...

    # concurrency queues (:mod:`jes.ledger.slots`): compare-and-swap on one record per queue

    async def read_queue(self, name: str) -> Queue | None: ...

    async def write_queue(self, queue: Queue) -> bool: ...

    async def delete_queue(self, queue: Queue) -> bool: ...


__all__ = [
    "Claim",
    "Delivery",
    "EventRef",
    "FileLedger",
    "Ledger",
    "MemoryLedger",
    "Report",
    "TaskRecord",
    "TaskState",
]
