"""The machine, the versions, the targets and the table ``make bench`` prints."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    os_name = platform.system()
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": f"{os_name}, {platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def versions() -> dict[str, str]:
    found = {}
    for name in ("jes", "kubernetes", "httpx", "uvicorn", "starlette", "pydantic", "urllib3", "h11"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass(frozen=True)
class Target:
    """One row of the table: a figure, how it is shown, and when it passes."""

    figure: str
    key: str
    unit: str
    target: str
    passes: Callable[[dict[str, Any]], bool]
    baseline_key: str | None = None


TARGETS = (
    Target(
        "Job complete -> .finished accepted, p50",
        "finished_latency_p50_ms",
        "ms",
        "<= 100 ms and >= 20x faster",
        lambda r: r["finished_latency_p50_ms"] <= 100 and r["finished_latency_speedup_p50"] >= 20,
        "baseline_finished_latency_p50_ms",
    ),
    Target(
        "Job complete -> .finished accepted, p95",
        "finished_latency_p95_ms",
        "ms",
        "<= 300 ms",
        lambda r: r["finished_latency_p95_ms"] <= 300,
        "baseline_finished_latency_p95_ms",
    ),
    Target(
        ".triggered visible -> .started accepted, p50",
        "pickup_latency_p50_ms",
        "ms",
        "<= interval/2 + 50 ms (550 ms)",
        lambda r: r["pickup_latency_p50_ms"] <= 1000 * r["polling_interval_s"] / 2 + 50,
        "baseline_pickup_latency_p50_ms",
    ),
    Target(
        "NATS mode: .triggered published -> .started accepted, p50",
        "nats_pickup_latency_p50_ms",
        "ms",
        "<= 10 ms",
        lambda r: r["nats_pickup_latency_p50_ms"] <= 10,
    ),
    Target(
        "Throughput, 1,000 single-task events, sustained",
        "throughput_events_per_s",
        "events/s",
        ">= 50 events/s",
        lambda r: r["throughput_events_per_s"] >= 50,
    ),
    Target(
        "Reported exactly once (1 started + 1 finished)",
        "events_reported_exactly_once",
        "events",
        "all 1,000",
        lambda r: r["events_reported_exactly_once"] == r["throughput_events"],
    ),
    Target(
        "RSS with 1,000 Jobs in flight",
        "rss_mib_1000_inflight",
        "MiB",
        "<= 150 MiB",
        lambda r: r["rss_mib_1000_inflight"] <= 150,
    ),
    Target(
        "RSS growth while a task writes 200 MB",
        "rss_growth_mib_200mb_output",
        "MiB",
        "<= 32 MiB",
        lambda r: r["rss_growth_mib_200mb_output"] <= 32,
    ),
    Target(
        "RSS growth while a 16 MiB task file is fetched",
        "rss_growth_mib_16mib_file",
        "MiB",
        "<= 96 MiB (one file at a time)",
        lambda r: r["rss_growth_mib_16mib_file"] <= 96,
    ),
    Target(
        "Idle CPU, 6 topics polled every 1 s",
        "idle_cpu_percent",
        "% of a core",
        "<= 2 %",
        lambda r: r["idle_cpu_percent"] <= 2,
    ),
)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e5 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    """Pass/fail per target; None when its scenario did not run (or failed)."""
    found: dict[str, bool | None] = {}
    for target in TARGETS:
        try:
            found[target.key] = bool(target.passes(results))
        except (KeyError, TypeError):
            found[target.key] = None
    return found


def table(results: dict[str, Any]) -> str:
    """The figures against their targets, with the original's way side by side."""
    passed = verdicts(results)
    rows = [("figure", "jes", "original's way", "ratio", "target", "result")]
    for target in TARGETS:
        value = results.get(target.key)
        shown = f"{_number(value)} {target.unit}" if value is not None else "-"
        base, ratio = "", ""
        if target.baseline_key and results.get(target.baseline_key) is not None:
            base_value = results[target.baseline_key]
            base = f"{_number(base_value)} {target.unit}"
            if isinstance(value, int | float) and value > 0:
                ratio = f"{base_value / value:.1f}x faster"
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[passed[target.key]]
        rows.append((target.figure, shown, base, ratio, target.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The README's benchmark section: when, where, and the table in Markdown."""
    machine_info = results.get("machine", {})
    where = ", ".join(f"{machine_info[k]}" for k in ("cpu_model", "os", "python") if k in machine_info)
    overall = results.get("throughput_overall_events_per_s")
    lines = [
        f"Last run: {results.get('date', '?')} on {where} ({machine_info.get('cores', '?')} cores, "
        f"{machine_info.get('memory_gib', '?')} GiB), `make bench`.",
        "",
        "| figure | jes | original's way | target | result |",
        "|---|---|---|---|---|",
    ]
    passed = verdicts(results)
    for target in TARGETS:
        value = results.get(target.key)
        shown = f"{_number(value)} {target.unit}" if value is not None else "-"
        base = ""
        if target.baseline_key and results.get(target.baseline_key) is not None and isinstance(value, int | float):
            base_value = results[target.baseline_key]
            base = f"{_number(base_value)} {target.unit}" + (f" ({base_value / value:.1f}x slower)" if value else "")
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[passed[target.key]]
        lines.append(f"| {target.figure} | {shown} | {base} | {target.target} | {verdict} |")
    if overall is not None:
        lines += [
            "",
            f"Throughput over the whole burst, the first `.started` of all 1,000 included: {overall} events/s.",
        ]
    return "\n".join(lines)


def update_readme(path: str, results: dict[str, Any]) -> None:
    """Replace the ``bench-results`` section of the README with :func:`markdown`."""
    import re
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    block = f"<!-- BEGIN bench-results -->\n{markdown(results)}\n<!-- END bench-results -->"
    new, count = re.subn(
        r"<!-- BEGIN bench-results -->\n.*?<!-- END bench-results -->", block.replace("\\", "\\\\"), text, flags=re.S
    )
    if not count:
        raise ValueError(f"{path} has no bench-results section")
    readme.write_text(new)
