"""The mongodb-datastore: every received and emitted event, newest first, filtered and paged."""

from __future__ import annotations

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

EVENTS = "/mongodb-datastore/event"


def test_every_event_of_a_context_newest_first(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.hello())
    cp.wait_idle()
    (task,) = helpers.triggered(client, helpers.SAYHELLO_TRIGGERED)
    helpers.send(client, helpers.response(task, "started"))
    helpers.send(client, helpers.response(task, "finished"))
    cp.wait_idle()

    body = client.get(EVENTS, params={"keptnContext": context}).json()

    assert [e["type"] for e in body["events"]] == [
        "sh.keptn.event.dev.sequence1.finished",
        "sh.keptn.event.sayhello.finished",
        "sh.keptn.event.sayhello.started",
        "sh.keptn.event.sayhello.triggered",
        "sh.keptn.event.dev.sequence1.triggered",
    ]
    assert body["totalCount"] == 5 and body["pageSize"] == 5 and body["nextPageKey"] == "0"
    started = client.get(EVENTS, params={"keptnContext": context, "type": "sh.keptn.event.sayhello.started"}).json()
    (event,) = started["events"]
    assert event["triggeredid"] == task["id"] and event["source"] == "jes"


def test_filters_by_project_type_stage_service_and_source(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    helpers.send(client, helpers.hello())
    helpers.send(client, helpers.hello(service="service2"))
    cp.wait_idle()

    def count(**params: str) -> int:
        return int(client.get(EVENTS, params=params).json()["totalCount"])

    assert count(project="my-first-project") == 4
    assert count(project="my-first-project", type=helpers.SAYHELLO_TRIGGERED) == 2
    assert count(project="my-first-project", service="service2") == 2
    assert count(project="my-first-project", source="postman") == 2
    assert count(project="my-first-project", stage="prod") == 0
    assert count(project="other") == 0


def test_paging(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    for index in range(5):
        helpers.send(client, helpers.hello(service=f"service-{index}"))  # 5 triggers + 5 tasks
    cp.wait_idle()

    first = client.get(EVENTS, params={"project": "my-first-project", "pageSize": 3}).json()
    second = client.get(EVENTS, params={"project": "my-first-project", "pageSize": 3, "nextPageKey": "9"}).json()

    assert first["nextPageKey"] == "3" and first["pageSize"] == 3 and first["totalCount"] == 10
    assert second["nextPageKey"] == "0" and len(second["events"]) == 1


def test_project_or_context_is_required(client: httpx.Client) -> None:
    reply = client.get(EVENTS, params={"type": helpers.SAYHELLO_TRIGGERED})

    assert reply.status_code == 400
    assert reply.json() == {"code": 400, "message": "either keptnContext or project must be specified"}


@pytest.mark.parametrize(("size", "code"), [("101", 608), ("0", 609), ("many", 601)])
def test_page_size_limits(client: httpx.Client, size: str, code: int) -> None:
    reply = client.get(EVENTS, params={"project": "my-first-project", "pageSize": size})

    assert reply.status_code == 422
    assert reply.json()["code"] == code


def test_the_python_api_sees_the_same_events(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.hello())
    cp.wait_idle()
    (task,) = helpers.triggered(client, helpers.SAYHELLO_TRIGGERED)
    helpers.send(client, helpers.response(task, "started"))
    cp.wait_idle()

    (started,) = cp.events(triggered_id=task["id"])
    assert started["type"] == "sh.keptn.event.sayhello.started"
    assert [e["type"] for e in cp.events(keptn_context=context)][:2] == [
        "sh.keptn.event.dev.sequence1.triggered",
        helpers.SAYHELLO_TRIGGERED,
    ]
    cp.events()[0]["data"]["project"] = "changed"
    assert cp.events()[0]["data"]["project"] == "my-first-project", "callers get copies"


def test_triggered_ids_lists_what_events_shows(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    helpers.send(client, helpers.hello())
    cp.wait_idle()
    (task,) = helpers.triggered(client, helpers.SAYHELLO_TRIGGERED)
    helpers.send(client, helpers.response(task, "started"))
    helpers.send(client, helpers.response(task, "finished"))
    cp.wait_idle()

    for kind in ("started", "finished"):
        event_type = f"sh.keptn.event.sayhello.{kind}"
        assert cp.triggered_ids(type=event_type) == [e["triggeredid"] for e in cp.events(type=event_type)]
        assert cp.triggered_ids(type=event_type) == [task["id"]]
    assert cp.triggered_ids(type=helpers.SAYHELLO_TRIGGERED) == []
