"""Done claims: kept while the control plane lists their event, forgotten ``JES_DONE_RETENTION_S``
after it stopped listing it (a poll would otherwise offer a finished event again)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from jes import errors, ledger
from jes import settings as jes_settings
from jes.clients.keptn import client as keptn_client
from jes.service.metrics import Metrics


class DoneClaims:
    def __init__(
        self,
        store: ledger.Ledger,
        client: keptn_client.KeptnClient,
        settings: jes_settings.Settings,
        metrics: Metrics,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client
        self.metrics = metrics
        self._retention_s = settings.done_retention_s
        self._wall_clock = wall_clock

    async def expire_done_claims(self) -> None:
        """Forget a done claim ``JES_DONE_RETENTION_S`` after its event stopped being listed.

        While the control plane lists the event (another integration holds it open, or Keptn has
        not processed our .finished yet), a poll would offer it again: the claim keeps it done."""
        now = self._wall_clock()
        claims = await self.store.done_claims()
        listed = await self._listed_ids({c.ref.type for c in claims if c.unlisted_at is None})
        for claim in claims:
            if claim.unlisted_at is None:
                still = listed.get(claim.ref.type)
                if claim.event_id in (still or ()) or (still is None and await self._listed(claim)):
                    continue
                claim.unlisted_at = now
                with contextlib.suppress(errors.StateError):
                    await self.store.save(claim)
            elif now - claim.unlisted_at >= self._retention_s:
                await self.store.forget(claim)
                self.metrics.claims_forgotten.inc()

    async def _listed(self, claim: ledger.Claim) -> bool:
        found = await self.client.get_triggered(claim.ref.type, event_id=claim.event_id)  # a few quick retries
        return any(e.get("id") == claim.event_id for e in found)

    async def _listed_ids(self, event_types: set[str]) -> dict[str, set[str] | None]:
        """The ids the control plane lists per event type (one request each); None where the list
        may be incomplete (as many as one page holds), so each claim is asked about on its own."""
        listed: dict[str, set[str] | None] = {}
        for event_type in event_types:
            found = await self.client.get_triggered(event_type)
            complete = len(found) < keptn_client.MAX_TRIGGERED_PAGE_SIZE
            listed[event_type] = {str(e.get("id")) for e in found} if complete else None
        return listed
