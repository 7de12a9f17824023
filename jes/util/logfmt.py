"""Structured logs: JSON lines (or console text) carrying the event context of the current task.

:func:`bind` puts fields (keptn context, event id, action, task) into a context variable, so every
log record written while handling an event carries them. :class:`Redact` removes secrets (the
Keptn API token, the OAuth client secret) from every record, whatever code wrote it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

#: The bound fields as a flat tuple (name, value, name, value, ...; a later name wins): each block
#: adds a tuple of a few dozen bytes, not a copy of a dict, for as long as it lasts.
_fields: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("jes_log_fields", default=())


def bind(**fields: str) -> contextlib.AbstractContextManager[None]:
    """Add fields to every log record written inside the block (and tasks started in it)."""
    return _Bound(tuple(item for pair in fields.items() if pair[1] for item in pair))


class _Bound:
    """:func:`bind`'s block: a few dozen bytes for as long as it lasts (an event's whole run), not a
    generator frame and its context manager. It keeps the fields it replaced (no token: the block
    is left in the task and context that entered it)."""

    __slots__ = ("_added", "_before")

    def __init__(self, added: tuple[str, ...]) -> None:
        self._added = added
        self._before: tuple[str, ...] | None = None

    def __enter__(self) -> None:
        self._before = _fields.get()
        _fields.set(self._before + self._added)
        self._added = ()

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            _fields.set(self._before)
            self._before = None


def bound() -> dict[str, str]:
    flat = _fields.get()
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Redact(logging.Filter):
    """Replaces every secret in the rendered message (and exception text) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self.secrets:
            message = message.replace(secret, "***")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "***")
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "jes_fields", {}))
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "jes_fields", {})
        context = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{record.levelname.lower():7} {record.getMessage()}" + (f"  [{context}]" if context else "")
        if record.exc_info:
            text += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return text


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.jes_fields = bound()
        return True


def setup(*, fmt: str = "json", level: int = logging.INFO, secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(_ContextFilter())
    handler.addFilter(Redact(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
