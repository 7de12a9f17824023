"""Cancellation: the work of an event whose sequence was aborted in Keptn is stopped.

Keptn has no cancel event. Aborting a sequence (``POST /controlPlane/v1/sequence/{project}/
{keptnContext}/control`` with ``{"state": "abort"}``, ``keptn abort sequence``, the Bridge) makes
the shipyard-controller delete the open ``.triggered`` event of the sequence's current task from
its own triggered-event collection and finish the sequence itself with a ``.finished`` of status
``aborted``, result ``pass`` (``cancelSequence`` and ``forceTaskSequenceCompletion`` in
shipyard-controller/internal/controller/shipyardcontroller.go). A ``.finished`` sent afterwards for
the task is stored but ignored (``handleTaskEvent``: no matching ``.triggered`` event).

So jes asks, every ``JES_CANCEL_CHECK_S``, for each event whose tasks run in this process, whether
``GET /controlPlane/v1/event/triggered/{type}?eventID=`` still lists it (:class:`CancelChecker`).
That is the shipyard-controller's own collection, not the asynchronous datastore, and the
``eventID`` filter answers with at most one event, so Keptn's page-2 bug cannot hide it. Only a
definite answer cancels — a 200 listing that does not contain the event, given twice in a row
(the second request at once: a single odd answer of a proxy or a restarting control plane does not
stop a task, and the confirmation costs no check interval). An error, a timeout or an answer that
cannot be read keeps the task running. The handler then stops the running task (the Job deleted,
the local process group killed), starts no further task, sends nothing more, and records the claim
done and cancelled (:mod:`jes.service.handler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from jes.clients.keptn import client as keptn_client
from jes.ledger import EventRef
from jes.util import flag, retry

logger = logging.getLogger(__name__)

#: One check request may take this long; then the answer counts as unknown (the task runs on).
CHECK_TIMEOUT_S = 10.0
#: Checks of different events at once.
CHECK_CONCURRENCY = 8
_ONCE = retry.Backoff(())


@dataclass
class _Watch:
    ref: EventRef
    aborted: flag.Flag = field(default_factory=flag.Flag)


class RunningEvents:
    """The events whose tasks run in this process, and which of them were aborted."""

    def __init__(self) -> None:
        self._watches: dict[str, _Watch] = {}

    def watching(self, ref: EventRef) -> contextlib.AbstractContextManager[flag.Flag]:
        """Watch ``ref`` while the block runs; the flag is set when its sequence was aborted."""
        return _Watching(self, ref)

    def unwatch(self, event_id: str) -> None:
        """Stop watching (before the ``.finished`` that closes the event is sent)."""
        self._watches.pop(event_id, None)

    def signal(self, event_id: str) -> flag.Flag | None:
        watch = self._watches.get(event_id)
        return watch.aborted if watch is not None else None

    def aborted(self, event_id: str) -> bool:
        watch = self._watches.get(event_id)
        return watch is not None and watch.aborted.is_set()

    def refs(self) -> list[EventRef]:
        return [w.ref for w in self._watches.values() if not w.aborted.is_set()]

    def abort(self, event_id: str) -> bool:
        watch = self._watches.get(event_id)
        if watch is None:
            return False
        watch.aborted.set()
        return True


class OpenCheck(Protocol):
    async def is_open(self, ref: EventRef) -> bool | None:
        """Whether the control plane still lists the triggered event; None: no definite answer."""
        ...


class ControlPlaneOpenCheck:
    """One ``GET …/event/triggered/{type}?eventID=`` per question, no retries, a timeout."""

    def __init__(self, client: keptn_client.KeptnClient, *, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def is_open(self, ref: EventRef) -> bool | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                # with the project: Keptn then answers a database error with 500; without it, it
                # loops over every project and drops failed ones (GetAllTriggeredEvents), an empty 200
                found = await self._client.get_triggered(
                    ref.type, project=ref.project or None, event_id=ref.id, backoff=_ONCE
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure is "no answer": the task runs on
            logger.warning("cannot check whether event %s is still open (the task runs on): %s", ref.id,
                           str(exc) or type(exc).__name__)  # fmt: skip
            return None
        return any(e.get("id") == ref.id for e in found)


class CancelChecker:
    """Checks the running events every ``interval_s`` and aborts those Keptn no longer lists."""

    def __init__(
        self,
        running: RunningEvents,
        check: OpenCheck,
        *,
        interval_s: float,
        sleep: retry.Sleep = asyncio.sleep,
    ) -> None:
        self._running = running
        self._check = check
        self.interval_s = interval_s
        self._sleep = sleep
        self._slots = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def run_forever(self) -> None:
        while True:
            await self._sleep(self.interval_s)
            await self.check_once()

    async def check_once(self) -> list[str]:
        """Check every running event once; the ids of those aborted now."""
        refs = self._running.refs()
        gone = await self._all_gone(refs)
        aborted = []
        for ref, is_gone in zip(refs, gone, strict=True):
            if is_gone and self._running.abort(ref.id):
                logger.info("event %s (context %s) is no longer open in Keptn: its sequence was aborted; "
                            "stopping its work", ref.id, ref.keptn_context)  # fmt: skip
                aborted.append(ref.id)
        return aborted

    async def _all_gone(self, refs: list[EventRef]) -> list[bool]:
        """Whether each event is gone, asked by :data:`CHECK_CONCURRENCY` workers: with ten thousand
        events running, a task per event at once was a peak of tens of megabytes every interval."""
        gone = [False] * len(refs)
        pending = iter(enumerate(refs))

        async def worker() -> None:
            for index, ref in pending:
                gone[index] = await self._gone(ref)

        await asyncio.gather(*(worker() for _ in range(min(CHECK_CONCURRENCY, len(refs)))))
        return gone

    async def _gone(self, ref: EventRef) -> bool:
        async with self._slots:
            if await self._check.is_open(ref) is not False:
                return False
            return await self._check.is_open(ref) is False  # confirmed at once


def checker(running: RunningEvents, client: keptn_client.KeptnClient, interval_s: float) -> CancelChecker:
    """The service's checker: the control plane's triggered-events list, every ``interval_s``."""
    return CancelChecker(running, ControlPlaneOpenCheck(client), interval_s=interval_s)


class _Watching:
    """:meth:`RunningEvents.watching`'s block (no generator frame kept per running event)."""

    __slots__ = ("_events", "_ref")

    def __init__(self, events: RunningEvents, ref: EventRef) -> None:
        self._events = events
        self._ref = ref

    def __enter__(self) -> flag.Flag:
        return self._events._watches.setdefault(self._ref.id, _Watch(self._ref)).aborted

    def __exit__(self, *exc: object) -> None:
        self._events.unwatch(self._ref.id)
