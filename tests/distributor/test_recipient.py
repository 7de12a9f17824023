"""The recipient's side: the CloudEvent it gets, the subscription id in temporaryData, attempts
inside the deadline, redelivery (NATS mode) and the error log's entries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from jes.clients.keptn import wire
from jes.distributor import recipient, redelivery
from tests.distributor.support import RecordingRecipient

KEPTN_EVENT = {
    "id": "e-1", "type": "sh.keptn.event.test.triggered", "source": "shipyard-controller", "specversion": "1.0",
    "time": "2024-01-01T00:00:00.000Z", "contenttype": "application/json", "shkeptncontext": "ctx",
    "shkeptnspecversion": "0.2.4", "data": {"project": "p", "stage": "s", "service": "svc"}, "custom": "dropped",
}  # fmt: skip


def test_the_cloud_event_is_structured_with_every_keptn_extension() -> None:
    event = recipient.cloud_event(KEPTN_EVENT, "sub-1")
    assert event == {
        "specversion": "1.0", "id": "e-1", "source": "shipyard-controller", "type": "sh.keptn.event.test.triggered",
        "time": "2024-01-01T00:00:00.000Z", "datacontenttype": "application/json", "shkeptncontext": "ctx",
        "triggeredid": "", "gitcommitid": "", "shkeptnspecversion": "0.2.4",
        "data": {"project": "p", "stage": "s", "service": "svc", "temporaryData": {"distributor": {"subscriptionID": "sub-1"}}},
    }  # fmt: skip
    assert "temporaryData" not in recipient.cloud_event(KEPTN_EVENT)["data"]  # no subscription matched


def test_the_subscription_id_joins_temporary_data_that_is_there_already() -> None:
    """(The distributor adds nothing when temporaryData exists without a distributor key.)"""
    data = {"temporaryData": {"other": {"x": 1}}}
    assert recipient.with_subscription(data, "s") == {"temporaryData": {"other": {"x": 1}, "distributor": {"subscriptionID": "s"}}}
    stale = {"temporaryData": {"distributor": {"subscriptionID": "old"}}}
    assert recipient.with_subscription(stale, "new")["temporaryData"]["distributor"] == {"subscriptionID": "new"}
    assert data == {"temporaryData": {"other": {"x": 1}}}  # the event itself is not changed


async def test_attempts_stop_at_the_deadline() -> None:
    with RecordingRecipient(statuses=[503] * 10, delay_s=0.3) as server:
        async with httpx.AsyncClient() as http:
            sender = recipient.Recipient(f"http://127.0.0.1:{server.port}", http, deadline_s=0.5, backoff_s=(0.05,))
            started = time.monotonic()
            assert not await sender.post(KEPTN_EVENT, "")
            assert time.monotonic() - started < 2.0  # 10 attempts would take 3 s
        assert len(server.received) == 2 and sender.stats.failed == 1


async def test_an_unreachable_recipient_costs_four_attempts() -> None:
    async with httpx.AsyncClient() as http:
        sender = recipient.Recipient("http://127.0.0.1:9", http, backoff_s=(0.01, 0.01, 0.01))
        assert not await sender.post(KEPTN_EVENT, "")
        assert sender.stats.attempts == 4


async def test_redelivery_lets_go_of_an_event_no_longer_open() -> None:
    delivered: list[str] = []

    async def deliver(event: Any, subscription_id: str) -> bool:
        delivered.append(subscription_id)
        return False

    async def closed(event: Any) -> bool:
        return False

    again = redelivery.Redelivery(deliver, window_s=5, still_open=closed, delays_s=(0.01,))
    again.park(KEPTN_EVENT, "sub")
    await asyncio.sleep(0.1)
    assert again.parked == 0 and delivered == [] and again.dropped == 0


async def test_redelivery_gives_up_after_its_window() -> None:
    attempts: list[str] = []

    async def deliver(event: Any, subscription_id: str) -> bool:
        attempts.append(subscription_id)
        return False

    async def unknown(event: Any) -> None:
        return None

    now = [0.0]

    async def sleep(seconds: float) -> None:  # the window passes on this clock, whatever the load
        now[0] += seconds
        await asyncio.sleep(0)

    again = redelivery.Redelivery(
        deliver, window_s=0.2, still_open=unknown, delays_s=(0.05,), sleep=sleep, clock=lambda: now[0]
    )
    again.park({**KEPTN_EVENT, "type": "sh.keptn.event.test.finished"}, "sub")
    for _ in range(10_000):
        if again.parked == 0:
            break
        await asyncio.sleep(0.001)
    assert again.parked == 0 and again.dropped == 1 and 2 <= len(attempts) <= 4
    assert now[0] < 0.2, "given up before the window would have passed"
    off = redelivery.Redelivery(deliver, window_s=0, still_open=unknown)
    off.park(KEPTN_EVENT, "sub")
    assert off.parked == 0 and off.dropped == 1


def test_recently_forwarded_forgets_after_its_window() -> None:
    now = [0.0]
    recent = redelivery.RecentlyForwarded(10.0, clock=lambda: now[0])
    assert recent.first_time("s", "e") and not recent.first_time("s", "e") and recent.first_time("t", "e")
    now[0] = 10.5
    assert recent.first_time("s", "e")


def test_error_log_entries() -> None:
    finished = {"type": "sh.keptn.event.deploy.finished", "shkeptncontext": "c", "triggeredid": "t",
                "data": {"status": "errored", "message": "boom"}}  # fmt: skip
    entry = wire.log_entry_for(finished)
    assert entry is not None and (entry.task, entry.message, entry.integrationid) == ("deploy", "boom", "")
    assert wire.log_entry_for(finished | {"data": {"status": "succeeded"}}) is None
    log_error = {"type": "sh.keptn.log.error", "data": {"message": "m", "task": "t", "integrationid": "other"}}
    entry = wire.log_entry_for(log_error)
    assert entry is not None and entry.integrationid == "other" and entry.time  # a real time, not Go's zero
