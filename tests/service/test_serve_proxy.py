"""``jes serve`` with API_PROXY_PORT: the distributor's proxy and /event beside the executor, in
polling mode (POST /v1/event with the token) and in NATS mode (published to NATS)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from jes.devtools.controlplane.server import LocalControlPlane
from tests.natsserver import NatsServer
from tests.service.support import jes_settings, running, trigger_body, wait_until
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
