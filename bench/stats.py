"""Small statistics and time helpers (no numpy on purpose: the benchmark needs nothing extra)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import datetime


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean/min/max in milliseconds of a list of seconds."""
    if not values_s:
        return {"n": 0}
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 1),
        "p95": round(percentile(ms, 95), 1),
        "mean": round(statistics.fmean(ms), 1),
        "min": round(min(ms), 1),
        "max": round(max(ms), 1),
    }


def keptn_epoch(text: str) -> float:
    """A Keptn timestamp (``2024-01-01T12:00:00.123Z``) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def first_at_or_after(moments: Sequence[float], start: float) -> float | None:
    """The earliest of ``moments`` (sorted) that is >= ``start``."""
    low, high = 0, len(moments)
    while low < high:
        mid = (low + high) // 2
        if moments[mid] < start:
            low = mid + 1
        else:
            high = mid
    return moments[low] if low < len(moments) else None
