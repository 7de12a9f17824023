"""Helpers for the distributor tests: a recipient over real HTTP, the distributor in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jes.commands.distributor import Distributor
from jes.devtools.controlplane.server import LocalControlPlane
from jes.devtools.doubles.server import ThreadedServer
from jes.distributor import config

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "control-plane"
TOKEN = "distributor-tests-s3cret"
TOPIC = "sh.keptn.event.sayhello.triggered"
SEQUENCE_FINISHED = "sh.keptn.event.dev.sequence1.finished"
NAME = "my-integration"
FAST = {"backoff_s": (0.02, 0.04, 0.06), "deadline_s": 2.0}


def trigger_body(location: str = "APAC") -> dict[str, Any]:
    return {
        "data": {"project": "my-first-project", "stage": "dev", "service": "service1", "sayhello": {"location": location}},
        "source": "tests",
        "type": "sh.keptn.event.dev.sequence1.triggered",
        "specversion": "1.0",
        "shkeptnspecversion": "0.2.3",
    }


@dataclass
class Received:
    headers: dict[str, str]
    event: dict[str, Any]


@dataclass
class RecordingRecipient:
    """The integration beside the distributor: records every POST; answers ``statuses`` in turn
    (then 200), each after ``delay_s``; ``on_event`` runs for each event it took (200)."""

    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    on_event: Callable[[dict[str, Any]], None] | None = None
    received: list[Received] = field(default_factory=list)
    in_flight_max: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    def events(self, event_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.received if event_id is None or r.event.get("id") == event_id]

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.received.append(Received(headers, json.loads(body)))
            status = self.statuses.pop(0) if self.statuses else 200
            self._in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self._in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            with self._lock:
                self._in_flight -= 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        if status == 200 and self.on_event is not None:
            threading.Thread(target=self.on_event, args=(json.loads(body),), daemon=True).start()

    def __enter__(self) -> RecordingRecipient:
        self._server = ThreadedServer(lambda: self._app, name="test-recipient", interface="asgi3")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()


def environment(plane: LocalControlPlane | None, recipient: RecordingRecipient, **extra: str) -> dict[str, str]:
    """A distributor in HTTP mode against ``plane`` (NATS mode with ``plane=None``), registered,
    with short intervals."""
    env = {
        "PUBSUB_TOPIC": TOPIC,
        "PUBSUB_RECIPIENT": "127.0.0.1",
        "PUBSUB_RECIPIENT_PORT": str(recipient.port),
        "API_PROXY_PORT": "0",
        "HTTP_POLLING_INTERVAL": "0",
        "HEARTBEAT_INTERVAL": "200ms",
        "K8S_DEPLOYMENT_NAME": NAME,
        "K8S_NAMESPACE": "keptn-tests",
        "K8S_POD_NAME": f"{NAME}-0",
        "K8S_NODE_NAME": "node-1",
        "VERSION": "1.2.3",
    }
    if plane is not None:
        env |= {"KEPTN_API_ENDPOINT": plane.url, "KEPTN_API_TOKEN": plane.token}
    return env | extra


@contextlib.asynccontextmanager
async def running(env: dict[str, str], **options: Any) -> AsyncIterator[Distributor]:
    """The distributor of ``env`` running in this loop until the block ends (then stopped as by
    SIGTERM; it must exit 0)."""
    options = {"recipient_options": FAST, "registration_pause_s": 0.05} | options
    distributor = Distributor(config.load(env), **options)
    stop = asyncio.Event()
    task = asyncio.create_task(distributor.run(stop))
    waiting = asyncio.create_task(distributor.running.wait())
    await asyncio.wait({task, waiting}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        task.result()
    assert distributor.running.is_set(), "the distributor did not start"
    try:
        yield distributor
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0


def proxy_url(distributor: Distributor, path: str = "/event") -> str:
    return f"http://127.0.0.1:{distributor.proxy.trusted.port}{path}"


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def reply(triggered: dict[str, Any], kind: str, **data: Any) -> dict[str, Any]:
    """What an integration sends back for ``triggered`` (``started``, ``finished``, ...)."""
    task = triggered["type"].removeprefix("sh.keptn.event.").removesuffix(".triggered")
    given = triggered["data"]
    return {
        "specversion": "1.0", "id": f"{kind}-{triggered['id']}", "source": NAME, "type": f"sh.keptn.event.{task}.{kind}",
        "datacontenttype": "application/json", "shkeptncontext": triggered["shkeptncontext"], "triggeredid": triggered["id"],
        "data": {"project": given["project"], "stage": given["stage"], "service": given["service"], **data},
    }  # fmt: skip


def sequence_done(plane: LocalControlPlane, context: str) -> bool:
    return bool(plane.events(type=SEQUENCE_FINISHED, keptn_context=context))


def subscription_id(plane: LocalControlPlane) -> str:
    [integration] = [i for i in plane.integrations() if i["name"] == NAME]
    [subscription] = integration["subscriptions"]
    return str(subscription["id"])
