"""Failed control-plane requests translated into :mod:`jes.errors` types.

Connection errors, timeouts, 5xx and 429 become :class:`errors.KeptnTemporaryError`
(``retry_after_s`` from ``Retry-After``), 401/403 :class:`errors.KeptnAuthError`, 404
:class:`errors.KeptnNotFoundError`, any other 4xx :class:`errors.KeptnPermanentError`. Messages
name the method, the URL, the status and what the server said — never a credential
(:func:`scrub_error`). An answer that is not what the contract promises is a temporary error
(:func:`bad_answer`): a proxy's error page or a truncated body, not a crash.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from jes import errors

E = TypeVar("E", bound=errors.KeptnError)

#: Bytes of a non-JSON error body quoted in messages.
BODY_EXCERPT_CHARS = 256
#: Gateways answer these when they gave up waiting: the backend may have processed the request.
AMBIGUOUS_STATUSES = frozenset({502, 504})


class EventMaybeDeliveredError(errors.KeptnTemporaryError):
    """The event POST failed in a way that leaves open whether the server accepted it.

    Do not send it again before :func:`jes.clients.keptn.arrival.delivered` says it did not arrive.
    """

    maybe_delivered = True


def redacted(url: httpx.URL) -> str:
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
    method, url, status = request.method, redacted(request.url), response.status_code
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


def bad_answer(response: httpx.Response, what: str) -> errors.KeptnTemporaryError:
    """A 2xx answer that is not what the contract promises (``what`` it was instead)."""
    request = response.request
    url = redacted(request.url)
    return errors.KeptnTemporaryError(
        f"{request.method} {url} returned {response.status_code} with {what}",
        method=request.method,
        url=url,
        status=response.status_code,
        server_message=response.text[:BODY_EXCERPT_CHARS],
    )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
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
