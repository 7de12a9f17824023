"""Projects and services over HTTP (the shipyard-controller's project API)."""

from __future__ import annotations

import base64

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

PROJECTS = "/controlPlane/v1/project"


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_create_a_project_and_a_service_then_run_a_sequence(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    created = client.post(PROJECTS, json={"name": "pipeline", "shipyard": encoded(helpers.PIPELINE_SHIPYARD)})
    service = client.post(f"{PROJECTS}/pipeline/service", json={"serviceName": "api"})

    assert (created.status_code, service.status_code) == (201, 201)
    project = client.get(f"{PROJECTS}/pipeline").json()
    assert project["shipyard"] == helpers.PIPELINE_SHIPYARD
    assert [s["stageName"] for s in project["stages"]] == ["dev", "prod"]
    assert project["stages"][1]["services"] == [{"serviceName": "api"}]
    listed = client.get(PROJECTS).json()
    assert [p["projectName"] for p in listed["projects"]] == ["my-first-project", "pipeline"]
    helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "api"))
    cp.wait_idle()
    assert len(helpers.triggered(client, "sh.keptn.event.deployment.triggered", project="pipeline")) == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "my-first-project", "shipyard": encoded(helpers.PIPELINE_SHIPYARD)}, 409, "already exists"),
        ({"name": "Bad_Name", "shipyard": encoded(helpers.PIPELINE_SHIPYARD)}, 400, "project name"),
        ({"name": "p", "shipyard": "not base64!"}, 400, "base64"),
        ({"name": "p", "shipyard": encoded("kind: Nope")}, 400, "invalid shipyard"),
        ({"name": "p"}, 400, "shipyard must be set"),
    ],
)
def test_invalid_projects(client: httpx.Client, body: dict[str, str], status: int, message: str) -> None:
    reply = client.post(PROJECTS, json=body)

    assert reply.status_code == status
    assert message in reply.json()["message"]


def test_invalid_services(client: httpx.Client) -> None:
    assert client.post(f"{PROJECTS}/my-first-project/service", json={"serviceName": "service1"}).status_code == 409
    assert client.post(f"{PROJECTS}/nope/service", json={"serviceName": "x"}).status_code == 404
    assert client.post(f"{PROJECTS}/my-first-project/service", json={"serviceName": ""}).status_code == 400
