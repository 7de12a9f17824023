"""Faults a test injects into the fake API server, and the connection drop that some need."""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jes.devtools.doubles import faults as shared


def normal_resource(resource: str | None) -> str | None:
    """``batch/jobs``, ``jobs.batch`` and ``jobs`` are the same resource."""
    if resource is None:
        return None
    if "/" in resource and resource.split("/", 1)[1] not in ("log", "status"):
        resource = resource.split("/", 1)[1]
    head, _, sub = resource.partition("/")
    head = head.split(".", 1)[0]
    return f"{head}/{sub}" if sub else head


@dataclass(eq=False, kw_only=True)
class Fault(shared.FaultRule):
    """One injected misbehaviour; ``times=None`` lasts until :meth:`Faults.clear`."""

    times: int | None = 1
    status: int = 0
    """0: no error answer (a latency-only fault)."""
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    """The object's name, or a glob of it (``jes-claim-*``)."""
    drop: bool = False
    """Send the response headers, then close the connection."""
    commit: bool = False
    """Carry the request out first, then answer with the fault (a lost response)."""
    message: str = ""

    @property
    def hits(self) -> int:
        """How often it fired (the name the fake API's tests use)."""
        return self.fired

    @property
    def slows_only(self) -> bool:
        """A latency-only fault: the request goes on to the next faults and to the API."""
        return self.status == 0 and not self.drop

    def matches(self, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
        return (
            (self.verb is None or self.verb == verb)
            and (self.resource is None or normal_resource(self.resource) == resource)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or fnmatch.fnmatchcase(name or "", self.name))
        )


class Faults(shared.FaultRules[Fault]):
    """Misbehaviour of the API server, by (verb, resource, namespace, name).

    Verbs are Kubernetes' RBAC verbs: get, list, watch, create, update, patch, delete. Resources
    are plural names, optionally with group (``batch/jobs``) or subresource (``pods/log``).
    """

    def add(self, fault: Fault) -> Fault:
        return self._add(fault)

    def fail(
        self,
        status: int = 503,
        *,
        times: int | None = 1,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        retry_after_s: float | None = None,
        commit: bool = False,
        message: str = "",
    ) -> Fault:
        """Answer matching requests with ``status`` (and a real ``Status`` body)."""
        return self.add(
            Fault(
                status=status,
                verb=verb,
                resource=resource,
                namespace=namespace,
                name=name,
                times=times,
                retry_after_s=retry_after_s,
                commit=commit,
                message=message,
            )
        )

    def throttle(self, *, retry_after_s: float = 1.0, times: int | None = 1, **match: Any) -> Fault:
        """429 Too Many Requests with a ``Retry-After`` header."""
        return self.fail(429, times=times, retry_after_s=retry_after_s, **match)

    def forbid(self, verb: str, resource: str, namespace: str | None = None, *, times: int | None = None) -> Fault:
        """403 Forbidden as RBAC would answer it, until cleared."""
        return self.fail(403, times=times, verb=verb, resource=resource, namespace=namespace)

    def latency(self, seconds: float, *, times: int | None = None, **match: Any) -> Fault:
        return self.add(Fault(latency_s=seconds, times=times, **match))

    def drop(self, *, times: int | None = 1, commit: bool = False, **match: Any) -> Fault:
        """Break the connection after the response headers."""
        return self.add(Fault(drop=True, times=times, commit=commit, **match))

    def take(self, verb: str, resource: str, namespace: str | None, name: str | None) -> tuple[float, Fault | None]:
        """Total latency to add and the first error fault that applies (each counts one hit)."""
        slowed, fault = self._fire(
            lambda rule: rule.matches(verb, resource, namespace, name), passes=lambda rule: rule.slows_only
        )
        latency_s = sum(rule.latency_s for rule in slowed)
        return (latency_s + fault.latency_s, fault) if fault is not None else (latency_s, None)


class DeliberateDrop(Exception):
    """Raised after the response started, so that uvicorn closes the connection."""


class DropFilter(logging.Filter):
    """Keeps uvicorn from logging the connections the fake drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DeliberateDrop)


class DropResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"kind":', "more_body": True})
        raise DeliberateDrop()
