"""What the proxy tests share: the control plane's seed and token, a proxy under test, and a tiny
upstream that echoes what it was sent."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jes.proxy.scopes import ScopeStore, TaskScope
from jes.proxy.server import ProxyServer

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "control-plane"
TOKEN = "proxy-test-token-7c3a9e"
PROJECT, STAGE, SERVICE = "my-first-project", "dev", "service1"
CONFIG_PATH = f"/resource-service/v1/project/{PROJECT}/stage/{STAGE}/service/{SERVICE}/resource/job%2Fconfig.yaml"
HELLO_APAC: dict[str, Any] = {
    "data": {"project": PROJECT, "stage": STAGE, "service": SERVICE, "sayhello": {"location": "APAC"}},
    "source": "proxy-test",
    "type": "sh.keptn.event.dev.sequence1.triggered",
    "specversion": "1.0",
    "shkeptnspecversion": "0.2.3",
}


@dataclass
class Proxy:
    """A running proxy: its listeners' URLs, its scope store, what it forwarded and logged."""

    server: ProxyServer
    scopes: ScopeStore
    forwarded: list[dict[str, Any]] = field(default_factory=list)
    error_logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.trusted.port}"

    @property
    def task_url(self) -> str:
        assert self.server.task is not None
        return f"http://127.0.0.1:{self.server.task.port}"


def status_changed(scope: TaskScope, **changes: Any) -> dict[str, Any]:
    """A ``.status.changed`` event for the scope's own triggered event (``changes`` override)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "4a1f6a8e-0000-4000-8000-000000000001",
        "source": "my-task",
        "type": scope.status_changed_type,
        "shkeptncontext": scope.keptn_context,
        "triggeredid": scope.triggered_id,
        "data": {"project": scope.project, "stage": scope.stage, "service": scope.service, "status": "succeeded"},
    }
    event.update(changes)
    return event


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class EchoUpstream:
    """An ASGI upstream answering every request with what it received (method, raw path, query,
    headers, body size), and echoing the request's ``x-token`` in a response header too — the
    unkindest control plane for the secret scrubbing. ``requests`` records them all."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        seen = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body_bytes": len(body),
        }
        self.requests.append(seen)
        token = dict(headers).get("x-token", "")
        answer = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"x-echo-token", token.encode("latin-1")),
            (b"connection", b"keep-alive")]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})


def header_values(headers: list[list[str]] | list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def capture_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport that records where each request went and answers 200 ``{}``."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return httpx.MockTransport(handle)
