"""``jes serve`` with API_PROXY_PORT: the distributor's proxy and /event beside the executor, in
polling mode (POST /v1/event with the token) and in NATS mode (published to NATS)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from tests.natsserver import NatsServer, through_proxy
from tests.service.support import jes_settings, put_config, running, sequence_done, trigger_body, wait_until
from tests.service.test_nats_mode import nats_overrides


def status_event(context: str, triggered_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "my-sidecar",
        "type": "sh.keptn.event.sayhello.status.changed",
        "shkeptncontext": context,
        "triggeredid": triggered_id,
        "data": {"project": "my-first-project", "stage": "dev", "service": "service1", "message": "half way"},
    }


def found(plane: LocalControlPlane, context: str) -> bool:
    return any(e["source"] == "my-sidecar" for e in plane.events(keptn_context=context))


async def test_the_proxy_adds_the_token_and_event_forwarding_posts(plane: LocalControlPlane, tmp_path: Path) -> None:
    current = jes_settings(plane, tmp_path / "state", api_proxy_port=0)
    async with running(current) as service:
        assert service.api_proxy is not None
        port = service.api_proxy.server.trusted.port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as sidecar:
            projects = await sidecar.get("/controlPlane/v1/project")
            assert projects.status_code == 200, projects.text
            assert plane.token not in projects.text
            context = plane.trigger_sequence(trigger_body(location="nowhere"))
            answer = await sidecar.post("/event", json=status_event(context, "t-1"))
            assert answer.status_code == 200, answer.text
            assert (await sidecar.get("/nope")).status_code == 404
    assert found(plane, context)


async def test_in_nats_mode_event_forwarding_publishes(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path
) -> None:
    current = jes_settings(nats_plane, tmp_path / "state", api_proxy_port=0, **nats_overrides(nats))
    async with running(current) as service:
        await wait_until(lambda: bool(service.intake.subscriber and service.intake.subscriber.ready),
                         what="the NATS subscription")  # fmt: skip
        assert service.api_proxy is not None
        port = service.api_proxy.server.trusted.port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as sidecar:
            resources = await sidecar.get("/resource-service/v1/project/my-first-project/stage/dev/service/service1/resource")
            assert resources.status_code == 200, resources.text  # reached resource-service:8080 in-cluster
            context = str(uuid.uuid4())
            answer = await sidecar.post("/event", json=status_event(context, "t-2"))
            assert answer.status_code == 200, answer.text
        await wait_until(lambda: found(nats_plane, context), what="the event published to NATS")


TASK_SCRIPT = r"""
import json, os, urllib.request, urllib.error, uuid
def send(context):
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "the-task",
             "type": "sh.keptn.event.sayhello.status.changed", "shkeptncontext": context,
             "triggeredid": os.environ["TRIGGERED"],
             "data": {"project": "my-first-project", "stage": "dev", "service": "service1", "message": "half way"}}
    request = urllib.request.Request(os.environ["KEPTN_API_PROXY_URL"] + "/event", data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json", "x-token": os.environ["KEPTN_API_PROXY_TOKEN"]})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()[:80]}"
print("own:", send(os.environ["CONTEXT"]))
print("other:", send(str(uuid.uuid4())))
"""


def proxy_task_config() -> str:
    script = "".join(f"            {line}\n" for line in TASK_SCRIPT.strip().splitlines())
    return (
        "apiVersion: v2\nactions:\n  - name: talk\n    events: [{name: sh.keptn.event.sayhello.triggered}]\n"
        "    tasks:\n      - name: talk\n        image: python\n"
        "        env:\n          - {name: CONTEXT, value: $.shkeptncontext, valueFrom: event}\n"
        "          - {name: TRIGGERED, value: $.id, valueFrom: event}\n"
        f"        cmd: [python3, -c]\n        args:\n          - |\n{script}"
    )


async def test_a_task_with_its_scoped_token_reports_progress_for_its_own_event_only(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    from tests.natsserver import free_port

    put_config(plane, proxy_task_config())
    current = jes_settings(plane, tmp_path / "state", api_proxy_port=0, api_proxy_task_port=free_port())
    async with running(current) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context), what="the sequence")
        assert service.api_proxy is not None and service.api_proxy.scopes is not None
    [finished] = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)
    message = finished["data"]["message"]
    assert "own: 200" in message and "other: 403" in message, message
    assert [e["source"] for e in plane.events(keptn_context=context) if e["source"] == "the-task"] == ["the-task"]
    assert plane.token not in message


async def test_remote_mode_honours_http_proxy(plane: LocalControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KEPTN_API_ENDPOINT names a host nobody resolves; HTTP_PROXY leads to the control plane (as a
    corporate proxy would): every control-plane call goes through it, with the token."""
    through_proxy(monkeypatch, plane.base_url)
    current = jes_settings(plane, tmp_path / "state", keptn_api_endpoint="http://keptn.example.invalid/api")
    async with running(current):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context), what="the sequence, through the proxy")
    assert plane.integrations()


async def test_an_error_log_event_becomes_an_entry_of_jes_s_error_log(plane: LocalControlPlane, tmp_path: Path) -> None:
    current = jes_settings(plane, tmp_path / "state", api_proxy_port=0)
    async with running(current) as service:
        await wait_until(lambda: service.poller.integration_id is not None, what="registration")
        assert service.api_proxy is not None
        port = service.api_proxy.server.trusted.port
        error = status_event("ctx-1", "t-1") | {"type": "sh.keptn.log.error", "gitcommitid": "abc"}
        error["data"] = error["data"] | {"message": "the sidecar broke", "task": "sayhello"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as sidecar:
            assert (await sidecar.post("/event", json=error)).status_code == 200
        await wait_until(lambda: bool(plane.logs(service.poller.integration_id)), what="the log entry")
        [entry] = plane.logs(service.poller.integration_id)
    assert (entry["message"], entry["task"], entry["shkeptncontext"], entry["triggeredid"]) == (
        "the sidecar broke", "sayhello", "ctx-1", "t-1")  # fmt: skip
    assert entry["gitcommitid"] == "abc" and not found(plane, "ctx-1")  # logged, never sent on
