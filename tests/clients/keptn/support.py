"""Helpers for the control-plane client tests: a scripted HTTP transport, a recording sleep, a fake clock."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from jes.settings import Settings

TOKEN = "tok-7f3a9c-super-secret"
CLIENT_SECRET = "oauth-client-secret-91xq"
ENDPOINT = "http://cp.test/api"

Responder = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None, text: str | None = None
          ) -> httpx.Response:  # fmt: skip
    if text is not None:
        return httpx.Response(status, text=text, headers=headers)
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    responders: list[Responder]
    calls: int = 0


@dataclass
class Script:
    """A MockTransport handler: routes answer with their responders in turn, the last repeats."""

    routes: list[Route] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *responders: Responder) -> Route:
        route = Route(method, re.compile(path), list(responders))
        self.routes.insert(0, route)  # later definitions win
        return route

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in self.routes:
            if route.method == request.method and route.pattern.fullmatch(request.url.path):
                responder = route.responders[min(route.calls, len(route.responders) - 1)]
                route.calls += 1
                if isinstance(responder, Exception):
                    raise responder
                if callable(responder):
                    return responder(request)
                return responder
        return reply(404, text="404 page not found")

    def count(self, method: str, path: str) -> int:
        pattern = re.compile(path)
        return sum(1 for r in self.requests if r.method == method and pattern.fullmatch(r.url.path))

    def bodies(self, method: str, path: str) -> list[Any]:
        pattern = re.compile(path)
        return [json.loads(r.content) for r in self.requests if r.method == method and pattern.fullmatch(r.url.path)]


class RecordingSleep:
    """An injectable sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "keptn_api_endpoint": ENDPOINT,
        "keptn_api_token": TOKEN,
        "k8s_node_name": "node-1",
        "k8s_pod_name": "jes-pod-1",
        "k8s_namespace": "keptn-jes",
        "state_dir": "/nonexistent",
    }
    values.update(overrides)
    return Settings(**values)


class FakeControlPlane:
    """Just enough of the uniform and triggered-events API for poller tests (MockTransport handler).

    ``fail[op]`` holds answers (responses or exceptions) served instead of the real one, in turn;
    ops: ``register``, ``ping``, ``poll``.
    """

    def __init__(self, *, projects: set[str] | None = None) -> None:
        self.integrations: dict[str, dict[str, Any]] = {}
        self.triggered: list[dict[str, Any]] = []
        self.projects = projects
        self.requests: list[httpx.Request] = []
        self.fail: dict[str, list[httpx.Response | Exception]] = {}
        self.on_request: Callable[[httpx.Request], None] | None = None
        self._next_sub = 0

    def add_event(self, event_id: str, event_type: str = "sh.keptn.event.test.triggered", **data: Any) -> None:
        data = {"project": "p", "stage": "dev", "service": "hello"} | data
        self.triggered.insert(0, {"id": event_id, "type": event_type, "shkeptncontext": "ctx", "data": data})

    def remove_event(self, event_id: str) -> None:
        self.triggered = [e for e in self.triggered if e["id"] != event_id]

    def subscribe(self, integration_id: str, event: str, **filter_: list[str] | None) -> str:
        self._next_sub += 1
        sub_id = f"sub-{self._next_sub}"
        self.integrations[integration_id]["subscriptions"].append({"id": sub_id, "event": event, "filter": filter_})
        return sub_id

    def unsubscribe(self, integration_id: str, event: str) -> None:
        subs = self.integrations[integration_id]["subscriptions"]
        subs[:] = [s for s in subs if s["event"] != event]

    def count(self, op: str) -> int:
        return sum(1 for r in self.requests if _op(r) == op)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request(request)
        op = _op(request)
        pending = self.fail.get(op)
        if pending:
            answer = pending.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if op == "register":
            return self._register(json.loads(request.content))
        if op == "ping":
            integration = self.integrations.get(request.url.path.split("/")[-2])
            if integration is None:
                return reply(404, {"code": 404, "message": "uniform integration not found"})
            return reply(200, integration)
        if op == "poll":
            return self._poll(request)
        return reply(404, text="404 page not found")

    def _register(self, body: dict[str, Any]) -> httpx.Response:
        meta = body["metadata"]
        key = f"{body['name']}-{meta['kubernetesmetadata']['namespace']}-{meta['hostname']}"
        integration_id = hashlib.sha1(key.encode()).hexdigest()
        if integration_id in self.integrations:
            return reply(200, {"id": integration_id})
        subscriptions = []
        for sub in body["subscriptions"]:
            self._next_sub += 1
            subscriptions.append({"id": f"sub-{self._next_sub}", "event": sub["event"], "filter": sub["filter"]})
        self.integrations[integration_id] = {"id": integration_id, **body, "subscriptions": subscriptions}
        return reply(201, {"id": integration_id})

    def _poll(self, request: httpx.Request) -> httpx.Response:
        event_type = request.url.path.rsplit("/", 1)[1]
        params = request.url.params
        if self.projects is not None and "project" in params and params["project"] not in self.projects:
            return reply(404, {"code": 404, "message": "project not found"})
        events = [
            e
            for e in self.triggered
            if e["type"] == event_type
            and all(e["data"].get(k) == params[k] for k in ("project", "stage", "service") if k in params)
        ]
        return reply(200, {"events": events, "nextPageKey": "0"})


def _op(request: httpx.Request) -> str:
    path = request.url.path
    if request.method == "POST" and path.endswith("/uniform/registration"):
        return "register"
    if request.method == "PUT" and path.endswith("/ping"):
        return "ping"
    if request.method == "GET" and "/event/triggered/" in path:
        return "poll"
    return "other"
