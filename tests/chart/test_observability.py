"""The chart's Grafana dashboard and Prometheus alerts: rendered when enabled, valid, and every query
names a metric jes exports.

promtool is a Go binary with no Python package; the rules are checked as ``promtool check rules``
does, with the ``promql-parser`` library (the Rust port of Prometheus's parser): every expression
parses, ``for`` is a duration, alert names are unique, each alert has a severity and a summary. The
dashboard is read by Grafana's own schema models (``grafana-foundation-sdk``, generated from
Grafana's schemas): a field they do not know is lost in the round trip and fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from grafana_foundation_sdk.models import dashboard as grafana
from prometheus_client.parser import text_string_to_metric_families

from jes.service.metrics import Metrics
from tests.chart.support import USER_NAMESPACE, USER_SETS, Helm

DASHBOARD = Path(__file__).resolve().parents[2] / "chart/dashboards/jes-dashboard.json"
ENABLED = [*USER_SETS, "metrics.prometheusRule.enabled=true", "metrics.dashboards.enabled=true"]
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def exported_series() -> set[str]:
    """The series names jes's /metrics can have (counters with _total, histograms with _bucket ...)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",)}  # fmt: skip
    names = set()
    for family in text_string_to_metric_families(Metrics().exposition().decode()):
        names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def selector_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        for child in ("expr", "lhs", "rhs", "vector_selector", "param"):
            value = getattr(node, child, None)
            if isinstance(value, promql_parser.Expr):
                visit(value)
        for arg in getattr(node, "args", None) or []:
            visit(arg)

    visit(promql_parser.parse(expr))
    return names


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield panel["title"], expr


def test_off_by_default(helm: Helm) -> None:
    rendered = helm.template(USER_SETS)
    assert not rendered.all("PrometheusRule") and not [
        c for c in rendered.all("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]


def test_the_dashboard_configmap_is_labelled_for_grafana(helm: Helm) -> None:
    (config_map,) = [c for c in helm.template(ENABLED).all("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["jes-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def lost_in_round_trip(written: Any, read: Any, path: str = "") -> list[str]:
    if isinstance(written, dict):
        if not isinstance(read, dict):
            return [path]
        return [p for k, v in written.items() for p in (
            lost_in_round_trip(v, read[k], f"{path}/{k}") if k in read else [f"{path}/{k}"])]  # fmt: skip
    if isinstance(written, list):
        if not isinstance(read, list) or len(written) != len(read):
            return [path]
        return [p for i, (w, r) in enumerate(zip(written, read, strict=True)) for p in lost_in_round_trip(w, r, f"{path}[{i}]")]
    return [] if written == read else [f"{path}: {written!r} became {read!r}"]


def test_the_dashboard_is_valid_for_grafana() -> None:
    written = json.loads(DASHBOARD.read_text())
    read = json.loads(json.dumps(grafana.Dashboard.from_json(written), default=lambda model: model.to_json()))
    assert lost_in_round_trip(written, read) == []
    assert {panel["type"] for panel in written["panels"]} <= {"timeseries", "stat"}
    assert len({panel["id"] for panel in written["panels"]}) == len(written["panels"])


@pytest.mark.parametrize(("title", "expr"), list(dashboard_queries()))
def test_every_dashboard_query_parses_and_names_exported_metrics(title: str, expr: str) -> None:
    names = selector_names(expr)
    assert names, f"{title}: no metric in {expr}"
    assert names <= exported_series(), f"{title}: {names - exported_series()} not exported by jes"


def test_the_dashboard_covers_what_operators_ask_for() -> None:
    names = {name for _, expr in dashboard_queries() for name in selector_names(expr)}
    for needed in ("jes_events_in_flight", "jes_event_pickup_seconds_bucket", "jes_event_completion_seconds_bucket",
                   "jes_task_duration_seconds_count", "jes_report_errors_total", "jes_reports_rejected_total",
                   "jes_poll_errors_total"):  # fmt: skip
        assert needed in names


def alert_rules(helm: Helm) -> list[dict[str, Any]]:
    (rule,) = helm.template(ENABLED).all("PrometheusRule")
    assert rule["metadata"]["namespace"] == USER_NAMESPACE
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alerts_pass_promtool_equivalent_checks(helm: Helm) -> None:
    rules = alert_rules(helm)
    assert sorted(r["alert"] for r in rules) == [
        "JesNoSuccessfulPoll", "JesReportsRejected", "JesTasksFailingFast", "JesUnauthorized"]  # fmt: skip
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        names = selector_names(rule["expr"])
        assert names and names <= exported_series(), (rule["alert"], names)
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f'namespace="{USER_NAMESPACE}"' in rule["expr"], "scoped to the release's namespace"


def test_a_broken_expression_is_caught() -> None:
    """The check can fail: what promtool refuses, the parser refuses."""
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(jes_poll_errors_total[5m]) by")
    assert selector_names("rate(jes_not_a_metric_total[5m])") - exported_series() == {"jes_not_a_metric_total"}


def test_alert_labels_reach_every_alert(helm: Helm) -> None:
    (rule,) = helm.template([*ENABLED, "metrics.prometheusRule.alertLabels.team=platform"]).all("PrometheusRule")
    assert all(r["labels"]["team"] == "platform" for g in rule["spec"]["groups"] for r in g["rules"])
