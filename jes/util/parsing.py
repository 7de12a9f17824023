"""Values written as text (environment variables, command-line flags) parsed and checked.

One small function per kind of value — booleans, numbers, durations, lists, sizes, Kubernetes
quantities and labels, JSON objects, choices, URLs — each raising :class:`ValueError` with a
message meant for the person who wrote the value. Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_BINARY = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


# ---------------------------------------------------------------------------------------------
# Text, booleans, lists


def text(raw: str) -> str:
    return raw.strip()


def optional_text(raw: str) -> str | None:
    """The text without surrounding spaces; None when nothing is left."""
    return raw.strip() or None


def boolean(raw: str) -> bool:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off``/empty, in any case."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def comma_list(raw: str) -> tuple[str, ...]:
    """Comma-separated items without surrounding spaces; empty items are dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def comma_or_space_list(raw: str) -> tuple[str, ...]:
    """Items separated by commas, spaces or both (how OAuth scopes are written)."""
    return tuple(s for s in re.split(r"[,\s]+", raw.strip()) if s)


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting one of ``allowed`` (in any case; the result is lower case)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


def http_url(raw: str) -> str:
    """An http:// or https:// URL without a trailing slash; empty stays empty."""
    value = raw.strip().rstrip("/")
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL such as http://1.2.3.4/api, got {raw!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Numbers and durations


def seconds(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {raw!r}") from None


def positive_seconds(raw: str) -> float:
    value = seconds(raw)
    if not value > 0:
        raise ValueError(f"must be greater than 0, got {raw!r}")
    return value


def non_negative_seconds(raw: str) -> float:
    value = seconds(raw)
    if value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return value


def non_negative_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return value


def positive_int(raw: str) -> int:
    value = non_negative_int(raw)
    if value == 0:
        raise ValueError("must be at least 1")
    return value


def port(raw: str) -> int:
    """A TCP port; 0 asks the system for any free one."""
    value = non_negative_int(raw)
    if not 0 <= value < 65536:
        raise ValueError(f"expected a TCP port (1-65535, or 0 for any free port), got {raw!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Go's syntax (the Keptn distributor reads its variables with Go's parsers)

_GO_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0
}  # fmt: skip
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def go_duration(raw: str) -> float:
    """Go's ``time.ParseDuration`` in seconds: ``10s``, ``500ms``, ``1m30s``, ``1.5h``, or ``0``.
    A number without a unit (``10``) is an error, as in Go."""
    text = raw.strip()
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body or _GO_DURATION_PART.sub("", body):
        raise ValueError(f"expected a duration such as 10s, 500ms or 1m30s (a number needs a unit), got {raw!r}")
    total = sum(float(number) * _GO_DURATION_UNITS[unit] for number, unit in _GO_DURATION_PART.findall(body))
    return -total if text.startswith("-") else total


def go_bool(raw: str) -> bool:
    """Go's ``strconv.ParseBool``: 1 t T TRUE true True, 0 f F FALSE false False."""
    value = raw.strip()
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ValueError(f"expected true or false (1, t, TRUE, 0, f, FALSE, ...), got {raw!r}")


def whole_number(raw: str) -> int:
    """A decimal integer, possibly negative (Go's ``strconv.Atoi``)."""
    if not re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        raise ValueError(f"expected a whole number, got {raw!r}")
    return int(raw.strip())


# ---------------------------------------------------------------------------------------------
# Sizes and Kubernetes quantities


def quantity(raw: str) -> str:
    """A Kubernetes resource quantity such as ``500m``, ``1``, ``512Mi``."""
    value = raw.strip()
    if not _QUANTITY.match(value):
        raise ValueError(f"{raw!r} is not a Kubernetes quantity (examples: 1, 500m, 512Mi, 2Gi)")
    return value


def optional_quantity(raw: str) -> str:
    """A Kubernetes quantity, or empty for none."""
    return quantity(raw) if raw.strip() else ""


def byte_size(raw: str) -> int:
    """A size in bytes: a whole number, or a quantity such as ``64Ki``, ``1Mi``, ``2M``."""
    match = re.fullmatch(r"\s*(\d+)\s*(|k|M|G|Ki|Mi|Gi)\s*", raw)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"expected a size in bytes such as 1048576 or 1Mi, got {raw!r}")
    return int(match.group(1)) * _BINARY[match.group(2)]


def size_in_bytes(quantity_text: str) -> int | None:
    """A storage quantity (``20Mi``, ``1G``, ``1048576``) in bytes; None for forms it cannot read."""
    try:
        return byte_size(quantity_text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# JSON and Kubernetes labels


def json_object(raw: str) -> dict[str, Any]:
    """A JSON object; empty text is the empty object."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def label_problems(labels: Mapping[str, str]) -> list[str]:
    """Problems with a map of Kubernetes labels (empty when valid)."""
    problems = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if not _LABEL_NAME.match(name) or (prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix))):
            problems.append(f"label key {key!r} is not a valid Kubernetes label name")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(f"label {key!r} has an invalid value {value!r}")
    return problems


def labels(raw: str) -> dict[str, str]:
    """A JSON map of Kubernetes labels; values that are not strings become their JSON text."""
    found = json_object(raw)
    found = {k: v if isinstance(v, str) else json.dumps(v) for k, v in found.items()}
    problems = label_problems(found)
    if problems:
        raise ValueError("; ".join(problems))
    return found
