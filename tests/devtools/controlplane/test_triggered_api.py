"""GET /controlPlane/v1/event/triggered/{type}: filters, order, pagination, and inject_triggered."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

PATH = "/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered"


def test_an_empty_answer_has_no_total_count(client: httpx.Client) -> None:
    reply = client.get(PATH, params={"project": "my-first-project"})

    assert reply.status_code == 200
    assert reply.json() == {"events": [], "nextPageKey": "0"}


def test_an_unknown_project_is_404(client: httpx.Client) -> None:
    reply = client.get(PATH, params={"project": "nope"})

    assert reply.status_code == 404
    assert reply.json() == {"code": 404, "message": "project not found"}


def test_filters_on_project_stage_service_and_event_id(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    (a,) = cp.inject_triggered(task="test", project="p1", stage="dev", service="a")
    (b,) = cp.inject_triggered(task="test", project="p1", stage="prod", service="b")
    (c,) = cp.inject_triggered(task="test", project="p2", stage="dev", service="a")

    def ids(**params: str) -> set[str]:
        return {e["id"] for e in helpers.triggered(client, "sh.keptn.event.test.triggered", **params)}

    assert ids() == {a, b, c}
    assert ids(project="p1") == {a, b}
    assert ids(project="p1", stage="prod") == {b}
    assert ids(service="a") == {a, c}
    assert ids(eventID=b) == {b}
    assert ids(project="p2", eventID=b) == set()
    assert ids(stage="") == {a, b, c}, "an empty parameter is no filter"


def test_the_type_must_match_exactly(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.inject_triggered(task="test", project="p1", stage="dev", service="a")

    for pattern in ("sh.keptn.event.>", "*", "sh.keptn.event.test", "sh.keptn.event.test.triggered.x"):
        assert helpers.triggered(client, pattern) == []


def test_newest_first(cp: server.LocalControlPlane, client: httpx.Client, clock: server.FakeClock) -> None:
    ids = []
    for _ in range(3):
        ids += cp.inject_triggered(task="test", project="p1", stage="dev", service="a")
        clock.advance(1)

    events = helpers.triggered(client, "sh.keptn.event.test.triggered")

    assert [e["id"] for e in events] == list(reversed(ids))
    assert events[0]["time"] == "2024-01-01T12:00:02.000Z"


def test_pagination_walks_every_event_once(
    make_cp: Callable[..., server.LocalControlPlane], make_client: Callable[..., httpx.Client]
) -> None:
    cp = make_cp(pagination_bug=False)
    client = make_client(cp)
    expected = set(cp.inject_triggered(task="test", project="p1", stage="dev", service="a", count=45))
    seen: list[str] = []
    keys = []
    key = "0"
    while True:
        body = client.get(PATH, params={"nextPageKey": key} if key != "0" else {}).json()
        assert body["totalCount"] == 45
        seen += [e["id"] for e in body["events"]]
        key = body["nextPageKey"]
        keys.append(key)
        if key == "0":
            break

    assert keys == ["20", "40", "0"]
    assert len(seen) == 45 and set(seen) == expected
    assert len(client.get(PATH, params={"pageSize": 50}).json()["events"]) == 45


def test_keptns_pagination_bug_is_on_by_default(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    """Keptn 0.16-1.4.5 fill page 2 with the first items again (as many as page 2 should hold)."""
    cp.inject_triggered(task="test", project="p1", stage="dev", service="a", count=25)

    first = client.get(PATH).json()
    second = client.get(PATH, params={"nextPageKey": first["nextPageKey"]}).json()

    assert first["nextPageKey"] == "20" and len(first["events"]) == 20
    assert [e["id"] for e in second["events"]] == [e["id"] for e in first["events"]][:5]
    assert second["nextPageKey"] == "0" and second["totalCount"] == 25


@pytest.mark.parametrize("params", [{"pageSize": "x"}, {"nextPageKey": "-1"}, {"pageSize": "1.5"}])
def test_bad_paging_parameters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    reply = client.get(PATH, params=params)

    assert reply.status_code == 400
    assert reply.json()["code"] == 400


def test_injected_events_look_like_the_controllers(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    ids = cp.inject_triggered(
        task="test", project="bench", stage="s1", service="svc-7", data={"test": {"n": 1}}, count=2
    )

    events = helpers.triggered(client, "sh.keptn.event.test.triggered", project="bench")
    assert {e["id"] for e in events} == set(ids)
    event = events[0]
    assert event["data"] == {"test": {"n": 1}, "project": "bench", "stage": "s1", "service": "svc-7"}
    assert event["source"] == "shipyard-controller" and event["gitcommitid"]
    assert events[0]["shkeptncontext"] != events[1]["shkeptncontext"]
    assert client.get("/controlPlane/v1/project/bench").json()["stages"][0]["services"] == [{"serviceName": "svc-7"}]


def test_injected_events_complete_by_the_count_rule(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.inject_triggered(task="test", project="bench", stage="s1", service="a", count=3)
    events = helpers.triggered(client, "sh.keptn.event.test.triggered")

    for event in events[:2]:
        helpers.send(client, helpers.response(event, "started"))
        helpers.send(client, helpers.response(event, "finished"))
    helpers.send(client, helpers.response(events[2], "finished"))
    cp.wait_idle()

    assert helpers.triggered(client, "sh.keptn.event.test.triggered") == [events[2]]


def test_a_project_without_open_events_of_a_type_is_not_an_error(
    cp: server.LocalControlPlane, client: httpx.Client
) -> None:
    cp.inject_triggered(task="deployment", project="bench", stage="s1", service="a")

    assert helpers.triggered(client, "sh.keptn.event.test.triggered", project="bench") == []
