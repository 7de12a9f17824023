"""The size budget of an outgoing event: its JSON body as the client POSTs it stays within
``JES_MAX_EVENT_BYTES``; a long ``data.message`` keeps its head and tail around one line saying how
many bytes were omitted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def body_size(event: Mapping[str, Any]) -> int:
    """Bytes of the JSON body as the client POSTs it."""
    return len(encode(event))


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def omission_marker(omitted_bytes: int) -> str:
    return f"\n[... {omitted_bytes} bytes omitted to fit the event size limit ...]\n"


def fit_to_budget(event: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Shorten ``data.message`` (head + marker + tail) until the event fits ``max_bytes``.

    If even an empty message does not fit, the ``data.jes`` task reasons are shortened too; the
    envelope and the Keptn fields are never touched.
    """
    if body_size(event) <= max_bytes:
        return event
    data = event["data"]
    message: str = data.get("message", "")
    keep = _longest_fitting(event, message, max_bytes)
    if keep is None:
        _shrink_summary(data)
        keep = _longest_fitting(event, message, max_bytes) or 0
    data["message"] = cut_middle(message, keep)
    return event


def _longest_fitting(event: dict[str, Any], message: str, max_bytes: int) -> int | None:
    """The largest number of kept characters for which the event fits (binary search)."""
    data = event["data"]
    low, high, best = 0, len(message), None
    while low <= high:
        middle = (low + high) // 2
        data["message"] = cut_middle(message, middle)
        if body_size(event) <= max_bytes:
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best


def cut_middle(text: str, keep_chars: int) -> str:
    """Keep ``keep_chars`` characters (40 % head, 60 % tail) around an omission marker."""
    if keep_chars >= len(text):
        return text
    head_chars = keep_chars * 2 // 5
    tail_chars = keep_chars - head_chars
    head, tail = text[:head_chars], text[len(text) - tail_chars :] if tail_chars else ""
    omitted = len(text.encode()) - len(head.encode()) - len(tail.encode())
    return head + omission_marker(omitted) + tail


def _shrink_summary(data: dict[str, Any]) -> None:
    for task in data.get("jes", {}).get("tasks", []):
        task["reason"] = task.get("reason", "")[:200]
