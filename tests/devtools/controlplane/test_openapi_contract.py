"""Our request models against Keptn's own swagger files (only where ../shared has them).

Keptn's OpenAPI files are reference material outside this repository (a user's clone has no
``../shared``), so this test skips without them. It checks both directions we can: sample
bodies that our pydantic models accept validate against the swagger definitions, fields the
swagger marks required are required by our models, and the answers the local control plane
gives validate against the swagger response schemas. Swagger 2.0 cannot say "nullable" while Go
reads ``null`` as the empty value, so nulls are dropped before validating.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from jes.devtools.controlplane import models, server
from tests.devtools.controlplane import helpers

SPECS = helpers.REPO.parent / "shared" / "reference" / "keptn-specs"
pytestmark = pytest.mark.skipif(not SPECS.is_dir(), reason="Keptn's swagger files live in ../shared (not in CI)")


def load(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((SPECS / f"{name}.swagger.yaml").read_text())
    return spec


def resolve(node: Any, spec: dict[str, Any], depth: int = 0) -> Any:
    """Inline every ``#/definitions/...`` reference and drop ``x-`` extensions."""
    assert depth < 30, "reference cycle"
    if isinstance(node, list):
        return [resolve(item, spec, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        return resolve(spec["definitions"][name], spec, depth + 1)
    return {key: resolve(value, spec, depth + 1) for key, value in node.items() if not key.startswith("x-")}


def schema(spec_name: str, definition: str) -> dict[str, Any]:
    spec = load(spec_name)
    resolved: dict[str, Any] = resolve(spec["definitions"][definition], spec)
    return resolved


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def validate(instance: Any, against: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(against).validate(drop_nulls(instance))


STARTED = helpers.response(
    {"type": helpers.SAYHELLO_TRIGGERED, "shkeptncontext": "c", "id": "i", "data": helpers.HELLO_APAC["data"]},
    "started",
)
FINISHED = {**STARTED, "type": "sh.keptn.event.sayhello.finished", "time": "2023-12-21T10:00:02.000Z",
            "gitcommitid": "7a1c0e5b", "data": {**STARTED["data"], "status": "succeeded", "result": "pass"}}  # fmt: skip
REGISTRATION: dict[str, Any] = {
    "name": "job-executor-service",
    "metadata": {
        "hostname": "node-1",
        "integrationversion": "1.0.0",
        "distributorversion": "0.15.0",
        "location": "remote-execution-plane",
        "kubernetesmetadata": {"namespace": "keptn-jes", "podname": "jes-1", "deploymentname": "job-executor-service"},
    },
    "subscriptions": [
        {"event": "sh.keptn.event.sayhello.triggered", "filter": {"projects": None, "stages": None, "services": None}},
        {"event": "sh.keptn.event.test.triggered", "filter": {"projects": ["p"], "stages": ["dev"], "services": ["s"]}},
    ],
}
LOGS = {"logs": [{"integrationid": "abc", "message": "m", "time": "2023-12-21T10:00:02.000Z", "shkeptncontext": "c",
                  "task": "sayhello", "triggeredid": "t", "gitcommitid": "g"}]}  # fmt: skip

REQUEST_SAMPLES: list[tuple[type[BaseModel], dict[str, Any], str, str]] = [
    (models.IncomingEvent, helpers.HELLO_APAC, "api-service", "keptnContextExtendedCE"),
    (models.IncomingEvent, STARTED, "api-service", "keptnContextExtendedCE"),
    (models.IncomingEvent, FINISHED, "api-service", "keptnContextExtendedCE"),
    (models.IncomingEvent, FINISHED, "shipyard-controller", "models.KeptnContextExtendedCE"),
    (models.Registration, REGISTRATION, "shipyard-controller", "models.Integration"),
    (models.EventSubscription, REGISTRATION["subscriptions"][1], "shipyard-controller", "models.EventSubscription"),
    (models.CreateLogsRequest, LOGS, "shipyard-controller", "models.CreateLogsRequest"),
    (models.CreateProject, {"name": "p", "shipyard": "YQ=="}, "shipyard-controller", "models.CreateProjectParams"),
    (models.CreateService, {"serviceName": "svc"}, "shipyard-controller", "models.CreateServiceParams"),
    (
        models.SequenceControl,
        {"state": "abort", "stage": "dev"},
        "shipyard-controller",
        "models.SequenceControlCommand",
    ),
]


@pytest.mark.parametrize(("model", "sample", "spec", "definition"), REQUEST_SAMPLES)
def test_bodies_our_models_accept_are_valid_for_keptn(
    model: type[BaseModel], sample: dict[str, Any], spec: str, definition: str
) -> None:
    model.model_validate(sample)

    validate(sample, schema(spec, definition))


@pytest.mark.parametrize(
    ("model", "sample", "spec", "definition"),
    [
        (models.IncomingEvent, helpers.HELLO_APAC, "api-service", "keptnContextExtendedCE"),
        (models.SequenceControl, {"state": "abort"}, "shipyard-controller", "models.SequenceControlCommand"),
    ],
)
def test_fields_keptn_requires_are_required_by_our_models(
    model: type[BaseModel], sample: dict[str, Any], spec: str, definition: str
) -> None:
    required = schema(spec, definition)["required"]
    assert required
    for field in required:
        incomplete = {k: v for k, v in sample.items() if k != field}
        with pytest.raises(ValidationError):
            model.model_validate(incomplete)


def test_the_answers_match_keptns_response_schemas(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    api, shipyard, datastore = load("api-service"), load("shipyard-controller"), load("mongodb-datastore")

    def check(reply: httpx.Response, spec: dict[str, Any], path: str, method: str = "get") -> Any:
        responses = spec["paths"][path][method]["responses"]
        response = responses.get(reply.status_code) or responses[str(reply.status_code)]
        body = reply.json() if reply.content else None
        if "schema" in response:
            validate(body, resolve(response["schema"], spec))
        return body

    context = check(client.post("/v1/event", json=helpers.hello()), api, "/event", "post")["keptnContext"]
    check(client.post("/v1/event", content=b"{"), api, "/event", "post")
    check(client.get("/v1/metadata"), api, "/metadata")
    cp.wait_idle()
    for event in helpers.triggered(client, helpers.SAYHELLO_TRIGGERED):
        validate(event, schema("shipyard-controller", "models.KeptnContextExtendedCE"))
    check(
        client.get("/controlPlane/v1/event/triggered/x", params={"project": "nope"}),
        shipyard,
        "/event/triggered/{eventType}",
    )

    integration_id = check(client.post("/controlPlane/v1/uniform/registration", json=REGISTRATION), shipyard,
                           "/uniform/registration", "post")["id"]  # fmt: skip
    check(client.post("/controlPlane/v1/uniform/registration", json={}), shipyard, "/uniform/registration", "post")
    check(client.get("/controlPlane/v1/uniform/registration"), shipyard, "/uniform/registration")
    ping = f"/uniform/registration/{integration_id}/ping"
    check(client.put(f"/controlPlane/v1{ping}"), shipyard, "/uniform/registration/{integrationID}/ping", "put")
    check(client.put("/controlPlane/v1/uniform/registration/nope/ping"), shipyard,
          "/uniform/registration/{integrationID}/ping", "put")  # fmt: skip
    subscriptions = f"/controlPlane/v1/uniform/registration/{integration_id}/subscription"
    check(client.get(subscriptions), shipyard, "/uniform/registration/{integrationID}/subscription")
    sub_id = client.get(subscriptions).json()[0]["id"]
    check(
        client.get(f"{subscriptions}/{sub_id}"),
        shipyard,
        "/uniform/registration/{integrationID}/subscription/{subscriptionID}",
    )

    client.post("/controlPlane/v1/log", json=LOGS)
    check(client.get("/controlPlane/v1/log"), shipyard, "/log")
    check(client.get("/controlPlane/v1/project/my-first-project"), shipyard, "/project/{project}")
    check(client.get("/controlPlane/v1/project"), shipyard, "/project")
    check(client.get("/controlPlane/v1/sequence/my-first-project", params={"keptnContext": context}), shipyard,
          "/sequence/{project}")  # fmt: skip
    check(client.get("/mongodb-datastore/event", params={"keptnContext": context}), datastore, "/event")
    check(client.get("/mongodb-datastore/event"), datastore, "/event")


def test_the_error_shape_is_keptns() -> None:
    error = schema("api-service", "error")
    for body in (
        {"code": 401, "message": "incorrect api key auth"},
        {"code": 602, "message": "data in body is required"},
    ):
        validate(copy.deepcopy(body), error)
    with pytest.raises(jsonschema.ValidationError):
        validate({"code": 400}, error)


def test_the_specs_are_read_from_outside_the_repository() -> None:
    assert helpers.REPO not in SPECS.parents and Path(SPECS).is_dir()
