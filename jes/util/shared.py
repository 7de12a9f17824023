"""Equal strings shared between the objects jes keeps for as long as an event is in flight; an
event kept packed.

The JSON parser shares equal strings within one document only: with thousands of events in flight
each event would hold its own ``"shkeptncontext"``, ``"project"`` or
``"sh.keptn.event.test.triggered"``, and each watched pod its own ``"Running"`` and ``"True"``.
Interned, one copy serves them all. Interned strings are freed again once nobody holds them.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: Longer strings are rarely repeated (ids, messages, payloads): left as they are.
SHARED_MAX_CHARS = 64


def shared_json(value: Any) -> Any:
    """``value`` (parsed JSON) equal in every way, with its keys and short strings interned (a new
    structure; ``value`` is left as it was). Too deep to walk: ``value`` itself."""
    try:
        return _shared(value)
    except RecursionError:
        return value


def packed_json(value: Any) -> bytes | Any:
    """``value`` (parsed JSON) as compact JSON: what a service keeps of an event for as long as it
    is in flight — a third of the parsed objects' size, or less. :func:`unpacked_json` gives it back
    equal in every way (key order, numbers, and strings that are not valid Unicode included). Too
    deep to pack: ``value`` itself."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    except RecursionError:
        return value


def unpacked_json(packed: bytes) -> Any:
    """What :func:`packed_json` packed, with its keys and short strings shared (:func:`shared_json`)."""
    return shared_json(json.loads(packed))  # (bytes are decoded with "surrogatepass")


def shared_text(value: Any) -> Any:
    """A short string interned; anything else as it is."""
    if type(value) is str and len(value) <= SHARED_MAX_CHARS:
        return sys.intern(value)
    return value


def _shared(value: Any) -> Any:
    if type(value) is dict:
        return {shared_text(k): _shared(v) for k, v in value.items()}
    if type(value) is list:
        return [_shared(v) for v in value]
    return shared_text(value)
