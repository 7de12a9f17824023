"""The local control plane as a server: :class:`LocalControlPlane` and ``jes control-plane``.

:class:`LocalControlPlane` serves the API with uvicorn in a background thread (for tests, the
demo and benchmarks) and offers a Python API over the same state; :func:`run_control_plane`
serves it in the foreground until Ctrl-C.
"""

from __future__ import annotations

import collections
import errno
import json
import math
import pickle
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from jes import errors
from jes.devtools import examples
from jes.devtools.controlplane import app, asgi, auth, datastore, faults, natsbridge, seed, state
from jes.devtools.doubles import clock as clock_mod
from jes.devtools.doubles import server as doubles_server

# The names other code is written against.
Clock = clock_mod.Clock
FakeClock = clock_mod.FakeClock
OAuthConfig = auth.OAuthConfig
FaultInjector = faults.FaultInjector
ControlPlaneState = state.ControlPlaneState

DEFAULT_TOKEN = "local-token"
#: The hello-world's sequence: the banner prints its users' trigger body (with sayhello.location).
HELLO_WORLD_SEQUENCE = ("my-first-project", "dev", "sequence1")
_START_TIMEOUT_S = 10.0
_T = TypeVar("_T")


class LocalControlPlane:
    """An in-memory Keptn control plane on loopback; use as a context manager or start/stop.

    ``url`` is the ``KEPTN_API_ENDPOINT`` (``http://127.0.0.1:<port>/api``). Beyond the Keptn
    defaults: ``strict_validation`` turns on the api-service's event validation (and its
    ``max_event_size_kb`` limit), ``oauth`` puts an OAuth gateway in front, ``token=""`` disables
    the token check, ``pagination_bug`` (on by default, as in Keptn 0.16-1.4.5) answers later pages
    of the triggered-events list with the first one again, ``datastore_lag_s`` delays what the
    datastore's HTTP API shows (Keptn feeds it asynchronously), ``rate_limit_bad_tokens`` the
    gateway's 429 after bad tokens, and ``ssl_certfile``/``ssl_keyfile`` serve HTTPS.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        seed_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        task_started_wait_s: float = 600.0,
        integration_ttl_s: float = 48 * 3600,
        strict_validation: bool = False,
        oauth: auth.OAuthConfig | None = None,
        clock: clock_mod.Clock | None = None,
        api_prefix: str = "/api",
        max_body_bytes: int = 5 * 1024 * 1024,
        max_event_size_kb: int = 64,
        pagination_bug: bool = True,
        datastore_lag_s: float = 0.0,
        rate_limit_bad_tokens: bool = False,
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
        nats_url: str | None = None,
    ) -> None:
        if not api_prefix.startswith("/") or api_prefix.endswith("/"):
            raise ValueError(f"api_prefix must start and not end with '/': {api_prefix!r}")
        self._token = token
        self._host = host
        self._port = port
        self._prefix = api_prefix
        self._ssl = (str(ssl_certfile), str(ssl_keyfile)) if ssl_certfile and ssl_keyfile else None
        self.clock: clock_mod.Clock = clock or clock_mod.Clock()
        self.faults = faults.FaultInjector()
        self.state = state.ControlPlaneState(
            clock_=self.clock,
            task_started_wait_s=task_started_wait_s,
            integration_ttl_s=integration_ttl_s,
            datastore_lag_s=datastore_lag_s,
        )
        self.seeded_projects = seed.load(self.state, seed_dir) if seed_dir is not None else []
        self._auth = auth.Authenticator(
            token=token, oauth=oauth, clock_=self.clock, rate_limit_bad_tokens=rate_limit_bad_tokens
        )
        options = app.Options(
            prefix=api_prefix,
            strict_validation=strict_validation,
            max_event_size_bytes=max_event_size_kb * 1024,
            max_body_bytes=max_body_bytes,
            pagination_bug=pagination_bug,
        )
        self._requests = _RequestCounter(
            app.build(
                self.state, options=options, fault_injector=self.faults, authenticator=self._auth,
                in_cluster=nats_url is not None,
            ),
        )  # fmt: skip
        self._app = self._requests
        self.nats = natsbridge.NatsBridge(nats_url, self.state) if nats_url else None
        self._server: doubles_server.ThreadedServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Serve in a background thread; returns once the server is listening."""
        if self._server is not None:
            return
        server = doubles_server.ThreadedServer(
            lambda: self._app,
            name="jes-control-plane-http",
            host=self._host,
            port=self._port,
            start_timeout_s=_START_TIMEOUT_S,
            http=asgi.DroppableH11Protocol,
            log_level="warning",
            ssl_certfile=self._ssl[0] if self._ssl else None,
            ssl_keyfile=self._ssl[1] if self._ssl else None,
        )
        self.state.start()
        try:
            server.start()
        except (OSError, doubles_server.ServerDidNotStart) as exc:
            self.state.stop()
            raise _start_error(exc, self._host, self._port) from exc
        if self.nats is not None:
            try:
                self.nats.start()
            except errors.SettingsError:
                server.stop()
                self.state.stop()
                raise
        self._port = server.port
        self._server = server

    def stop(self) -> None:
        if self.nats is not None:
            self.nats.stop()
        if self._server is not None:
            self._server.stop()
        self._server = None
        self.state.stop()

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Scheme, host and port, without the API prefix."""
        host = self._host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"{'https' if self._ssl else 'http'}://{host}:{self._port}"

    @property
    def url(self) -> str:
        """The ``KEPTN_API_ENDPOINT``."""
        return self.base_url + self._prefix

    @property
    def token(self) -> str:
        return self._token

    @property
    def oauth_token_url(self) -> str:
        return self.base_url + auth.TOKEN_PATH

    @property
    def oauth_discovery_url(self) -> str:
        return self.base_url + auth.DISCOVERY_PATH

    # -- Python API --------------------------------------------------------------------------

    def trigger_sequence(self, body: dict[str, Any]) -> str:
        """Like ``POST /v1/event`` (then waits until processed); the keptnContext."""
        return self.state.trigger(body)

    def inject_triggered(
        self, *, task: str, project: str, stage: str, service: str, data: dict[str, Any] | None = None, count: int = 1
    ) -> list[str]:
        """Open ``count`` task ``.triggered`` events outside sequences; their ids."""
        return self.state.inject_triggered(
            task=task, project=project, stage=stage, service=service, data=data, count=count
        )

    def events(
        self, *, type: str | None = None, keptn_context: str | None = None, triggered_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every event received (as stored, with the server's id and time) or emitted, oldest first."""
        query = datastore.EventQuery(type=type, keptn_context=keptn_context, triggered_id=triggered_id)
        return self.state.stored_events(query, newest_first=False, copied=True)

    def triggered_ids(self, *, type: str) -> list[str]:
        """The ``triggeredid`` of every event of a type received or emitted (those without one left
        out), oldest first: what a benchmark polls to see which tasks have finished, without copying
        every event as :meth:`events` does."""
        found = self.state.stored_events(datastore.EventQuery(type=type), newest_first=False)
        return [str(e["triggeredid"]) for e in found if e.get("triggeredid")]

    def stored_events(
        self, *, type: str | None = None, keptn_context: str | None = None, triggered_id: str | None = None
    ) -> list[dict[str, Any]]:
        """What the datastore's HTTP API shows now (after its lag, without what it lost), oldest first."""
        query = datastore.EventQuery(type=type, keptn_context=keptn_context, triggered_id=triggered_id)
        return self.state.stored_events(query, newest_first=False, as_clients_see=True, copied=True)

    def datastore_down(self, seconds: float = math.inf) -> None:
        """Take the datastore down for ``seconds``: its API answers 503, and what the control plane
        accepts meanwhile never reaches it (core NATS drops it), as in Keptn."""
        self.state.ingestion.take_down(seconds)

    def datastore_up(self) -> None:
        self.state.ingestion.bring_up()

    def open_triggered(self, event_type: str, **filters: str) -> list[dict[str, Any]]:
        """The open ``.triggered`` events of a type, as the polling endpoint returns them."""
        return _copy(self.state.triggered_events(event_type, **filters))

    def triggered_poll_times(self, event_type: str) -> list[float]:
        """Instrumentation (benchmarks): the wall-clock time (``time.time()``) at which each
        ``GET /controlPlane/v1/event/triggered/{event_type}`` was answered, oldest first — the
        moments an event of that type could first be seen by a polling integration."""
        return self.state.poll_times(event_type)

    def request_counts(self) -> dict[str, int]:
        """Instrumentation (benchmarks): HTTP requests received so far, by method and the first
        three segments of the path (``POST /api/v1/event``, ``GET /api/controlPlane/v1``)."""
        return dict(self._requests.counts)

    def sequences(self, *, project: str | None = None, keptn_context: str | None = None) -> list[dict[str, Any]]:
        """Sequence states (one per context, oldest first)."""
        return self.state.sequence_states(project, keptn_context)

    def logs(self, integration_id: str | None = None) -> list[dict[str, Any]]:
        """Posted log entries, oldest first."""
        return self.state.logs(integration_id)

    def integrations(self) -> list[dict[str, Any]]:
        return self.state.integrations()

    def create_project(self, name: str, shipyard_yaml: str) -> None:
        self.state.create_project(name, shipyard_yaml)

    def create_service(self, project: str, service: str) -> None:
        self.state.create_service(project, service)

    def put_resource(self, *, project: str, stage: str | None, service: str | None, uri: str, content: bytes) -> str:
        """Create or replace a resource (creating project/stage/service as needed); the new commit id."""
        return self.state.put_resource(project=project, stage=stage, service=service, uri=uri, content=content)

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Wait until every accepted event has been processed by the shipyard-controller."""
        if not self.state.wait_idle(timeout_s):
            raise TimeoutError(f"the local control plane did not process its events within {timeout_s}s")

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Poll ``predicate`` every 10 ms until it holds; ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout_s}s")
            time.sleep(0.01)


def _copy(value: _T) -> _T:
    """A deep copy of JSON-like data (events): a pickle round trip, four times faster than
    ``copy.deepcopy``."""
    copied: _T = pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return copied


class _RequestCounter:
    """An ASGI wrapper counting HTTP requests by method and path head (see ``request_counts``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            head = "/".join(str(scope["path"]).split("/")[:4])
            self.counts[f"{scope['method']} {head}"] += 1
        await self.inner(scope, receive, send)


def _start_error(exc: OSError | doubles_server.ServerDidNotStart, host: str, port: int) -> errors.SettingsError:
    if isinstance(exc, doubles_server.ServerDidNotStart):
        return errors.SettingsError([f"the local control plane could not start on {host}:{port}"])
    if exc.errno == errno.EADDRINUSE:
        return errors.SettingsError(
            [f"cannot listen on {host}:{port}: port {port} is already in use (another jes control-plane or demo?); "
             f"choose a free one with --port {port + 1}"]
        )  # fmt: skip
    return errors.SettingsError([f"cannot listen on {host}:{port}: {exc.strerror}; check --host and --port"])


def run_control_plane(
    *,
    host: str,
    port: int,
    token: str,
    seed_dir: str | None,
    datastore_lag_s: float = 0.0,
    pagination_bug: bool = True,
    nats_url: str | None = None,
) -> None:
    """Serve in the foreground (``jes control-plane``) until Ctrl-C or SIGTERM."""
    control_plane = LocalControlPlane(
        token=token,
        seed_dir=seed_dir,
        host=host,
        port=port,
        datastore_lag_s=datastore_lag_s,
        pagination_bug=pagination_bug,
        nats_url=nats_url,
    )
    control_plane.start()
    print(_banner(control_plane), flush=True)
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        control_plane.stop()
        print("local control plane stopped", flush=True)


def _banner(control_plane: LocalControlPlane) -> str:
    url = control_plane.url
    shown_token = control_plane.token if control_plane.token == DEFAULT_TOKEN else "<the value given with --token>"
    lines = [f"Local Keptn control plane listening on {url}", f"Web page: {control_plane.base_url}/", ""]
    for project in control_plane.state.projects_json():
        stages = ", ".join(s["stageName"] for s in project["stages"]) or "-"
        services = ", ".join(s["serviceName"] for s in project["stages"][0]["services"]) if project["stages"] else ""
        lines.append(f"  project {project['projectName']}: stages {stages}; services {services or '-'}")
    lines += [
        "",
        "Point jes (or any Keptn integration) at it:",
        f"  export KEPTN_API_ENDPOINT={url}",
        f"  export KEPTN_API_TOKEN={shown_token}" if control_plane.token else "  (no token required)",
        *_nats_lines(control_plane),
        "",
        "Trigger a sequence:",
        f"  curl -X POST {url}/v1/event -H \"x-token: $KEPTN_API_TOKEN\" -H 'Content-Type: application/json' \\",
        f"    --data-raw '{_example_event(control_plane)}'",
        *_region_note(control_plane),
        "Watch for the tasks it opens:",
        f'  curl -H "x-token: $KEPTN_API_TOKEN" {url}/controlPlane/v1/event/triggered/<event type>',
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _nats_lines(control_plane: LocalControlPlane) -> list[str]:
    if control_plane.nats is None:
        return []
    return [
        "",
        f"NATS mode (in-cluster, as beside Keptn): events are published to {control_plane.nats.url}; run jes with",
        "  unset KEPTN_API_ENDPOINT",
        f"  export PUBSUB_URL={control_plane.nats.url} PUBSUB_GROUP=jes",
        f"  export HTTP_PROXY={control_plane.base_url} NO_PROXY=  # Keptn's in-cluster names lead here",
    ]


def _region_note(control_plane: LocalControlPlane) -> list[str]:
    if _example_event(control_plane) != json.dumps(examples.hello_world_trigger("APAC")):
        return []
    return ["  (the hello-world's config runs on sayhello.location APAC or EU: change it for the other region)"]


def _example_event(control_plane: LocalControlPlane) -> str:
    for project in control_plane.state.projects.projects.values():
        for stage in project.shipyard.spec.stages:
            for sequence in stage.sequences:
                if (project.name, stage.name, sequence.name) == HELLO_WORLD_SEQUENCE:
                    return json.dumps(examples.hello_world_trigger("APAC"))  # its config matches on the location
                service = project.services[0] if project.services else "service1"
                data = {"project": project.name, "stage": stage.name, "service": service}
                body = {"data": data, "source": "curl", "specversion": "1.0",
                        "type": f"sh.keptn.event.{stage.name}.{sequence.name}.triggered"}  # fmt: skip
                return json.dumps(body)
    return (
        '{"data": {"project": "P", "stage": "S", "service": "SVC"}, "source": "curl", '
        '"specversion": "1.0", "type": "sh.keptn.event.S.SEQUENCE.triggered"}'
    )
