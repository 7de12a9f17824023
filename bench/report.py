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
    passes: Callable[[dict[str, Any]], bool] | None
    """None: a figure shown for information, without a target."""
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
        "Throughput, 1,000 single-task events, whole burst",
        "throughput_events_per_s",
        "events/s",
        ">= 150 events/s",
        lambda r: r["throughput_events_per_s"] >= 150,
    ),
    Target(
        "Throughput, 1,000 events, 10-90 % window",
        "throughput_window_events_per_s",
        "events/s",
        ">= 50 events/s",
        lambda r: r["throughput_window_events_per_s"] >= 50,
    ),
    Target(
        "Throughput, 10,000 single-task events, whole burst",
        "throughput_largest_events_per_s",
        "events/s",
        ">= 100 events/s",
        lambda r: r["throughput_largest_events_per_s"] >= 100 and r["throughput_largest_events"] >= 10_000,
    ),
    Target(
        "jes CPU per event (user + system), 1,000 events",
        "cpu_ms_per_event",
        "ms",
        "<= 6 ms",
        lambda r: r["cpu_ms_per_event"] <= 6,
    ),
    Target(
        "Job complete -> .finished accepted, p95, 1,000-event burst",
        "throughput_finished_latency_p95_ms",
        "ms",
        "<= 50 ms",
        lambda r: r["throughput_finished_latency_p95_ms"] <= 50,
    ),
    Target(
        "Reported exactly once (1 started + 1 finished)",
        "events_reported_exactly_once",
        "events",
        "all 1,000",
        lambda r: r["events_reported_exactly_once"] == r["throughput_events"],
    ),
    Target(
        "Control-plane requests per event (polls included)",
        "control_plane_requests_per_event",
        "",
        "",
        None,
    ),
    Target(
        "Kubernetes requests per event (watches, logs included)",
        "kube_requests_per_event",
        "",
        "",
        None,
    ),
    Target(
        "RSS with 1,000 Jobs in flight",
        "rss_mib_1000_inflight",
        "MiB",
        "<= 150 MiB",
        lambda r: r["rss_mib_1000_inflight"] <= 150,
    ),
    Target(
        "RSS with 10,000 Jobs in flight",
        "rss_mib_10000_inflight",
        "MiB",
        "<= 300 MiB",
        lambda r: r["rss_mib_10000_inflight"] <= 300 and r["inflight_jobs_large"] >= 10_000,
    ),
    Target(
        "RSS per additional Job in flight (1,000 -> 10,000)",
        "rss_kib_per_inflight_job",
        "KiB",
        "<= 16 KiB",
        lambda r: r["rss_kib_per_inflight_job"] <= 16,
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


def shown(results: dict[str, Any], target: Target) -> str:
    """The figure with its unit; ``median (min-max)`` when it is the median of several runs."""
    value = results.get(target.key)
    if value is None:
        return "-"
    text = f"{_number(value)} {target.unit}".rstrip()
    spread = results.get("spread", {}).get(target.key)
    if spread and results.get("throughput_runs", 1) > 1:
        text += f" ({_number(spread['min'])}-{_number(spread['max'])})"
    return text


def _verdict(passed: dict[str, bool | None], target: Target, words: tuple[str, str, str]) -> str:
    if target.passes is None:
        return ""
    return {True: words[0], False: words[1], None: words[2]}[passed.get(target.key)]


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    """Pass/fail per target; None when its scenario did not run (or failed). Figures without a
    target have no verdict."""
    found: dict[str, bool | None] = {}
    for target in TARGETS:
        if target.passes is None:
            continue
        try:
            found[target.key] = bool(target.passes(results)) if results.get(target.key) is not None else None
        except (KeyError, TypeError):
            found[target.key] = None
    return found


def table(results: dict[str, Any]) -> str:
    """The figures against their targets, with the original's way side by side."""
    passed = verdicts(results)
    rows = [("figure", "jes", "original's way", "ratio", "target", "result")]
    for target in TARGETS:
        value = results.get(target.key)
        base, ratio = "", ""
        if target.baseline_key and results.get(target.baseline_key) is not None:
            base_value = results[target.baseline_key]
            base = f"{_number(base_value)} {target.unit}"
            if isinstance(value, int | float) and value > 0:
                ratio = f"{base_value / value:.1f}x faster"
        verdict = _verdict(passed, target, ("PASS", "FAIL", "not measured"))
        rows.append((target.figure, shown(results, target), base, ratio, target.target, verdict))
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
    load = machine_info.get("load_average_at_start")
    lines = [
        f"Last run: {results.get('date', '?')} on {where} ({machine_info.get('cores', '?')} cores, "
        f"{machine_info.get('memory_gib', '?')} GiB), `make bench`"
        + (f", load average {load[0]} at the start." if load else "."),
        "",
        "| figure | jes | original's way | target | result |",
        "|---|---|---|---|---|",
    ]
    passed = verdicts(results)
    for target in TARGETS:
        value = results.get(target.key)
        base = ""
        if target.baseline_key and results.get(target.baseline_key) is not None and isinstance(value, int | float):
            base_value = results[target.baseline_key]
            base = f"{_number(base_value)} {target.unit}" + (f" ({base_value / value:.1f}x slower)" if value else "")
        verdict = _verdict(passed, target, ("pass", "FAIL", "not measured"))
        lines.append(f"| {target.figure} | {shown(results, target)} | {base} | {target.target} | {verdict} |")
    runs = results.get("throughput_runs", 1)
    if runs > 1:
        lines += ["", f"Throughput, CPU and p95 of the burst: the median of {runs} runs (min-max)."]
    if results.get("scale"):
        lines += ["", *scale_markdown(results["scale"])]
    return "\n".join(lines)


def scale_markdown(series: list[dict[str, Any]]) -> list[str]:
    """The scale series as a table, with ``bench/scale.png`` beside it."""
    lines = [
        '<img src="bench/scale.png" align="right" width="48%" alt="throughput and CPU per event against events">',
        "",
        "| events | whole burst | CPU per event | RSS (peak) | complete -> .finished p95 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for point in sorted(series, key=lambda p: p["events"]):
        lines.append(
            f"| {point['events']:,} | {_number(point['throughput_events_per_s'])} events/s "
            f"| {_number(point['cpu_ms_per_event'])} ms | {_number(point['rss_mib'])} MiB "
            f"| {_number(point['finished_latency_p95_ms'])} ms |"
        )
    lines += ['<br clear="right">']
    return lines


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
