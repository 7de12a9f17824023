"""``jes distributor`` in NATS mode (no KEPTN_API_ENDPOINT) against a real nats-server and the local
control plane speaking NATS as Keptn 1.x; Keptn's in-cluster names reach the control plane through
HTTP_PROXY, as in tests/service/test_nats_mode.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from tests.distributor.support import (
    SEED,
    TOKEN,
    TOPIC,
    RecordingRecipient,
    environment,
    proxy_url,
    reply,
    running,
    sequence_done,
    subscription_id,
    trigger_body,
    wait_until,
)
from tests.natsserver import NatsServer, through_proxy


@pytest.fixture
def nats_plane(nats: NatsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED, nats_url=nats.url) as plane:
        through_proxy(monkeypatch, plane.base_url)  # (the recipient and the proxy on loopback stay direct)
        yield plane


def nats_env(nats: NatsServer, recipient: RecordingRecipient, **extra: str) -> dict[str, str]:
    return environment(None, recipient, PUBSUB_URL=nats.url, PUBSUB_GROUP="my-integration", **extra)


async def subscribed(distributor: Any) -> None:
    await wait_until(lambda: distributor.subscriber is not None and distributor.subscriber.ready, what="the NATS subscription")


async def test_nats_event_reaches_the_recipient_and_the_replies_through_event_finish_the_sequence(
    nats_plane: LocalControlPlane, nats: NatsServer
) -> None:
    async with httpx.AsyncClient() as http:
        with RecordingRecipient() as recipient:
            async with running(nats_env(nats, recipient)) as distributor:
                await subscribed(distributor)
                context = nats_plane.trigger_sequence(trigger_body())
                await wait_until(lambda: len(recipient.received) == 1, what="the event at the recipient")
                triggered = recipient.received[0].event
                for kind, data in (("started", {}), ("finished", {"status": "succeeded", "result": "pass"})):
                    answer = await http.post(proxy_url(distributor), json=reply(triggered, kind, **data))
                    assert answer.status_code == 200
                await wait_until(lambda: sequence_done(nats_plane, context), what="the sequence")  # published to NATS
                assert distributor.subscriber is not None and distributor.subscriber.received == 1
    assert triggered["type"] == TOPIC and triggered["specversion"] == "1.0"
    assert triggered["data"]["temporaryData"]["distributor"]["subscriptionID"] == subscription_id(nats_plane)
    [integration] = nats_plane.integrations()  # registered at the in-cluster shipyard-controller
    assert integration["metadata"]["location"] == "control-plane"
    started = nats_plane.events(type="sh.keptn.event.sayhello.started", keptn_context=context)
    assert [e["triggeredid"] for e in started] == [triggered["id"]]


async def test_error_logs_and_errored_finished_events_feed_the_error_log(
    nats_plane: LocalControlPlane, nats: NatsServer
) -> None:
    async with httpx.AsyncClient() as http:
        with RecordingRecipient() as recipient:
            async with running(nats_env(nats, recipient), log_interval_s=0.2) as distributor:
                await subscribed(distributor)
                context = nats_plane.trigger_sequence(trigger_body())
                await wait_until(lambda: len(recipient.received) == 1, what="the event at the recipient")
                triggered = recipient.received[0].event
                log_error = reply(triggered, "x") | {"type": "sh.keptn.log.error", "id": "log-1"}
                log_error["data"] |= {"message": "cannot reach the database", "task": "sayhello"}
                for event in (log_error, reply(triggered, "started"),
                              reply(triggered, "finished", status="errored", result="fail", message="it broke")):  # fmt: skip
                    assert (await http.post(proxy_url(distributor), json=event)).status_code == 200
                assert distributor.uniform is not None
                own = distributor.uniform.integration_id
                await wait_until(lambda: len(nats_plane.logs(own)) == 2, what="two log entries")
                await wait_until(lambda: sequence_done(nats_plane, context), what="the sequence")
    messages = sorted((e["task"], e["message"], e["triggeredid"]) for e in nats_plane.logs(own))
    assert messages == [("sayhello", "cannot reach the database", triggered["id"]), ("sayhello", "it broke", triggered["id"])]
    assert not nats_plane.events(type="sh.keptn.log.error")  # never published


async def test_an_event_the_recipient_refused_is_offered_again(nats_plane: LocalControlPlane, nats: NatsServer) -> None:
    with RecordingRecipient(statuses=[503] * 4) as recipient:
        async with running(nats_env(nats, recipient), redelivery_delays_s=(0.3,)) as distributor:
            await subscribed(distributor)
            nats_plane.trigger_sequence(trigger_body())
            await wait_until(lambda: distributor.redelivery.redelivered == 1, what="a later attempt")
            await asyncio.sleep(0.3)
        assert len({r.event["id"] for r in recipient.received}) == 1 and len(recipient.received) == 5


async def test_without_registration_pubsub_topic_and_the_filters_decide(nats_plane: LocalControlPlane, nats: NatsServer) -> None:
    env = {"DISABLE_REGISTRATION": "true", "STAGE_FILTER": "prod"}
    with RecordingRecipient() as recipient:
        async with running(nats_env(nats, recipient, **env)) as distributor:
            await subscribed(distributor)
            nats_plane.trigger_sequence(trigger_body())  # stage dev: filtered out
            nats_plane.inject_triggered(task="sayhello", project="my-first-project", stage="prod", service="service1")
            await wait_until(lambda: len(recipient.received) == 1, what="the prod event")
            await asyncio.sleep(0.3)
    assert not nats_plane.integrations()
    [received] = recipient.received
    assert received.event["data"]["stage"] == "prod" and "temporaryData" not in received.event["data"]
