"""Events arriving on ``EVENT_FORWARDING_PATH``: structured CloudEvents in JSON, whatever the
Content-Type (reference/distributor.md §4.2), and which of them feed the uniform error log (§10)."""

from __future__ import annotations

import json
from typing import Any

from jes import errors
from jes.clients.keptn.wire import LOG_ERROR_TYPE, log_entry_for

SPEC_VERSIONS = ("1.0", "0.3")


def decode_structured(body: bytes) -> dict[str, Any]:
    """The event in ``body`` (attributes at the top level, ``data``); :class:`errors.EventError`
    saying what is missing otherwise."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.EventError(f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise errors.EventError(f"the body is a JSON {type(event).__name__}, not a CloudEvent object")
    version = event.get("specversion")
    if version is None:
        raise errors.EventError(
            "not a structured CloudEvent: specversion is missing (send the whole event as JSON, attributes "
            "at the top level; ce-* headers are not read)"
        )
    if version not in SPEC_VERSIONS:
        raise errors.EventError(f"specversion {version!r} is not supported (use 1.0 or 0.3)")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise errors.EventError("the CloudEvent has no type (e.g. sh.keptn.event.mytask.status.changed)")
    data = event.get("data")
    if data is not None and not isinstance(data, dict):
        raise errors.EventError(f"data is a JSON {type(data).__name__}; a Keptn event's data is an object")
    return event


def is_error_log(event: dict[str, Any]) -> bool:
    """``sh.keptn.log.error``: only ever an error-log entry, never sent on."""
    return event.get("type") == LOG_ERROR_TYPE


def feeds_error_log(event: dict[str, Any]) -> bool:
    """Error logs and ``.finished`` events whose ``data.status`` is ``errored``."""
    return log_entry_for(event) is not None
