"""Names, times and the claim record of jes's Leases."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from jes import errors
from jes.ledger.claim import Claim

RECORD_ANNOTATION = "jes.keptn.sh/claim"
"""The annotation of a claim Lease that holds its :class:`~jes.ledger.claim.Claim` record."""


def digest(*parts: str, length: int = 40) -> str:
    """A stable name part for ``parts`` (executor, event, holder): DNS-safe hex, ``length`` long."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def micro_time(moment: float) -> str:
    """A Lease's ``MicroTime`` (``renewTime``, ``acquireTime``) for a Unix time."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_of(lease: dict[str, Any]) -> Claim:
    """The claim a Lease records; :class:`~jes.errors.StateError` when it has none or it does not parse."""
    metadata = lease.get("metadata", {})
    text = (metadata.get("annotations") or {}).get(RECORD_ANNOTATION)
    if not isinstance(text, str):
        raise errors.StateError(f"claim lease {metadata.get('name')} has no record")
    try:
        return Claim.loads(text, version=str(metadata.get("resourceVersion", "")))
    except errors.StateError as exc:
        raise errors.StateError(f"claim lease {metadata.get('name')}: {exc}") from exc
