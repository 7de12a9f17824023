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


#: Values nested deeper are not packed: unpacking them later, deeper in the stack, might fail (a
#: RecursionError) and the event would be lost. (No event Keptn sends comes near.)
MAX_PACKED_DEPTH = 200


def packed_json(value: Any) -> bytes | Any:
    """``value`` (parsed JSON) as compact JSON: what a service keeps of an event for as long as it
    is in flight — a third of the parsed objects' size, or less. :func:`unpacked_json` gives it back
    equal in every way (key order, numbers, and strings that are not valid Unicode included). Too
    deep to pack or to unpack: ``value`` itself."""
    try:
        packed = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    except RecursionError:
        return value
    if packed.count(b"[") + packed.count(b"{") > MAX_PACKED_DEPTH and _deeper_than(value, MAX_PACKED_DEPTH):
        return value
    return packed


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


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
