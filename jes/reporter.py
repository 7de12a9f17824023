"""Delivering events: exactly once for ``.started``/``.finished``, best effort for the rest.

:class:`KeptnReporter` marks a report *sent* in the claim once the control plane accepted it, and
retries until it does. When a POST may have been accepted although the answer was lost (a dropped
connection, a gateway timeout), or a claim is resumed after a restart with a report not marked
sent, it asks the datastore whether the event arrived before sending it (again). The control
plane replaces event ids, so the check matches type, triggeredid, source and ``data.jes.executor``.

:class:`PrintReporter` writes the events as JSON lines instead (``jes run``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TextIO

from jes import errors, ledger, retry
from jes.keptn import client as keptn_client

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Reporter(Protocol):
    async def deliver(self, claim: ledger.Claim, key: str, event: dict[str, Any], *, persist: bool = True) -> None:
        """Deliver exactly once (per claim and key); with ``persist`` the claim is saved after."""
        ...

    async def delivered_before(self, claim: ledger.Claim, key: str, probe: dict[str, Any]) -> bool:
        """Whether a resumed claim's report had already been accepted (then it is marked sent)."""
        ...

    async def best_effort(self, event: dict[str, Any]) -> None:
        """Try to deliver; failures are logged and otherwise ignored."""
        ...

    async def error_log(self, entry: dict[str, Any]) -> None:
        """Post a uniform error log entry (the integration's page in the Bridge); best effort."""
        ...


class KeptnReporter:
    def __init__(
        self,
        client: keptn_client.KeptnClient,
        store: ledger.Ledger,
        *,
        integration_id: Callable[[], str | None] = lambda: None,
        check_delay_s: float = 2.0,
        backoff: retry.Backoff = retry.UNTIL_ACCEPTED,
        sleep: Sleep = asyncio.sleep,
        on_error: Callable[[str], None] | None = None,
        on_delivered: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._ledger = store
        self._integration_id = integration_id
        self._check_delay_s = check_delay_s
        self._backoff = backoff
        self._sleep = sleep
        self._on_error = on_error or (lambda kind: None)
        self._on_delivered = on_delivered or (lambda kind, seconds: None)

    async def deliver(self, claim: ledger.Claim, key: str, event: dict[str, Any], *, persist: bool = True) -> None:
        if claim.report_state(key) == ledger.SENT:
            return
        if not (claim.resumed and await self._arrived(event)):  # maybe POSTed just before a crash
            await self._send_until_accepted(event)
        claim.reports[key] = ledger.SENT
        if persist:
            await self._ledger.save(claim)

    async def delivered_before(self, claim: ledger.Claim, key: str, probe: dict[str, Any]) -> bool:
        """For a resumed claim: did the control plane accept this report before the restart?"""
        if claim.report_state(key) == ledger.SENT:
            return True
        if claim.resumed and await self._arrived(probe):
            claim.reports[key] = ledger.SENT
            return True
        return False

    async def _send_until_accepted(self, event: dict[str, Any]) -> None:
        started = time.monotonic()
        delays = iter(self._backoff)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._client.send_event(event, backoff=retry.Backoff(()))
                self._on_delivered(_kind(event), time.monotonic() - started)
                return
            except keptn_client.EventMaybeDeliveredError as exc:
                self._on_error("maybe_delivered")
                logger.warning("%s: %s; checking whether it arrived", _what(event), exc)
                await self._sleep(self._check_delay_s)
                if await self._arrived(event):
                    self._on_delivered(_kind(event), time.monotonic() - started)
                    return
            except (errors.Temporary, errors.KeptnAuthError) as exc:
                self._on_error(_error_kind(exc))
                delay = next(delays, self._backoff.longest_s)
                if isinstance(exc, errors.KeptnAuthError):
                    delay = self._backoff.longest_s
                retry_after = getattr(exc, "retry_after_s", None)
                delay = max(delay, retry_after or 0.0)
                logger.warning("%s: attempt #%d failed (%s); retrying in %.1fs", _what(event), attempt, exc, delay)
                await self._sleep(delay)
            except errors.KeptnPermanentError as exc:
                self._on_error("rejected")
                logger.error("%s was rejected by the control plane and is dropped: %s", _what(event), exc)
                return

    async def _arrived(self, event: Mapping[str, Any]) -> bool:
        """Whether the datastore holds this report; retried until the datastore answers."""
        delays = iter(self._backoff)
        while True:
            try:
                return await keptn_client.delivered(
                    self._client,
                    keptn_context=str(event.get("shkeptncontext", "")),
                    event_type=str(event.get("type", "")),
                    triggered_id=str(event.get("triggeredid", "")),
                    source=str(event.get("source", "")),
                    marker=event.get("data", {}).get("jes"),
                )
            except errors.KeptnNotFoundError:
                return False
            except (errors.Temporary, errors.KeptnAuthError) as exc:
                self._on_error(_error_kind(exc))
                delay = next(delays, self._backoff.longest_s)
                logger.warning("checking the datastore for %s failed (%s); retrying in %.1fs", _what(event), exc, delay)
                await self._sleep(delay)
            except errors.KeptnPermanentError as exc:
                logger.error("cannot check the datastore for %s (%s); sending it again", _what(event), exc)
                return False

    async def best_effort(self, event: dict[str, Any]) -> None:
        try:
            await self._client.send_event(event, backoff=retry.Backoff((0.2,)))
        except errors.JesError as exc:
            self._on_error("best_effort")
            logger.info("%s was not accepted (%s); this report is optional", _what(event), exc)

    async def error_log(self, entry: dict[str, Any]) -> None:
        integration_id = self._integration_id()
        if not integration_id:
            logger.warning("not registered: error log entry only logged here: %s", entry.get("message"))
            return
        try:
            await self._client.post_logs([keptn_client.LogEntry(**{**entry, "integrationid": integration_id})])
        except errors.JesError as exc:
            self._on_error("error_log")
            logger.warning("posting an error log entry failed: %s", exc)


class PrintReporter:
    """Writes every event as one JSON line (``jes run``); the claim still records what was sent."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.events: list[dict[str, Any]] = []

    async def deliver(self, claim: ledger.Claim, key: str, event: dict[str, Any], *, persist: bool = True) -> None:
        if claim.report_state(key) == ledger.SENT:
            return
        self._print(event)
        claim.reports[key] = ledger.SENT

    async def delivered_before(self, claim: ledger.Claim, key: str, probe: dict[str, Any]) -> bool:
        return claim.report_state(key) == ledger.SENT

    async def best_effort(self, event: dict[str, Any]) -> None:
        self._print(event)

    async def error_log(self, entry: dict[str, Any]) -> None:
        return None  # jes run prints the errored .finished itself; there is no integration page

    def _print(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.stream.flush()


def _kind(event: Mapping[str, Any]) -> str:
    event_type = str(event.get("type", ""))
    for kind in ("status.changed", "started", "finished"):
        if event_type.endswith("." + kind):
            return kind
    return "other"


def _what(event: Mapping[str, Any]) -> str:
    return f"{event.get('type')} for {event.get('triggeredid')}"


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, errors.KeptnAuthError):
        return "auth"
    status = getattr(exc, "status", None)
    if status == 429:
        return "rate_limited"
    if isinstance(status, int) and status >= 500:
        return "server"
    return "connection"
