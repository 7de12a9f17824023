"""``make bench``: run every scenario, print the machine, versions, raw numbers and the table, and
write ``bench/results.json``. ``--only`` picks scenarios, ``--quick`` shrinks them (a smoke run
whose figures are not comparable with the targets). See bench/README.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import natsmode, plot, report, scenarios

HERE = Path(__file__).resolve().parent
SCENARIOS = ("latency", "baseline", "nats", "throughput", "scale", "inflight", "output", "files", "idle")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--results", type=Path, default=HERE / "results.json", help="where to write the results")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="logs of the jes processes, kubeconfigs")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--plot", type=Path, default=None, help="where to draw the scale series [bench/scale.png; --quick: in --out]"
    )
    parser.add_argument("--readme", type=Path, default=None, help="also write the table into this README")
    return parser.parse_args(argv)


def _options(args: argparse.Namespace) -> scenarios.Options:
    opts = scenarios.Options(out=args.out)
    if args.quick:
        opts.latency_events = 12
        opts.nats_events = 20
        opts.throughput_events = 100
        opts.throughput_runs = 1
        opts.scale_events = (30, 100)
        opts.scale_runs = 1
        opts.inflight_checkpoint = 30
        opts.inflight_jobs = 100
        opts.file_bytes = 4 * 1024 * 1024
        opts.output_bytes = 20_000_000
        opts.idle_warmup_s = 2.0
        opts.idle_window_s = 5.0
    return opts


def _known_sizes(details: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The throughput scenario's result by its size, for the scale series not to run it again."""
    through = details.get("throughput", {})
    return {int(through["events"]): through} if "spread" in through else {}


def _say(text: str) -> None:
    print(text, flush=True)


def _run(name: str, work: Callable[[], dict[str, Any]], details: dict[str, Any], failures: list[str]) -> None:
    _say(f"\n== {name} ==")
    began = time.monotonic()
    try:
        details[name] = work()
    except Exception as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
        details[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        _say(f"   FAILED: {type(exc).__name__}: {exc}")
        return
    for key, value in details[name].items():
        if key != "raw":
            _say(f"   {key}: {json.dumps(value)}")
    _say(f"   ({time.monotonic() - began:.0f} s)")


def _headline(details: dict[str, Any]) -> dict[str, Any]:
    """The flat figures of results.json (absent when their scenario did not run or failed)."""
    flat: dict[str, Any] = {"polling_interval_s": 1.0}
    latency, base = details.get("latency", {}), details.get("baseline", {})
    if "finished_ms" in latency:
        flat["finished_latency_p50_ms"] = latency["finished_ms"]["p50"]
        flat["finished_latency_p95_ms"] = latency["finished_ms"]["p95"]
        flat["pickup_latency_p50_ms"] = latency["pickup_ms"]["p50"]
        flat["pickup_latency_p95_ms"] = latency["pickup_ms"]["p95"]
        flat["pickup_after_poll_p50_ms"] = latency["pickup_after_poll_ms"].get("p50")
        flat["latency_samples"] = latency["finished_ms"]["n"]
    if "finished_ms" in base:
        flat["baseline_finished_latency_p50_ms"] = base["finished_ms"]["p50"]
        flat["baseline_finished_latency_p95_ms"] = base["finished_ms"]["p95"]
        flat["baseline_pickup_latency_p50_ms"] = base["pickup_ms"]["p50"]
        flat["baseline_job_poll_interval_s"] = 5.0
    if "finished_latency_p50_ms" in flat and "baseline_finished_latency_p50_ms" in flat:
        flat["finished_latency_speedup_p50"] = round(
            flat["baseline_finished_latency_p50_ms"] / max(flat["finished_latency_p50_ms"], 0.1), 1
        )
    nats = details.get("nats", {})
    if "pickup_ms" in nats and nats["pickup_ms"].get("n"):
        flat["nats_pickup_latency_p50_ms"] = nats["pickup_ms"]["p50"]
        flat["nats_pickup_latency_p95_ms"] = nats["pickup_ms"]["p95"]
    flat.update(_throughput_headline(details.get("throughput", {})))
    if "series" in details.get("scale", {}):
        flat["scale"] = [{k: point[k] for k in SCALE_KEYS} for point in details["scale"]["series"]]
        largest = max(details["scale"]["series"], key=lambda point: point["events"])
        flat["throughput_largest_events_per_s"] = largest["throughput_events_per_s"]
        flat["throughput_largest_events"] = largest["events"]
    inflight = details.get("inflight", {})
    if "rss_mib_max" in inflight:
        flat["rss_mib_1000_inflight"] = inflight["rss_mib_max"]
        flat["inflight_jobs"] = inflight["jobs_in_flight"]
    if "rss_mib_max_large" in inflight:
        flat["rss_mib_10000_inflight"] = inflight["rss_mib_max_large"]
        flat["inflight_jobs_large"] = inflight["jobs_in_flight_large"]
        flat["rss_kib_per_inflight_job"] = inflight["rss_kib_per_inflight_job"]
    if "rss_growth_mib" in details.get("output", {}):
        flat["rss_growth_mib_200mb_output"] = details["output"]["rss_growth_mib"]
    if "rss_growth_mib" in details.get("files", {}):
        flat["rss_growth_mib_16mib_file"] = details["files"]["rss_growth_mib"]
        flat["files_configmaps"] = details["files"]["configmaps"]
    if "cpu_percent" in details.get("idle", {}):
        flat["idle_cpu_percent"] = details["idle"]["cpu_percent"]
    return flat


SCALE_KEYS = ("events", "throughput_events_per_s", "cpu_ms_per_event", "rss_mib", "finished_latency_p95_ms")
#: Headline key → the figure of a throughput run it is the median of (see ``scenarios.repeated``).
THROUGHPUT_FIGURES = {
    "throughput_events_per_s": "events_per_s",
    "throughput_window_events_per_s": "window_events_per_s",
    "cpu_ms_per_event": "cpu_ms_per_event",
    "throughput_finished_latency_p95_ms": "finished_p95_ms",
}


def _throughput_headline(through: dict[str, Any]) -> dict[str, Any]:
    """The throughput scenario's flat figures: medians of the runs, with min and max in ``spread``."""
    if "spread" not in through:
        return {}
    flat: dict[str, Any] = {key: through["spread"][figure]["median"] for key, figure in THROUGHPUT_FIGURES.items()}
    flat["spread"] = {key: through["spread"][figure] for key, figure in THROUGHPUT_FIGURES.items()}
    flat["throughput_runs"] = len(through["runs"])
    flat["throughput_overall_events_per_s"] = flat["throughput_events_per_s"]  # the earlier name
    flat["throughput_events"] = through["events"]
    flat["events_reported_exactly_once"] = through["exactly_once"]
    flat["control_plane_requests_per_event"] = through["control_plane_requests_per_event"]["total"]
    flat["kube_requests_per_event"] = through["kube_requests_per_event"]["total"]
    return flat


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _arguments(argv)
    opts = _options(args)
    opts.out.mkdir(parents=True, exist_ok=True)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        _say(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        return 2
    began = time.monotonic()
    machine, versions = report.machine(), report.versions()
    _say("jes benchmarks" + (" (--quick: a smoke run, not a measurement)" if args.quick else ""))
    _say("machine:  " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    _say("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    schedule = scenarios.Schedule.make(opts)
    work: dict[str, Callable[[], dict[str, Any]]] = {
        "latency": lambda: scenarios.latency_jes(opts, schedule),
        "baseline": lambda: scenarios.latency_baseline(opts, schedule),
        "nats": lambda: natsmode.nats_pickup(opts),
        "throughput": lambda: scenarios.throughput_repeated(opts),
        "scale": lambda: scenarios.scale(opts, _known_sizes(details)),
        "inflight": lambda: scenarios.memory_in_flight(opts),
        "output": lambda: scenarios.memory_output(opts),
        "files": lambda: scenarios.memory_files(opts),
        "idle": lambda: scenarios.idle_cpu(opts),
    }
    details: dict[str, Any] = {}
    failures: list[str] = []
    for name in SCENARIOS:
        if name in chosen:
            _run(name, work[name], details, failures)
    flat = _headline(details)
    results: dict[str, Any] = {
        **flat,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "versions": versions,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.monotonic() - began, 1),
        "verdicts": report.verdicts(flat),
        "failures": failures,
        "details": details,
    }
    args.results.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    if "scale" in flat:
        where = args.plot or (opts.out / "scale-quick.png" if args.quick else HERE / "scale.png")
        _say(plot.scale_png(flat["scale"], where, quick=args.quick))
    if args.readme is not None and not args.quick:
        report.update_readme(str(args.readme), results)
    _say("\n" + report.table(flat))
    if args.quick:
        _say("(--quick: reduced sizes; these figures are not comparable with the targets)")
    _say(f"\nresults: {args.results}   logs: {opts.out}   ({results['duration_s']:.0f} s)")
    if failures:
        _say("scenarios that failed: " + "; ".join(failures))
        return 1
    if args.strict and not all(results["verdicts"].values()):  # a missed or unmeasured target
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
