"""The api-service: POST /v1/event (acceptance, rewriting, validation), /v1/auth, /v1/metadata."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers


def stored(cp: server.LocalControlPlane, context: str, event_type: str) -> dict[str, Any]:
    cp.wait_idle()
    (event,) = cp.events(keptn_context=context, type=event_type)
    return event


def test_the_users_curl_opens_the_sayhello_task(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    reply = client.post("/v1/event", json=helpers.HELLO_APAC)

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    context = reply.json()["keptnContext"]
    cp.wait_idle()
    body = client.get(f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}").json()
    assert body["nextPageKey"] == "0" and body["totalCount"] == 1
    (event,) = body["events"]
    assert event["data"] == helpers.HELLO_APAC["data"]
    assert event["type"] == helpers.SAYHELLO_TRIGGERED
    assert event["shkeptncontext"] == context
    assert event["source"] == "shipyard-controller"
    assert event["specversion"] == "1.0"
    assert event["shkeptnspecversion"] == "latest"
    assert "triggeredid" not in event and "contenttype" not in event
    assert uuid.UUID(event["id"])
    resource = client.get(
        "/resource-service/v1/project/my-first-project/stage/dev/service/service1/resource/job%252Fconfig.yaml"
    ).json()
    assert event["gitcommitid"] == resource["metadata"]["version"]


def test_id_time_and_contenttype_are_replaced_and_shkeptnspecversion_dropped(
    cp: server.LocalControlPlane, client: httpx.Client
) -> None:
    body = helpers.hello()
    body.update(
        id="my-own-id",
        time="2001-01-01T00:00:00.000Z",
        contenttype="text/plain",
        datacontenttype="application/json",
        gitcommitid="abc123",
        extensions={"x": 1},
    )

    context = helpers.send(client, body)

    event = stored(cp, context, body["type"])
    assert event["id"] != "my-own-id" and uuid.UUID(event["id"])
    assert event["time"] == "2024-01-01T12:00:00.000Z"  # the control plane's (fake) clock
    assert event["contenttype"] == "application/json"
    assert "shkeptnspecversion" not in event and "datacontenttype" not in event
    assert event["gitcommitid"] == "abc123"
    assert event["extensions"] == {"x": 1}
    assert event["source"] == "postman" and event["data"] == body["data"]


def test_a_uuid_context_is_kept(client: httpx.Client) -> None:
    context = str(uuid.uuid4())
    assert helpers.send(client, {**helpers.hello(), "shkeptncontext": context}) == context


def test_another_context_string_derives_the_same_uuid_every_time(client: httpx.Client) -> None:
    first = helpers.send(client, {**helpers.hello(), "shkeptncontext": "my-run-42"})
    second = helpers.send(client, {**helpers.hello(), "shkeptncontext": "my-run-42"})
    other = helpers.send(client, {**helpers.hello(), "shkeptncontext": "my-run-43"})

    assert first == second != other
    assert uuid.UUID(first).version == 4


def test_no_context_gets_a_new_one(client: httpx.Client) -> None:
    assert helpers.send(client, helpers.hello()) != helpers.send(client, helpers.hello())


def test_a_source_that_is_no_uri_reference_is_replaced(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, {**helpers.hello(), "source": "1:not a uri"})

    assert stored(cp, context, helpers.HELLO_APAC["type"])["source"] == "https://github.com/keptn/keptn/api"


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"data": None}, 602, "data in body is required"),
        ({"source": ""}, 602, "source in body is required"),
        ({"type": None}, 602, "type in body is required"),
        ({"data": "text"}, 601, 'data in body must be of type object: "string"'),
        ({"source": 5}, 601, 'source in body must be of type string: "number"'),
    ],
)
def test_schema_violations_get_422_with_go_openapi_codes(
    client: httpx.Client, change: dict[str, Any], code: int, message: str
) -> None:
    reply = client.post("/v1/event", json={**helpers.hello(), **change})

    assert reply.status_code == 422
    assert reply.json() == {"code": code, "message": message}


def test_missing_required_fields_are_listed_together(client: httpx.Client) -> None:
    reply = client.post("/v1/event", json={"specversion": "1.0"})

    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == 422
    for field in ("data", "source", "type"):
        assert f"{field} in body is required" in body["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"text"', b'{"data": {"x": NaN}, "source": "s", "type": "t"}', b"\xff\xfe"],
    ids=["malformed", "array", "string", "nan", "not-utf8"],
)
def test_bodies_that_are_no_json_object_get_400(client: httpx.Client, raw: bytes) -> None:
    reply = client.post("/v1/event", content=raw, headers={"content-type": "application/json"})

    assert reply.status_code == 400
    assert reply.json()["code"] == 400
    assert reply.json()["message"].startswith("parsing body failed")


def test_an_unparsable_time_gets_400(client: httpx.Client) -> None:
    reply = client.post("/v1/event", json={**helpers.hello(), "time": "yesterday"})

    assert reply.status_code == 400
    assert "time" in reply.json()["message"]


def test_status_changed_is_recorded_by_default(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    body: dict[str, Any] = {"type": "sh.keptn.event.sayhello.status.changed", "source": "s", "data": {"message": "50%"}}

    context = helpers.send(client, body)

    assert stored(cp, context, body["type"])["data"] == {"message": "50%"}


STRICT_CASES = [
    ({"type": "sh.keptn.event.sayhello.status.changed"}, "unknown event type action: changed"),
    ({"type": "sh.keptn.event.dev.sequence1.finished"}, "unknown event type action: finished"),
    ({"type": "something.else"}, "unknown event type"),
    ({"type": "sh.keptn.event.sayhello.started"}, "triggeredid must be set"),
    ({"type": "sh.keptn.event.sayhello.finished", "triggeredid": "t"}, "result and status must be set"),
    ({"type": "sh.keptn.event.sayhello.started", "triggeredid": "t", "data": {"project": "p"}}, "must be set in data"),
    ({"data": {"project": "my-first-project", "stage": "prod", "service": "service1"}}, "does not match the stage"),
]


@pytest.mark.parametrize(("change", "message"), STRICT_CASES)
def test_strict_validation_refuses_with_400(
    make_cp: Callable[..., server.LocalControlPlane],
    make_client: Callable[..., httpx.Client],
    change: dict[str, Any],
    message: str,
) -> None:
    client = make_client(make_cp(strict_validation=True))

    reply = client.post("/v1/event", json={**helpers.hello(), **change})

    assert reply.status_code == 400
    assert message in reply.json()["message"]
    assert reply.json()["code"] == 400


def test_strict_validation_accepts_valid_events_and_limits_their_size(
    make_cp: Callable[..., server.LocalControlPlane], make_client: Callable[..., httpx.Client]
) -> None:
    client = make_client(make_cp(strict_validation=True))
    finished: dict[str, Any] = {
        "type": "sh.keptn.event.sayhello.finished",
        "source": "jes",
        "triggeredid": "0b9f",
        "data": {"project": "p", "stage": "s", "service": "x", "status": "succeeded", "result": "pass"},
    }

    assert client.post("/v1/event", json=helpers.hello()).status_code == 200
    assert client.post("/v1/event", json=finished).status_code == 200
    big = {**finished, "data": {**finished["data"], "message": "x" * 70_000}}
    reply = client.post("/v1/event", json=big)
    assert reply.status_code == 400
    assert reply.json()["message"] == "event size exceeds the maximum of 64 KB"
    assert client.post("/v1/event", json={**finished, "type": "sh.keptn.log.error"}).status_code == 200


def test_a_body_above_the_gateway_limit_gets_413(
    make_cp: Callable[..., server.LocalControlPlane], make_client: Callable[..., httpx.Client]
) -> None:
    cp = make_cp(max_body_bytes=10_000)
    client = make_client(cp)
    huge = {**helpers.hello(), "data": {**helpers.hello()["data"], "blob": "x" * 20_000}}

    reply = client.post("/v1/event", json=huge)

    assert reply.status_code == 413
    assert reply.json() == {"code": 413, "message": "request body too large: the limit is 10000 bytes"}
    assert client.post("/v1/event", json=helpers.hello()).status_code == 200  # the connection stays usable


def test_a_streamed_body_above_the_limit_gets_413_too(
    make_cp: Callable[..., server.LocalControlPlane], make_client: Callable[..., httpx.Client]
) -> None:
    client = make_client(make_cp(max_body_bytes=10_000))

    def chunks() -> Any:
        for _ in range(5):
            yield b"x" * 4096

    reply = client.post("/v1/event", content=chunks(), headers={"content-type": "application/json"})

    assert reply.status_code == 413
    assert reply.json()["code"] == 413


def test_the_default_limit_is_five_megabytes(client: httpx.Client) -> None:
    reply = client.post("/v1/event", content=b" " * (5 * 1024 * 1024 + 1), headers={"content-type": "application/json"})

    assert reply.status_code == 413


def test_auth_endpoint_and_metadata(client: httpx.Client) -> None:
    auth = client.post("/v1/auth")
    metadata = client.get("/v1/metadata")

    assert auth.status_code == 200 and auth.content == b""
    assert metadata.status_code == 200
    assert metadata.json()["keptnversion"] == "1.4.5"
    assert metadata.json()["automaticprovisioning"] is False


def test_unknown_routes_get_gins_plain_404(client: httpx.Client) -> None:
    for reply in (client.get("/v1/nothing"), client.get("/v1/event"), client.post("/controlPlane/v1/project/x/y")):
        assert reply.status_code == 404
        assert reply.text == "404 page not found"
        assert reply.headers["content-type"].startswith("text/plain")


def test_other_media_types_get_415(client: httpx.Client) -> None:
    raw = json.dumps(helpers.hello()).encode()

    assert client.post("/v1/event", content=raw, headers={"content-type": "text/plain"}).status_code == 415
    for content_type in ("application/json; charset=utf-8", "application/cloudevents+json"):
        assert client.post("/v1/event", content=raw, headers={"content-type": content_type}).status_code == 200
