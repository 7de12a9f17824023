"""Keptn's timestamps: how the control plane writes them and how leniently it reads them.

The clocks themselves (real, or fake for tests) are :mod:`jes.devtools.doubles.clock`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def keptn_time(when: datetime) -> str:
    """Keptn's timestamp format: RFC 3339, UTC, milliseconds, ``Z`` suffix."""
    utc = when.astimezone(UTC)
    if utc.year < 1000:  # strftime does not pad the year to four digits; isoformat does
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.isoformat(timespec="milliseconds")[:23] + "Z"  # (a third cheaper than strftime)


def parse_time(text: str) -> datetime | None:
    """Parse an RFC 3339 timestamp leniently (any fraction length); ``None`` if it is not one."""
    value = text.strip().upper()
    if len(value) < 16 or value[10] not in "Tt ":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
