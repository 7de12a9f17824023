"""Kubernetes API errors as :mod:`jes.errors`: from the ``kubernetes`` client's exceptions, from
urllib3's and httpx's, and from a non-2xx answer of the direct path (:mod:`jes.clients.kubehttp`).
Temporary: connection problems, 5xx, 429 (with ``Retry-After``); 403 names the missing permission."""

from __future__ import annotations

import json

import httpx
import urllib3
from kubernetes.client.exceptions import ApiException

from jes import errors
from jes.clients.httptransport import Answer


def _status_fields(text: str, http_reason: str) -> tuple[str, str]:
    """(message, reason) from a ``Status`` body, or the HTTP reason."""
    if text:
        try:
            status = json.loads(text)
        except ValueError:
            return text[:256], http_reason
        if isinstance(status, dict):
            return str(status.get("message") or http_reason), str(status.get("reason") or "")
    return http_reason, ""


def _seconds(raw: str | bytes | None) -> float | None:
    """A ``Retry-After`` in seconds (None: absent or not a number)."""
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _server_message(exc: ApiException) -> tuple[str, str]:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    return _status_fields(body or "", str(exc.reason or ""))


def _retry_after_s(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    return _seconds(headers.get("Retry-After") if hasattr(headers, "get") else None)


def translate(exc: BaseException, *, verb: str, resource: str, namespace: str) -> errors.KubeError:
    """The :mod:`jes.errors` type for an exception of the client, of urllib3 or of httpx."""
    where = f"{verb} {resource} in namespace {namespace!r}"
    if isinstance(exc, ApiException):
        message, reason = _server_message(exc)
        error = status_error(int(exc.status or 0), str(exc.reason or ""), message, reason, verb, resource, namespace)
        if isinstance(error, errors.KubeTemporaryError):
            error.retry_after_s = _retry_after_s(exc)
        return error
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | httpx.TransportError):
        return errors.KubeTemporaryError(f"cannot {where}: connection error: {exc}")
    return errors.KubePermanentError(f"cannot {where}: {type(exc).__name__}: {exc}")


def status_error(
    status: int, http_reason: str, message: str, reason: str, verb: str, resource: str, namespace: str
) -> errors.KubeError:
    """The :mod:`jes.errors` type for a non-2xx answer (``message``, ``reason``: its Status body)."""
    text = f"cannot {verb} {resource} in namespace {namespace!r}: {status} {reason or http_reason}: {message}"
    if status == 403:
        return errors.KubePermissionError(verb=verb, resource=resource, namespace=namespace, server_message=message)
    if status == 409:
        return errors.KubeConflictError(text, status=status, reason=reason)
    if status == 404:
        return errors.KubeNotFoundError(text, status=status, reason=reason)
    if status == 429 or status >= 500:
        return errors.KubeTemporaryError(text, status=status, reason=reason)
    return errors.KubePermanentError(text, status=status, reason=reason)


def answer_error(answer: Answer, verb: str, resource: str, namespace: str) -> errors.KubeError:
    """:func:`status_error` for a non-2xx answer of the direct path."""
    http_reason = answer.reason.decode("latin-1")
    message, reason = _status_fields(answer.body.decode("utf-8", errors="replace"), http_reason)
    error = status_error(answer.status, http_reason, message, reason, verb, resource, namespace)
    if isinstance(error, errors.KubeTemporaryError):
        error.retry_after_s = _seconds(answer.header(b"retry-after"))
    return error


__all__ = ["answer_error", "status_error", "translate"]
