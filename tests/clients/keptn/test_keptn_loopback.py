"""The client, the config source and the poller against the local control plane, over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jes import errors
from jes.clients.keptn import arrival, auth, client, configsource, httperrors, wire
from jes.devtools.controlplane.server import FakeClock, LocalControlPlane, OAuthConfig
from jes.sources import poller
from tests.clients.keptn import support
from tests.clients.keptn.support import CLIENT_SECRET, TOKEN, RecordingSleep, make_settings

TEST = "sh.keptn.event.test.triggered"
STARTED = "sh.keptn.event.test.started"
TRIGGERED_PATH = r"/controlPlane/v1/event/triggered/.*"


@pytest.fixture
def cp_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cp(cp_clock: FakeClock) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, clock=cp_clock, integration_ttl_s=60) as control_plane:
        yield control_plane


@pytest.fixture
async def connect(sleep: RecordingSleep) -> AsyncIterator[Callable[..., client.KeptnClient]]:
    """``connect(cp, **settings)``: a KeptnClient for a control plane (retries do not wait)."""
    opened: list[httpx.AsyncClient] = []

    def build(
        control_plane: LocalControlPlane, *, clock: Callable[[], float] = time.monotonic, **overrides: Any
    ) -> client.KeptnClient:
        settings = make_settings(keptn_api_endpoint=control_plane.url, **overrides)
        http = auth.make_http_client(settings, clock=clock)
        opened.append(http)
        return client.KeptnClient.from_settings(http, settings, sleep=sleep)

    yield build
    for http in opened:
        await http.aclose()


def new_poller(keptn: client.KeptnClient, delivered: list[str], **overrides: Any) -> poller.Poller:
    settings = make_settings(**{"pubsub_topics": (TEST,)} | overrides)

    async def on_event(event: dict[str, Any], subscription_id: str) -> None:
        delivered.append(event["id"])

    return poller.Poller(keptn, settings, on_event)


# -- uniform ------------------------------------------------------------------------------------


async def test_registration_heartbeat_and_registering_again_after_expiry(
    cp: LocalControlPlane, cp_clock: FakeClock, connect: Callable[..., client.KeptnClient]
) -> None:
    delivered: list[str] = []
    the_poller = new_poller(connect(cp), delivered, project_filter=("p",))
    await the_poller.heartbeat_once()
    (integration,) = cp.integrations()
    assert integration["id"] == the_poller.integration_id
    assert integration["metadata"]["kubernetesmetadata"]["namespace"] == "keptn-jes"
    assert integration["metadata"]["distributorversion"] == "0.15.0"
    (topic,) = the_poller.topics
    assert topic.event == TEST and topic.subscription_id == integration["subscriptions"][0]["id"]
    assert topic.filter.projects == ("p",)

    cp_clock.advance(120)  # past the TTL: the control plane forgets the integration
    cp.wait_for(lambda: not cp.integrations())
    await the_poller.heartbeat_once()
    assert [i["id"] for i in cp.integrations()] == [the_poller.integration_id]
    assert the_poller.registered and the_poller.stats.registrations == 2


async def test_logs_reach_the_integration_page(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    keptn = connect(cp)
    the_poller = new_poller(keptn, [])
    await the_poller.heartbeat_once()
    assert the_poller.integration_id is not None
    (found,) = await keptn.list_registrations("job-executor-service")
    assert found.id == the_poller.integration_id
    entry = wire.LogEntry(integrationid=found.id, message="could not retrieve config", task="test", triggeredid="t")
    await keptn.post_logs([entry])
    (logged,) = cp.logs(found.id)
    assert logged["message"] == "could not retrieve config" and logged["task"] == "test"


# -- polling ------------------------------------------------------------------------------------


async def test_polling_delivers_each_event_once_with_filters(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    for service in ("a", "b", "c"):
        cp.inject_triggered(task="test", project="p", stage="dev", service=service)
    cp.inject_triggered(task="test", project="q", stage="dev", service="a")
    delivered: list[str] = []
    the_poller = new_poller(connect(cp), delivered, project_filter=("p",), service_filter=("a", "b"))
    await the_poller.heartbeat_once()
    assert await the_poller.poll_once() == 2
    assert await the_poller.poll_once() == 0
    (new_id,) = cp.inject_triggered(task="test", project="p", stage="dev", service="b")
    assert await the_poller.poll_once() == 1
    assert delivered[-1] == new_id and len(set(delivered)) == 3
    assert the_poller.ready


async def test_a_project_that_does_not_exist_yet_is_no_error(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    the_poller = new_poller(connect(cp), [], project_filter=("later",))
    await the_poller.heartbeat_once()
    assert await the_poller.poll_once() == 0
    assert the_poller.ready and not the_poller.stats.poll_errors


async def test_the_pagination_bug_hides_no_event(connect: Callable[..., client.KeptnClient]) -> None:
    """Keptn 0.16-1.4.5 repeat the first page for later ones: beyond the first page nothing is
    visible. jes asks again for as many as totalCount says there are, and remembers that size."""
    with LocalControlPlane(token=TOKEN, pagination_bug=True) as buggy:
        opened = set(buggy.inject_triggered(task="test", project="p", stage="dev", service="a", count=130))
        subject = connect(buggy)
        first = await subject.get_triggered(TEST)
        polls_first = len(buggy.triggered_poll_times(TEST))
        second = await subject.get_triggered(TEST)
        polls_second = len(buggy.triggered_poll_times(TEST)) - polls_first
    for events in (first, second):
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)) and set(ids) == opened
    assert polls_first == 3  # page 1 (50), page 2 (the same 50 again: the bug), then all 130 at once
    assert polls_second == 1  # the size is remembered


async def test_the_service_loop_picks_up_events(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    delivered: list[str] = []
    the_poller = new_poller(connect(cp), delivered, http_polling_interval_s=0.02, heartbeat_interval_s=0.05)
    stop = asyncio.Event()
    runner = asyncio.create_task(the_poller.run(stop), name="test-poller-run")
    try:
        async with asyncio.timeout(5):
            while not the_poller.ready:
                await asyncio.sleep(0.01)
            ids = cp.inject_triggered(task="test", project="p", stage="dev", service="a", count=2)
            while sorted(delivered) != sorted(ids):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # several more polls
    finally:
        stop.set()
        await runner
    assert sorted(delivered) == sorted(ids)


# -- resources ----------------------------------------------------------------------------------


async def test_config_levels_pinned_commits_and_double_encoding(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    first = cp.put_resource(project="p", stage="dev", service="hello", uri="job/config.yaml", content=b"v1")
    cp.put_resource(project="p", stage="dev", service="hello", uri="job/config.yaml", content=b"v2")
    source = configsource.ConfigSource(connect(cp))
    pinned = await source.fetch_config("p", "dev", "hello", first)
    assert (pinned.level, pinned.content, pinned.version) == (configsource.Level.SERVICE, b"v1", first)
    latest = await source.fetch_config("p", "dev", "hello")
    assert latest.content == b"v2"


async def test_config_falls_back_to_stage_and_project(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    cp.put_resource(project="p", stage=None, service=None, uri="job/config.yaml", content=b"project")
    commit = cp.put_resource(project="p", stage="dev", service="hello", uri="other.txt", content=b"x")
    source = configsource.ConfigSource(connect(cp))
    found = await source.fetch_config("p", "dev", "hello", commit)
    assert (found.level, found.content) == (configsource.Level.PROJECT, b"project")
    cp.put_resource(project="p", stage="dev", service=None, uri="job/config.yaml", content=b"stage")
    found = await source.fetch_config("p", "dev", "hello")
    assert (found.level, found.content) == (configsource.Level.STAGE, b"stage")
    found = await source.fetch_config("p", "prod", "hello")  # no such stage (404): the project's
    assert found.level == configsource.Level.PROJECT
    with pytest.raises(configsource.ConfigNotFoundError, match="Project not found"):
        await source.fetch_config("nothing", "dev", "hello")


async def test_task_files_through_the_gateway(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient], tmp_path: Path
) -> None:
    files = {"helm/values.yaml": b"a", "helm/templates/job.yaml": b"b", "helm-x/no.yaml": b"c", "odd name+1.txt": b"d"}
    for uri, content in files.items():
        cp.put_resource(project="p", stage="dev", service="hello", uri=uri, content=content)
    source = configsource.ConfigSource(connect(cp))
    found = await source.fetch_files("p", "dev", "hello", ["helm", "/odd name+1.txt"], tmp_path, task="deploy")
    expected = {"helm/values.yaml": b"a", "helm/templates/job.yaml": b"b", "odd name+1.txt": b"d"}
    assert {path: (tmp_path / path).read_bytes() for path in found} == expected
    with pytest.raises(configsource.FilesNotFoundError, match="could not find file or directory chart for task deploy"):
        await source.fetch_files("p", "dev", "hello", ["chart"], tmp_path, task="deploy")


# -- events and the datastore -------------------------------------------------------------------


def started_for(cp: LocalControlPlane, *, executor: str = "keptn-jes/-") -> tuple[dict[str, Any], str]:
    (triggered_id,) = cp.inject_triggered(task="test", project="p", stage="dev", service="hello")
    (triggered,) = cp.open_triggered(TEST)
    event = {
        "specversion": "1.0",
        "source": "job-executor-service",
        "type": STARTED,
        "shkeptncontext": triggered["shkeptncontext"],
        "triggeredid": triggered_id,
        "data": {"project": "p", "stage": "dev", "service": "hello", "jes": {"executor": executor}},
    }
    return event, triggered_id


async def test_a_sent_event_can_be_read_back(cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]) -> None:
    keptn = connect(cp)
    event, triggered_id = started_for(cp)
    context = await keptn.send_event(event)
    assert context == event["shkeptncontext"]
    query = {
        "keptn_context": context,
        "event_type": STARTED,
        "triggered_id": triggered_id,
        "source": "job-executor-service",
    }
    assert await arrival.delivered(keptn, **query, marker={"executor": "keptn-jes/-"})
    assert not await arrival.delivered(keptn, **query, marker={"executor": "keptn-jes/EU"})


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"drop_connection": True}, id="dropped-after-processing"),
        pytest.param({"latency_s": 0.5}, id="answer-later-than-the-timeout"),
    ],
)
async def test_an_event_accepted_before_the_connection_broke_is_not_sent_twice(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient], fault: dict[str, Any]
) -> None:
    keptn = connect(cp, http_timeout_s=0.2)
    checker = connect(cp)  # the normal timeout: the datastore reads must not time out on a busy machine
    event, triggered_id = started_for(cp)
    cp.faults.add(method="POST", path="/v1/event", times=1, **fault)
    with pytest.raises(httperrors.EventMaybeDeliveredError):
        await keptn.send_event(event)
    query = {
        "keptn_context": event["shkeptncontext"],
        "event_type": STARTED,
        "triggered_id": triggered_id,
        "source": "job-executor-service",
    }
    async with asyncio.timeout(3):
        while not await arrival.delivered(checker, **query):  # what a reporter does before sending again
            await asyncio.sleep(0.05)
    assert len(cp.events(type=STARTED, triggered_id=triggered_id)) == 1


async def test_temporary_faults_are_retried(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient], sleep: RecordingSleep
) -> None:
    cp.inject_triggered(task="test", project="p", stage="dev", service="a")
    keptn = connect(cp)
    cp.faults.add(method="GET", path=TRIGGERED_PATH, status=503, times=2)
    assert len(await keptn.get_triggered(TEST)) == 1
    cp.faults.add(method="GET", path=TRIGGERED_PATH, status=429, retry_after_s=7, times=1)
    assert len(await keptn.get_triggered(TEST)) == 1
    assert sleep.delays == [0.2, 0.5, 7.0]


async def test_a_garbage_answer_is_a_temporary_error(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    cp.faults.add(method="GET", path=TRIGGERED_PATH, garbage_body=True)
    with pytest.raises(errors.KeptnTemporaryError, match="invalid JSON"):
        await connect(cp).get_triggered(TEST)


async def test_a_wrong_token_is_reported_clearly(
    cp: LocalControlPlane, connect: Callable[..., client.KeptnClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keptn = connect(cp, keptn_api_token="wrong-token-value")
    with pytest.raises(errors.KeptnAuthError) as caught:
        await keptn.check()
    assert f"POST {cp.url}/v1/auth returned 401: incorrect api key auth" in str(caught.value)
    the_poller = new_poller(keptn, [])
    with pytest.raises(errors.KeptnAuthError, match="unauthenticated or invalid credentials"):
        await the_poller.heartbeat_once()
    assert not the_poller.ready
    for record in caplog.records:
        assert "wrong-token-value" not in record.getMessage()


async def test_check_reports_the_metadata(cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]) -> None:
    result = await connect(cp).check()
    assert result["authenticated"] and "keptnversion" in result["metadata"]


# -- OAuth --------------------------------------------------------------------------------------


@pytest.fixture
def oauth_cp(cp_clock: FakeClock) -> Iterator[LocalControlPlane]:
    config = OAuthConfig(client_id="jes", client_secret=CLIENT_SECRET, token_ttl_s=300)
    with LocalControlPlane(token="", oauth=config, clock=cp_clock) as control_plane:
        yield control_plane


SCOPES = (
    "keptn:events:read",
    "keptn:events:write",
    "keptn:integrations:read",
    "keptn:integrations:write",
    "keptn:resources:read",
    "keptn:logs:write",
)


async def test_oauth_client_credentials_end_to_end(
    oauth_cp: LocalControlPlane, cp_clock: FakeClock, connect: Callable[..., client.KeptnClient]
) -> None:
    oauth = {
        "keptn_api_token": "",
        "oauth_client_id": "jes",
        "oauth_client_secret": CLIENT_SECRET,
        "oauth_scopes": SCOPES,
        "oauth_discovery": oauth_cp.oauth_discovery_url,
    }
    our_clock = support.FakeClock()
    keptn = connect(oauth_cp, clock=our_clock, **oauth)
    delivered: list[str] = []
    the_poller = new_poller(keptn, delivered, **oauth)
    await the_poller.heartbeat_once()
    oauth_cp.inject_triggered(task="test", project="p", stage="dev", service="a")
    assert await the_poller.poll_once() == 1
    cp_clock.advance(600)  # the server's token expired, before our clock says so: a 401 brings a new one
    our_clock.advance(60)
    assert await the_poller.poll_once() == 0 and the_poller.ready
    credentials = keptn.http.auth
    assert isinstance(credentials, auth.KeptnAuth) and credentials.oauth is not None
    assert credentials.oauth.fetches == 2


async def test_oauth_with_a_wrong_secret(
    oauth_cp: LocalControlPlane, connect: Callable[..., client.KeptnClient]
) -> None:
    keptn = connect(
        oauth_cp,
        keptn_api_token="",
        oauth_client_id="jes",
        oauth_client_secret="not-the-secret",
        oauth_scopes=SCOPES,
        oauth_token_url=oauth_cp.oauth_token_url,
    )
    with pytest.raises(errors.KeptnAuthError) as caught:
        await keptn.get_triggered(TEST)
    assert "OAuth token request" in str(caught.value) and "not-the-secret" not in str(caught.value)
