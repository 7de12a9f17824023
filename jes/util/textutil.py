"""Text that can be written anywhere: no halves of surrogate pairs.

JSON (``"\\ud800"``) and YAML (``"\\ud800"``) escapes can produce lone surrogates in Python strings;
UTF-8 cannot encode them, so one in an event or a config would make every report about it fail.
"""

from __future__ import annotations

from typing import Any


def whole_characters(text: str) -> str:
    """Join surrogate halves that form a pair into the one character they stand for; a half
    without its partner becomes U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")  # (in C: fails exactly on a surrogate)
    except UnicodeEncodeError:
        pass
    else:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean(value: Any) -> Any:
    """``value`` (JSON data) with every string, keys included, made of whole characters."""
    if isinstance(value, str):
        return whole_characters(value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value
