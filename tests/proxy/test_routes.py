"""Where requests go: the remote routes through the API gateway (with the resource URI escaped
once more for its extra decoding), and the in-cluster routes to Keptn's three services."""

from __future__ import annotations

import httpx
import pytest

from jes.proxy.routes import escape_resource_uri, in_cluster_routes, remote_routes, routes_for
from jes.settings import Settings
from tests.proxy.conftest import MakeProxy
from tests.proxy.support import capture_transport

RESOURCE = "/resource-service/v1/project/p/stage/s/service/svc/resource"


@pytest.mark.parametrize(
    ("path", "query", "target"),
    [
        ("/controlPlane/v1/project", "x=1&y=%2F", "https://k.example/api/controlPlane/v1/project?x=1&y=%2F"),
        ("/mongodb-datastore/event", "keptnContext=c", "https://k.example/api/mongodb-datastore/event?keptnContext=c"),
        (f"{RESOURCE}/job%2Fconfig.yaml", "", f"https://k.example/api{RESOURCE}/job%252Fconfig.yaml"),
        (
            f"{RESOURCE}/job/config.yaml",
            "gitCommitID=abc",
            f"https://k.example/api{RESOURCE}/job%2Fconfig.yaml?gitCommitID=abc",
        ),
        (f"{RESOURCE}/a b+c.txt", "", f"https://k.example/api{RESOURCE}/a+b%2Bc.txt"),
        (RESOURCE, "", f"https://k.example/api{RESOURCE}"),
        ("/controlPlane", "", "https://k.example/api/controlPlane/"),
    ],
)
def test_remote_routes_go_through_the_gateway(path: str, query: str, target: str) -> None:
    assert remote_routes("https://k.example/api/").target(path, query) == target


@pytest.mark.parametrize(
    "path", ["/controlPlaneX/v1/project", "/v1/event", "/configuration-service/v1/x", "/", "controlPlane/v1"]
)
def test_only_a_first_segment_equal_to_a_prefix_is_routed(path: str) -> None:
    # the distributor's string-prefix match sent /controlPlaneX/... to the control plane
    assert remote_routes("http://k/api").target(path) is None
    assert in_cluster_routes().target(path) is None


def test_only_the_last_resource_marker_escapes_and_what_comes_before_is_kept() -> None:
    rest = "v1/project/p/stage/s/service/resource/resource/x/y.yaml"
    assert escape_resource_uri(rest) == "v1/project/p/stage/s/service/resource/resource/x%2Fy.yaml"
    assert escape_resource_uri("v1/project/p/resource") == "v1/project/p/resource"


def test_in_cluster_routes_forward_the_path_as_received() -> None:
    routes = in_cluster_routes()
    assert (
        routes.target(f"{RESOURCE}/job%2Fconfig.yaml")
        == "http://resource-service:8080/v1/project/p/stage/s/service/svc/resource/job%2Fconfig.yaml"
    )


def test_the_mode_follows_the_endpoint_setting() -> None:
    assert routes_for(Settings()).bases == in_cluster_routes().bases
    assert routes_for(Settings(keptn_api_endpoint="http://k/api")).escape_resource_uri


async def test_in_cluster_requests_reach_the_three_services_by_name_without_credentials(
    make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=capture_transport(seen)) as in_cluster:
        proxy = await make_proxy(endpoint="", token="", http=in_cluster)
        for path in (
            "/controlPlane/v1/project?pageSize=10",
            f"{RESOURCE}/job%2Fconfig.yaml",
            "/mongodb-datastore/event?keptnContext=c",
        ):
            answer = await caller.get(proxy.url + path, headers={"x-token": "caller-token"})
            assert answer.status_code == 200, answer.text
    assert [str(r.url) for r in seen] == [
        "http://shipyard-controller:8080/v1/project?pageSize=10",
        "http://resource-service:8080/v1/project/p/stage/s/service/svc/resource/job%2Fconfig.yaml",
        "http://mongodb-datastore:8080/event?keptnContext=c",
    ]
    assert all("x-token" not in r.headers and "authorization" not in r.headers for r in seen)
