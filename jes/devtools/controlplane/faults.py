"""Failures injected into the local control plane by tests.

A rule matches an HTTP method, a path regular expression (``re.fullmatch`` on the decoded path
relative to the API prefix, e.g. ``/controlPlane/v1/event/triggered/.*``; paths outside the prefix,
such as the OAuth token endpoint, are matched as they are) and optionally a regular expression
searched in the request body (``body_matches``: e.g. only the ``.finished`` POSTs), and fires
``times`` times (``None``: until removed). What a firing rule does:

* ``latency_s``: wait that long first (combines with every other kind, or stands alone);
* ``status``: answer with that status and a Keptn error body (or ``body``) without processing
  the request; ``retry_after_s`` adds a ``Retry-After`` header (fractions are sent as they are,
  so tests can stay fast);
* ``drop_connection``: process the request fully, then close the TCP connection without a response;
* ``garbage_body``: process the request fully, then answer 200 with a body that is not JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jes.devtools.doubles import faults as shared


@dataclass(eq=False, kw_only=True)
class FaultRule(shared.FaultRule):
    """One injected failure of the control plane (``times``, ``fired``, ``latency_s`` and
    ``retry_after_s`` as every double's)."""

    method: str | None
    path: re.Pattern[str] | None
    status: int | None = None
    body: Any = None
    drop_connection: bool = False
    garbage_body: bool = False
    body_matches: re.Pattern[str] | None = None

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        if self.body_matches is not None and not self.body_matches.search(body.decode("utf-8", "replace")):
            return False
        return self.path is None or self.path.fullmatch(path) is not None


class FaultInjector(shared.FaultRules[FaultRule]):
    """The active fault rules, first match wins; thread-safe."""

    def add(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        body: Any = None,
        latency_s: float = 0.0,
        retry_after_s: float | None = None,
        drop_connection: bool = False,
        garbage_body: bool = False,
        times: int | None = None,
        body_matches: str | None = None,
    ) -> FaultRule:
        """Add a rule (see the module docstring) and return it."""
        kinds = sum((status is not None, drop_connection, garbage_body))
        if kinds > 1:
            raise ValueError("a fault rule is one of status, drop_connection or garbage_body")
        if kinds == 0 and latency_s <= 0:
            raise ValueError("a fault rule needs status, drop_connection, garbage_body or latency_s")
        if retry_after_s is not None and status is None:
            raise ValueError("retry_after_s needs a status (429 or 503)")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for until cleared)")
        rule = FaultRule(
            method=method.upper() if method else None,
            path=re.compile(path) if path is not None else None,
            status=status,
            body=body,
            latency_s=latency_s,
            retry_after_s=retry_after_s,
            drop_connection=drop_connection,
            garbage_body=garbage_body,
            times=times,
            body_matches=re.compile(body_matches) if body_matches is not None else None,
        )
        return self._add(rule)

    def take(self, method: str, path: str, body: bytes = b"") -> FaultRule | None:
        """The first rule matching this request, counted as fired (and dropped when used up)."""
        return self._fire(lambda rule: rule.matches(method, path, body))[1]
