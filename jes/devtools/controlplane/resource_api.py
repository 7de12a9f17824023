"""The resource-service routes, routed on the raw path the way the API gateway and gin do.

The gateway (nginx) decodes the path once before proxying; the resource-service then routes on
the result and query-unescapes ``{resourceURI}`` (and the service name) once more. So through
the gateway ``job%252Fconfig.yaml`` reaches ``job/config.yaml`` while a singly encoded
``job%2Fconfig.yaml`` turns into an extra path segment and gets gin's plain-text
``404 page not found`` (reference/keptn-api.md §7.2). Served under both ``/resource-service``
and the 0.16/0.17 name ``/configuration-service``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jes.devtools.controlplane import httputil, models, state

SERVICE_NAMES = ("resource-service", "configuration-service")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class ResourceRoute:
    project: str
    stage: str | None
    service: str | None
    raw_uri: str | None  # the {resourceURI} segment as routed (still query-escaped); None = list

    @property
    def uri(self) -> str:
        if self.raw_uri is None:
            return ""
        if _BAD_ESCAPE.search(self.raw_uri):
            raise models.ApiProblem(400, "Invalid resource URI: bad %-escape")
        return unquote_plus(self.raw_uri)


def route(raw_path: str, prefix: str) -> ResourceRoute | None:
    """Match a raw request path (``{prefix}/resource-service/v1/...``) after the gateway's decoding."""
    rest = None
    for name in SERVICE_NAMES:
        head = f"{prefix}/{name}/"
        if raw_path.startswith(head):
            rest = raw_path[len(head) :]
    if rest is None:
        return None
    parts = unquote(rest).split("/")
    if len(parts) < 4 or parts[:2] != ["v1", "project"] or any(not p for p in parts):
        return None
    project, tail = parts[2], parts[3:]
    stage = service = None
    if tail[:1] == ["stage"] and len(tail) >= 3:
        stage, tail = tail[1], tail[2:]
        if tail[:1] == ["service"] and len(tail) >= 3:
            if _BAD_ESCAPE.search(tail[1]):
                return None
            service, tail = unquote_plus(tail[1]), tail[2:]
    if tail == ["resource"]:
        return ResourceRoute(project, stage, service, None)
    if len(tail) == 2 and tail[0] == "resource":
        return ResourceRoute(project, stage, service, tail[1])
    return None


class ResourceApi:
    """Handlers of the resource-service under the gateway."""

    def __init__(self, cp_state: state.ControlPlaneState, prefix: str) -> None:
        self._state = cp_state
        self._prefix = prefix

    async def dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or str(request.scope["path"]).encode()
        found = route(raw.decode("latin-1"), self._prefix)
        if found is None:
            return httputil.not_found()
        method = request.method
        if found.raw_uri is None:
            if method == "GET":
                return self._list(request, found)
            if method in ("POST", "PUT"):
                return await self._write_many(request, found, created=method == "POST")
            return httputil.not_found()
        if method == "GET":
            return self._get(request, found)
        if method == "PUT":
            return await self._write_one(request, found)
        if method == "DELETE":
            commit = self._state.write_resources(found.project, found.stage, found.service, {found.uri: None})
            return JSONResponse({"commitID": commit})
        return httputil.not_found()

    def _get(self, request: Request, found: ResourceRoute) -> Response:
        commit_id = request.query_params.get("gitCommitID") or None
        content, commit = self._state.get_resource(found.project, found.stage, found.service, found.uri, commit_id)
        return JSONResponse(
            {
                "resourceURI": found.raw_uri,
                "resourceContent": base64.b64encode(content).decode("ascii"),
                "metadata": {"version": commit},
            }
        )

    def _list(self, request: Request, found: ResourceRoute) -> Response:
        size, offset = httputil.page_params(request)
        uris, head = self._state.list_resources(found.project, found.stage, found.service)
        chunk = uris[offset : offset + size]
        next_key = offset + size if offset + size < len(uris) else 0
        body: dict[str, Any] = {
            "resources": [{"resourceURI": uri, "metadata": {"version": head}} for uri in chunk],
            "nextPageKey": str(next_key),
        }
        if uris:
            body["totalCount"] = len(uris)
        return JSONResponse(body)

    async def _write_one(self, request: Request, found: ResourceRoute) -> Response:
        payload = models.parse_body(models.ResourceContentIn, await httputil.read_json(request))
        content = _decode(payload.resourceContent)
        commit = self._state.write_resources(found.project, found.stage, found.service, {found.uri: content})
        return JSONResponse({"commitID": commit})

    async def _write_many(self, request: Request, found: ResourceRoute, *, created: bool) -> Response:
        payload = models.parse_body(models.ResourcesIn, await httputil.read_json(request))
        files: dict[str, bytes | None] = {
            r.resourceURI.lstrip("/"): _decode(r.resourceContent) for r in payload.resources
        }
        commit = self._state.write_resources(found.project, found.stage, found.service, files)
        return JSONResponse({"commitID": commit}, status_code=201 if created else 200)


def _decode(content: str) -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise models.ApiProblem(400, "resourceContent is not valid base64") from None
