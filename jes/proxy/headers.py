"""Which headers cross the proxy, and the scrubbing that keeps jes's secrets out of every answer.

Upstream gets the caller's headers without the hop-by-hop ones (RFC 9110 §7.6.1, plus any the
``Connection`` header names), ``Host`` and ``Content-Length`` (httpx sets both for the new
request), ``Accept-Encoding`` (httpx asks for what it can decode; the body is scrubbed decoded) and
the caller's credentials: ``x-token`` and ``Authorization``. The distributor appends its token
beside a caller's ``x-token``, so two reached Keptn; here the caller's credential never goes
upstream — in remote mode the shared client adds jes's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import httpx

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
     "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
_NOT_FORWARDED = frozenset({"host", "content-length", "accept-encoding", "expect", "x-token", "authorization"})
#: httpx decodes the body (and the length changes when secrets are scrubbed): both are set anew.
_NOT_RETURNED = frozenset({"content-length", "content-encoding"})
MASK = "***"


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    listed = headers.get("connection", "")
    return {name.strip().lower() for name in listed.split(",") if name.strip()}


def _dropped(name: str) -> bool:
    lowered = name.lower()
    return lowered in HOP_BY_HOP or lowered.startswith("proxy-")


def upstream_request_headers(caller: Iterable[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    """The caller's headers as sent upstream (multi-valued ones kept, in order)."""
    items = list(caller.items()) if isinstance(caller, Mapping) else list(caller)
    listed = _connection_listed(dict(items))
    return [
        (name, value)
        for name, value in items
        if not _dropped(name) and name.lower() not in _NOT_FORWARDED and name.lower() not in listed
    ]


def downstream_headers(upstream: httpx.Headers, secrets: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """Upstream's response headers for the caller (raw ASGI pairs), scrubbed of secrets."""
    listed = {name.strip().lower() for name in upstream.get("connection", "").split(",") if name.strip()}
    result = []
    for name, value in upstream.multi_items():
        lowered = name.lower()
        if _dropped(lowered) or lowered in _NOT_RETURNED or lowered in listed:
            continue
        result.append((lowered.encode("latin-1"), scrub_text(value, secrets).encode("latin-1", "replace")))
    return result


def scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def scrub_bytes(body: bytes, secrets: tuple[str, ...]) -> bytes:
    """``body`` with every secret (UTF-8) replaced by ``***``."""
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode("utf-8"), MASK.encode())
    return body
