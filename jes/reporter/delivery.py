"""Delivering events to the control plane: it delivers and returns, it never records anything.

The event handler owns the claim and records each report as ``sending`` before it asks for a
delivery and as ``sent`` after; this module only talks to the control plane:

- :meth:`KeptnReporter.deliver` POSTs until the control plane accepts. Before *every* attempt it
  awaits the caller's ``fence`` (a conditional write of the claim: it raises
  :class:`jes.errors.ClaimLost` when another replica took the event over), so nothing is sent for
  a claim this process does not hold at that moment. A POST that may have arrived although its
  answer was lost is not repeated blindly: :meth:`settle` asks the datastore first.
- A non-retryable 4xx is an alarm, not a success: the answer is logged, counted, kept for
  ``/ready`` (:attr:`KeptnReporter.rejections`) and the POST is retried slowly until accepted.
- :meth:`settle` tells whether a report of ours is in the datastore. Keptn fills its datastore
  asynchronously (api-service → NATS → mongodb-datastore), so "not there" counts only once
  ``settle_s`` (``JES_DATASTORE_SETTLE_S``) have passed since the POST may have been accepted;
  when the datastore cannot be asked for that long, the answer is :attr:`Arrival.UNKNOWN` and the
  handler decides (docs/exactly-once.md). The control plane replaces event ids, so a report is
  recognised by type, triggeredid, source and ``data.jes.executor``.

:class:`PrintReporter` writes the events as JSON lines instead (``jes run``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TextIO

from jes import errors
from jes.clients.keptn import arrival, httperrors, wire
from jes.clients.keptn import client as keptn_client
from jes.util import retry

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Fence = Callable[[], Awaitable[None]]
#: Between attempts to deliver a report the control plane refused (a 4xx other than 401/403/429).
REJECTED_RETRY_S = 60.0


class Arrival(enum.StrEnum):
    ARRIVED = "arrived"
    """Accepted now, or found in the datastore."""
    MISSING = "missing"
    """Not in the datastore although its ingestion lag has passed: it did not arrive."""
    UNKNOWN = "unknown"
    """The datastore could not be asked for longer than its lag: nobody can tell."""


class EventSender(Protocol):
    """Sends one event: the control plane's ``POST /v1/event`` or, in NATS mode, a publish.

    Raises ``EventMaybeDeliveredError`` when it may have arrived although that is not confirmed,
    a :class:`jes.errors.Temporary` error when it certainly did not leave."""

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        backoff: retry.Backoff | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> str: ...


class Reporter(Protocol):
    async def deliver(self, event: dict[str, Any], *, fence: Fence) -> Arrival:
        """Send until accepted (ARRIVED), or UNKNOWN when a POST may have arrived and the datastore
        cannot tell. ``fence`` is awaited before every attempt."""
        ...

    async def settle(self, probe: Mapping[str, Any], *, since: float | None = None) -> Arrival:
        """Whether a report that may have been POSTed (at monotonic ``since``, or before now)
        arrived; waits out the datastore's lag before answering MISSING."""
        ...

    async def best_effort(self, event: dict[str, Any]) -> None:
        """Try to deliver once or twice; failures are logged and otherwise ignored."""
        ...

    async def error_log(self, entry: dict[str, Any]) -> None:
        """Post a uniform error log entry (the integration's page in the Bridge); best effort."""
        ...


class KeptnReporter:
    def __init__(
        self,
        client: keptn_client.KeptnClient,
        *,
        sender: EventSender | None = None,
        integration_id: Callable[[], str | None] = lambda: None,
        settle_s: float = 10.0,
        backoff: retry.Backoff = retry.UNTIL_ACCEPTED,
        rejected_retry_s: float = REJECTED_RETRY_S,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
        on_rejected: Callable[[str], None] | None = None,
        on_delivered: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._sender: EventSender = sender or client
        self._integration_id = integration_id
        self.settle_s = settle_s
        self._backoff = backoff
        self._rejected_retry_s = rejected_retry_s
        self._sleep = sleep
        self._clock = clock
        self._on_error = on_error or (lambda kind: None)
        self._on_rejected = on_rejected or (lambda kind: None)
        self._on_delivered = on_delivered or (lambda kind, seconds: None)
        self.rejections: dict[str, str] = {}
        """Reports the control plane refuses right now: what → its answer (for ``/ready``)."""

    # -- exactly-once reports ----------------------------------------------------------------------

    async def deliver(self, event: dict[str, Any], *, fence: Fence) -> Arrival:
        started = self._clock()
        delays = iter(self._backoff)
        attempt = 0
        what = _what(event)
        try:
            while True:
                attempt += 1
                try:
                    # the fence right before the request leaves (after waiting for a connection)
                    await self._sender.send_event(event, backoff=retry.Backoff(()), before=fence)
                except httperrors.EventMaybeDeliveredError as exc:
                    self._on_error("maybe_delivered")
                    logger.warning("%s: %s; asking the datastore whether it arrived", what, exc)
                    arrival = await self.settle(event, since=self._clock())
                    if arrival is not Arrival.MISSING:
                        return self._delivered(event, started) if arrival is Arrival.ARRIVED else arrival
                except (errors.Temporary, errors.KeptnAuthError) as exc:
                    self._on_error(_error_kind(exc))
                    delay = self._backoff.longest_s if isinstance(exc, errors.KeptnAuthError) else None
                    delay = max(delay or next(delays, self._backoff.longest_s), exc_retry_after(exc))
                    logger.warning("%s: attempt #%d failed (%s); retrying in %.1fs", what, attempt, exc, delay)
                    await self._sleep(delay)
                except errors.KeptnPermanentError as exc:
                    self._rejected(event, exc)
                    await self._sleep(self._rejected_retry_s)
                else:
                    return self._delivered(event, started)
        finally:
            self.rejections.pop(what, None)

    def _delivered(self, event: Mapping[str, Any], started: float) -> Arrival:
        self._on_delivered(_kind(event), self._clock() - started)
        return Arrival.ARRIVED

    def _rejected(self, event: Mapping[str, Any], exc: errors.KeptnPermanentError) -> None:
        what = _what(event)
        self._on_rejected(_kind(event))
        if what not in self.rejections:
            logger.error(
                "%s was REJECTED by the control plane: %s; the event stays open and jes retries every %.0fs",
                what,
                exc,
                self._rejected_retry_s,
            )
        self.rejections[what] = str(exc)

    async def settle(self, probe: Mapping[str, Any], *, since: float | None = None) -> Arrival:
        now = self._clock()
        deadline = (now if since is None else since) + self.settle_s
        unavailable_since: float | None = None
        delays = iter(self._backoff)
        while True:
            try:
                found = await self._in_datastore(probe)
            except (errors.KeptnError, errors.Temporary) as exc:
                now = self._clock()
                unavailable_since = now if unavailable_since is None else unavailable_since
                if now - unavailable_since >= self.settle_s and now >= deadline:
                    logger.warning("the datastore cannot tell whether %s arrived: %s", _what(probe), exc)
                    return Arrival.UNKNOWN
                self._on_error(_error_kind(exc))
                await self._sleep(min(next(delays, self._backoff.longest_s), max(self.settle_s / 4, 0.05)))
                continue
            if found:
                return Arrival.ARRIVED
            now = self._clock()
            if now >= deadline:
                return Arrival.MISSING
            unavailable_since = None
            await self._sleep(min(max(self.settle_s / 10, 0.05), 1.0, deadline - now))

    async def _in_datastore(self, probe: Mapping[str, Any]) -> bool:
        """Whether the datastore holds the report. Any error — a 404 too: the datastore answers an
        unknown context with an empty list, so a 404 means a wrong route — means it cannot tell."""
        return await arrival.delivered(
            self._client,
            keptn_context=str(probe.get("shkeptncontext", "")),
            event_type=str(probe.get("type", "")),
            triggered_id=str(probe.get("triggeredid", "")),
            source=str(probe.get("source", "")),
            marker=(probe.get("data") or {}).get("jes"),
            backoff=retry.Backoff(()),  # settle() paces the attempts itself
        )

    # -- best effort -------------------------------------------------------------------------------

    async def best_effort(self, event: dict[str, Any]) -> None:
        try:
            await self._sender.send_event(event, backoff=retry.Backoff((0.2,)))
        except errors.JesError as exc:
            self._on_error("best_effort")
            logger.info("%s was not accepted (%s); this report is optional", _what(event), exc)

    async def error_log(self, entry: dict[str, Any]) -> None:
        integration_id = self._integration_id()
        if not integration_id:
            logger.warning("not registered: error log entry only logged here: %s", entry.get("message"))
            return
        try:
            await self._client.post_logs([wire.LogEntry(**{**entry, "integrationid": integration_id})])
        except errors.JesError as exc:
            self._on_error("error_log")
            logger.warning("posting an error log entry failed: %s", exc)


class PrintReporter:
    """Writes every event as one JSON line (``jes run``); ``on_event`` also sees each (progress lines)."""

    def __init__(self, stream: TextIO, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self._on_event = on_event

    async def deliver(self, event: dict[str, Any], *, fence: Fence) -> Arrival:
        await fence()
        self._print(event)
        return Arrival.ARRIVED

    async def settle(self, probe: Mapping[str, Any], *, since: float | None = None) -> Arrival:
        return Arrival.MISSING  # nothing survives a jes run

    async def best_effort(self, event: dict[str, Any]) -> None:
        self._print(event)

    async def error_log(self, entry: dict[str, Any]) -> None:
        return None  # jes run prints the errored .finished itself; there is no integration page

    def _print(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.stream.flush()
        if self._on_event is not None:
            self._on_event(event)


def exc_retry_after(exc: BaseException) -> float:
    return getattr(exc, "retry_after_s", None) or 0.0


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
