"""Names and times of jes's Leases."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime


def digest(*parts: str, length: int = 40) -> str:
    """A stable name part for ``parts`` (executor, event, holder): DNS-safe hex, ``length`` long."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def micro_time(moment: float) -> str:
    """A Lease's ``MicroTime`` (``renewTime``, ``acquireTime``) for a Unix time."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
