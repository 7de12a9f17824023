"""The routes of the local control plane: api-service, shipyard-controller, datastore, OAuth.

Every handler is a thin translation between HTTP and :class:`state.ControlPlaneState`: parse
the request with :mod:`models`, call the state, shape the answer as Keptn does. Problems are
raised as :class:`models.ApiProblem` and answered ``{"code": N, "message": "..."}``; paths that
match no route get gin's plain-text ``404 page not found``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jes.devtools.controlplane import (
    asgi,
    auth,
    datastore,
    faults,
    hotpath,
    httputil,
    models,
    resource_api,
    state,
    uniform,
    webpage,
)

logger = logging.getLogger(__name__)

KEPTN_VERSION = "1.4.5"
_METADATA = {
    "namespace": "keptn",
    "keptnlabel": "keptn",
    "keptnversion": KEPTN_VERSION,
    "shipyardversion": "0.2.0",
    "bridgeversion": "",
    "keptnservices": {},
    "automaticprovisioning": False,
}


@dataclass(frozen=True)
class Options:
    """How the API behaves beyond the defaults of a Keptn installation."""

    prefix: str = "/api"
    strict_validation: bool = False
    max_event_size_bytes: int = 64 * 1024
    max_body_bytes: int = 5 * 1024 * 1024
    pagination_bug: bool = True
    """Keptn 0.16-1.4.5 answer later pages of the triggered-events list with the first page again
    (shipyard-controller ``GetTriggeredEvents`` indexes the sub-slice from 0)."""


def build(
    cp_state: state.ControlPlaneState,
    *,
    options: Options,
    fault_injector: faults.FaultInjector,
    authenticator: auth.Authenticator,
    in_cluster: bool = False,
) -> asgi.ASGIApp:
    """The whole ASGI application: gateway layer around the routes."""
    handlers = _Handlers(cp_state, options, authenticator)
    app = Starlette(
        routes=handlers.routes(),
        exception_handlers={
            models.ApiProblem: _problem_response,
            HTTPException: _http_exception_response,
            Exception: _internal_error_response,
        },
    )
    app.router.redirect_slashes = False
    intake = hotpath.EventIntake(
        cp_state, strict_validation=options.strict_validation, max_event_size_bytes=options.max_event_size_bytes
    )
    return asgi.Gateway(
        hotpath.HotRoutes(app, {("POST", f"{options.prefix}/v1/event"): intake}, after_answer=cp_state.drain),
        prefix=options.prefix,
        max_body_bytes=options.max_body_bytes,
        fault_injector=fault_injector,
        authenticator=authenticator,
        in_cluster=in_cluster,
    )


async def _problem_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, models.ApiProblem)
    return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)


async def _http_exception_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):  # gin answers both with its plain 404
        return httputil.not_found()
    return JSONResponse({"code": exc.status_code, "message": str(exc.detail)}, status_code=exc.status_code)


async def _internal_error_response(request: Request, exc: Exception) -> Response:
    return JSONResponse({"code": 500, "message": "internal server error"}, status_code=500)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _paged(items: list[Any], size: int, offset: int, *, bug: bool = False) -> tuple[list[Any], int]:
    """One page and the next offset (0 when there is none).

    With ``bug``: Keptn's page-2 bug. shipyard-controller ``GetTriggeredEvents`` ranges over
    ``events[nextPageKey:endIndex]`` but appends ``events[index]`` with the sub-slice's index, so a
    later page has the right length and the *first* page's items (keptn/keptn 1.4.5,
    ``shipyard-controller/internal/handler/eventhandler.go``)."""
    chunk = items[offset : offset + size]
    if bug:
        chunk = items[: len(chunk)]
    return chunk, offset + size if offset + size < len(items) else 0


class _Handlers:
    def __init__(self, cp_state: state.ControlPlaneState, options: Options, authenticator: auth.Authenticator) -> None:
        self._state = cp_state
        self._options = options
        self._auth = authenticator
        self._resources = resource_api.ResourceApi(cp_state, options.prefix)

    def routes(self) -> list[Route]:
        p = self._options.prefix
        cp = f"{p}/controlPlane/v1"
        uniform_path = f"{cp}/uniform/registration"
        resource_methods = ["GET", "POST", "PUT", "DELETE"]
        return [
            Route(f"{p}/v1/auth", self.post_auth, methods=["POST"]),
            Route(f"{p}/v1/metadata", self.get_metadata, methods=["GET"]),
            Route(f"{cp}/event/triggered/{{event_type}}", self.get_triggered, methods=["GET"]),
            Route(uniform_path, self.get_integrations, methods=["GET"]),
            Route(uniform_path, self.register, methods=["POST"]),
            Route(f"{uniform_path}/{{integration_id}}", self.delete_integration, methods=["DELETE"]),
            Route(f"{uniform_path}/{{integration_id}}/ping", self.ping, methods=["PUT"]),
            Route(f"{uniform_path}/{{integration_id}}/subscription", self.get_subscriptions, methods=["GET"]),
            Route(f"{uniform_path}/{{integration_id}}/subscription", self.add_subscription, methods=["POST"]),
            Route(f"{uniform_path}/{{integration_id}}/subscription/{{sub_id}}", self.get_subscription, methods=["GET"]),
            Route(f"{uniform_path}/{{integration_id}}/subscription/{{sub_id}}", self.put_subscription, methods=["PUT"]),
            Route(
                f"{uniform_path}/{{integration_id}}/subscription/{{sub_id}}",
                self.delete_subscription,
                methods=["DELETE"],
            ),
            Route(f"{cp}/log", self.get_logs, methods=["GET"]),
            Route(f"{cp}/log", self.post_logs, methods=["POST"]),
            Route(f"{cp}/project", self.get_projects, methods=["GET"]),
            Route(f"{cp}/project", self.create_project, methods=["POST"]),
            Route(f"{cp}/project/{{project}}", self.get_project, methods=["GET"]),
            Route(f"{cp}/project/{{project}}", self.delete_project, methods=["DELETE"]),
            Route(f"{cp}/project/{{project}}/service", self.create_service, methods=["POST"]),
            Route(f"{cp}/sequence/{{project}}", self.get_sequences, methods=["GET"]),
            Route(f"{cp}/sequence/{{project}}/{{context}}/control", self.control_sequence, methods=["POST"]),
            Route(f"{p}/mongodb-datastore/event", self.get_stored_events, methods=["GET"]),
            Route(f"{p}/resource-service/{{rest:path}}", self._resources.dispatch, methods=resource_methods),
            Route(f"{p}/configuration-service/{{rest:path}}", self._resources.dispatch, methods=resource_methods),
            Route(auth.TOKEN_PATH, self.issue_token, methods=["POST"]),
            Route(auth.DISCOVERY_PATH, self.discovery, methods=["GET"]),
            *webpage.routes(p),
        ]

    # -- api-service -------------------------------------------------------------------------

    async def post_auth(self, request: Request) -> Response:
        return Response(status_code=200)

    async def get_metadata(self, request: Request) -> Response:
        return JSONResponse(_METADATA)

    # -- shipyard-controller: triggered events -----------------------------------------------

    async def get_triggered(self, request: Request) -> Response:
        size, offset = httputil.page_params(request)
        events = self._state.triggered_events(
            request.path_params["event_type"],
            project=httputil.query(request, "project"),
            stage=httputil.query(request, "stage"),
            service=httputil.query(request, "service"),
            event_id=httputil.query(request, "eventID"),
        )
        self._state.note_poll(request.path_params["event_type"])
        page, next_key = _paged(events, size, offset, bug=self._options.pagination_bug)
        body: dict[str, Any] = {"events": page, "nextPageKey": str(next_key)}
        if events:
            body["totalCount"] = len(events)
        return JSONResponse(body)

    # -- shipyard-controller: uniform --------------------------------------------------------

    async def register(self, request: Request) -> Response:
        registration = models.parse_body(models.Registration, await httputil.read_json(request))
        integration_id, created = self._state.register(registration)
        return JSONResponse({"id": integration_id}, status_code=201 if created else 200)

    async def get_integrations(self, request: Request) -> Response:
        query = uniform.IntegrationQuery(
            **{
                field: httputil.query(request, field)
                for field in ("id", "name", "namespace", "hostname", "project", "stage", "service")
            }
        )
        return JSONResponse(self._state.integrations(query))

    async def delete_integration(self, request: Request) -> Response:
        self._state.delete_integration(request.path_params["integration_id"])
        return JSONResponse({})

    async def ping(self, request: Request) -> Response:
        integration = self._state.ping(request.path_params["integration_id"])
        if integration is None:
            return _error(404, "uniform integration not found")
        return JSONResponse(integration)

    async def get_subscriptions(self, request: Request) -> Response:
        subscriptions = self._state.with_integration(
            request.path_params["integration_id"], lambda i: copy.deepcopy(i.subscriptions)
        )
        return JSONResponse(subscriptions or None)

    async def add_subscription(self, request: Request) -> Response:
        subscription = models.parse_body(models.EventSubscription, await httputil.read_json(request))
        sub_id = self._state.with_integration(
            request.path_params["integration_id"], lambda i: self._state.uniform.add_subscription(i, subscription)
        )
        return JSONResponse({"id": sub_id}, status_code=201)

    async def get_subscription(self, request: Request) -> Response:
        sub_id = request.path_params["sub_id"]
        found = self._state.with_integration(
            request.path_params["integration_id"], lambda i: self._state.uniform.find_subscription(i, sub_id)
        )
        if found is None:
            return _error(404, "subscription not found")
        return JSONResponse(found)

    async def put_subscription(self, request: Request) -> Response:
        sub_id = request.path_params["sub_id"]
        subscription = models.parse_body(models.EventSubscription, await httputil.read_json(request))
        self._state.with_integration(
            request.path_params["integration_id"],
            lambda i: self._state.uniform.put_subscription(i, sub_id, subscription),
        )
        return JSONResponse({"id": sub_id}, status_code=201)

    async def delete_subscription(self, request: Request) -> Response:
        sub_id = request.path_params["sub_id"]
        self._state.with_integration(
            request.path_params["integration_id"], lambda i: self._state.uniform.delete_subscription(i, sub_id)
        )
        return JSONResponse({})

    # -- shipyard-controller: logs -----------------------------------------------------------

    async def post_logs(self, request: Request) -> Response:
        payload = models.parse_body(models.CreateLogsRequest, await httputil.read_json(request))
        self._state.add_logs(list(payload.logs))
        return JSONResponse({})

    async def get_logs(self, request: Request) -> Response:
        size, offset = httputil.page_params(request)
        logs = list(reversed(self._state.logs(httputil.query(request, "integrationId"))))
        page, next_key = _paged(logs, size, offset)
        return JSONResponse({"logs": page, "nextPageKey": next_key, "pageSize": len(page), "totalCount": len(logs)})

    # -- shipyard-controller: projects and sequences -----------------------------------------

    async def get_projects(self, request: Request) -> Response:
        size, offset = httputil.page_params(request)
        projects = self._state.projects_json()
        page, next_key = _paged(projects, size, offset)
        return JSONResponse(
            {"projects": page, "nextPageKey": str(next_key), "pageSize": len(page), "totalCount": len(projects)}
        )

    async def get_project(self, request: Request) -> Response:
        project = self._state.project_json(request.path_params["project"])
        if project is None:
            return _error(404, "project not found")
        return JSONResponse(project)

    async def create_project(self, request: Request) -> Response:
        params = models.parse_body(models.CreateProject, await httputil.read_json(request))
        try:
            shipyard_yaml = _b64_text(params.shipyard)
        except ValueError:
            return _error(400, "shipyard must be the base64 encoding of the shipyard YAML")
        self._state.create_project(params.name, shipyard_yaml)
        return JSONResponse({}, status_code=201)

    async def delete_project(self, request: Request) -> Response:
        name = request.path_params["project"]
        if not self._state.delete_project(name):
            return _error(404, "project not found")
        return JSONResponse({"message": f"project {name} deleted"})

    async def create_service(self, request: Request) -> Response:
        params = models.parse_body(models.CreateService, await httputil.read_json(request))
        self._state.create_service(request.path_params["project"], params.serviceName)
        return JSONResponse({}, status_code=201)

    async def get_sequences(self, request: Request) -> Response:
        project = request.path_params["project"]
        if self._state.project_json(project) is None:
            return _error(404, "project not found")
        size, offset = httputil.page_params(request)
        contexts = (httputil.query(request, "keptnContext") or "").split(",")
        states = self._state.sequence_states(project)
        states = [
            s for s in reversed(states)
            if (contexts == [""] or s["shkeptncontext"] in contexts)
            and httputil.query(request, "name") in (None, s["name"])
            and httputil.query(request, "state") in (None, s["state"])
        ]  # fmt: skip
        page, next_key = _paged(states, size, offset)
        return JSONResponse({"states": page, "nextPageKey": next_key, "pageSize": len(page), "totalCount": len(states)})

    async def control_sequence(self, request: Request) -> Response:
        command = models.parse_body(models.SequenceControl, await httputil.read_json(request))
        self._state.control_sequence(request.path_params["project"], request.path_params["context"], command)
        return JSONResponse({})

    # -- mongodb-datastore -------------------------------------------------------------------

    async def get_stored_events(self, request: Request) -> Response:
        if self._state.ingestion.is_down():
            return _datastore_unavailable()
        project = httputil.query(request, "project")
        context = httputil.query(request, "keptnContext")
        if project is None and context is None:
            return _error(400, "either keptnContext or project must be specified")
        size = _datastore_page_size(request.query_params.get("pageSize"))
        _, offset = httputil.page_params(request)
        query = datastore.EventQuery(
            project=project,
            keptn_context=context,
            type=httputil.query(request, "type"),
            stage=httputil.query(request, "stage"),
            service=httputil.query(request, "service"),
            event_id=httputil.query(request, "eventID"),
            source=httputil.query(request, "source"),
        )
        events = self._state.stored_events(query, newest_first=True, as_clients_see=True)
        page, next_key = _paged(events, size, offset)
        return JSONResponse(
            {"events": page, "nextPageKey": str(next_key), "pageSize": len(page), "totalCount": len(events)}
        )

    # -- OAuth -------------------------------------------------------------------------------

    async def issue_token(self, request: Request) -> Response:
        status, body = self._auth.issue_token(await request.body(), request.headers.get("authorization", ""))
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    async def discovery(self, request: Request) -> Response:
        if self._auth.oauth is None:
            return httputil.not_found()
        return JSONResponse(self._auth.discovery(f"{request.url.scheme}://{request.url.netloc}"))


def _datastore_unavailable() -> Response:
    """What the API gateway answers while the mongodb-datastore has no ready pod."""
    body = (
        "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
        "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Response(body, status_code=503, media_type="text/html")


def _datastore_page_size(raw: str | None) -> int:
    """The datastore's ``pageSize`` (1..100, default 20) with go-openapi's 422 answers."""
    if not raw:
        return 20
    try:
        size = int(raw)
    except ValueError:
        raise models.ApiProblem(422, f'pageSize in query must be of type int64: "{raw}"', code=601) from None
    if size > 100:
        raise models.ApiProblem(422, "pageSize in query should be less than or equal to 100", code=608)
    if size < 1:
        raise models.ApiProblem(422, "pageSize in query should be greater than or equal to 1", code=609)
    return size


def _b64_text(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
