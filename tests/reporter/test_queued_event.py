"""The best-effort "queued, position N" ``.status.changed`` of an event waiting for a slot."""

from __future__ import annotations

from datetime import UTC, datetime

from jes.models import Concurrency, EventInfo
from jes.reporter import events

INFO = EventInfo(
    id="t-1", type="sh.keptn.event.test.triggered", source="shipyard-controller", keptn_context="ctx",
    git_commit_id="", project="p", stage="dev", service="s",
)  # fmt: skip
IDENTITY = events.Identity(source="job-executor-service", executor="keptn-jes/-")


def test_queued_names_the_position_the_action_and_the_key() -> None:
    event = events.queued(
        INFO, IDENTITY, action="load-test", position=3, queue=Concurrency(1, "$.data.stage", "dev", "q"),
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )  # fmt: skip
    assert event["type"] == "sh.keptn.event.test.status.changed"
    assert event["triggeredid"] == "t-1" and event["shkeptncontext"] == "ctx"
    data = event["data"]
    assert (
        data["message"]
        == "queued, position 3: action 'load-test' runs for at most 1 event at a time for $.data.stage = \"dev\""
    )
    assert data["jes"] == {
        "executor": "keptn-jes/-",
        "queue": {"action": "load-test", "position": 3, "limit": 1, "key": "$.data.stage", "value": "dev"},
    }
    assert (data["project"], data["stage"], data["service"]) == ("p", "dev", "s")


def test_queued_without_a_key() -> None:
    event = events.queued(INFO, IDENTITY, action="a", position=1, queue=Concurrency(2, "", "", "q"))
    assert event["data"]["message"] == "queued, position 1: action 'a' runs for at most 2 events at a time"


def test_a_long_key_value_is_cut_in_the_report() -> None:
    long = "x" * 5000
    event = events.queued(INFO, IDENTITY, action="a", position=1, queue=Concurrency(1, "$.data.blob", long, "q"))
    shown = event["data"]["jes"]["queue"]["value"]
    assert len(shown) < 300 and "bytes omitted" in shown
    assert len(event["data"]["message"]) < 500
