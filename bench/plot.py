"""``bench/scale.png``: throughput and CPU per event against the number of events (log x).

matplotlib is an optional extra (``pip install -e '.[bench]'``, done by ``make bench``); without
it the picture is skipped and the benchmark says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def scale_png(series: Sequence[dict[str, Any]], path: Path, *, quick: bool = False) -> str:
    """Draw the scale series into ``path``; returns a line for the output."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"scale plot skipped: matplotlib is not installed (pip install -e '.[bench]'); not written: {path}"
    points = sorted(series, key=lambda p: p["events"])
    events = [p["events"] for p in points]
    figure, left = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    right = left.twinx()
    left.plot(events, [p["throughput_events_per_s"] for p in points], "o-", color="tab:blue", label="throughput")
    right.plot(events, [p["cpu_ms_per_event"] for p in points], "s--", color="tab:red", label="CPU per event")
    left.set_xscale("log")
    left.set_xticks(events, [f"{n:,}" for n in events])
    left.set_xlabel("events in the burst (log scale)")
    left.set_ylabel("events/s, whole burst", color="tab:blue")
    right.set_ylabel("jes CPU ms per event", color="tab:red")
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.grid(True, which="major", alpha=0.3)
    title = "jes: throughput and CPU per event as the burst grows"
    left.set_title(title + (" (--quick)" if quick else ""), fontsize=10)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [str(h.get_label()) for h in handles], loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return f"scale plot: {path}"
