"""The benchmark scenarios. Each starts fresh fakes (own processes) and, where it measures jes, a
fresh ``jes serve`` process; each returns plain numbers for the report.

* :func:`latency_jes` / :func:`latency_baseline` — the same schedule of events (gaps, services,
  Job durations) handled by jes and by the original's way (:mod:`bench.baseline`).
* :func:`throughput` — 1,000 task events at once over 20 services, default concurrency.
* :func:`memory_in_flight` — 1,000 Jobs running at once (``JES_MAX_CONCURRENT_EVENTS=1000``).
* :func:`memory_output` — one task writing 200 MB.
* :func:`idle_cpu` — six topics polled every second, no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config

from bench import baseline, jesproc, remote
from bench.stats import first_at_or_after, keptn_epoch, summary_ms
from fakes.fake_kube import Behaviour
from jes.matcher import config as cfg
from jes.runner.kubernetes import manifests

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "control-plane"
TOKEN = "bench-token-not-secret"
PROJECT = "my-first-project"
STAGE = "dev"
TASK = "bench"
TOPIC = f"sh.keptn.event.{TASK}.triggered"
NAMESPACE = "keptn-jes"
"""Namespace of the Jobs and of jes itself (its Leases)."""
JES_NAMESPACE = NAMESPACE
SOURCE = "job-executor-service"
IMAGE = "alpine"

CONFIG = b"""\
apiVersion: v2
actions:
  - name: "Benchmark action"
    events:
      - name: "sh.keptn.event.bench.triggered"
    tasks:
      - name: "Benchmark task"
        image: "alpine:3.20"
        cmd: ["sh", "-c"]
        args: ["echo benchmark"]
        maxPollDuration: 7200
"""

#: Gaps between injected events: an irrational fraction of the 1 s polling interval, so the
#: moments of arrival fall evenly over the poll cycle (a low-discrepancy sequence) and the pickup
#: median is not left to the luck of a few random phases.
GOLDEN_GAP_S = 5**0.5 - 2  # 0.236...


@dataclass
class Options:
    out: Path
    seed: int = 20240601
    latency_events: int = 120
    nats_events: int = 200
    latency_services: int = 8
    throughput_events: int = 1000
    throughput_services: int = 20
    throughput_concurrency: int = 64
    throughput_runs: int = 3
    scale_events: tuple[int, ...] = (100, 1000, 10_000)
    scale_runs: int = 3
    scale_runs_largest: int = 1
    inflight_checkpoint: int = 1000
    inflight_jobs: int = 10_000
    output_bytes: int = 200_000_000
    file_bytes: int = 16 * 1024 * 1024
    idle_topics: int = 6
    idle_warmup_s: float = 5.0
    idle_window_s: float = 30.0


def services(count: int) -> list[str]:
    return [f"svc-{i:02d}" for i in range(count)]


@dataclass
class Stack:
    plane: remote.Remote
    kube: remote.Remote
    url: str
    kubeconfig: Path


@contextlib.contextmanager
def fakes(
    opts: Options,
    name: str,
    service_names: list[str],
    default: Behaviour | None = None,
    plane_options: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    """A control plane with ``job/config.yaml`` on every service, and a fake Kubernetes API."""
    kube_options: dict[str, Any] = {"default": default or Behaviour(logs="benchmark\n", duration_s=0.2)}
    with remote.fakes(SEED, token=TOKEN, kube_options=kube_options, plane_options=plane_options) as (plane, kube):
        for service in service_names:
            plane.call(
                "put_resource", project=PROJECT, stage=STAGE, service=service, uri="job/config.yaml", content=CONFIG
            )
        kubeconfig = Path(kube.call("kubeconfig", str(opts.out / f"{name}-kubeconfig.yaml"), namespace=NAMESPACE))
        yield Stack(plane, kube, str(plane.get("url")), kubeconfig)


@contextlib.contextmanager
def jes_serving(
    opts: Options, stack: Stack, name: str, *, topics: tuple[str, ...] = (TOPIC,), **extra: str
) -> Iterator[jesproc.JesProcess]:
    env = jesproc.jes_environment(
        endpoint=stack.url,
        token=TOKEN,
        kubeconfig=stack.kubeconfig,
        topics=topics,
        health_port=jesproc.free_port(),
        extra=extra,
    )
    with jesproc.JesProcess(env, opts.out / f"{name}-jes.log") as jes:
        jes.wait_ready()
        yield jes


def inject(stack: Stack, service: str, count: int = 1) -> list[str]:
    ids: list[str] = stack.plane.call(
        "inject_triggered", task=TASK, project=PROJECT, stage=STAGE, service=service, count=count
    )
    return ids


def finished_count(stack: Stack) -> int:
    return len(stack.plane.call("events", type=f"sh.keptn.event.{TASK}.finished"))


def wait_finished(stack: Stack, ids: list[str], *, timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    wanted = set(ids)

    def done(plane: remote.Remote) -> bool:
        return wanted <= set(plane.call("triggered_ids", type=f"sh.keptn.event.{TASK}.finished"))

    stack.plane.wait_for(done, timeout_s=timeout_s, interval_s=interval_s, what=what)


def reports_by_trigger(stack: Stack) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """triggered id → {"started": [...], "finished": [...]} of the events jes (or the baseline) sent."""
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for kind in ("started", "finished"):
        for event in stack.plane.call("events", type=f"sh.keptn.event.{TASK}.{kind}"):
            if event.get("source") == SOURCE:
                found.setdefault(str(event.get("triggeredid")), {"started": [], "finished": []})[kind].append(event)
    return found


def jobs_by_event(stack: Stack) -> dict[str, str]:
    """event id → name of the Job created for it (from the Job's event-id annotation)."""
    found = {}
    for job in stack.kube.get("created_jobs"):
        event_id = (job["metadata"].get("annotations") or {}).get(manifests.ANNOTATION_EVENT_ID)
        if event_id:
            found[event_id] = job["metadata"]["name"]
    return found


def triggered_times(stack: Stack) -> dict[str, float]:
    return {e["id"]: keptn_epoch(e["time"]) for e in stack.plane.call("events", type=TOPIC)}


# ---------------------------------------------------------------------------------------------
# Latency: the same schedule for jes and for the original's way


@dataclass(frozen=True)
class Schedule:
    """When each event is injected (seconds after the start), for which service, and how long its
    Job runs (durations spread evenly over 0.5-5.5 s in a seeded random order)."""

    offsets_s: tuple[float, ...]
    services: tuple[str, ...]
    durations_s: tuple[float, ...]

    @classmethod
    def make(cls, opts: Options) -> Schedule:
        n = opts.latency_events
        rng = random.Random(opts.seed)
        durations = [round(0.5 + 5.0 * (k + 0.5) / n, 3) for k in range(n)]
        rng.shuffle(durations)
        names = services(opts.latency_services)
        return cls(
            offsets_s=tuple(k * GOLDEN_GAP_S for k in range(n)),
            services=tuple(names[k % len(names)] for k in range(n)),
            durations_s=tuple(durations),
        )


def _run_schedule(stack: Stack, schedule: Schedule, on_injected: Any) -> list[str]:
    """Inject the schedule's events at their moments; ``on_injected(k, event_id)`` after each."""
    ids: list[str] = []
    start = time.monotonic()
    for k, offset in enumerate(schedule.offsets_s):
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        (event_id,) = inject(stack, schedule.services[k])
        on_injected(k, event_id)
        ids.append(event_id)
    return ids


def _latencies(stack: Stack, ids: list[str], job_of: dict[str, str]) -> dict[str, Any]:
    """Per event: pickup (.triggered → .started accepted), its part after the poll that returned
    it, and completion (Job marked finished → .finished accepted); exactly-once counts."""
    triggered = triggered_times(stack)
    reports = reports_by_trigger(stack)
    finished_at = stack.kube.call("job_finished_at", NAMESPACE)
    polls = sorted(stack.plane.call("triggered_poll_times", TOPIC))
    pickup, after_poll, completion, poll_wait = [], [], [], []
    problems = []
    for event_id in ids:
        got = reports.get(event_id, {"started": [], "finished": []})
        if len(got["started"]) != 1 or len(got["finished"]) != 1:
            problems.append(f"{event_id}: {len(got['started'])} started, {len(got['finished'])} finished")
            continue
        started = keptn_epoch(got["started"][0]["time"])
        finished = keptn_epoch(got["finished"][0]["time"])
        pickup.append(started - triggered[event_id])
        seen = first_at_or_after(polls, triggered[event_id])
        if seen is not None and seen <= started:
            after_poll.append(started - seen)
            poll_wait.append(seen - triggered[event_id])
        job_done = finished_at.get(job_of.get(event_id, ""))
        if job_done is None:
            problems.append(f"{event_id}: no finished Job {job_of.get(event_id)}")
            continue
        completion.append(finished - job_done)
    return {
        "events": len(ids),
        "pickup_ms": summary_ms(pickup),
        "pickup_after_poll_ms": summary_ms(after_poll),
        "poll_wait_ms": summary_ms(poll_wait),
        "finished_ms": summary_ms(completion),
        "problems": problems,
        "raw": {
            "pickup_s": [round(v, 4) for v in pickup],
            "finished_s": [round(v, 4) for v in completion],
        },
    }


def latency_jes(opts: Options, schedule: Schedule) -> dict[str, Any]:
    with fakes(opts, "latency", services(opts.latency_services)) as stack, jes_serving(opts, stack, "latency") as jes:
        warmup = [inject(stack, s)[0] for s in services(opts.latency_services)[:3]]
        wait_finished(stack, warmup, timeout_s=60, what="the warm-up events")
        expected: dict[str, str] = {}
        jobs = baseline.JobBuilder(job_namespace=NAMESPACE, k8s_namespace=JES_NAMESPACE)
        loaded = cfg.load(CONFIG)

        def injected(k: int, event_id: str) -> None:
            # The Job's name as jes will choose it, so its script (duration) is in place first.
            (event,) = stack.plane.call("open_triggered", TOPIC, event_id=event_id)
            job = jobs.job(event, loaded)["metadata"]["name"]
            expected[event_id] = job
            stack.kube.call("behave", job=job, logs="benchmark\n", duration_s=schedule.durations_s[k])

        cpu_before = jes.cpu_s()
        ids = _run_schedule(stack, schedule, injected)
        wait_finished(stack, ids, timeout_s=120, what="the latency events")
        job_of = jobs_by_event(stack)
        result = _latencies(stack, ids, job_of)
        result["scheduled_durations_applied"] = sum(1 for i in ids if job_of.get(i) == expected.get(i))
        result["jes_cpu_s"] = round(jes.cpu_s() - cpu_before, 2)
        result["jes_rss_mib"] = round(jes.rss_mib(), 1)
        return result


def latency_baseline(opts: Options, schedule: Schedule) -> dict[str, Any]:
    with fakes(opts, "baseline", services(opts.latency_services)) as stack:
        return asyncio.run(_latency_baseline(stack, schedule))


async def _latency_baseline(stack: Stack, schedule: Schedule) -> dict[str, Any]:
    duration_of: dict[str, float] = {}
    job_of: dict[str, str] = {}
    lock = threading.Lock()

    def before_create(event_id: str, job: str) -> None:
        deadline = time.monotonic() + 5.0
        while True:  # the injecting thread records the duration right after the inject returns
            with lock:
                job_of[event_id] = job
                duration = duration_of.get(event_id)
            if duration is not None or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if duration is None:
            raise RuntimeError(f"no scheduled duration for event {event_id}")
        stack.kube.call("behave", job=job, logs="benchmark\n", duration_s=duration)

    def injected(k: int, event_id: str) -> None:
        with lock:
            duration_of[event_id] = schedule.durations_s[k]

    api_client = baseline_api_client(stack)
    waiter = baseline.UpstreamBaseline(
        endpoint=stack.url,
        token=TOKEN,
        event_type=TOPIC,
        api_client=api_client,
        namespace=NAMESPACE,
        before_create=before_create,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(waiter.run(stop), name="bench-baseline")
    try:
        # The first poll must not see an event before its duration is known: inject in a thread,
        # record under the lock right after the inject returns (the baseline polls every 1 s).
        ids = await asyncio.to_thread(_run_schedule, stack, schedule, injected)
        await asyncio.to_thread(wait_finished, stack, ids, timeout_s=120, what="the baseline events")
    finally:
        stop.set()
        await running
        api_client.close()
    result = _latencies(stack, ids, job_of)
    result["job_gets"] = waiter.job_gets
    result["errors"] = waiter.errors[:5]
    return result


def baseline_api_client(stack: Stack) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(stack.kubeconfig), client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = 64
    return kubernetes.client.ApiClient(config)


# ---------------------------------------------------------------------------------------------
# Throughput and exactly once


def throughput(opts: Options, events: int | None = None) -> dict[str, Any]:
    """``events`` (default ``opts.throughput_events``) task events at once over
    ``opts.throughput_services`` services, ``JES_MAX_CONCURRENT_EVENTS`` at its default."""
    names = services(opts.throughput_services)
    per_service = max(1, (events or opts.throughput_events) // len(names))
    with (
        fakes(opts, "throughput", names) as stack,
        jes_serving(opts, stack, "throughput", JES_MAX_CONCURRENT_EVENTS=str(opts.throughput_concurrency)) as jes,
    ):
        warmup = [inject(stack, s)[0] for s in names[:5]]
        wait_finished(stack, warmup, timeout_s=60, what="the warm-up events")
        time.sleep(0.5)  # the warm-up's last reports and claim writes
        plane_requests, kube_requests = stack.plane.call("request_counts"), stack.kube.call("request_counts")
        cpu_before, plane_cpu, kube_cpu = jes.cpu_s(), _cpu_of(stack.plane.pid), _cpu_of(stack.kube.pid)
        split_before = _cpu_split(jes.pid)
        rss_before = jes.rss_mib()
        peak_reset = jes.reset_peak()
        began = time.time()
        ids: list[str] = []
        for service in names:
            ids += inject(stack, service, per_service)
        timeout_s = 600 + len(ids) / 10
        # (each look lists every .finished so far in the control plane's process: rarer when many)
        interval_s = max(1.0, len(ids) / 2000)
        wait_finished(stack, ids, timeout_s=timeout_s, what="the throughput events", interval_s=interval_s)
        wall_s = time.time() - began
        cpu_s = jes.cpu_s() - cpu_before
        user_s, system_s = (after - before for after, before in zip(_cpu_split(jes.pid), split_before, strict=True))
        peak_rss = jes.peak_rss_mib() if peak_reset else jes.rss_mib()
        plane_after, kube_after = stack.plane.call("request_counts"), stack.kube.call("request_counts")
        plane_cpu, kube_cpu = _cpu_of(stack.plane.pid) - plane_cpu, _cpu_of(stack.kube.pid) - kube_cpu
        triggered = triggered_times(stack)
        reports = reports_by_trigger(stack)
        finished_at = stack.kube.call("job_finished_at", NAMESPACE)
        job_of = jobs_by_event(stack)
        once = [i for i in ids if len(reports.get(i, {}).get("started", ())) == 1 == len(reports[i]["finished"])]
        counts = Counter(
            (len(reports.get(i, {}).get("started", ())), len(reports.get(i, {}).get("finished", ()))) for i in ids
        )
        first = min(triggered[i] for i in ids)
        done = sorted(keptn_epoch(reports[i]["finished"][0]["time"]) for i in ids if reports.get(i, {}).get("finished"))
        completion = [
            keptn_epoch(reports[i]["finished"][0]["time"]) - finished_at[job_of[i]]
            for i in once
            if job_of.get(i) in finished_at
        ]
        return {
            "events": len(ids),
            "services": len(names),
            "max_concurrent_events": opts.throughput_concurrency,
            "job_duration_s": 0.2,
            "span_s": round(done[-1] - first, 2),
            **burst_rates(first, done),
            "first_finished_after_s": round(done[0] - first, 2),
            "wall_s": round(wall_s, 1),
            "exactly_once": len(once),
            "report_counts": {f"{s} started/{f} finished": n for (s, f), n in sorted(counts.items())},
            "results": dict(Counter(str(reports[i]["finished"][0]["data"].get("result")) for i in once)),
            "jobs_created": len(job_of),
            "finished_ms": summary_ms(completion),
            "cpu_ms_per_event": round(1000.0 * cpu_s / len(ids), 2),
            "cpu_s": {
                "jes": round(cpu_s, 1),
                "jes_user": round(user_s, 1),
                "jes_system": round(system_s, 1),
                "control_plane": round(plane_cpu, 1),
                "fake_kube": round(kube_cpu, 1),
            },
            "control_plane_requests_per_event": per_event(plane_requests, plane_after, len(ids)),
            "kube_requests_per_event": per_event(kube_requests, kube_after, len(ids)),
            "rss_before_mib": round(rss_before, 1),
            "rss_mib": round(peak_rss, 1),
            "rss_from": "VmHWM reset before the burst" if peak_reset else "VmRSS at the end",
        }


def burst_rates(first: float, done: list[float]) -> dict[str, float]:
    """Whole burst: events ÷ (first ``.triggered`` → last ``.finished`` accepted). Window: the
    events between the 10th and 90th percentile of the ``.finished`` times ÷ that time (the steady
    state once the burst flows; flatters, as it leaves out the start and the tail)."""
    ten, ninety = done[len(done) // 10], done[(len(done) * 9) // 10]
    return {
        "events_per_s": round(len(done) / max(done[-1] - first, 1e-9), 1),
        "window_events_per_s": round((len(done) * 8 // 10) / max(ninety - ten, 1e-9), 1),
    }


def per_event(before: dict[str, int], after: dict[str, int], events: int) -> dict[str, float]:
    """Requests per event between two snapshots of counters, in total and per kind (busiest first)."""
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    shown = {k: round(v / events, 2) for k, v in sorted(grown.items(), key=lambda kv: -kv[1]) if v > 0}
    return {"total": round(sum(grown.values()) / events, 2), **shown}


#: The figures of a throughput run summarised over repeated runs (median, min, max).
RUN_FIGURES = ("events_per_s", "window_events_per_s", "cpu_ms_per_event", "rss_mib", "finished_p95_ms")


def _figures(run: dict[str, Any]) -> dict[str, float]:
    found = {k: run[k] for k in RUN_FIGURES if k in run}
    found["finished_p95_ms"] = run["finished_ms"].get("p95", math.nan)
    return found


def repeated(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of :func:`throughput`: the run with the median whole-burst rate (its details),
    each figure as median/min/max over the runs, every run's figures, and the worst exactly-once."""
    ordered = sorted(runs, key=lambda r: r["events_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    figures = [_figures(r) for r in runs]
    chosen["runs"] = [f | {"exactly_once": r["exactly_once"]} for f, r in zip(figures, runs, strict=True)]
    chosen["spread"] = {
        k: {
            "median": round(statistics.median(f[k] for f in figures), 2),
            "min": min(f[k] for f in figures),
            "max": max(f[k] for f in figures),
        }
        for k in RUN_FIGURES
    }
    chosen["exactly_once"] = min(r["exactly_once"] for r in runs)
    return chosen


def throughput_repeated(opts: Options) -> dict[str, Any]:
    """:func:`throughput` ``opts.throughput_runs`` times (the machine is shared: one run can be
    unlucky); see :func:`repeated`."""
    return repeated([throughput(opts) for _ in range(opts.throughput_runs)])


def scale(opts: Options, known: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The throughput scenario at each of ``opts.scale_events`` (``opts.scale_runs`` runs each,
    fewer for the largest: ``opts.scale_runs_largest``); a size in ``known`` (the throughput
    scenario's result) is not run again."""
    series = []
    for size in opts.scale_events:
        if known and size in known:
            result = known[size]
        else:
            count = opts.scale_runs_largest if size == max(opts.scale_events) else opts.scale_runs
            result = repeated([throughput(opts, size) for _ in range(count)])
        spread = result["spread"]
        series.append(
            {
                "events": result["events"],
                "throughput_events_per_s": spread["events_per_s"]["median"],
                "cpu_ms_per_event": spread["cpu_ms_per_event"]["median"],
                "rss_mib": spread["rss_mib"]["median"],
                "finished_latency_p95_ms": spread["finished_p95_ms"]["median"],
                "runs": len(result["runs"]),
                "spread": spread,
                "control_plane_requests_per_event": result["control_plane_requests_per_event"]["total"],
                "kube_requests_per_event": result["kube_requests_per_event"]["total"],
            }
        )
    return {"series": series}


def _cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / jesproc.CLOCK_TICKS_PER_S, int(fields[12]) / jesproc.CLOCK_TICKS_PER_S


def _cpu_of(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / jesproc.CLOCK_TICKS_PER_S


# ---------------------------------------------------------------------------------------------
# Memory


def memory_in_flight(opts: Options) -> dict[str, Any]:
    """RSS of jes with ``opts.inflight_checkpoint`` and then ``opts.inflight_jobs`` Jobs running at
    once (``JES_MAX_CONCURRENT_EVENTS`` = the latter). Events arrive in waves of 100 (each once the
    previous wave's Jobs exist), so the figure is about holding the Jobs, not about surviving a
    burst (the throughput scenario covers that). The growth between the two sizes, divided by the
    Jobs added, is the cost of one more Job in flight."""
    names = services(opts.throughput_services)
    forever = Behaviour(logs="benchmark\n", duration_s=7200)
    with (
        fakes(opts, "inflight", names, default=forever) as stack,
        jes_serving(opts, stack, "inflight", JES_MAX_CONCURRENT_EVENTS=str(opts.inflight_jobs)) as jes,
    ):
        idle_rss = jes.rss_mib()
        began = time.monotonic()
        points: dict[int, dict[str, Any]] = {}
        injected = 0
        for size in sorted({opts.inflight_checkpoint, opts.inflight_jobs}):
            injected = _ramp(stack, names, injected, size)

            def all_running(_: remote.Remote, target: int = size) -> bool:
                return jes.metric("jes_jobs_in_flight") >= target

            stack.kube.wait_for(all_running, timeout_s=120 + size / 20, interval_s=1.0, what=f"{size} Jobs in flight")
            ramp_s = time.monotonic() - began
            time.sleep(3.0)  # let the creation burst settle (pending reports, watch backlog)
            samples = _sample_rss(jes, 10, 0.5)
            points[size] = {
                "jobs_in_flight": int(jes.metric("jes_jobs_in_flight")),
                "ramp_s": round(ramp_s, 1),
                "rss_mib_max": round(max(samples), 1),
                "rss_mib_median": round(statistics.median(samples), 1),
                "cpu_s_so_far": round(jes.cpu_s(), 1),
            }
        small, large = points[opts.inflight_checkpoint], points[opts.inflight_jobs]
        added = max(large["jobs_in_flight"] - small["jobs_in_flight"], 1)
        return {
            "jobs_in_flight": small["jobs_in_flight"],
            "rss_mib_max": small["rss_mib_max"],
            "jobs_in_flight_large": large["jobs_in_flight"],
            "rss_mib_max_large": large["rss_mib_max"],
            "rss_kib_per_inflight_job": round(1024 * (large["rss_mib_median"] - small["rss_mib_median"]) / added, 1),
            "points": {str(k): v for k, v in points.items()},
            "events_in_flight": int(jes.metric("jes_events_in_flight")),
            "jobs_in_cluster": int(stack.kube.call("request_count", "create", "batch/jobs")),
            "finished_early": finished_count(stack),  # Jobs run for 2 h: any .finished is an error
            "idle_rss_mib": round(idle_rss, 1),
            "peak_rss_mib": round(jes.peak_rss_mib(), 1),
            "threads": jes.threads(),
            "slowest_metrics_answer_s": round(jes.slowest_metrics_s, 2),
        }


def _ramp(stack: Stack, names: list[str], injected: int, target: int, wave: int = 100) -> int:
    """Inject events in waves of ``wave`` until ``target`` were injected, each wave once the
    previous wave's Jobs exist; returns the number injected."""
    while injected < target:
        count = min(wave, target - injected)
        per_service = Counter(names[(injected + k) % len(names)] for k in range(count))
        for service, n in per_service.items():
            inject(stack, service, n)
        injected += count

        def created(kube: remote.Remote, want: int = injected) -> bool:
            return int(kube.call("request_count", "create", "batch/jobs")) >= want

        stack.kube.wait_for(created, timeout_s=300, interval_s=0.25, what=f"{injected} Jobs created")
    return injected


def memory_output(opts: Options) -> dict[str, Any]:
    names = services(1)
    with fakes(opts, "output", names) as stack, jes_serving(opts, stack, "output") as jes:
        warmup = [inject(stack, names[0])[0] for _ in range(2)]
        wait_finished(stack, warmup, timeout_s=60, what="the warm-up events")
        time.sleep(1.0)
        before = statistics.median(_sample_rss(jes, 10, 0.1))
        peak_reset = jes.reset_peak()
        stack.kube.call("behave", image=IMAGE, logs="head of the output\n", log_bytes=opts.output_bytes,
                        log_tail="tail of the output\n", duration_s=0.1)  # fmt: skip
        began = time.monotonic()
        (event_id,) = inject(stack, names[0])
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(jes.rss_mib())
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, name="bench-rss-sampler", daemon=True)
        sampler.start()
        try:
            wait_finished(stack, [event_id], timeout_s=300, what="the 200 MB task")
        finally:
            done.set()
            sampler.join()
        elapsed_s = time.monotonic() - began
        peak = max([*samples, jes.peak_rss_mib() if peak_reset else 0.0])
        finished = reports_by_trigger(stack)[event_id]["finished"][0]
        message = str(finished["data"].get("message", ""))
        return {
            "output_bytes": opts.output_bytes,
            "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(peak, 1),
            "rss_growth_mib": round(peak - before, 1),
            "peak_from": "VmHWM after clear_refs, and 20 ms samples" if peak_reset else "20 ms samples",
            "event_to_finished_s": round(elapsed_s, 1),
            "result": finished["data"].get("result"),
            "message_bytes": len(message.encode()),
            "head_and_tail_kept": "head of the output" in message and "tail of the output" in message,
        }


FILES_CONFIG = b"""\
apiVersion: v2
actions:
  - name: "Benchmark action with a big file"
    events:
      - name: "sh.keptn.event.bench.triggered"
    tasks:
      - name: "Use the file"
        image: "alpine:3.20"
        files: ["data/big.bin"]
        cmd: ["sh", "-c"]
        args: ["wc -c /keptn/data/big.bin"]
"""


def memory_files(opts: Options) -> dict[str, Any]:
    """jes's RSS while it fetches a task file of ``opts.file_bytes`` from the resource service and
    puts it into ConfigMaps (spooled to disk one file at a time, ConfigMaps built one at a time)."""
    names = services(1)
    with fakes(opts, "files", names) as stack, jes_serving(opts, stack, "files") as jes:
        warmup = [inject(stack, names[0])[0] for _ in range(2)]
        wait_finished(stack, warmup, timeout_s=60, what="the warm-up events")
        stack.plane.call("put_resource", project=PROJECT, stage=STAGE, service=names[0], uri="job/config.yaml",
                         content=FILES_CONFIG)  # fmt: skip
        stack.plane.call("put_resource", project=PROJECT, stage=STAGE, service=names[0], uri="data/big.bin",
                         content=random.Random(opts.seed).randbytes(opts.file_bytes))  # fmt: skip
        time.sleep(3.0)  # the config cache of the warm-up expires
        before = statistics.median(_sample_rss(jes, 10, 0.1))
        peak_reset = jes.reset_peak()
        (event_id,) = inject(stack, names[0])
        wait_finished(stack, [event_id], timeout_s=120, what="the task with a big file")
        peak = jes.peak_rss_mib() if peak_reset else max(_sample_rss(jes, 5, 0.05))
        finished = reports_by_trigger(stack)[event_id]["finished"][0]
        maps = stack.kube.call("objects", "configmaps", NAMESPACE)
        return {
            "file_bytes": opts.file_bytes,
            "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(peak, 1),
            "rss_growth_mib": round(peak - before, 1),
            "rss_growth_per_file_mib": round((peak - before) / (opts.file_bytes / 2**20), 2),
            "configmaps": len(maps),
            "largest_configmap_bytes": max((len(json.dumps(m)) for m in maps), default=0),
            "result": finished["data"].get("result"),
        }


def _sample_rss(jes: jesproc.JesProcess, count: int, interval_s: float) -> list[float]:
    values = []
    for _ in range(count):
        values.append(jes.rss_mib())
        time.sleep(interval_s)
    return values


# ---------------------------------------------------------------------------------------------
# Idle cost


IDLE_TASKS = ("bench", "deployment", "test", "evaluation", "release", "rollback", "approval", "remediation")


def idle_cpu(opts: Options) -> dict[str, Any]:
    topics = tuple(f"sh.keptn.event.{task}.triggered" for task in IDLE_TASKS[: opts.idle_topics])
    with fakes(opts, "idle", services(1)) as stack, jes_serving(opts, stack, "idle", topics=topics) as jes:
        time.sleep(opts.idle_warmup_s)
        polls_before = {t: len(stack.plane.call("triggered_poll_times", t)) for t in topics}
        cpu_before, wall_before = jes.cpu_s(), time.monotonic()
        time.sleep(opts.idle_window_s)
        cpu_s, wall_s = jes.cpu_s() - cpu_before, time.monotonic() - wall_before
        polls = {t: len(stack.plane.call("triggered_poll_times", t)) - polls_before[t] for t in topics}
        return {
            "topics": len(topics),
            "polling_interval_s": 1.0,
            "window_s": round(wall_s, 1),
            "cpu_s": round(cpu_s, 3),
            "cpu_percent": round(100.0 * cpu_s / wall_s, 2),
            "polls_per_topic": round(statistics.fmean(polls.values()), 1),
            "rss_mib": round(jes.rss_mib(), 1),
            "threads": jes.threads(),
        }
