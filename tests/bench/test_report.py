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
