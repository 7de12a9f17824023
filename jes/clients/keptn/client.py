"""The Keptn control-plane API as jes uses it, over one injected :class:`httpx.AsyncClient`.

Every call has a timeout (the client's), is retried with :mod:`jes.util.retry` on temporary errors, and
raises :mod:`jes.errors` types: connection errors, timeouts, 5xx and 429 become
:class:`errors.KeptnTemporaryError` (``retry_after_s`` from ``Retry-After``), 401/403
:class:`errors.KeptnAuthError`, 404 :class:`errors.KeptnNotFoundError`, any other 4xx
:class:`errors.KeptnPermanentError`. Messages name the method, the URL, the status and what the
server said — never the token. A body that is not the JSON the contract promises is a temporary
error (a proxy's error page, a truncated answer), not a crash.

Sending an event is special: when a POST may have reached the server (the connection broke after
the request was sent, a read timeout, a gateway timeout), repeating it could create a second
``.started`` and break Keptn's ``#finished == #started`` rule. Such failures raise
:class:`EventMaybeDeliveredError` without retrying; :func:`delivered` asks the datastore whether
the event arrived before the caller sends it again.

Paths follow keptn-api.md §2: ``{api}/v1/event``, ``{api}/controlPlane/v1/...``,
``{api}/<resource service path>/v1/...``, ``{api}/mongodb-datastore/event``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jes import errors
from jes.clients.keptn import auth
from jes.settings import Settings
from jes.util import retry

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=errors.KeptnError)
Json = dict[str, Any]

#: Bytes of a non-JSON error body quoted in messages.
BODY_EXCERPT_CHARS = 256
#: Page size asked for on paginated endpoints (the server's default is 20).
PAGE_SIZE = 50
#: The largest page asked of the triggered-events endpoint. Keptn 0.16-1.4.5 answer every later page
#: with the first page again (its page-2 bug), so what does not fit on the first page is invisible:
#: jes asks for as many as the last answer's ``totalCount``, up to this (Keptn does not cap pageSize).
MAX_TRIGGERED_PAGE_SIZE = 1000
#: A safety net against a server that never ends a pagination.
MAX_PAGES = 200
#: Gateways answer these when they gave up waiting: the backend may have processed the request.
AMBIGUOUS_STATUSES = frozenset({502, 504})


class EventMaybeDeliveredError(errors.KeptnTemporaryError):
    """The event POST failed in a way that leaves open whether the server accepted it.

    Do not send it again before :func:`delivered` says it did not arrive.
    """

    maybe_delivered = True


# ---------------------------------------------------------------------------------------------
# Values on the wire


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SubscriptionFilter(_Wire):
    """Project/stage/service lists; an empty (or ``null``) list means "every"."""

    projects: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    @field_validator("projects", "stages", "services", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return () if value is None else value


class Subscription(_Wire):
    id: str = ""
    event: str
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)

    @field_validator("filter", mode="before")
    @classmethod
    def _null_filter(cls, value: object) -> object:
        return {} if value is None else value


class KubernetesMetadata(_Wire):
    namespace: str = ""
    podname: str = ""
    deploymentname: str = ""


class IntegrationMetadata(_Wire):
    hostname: str = ""
    integrationversion: str = ""
    distributorversion: str = ""
    location: str = ""
    kubernetesmetadata: KubernetesMetadata = Field(default_factory=KubernetesMetadata)
    lastseen: str | None = None


class Registration(_Wire):
    """What jes registers (``POST /controlPlane/v1/uniform/registration``)."""

    name: str
    metadata: IntegrationMetadata
    subscriptions: tuple[Subscription, ...] = ()

    def body(self) -> Json:
        subscriptions = [{"event": s.event, "filter": s.filter.model_dump(mode="json")} for s in self.subscriptions]
        metadata = self.metadata.model_dump(mode="json", exclude={"lastseen"})
        return {"name": self.name, "metadata": metadata, "subscriptions": subscriptions}


class Integration(_Wire):
    """A stored integration as the control plane returns it (ping, list)."""

    id: str = ""
    name: str = ""
    metadata: IntegrationMetadata = Field(default_factory=IntegrationMetadata)
    subscriptions: tuple[Subscription, ...] = ()

    @field_validator("subscriptions", "metadata", mode="before")
    @classmethod
    def _null_is_default(cls, value: object, info: pydantic.ValidationInfo) -> object:
        if value is None:
            return () if info.field_name == "subscriptions" else {}
        return value


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LogEntry(_Wire):
    """One entry for the control plane's log API (shown on the integration's page in the Bridge)."""

    integrationid: str
    message: str
    time: str = Field(default_factory=now_rfc3339)
    shkeptncontext: str = ""
    task: str = ""
    triggeredid: str = ""
    gitcommitid: str = ""


@dataclass(frozen=True)
class Resource:
    """One file from the resource service."""

    uri: str
    content: bytes
    version: str
    """The git commit the content was read at (``metadata.version``)."""


# ---------------------------------------------------------------------------------------------
# Error translation


def _redacted(url: httpx.URL) -> str:
    """The URL for messages: without user info (a URL could carry credentials)."""
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    return str(url)


def server_message(response: httpx.Response) -> str:
    """What the server said: its ``message`` field, else the start of the body."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])[:BODY_EXCERPT_CHARS]
    return text[:BODY_EXCERPT_CHARS].strip()


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date); None when absent or unreadable."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def status_error(response: httpx.Response, *, idempotent: bool = True) -> errors.KeptnError:
    """The :mod:`jes.errors` type for a non-2xx answer.

    For a request that must not be repeated blindly (``idempotent=False``), a gateway's 502/504
    raises :class:`EventMaybeDeliveredError`: the backend may have processed it.
    """
    request = response.request
    method, url, status = request.method, _redacted(request.url), response.status_code
    said = server_message(response)
    message = f"{method} {url} returned {status}" + (f": {said}" if said else "")
    fields: dict[str, Any] = {"method": method, "url": url, "status": status, "server_message": said}
    if status == 429 or status >= 500:
        cls: type[errors.KeptnTemporaryError] = errors.KeptnTemporaryError
        if not idempotent and status in AMBIGUOUS_STATUSES:
            cls = EventMaybeDeliveredError
        return cls(message, retry_after_s=retry_after_s(response), **fields)
    if status in (401, 403):
        hint = " (check KEPTN_API_TOKEN or the OAuth client)" if status == 401 else " (missing permission)"
        return errors.KeptnAuthError(message + hint, **fields)
    if status == 404:
        return errors.KeptnNotFoundError(message, **fields)
    return errors.KeptnPermanentError(message, **fields)


def transport_error(
    exc: httpx.HTTPError, method: str, url: str, timeout_s: float | None, *, idempotent: bool = True
) -> errors.KeptnError:
    """The :mod:`jes.errors` type for a request that got no answer.

    For ``idempotent=False``, a failure after the request may have been sent (not a failure to
    connect) raises :class:`EventMaybeDeliveredError`.
    """
    fields: dict[str, Any] = {"method": method, "url": url}
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return errors.KeptnPermanentError(f"{method} {url}: {exc}", **fields)
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    cls = EventMaybeDeliveredError if sent and not idempotent else errors.KeptnTemporaryError
    if isinstance(exc, httpx.TimeoutException):
        after = f" after {timeout_s:g}s" if timeout_s else ""
        return cls(f"{method} {url}: {type(exc).__name__}: no answer{after}", **fields)
    detail = str(exc) or "connection failed"
    return cls(f"{method} {url}: {type(exc).__name__}: {detail}", **fields)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_answer(response, f"invalid JSON: {response.text[:BODY_EXCERPT_CHARS]!r}") from exc


def _bad_answer(response: httpx.Response, what: str) -> errors.KeptnTemporaryError:
    request = response.request
    url = _redacted(request.url)
    return errors.KeptnTemporaryError(
        f"{request.method} {url} returned {response.status_code} with {what}",
        method=request.method,
        url=url,
        status=response.status_code,
        server_message=response.text[:BODY_EXCERPT_CHARS],
    )


def _json_object(response: httpx.Response) -> Json:
    body = _json(response)
    if not isinstance(body, dict):
        raise _bad_answer(response, f"a JSON {type(body).__name__} where an object was expected")
    return body


def _model(cls: type[M], response: httpx.Response, value: Any) -> M:
    try:
        return cls.model_validate(value)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _bad_answer(response, f"an unexpected {cls.__name__} ({where}: {first['msg']})") from exc


def _event_list(response: httpx.Response, body: Json) -> list[Json]:
    events = body.get("events")
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise _bad_answer(response, "'events' that is not a list of objects")
    return events


def _page_key(body: Json) -> str:
    key = body.get("nextPageKey")
    return "" if key is None else str(key)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def scrub_error(error: E, secrets: tuple[str, ...]) -> E:
    """Replace every secret in the error's message and attributes by ``***`` (in place)."""
    if not secrets:
        return error
    error.args = tuple(scrub(a, secrets) if isinstance(a, str) else a for a in error.args)
    error.url = scrub(error.url, secrets)
    error.server_message = scrub(error.server_message, secrets)
    return error


def encode_resource_uri(uri: str) -> str:
    """A resource URI encoded for the path through the API gateway (keptn-api.md §7.2).

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
        # Requests beyond the connection pool would queue inside httpcore, which rescans its whole
        # queue for every request it finishes; waiting here (as many as the pool holds) keeps that
        # queue empty under a burst.
        self._in_flight = asyncio.Semaphore(max_in_flight)
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
    ) -> httpx.Response:
        """One request; errors translated. Auth-flow failures (OAuth) arrive as KeptnErrors.
        ``before`` is awaited once a connection slot is free, right before the request goes out."""
        url = self.endpoint + path
        try:
            async with self._in_flight:
                if before is not None:
                    await before()
                response = await self.http.request(method, url, params=params, json=json)
        except httpx.HTTPError as exc:
            timeout_s = self.http.timeout.read
            shown = _redacted(httpx.URL(url, params=params))
            error = transport_error(exc, method, shown, timeout_s, idempotent=idempotent)
            raise self._scrub(error) from exc
        except errors.KeptnError as exc:
            raise self._scrub(exc) from exc.__cause__
        if not ok(response.status_code):
            raise self._scrub(status_error(response, idempotent=idempotent))
        return response

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
        return scrub_error(error, self._secrets())

    async def _get_json(self, path: str, *, params: Mapping[str, str] | None = None) -> tuple[httpx.Response, Json]:
        response = await self._send_once("GET", path, params=params)
        return response, _json_object(response)

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
            page_key = _page_key(body)
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
                    path, params, key=_event_key, items=_event_list, page_size=size, totals=totals
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

        async def once() -> str:
            try:
                response = await self._send_once(
                    "POST", "/v1/event", json=dict(event), ok=lambda s: 200 <= s <= 204, idempotent=False,
                    before=before,
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
            return await self._paginate("/mongodb-datastore/event", params, key=_event_key, items=_event_list)

        return await self._retrying(once, what="reading the datastore", backoff=backoff)

    # -- uniform registration ------------------------------------------------------------------

    async def register(self, registration: Registration, *, backoff: retry.Backoff | None = None) -> str:
        """Register (or find) this integration; its id."""

        async def once() -> str:
            response = await self._send_once("POST", "/controlPlane/v1/uniform/registration", json=registration.body())
            body = _json_object(response)
            integration_id = body.get("id")
            if not isinstance(integration_id, str) or not integration_id:
                raise _bad_answer(response, "no integration id")
            return integration_id

        return await self._retrying(once, what="registering", backoff=backoff)

    async def ping(self, integration_id: str, *, backoff: retry.Backoff | None = None) -> Integration:
        """Heartbeat; the stored integration, whose subscriptions are the source of truth."""
        path = f"/controlPlane/v1/uniform/registration/{_segment(integration_id)}/ping"

        async def once() -> Integration:
            response = await self._send_once("PUT", path)
            return _model(Integration, response, _json_object(response))

        return await self._retrying(once, what="heartbeat", backoff=backoff)

    async def list_registrations(self, name: str | None = None) -> list[Integration]:
        params = {"name": name} if name else None

        async def once() -> list[Integration]:
            response = await self._send_once("GET", "/controlPlane/v1/uniform/registration", params=params)
            body = _json(response)
            if body is None:
                return []
            if not isinstance(body, list):
                raise _bad_answer(response, f"a JSON {type(body).__name__} where a list was expected")
            return [_model(Integration, response, item) for item in body]

        return await self._retrying(once, what="listing registrations", backoff=None)

    async def post_logs(self, entries: list[LogEntry]) -> None:
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
    ) -> Resource:
        """One file at project, stage or service level (``git_commit_id`` pins the version)."""
        path = f"{self._resource_base(project, stage, service)}/{encode_resource_uri(uri)}"
        params = {"gitCommitID": git_commit_id} if git_commit_id else None

        async def once() -> Resource:
            response = await self._send_once("GET", path, params=params)
            return _resource(response, _json_object(response), uri)

        return await self._retrying(once, what=f"reading {uri}", backoff=None)

    async def list_resources(self, project: str, stage: str, service: str) -> list[str]:
        """URIs (each starting with ``/``) of the service-level resources."""
        path = self._resource_base(project, stage, service)

        async def once() -> list[Json]:
            return await self._paginate(path, {}, key=lambda r: str(r.get("resourceURI", "")), items=_resource_list)

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
            "endpoint": self.endpoint,
            "authenticated": True,
            "metadata": metadata,
            "elapsed_s": round(time.monotonic() - started, 3),
        }


class _DoNotRetry(Exception):
    """Carries an error past :func:`retry.retry_temporary` without a retry."""

    def __init__(self, error: errors.KeptnError) -> None:
        super().__init__(str(error))
        self.error = error


def _event_key(event: Json) -> str:
    return str(event.get("id", ""))


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
            _redacted(response.request.url),
            response.status_code,
            scrub(response.text[:BODY_EXCERPT_CHARS], secrets),
        )
    return str(event.get("shkeptncontext") or "")


def _resource_list(response: httpx.Response, body: Json) -> list[Json]:
    resources = body.get("resources")
    if resources is None:
        return []
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise _bad_answer(response, "'resources' that is not a list of objects")
    return resources


def _resource(response: httpx.Response, body: Json, uri: str) -> Resource:
    content = body.get("resourceContent")
    if not isinstance(content, str):
        raise _bad_answer(response, "no resourceContent")
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_answer(response, "resourceContent that is not base64") from exc
    metadata = body.get("metadata")
    version = metadata.get("version", "") if isinstance(metadata, dict) else ""
    return Resource(uri=uri.lstrip("/"), content=data, version=str(version or ""))


# ---------------------------------------------------------------------------------------------
# Did an event arrive?


def matches_report(
    event: Mapping[str, Any],
    *,
    event_type: str,
    triggered_id: str,
    source: str,
    marker: Mapping[str, Any] | None = None,
) -> bool:
    """Whether a stored event is the report described (type + triggeredid + source [+ marker])."""
    if event.get("type") != event_type or event.get("triggeredid") != triggered_id:
        return False
    if event.get("source") != source:
        return False
    if marker is None:
        return True
    data = event.get("data")
    jes_data = data.get("jes") if isinstance(data, dict) else None
    executor = jes_data.get("executor") if isinstance(jes_data, dict) else None
    return executor is not None and executor == marker.get("executor")


async def delivered(
    client: KeptnClient,
    *,
    keptn_context: str,
    event_type: str,
    triggered_id: str,
    source: str,
    marker: Mapping[str, Any] | None = None,
    backoff: retry.Backoff | None = None,
) -> bool:
    """Whether the datastore holds the event described (see :func:`matches_report`).

    ``marker`` is the ``data.jes`` object jes put in its report; when given, the stored event's
    ``data.jes.executor`` must equal ``marker["executor"]`` (another replica or location sends
    the same type, triggeredid and source).
    """
    events = await client.find_events(keptn_context=keptn_context, event_type=event_type, backoff=backoff)
    return any(
        matches_report(e, event_type=event_type, triggered_id=triggered_id, source=source, marker=marker)
        for e in events
    )
