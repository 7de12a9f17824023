"""The benchmark's own arithmetic and table (the scenarios themselves run in ``make bench``)."""

from __future__ import annotations

import math

from bench import report, stats


def test_percentiles_interpolate_between_ranks_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 4.0
    assert math.isclose(stats.percentile(values, 95), 3.85)
    assert math.isnan(stats.percentile([], 50))
    assert stats.summary_ms([0.010, 0.030]) == {
        "n": 2,
        "p50": 20.0,
        "p95": 29.0,
        "mean": 20.0,
        "min": 10.0,
        "max": 30.0,
    }


def test_keptn_times_and_the_first_poll_after_an_event() -> None:
    assert stats.keptn_epoch("1970-01-01T00:00:01.250Z") == 1.25
    polls = [1.0, 2.0, 3.0]
    assert stats.first_at_or_after(polls, 1.5) == 2.0
    assert stats.first_at_or_after(polls, 2.0) == 2.0
    assert stats.first_at_or_after(polls, 3.5) is None


def test_the_table_shows_targets_ratios_and_unmeasured_rows() -> None:
    results = {
        "polling_interval_s": 1.0,
        "finished_latency_p50_ms": 20.0,
        "finished_latency_p95_ms": 400.0,
        "baseline_finished_latency_p50_ms": 2500.0,
        "finished_latency_speedup_p50": 125.0,
        "pickup_latency_p50_ms": 530.0,
    }
    verdicts = report.verdicts(results)
    assert verdicts["finished_latency_p50_ms"] is True
    assert verdicts["finished_latency_p95_ms"] is False
    assert verdicts["pickup_latency_p50_ms"] is True
    assert verdicts["idle_cpu_percent"] is None
    table = report.table(results)
    assert "125.0x faster" in table
    assert "FAIL" in table and "not measured" in table


def test_the_readme_section_is_replaced_with_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench import report

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- BEGIN bench-results -->\nold\n<!-- END bench-results -->\nrest\n")
    results = {"date": "2026-11-22T05:00:00+00:00", "machine": {"cpu_model": "cpu", "cores": 2, "memory_gib": 23.5},
               "finished_latency_p50_ms": 10.0, "baseline_finished_latency_p50_ms": 2500.0, "polling_interval_s": 1.0}  # fmt: skip
    report.update_readme(str(readme), results)
    text = readme.read_text()
    assert "old" not in text and text.endswith("rest\n")
    assert (
        "| Job complete -> .finished accepted, p50 | 10.0 ms | 2,500.0 ms (250.0x slower) | <= 100 ms and >= 20x faster |"
        in text
    )
    assert "Last run: 2026-11-22T05:00:00+00:00" in text


def test_whole_burst_and_window_rates() -> None:
    from bench import scenarios

    # 100 events: the first .triggered at 0, .finished evenly from 1 s to 10.9 s
    done = [1.0 + 0.1 * k for k in range(100)]
    rates = scenarios.burst_rates(0.0, done)
    assert rates["events_per_s"] == round(100 / 10.9, 1)  # the whole burst: what a user waits for
    assert rates["window_events_per_s"] == 10.0  # 80 events between the 10th and 90th percentile, 8 s


def test_requests_per_event_between_two_snapshots() -> None:
    from bench import scenarios

    before = {"update leases": 10, "watch jobs": 2}
    after = {"update leases": 410, "watch jobs": 2, "create jobs": 100}
    assert scenarios.per_event(before, after, 100) == {"total": 5.0, "update leases": 4.0, "create jobs": 1.0}


def test_repeated_runs_give_the_median_with_min_and_max() -> None:
    from bench import scenarios

    def run(rate: float, cpu: float, once: int) -> dict:  # type: ignore[type-arg]
        return {"events": 1000, "events_per_s": rate, "window_events_per_s": rate * 1.3, "cpu_ms_per_event": cpu,
                "rss_mib": 90.0, "finished_ms": {"p95": cpu * 2}, "exactly_once": once}  # fmt: skip

    result = scenarios.repeated([run(120.0, 5.0, 1000), run(80.0, 7.0, 999), run(100.0, 6.5, 1000)])
    assert result["events_per_s"] == 100.0  # the details of the run with the median rate
    assert result["spread"]["events_per_s"] == {"median": 100.0, "min": 80.0, "max": 120.0}
    assert result["spread"]["cpu_ms_per_event"] == {"median": 6.5, "min": 5.0, "max": 7.0}
    assert result["spread"]["finished_p95_ms"]["max"] == 14.0
    assert result["exactly_once"] == 999  # the worst run counts
    assert [r["events_per_s"] for r in result["runs"]] == [120.0, 80.0, 100.0]


def test_the_headline_is_the_whole_burst_and_the_scale_series_has_the_issue_keys() -> None:
    from bench.__main__ import _headline

    spread = {k: {"median": m, "min": m - 1, "max": m + 1} for k, m in
              {"events_per_s": 160.0, "window_events_per_s": 200.0, "cpu_ms_per_event": 5.5, "rss_mib": 90.0,
               "finished_p95_ms": 30.0}.items()}  # fmt: skip
    through = {"spread": spread, "runs": [{}, {}, {}], "events": 1000, "exactly_once": 1000,
               "control_plane_requests_per_event": {"total": 4.2}, "kube_requests_per_event": {"total": 6.5}}  # fmt: skip
    point = {"events": 10_000, "throughput_events_per_s": 110.0, "cpu_ms_per_event": 6.0, "rss_mib": 120.0,
             "finished_latency_p95_ms": 40.0, "runs": 1, "spread": {}}  # fmt: skip
    flat = _headline({"throughput": through, "scale": {"series": [point]}})
    assert flat["throughput_events_per_s"] == 160.0 and flat["throughput_window_events_per_s"] == 200.0
    assert flat["cpu_ms_per_event"] == 5.5 and flat["spread"]["throughput_events_per_s"]["min"] == 159.0
    assert flat["scale"] == [{"events": 10_000, "throughput_events_per_s": 110.0, "cpu_ms_per_event": 6.0,
                              "rss_mib": 120.0, "finished_latency_p95_ms": 40.0}]  # fmt: skip
    assert flat["throughput_largest_events_per_s"] == 110.0
    verdicts = report.verdicts(flat)
    assert verdicts["throughput_events_per_s"] is True and verdicts["throughput_largest_events_per_s"] is True
    assert verdicts["cpu_ms_per_event"] is True and verdicts["throughput_finished_latency_p95_ms"] is True
    assert "control_plane_requests_per_event" not in verdicts  # shown, without a target
    table = report.table(flat)
    assert "160.0 events/s (159.0-161.0)" in table  # the median of 3 runs, min-max beside it


def test_the_readme_shows_the_scale_series_beside_its_picture() -> None:
    results = {"scale": [{"events": 100, "throughput_events_per_s": 90.0, "cpu_ms_per_event": 7.0, "rss_mib": 80.0,
                          "finished_latency_p95_ms": 20.0}], "throughput_runs": 3}  # fmt: skip
    text = report.markdown(results)
    assert '<img src="bench/scale.png" align="right"' in text
    assert "| 100 | 90.0 events/s | 7.0 ms | 80.0 MiB | 20.0 ms |" in text
    assert "median of 3 runs (min-max)" in text


def test_the_scale_picture_is_drawn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    pytest.importorskip("matplotlib")  # the optional [bench] extra
    from bench import plot

    series = [{"events": n, "throughput_events_per_s": 100.0, "cpu_ms_per_event": 6.0} for n in (100, 1000, 10_000)]
    out = tmp_path / "scale.png"
    assert plot.scale_png(series, out) == f"scale plot: {out}"
    assert out.read_bytes().startswith(b"\x89PNG")
