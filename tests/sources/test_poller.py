"""The poller against a small fake control plane: registration, heartbeat, polling, dedup, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import jes
from jes.clients.keptn import auth, client, wire
from jes.sources import poller, topics
from tests.clients.keptn.support import FakeClock, FakeControlPlane, RecordingSleep, make_settings, reply

TEST = "sh.keptn.event.test.triggered"
DEPLOY = "sh.keptn.event.deployment.triggered"


@dataclass
class Harness:
    cp: FakeControlPlane
    poller: poller.Poller
    delivered: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [event_id for event_id, _ in self.delivered]


@pytest.fixture
def cp() -> FakeControlPlane:
    return FakeControlPlane()


@pytest.fixture
async def make_poller(
    cp: FakeControlPlane, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[Callable[..., Harness]]:
    opened: list[httpx.AsyncClient] = []

    def build(*, on_event: Any = None, poller_args: dict[str, Any] | None = None, **overrides: Any) -> Harness:
        settings = make_settings(**{"pubsub_topics": (TEST,)} | overrides)
        http = auth.make_http_client(settings, transport=httpx.MockTransport(cp))
        opened.append(http)
        keptn = client.KeptnClient.from_settings(http, settings, sleep=sleep)
        harness = Harness(cp=cp, poller=None)  # type: ignore[arg-type]

        async def record(event: dict[str, Any], subscription_id: str) -> None:
            harness.delivered.append((event["id"], subscription_id))

        harness.poller = poller.Poller(
            keptn,
            settings,
            on_event or record,
            on_poll_error=harness.errors.append,
            sleep=sleep,
            clock=clock,
            **(poller_args or {}),
        )
        return harness

    yield build
    for http in opened:
        await http.aclose()


# -- registration and heartbeat -----------------------------------------------------------------


async def test_registration_carries_upstream_metadata_and_one_subscription_per_topic(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller(pubsub_topics=(TEST, DEPLOY), project_filter=("p", "q"), stage_filter=("dev",))
    await h.poller.heartbeat_once()
    (integration,) = cp.integrations.values()
    assert integration["name"] == "job-executor-service"
    assert integration["metadata"] == {
        "hostname": "node-1",
        "integrationversion": jes.__version__,
        "distributorversion": "0.15.0",
        "location": "remote-execution-plane",
        "kubernetesmetadata": {
            "namespace": "keptn-jes",
            "podname": "jes-pod-1",
            "deploymentname": "job-executor-service",
        },
    }
    assert [(s["event"], s["filter"]) for s in integration["subscriptions"]] == [
        (TEST, {"projects": ["p", "q"], "stages": ["dev"], "services": []}),
        (DEPLOY, {"projects": ["p", "q"], "stages": ["dev"], "services": []}),
    ]
    assert h.poller.integration_id == integration["id"]
    assert h.poller.registered


async def test_location_and_version_come_from_the_settings(make_poller: Callable[..., Harness]) -> None:
    registration = make_poller(location="EU", k8s_deployment_version="1.2.3").poller.registration()
    assert (registration.metadata.location, registration.metadata.integrationversion) == ("EU", "1.2.3")


def test_a_service_filter_without_stages_is_applied_locally_only(make_poller: Callable[..., Harness]) -> None:
    # The control plane refuses a services filter without a stages filter (400).
    registration = make_poller(service_filter=("hello",)).poller.registration()
    assert registration.subscriptions[0].filter.services == ()


async def test_subscriptions_come_from_the_ping_and_follow_bridge_edits(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller()
    await h.poller.heartbeat_once()
    assert [t.event for t in h.poller.topics] == [TEST]
    integration_id = h.poller.integration_id
    assert integration_id is not None
    cp.subscribe(integration_id, DEPLOY, projects=None, stages=None, services=None)
    await h.poller.heartbeat_once()
    assert [t.event for t in h.poller.topics] == [TEST, DEPLOY]
    cp.unsubscribe(integration_id, TEST)
    await h.poller.heartbeat_once()
    assert [t.event for t in h.poller.topics] == [DEPLOY]
    assert cp.count("register") == 1 and cp.count("ping") == 3


async def test_an_expired_integration_is_registered_again(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller()
    await h.poller.heartbeat_once()
    cp.add_event("e1")
    await h.poller.poll_once()
    cp.integrations.clear()  # the TTL index removed it
    await h.poller.heartbeat_once()
    assert cp.count("register") == 2 and h.poller.registered
    assert h.poller.integration_id in cp.integrations
    # New subscription ids, same open event: it is not handed over a second time.
    await h.poller.poll_once()
    assert h.ids == ["e1"]


async def test_a_failed_heartbeat_keeps_the_registration_until_the_retries_run_out(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller(max_heartbeat_retries=2)
    await h.poller.heartbeat_once()
    await h.poller.poll_once()
    cp.fail["ping"] = [reply(503)] * 3
    for expected in (True, True, False):
        with pytest.raises(jes.errors.KeptnTemporaryError):
            await h.poller.heartbeat_once()
        assert h.poller.registered is expected
    assert not h.poller.ready
    await h.poller.heartbeat_once()
    assert h.poller.registered and h.poller.ready


async def test_heartbeat_pace_slows_down_after_the_retries(
    make_poller: Callable[..., Harness], cp: FakeControlPlane, sleep: RecordingSleep
) -> None:
    h = make_poller(max_registration_retries=2, registration_interval_s=5.0, heartbeat_interval_s=3.0)
    cp.fail["register"] = [reply(503)] * 4 + [reply(401, {"message": "incorrect api key auth"})]
    stop = asyncio.Event()
    real_sleep = asyncio.sleep

    async def stepping(delay: float) -> None:
        sleep.delays.append(delay)
        if len(sleep.delays) >= 7:
            stop.set()
        await real_sleep(0)

    h.poller._sleep = stepping
    await asyncio.wait_for(h.poller.run(stop), 5)
    # two quick retries, then the slow pace; a 401 waits the longest; then registered: heartbeat pace
    assert sleep.delays[:6] == [5.0, 5.0, 60.0, 60.0, 60.0, 3.0]


# -- polling ------------------------------------------------------------------------------------


async def test_each_open_event_is_delivered_once_with_its_subscription(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller()
    await h.poller.heartbeat_once()
    cp.add_event("e1")
    cp.add_event("e2")
    assert await h.poller.poll_once() == 2
    assert await h.poller.poll_once() == 0
    cp.add_event("e3")
    assert await h.poller.poll_once() == 1
    (topic,) = h.poller.topics
    assert h.delivered == [("e2", topic.subscription_id), ("e1", topic.subscription_id), ("e3", topic.subscription_id)]
    assert h.poller.ready
    assert h.poller.stats.events_delivered == 3


async def test_ids_the_server_stopped_returning_are_forgotten(
    make_poller: Callable[..., Harness], cp: FakeControlPlane, clock: FakeClock
) -> None:
    h = make_poller(poller_args={"forget_after_s": 30.0})
    await h.poller.heartbeat_once()
    cp.add_event("done")
    cp.add_event("running")
    await h.poller.poll_once()
    cp.remove_event("done")  # its task completed
    clock.advance(20)
    await h.poller.poll_once()
    assert h.poller.remembered_ids() == 2  # not yet: a grace period covers a flapping answer
    clock.advance(20)
    await h.poller.poll_once()
    assert h.poller.remembered_ids() == 1  # "running" is still returned, so still remembered
    assert h.ids == ["running", "done"]


async def test_memory_is_capped(make_poller: Callable[..., Harness], cp: FakeControlPlane) -> None:
    h = make_poller(poller_args={"max_seen_ids": 5})
    await h.poller.heartbeat_once()
    for n in range(8):
        cp.add_event(f"e{n}")
    await h.poller.poll_once()
    assert h.poller.remembered_ids() == 5
    assert len(h.delivered) == 8


async def test_a_failed_hand_over_is_offered_again(make_poller: Callable[..., Harness], cp: FakeControlPlane) -> None:
    calls: list[str] = []

    async def flaky(event: dict[str, Any], subscription_id: str) -> None:
        calls.append(event["id"])
        if len(calls) == 1:
            raise RuntimeError("queue full")

    h = make_poller(on_event=flaky)
    await h.poller.heartbeat_once()
    cp.add_event("e1")
    assert await h.poller.poll_once() == 0
    assert await h.poller.poll_once() == 1
    assert calls == ["e1", "e1"] and h.errors == ["callback"]


async def test_single_value_filters_go_to_the_server_others_are_applied_here(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller(project_filter=("p",), stage_filter=("dev", "prod"))
    await h.poller.heartbeat_once()
    cp.add_event("dev", stage="dev")
    cp.add_event("prod", stage="prod")
    cp.add_event("staging", stage="staging")
    cp.add_event("other-project", project="q")
    await h.poller.poll_once()
    assert sorted(h.ids) == ["dev", "prod"]
    poll = next(r for r in cp.requests if "/event/triggered/" in r.url.path)
    assert poll.url.params["project"] == "p"
    assert "stage" not in poll.url.params and "service" not in poll.url.params


async def test_subscription_filters_from_the_bridge_are_applied(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller(pubsub_topics=())
    await h.poller.heartbeat_once()
    assert h.poller.integration_id is not None
    cp.subscribe(h.poller.integration_id, TEST, projects=["p"], stages=None, services=["a", "b"])
    await h.poller.heartbeat_once()
    for service in ("a", "b", "c"):
        cp.add_event(service, service=service)
    await h.poller.poll_once()
    assert sorted(h.ids) == ["a", "b"]
    assert h.poller.stats.events_filtered == 1


def test_settings_filters_narrow_subscription_filters() -> None:
    settings = make_settings(project_filter=("p", "q"), service_filter=("x",))
    combined = topics.EventFilter.of(wire.SubscriptionFilter(projects=("q", "r"), services=("y",)), settings)
    assert combined.projects == {"q"} and combined.query() == {"project": "q"}
    assert combined.impossible  # services: x and y have nothing in common


async def test_an_impossible_filter_polls_nothing(make_poller: Callable[..., Harness], cp: FakeControlPlane) -> None:
    h = make_poller(project_filter=("p",))
    await h.poller.heartbeat_once()
    assert h.poller.integration_id is not None
    cp.unsubscribe(h.poller.integration_id, TEST)
    cp.subscribe(h.poller.integration_id, TEST, projects=["q"], stages=None, services=None)
    await h.poller.heartbeat_once()
    await h.poller.poll_once()
    assert cp.count("poll") == 0 and h.poller.ready


async def test_an_unknown_project_means_no_events_not_an_error(make_poller: Callable[..., Harness]) -> None:
    h = make_poller(project_filter=("not-yet",))
    h.cp.projects = {"p"}
    await h.poller.heartbeat_once()
    assert await h.poller.poll_once() == 0
    assert h.poller.ready and h.errors == []


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (reply(401, {"message": "incorrect api key auth"}), "auth"),
        (reply(403, {"message": "forbidden"}), "auth"),
        (reply(503, text="<html>"), "temporary"),
        (reply(200, text="<html>not json</html>"), "temporary"),
        (httpx.ConnectError("refused"), "temporary"),
        (reply(400, {"message": "bad"}), "permanent"),
        (reply(404, text="404 page not found"), "not_found"),
    ],
)
async def test_poll_errors_are_counted_by_kind_and_make_it_unready(
    make_poller: Callable[..., Harness], cp: FakeControlPlane, answer: Any, kind: str
) -> None:
    h = make_poller()
    await h.poller.heartbeat_once()
    cp.fail["poll"] = [answer]
    await h.poller.poll_once()
    assert h.errors == [kind] and h.poller.stats.poll_errors[kind] == 1
    assert not h.poller.ready
    await h.poller.poll_once()
    assert h.poller.ready


async def test_a_401_is_logged_once_per_change_and_never_with_the_token(
    make_poller: Callable[..., Harness], cp: FakeControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    h = make_poller()
    await h.poller.heartbeat_once()
    caplog.set_level(logging.INFO, logger="jes")
    cp.fail["poll"] = [reply(401, {"code": 401, "message": "incorrect api key auth"})] * 3 + [
        reply(401, {"code": 401, "message": "token expired"})
    ]
    for _ in range(5):
        await h.poller.poll_once()
    refused = [r.getMessage() for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert len(refused) == 2
    assert "GET http://cp.test/api/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered" in refused[0]
    assert "incorrect api key auth" in refused[0] and "token expired" in refused[1]
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_without_registration_the_topics_are_polled_as_configured(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller(disable_registration=True, pubsub_topics=(TEST, DEPLOY))
    cp.add_event("t1")
    cp.add_event("d1", event_type=DEPLOY)
    await h.poller.heartbeat_once()  # nothing to do
    assert await h.poller.poll_once() == 2
    assert sorted(h.delivered) == [("d1", ""), ("t1", "")]
    assert cp.count("register") == cp.count("ping") == 0
    assert h.poller.ready


# -- the loops ----------------------------------------------------------------------------------


async def test_the_poll_interval_subtracts_the_time_spent(
    make_poller: Callable[..., Harness], cp: FakeControlPlane, clock: FakeClock, sleep: RecordingSleep
) -> None:
    h = make_poller(disable_registration=True, http_polling_interval_s=1.0)
    cp.on_request = lambda request: clock.advance(0.3)
    stop = asyncio.Event()

    async def stepping(delay: float) -> None:
        sleep.delays.append(delay)
        clock.advance(delay)
        if len(sleep.delays) == 3:
            cp.fail["poll"] = [reply(503)] * 2
        if len(sleep.delays) >= 6:
            stop.set()
        await asyncio.sleep(0)

    h.poller._sleep = stepping
    await asyncio.wait_for(h.poller.run(stop), 5)
    assert sleep.delays[:3] == pytest.approx([0.7, 0.7, 0.7])
    assert sleep.delays[3:5] == [2.0, 4.0]  # failures back off, then the interval again
    assert sleep.delays[5] == pytest.approx(0.7)


async def test_run_follows_subscription_changes_and_stops_cleanly(
    make_poller: Callable[..., Harness], cp: FakeControlPlane
) -> None:
    h = make_poller(http_polling_interval_s=0.01, heartbeat_interval_s=0.01)
    h.poller._sleep = asyncio.sleep
    cp.add_event("t1")
    cp.add_event("d1", event_type=DEPLOY)
    stop = asyncio.Event()
    runner = asyncio.create_task(h.poller.run(stop), name="test-poller-run")

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(3):
            while not condition():
                await asyncio.sleep(0.005)

    def poll_tasks() -> set[str]:
        return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("jes-poll:")}

    await until(lambda: h.ids == ["t1"] and h.poller.ready)
    assert h.poller.integration_id is not None
    (name,) = poll_tasks()
    assert name.startswith(f"jes-poll:{TEST}:")
    cp.subscribe(h.poller.integration_id, DEPLOY, projects=None, stages=None, services=None)
    await until(lambda: "d1" in h.ids)
    cp.unsubscribe(h.poller.integration_id, TEST)
    await until(lambda: len(poll_tasks()) == 1 and next(iter(poll_tasks())).startswith(f"jes-poll:{DEPLOY}:"))
    stop.set()
    await asyncio.wait_for(runner, 2)
    assert not poll_tasks()
    assert not any(t.get_name() == "jes-poller-heartbeat" for t in asyncio.all_tasks())
    assert h.ids.count("t1") == 1 and h.ids.count("d1") == 1
