"""Equal strings shared between the objects jes keeps for as long as an event is in flight.

The JSON parser shares equal strings within one document only: with thousands of events in flight
each event would hold its own ``"shkeptncontext"``, ``"project"`` or
``"sh.keptn.event.test.triggered"``, and each watched pod its own ``"Running"`` and ``"True"``.
Interned, one copy serves them all. Interned strings are freed again once nobody holds them.
"""

from __future__ import annotations

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
