"""The Keptn control-plane API as jes uses it, over one injected :class:`httpx.AsyncClient`.

Every call has a timeout (the client's), is retried with :mod:`jes.util.retry` on temporary errors, and
raises :mod:`jes.errors` types (:mod:`.httperrors` translates): connection errors, timeouts, 5xx and
429 become :class:`errors.KeptnTemporaryError` (``retry_after_s`` from ``Retry-After``), 401/403
:class:`errors.KeptnAuthError`, 404 :class:`errors.KeptnNotFoundError`, any other 4xx
:class:`errors.KeptnPermanentError`. Messages name the method, the URL, the status and what the
server said — never the token. A body that is not the JSON the contract promises is a temporary
error (a proxy's error page, a truncated answer), not a crash (:mod:`.answers`). The values sent
and read are in :mod:`.wire`.

Sending an event is special: when a POST may have reached the server (the connection broke after
the request was sent, a read timeout, a gateway timeout), repeating it could create a second
``.started`` and break Keptn's ``#finished == #started`` rule. Such failures raise
:class:`~.httperrors.EventMaybeDeliveredError` without retrying; :func:`.arrival.delivered` asks the datastore whether
the event arrived before the caller sends it again.

Paths: ``{api}/v1/event``, ``{api}/controlPlane/v1/...``, ``{api}/<resource service path>/v1/...``,
``{api}/mongodb-datastore/event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import httpx

from jes import errors
from jes.clients.keptn import answers, auth, direct, httperrors, wire
from jes.clients.keptn.httperrors import BODY_EXCERPT_CHARS, EventMaybeDeliveredError, redacted, scrub
from jes.clients.keptn.incluster import in_cluster_url
from jes.clients.keptn.wire import Json
from jes.settings import Settings
from jes.util import gates, retry

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=errors.KeptnError)

#: Page size asked for on paginated endpoints (the server's default is 20).
PAGE_SIZE = 50
#: The largest page asked of the triggered-events endpoint. Keptn 0.16-1.4.5 answer every later page
#: with the first page again (its page-2 bug), so what does not fit on the first page is invisible:
#: jes asks for as many as the last answer's ``totalCount``, up to this (Keptn does not cap pageSize).
MAX_TRIGGERED_PAGE_SIZE = 1000
#: A safety net against a server that never ends a pagination.
MAX_PAGES = 200


def _resource_uri(resource: Json) -> str:
    return str(resource.get("resourceURI", ""))


def encode_resource_uri(uri: str) -> str:
    """A resource URI encoded for the path through the API gateway.

    Query-escaped twice: nginx decodes once, the resource service query-unescapes once more.
    """
    return quote_plus(quote_plus(uri.lstrip("/"), safe=""), safe="")


def _segment(name: str) -> str:
    return quote(name, safe="")


# ---------------------------------------------------------------------------------------------
# The client


class KeptnClient:
    """The control-plane calls jes makes. ``http`` is shared and owned by the caller."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: str,
        *,
        resource_service_path: str = "resource-service",
        backoff: retry.Backoff = retry.QUICK,
        sleep: retry.Sleep = asyncio.sleep,
        max_in_flight: int = 8,
    ) -> None:
        self.http = http
        self._direct = direct.direct_post(http)
        self._in_flight = gates.PriorityGate(max_in_flight)  # as many as the pool holds; .finished first
        # .started may use half of them: under a burst the reports of events already running are not
        # queued behind hundreds of .started (the complete -> .finished latency; bench/README.md)
        self._starting = asyncio.Semaphore(max(1, max_in_flight // 2))
        self.endpoint = endpoint.rstrip("/")
        self.resource_service_path = resource_service_path.strip("/")
        self.backoff = backoff
        self._sleep = sleep
        self._triggered_totals: dict[str, int] = {}
        """Open events per triggered-events query at its last answer (to size the next page)."""

    def _remember_total(self, query: str, total: int) -> None:
        if total <= PAGE_SIZE:
            self._triggered_totals.pop(query, None)
        elif query in self._triggered_totals or len(self._triggered_totals) < 1024:
            self._triggered_totals[query] = total

    @classmethod
    def from_settings(
        cls, http: httpx.AsyncClient, settings: Settings, *, sleep: retry.Sleep = asyncio.sleep
    ) -> KeptnClient:
        return cls(
            http,
            settings.keptn_api_endpoint,
            resource_service_path=settings.resource_service_path,
            sleep=sleep,
            max_in_flight=settings.http_max_connections,
        )

    # -- plumbing -------------------------------------------------------------------------

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        ok: Callable[[int], bool] = lambda s: 200 <= s < 300,
        idempotent: bool = True,
        before: Callable[[], Awaitable[None]] | None = None,
        priority: int = gates.NORMAL,
    ) -> httpx.Response:
        """One request; errors translated. Auth-flow failures (OAuth) arrive as KeptnErrors.
        ``before`` is awaited once a connection slot is free, right before the request goes out."""
        url = self.endpoint + path if self.endpoint else in_cluster_url(path)
        try:
            async with self._in_flight.hold(priority):
                if before is not None:
                    await before()
                response = await self._request(method, url, params, json)
        except httpx.HTTPError as exc:
            timeout_s = self.http.timeout.read
            shown = redacted(httpx.URL(url, params=params))
            error = httperrors.transport_error(exc, method, shown, timeout_s, idempotent=idempotent)
            raise self._scrub(error) from exc
        except errors.KeptnError as exc:
            raise self._scrub(exc) from exc.__cause__
        if not ok(response.status_code):
            raise self._scrub(httperrors.status_error(response, idempotent=idempotent))
        return response

    async def _request(self, method: str, url: str, params: Mapping[str, str] | None, json: Any) -> httpx.Response:
        """Through the client; a JSON POST on the direct path when it is the same request."""
        if method == "POST" and json is not None and params is None and self._direct is not None:
            credentials = self.http.auth
            plain = credentials.plain_headers() if isinstance(credentials, auth.KeptnAuth) else None
            if plain is not None:
                return await self._direct.post_json(url, json, plain)
        return await self.http.request(method, url, params=params, json=json)

    async def _retrying(self, call: Callable[[], Awaitable[T]], *, what: str, backoff: retry.Backoff | None) -> T:
        async def scrubbed() -> T:
            try:
                return await call()
            except errors.KeptnError as exc:
                raise self._scrub(exc) from exc.__cause__

        chosen = backoff if backoff is not None else self.backoff
        return await retry.retry_temporary(scrubbed, backoff=chosen, what=what, sleep=self._sleep)

    def _secrets(self) -> tuple[str, ...]:
        credentials = self.http.auth
        return credentials.secrets() if isinstance(credentials, auth.KeptnAuth) else ()

    def _scrub(self, error: E) -> E:
        """``error`` without any credential in its text (a server may echo what it was sent)."""
        return httperrors.scrub_error(error, self._secrets())

    async def _get_json(self, path: str, *, params: Mapping[str, str] | None = None) -> tuple[httpx.Response, Json]:
        response = await self._send_once("GET", path, params=params)
        return response, answers.json_object(response)

    async def _paginate(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        key: Callable[[Json], str],
        items: Callable[[httpx.Response, Json], list[Json]],
        page_size: int = PAGE_SIZE,
        totals: dict[str, int] | None = None,
    ) -> list[Json]:
        """Every item of a paginated list, each once (by ``key``), in server order; no retries.

        Stops at ``nextPageKey`` "" or "0", at a repeated key, and at a page that brings nothing
        new (the triggered-events endpoint re-sends its first page for later pages: Keptn's
        page-2 bug). ``totals`` gets the server's ``totalCount`` (key "total").
        """
        found: dict[str, Json] = {}
        page_key = ""
        seen_keys: set[str] = set()
        for _ in range(MAX_PAGES):
            query = dict(params, pageSize=str(page_size))
            if page_key:
                query["nextPageKey"] = page_key
            response, body = await self._get_json(path, params=query)
            if totals is not None and isinstance(body.get("totalCount"), int):
                totals["total"] = body["totalCount"]
            page = items(response, body)
            new = 0
            for item in page:
                item_key = key(item)
                if item_key not in found:
                    found[item_key] = item
                    new += 1
            seen_keys.add(page_key)
            page_key = answers.next_page_key(body)
            if page_key in ("", "0") or page_key in seen_keys or new == 0:
                break
        return list(found.values())

    # -- events -------------------------------------------------------------------------------

    async def get_triggered(
        self,
        event_type: str,
        *,
        project: str | None = None,
        stage: str | None = None,
        service: str | None = None,
        event_id: str | None = None,
        backoff: retry.Backoff | None = None,
    ) -> list[Json]:
        """Open ``.triggered`` events of one exact type, newest first, each id once.

        ``event_id`` asks for one event only (whether it is still open). ``backoff`` (default: the
        client's) retries the whole poll on temporary errors.
        """
        filters = (("project", project), ("stage", stage), ("service", service), ("eventID", event_id))
        params = {k: v for k, v in filters if v}
        path = f"/controlPlane/v1/event/triggered/{_segment(event_type)}"
        what = f"polling {event_type}"

        remembered = f"{event_type}?{sorted(params.items())}"

        async def once() -> list[Json]:
            size = min(max(PAGE_SIZE, self._triggered_totals.get(remembered, 0)), MAX_TRIGGERED_PAGE_SIZE)
            while True:
                totals: dict[str, int] = {}
                events = await self._paginate(
                    path, params, key=answers.event_key, items=answers.event_list, page_size=size, totals=totals
                )
                total = totals.get("total", len(events))
                self._remember_total(remembered, total)
                if len(events) >= total or size >= min(total, MAX_TRIGGERED_PAGE_SIZE):
                    return [e for e in events if e.get("id")]
                size = min(total, MAX_TRIGGERED_PAGE_SIZE)  # the page-2 bug hid some: ask for them all

        return await self._retrying(once, what=what, backoff=backoff)

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        backoff: retry.Backoff | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """POST one CloudEvent; the server's keptnContext.

        Retries only failures where the server certainly did not take the event (connection
        refused, 5xx, 429). Raises :class:`EventMaybeDeliveredError` at once when it may have.
        ``before`` is awaited right before each attempt leaves (a fence).
        """
        what = f"sending {event.get('type', 'event')}"

        kind = str(event.get("type", ""))
        starting = kind.endswith(".started")
        priority = gates.URGENT if kind.endswith(".finished") else gates.LOW if starting else gates.NORMAL

        async def once() -> str:
            try:
                async with self._starting if starting else contextlib.nullcontext():
                    response = await self._send_once(
                        "POST", "/v1/event", json=dict(event), ok=lambda s: 200 <= s <= 204, idempotent=False,
                        before=before, priority=priority,
                    )  # fmt: skip
            except EventMaybeDeliveredError as exc:
                raise _DoNotRetry(self._scrub(exc)) from exc
            return _keptn_context(response, event, self._secrets())

        try:
            return await self._retrying(once, what=what, backoff=backoff)
        except _DoNotRetry as stop:
            raise stop.error from stop.error.__cause__

    async def find_events(
        self,
        *,
        keptn_context: str | None = None,
        event_type: str | None = None,
        project: str | None = None,
        backoff: retry.Backoff | None = None,
    ) -> list[Json]:
        """Events stored by the mongodb-datastore (newest first). Needs a context or a project."""
        if not keptn_context and not project:
            raise ValueError("find_events needs keptn_context or project")
        params = {k: v for k, v in (("keptnContext", keptn_context), ("type", event_type), ("project", project)) if v}

        async def once() -> list[Json]:
            return await self._paginate(
                "/mongodb-datastore/event", params, key=answers.event_key, items=answers.event_list
            )

        return await self._retrying(once, what="reading the datastore", backoff=backoff)

    # -- uniform registration ------------------------------------------------------------------

    async def register(self, registration: wire.Registration, *, backoff: retry.Backoff | None = None) -> str:
        """Register (or find) this integration; its id."""

        async def once() -> str:
            response = await self._send_once("POST", "/controlPlane/v1/uniform/registration", json=registration.body())
            body = answers.json_object(response)
            integration_id = body.get("id")
            if not isinstance(integration_id, str) or not integration_id:
                raise httperrors.bad_answer(response, "no integration id")
            return integration_id

        return await self._retrying(once, what="registering", backoff=backoff)

    async def ping(self, integration_id: str, *, backoff: retry.Backoff | None = None) -> wire.Integration:
        """Heartbeat; the stored integration, whose subscriptions are the source of truth."""
        path = f"/controlPlane/v1/uniform/registration/{_segment(integration_id)}/ping"

        async def once() -> wire.Integration:
            response = await self._send_once("PUT", path)
            return answers.parse_model(wire.Integration, response, answers.json_object(response))

        return await self._retrying(once, what="heartbeat", backoff=backoff)

    async def list_registrations(self, name: str | None = None) -> list[wire.Integration]:
        params = {"name": name} if name else None

        async def once() -> list[wire.Integration]:
            response = await self._send_once("GET", "/controlPlane/v1/uniform/registration", params=params)
            body = answers.json_body(response)
            if body is None:
                return []
            if not isinstance(body, list):
                raise httperrors.bad_answer(response, f"a JSON {type(body).__name__} where a list was expected")
            return [answers.parse_model(wire.Integration, response, item) for item in body]

        return await self._retrying(once, what="listing registrations", backoff=None)

    async def post_logs(self, entries: list[wire.LogEntry]) -> None:
        """Error log entries for the integration's page in the Bridge."""
        if not entries:
            return
        body = {"logs": [e.model_dump(mode="json") for e in entries]}

        async def once() -> None:
            await self._send_once("POST", "/controlPlane/v1/log", json=body)

        await self._retrying(once, what="posting log entries", backoff=None)

    # -- resources ----------------------------------------------------------------------------

    def _resource_base(self, project: str, stage: str | None, service: str | None) -> str:
        path = f"/{self.resource_service_path}/v1/project/{_segment(project)}"
        if stage:
            path += f"/stage/{_segment(stage)}"
            if service:
                path += f"/service/{_segment(service)}"
        elif service:
            raise ValueError("a service-level resource needs a stage")
        return path + "/resource"

    async def get_resource(
        self,
        project: str,
        uri: str,
        *,
        stage: str | None = None,
        service: str | None = None,
        git_commit_id: str | None = None,
    ) -> wire.Resource:
        """One file at project, stage or service level (``git_commit_id`` pins the version)."""
        encoded = encode_resource_uri(uri) if self.endpoint else quote_plus(uri.lstrip("/"), safe="")
        path = f"{self._resource_base(project, stage, service)}/{encoded}"
        params = {"gitCommitID": git_commit_id} if git_commit_id else None

        async def once() -> wire.Resource:
            response = await self._send_once("GET", path, params=params)
            return answers.resource_of(response, answers.json_object(response), uri)

        return await self._retrying(once, what=f"reading {uri}", backoff=None)

    async def list_resources(self, project: str, stage: str, service: str) -> list[str]:
        """URIs (each starting with ``/``) of the service-level resources."""
        path = self._resource_base(project, stage, service)

        async def once() -> list[Json]:
            return await self._paginate(path, {}, key=_resource_uri, items=answers.resource_list)

        resources = await self._retrying(once, what="listing resources", backoff=None)
        return ["/" + str(r.get("resourceURI", "")).lstrip("/") for r in resources if r.get("resourceURI")]

    # -- diagnostics -------------------------------------------------------------------------

    async def check(self) -> Json:
        """Credentials and reachability (``POST /v1/auth``) and the control plane's metadata."""
        started = time.monotonic()
        await self._retrying(lambda: self._send_once("POST", "/v1/auth"), what="checking the token", backoff=None)
        _, metadata = await self._retrying(
            lambda: self._get_json("/v1/metadata"), what="reading metadata", backoff=None
        )
        return {
            "endpoint": self.endpoint or "in-cluster (shipyard-controller:8080, resource-service:8080, ...)",
            "authenticated": True,
            "metadata": metadata,
            "elapsed_s": round(time.monotonic() - started, 3),
        }


class _DoNotRetry(Exception):
    """Carries an error past :func:`retry.retry_temporary` without a retry."""

    def __init__(self, error: errors.KeptnError) -> None:
        super().__init__(str(error))
        self.error = error


def _keptn_context(response: httpx.Response, event: Mapping[str, Any], secrets: tuple[str, ...]) -> str:
    """The server's keptnContext; the event's own when the (accepted) answer has none."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("keptnContext"), str) and body["keptnContext"]:
        return str(body["keptnContext"])
    if response.content:
        logger.warning(
            "POST %s accepted the event (%d) but its answer has no keptnContext: %r",
            redacted(response.request.url),
            response.status_code,
            scrub(response.text[:BODY_EXCERPT_CHARS], secrets),
        )
    return str(event.get("shkeptncontext") or "")
