"""JSONPath over the event map, with upstream's result shapes and errors people can act on.

A path that names one place (``$.data.a[0]``) yields that value or fails with the reason (which
key is missing where, which index is out of bounds); a path with wildcards, recursion, filters,
slices or unions yields a list, as upstream's JSONPath library did.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonpath_ng import jsonpath as ast
from jsonpath_ng.ext.parser import parse as _parse

from jes import errors

# by name: some of these classes are deprecated aliases that warn on attribute access
_MULTI = frozenset({"Descendants", "Slice", "Union", "Intersect", "Where", "WhereNot", "Filter", "Wildcard"})


class NotFound(errors.RenderError):
    """The path is valid but names nothing in this event."""


@functools.lru_cache(maxsize=1024)
def compile(expression: str) -> ast.JSONPath:
    """Parse a JSONPath; :class:`errors.RenderError` when it is not valid."""
    if not expression.strip().startswith("$"):
        raise errors.RenderError(f"invalid JSONPath {expression!r}: it must start with $ (e.g. $.data.project)")
    try:
        return _parse(expression)
    except Exception as exc:  # the parser raises plain Exceptions of several kinds
        raise errors.RenderError(f"invalid JSONPath {expression!r}: {exc}") from exc


def is_singular(path: ast.JSONPath) -> bool:
    """True when the path can name at most one value."""
    if type(path).__name__ in _MULTI:
        return False
    if isinstance(path, ast.Fields):
        return len(path.fields) == 1 and path.fields[0] != "*"
    if isinstance(path, ast.Index):
        return len(getattr(path, "indices", (0,))) == 1
    if isinstance(path, ast.Child):
        return is_singular(path.left) and is_singular(path.right)
    return True


def find(expression: str, document: Any) -> Any:
    """The value at ``expression``; a list for multi-valued paths. Raises :class:`NotFound`."""
    path = compile(expression)
    matches = [m.value for m in path.find(document)]
    if not is_singular(path):
        return matches
    if not matches:
        raise NotFound(_explain_missing(path, document))
    return matches[0]


def _explain_missing(path: ast.JSONPath, document: Any) -> str:
    if not isinstance(path, ast.Child):
        return f"nothing found at {path}"
    parents = [m.value for m in path.left.find(document)]
    if not parents:
        return _explain_missing(path.left, document)
    parent = parents[0]
    where = str(path.left)
    right = path.right
    if isinstance(right, ast.Fields):
        if not isinstance(parent, dict):
            return f"{where} is {_describe(parent)}, not a mapping, so it has no key {right.fields[0]!r}"
        keys = ", ".join(sorted(map(str, parent))) or "none"
        return f"key {right.fields[0]!r} not found in {where} (keys there: {keys})"
    if isinstance(right, ast.Index):
        if not isinstance(parent, list):
            return f"{where} is {_describe(parent)}, not a list"
        return f"index {right.indices[0]} out of bounds: {where} has {len(parent)} items"
    return f"nothing found at {path}"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "a mapping"


def json_text(value: Any) -> str:
    """Compact JSON with sorted keys, escaping <, > and & as upstream (Go) did."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
