"""``jes distributor`` in HTTP polling mode against the local control plane, forwarding to a
recipient over real HTTP: registration, subscription ids, retries, /event and the error log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from jes import errors
from jes.devtools.controlplane.server import LocalControlPlane
from jes.distributor import config
from tests.distributor.support import (
    NAME,
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


@pytest.fixture
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED) as control_plane:
        yield control_plane


async def test_a_triggered_event_reaches_the_recipient_with_its_subscription_id(plane: LocalControlPlane) -> None:
    with RecordingRecipient() as recipient:
        async with running(environment(plane, recipient, PROJECT_FILTER="my-first-project")):
            plane.trigger_sequence(trigger_body())
            await wait_until(lambda: len(recipient.received) == 1, what="the event at the recipient")
            await asyncio.sleep(0.3)  # more polls: forwarded once while it stays open
        [received] = recipient.received
    assert received.headers["content-type"] == "application/cloudevents+json"
    assert "x-token" not in received.headers and TOKEN not in str(received.headers)
    event = received.event
    assert event["type"] == TOPIC and event["specversion"] == "1.0" and event["datacontenttype"] == "application/json"
    assert {"id", "source", "time", "shkeptncontext", "triggeredid", "gitcommitid", "shkeptnspecversion"} <= set(event)
    assert event["data"]["temporaryData"]["distributor"]["subscriptionID"] == subscription_id(plane)
    assert event["data"]["sayhello"] == {"location": "APAC"}


async def test_the_registration_carries_the_distributors_metadata(plane: LocalControlPlane) -> None:
    env_filters = {"PROJECT_FILTER": "my-first-project", "STAGE_FILTER": "dev,prod", "DISTRIBUTOR_VERSION": "1.4.5"}
    with RecordingRecipient() as recipient:
        async with running(environment(plane, recipient, **env_filters)) as distributor:
            assert distributor.uniform is not None and distributor.uniform.integration_id
    [integration] = plane.integrations()
    assert integration["name"] == NAME
    metadata = integration["metadata"]
    assert (metadata["hostname"], metadata["integrationversion"], metadata["distributorversion"]) == ("node-1", "1.2.3", "1.4.5")
    assert metadata["location"] == "remote-execution-plane"
    assert metadata["kubernetesmetadata"] == {"namespace": "keptn-tests", "podname": f"{NAME}-0", "deploymentname": NAME}
    [subscription] = integration["subscriptions"]
    assert subscription["event"] == TOPIC
    assert subscription["filter"] == {"projects": ["my-first-project"], "stages": ["dev", "prod"], "services": []}


async def test_a_failing_recipient_gets_four_attempts_then_the_event_again_at_the_next_poll(plane: LocalControlPlane) -> None:
    with RecordingRecipient(statuses=[503, 500, 502, 503]) as recipient:
        async with running(environment(plane, recipient)) as distributor:
            plane.trigger_sequence(trigger_body())
            await wait_until(lambda: len(recipient.received) == 5, what="4 failed attempts and a fifth, later one")
            await asyncio.sleep(0.4)  # taken now: not forwarded again while it stays open
            assert (distributor.recipient.stats.failed, distributor.recipient.stats.delivered) == (1, 1)
        ids = {r.event["id"] for r in recipient.received}
    assert len(recipient.received) == 5 and len(ids) == 1


async def test_events_are_forwarded_concurrently(plane: LocalControlPlane) -> None:
    with RecordingRecipient(delay_s=0.5) as recipient:
        async with running(environment(plane, recipient, JES_MAX_CONCURRENT_EVENTS="4")):
            plane.inject_triggered(task="sayhello", project="my-first-project", stage="dev", service="service1", count=6)
            await wait_until(lambda: len(recipient.received) == 6, what="six events")
        assert recipient.in_flight_max == 4  # bounded, and not one at a time


async def test_the_integration_reports_through_event_and_the_sequence_finishes(plane: LocalControlPlane) -> None:
    async with httpx.AsyncClient() as http:
        with RecordingRecipient() as recipient:
            async with running(environment(plane, recipient)) as distributor:
                context = plane.trigger_sequence(trigger_body())
                await wait_until(lambda: len(recipient.received) == 1, what="the event at the recipient")
                triggered = recipient.received[0].event
                for kind, data in (("started", {}), ("finished", {"status": "succeeded", "result": "pass"})):
                    answer = await http.post(proxy_url(distributor), json=reply(triggered, kind, **data))
                    assert answer.status_code == 200 and answer.content == b""
                await wait_until(lambda: sequence_done(plane, context), what="the sequence")
                health = await http.get(proxy_url(distributor, "/health"))
                projects = await http.get(proxy_url(distributor, "/controlPlane/v1/project"))
    assert health.status_code == 200
    assert projects.status_code == 200 and "my-first-project" in projects.text  # the API proxy, with the token


async def test_log_error_events_become_log_entries_and_are_not_sent_on(plane: LocalControlPlane) -> None:
    log_error = {
        "specversion": "1.0", "id": "log-1", "source": NAME, "type": "sh.keptn.log.error", "shkeptncontext": "ctx-1",
        "triggeredid": "t-1", "data": {"message": "the integration broke", "task": "sayhello"},
    }  # fmt: skip
    async with httpx.AsyncClient() as http:
        with RecordingRecipient() as recipient:
            async with running(environment(plane, recipient), log_interval_s=0.2) as distributor:
                assert (await http.post(proxy_url(distributor), json=log_error)).status_code == 200
                integration_id = distributor.uniform.integration_id if distributor.uniform else None
                await wait_until(lambda: bool(plane.logs(integration_id)), what="the log entry")
    [entry] = plane.logs(integration_id)
    assert (entry["message"], entry["task"], entry["shkeptncontext"], entry["triggeredid"]) == (
        "the integration broke", "sayhello", "ctx-1", "t-1")  # fmt: skip
    assert not plane.events(type="sh.keptn.log.error")


async def test_heartbeats_given_up_stop_the_distributor_with_exit_1() -> None:
    plane = LocalControlPlane(token=TOKEN, seed_dir=SEED)
    plane.start()
    env = {"MAX_HEARTBEAT_RETRIES": "2", "HEARTBEAT_INTERVAL": "100ms"}
    try:
        with RecordingRecipient() as recipient:
            from jes.commands.distributor import Distributor

            distributor = Distributor(config.load(environment(plane, recipient, **env)))
            task = asyncio.create_task(distributor.run(asyncio.Event()))
            await wait_until(distributor.running.is_set, what="the distributor")
            plane.stop()
            assert await asyncio.wait_for(task, 10) == 1
            assert distributor.uniform is not None and distributor.uniform.exhausted
    finally:
        plane.stop()


async def test_registration_given_up_is_an_error() -> None:
    with RecordingRecipient() as recipient:
        env = environment(None, recipient, KEPTN_API_ENDPOINT="http://127.0.0.1:9/api", MAX_REGISTRATION_RETRIES="2")
        from jes.commands.distributor import Distributor
        from jes.distributor.uniform import RegistrationFailed

        distributor = Distributor(config.load(env), registration_pause_s=0.01)
        with pytest.raises(RegistrationFailed, match="in 2 attempts"):
            await distributor.run(asyncio.Event())
        assert isinstance(RegistrationFailed("x"), errors.JesError)


async def test_an_integration_the_control_plane_forgot_registers_again(plane: LocalControlPlane) -> None:
    with RecordingRecipient() as recipient:
        async with running(environment(plane, recipient)) as distributor:
            assert distributor.uniform is not None
            first = distributor.uniform.integration_id
            async with httpx.AsyncClient(headers={"x-token": TOKEN}) as http:
                gone = await http.delete(f"{plane.url}/controlPlane/v1/uniform/registration/{first}")
                assert gone.status_code == 200
            await wait_until(lambda: bool(plane.integrations()), what="the registration again")
            assert distributor.uniform.failures == 0


async def test_oauth_client_credentials_reach_the_control_plane() -> None:
    from jes.devtools.controlplane.server import OAuthConfig

    oauth = OAuthConfig(client_id="my-integration", client_secret="client-s3cret", enforce_scopes=False)
    with LocalControlPlane(token="", seed_dir=SEED, oauth=oauth) as plane, RecordingRecipient() as recipient:
        env = environment(plane, recipient, KEPTN_API_TOKEN="", OAUTH_CLIENT_ID="my-integration",
                          OAUTH_CLIENT_SECRET="client-s3cret", OAUTH_SCOPES="keptn:read,keptn:write",
                          OAUTH_DISCOVERY=plane.oauth_discovery_url)  # fmt: skip
        async with running(env):
            plane.trigger_sequence(trigger_body())
            await wait_until(lambda: len(recipient.received) == 1, what="the event at the recipient")
        assert plane.integrations()[0]["name"] == NAME
        assert "client-s3cret" not in str(recipient.received[0].headers)


async def test_a_failed_oauth_discovery_stops_it() -> None:
    from jes.commands.distributor import Distributor

    with RecordingRecipient() as recipient:
        env = environment(None, recipient, KEPTN_API_ENDPOINT="http://127.0.0.1:9/api", OAUTH_CLIENT_ID="c",
                          OAUTH_CLIENT_SECRET="s", OAUTH_SCOPES="x", OAUTH_DISCOVERY="http://127.0.0.1:9/.well-known")  # fmt: skip
        with pytest.raises(errors.JesError, match="OAuth discovery failed"):
            await Distributor(config.load(env)).run(asyncio.Event())


async def test_without_registration_pubsub_topic_is_polled(plane: LocalControlPlane) -> None:
    """(The distributor polls nothing then: only the subscriptions a heartbeat returned.)"""
    with RecordingRecipient() as recipient:
        async with running(environment(plane, recipient, DISABLE_REGISTRATION="true")) as distributor:
            assert distributor.uniform is None and distributor.error_log is None
            plane.trigger_sequence(trigger_body())
            await wait_until(lambda: len(recipient.received) == 1, what="the event at the recipient")
    assert not plane.integrations()
    assert "temporaryData" not in recipient.received[0].event["data"]
