"""The reports of a claimed event, delivered exactly once (docs/exactly-once.md).

``sending`` is on record in the claim before each POST and ``sent`` after it; every POST is
preceded by a conditional write of the claim no older than the ledger's ``fence_s`` (the fence),
so a replica that lost the claim learns it (:class:`jes.errors.ClaimLost`) before sending. A
claim read back after a restart knows which reports may have been sent: only those are looked up
in the datastore, after its ingestion lag; when the datastore cannot tell, the lesser harm is
chosen (:meth:`ClaimReports._decide_unknown`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jes import ledger
from jes.ledger import Claim, Delivery, Report
from jes.reporter import events
from jes.reporter.delivery import Arrival, Reporter
from jes.service.metrics import Metrics
from jes.service.ports import EventGone, TriggeredEvents
from jes.util import gates

logger = logging.getLogger(__name__)


@dataclass
class ClaimReports:
    """Delivers a claim's ``.started`` and ``.finished`` (the handler decides what they say)."""

    store: ledger.Ledger
    reporter: Reporter
    triggered: TriggeredEvents
    identity: events.Identity
    fence_s: float | None = None
    """How long a write of the claim proves that this process holds it (None: always — one process)."""
    monotonic: Callable[[], float] = time.monotonic
    metrics: Metrics | None = None

    async def deliver(
        self,
        claim: Claim,
        report: Report,
        event: dict[str, Any],
        *,
        before_post: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Exactly once: ``sending`` is on record before the POST, ``sent`` after it. ``before_post``
        is awaited between the two (what must be out before this report, done while it is recorded).
        A ``.finished`` is delivered :data:`~jes.util.gates.URGENT`: its claim write and its POST go
        before the requests of events not as far (the complete -> .finished latency)."""
        with gates.urgent(gates.URGENT) if report is Report.FINISHED else contextlib.nullcontext():
            await self._deliver(claim, report, event, before_post)

    async def _deliver(
        self, claim: Claim, report: Report, event: dict[str, Any], before_post: Callable[[], Awaitable[object]] | None
    ) -> None:
        state = claim.delivery(report)
        if state is Delivery.SENT:
            return
        if state is Delivery.SENDING and claim.resumed and report not in claim.checked:
            claim.checked |= {report}  # a POST before the restart may have arrived
            if await self.settle(claim, report) is Arrival.ARRIVED:
                claim.reports[report] = Delivery.SENT
                return
        if state is not Delivery.SENDING:
            claim.reports[report] = Delivery.SENDING
            await self.store.save(claim)  # the record before the POST, and its fence
        if before_post is not None:
            await before_post()
        while await self.reporter.deliver(event, fence=lambda: self.fence(claim)) is not Arrival.ARRIVED:
            decided = await self._decide_unknown(claim, report)
            if decided is None:  # wait until the datastore can tell (a second .started would hang)
                decided = await self.settle(claim, report)
            if decided is Arrival.ARRIVED:
                break
        claim.reports[report] = Delivery.SENT  # saved with the next step's write

    async def fence(self, claim: Claim) -> None:
        """Prove the claim is still ours right before a POST: a conditional write, unless the last
        one is recent enough that no replica can have taken the claim over since."""
        if self.fence_s is not None and self.monotonic() - claim.saved_at >= self.fence_s:
            await self.store.save(claim)

    async def settle(self, claim: Claim, report: Report) -> Arrival:
        """Whether a report that may have been POSTed arrived; never UNKNOWN (see _decide_unknown)."""
        probe = events.probe_ref(claim.ref, self.identity, report.value)
        while True:
            arrival = await self.reporter.settle(probe)
            if arrival is not Arrival.UNKNOWN:
                return arrival
            decided = await self._decide_unknown(claim, report)
            if decided is not None:
                return decided

    async def _decide_unknown(self, claim: Claim, report: Report) -> Arrival | None:
        """The datastore cannot tell whether a report arrived; the lesser harm (docs/exactly-once.md):

        - the control plane no longer lists the event: a ``.finished`` counts as arrived (ours or an
          abort closed it); for a ``.started`` the event is gone (EventGone);
        - it still lists the event: a ``.finished`` is sent again (once a task is complete, Keptn
          ignores further .finished events; a lost one would hang the sequence forever); a
          ``.started`` waits for the datastore (None): sending a second one would hang the
          sequence, and if the first never arrived Keptn times the task out visibly.
        """
        open_event = await self.triggered.fetch(claim.ref)
        decision: str
        result: Arrival | None
        if open_event is None:
            if report is not Report.FINISHED:
                self._count_uncertain(report, "gone")
                raise EventGone("the control plane no longer lists it")
            decision, result = "closed", Arrival.ARRIVED
        elif report is Report.FINISHED:
            decision, result = "resent", Arrival.MISSING
        else:
            decision, result = "waited", None
        self._count_uncertain(report, decision)
        logger.warning("whether %s for %s arrived is unknown: %s", report.value, claim.event_id, decision)
        return result

    def _count_uncertain(self, report: Report, decision: str) -> None:
        if self.metrics:
            self.metrics.reports_uncertain.labels(report.value, decision).inc()
