"""Per-task credentials: what a task may do through the proxy with the token jes gave it.

A task never sees the Keptn token (DESIGN.md, "Security model"). When it must talk to Keptn, jes
mints a random token bound to one :class:`TaskScope` — its event, its service, its task — and
revokes it when the task ends. The store keeps only the token's SHA-256, so a dump of it reveals
no usable token. Deny by default; a scoped token may only:

* ``POST /event`` a ``sh.keptn.event.<task>.status.changed`` or a ``sh.keptn.log.error`` event
  for its own event (same ``shkeptncontext``, ``triggeredid``, project, stage and service). Never
  ``.triggered``, ``.started`` or ``.finished``: jes sends ``.started`` and ``.finished`` exactly
  once per task (Keptn completes a task when #finished == #started > 0, so one more from the task
  would hang or end the sequence early), and a ``.triggered`` would start work nobody asked for;
* ``GET`` the resources of its own service:
  ``/resource-service/v1/project/{p}/stage/{s}/service/{svc}/resource[/...]``;
* ``GET`` the stored events of its own context: ``/mongodb-datastore/event?keptnContext=<own>``,
  or ``/mongodb-datastore/event/type/{type}?filter=shkeptncontext:<own>`` (that route filters by
  ``filter`` only: it ignores ``keptnContext``, so demanding that would let every event of the
  type through).

Paths are checked segment by segment on the raw (percent-encoded) path; a ``.`` or ``..`` segment
at any level of decoding is refused, since the gateway or httpx would resolve it elsewhere.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from jes.clients.keptn.wire import LOG_ERROR_TYPE

_DECODING_LEVELS = 3
_FILTER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class TaskScope:
    """What one task's token is for: one triggered event, one service, one task (one Job)."""

    keptn_context: str
    triggered_id: str
    project: str
    stage: str
    service: str
    task_name: str
    """The task of the event type, e.g. ``sayhello`` for ``sh.keptn.event.sayhello.triggered``."""
    job_name: str

    @property
    def status_changed_type(self) -> str:
        return f"sh.keptn.event.{self.task_name}.status.changed"

    def permissions(self) -> str:
        """Everything this token may do, in one sentence (the body of every 403)."""
        return (
            f"this task's token may only: send {self.status_changed_type} or {LOG_ERROR_TYPE} for its own event "
            f"(shkeptncontext {self.keptn_context}, triggeredid {self.triggered_id}); "
            f"read resources of {self.project}/{self.stage}/{self.service}; read events of its own context"
        )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ScopeStore:
    """Scoped tokens in memory: minted per task, looked up per request, revoked when the task ends."""

    def __init__(self) -> None:
        self._scopes: dict[str, TaskScope] = {}

    def __len__(self) -> int:
        return len(self._scopes)

    def mint(self, scope: TaskScope) -> str:
        """A new random token for ``scope`` (only its SHA-256 is kept)."""
        token = secrets.token_urlsafe(32)
        self._scopes[_digest(token)] = scope
        return token

    def revoke(self, token_or_job_name: str) -> int:
        """Forget a token, or every token of a Job; how many were revoked."""
        if self._scopes.pop(_digest(token_or_job_name), None) is not None:
            return 1
        gone = [key for key, scope in self._scopes.items() if scope.job_name == token_or_job_name]
        for key in gone:
            del self._scopes[key]
        return len(gone)

    def lookup(self, token: str) -> TaskScope | None:
        """The scope of a token, or None when it is unknown or revoked."""
        return self._scopes.get(_digest(token)) if token else None

    async def resolve(self, token: str) -> TaskScope | None:
        """The scope of a token for a request (a store shared by replicas looks it up elsewhere)."""
        return self.lookup(token)

    def check(
        self,
        scope: TaskScope,
        method: str,
        path_segments: Sequence[str],
        query: str,
        event: Mapping[str, Any] | None = None,
    ) -> str | None:
        """None when the request is allowed, else the 403 message (what the token may do, and why not).

        ``event`` is given for the event-forwarding route (its path is configurable); otherwise
        ``path_segments`` are the raw segments of the proxied path (``["resource-service", "v1", ...]``)
        and ``query`` its raw query string.
        """
        if event is not None:
            why = _event_refusal(scope, method, event)
        else:
            why = _proxy_refusal(scope, method.upper(), list(path_segments), query)
        return None if why is None else f"{scope.permissions()} (refused: {why})"


def token_from_headers(headers: Mapping[str, str]) -> str:
    """The token a request carries in ``x-token`` or ``Authorization: Bearer``; "" when none."""
    token = headers.get("x-token", "").strip()
    if token:
        return token
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


# ---------------------------------------------------------------------------------------------
# The rules


def _event_refusal(scope: TaskScope, method: str, event: Mapping[str, Any]) -> str | None:
    if method.upper() != "POST":
        return f"{method} is not POST"
    event_type = event.get("type")
    if event_type not in (scope.status_changed_type, LOG_ERROR_TYPE):
        return f"a task may not send {event_type!r} events (jes sends .started and .finished itself, once)"
    if event.get("shkeptncontext") != scope.keptn_context:
        return f"shkeptncontext {event.get('shkeptncontext')!r} is not this task's"
    if event.get("triggeredid") != scope.triggered_id:
        return f"triggeredid {event.get('triggeredid')!r} is not this task's"
    data = event.get("data")
    if not isinstance(data, Mapping):
        return "the event has no data with project, stage and service"
    for key, own in (("project", scope.project), ("stage", scope.stage), ("service", scope.service)):
        if data.get(key) != own:
            return f"data.{key} {data.get(key)!r} is not this task's"
    return None


def _proxy_refusal(scope: TaskScope, method: str, segments: list[str], query: str) -> str | None:
    if method != "GET":
        return f"{method} is not allowed (read-only)"
    if not segments or any(not s for s in segments) or _has_dot_segment(segments):
        return "the path has empty, '.' or '..' segments"
    decoded = [unquote(s) for s in segments]
    if decoded[0] == "resource-service":
        return _resource_refusal(scope, decoded)
    if decoded[0] == "mongodb-datastore":
        return _datastore_refusal(scope, decoded, query)
    return f"/{decoded[0]} is not readable with a task's token"


def _has_dot_segment(segments: list[str]) -> bool:
    """A ``.``/``..`` segment now or after decoding up to three times (``%2e%2e``, ``%252e``)."""
    for segment in segments:
        text = segment
        for _ in range(_DECODING_LEVELS + 1):
            if any(part in (".", "..") for part in re.split(r"[/\\]", text)):
                return True
            text = unquote(text.replace("+", " "))
    return False


def _resource_refusal(scope: TaskScope, decoded: list[str]) -> str | None:
    own = ["v1", "project", scope.project, "stage", scope.stage, "service", scope.service, "resource"]
    if decoded[1:9] != own:
        return "resources outside " + f"{scope.project}/{scope.stage}/{scope.service} are not readable"
    return None


def _datastore_refusal(scope: TaskScope, decoded: list[str], query: str) -> str | None:
    params = parse_qs(query, keep_blank_values=True)
    if decoded[1:] == ["event"]:
        if params.get("keptnContext") != [scope.keptn_context]:
            return f"reading events needs keptnContext={scope.keptn_context} (this task's context)"
        return None
    if len(decoded) == 4 and decoded[1:3] == ["event", "type"]:
        if not _filter_is_own_context(params.get("filter", []), scope.keptn_context):
            return f"reading events by type needs filter=shkeptncontext:{scope.keptn_context} (this task's context)"
        return None
    return "only /mongodb-datastore/event and /mongodb-datastore/event/type/<type> are readable"


def _filter_is_own_context(filters: list[str], keptn_context: str) -> bool:
    """The datastore's ``filter`` (``key:value AND key:value``) pins this context, exactly once."""
    if len(filters) != 1:
        return False
    contexts = []
    for term in filters[0].split(" AND "):
        key, sep, value = term.strip().partition(":")
        if not sep or not _FILTER_KEY.match(key):
            return False
        if key == "shkeptncontext":
            contexts.append(value)
    return contexts == [keptn_context]
