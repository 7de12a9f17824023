"""Shared values and small builders for the local control plane tests."""

from __future__ import annotations

import copy
import ssl
from pathlib import Path
from typing import Any

import httpx

#: One TLS context for every client in these tests (creating one is the slow part of a client).
SSL_CONTEXT = ssl.create_default_context()
REPO = Path(__file__).resolve().parents[3]
SEED = REPO / "examples" / "control-plane"
TOKEN = "cp-test-token-5e1d"
PROJECT = "my-first-project"
SAYHELLO_TRIGGERED = "sh.keptn.event.sayhello.triggered"

#: The body of the user's hello-world curl (trigger-apac.json).
HELLO_APAC: dict[str, Any] = {
    "data": {
        "labels": {"foo": "bar - labels are optional"},
        "project": "my-first-project",
        "service": "service1",
        "stage": "dev",
        "sayhello": {"location": "APAC"},
    },
    "source": "postman",
    "type": "sh.keptn.event.dev.sequence1.triggered",
    "specversion": "1.0",
    "shkeptnspecversion": "0.2.3",
}

#: A project with a multi-task sequence, properties, a delayed task and a follow-up sequence.
PIPELINE_SHIPYARD = """\
apiVersion: spec.keptn.sh/0.2.2
kind: Shipyard
metadata:
  name: shipyard-pipeline
spec:
  stages:
    - name: dev
      sequences:
        - name: delivery
          tasks:
            - name: deployment
              properties:
                deploymentstrategy: direct
            - name: test
              properties:
                teststrategy: functional
        - name: delayed
          tasks:
            - name: wait
              triggeredAfter: 10m
        - name: empty
    - name: prod
      sequences:
        - name: delivery
          triggeredOn:
            - event: dev.delivery.finished
          tasks:
            - name: release
"""


def hello(location: str = "APAC", **data: Any) -> dict[str, Any]:
    body = copy.deepcopy(HELLO_APAC)
    body["data"]["sayhello"]["location"] = location
    body["data"].update(data)
    return body


def sequence_trigger(project: str, stage: str, sequence: str, service: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "source": "tests",
        "type": f"sh.keptn.event.{stage}.{sequence}.triggered",
        "data": {"project": project, "stage": stage, "service": service, **data},
    }


def response(triggered: dict[str, Any], kind: str, source: str = "jes", **data: Any) -> dict[str, Any]:
    """A ``.started`` / ``.finished`` answer to a task ``.triggered`` event."""
    task = triggered["type"].split(".")[3]
    payload = {k: triggered["data"][k] for k in ("project", "stage", "service")}
    if kind == "finished":
        payload.update(status="succeeded", result="pass")
    payload.update(data)
    return {
        "specversion": "1.0",
        "source": source,
        "type": f"sh.keptn.event.{task}.{kind}",
        "shkeptncontext": triggered["shkeptncontext"],
        "triggeredid": triggered["id"],
        "shkeptnspecversion": "0.2.4",
        "data": payload,
    }


def triggered(client: httpx.Client, event_type: str, **params: Any) -> list[dict[str, Any]]:
    reply = client.get(f"/controlPlane/v1/event/triggered/{event_type}", params=params)
    assert reply.status_code == 200, reply.text
    events: list[dict[str, Any]] = reply.json()["events"]
    return events


def send(client: httpx.Client, body: dict[str, Any]) -> str:
    reply = client.post("/v1/event", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["keptnContext"])
