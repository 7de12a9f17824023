"""Prometheus metrics of the service (all names start with ``jes_``).

One :class:`Metrics` per service instance with its own registry, so tests can run several
services in one process. The API token never appears in any label.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_DURATION_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_PICKUP_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_received = Counter(
            "jes_events_received", "Triggered events taken from the control plane", ["topic"], registry=r
        )
        self.events_matched = Counter("jes_events_matched", "Events for which at least one action ran", registry=r)
        self.events_finished = Counter(
            "jes_events_finished", ".finished events delivered, by result", ["result"], registry=r
        )
        self.events_skipped = Counter("jes_events_skipped", "Events not handled, by reason", ["reason"], registry=r)
        self.events_in_flight = Gauge("jes_events_in_flight", "Events being handled", registry=r)
        self.events_waiting = Gauge("jes_events_waiting", "Events started and waiting for a free slot", registry=r)
        self.jobs_in_flight = Gauge("jes_jobs_in_flight", "Tasks (Jobs or processes) running", registry=r)
        self.task_duration = Histogram(
            "jes_task_duration_seconds", "Task run time, by status", ["status"], buckets=_DURATION_BUCKETS_S, registry=r
        )
        self.poll_errors = Counter("jes_poll_errors", "Failed polls and heartbeats, by kind", ["kind"], registry=r)
        self.report_errors = Counter("jes_report_errors", "Failed report attempts, by kind", ["kind"], registry=r)
        self.report_latency = Histogram(
            "jes_report_delivery_seconds",
            "From the first attempt to the control plane accepting a report, by kind",
            ["kind"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.reports_rejected = Counter(
            "jes_reports_rejected",
            "Attempts to deliver .started/.finished that the control plane refused with a 4xx, by kind",
            ["kind"],
            registry=r,
        )
        self.reports_uncertain = Counter(
            "jes_reports_uncertain",
            "Reports whose arrival the datastore could not tell past JES_DATASTORE_SETTLE_S, by report and decision",
            ["report", "decision"],
            registry=r,
        )
        self.event_retries = Counter(
            "jes_event_retries", "Attempts to handle an event that failed and were retried", registry=r
        )
        self.claims_forgotten = Counter(
            "jes_claims_forgotten", "Done claims deleted after JES_DONE_RETENTION_S", registry=r
        )
        self.tasks_cancelled = Counter(
            "jes_tasks_cancelled", "Running tasks stopped because their sequence was aborted in Keptn", registry=r
        )
        self.ready = Gauge("jes_ready", "1 when registered and polling", registry=r)
        self.pickup_latency = Histogram(
            "jes_event_pickup_seconds",
            "From a triggered event's time to jes taking it",
            buckets=_PICKUP_BUCKETS_S,
            registry=r,
        )
        self.completion_latency = Histogram(
            "jes_event_completion_seconds",
            "From jes taking an event to its .finished being accepted",
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.last_poll_ok = Gauge(
            "jes_poll_last_success_timestamp_seconds",
            "Unix time of the last successful poll of the control plane (0: none yet)",
            registry=r,
        )

    def observe_pickup(self, event_time: str, taken_at: float) -> None:
        """From the triggered event's own time (its producer's clock) to ``taken_at`` (Unix time)."""
        try:
            created = datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return
        self.pickup_latency.observe(max(0.0, taken_at - created))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
