"""The resource-service: levels, versions per commit, gateway decoding, listing, writing."""

from __future__ import annotations

import base64

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

BASE = "/resource-service/v1/project/my-first-project"
SERVICE = f"{BASE}/stage/dev/service/service1/resource"
CONFIG = (helpers.SEED / "my-first-project/dev/service1/resources/job/config.yaml").read_bytes()


def content(reply: httpx.Response) -> bytes:
    assert reply.status_code == 200, reply.text
    return base64.b64decode(reply.json()["resourceContent"])


def test_the_seeded_config_through_the_gateway(client: httpx.Client) -> None:
    reply = client.get(f"{SERVICE}/job%252Fconfig.yaml")

    assert content(reply) == CONFIG
    body = reply.json()
    assert body["resourceURI"] == "job%2Fconfig.yaml"
    assert len(body["metadata"]["version"]) == 40


def test_a_singly_encoded_slash_gets_the_plain_404_of_the_gateway(client: httpx.Client) -> None:
    reply = client.get(f"{SERVICE}/job%2Fconfig.yaml")

    assert reply.status_code == 404
    assert reply.text == "404 page not found"


def test_the_configuration_service_alias(client: httpx.Client) -> None:
    path = "/configuration-service/v1/project/my-first-project/stage/dev/service/service1/resource/job%252Fconfig.yaml"

    assert content(client.get(path)) == CONFIG


@pytest.mark.parametrize("uri", ["..%252Fsecrets", "job%252F..%252Fx", "~root", "%257Eroot"])
def test_dot_dot_and_tilde_are_400(client: httpx.Client, uri: str) -> None:
    reply = client.get(f"{SERVICE}/{uri}")

    assert reply.status_code == 400
    assert reply.json()["code"] == 400


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/resource-service/v1/project/nope/resource/x", "Project not found"),
        (f"{BASE}/stage/prod/resource/x", "Stage not found"),
        (f"{BASE}/stage/dev/service/nope/resource/x", "Service not found"),
        (f"{SERVICE}/nothing.yaml", "Resource not found"),
        (f"{BASE}/stage/dev/resource/job%252Fconfig.yaml", "Resource not found"),
        (f"{BASE}/resource/job%252Fconfig.yaml", "Resource not found"),
    ],
)
def test_404_messages(client: httpx.Client, path: str, message: str) -> None:
    reply = client.get(path)

    assert reply.status_code == 404
    assert reply.json() == {"code": 404, "message": message}


def test_the_shipyard_is_a_project_resource(client: httpx.Client) -> None:
    shipyard = (helpers.SEED / "my-first-project/shipyard.yaml").read_bytes()

    assert content(client.get(f"{BASE}/resource/shipyard.yaml")) == shipyard


def test_every_write_is_a_commit_and_commits_read_history(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    old_version = client.get(f"{SERVICE}/job%252Fconfig.yaml").json()["metadata"]["version"]

    new_version = cp.put_resource(
        project="my-first-project", stage="dev", service="service1", uri="job/config.yaml", content=b"new"
    )
    cp.put_resource(project="my-first-project", stage="dev", service="service1", uri="extra.txt", content=b"x")

    assert new_version != old_version
    assert content(client.get(f"{SERVICE}/job%252Fconfig.yaml")) == b"new"
    assert content(client.get(f"{SERVICE}/job%252Fconfig.yaml", params={"gitCommitID": old_version})) == CONFIG
    pinned = client.get(f"{SERVICE}/job%252Fconfig.yaml", params={"gitCommitID": new_version})
    assert content(pinned) == b"new" and pinned.json()["metadata"]["version"] == new_version
    missing_then = client.get(f"{SERVICE}/extra.txt", params={"gitCommitID": old_version})
    assert missing_then.status_code == 404 and missing_then.json()["message"] == "Resource not found"
    unknown = client.get(f"{SERVICE}/job%252Fconfig.yaml", params={"gitCommitID": "0" * 40})
    assert unknown.status_code == 404


def test_a_sequence_pins_the_commit_of_its_start(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    helpers.send(client, helpers.hello())
    cp.wait_idle()
    (task,) = helpers.triggered(client, helpers.SAYHELLO_TRIGGERED)

    cp.put_resource(project="my-first-project", stage="dev", service="service1", uri="job/config.yaml", content=b"v2")

    pinned = client.get(f"{SERVICE}/job%252Fconfig.yaml", params={"gitCommitID": task["gitcommitid"]})
    assert content(pinned) == CONFIG
    assert content(client.get(f"{SERVICE}/job%252Fconfig.yaml")) == b"v2"


def test_levels_are_separate(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.put_resource(project="my-first-project", stage=None, service=None, uri="job/config.yaml", content=b"project")
    cp.put_resource(project="my-first-project", stage="dev", service=None, uri="job/config.yaml", content=b"stage")

    assert content(client.get(f"{BASE}/resource/job%252Fconfig.yaml")) == b"project"
    assert content(client.get(f"{BASE}/stage/dev/resource/job%252Fconfig.yaml")) == b"stage"
    assert content(client.get(f"{SERVICE}/job%252Fconfig.yaml")) == CONFIG


def test_put_resource_creates_what_is_missing(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    cp.put_resource(project="fresh", stage="qa", service="svc", uri="a b+c.txt", content=b"odd name")

    path = "/resource-service/v1/project/fresh/stage/qa/service/svc/resource/a%2520b%252Bc.txt"
    assert content(client.get(path)) == b"odd name"


def test_lists_have_leading_slashes_and_pages(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    for index in range(25):
        cp.put_resource(
            project="my-first-project", stage="dev", service="service1", uri=f"files/f{index:02}", content=b""
        )

    first = client.get(SERVICE).json()
    second = client.get(SERVICE, params={"nextPageKey": first["nextPageKey"]}).json()

    uris = [r["resourceURI"] for r in first["resources"] + second["resources"]]
    assert first["totalCount"] == 26 and first["nextPageKey"] == "20" and second["nextPageKey"] == "0"
    assert uris[0] == "/files/f00" and "/job/config.yaml" in uris and len(set(uris)) == 26
    head = client.get(f"{SERVICE}/job%252Fconfig.yaml").json()["metadata"]["version"]
    assert {r["metadata"]["version"] for r in first["resources"]} == {head}
    project_level = client.get(f"{BASE}/resource").json()
    assert [r["resourceURI"] for r in project_level["resources"]] == ["/shipyard.yaml"]
    assert client.get(f"{BASE}/stage/dev/resource").json() == {"resources": [], "nextPageKey": "0"}


def test_write_endpoints(client: httpx.Client) -> None:
    def encoded(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    created = client.post(
        f"{BASE}/stage/dev/resource", json={"resources": [{"resourceURI": "/a.yaml", "resourceContent": encoded("A")}]}
    )
    assert created.status_code == 201 and len(created.json()["commitID"]) == 40
    updated = client.put(f"{BASE}/stage/dev/resource/a.yaml", json={"resourceContent": encoded("B")})
    assert updated.status_code == 200 and updated.json()["commitID"] != created.json()["commitID"]
    assert content(client.get(f"{BASE}/stage/dev/resource/a.yaml")) == b"B"
    put_many = client.put(
        f"{BASE}/stage/dev/resource", json={"resources": [{"resourceURI": "b", "resourceContent": ""}]}
    )
    assert put_many.status_code == 200
    assert client.delete(f"{BASE}/stage/dev/resource/a.yaml").status_code == 200
    assert client.get(f"{BASE}/stage/dev/resource/a.yaml").status_code == 404
    assert client.delete(f"{BASE}/stage/dev/resource/a.yaml").status_code == 404
    assert client.put(f"{BASE}/stage/dev/resource/x", json={"resourceContent": "%%%"}).status_code == 400
    assert client.post(f"{BASE}/stage/dev/resource", json={"resources": []}).status_code == 400
    assert client.post(f"{BASE}/stage/dev/resource", content=b"{").status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/resource-service/v1/project/my-first-project/service/service1/resource/x",
        "/resource-service/v1/project/my-first-project/stage/dev/resource/a/b",
        "/resource-service/v1/project//resource/x",
        "/resource-service/v2/project/my-first-project/resource/x",
        "/resource-service/v1/project/my-first-project/resource/",
    ],
)
def test_paths_that_match_no_route_get_the_plain_404(client: httpx.Client, path: str) -> None:
    reply = client.get(path)

    assert reply.status_code == 404
    assert reply.text == "404 page not found"


def test_put_resource_refuses_a_service_without_a_stage(cp: server.LocalControlPlane) -> None:
    with pytest.raises(ValueError, match="needs a stage"):
        cp.put_resource(project="my-first-project", stage=None, service="service1", uri="x", content=b"")
