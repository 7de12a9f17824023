"""Arbitrary bodies on every writing route: always a Keptn error shape, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

ROUTES = [
    ("POST", "/v1/event"),
    ("POST", "/controlPlane/v1/uniform/registration"),
    ("POST", "/controlPlane/v1/log"),
    ("POST", "/controlPlane/v1/project"),
    ("POST", "/controlPlane/v1/project/my-first-project/service"),
    ("POST", "/controlPlane/v1/sequence/my-first-project/ctx/control"),
    ("POST", "/resource-service/v1/project/my-first-project/stage/dev/resource"),
    ("PUT", "/resource-service/v1/project/my-first-project/stage/dev/resource/x.yaml"),
]
KEYS = st.sampled_from(
    ["data", "source", "type", "time", "shkeptncontext", "triggeredid", "name", "metadata", "hostname",
     "kubernetesmetadata", "namespace", "subscriptions", "event", "filter", "stages", "services", "logs",
     "resources", "resourceURI", "resourceContent", "shipyard", "serviceName", "state", "project", "stage", "service"]
) | st.text(max_size=8)  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=20
)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with server.LocalControlPlane(seed_dir=helpers.SEED, token=helpers.TOKEN) as cp:
        headers = {"x-token": helpers.TOKEN}
        with httpx.Client(base_url=cp.url, headers=headers, timeout=5, verify=helpers.SSL_CONTEXT) as http:
            yield http


def assert_keptn_answer(reply: httpx.Response) -> None:
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400 and reply.headers["content-type"] == "application/json":
        body = reply.json()
        assert isinstance(body["code"], int) and isinstance(body["message"], str)
        assert "Traceback" not in body["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=JSON)
def test_any_json_body(client: httpx.Client, route: tuple[str, str], body: Any) -> None:
    method, path = route
    reply = client.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"})

    assert_keptn_answer(reply)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), raw=st.binary(max_size=64))
def test_any_bytes(client: httpx.Client, route: tuple[str, str], raw: bytes) -> None:
    method, path = route
    reply = client.request(method, path, content=raw, headers={"content-type": "application/json"})

    assert_keptn_answer(reply)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segments=st.lists(st.sampled_from(["v1", "project", "stage", "service", "resource", "%2F", "%252F", "..", "x", "%"]),
                      max_size=8),
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
)  # fmt: skip
def test_any_resource_path(client: httpx.Client, segments: list[str], method: str) -> None:
    reply = client.request(method, "/resource-service/" + "/".join(segments), content=b"{}")

    assert_keptn_answer(reply)
