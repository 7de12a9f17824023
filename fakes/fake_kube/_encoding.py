"""JSON encoding of stored objects, cheaply: the same bytes as ``json.dumps(obj, separators=(",", ":"))``.

A pod or Job is rewritten many times while its ``spec`` stays the same object (the controllers copy
on write, :meth:`fakes.fake_kube._cluster.Cluster.mutate`), and the spec is most of its bytes. Stored
objects are never changed in place, so the encoding of a spec can be kept by identity and reused
for every later version, every watch event and every answer that carries the object.

Only objects that are in the store (or were: watch history, answers) may be encoded here — a body
still being built would be changed after its encoding was kept.
"""

from __future__ import annotations

import json
import uuid
from json.encoder import encode_basestring_ascii
from typing import Any

_encode = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(obj, separators=(",", ":"))`` without making an encoder per call."""

_SPECS_KEPT = 4096
_MARK = f"\x00spec {uuid.uuid4()}\x00"
"""Stands in for the spec while the rest of an object is encoded (NULs and a random UUID: no
stored string is this one)."""
_MARK_TEXT = _encode(_MARK)


def dumps(obj: Any) -> bytes:
    return _encode(obj).encode()


class StoredEncoder:
    """Encodes stored objects, keeping the encoding of each ``spec`` (by identity) and of the last
    object encoded (the answer to a create or update carries the object its watch event just did)."""

    def __init__(self) -> None:
        self._specs: dict[int, tuple[Any, str]] = {}
        """id(spec) → (the spec itself, so that its id stays its own while kept; its encoding)."""
        self._last: tuple[Any, str] = (None, "null")

    def text(self, obj: Any) -> str:
        last, text = self._last
        if obj is last:
            return text
        text = self.encode(obj)
        self._last = (obj, text)
        return text

    def encode(self, obj: Any) -> str:
        spec = obj.get("spec") if isinstance(obj, dict) else None
        if not isinstance(spec, dict):
            return _encode(obj)
        marked = dict(obj)
        marked["spec"] = _MARK
        text = _encode(marked)
        at = text.find(_MARK_TEXT)
        if at < 0 or text.find(_MARK_TEXT, at + 1) >= 0:  # not there once: a key was not a string...
            return _encode(obj)
        return text[:at] + self._spec(spec) + text[at + len(_MARK_TEXT) :]

    def _spec(self, spec: dict[str, Any]) -> str:
        kept = self._specs.get(id(spec))
        if kept is not None and kept[0] is spec:
            return kept[1]
        text = _encode(spec)
        if len(self._specs) >= _SPECS_KEPT:
            self._specs.clear()  # encoded again when next seen
        self._specs[id(spec)] = (spec, text)
        return text

    def line(self, event_type: str, obj: Any) -> bytes:
        """One watch event: ``{"type":...,"object":...}`` and a newline."""
        return f'{{"type":{encode_basestring_ascii(event_type)},"object":{self.text(obj)}}}\n'.encode()

    def clear(self) -> None:
        self._specs.clear()
        self._last = (None, "null")
