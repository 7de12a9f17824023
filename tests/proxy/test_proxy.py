"""The API proxy over real loopback HTTP against the local control plane, which answers only
requests that carry its ``x-token``: routing, the token added by the shared client, encoded paths
and query strings kept, the body limit, and the precise error answers."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from tests.proxy.conftest import MakeProxy
from tests.proxy.support import CONFIG_PATH, HELLO_APAC, PROJECT, SERVICE, STAGE, TOKEN

LIMIT = 64 * 1024


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_each_prefix_reaches_the_control_plane_with_the_token_the_client_adds(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    context = plane.trigger_sequence(HELLO_APAC)
    proxy = await make_proxy()
    # the control plane refuses a request without the token...
    assert (await caller.get(f"{plane.url}/controlPlane/v1/project")).status_code == 401
    # ...and answers each prefix through the proxy, even when the caller sends a bogus token
    bogus = {"x-token": "bogus-caller-token"}
    projects = await caller.get(f"{proxy.url}/controlPlane/v1/project", headers=bogus)
    assert projects.status_code == 200, projects.text
    assert [p["projectName"] for p in projects.json()["projects"]] == [PROJECT]
    resource = await caller.get(proxy.url + CONFIG_PATH, headers=bogus)
    assert resource.status_code == 200, resource.text
    assert b"sayhello" in base64.b64decode(resource.json()["resourceContent"])
    stored = await caller.get(f"{proxy.url}/mongodb-datastore/event", params={"keptnContext": context}, headers=bogus)
    assert stored.status_code == 200, stored.text
    assert HELLO_APAC["type"] in [e["type"] for e in stored.json()["events"]]


async def test_without_the_token_the_control_planes_401_is_passed_through(
    make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy(token="")
    answer = await caller.get(f"{proxy.url}/controlPlane/v1/project", headers={"x-token": TOKEN})
    assert answer.status_code == 401  # the caller's token is not forwarded either


async def test_an_encoded_resource_path_and_the_query_string_are_kept(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    first = plane.put_resource(project=PROJECT, stage=STAGE, service=SERVICE, uri="job/config.yaml", content=b"first")
    plane.put_resource(project=PROJECT, stage=STAGE, service=SERVICE, uri="job/config.yaml", content=b"second")
    proxy = await make_proxy()
    newest = await caller.get(proxy.url + CONFIG_PATH)
    assert base64.b64decode(newest.json()["resourceContent"]) == b"second"
    pinned = await caller.get(f"{proxy.url}{CONFIG_PATH}?gitCommitID={first}")
    assert pinned.status_code == 200, pinned.text
    assert base64.b64decode(pinned.json()["resourceContent"]) == b"first"


def log_body(size: int) -> bytes:
    """A ``POST /controlPlane/v1/log`` body of exactly ``size`` bytes; its message is ``marker...``."""
    head, tail = b'{"logs": [{"integrationid": "proxy-test", "message": "', b'"}]}'
    return head + b"m" * (size - len(head) - len(tail)) + tail


async def chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]
        await asyncio.sleep(0)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_passes_one_byte_more_is_413_and_not_forwarded(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient, chunked: bool
) -> None:
    proxy = await make_proxy()
    url = f"{proxy.url}/controlPlane/v1/log"
    headers = {"content-type": "application/json"}
    exact = log_body(LIMIT)
    passed = await caller.post(url, content=chunks(exact) if chunked else exact, headers=headers)
    assert passed.status_code == 200, passed.text
    assert len(plane.logs()) == 1
    over = await caller.post(
        url, content=chunks(log_body(LIMIT + 1)) if chunked else log_body(LIMIT + 1), headers=headers
    )
    assert over.status_code == 413
    assert over.json()["code"] == 413
    assert "65536 bytes" in over.json()["message"] and "API_PROXY_MAX_PAYLOAD_BYTES_KB" in over.json()["message"]
    assert len(plane.logs()) == 1  # nothing of it reached the control plane


async def test_an_event_over_the_limit_is_413_and_not_sent_on(make_proxy: MakeProxy, caller: httpx.AsyncClient) -> None:
    proxy = await make_proxy(api_proxy_max_payload_bytes_kb=1)
    event = {**HELLO_APAC, "data": {**HELLO_APAC["data"], "padding": "x" * 1024}}
    answer = await caller.post(f"{proxy.url}/event", json=event)
    assert answer.status_code == 413
    assert proxy.forwarded == []


@pytest.mark.parametrize(
    "path", ["/v1/event", "/controlPlaneX/v1/project", "/configuration-service/v1/project", "/", "/health/x"]
)
async def test_an_unknown_prefix_is_404_naming_what_is_served(
    make_proxy: MakeProxy, caller: httpx.AsyncClient, path: str
) -> None:
    proxy = await make_proxy()
    answer = await caller.get(proxy.url + path)
    assert answer.status_code == 404
    body = answer.json()
    assert body["code"] == 404
    for served in ("/controlPlane", "/resource-service", "/mongodb-datastore", "/event", "/health"):
        assert served in body["message"]


async def test_a_control_plane_that_is_down_is_502_with_the_reason(
    make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy(endpoint=f"http://127.0.0.1:{closed_port()}/api")
    answer = await caller.get(f"{proxy.url}/controlPlane/v1/project")
    assert answer.status_code == 502
    assert answer.json()["code"] == 502
    assert "unreachable" in answer.json()["message"] and "ConnectError" in answer.json()["message"]
    event = await caller.post(f"{proxy.url}/event", json=HELLO_APAC)
    assert event.status_code == 502
    assert "ConnectError" in event.json()["message"]


async def test_a_control_plane_that_does_not_answer_in_time_is_502(
    caller: httpx.AsyncClient, make_proxy: MakeProxy
) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        proxy = await make_proxy(endpoint=f"http://127.0.0.1:{port}/api", api_proxy_http_timeout_s=0.3)
        answer = await caller.get(f"{proxy.url}/controlPlane/v1/project")
    assert answer.status_code == 502
    assert "0.3s" in answer.json()["message"] and "API_PROXY_HTTP_TIMEOUT" in answer.json()["message"]


async def test_health_is_200_with_an_empty_body_for_any_method(
    make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy()
    for method in ("GET", "POST", "HEAD"):
        answer = await caller.request(method, f"{proxy.url}/health")
        assert (answer.status_code, answer.content) == (200, b"")


async def test_an_event_reaches_the_control_plane_and_is_found_through_its_api(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy()
    # drop-in: the distributor accepts any Content-Type for a structured event
    answer = await caller.post(
        f"{proxy.url}/event", content=json.dumps(HELLO_APAC), headers={"content-type": "text/plain"}
    )
    assert (answer.status_code, answer.content) == (200, b"")
    assert [e["type"] for e in proxy.forwarded] == [HELLO_APAC["type"]]
    params = {"project": PROJECT, "type": HELLO_APAC["type"]}
    for _ in range(100):
        found = (await caller.get(f"{proxy.url}/mongodb-datastore/event", params=params)).json()["events"]
        if found:
            break
        await asyncio.sleep(0.05)
    assert [e["source"] for e in found] == ["proxy-test"]


async def test_an_error_log_event_is_logged_and_never_sent_on(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy()
    error_log = {"specversion": "1.0", "type": "sh.keptn.log.error", "source": "my-task", "id": "1",
                 "shkeptncontext": "c", "data": {"message": "it broke", "task": "sayhello"}}  # fmt: skip
    answer = await caller.post(f"{proxy.url}/event", json=error_log)
    assert (answer.status_code, answer.content) == (200, b"")
    assert proxy.forwarded == []
    assert [e["data"]["message"] for e in proxy.error_logs] == ["it broke"]
    assert plane.events(type="sh.keptn.log.error") == []


async def test_an_errored_finished_event_is_sent_on_and_logged(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy()
    finished = {"specversion": "1.0", "type": "sh.keptn.event.sayhello.finished", "source": "my-task", "id": "2",
                "shkeptncontext": "c", "triggeredid": "t",
                "data": {"project": PROJECT, "stage": STAGE, "service": SERVICE, "status": "errored", "result": "fail"}}  # fmt: skip
    assert (await caller.post(f"{proxy.url}/event", json=finished)).status_code == 200
    assert [e["type"] for e in proxy.forwarded] == [finished["type"]]
    assert [e["type"] for e in proxy.error_logs] == [finished["type"]]


@pytest.mark.parametrize(
    ("body", "headers", "said"),
    [
        (b"{not json", {}, "not JSON"),
        (b"[1, 2]", {}, "not a CloudEvent object"),
        (b'{"data": {"project": "p"}}', {"ce-specversion": "1.0", "ce-type": "x"}, "specversion is missing"),
        (b'{"specversion": "2.0", "type": "x"}', {}, "specversion '2.0'"),
        (b'{"specversion": "1.0", "source": "s"}', {}, "no type"),
        (b'{"specversion": "1.0", "type": "x", "data": "text"}', {}, "data is a JSON str"),
    ],
    ids=["not-json", "not-object", "binary-mode", "bad-specversion", "no-type", "data-not-object"],
)
async def test_a_body_that_is_not_a_structured_cloudevent_is_400_saying_what_is_missing(
    make_proxy: MakeProxy, caller: httpx.AsyncClient, body: bytes, headers: dict[str, str], said: str
) -> None:
    proxy = await make_proxy()
    answer = await caller.post(f"{proxy.url}/event", content=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == 400 and said in answer.json()["message"]
    assert proxy.forwarded == []


async def test_an_event_the_control_plane_rejects_gets_its_status_and_message(
    make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    with LocalControlPlane(token=TOKEN, strict_validation=True) as strict:
        proxy = await make_proxy(endpoint=strict.url)
        finished = {"specversion": "1.0", "type": "sh.keptn.event.sayhello.finished", "source": "my-task",
                    "data": {"project": PROJECT, "stage": STAGE, "service": SERVICE, "status": "succeeded", "result": "pass"}}  # fmt: skip
        answer = await caller.post(f"{proxy.url}/event", json=finished)
        assert answer.status_code == 400
        assert "triggeredid must be set" in answer.json()["message"]


async def test_get_on_the_event_path_is_405(make_proxy: MakeProxy, caller: httpx.AsyncClient) -> None:
    proxy = await make_proxy()
    answer = await caller.get(f"{proxy.url}/event")
    assert answer.status_code == 405 and "POST" in answer.json()["message"]


async def test_paths_under_another_api_proxy_path(make_proxy: MakeProxy, caller: httpx.AsyncClient) -> None:
    proxy = await make_proxy(api_proxy_path="/proxy")
    assert (await caller.get(f"{proxy.url}/proxy/controlPlane/v1/project")).status_code == 200
    assert (await caller.get(f"{proxy.url}/controlPlane/v1/project")).status_code == 404
    # as with the distributor, a mount that is itself a prefix still routes the whole path
    mounted = await make_proxy(api_proxy_path="/controlPlane/")
    assert (await caller.get(f"{mounted.url}/controlPlane/v1/project")).status_code == 200
