"""Uniform registration, heartbeat, subscriptions, expiry, and the log API."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jes.devtools.controlplane import server

REGISTRATION = "/controlPlane/v1/uniform/registration"
BODY: dict[str, Any] = {
    "name": "job-executor-service",
    "metadata": {
        "hostname": "node-1",
        "integrationversion": "1.0.0",
        "distributorversion": "0.15.0",
        "location": "remote-execution-plane",
        "kubernetesmetadata": {
            "namespace": "keptn-jes",
            "podname": "jes-7d9f",
            "deploymentname": "job-executor-service",
        },
    },
    "subscriptions": [
        {"event": "sh.keptn.event.sayhello.triggered", "filter": {"projects": None, "stages": None, "services": None}},
        {"event": "sh.keptn.event.test.triggered", "filter": {"projects": ["p1"], "stages": ["dev"], "services": []}},
    ],
}
EXPECTED_ID = hashlib.sha1(b"job-executor-service-keptn-jes-node-1").hexdigest()


def register(client: httpx.Client, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(REGISTRATION, json=BODY if body is None else body)


def variant(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[int(parent)] if isinstance(target, list) else target[parent]
        target[leaf] = value
    return body


def test_a_new_integration_gets_the_sha1_id_and_201(client: httpx.Client) -> None:
    reply = register(client)

    assert reply.status_code == 201
    assert reply.json() == {"id": EXPECTED_ID}


def test_the_ping_answers_the_integration_with_subscription_ids(client: httpx.Client, clock: server.FakeClock) -> None:
    register(client)
    clock.advance(5)

    reply = client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping", headers={"content-type": "application/json"})

    assert reply.status_code == 200
    integration = reply.json()
    assert integration["id"] == EXPECTED_ID and integration["name"] == "job-executor-service"
    assert integration["metadata"]["lastseen"] == "2024-01-01T12:00:05.000Z"
    assert integration["metadata"]["kubernetesmetadata"]["namespace"] == "keptn-jes"
    subscriptions = integration["subscriptions"]
    assert [s["event"] for s in subscriptions] == ["sh.keptn.event.sayhello.triggered", "sh.keptn.event.test.triggered"]
    assert all(uuid.UUID(s["id"]) for s in subscriptions)
    assert subscriptions[0]["filter"] == {"projects": None, "stages": None, "services": None}
    assert subscriptions[1]["filter"] == {"projects": ["p1"], "stages": ["dev"], "services": []}


def test_registering_again_keeps_the_id_and_ignores_new_subscriptions(client: httpx.Client) -> None:
    register(client)
    body = variant(metadata__hostname="node-2", metadata__integrationversion="2.0.0")
    body["subscriptions"] = [{"event": "sh.keptn.event.other.triggered"}]

    reply = register(client, body)

    assert reply.status_code == 200 and reply.json() == {"id": EXPECTED_ID}
    integration = client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping").json()
    assert integration["metadata"]["integrationversion"] == "2.0.0"
    assert integration["metadata"]["hostname"] == "node-1"
    assert len(integration["subscriptions"]) == 2


def test_subscriptions_are_copied_without_ids_when_the_integration_had_none(client: httpx.Client) -> None:
    register(client, variant(subscriptions=None))

    assert register(client).status_code == 200

    subscriptions = client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping").json()["subscriptions"]
    assert [s["id"] for s in subscriptions] == ["", ""]  # Keptn's quirk


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (variant(name=""), "incomplete integration ID"),
        (variant(name=None), "incomplete integration ID"),
        (variant(metadata__hostname=""), "incomplete integration ID"),
        (variant(metadata__kubernetesmetadata__namespace=""), "incomplete integration ID"),
        (variant(metadata=None), "incomplete integration ID"),
        (variant(subscriptions__0__event=""), "subscription event must be set"),
        (variant(subscriptions__0__filter={"services": ["a"]}), "at least one stage must be specified"),
        (variant(subscriptions__0__filter={"services": [], "stages": None}), "at least one stage must be specified"),
        (variant(name="webhook-service"), "exactly one project"),
        (variant(name=42), "Invalid request format: name"),
        (variant(subscriptions="all"), "Invalid request format: subscriptions"),
    ],
)
def test_invalid_registrations_are_400(client: httpx.Client, body: dict[str, Any], message: str) -> None:
    reply = register(client, body)

    assert reply.status_code == 400
    assert reply.json()["code"] == 400
    assert message in reply.json()["message"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    reply = client.post(REGISTRATION, content=b"{", headers={"content-type": "application/json"})

    assert reply.status_code == 400
    assert reply.json()["message"].startswith("Invalid request format")


def test_ping_of_an_unknown_integration_is_404(client: httpx.Client) -> None:
    reply = client.put(f"{REGISTRATION}/unknown/ping")

    assert reply.status_code == 404
    assert reply.json() == {"code": 404, "message": "uniform integration not found"}


def test_list_with_filters(client: httpx.Client) -> None:
    register(client)
    other = register(
        client, variant(name="other", subscriptions=[{"event": "e", "filter": {"projects": ["p2"], "stages": []}}])
    )

    def names(**params: str) -> list[str]:
        return [i["name"] for i in client.get(REGISTRATION, params=params).json()]

    assert sorted(names()) == ["job-executor-service", "other"]
    assert names(name="other") == ["other"]
    assert names(id=other.json()["id"]) == ["other"]
    assert sorted(names(namespace="keptn-jes")) == ["job-executor-service", "other"]
    assert names(project="p1") == ["job-executor-service"]  # its first subscription has no filter
    assert sorted(names(project="p2")) == ["job-executor-service", "other"]
    assert names(name="nobody") == []


def test_delete(client: httpx.Client) -> None:
    register(client)

    reply = client.delete(f"{REGISTRATION}/{EXPECTED_ID}")

    assert reply.status_code == 200 and reply.json() == {}
    assert client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping").status_code == 404
    assert client.get(REGISTRATION).json() == []


def test_subscription_crud(client: httpx.Client) -> None:
    register(client, variant(subscriptions=None))
    base = f"{REGISTRATION}/{EXPECTED_ID}/subscription"
    assert client.get(base).json() is None

    created = client.post(base, json={"event": "sh.keptn.event.test.triggered", "filter": {"projects": ["p"]}})
    assert created.status_code == 201
    sub_id = created.json()["id"]
    assert client.get(f"{base}/{sub_id}").json() == {
        "id": sub_id,
        "event": "sh.keptn.event.test.triggered",
        "filter": {"projects": ["p"], "stages": None, "services": None},
    }
    updated = client.put(f"{base}/{sub_id}", json={"event": "sh.keptn.event.deploy.triggered"})
    assert (updated.status_code, updated.json()) == (201, {"id": sub_id})
    assert client.put(f"{base}/my-own-id", json={"event": "x"}).status_code == 201
    assert [s["event"] for s in client.get(base).json()] == ["sh.keptn.event.deploy.triggered", "x"]
    assert client.delete(f"{base}/{sub_id}").json() == {}
    assert client.get(f"{base}/{sub_id}").status_code == 404
    assert client.post(base, json={"event": ""}).status_code == 400
    assert client.post(f"{REGISTRATION}/nope/subscription", json={"event": "x"}).status_code == 404
    assert client.get(f"{REGISTRATION}/nope/subscription").json() == {
        "code": 404,
        "message": "uniform integration not found",
    }


def test_integrations_expire_after_the_ttl(
    make_cp: Callable[..., server.LocalControlPlane],
    make_client: Callable[..., httpx.Client],
    clock: server.FakeClock,
) -> None:
    cp = make_cp(clock=clock, integration_ttl_s=60)
    client = make_client(cp)
    register(client)
    clock.advance(50)
    assert client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping").status_code == 200

    clock.advance(59)
    cp.state.tick()
    assert client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping").status_code == 200
    clock.advance(61)
    cp.wait_for(lambda: cp.integrations() == [])  # the pump's 50 ms watch

    assert client.put(f"{REGISTRATION}/{EXPECTED_ID}/ping").status_code == 404
    assert register(client).status_code == 201


def test_logs_are_stored_and_listed(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    entry = {
        "integrationid": EXPECTED_ID,
        "message": "could not find job/config.yaml",
        "time": "2024-01-01T12:00:00.000Z",
        "shkeptncontext": "ctx",
        "task": "sayhello",
        "triggeredid": "tid",
    }

    reply = client.post("/controlPlane/v1/log", json={"logs": [entry, {**entry, "integrationid": "other"}]})

    assert reply.status_code == 200 and reply.json() == {}
    body = client.get("/controlPlane/v1/log", params={"integrationId": EXPECTED_ID}).json()
    assert body["totalCount"] == 1
    assert body["logs"][0] == {**entry, "gitcommitid": ""}
    assert [e["integrationid"] for e in cp.logs()] == [EXPECTED_ID, "other"]
    assert cp.logs("other")[0]["message"] == entry["message"]


@pytest.mark.parametrize("body", [{"logs": "text"}, {"logs": [{"message": 5}]}, [1]])
def test_invalid_logs_are_400(client: httpx.Client, body: Any) -> None:
    reply = client.post("/controlPlane/v1/log", json=body)

    assert reply.status_code == 400
    assert reply.json()["code"] == 400
