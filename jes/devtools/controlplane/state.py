"""All state of the local control plane behind one lock, and the pump that processes events.

The HTTP handlers and the Python API (:class:`server.LocalControlPlane`) call these methods from
different threads; each takes the lock for the few microseconds it needs. ``POST /v1/event``
records the event (the datastore's HTTP API shows it only after the ingestion lag, as Keptn's
asynchronous datastore does: :class:`datastore.IngestionModel`) and queues it; queued events reach
the shipyard-controller in order — the asynchronous-but-fast processing of Keptn — from the
server's event loop soon after the answer (:meth:`ControlPlaneState.drain`) or from a background
thread (the pump), which also times out tasks and expires integrations every 50 ms by the
(possibly fake) clock.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jes import errors
from jes.devtools.controlplane import datastore, keptntime, models, projects, resources, sequences, uniform
from jes.devtools.doubles import clock

logger = logging.getLogger(__name__)

TICK_INTERVAL_S = 0.05
#: Triggered-event polls remembered per event type (for :meth:`ControlPlaneState.poll_times`).
MAX_POLL_TIMES = 100_000
#: ``source`` the api-service puts on events whose source is not a URI reference.
DEFAULT_SOURCE = "https://github.com/keptn/keptn/api"

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def is_uri_reference(text: str) -> bool:
    """Whether Go's ``url.Parse`` accepts ``text`` (what the api-service checks ``source`` with)."""
    if _CONTROL_CHARACTER.search(text) or _BAD_ESCAPE.search(text):
        return False
    if _SCHEME.match(text):
        return True
    return not text.startswith(":") and ":" not in text.split("/", 1)[0]


def keptn_context(given: str | None) -> str:
    """The api-service's rule: keep a UUID, derive one from any other string, else a new one.

    A non-UUID string becomes the version-4 UUID whose random bytes are the string's first 16
    bytes (space-padded to 16 characters), so the same string always yields the same context.
    """
    if not given:
        return str(uuid.uuid4())
    try:
        uuid.UUID(given)
    except ValueError:
        seed = f"{given:<16}".encode()[:16]
        return str(uuid.UUID(bytes=seed, version=4))
    return given


def check_resource_uri(uri: str) -> None:
    if ".." in uri or "~" in uri:
        raise models.ApiProblem(400, "Invalid resource URI: it must not contain '..' or '~'")
    if not uri.strip("/"):
        raise models.ApiProblem(400, "Invalid resource URI: it must not be empty")


class ControlPlaneState:
    """Projects, resources, sequences, integrations, logs and the datastore; thread-safe."""

    def __init__(
        self,
        *,
        clock_: clock.Clock,
        task_started_wait_s: float = 600.0,
        integration_ttl_s: float = 48 * 3600,
        datastore_lag_s: float = 0.0,
    ) -> None:
        self.clock = clock_
        self.ingestion = datastore.IngestionModel(datastore_lag_s)
        self.integration_ttl = timedelta(seconds=integration_ttl_s)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # the pump waits here: queued events, ticks, stop
        self._processed_cond = threading.Condition(self._lock)  # wait_processed, without waking the pump
        self.datastore = datastore.EventStore()
        self.resources = resources.ResourceStore()
        self.projects = projects.ProjectRegistry(self.resources)
        self.uniform = uniform.UniformRegistry()
        self.controller = sequences.ShipyardController(
            registry=self.projects,
            store=self.resources,
            clock_=clock_,
            task_started_wait_s=task_started_wait_s,
            emit=self._record,
        )
        self._pending: deque[dict[str, Any]] = deque()
        self.publishers: list[Callable[[dict[str, Any]], None]] = []
        """Called with every event as it is created or accepted (``--nats`` publishes them)."""
        self._polls: dict[str, deque[float]] = {}
        self._submitted = 0
        self._processed = 0
        self._running = False
        self._thread: threading.Thread | None = None

    # -- the pump ----------------------------------------------------------------------------

    def start(self) -> None:
        """Process queued events and watch the clock in a background thread."""
        with self._lock:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="jes-control-plane-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            with self._cond:
                if not self._running:
                    return
                if self._pending:
                    self._process(self._pending.popleft())
                    continue
                now_m = time.monotonic()
                if now_m >= next_tick:
                    self.tick()
                    next_tick = now_m + TICK_INTERVAL_S
                    continue
                self._cond.wait(next_tick - now_m)

    def _process(self, event: dict[str, Any]) -> None:
        try:
            self.controller.handle(event)
        except Exception:  # one bad event must not stop the control plane
            logger.exception("the shipyard-controller failed on event %s", event.get("id"))
        self._processed += 1
        self._processed_cond.notify_all()

    def _submit(self, event: dict[str, Any], *, wake: bool = True) -> int:
        self._submitted += 1
        if self._running:
            self._pending.append(event)
            if wake:
                self._cond.notify_all()
        else:
            self._process(event)
        return self._submitted

    def drain(self) -> None:
        """Process the queued events now, on the caller's thread: the server's event loop calls this
        soon after answering a ``POST /v1/event`` it accepted with ``defer`` (waking the pump thread
        for every event would cost two thread switches each; the pump still catches anything left)."""
        with self._cond:
            while self._pending:
                self._process(self._pending.popleft())

    def wait_processed(self, ticket: int, timeout_s: float = 5.0) -> bool:
        with self._processed_cond:
            return self._processed_cond.wait_for(lambda: self._processed >= ticket, timeout_s)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every event accepted so far has been processed."""
        with self._cond:
            ticket = self._submitted
        return self.wait_processed(ticket, timeout_s)

    def tick(self) -> None:
        """Time out tasks and expire integrations now (the pump does this every 50 ms)."""
        with self._lock:
            self.controller.tick()
            self.uniform.expire(self.clock.now(), self.integration_ttl)

    def _record(self, event: dict[str, Any], at: datetime, *, publish: bool = True) -> None:
        self.datastore.add(event, at, visible_at=self.ingestion.visible_at(event))
        if publish and at <= self.clock.now():  # a delayed task is found by polling when it is due
            for publisher in self.publishers:
                publisher(event)

    # -- api-service -------------------------------------------------------------------------

    def accept_event(
        self, incoming: models.IncomingEvent, *, from_nats: bool = False, defer: bool = False
    ) -> tuple[dict[str, Any], int]:
        """Store an event as the api-service does and queue it; (stored event, ticket). An event
        taken from NATS (the shipyard-controller's stream) keeps its id — only the api-service
        assigns new ones — and reaches neither NATS again nor the datastore: Keptn's datastore reads
        NATS on its own (:meth:`store_published`). ``defer``: do not wake the pump; the caller
        calls :meth:`drain` once it has answered."""
        with self._lock:
            now = self.clock.now()
            event: dict[str, Any] = {
                "specversion": incoming.specversion or "1.0",
                "id": incoming.id if from_nats and incoming.id else str(uuid.uuid4()),
                "source": incoming.source if is_uri_reference(incoming.source) else DEFAULT_SOURCE,
                "type": incoming.type,
                "time": keptntime.keptn_time(now),
                "contenttype": "application/json",
                "shkeptncontext": keptn_context(incoming.shkeptncontext),
            }
            for name in ("triggeredid", "gitcommitid", "shkeptnversion"):
                value = getattr(incoming, name)
                if value:
                    event[name] = value
            if incoming.extensions is not None:
                event["extensions"] = incoming.extensions
            event["data"] = incoming.data
            if from_nats:
                return event, self._submit(event)
            self._record(event, now)
            return event, self._submit(event, wake=not defer)

    def store_published(self, event: dict[str, Any]) -> None:
        """What Keptn's mongodb-datastore does with an event on NATS (a core queue subscription):
        store it as it is — every copy (no unique index on the id), and nothing while it is down."""
        with self._lock:
            visible_at = self.ingestion.visible_at(event)
            if visible_at != math.inf:  # a copy the datastore missed was never there (nor in events())
                self.datastore.add(copy.deepcopy(event), self.clock.now(), visible_at=visible_at)

    def trigger(self, body: dict[str, Any], *, timeout_s: float = 5.0) -> str:
        """Like ``POST /v1/event``, then wait until it was processed; the keptnContext."""
        try:
            incoming = models.parse_incoming_event(body)
        except models.ApiProblem as exc:
            raise errors.EventError(f"the control plane refuses this event: {exc.message}") from exc
        event, ticket = self.accept_event(incoming)
        self.wait_processed(ticket, timeout_s)
        return str(event["shkeptncontext"])

    # -- shipyard-controller -----------------------------------------------------------------

    def triggered_events(
        self,
        event_type: str,
        *,
        project: str | None = None,
        stage: str | None = None,
        service: str | None = None,
        event_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Open ``.triggered`` events of this exact type, newest first (404 for an unknown project)."""
        with self._lock:
            if project is not None and self.projects.get(project) is None:
                raise models.ApiProblem(404, "project not found")
            return self.controller.open.query(
                event_type, project=project, stage=stage, service=service, event_id=event_id, now=self.clock.now()
            )

    def note_poll(self, event_type: str) -> None:
        """Instrumentation: remember when a client polled the open events of a type (wall clock)."""
        moment = time.time()
        with self._lock:
            self._polls.setdefault(event_type, deque(maxlen=MAX_POLL_TIMES)).append(moment)

    def poll_times(self, event_type: str) -> list[float]:
        """``time.time()`` of every answered ``GET .../event/triggered/{event_type}``, oldest first."""
        with self._lock:
            return list(self._polls.get(event_type, ()))

    def inject_triggered(
        self, *, task: str, project: str, stage: str, service: str, data: dict[str, Any] | None, count: int
    ) -> list[str]:
        with self._lock:
            return self.controller.inject(
                task=task, project=project, stage=stage, service=service, data=data or {}, count=count
            )

    def sequence_states(self, project: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.controller.sequence_states(project, context))

    def control_sequence(self, project: str, context: str, command: models.SequenceControl) -> None:
        """Abort, pause or resume a context's sequences (in one stage, or all), as Keptn's
        ``ShipyardController.ControlSequence`` does (shipyard-controller/internal/controller/
        shipyardcontroller.go). Keptn answers 200 even when nothing matches — an unknown project
        or context is only logged ("no active sequence execution") — and ignores unknown states."""
        with self._lock:
            if command.state == "abort":
                found = self.controller.abort(project, context, stage=command.stage)
            elif command.state == "pause":
                found = self.controller.pause(project, context, stage=command.stage)
            elif command.state == "resume":
                found = self.controller.resume(project, context, stage=command.stage)
            else:
                return
            if not found:
                logger.warning("no active sequence execution for project %s, stage %r, context %s",
                               project, command.stage, context)  # fmt: skip

    # -- projects ----------------------------------------------------------------------------

    def create_project(self, name: str, shipyard_yaml: str) -> None:
        with self._lock:
            self.projects.create(name, shipyard_yaml, self.clock.now())

    def delete_project(self, name: str) -> bool:
        with self._lock:
            self.controller.drop_project(name)
            return self.projects.delete(name)

    def create_service(self, project: str, service: str) -> None:
        with self._lock:
            self.projects.add_service(project, service)

    def services(self, project: str) -> list[str]:
        with self._lock:
            found = self.projects.get(project)
            return list(found.services) if found else []

    def project_json(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            project = self.projects.get(name)
            return None if project is None else project.as_json()

    def projects_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.as_json() for p in self.projects.projects.values()]

    # -- uniform -----------------------------------------------------------------------------

    def register(self, request: models.Registration) -> tuple[str, bool]:
        with self._lock:
            return self.uniform.register(request, self.clock.now())

    def ping(self, integration_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.uniform.ping(integration_id, self.clock.now())

    def integrations(self, query: uniform.IntegrationQuery | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return self.uniform.query(query or uniform.IntegrationQuery())

    def delete_integration(self, integration_id: str) -> None:
        with self._lock:
            self.uniform.delete(integration_id)

    def with_integration(self, integration_id: str, action: Callable[[uniform.Integration], Any]) -> Any:
        """Run ``action`` on an integration under the lock; 404 when it does not exist."""
        with self._lock:
            integration = self.uniform.get(integration_id)
            if integration is None:
                raise models.ApiProblem(404, "uniform integration not found")
            return action(integration)

    def add_logs(self, entries: list[models.LogEntry]) -> None:
        with self._lock:
            self.uniform.add_logs(entries, self.clock.now())

    def logs(self, integration_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return self.uniform.logs(integration_id)

    # -- resource-service --------------------------------------------------------------------

    def _level(self, project: str, stage: str | None, service: str | None) -> tuple[str | None, str]:
        """(branch, service key) of a resource level; 404 when a part does not exist."""
        found = self.projects.get(project)
        if found is None:
            raise models.ApiProblem(404, "Project not found")
        if stage is None:
            return None, ""
        if not found.has_stage(stage):
            raise models.ApiProblem(404, "Stage not found")
        if service is None:
            return stage, ""
        if service not in found.services:
            raise models.ApiProblem(404, "Service not found")
        return stage, service

    def get_resource(
        self, project: str, stage: str | None, service: str | None, uri: str, commit_id: str | None = None
    ) -> tuple[bytes, str]:
        """(content, commit id) of one resource; 400/404 as the resource-service answers."""
        check_resource_uri(uri)
        with self._lock:
            branch, svc = self._level(project, stage, service)
            found = self.resources.read(project, branch, (svc, uri.lstrip("/")), commit_id)
            if found is None:
                raise models.ApiProblem(404, "Resource not found")
            content, commit = found
            return content, commit.id

    def list_resources(self, project: str, stage: str | None, service: str | None) -> tuple[list[str], str]:
        """(URIs with a leading ``/``, head commit id) of one level."""
        with self._lock:
            branch, svc = self._level(project, stage, service)
            uris, head = self.resources.list(project, branch, svc)
            return ["/" + uri for uri in uris], head.id

    def write_resources(
        self, project: str, stage: str | None, service: str | None, files: Mapping[str, bytes | None]
    ) -> str:
        """Commit changes (``None`` deletes) at one level; the new commit id."""
        for uri in files:
            check_resource_uri(uri)
        with self._lock:
            branch, svc = self._level(project, stage, service)
            changes: dict[resources.Key, bytes | None] = {(svc, uri.lstrip("/")): c for uri, c in files.items()}
            head = self.resources.head(project, branch)
            for key, content in changes.items():
                if content is None and key not in head.files:
                    raise models.ApiProblem(404, "Resource not found")
            return self.resources.write(project, branch, changes, self.clock.now()).id

    def put_resource(self, *, project: str, stage: str | None, service: str | None, uri: str, content: bytes) -> str:
        """Create the project/stage/service if needed and commit one resource; the commit id."""
        if service is not None and stage is None:
            raise ValueError("a service-level resource needs a stage")
        check_resource_uri(uri)
        with self._lock:
            self.projects.ensure(project, stage, service, self.clock.now())
            return self.write_resources(project, stage, service, {uri: content})

    # -- datastore ---------------------------------------------------------------------------

    def stored_events(
        self, query: datastore.EventQuery, *, newest_first: bool, as_clients_see: bool = False, copied: bool = False
    ) -> list[dict[str, Any]]:
        """Matching events (the stored dicts: do not modify them; ``copied``: deep copies). Every event
        received or emitted; ``as_clients_see``: only those the datastore has ingested by now (its HTTP API)."""
        with self._lock:
            visible = self.ingestion.now() if as_clients_see else None
            if newest_first:
                found = self.datastore.newest_first(query, visible_at=visible)
            else:
                found = self.datastore.query(query, visible_at=visible)
            return self.datastore.copies(found) if copied else [s.event for s in found]
