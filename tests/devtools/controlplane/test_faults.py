"""Injected faults: statuses, latency, Retry-After, 401, dropped connections, garbage bodies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

POLL = f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}"


def test_a_status_fault_fires_times_times(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    rule = cp.faults.add(method="GET", path=r"/controlPlane/v1/event/triggered/.*", status=503, times=3)

    statuses = [client.get(POLL).status_code for _ in range(4)]

    assert statuses == [503, 503, 503, 200]
    assert rule.fired == 3 and cp.faults.rules == []


def test_a_status_fault_answers_a_keptn_error_and_does_not_process(
    cp: server.LocalControlPlane, client: httpx.Client
) -> None:
    cp.faults.add(method="POST", path="/v1/event", status=500, times=1)

    reply = client.post("/v1/event", json=helpers.hello())

    assert reply.status_code == 500 and reply.json() == {"code": 500, "message": "injected fault"}
    assert cp.events() == []


def test_only_matching_method_and_path_fire(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(method="POST", path="/controlPlane/v1/log", status=503)

    assert client.get("/controlPlane/v1/log").status_code == 200
    assert client.get(POLL).status_code == 200
    assert client.post("/controlPlane/v1/log", json={"logs": []}).status_code == 503


def test_latency(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(path="/v1/metadata", latency_s=0.3, times=1)

    started = time.monotonic()
    assert client.get("/v1/metadata").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        cp.faults.add(path="/v1/metadata", latency_s=0.5, times=1)
        client.get("/v1/metadata", timeout=0.2)


def test_429_with_retry_after(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(method="GET", path=POLL, status=429, retry_after_s=2, times=1)

    reply = client.get(POLL)

    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "2"
    assert reply.json() == {"code": 429, "message": "too many requests"}


def test_401_until_cleared(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(status=401)

    assert client.get(POLL).json() == {"code": 401, "message": "unauthenticated or invalid credentials"}
    assert client.post("/v1/event", json=helpers.hello()).status_code == 401
    cp.faults.clear()
    assert client.get(POLL).status_code == 200


def test_a_custom_body(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(path="/v1/metadata", status=502, body="<html>bad gateway</html>", times=1)
    cp.faults.add(path="/v1/metadata", status=400, body={"code": 400, "message": "nope"}, times=1)

    assert client.get("/v1/metadata").text == "<html>bad gateway</html>"
    assert client.get("/v1/metadata").json() == {"code": 400, "message": "nope"}


def test_a_dropped_connection_still_processes_the_request(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(method="POST", path="/v1/event", drop_connection=True, times=1)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post("/v1/event", json=helpers.hello())

    cp.wait_idle()
    (stored,) = cp.events(type=helpers.HELLO_APAC["type"])
    assert stored["data"] == helpers.HELLO_APAC["data"]
    assert len(helpers.triggered(client, helpers.SAYHELLO_TRIGGERED)) == 1
    assert client.get("/v1/metadata").status_code == 200, "the next request works on a new connection"


def test_a_garbage_body_is_a_200_that_is_not_json(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.faults.add(method="POST", path="/v1/event", garbage_body=True, times=1)

    reply = client.post("/v1/event", json=helpers.hello())

    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    cp.wait_idle()
    assert len(cp.events(type=helpers.HELLO_APAC["type"])) == 1, "processed all the same"


def test_faults_outside_the_api_prefix_match_the_full_path(make_cp: Callable[..., server.LocalControlPlane]) -> None:
    cp = make_cp(oauth=server.OAuthConfig(client_id="c", client_secret="s"))
    cp.faults.add(path="/oauth/token", status=503, times=1)
    form = {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}

    assert httpx.post(cp.oauth_token_url, data=form, verify=helpers.SSL_CONTEXT).status_code == 503
    assert httpx.post(cp.oauth_token_url, data=form, verify=helpers.SSL_CONTEXT).status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"status": 503, "drop_connection": True},
        {"retry_after_s": 1},
        {"status": 42},
        {"status": 503, "times": 0},
    ],
)
def test_invalid_rules_are_refused(cp: server.LocalControlPlane, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        cp.faults.add(**kwargs)  # type: ignore[arg-type]


def test_a_rule_can_be_removed(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    rule = cp.faults.add(status=503)
    assert client.get(POLL).status_code == 503

    cp.faults.remove(rule)

    assert client.get(POLL).status_code == 200
