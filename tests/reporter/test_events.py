"""Event builders: envelope, data, messages, the size budget."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jes.models import ContainerLog, EventInfo, LogText, Outcome, Status
from jes.reporter import budget as size_budget
from jes.reporter import events
from jes.runner.logs import BoundedBuffer

INFO = EventInfo(
    id="trig-1",
    type="sh.keptn.event.test.triggered",
    source="shipyard-controller",
    keptn_context="ctx-1",
    git_commit_id="abc",
    project="p",
    stage="s",
    service="svc",
    labels={"k": "v"},
)
IDENTITY = events.Identity(source="job-executor-service", executor="keptn-jes-eu/EU")
T0 = datetime(2021, 8, 24, 16, 10, 25, 123456, tzinfo=UTC)


def outcome(status: Status = Status.SUCCEEDED, text: str = "hello\n", **kw: object) -> Outcome:
    log = ContainerLog(container="job-1", pod="job-1-abcde", text=LogText.of(text), **kw)  # type: ignore[arg-type]
    return Outcome(
        job_name="job-1",
        status=status,
        reason="exit code 0" if status is Status.SUCCEEDED else "exit code 3",
        exit_code=0 if status is Status.SUCCEEDED else 3,
        logs=(log,),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5),
    )


def test_started_envelope_and_data() -> None:
    event = events.started(INFO, IDENTITY, now=T0, action="act")
    assert event["type"] == "sh.keptn.event.test.started"
    assert (event["source"], event["specversion"], event["shkeptnspecversion"]) == (
        "job-executor-service",
        "1.0",
        "0.2.4",
    )
    assert (event["shkeptncontext"], event["triggeredid"], event["gitcommitid"]) == ("ctx-1", "trig-1", "abc")
    assert event["time"] == "2021-08-24T16:10:25.123Z"
    assert event["data"] == {
        "project": "p",
        "stage": "s",
        "service": "svc",
        "labels": {"k": "v"},
        "jes": {"executor": "keptn-jes-eu/EU", "action": "act"},
    }
    # the same report has the same id, whoever sends it (a stream drops the repeat); others differ
    assert event["id"] == events.started(INFO, IDENTITY, now=T0)["id"]
    other = events.Identity(source=IDENTITY.source, executor="another-namespace/-")
    assert len({event["id"], events.started(INFO, other, now=T0)["id"], events.finished(INFO, IDENTITY, status="succeeded", result="pass", message="", max_bytes=65536, now=T0)["id"]}) == 3


def test_status_changed_names_task_index_and_image() -> None:
    event = events.status_changed(INFO, IDENTITY, task="Run", index=1, count=3, image="alpine", job="j")
    assert event["type"] == "sh.keptn.event.test.status.changed"
    assert event["data"]["message"] == "task 2/3 'Run' started (image alpine)"
    assert event["data"]["jes"]["task"] == {"name": "Run", "index": 1, "count": 3, "image": "alpine", "job": "j"}


def test_success_message_follows_upstream_format() -> None:
    message = events.success_message([events.TaskReport("Run locust", outcome())])
    # upstream: "Container <c> of pod <p>:\n<log>\n" + "\n" per container, then "\n\n" per task
    assert (
        message
        == "Task 'Run locust' finished successfully!\n\nLogs:\nContainer job-1 of pod job-1-abcde:\nhello\n\n\n\n\n"
    )


def test_failure_message_has_reason_logs_events_and_init_logs() -> None:
    failed = Outcome(
        job_name="job-2",
        status=Status.FAILED,
        reason="exit code 3",
        exit_code=3,
        logs=(
            ContainerLog("init-job-2", "pod", LogText.of("copied\n"), exit_code=0, reason="Completed", init=True),
            ContainerLog("job-2", "pod", LogText.of("boom\n"), exit_code=3, reason="Error"),
        ),
        started_at=T0,
        finished_at=T0,
        events=("BackoffLimitExceeded: Job has reached the specified backoff limit",),
    )
    message = events.failure_message([events.TaskReport("first", outcome())], events.TaskReport("second", failed))
    assert message.startswith("Task 'second' failed: exit code 3\n\nLogs:\n")
    assert "Container init-job-2 of pod pod:\ncopied\n" in message
    assert "Container job-2 of pod pod terminated with an error (Reason: Error, ExitCode: 3):\nboom\n" in message
    assert "Kubernetes events:\nBackoffLimitExceeded: Job has reached the specified backoff limit\n" in message
    assert message.endswith(
        "Task 'first' finished successfully!\n\nLogs:\nContainer job-1 of pod job-1-abcde:\nhello\n\n\n\n\n"
    )


def test_error_header_uses_the_termination_message_when_there_is_one() -> None:
    log = ContainerLog("c", "p", LogText.of("x"), exit_code=137, reason="OOMKilled", message="killed")
    assert (
        events.render_logs([log], include_init=False)
        == "Container c of pod p terminated with an error (Reason: OOMKilled, Message: killed):\nx\n\n"
    )


def test_finished_success_with_test_window_and_summary() -> None:
    report = events.TaskReport("t", outcome())
    event = events.finished(
        INFO, IDENTITY, status="succeeded", result="pass", message="m", max_bytes=65536,
        jes_data=events.summary(IDENTITY, "act", [report]), test_window=(T0, T0 + timedelta(seconds=5)), now=T0,
    )  # fmt: skip
    data = event["data"]
    assert event["type"] == "sh.keptn.event.test.finished"
    assert (data["status"], data["result"], data["message"]) == ("succeeded", "pass", "m")
    assert data["test"] == {"start": "2021-08-24T16:10:25Z", "end": "2021-08-24T16:10:30Z"}
    assert data["jes"] == {
        "executor": "keptn-jes-eu/EU",
        "action": "act",
        "tasks": [
            {
                "name": "t",
                "job": "job-1",
                "status": "succeeded",
                "exitCode": 0,
                "durationSeconds": 5.0,
                "reason": "exit code 0",
                "onError": "fail",
            }
        ],
    }


def test_test_window_only_for_test_triggered() -> None:
    other = EventInfo(**{**INFO.__dict__, "type": "sh.keptn.event.deployment.triggered"})
    event = events.finished(
        other, IDENTITY, status="succeeded", result="pass", message="", max_bytes=65536, test_window=(T0, T0)
    )
    assert "test" not in event["data"] and "message" not in event["data"]


@pytest.mark.parametrize("budget", [2048, 4096, 65536])
def test_large_messages_keep_head_and_tail_within_the_budget(budget: int) -> None:
    lines = [f'line {i:06d} ü "quoted" \\ tab\t' for i in range(20000)]
    message = "\n".join(lines)
    event = events.finished(INFO, IDENTITY, status="errored", result="fail", message=message, max_bytes=budget)
    assert size_budget.body_size(event) <= budget
    kept = event["data"]["message"]
    assert kept.startswith("line 000000") and kept.endswith(lines[-1])
    marker = [line for line in kept.splitlines() if "bytes omitted" in line]
    assert len(marker) == 1
    omitted = int(marker[0].split()[1])
    head, tail = kept.split("\n" + marker[0] + "\n")
    assert message.startswith(head) and message.endswith(tail)
    assert omitted == len(message.encode()) - len(head.encode()) - len(tail.encode())
    assert size_budget.body_size(event) > budget * 0.9  # the budget is used, not wasted


def test_small_messages_are_untouched() -> None:
    event = events.finished(INFO, IDENTITY, status="succeeded", result="pass", message="short", max_bytes=65536)
    assert event["data"]["message"] == "short"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=5000), st.integers(min_value=1500, max_value=6000))
def test_budget_property(message: str, budget: int) -> None:
    event = events.finished(INFO, IDENTITY, status="errored", result="fail", message=message, max_bytes=budget)
    assert size_budget.body_size(event) <= budget
    assert json.loads(size_budget.encode(event))["data"]["status"] == "errored"


def test_bounded_buffer_keeps_head_and_tail_and_counts_the_rest() -> None:
    buffer = BoundedBuffer(head_bytes=10, tail_bytes=10)
    for _ in range(1000):
        buffer.write(b"0123456789abcdef")
    result = buffer.result()
    assert result.head == b"0123456789"
    assert result.tail == b"6789abcdef"
    assert result.omitted_bytes == 16000 - 20 and result.total_bytes == 16000
    assert "[... 15980 bytes omitted ...]" in result.text()


def test_response_types_and_task_names() -> None:
    assert events.response_type("sh.keptn.event.test.triggered", "started") == "sh.keptn.event.test.started"
    assert (
        events.response_type("sh.keptn.event.test.triggered", "status.changed") == "sh.keptn.event.test.status.changed"
    )
    assert events.task_name_of("sh.keptn.event.sayhello.triggered") == "sayhello"
    assert events.task_name_of("sh.keptn.event.dev.seq.triggered") == "sh.keptn.event.dev.seq.triggered"


def test_warning_message_names_each_warning_task_and_keeps_every_log() -> None:
    reports = [
        events.TaskReport("build", outcome()),
        events.TaskReport("lint", outcome(Status.FAILED, "3 issues\n"), "warning"),
        events.TaskReport("deploy", outcome()),
    ]
    message = events.warning_message(reports, 3)
    assert message.startswith("task 2/3 'lint' failed (exit code 3) — onError: warning\n\n")
    assert "Task 'lint' failed: exit code 3\n\nLogs:\n" in message and "3 issues" in message
    assert message.count("finished successfully!") == 2
    tasks = events.summary(IDENTITY, "act", reports)["tasks"]
    assert [t["onError"] for t in tasks] == ["fail", "warning", "fail"]


def test_failure_after_a_warning_puts_the_failure_first_and_lists_the_warning() -> None:
    lint = events.TaskReport("lint", outcome(Status.FAILED), "warning")
    failed = events.TaskReport("test", outcome(Status.FAILED, "broken\n"))
    message = events.failure_message([lint], failed, count=3)
    assert message.startswith("Task 'test' failed: exit code 3\n\nLogs:\n")
    assert "\ntask 1/3 'lint' failed (exit code 3) — onError: warning\n" in message
    assert lint.warned and "finished successfully" not in message


# --- task outputs ($KEPTN_OUTPUT_FILE) ------------------------------------------------------------


def with_output(output: dict[str, object], status: Status = Status.SUCCEEDED, text: str = "hello\n") -> Outcome:
    return replace(outcome(status, text), output=output)


def test_outputs_merge_in_task_order_and_never_over_keptns_or_jess_keys() -> None:
    first = {"test": {"start": "a", "end": "b"}, "shared": 1, "status": "pass", "project": "evil"}
    second = {"shared": 2, "jes": {"executor": "forged"}, "message": "mine", "labels": {}, "result": "pass"}
    reports = [events.TaskReport("one", with_output(first)), events.TaskReport("two", with_output(second))]
    event = events.finished(
        INFO, IDENTITY, status="succeeded", result="pass", message="m", max_bytes=65536, now=T0,
        jes_data=events.summary(IDENTITY, "act", reports), test_window=(T0, T0), outputs=[first, second],
    )  # fmt: skip
    data = event["data"]
    assert data["test"] == {"start": "a", "end": "b"}  # the task's own wins over jes's test window
    assert data["shared"] == 2  # the later task wins
    assert (data["project"], data["status"], data["result"], data["message"]) == ("p", "succeeded", "pass", "m")
    assert data["labels"] == {"k": "v"}
    assert data["jes"]["executor"] == "keptn-jes-eu/EU"
    one, two = data["jes"]["tasks"]
    assert (one["outputKeys"], one["ignoredOutputKeys"]) == (["shared", "test"], ["project", "status"])
    assert (two["outputKeys"], two["ignoredOutputKeys"]) == (["shared"], ["jes", "labels", "message", "result"])


def test_a_task_without_output_has_no_output_keys() -> None:
    (task,) = events.summary(IDENTITY, "act", [events.TaskReport("one", outcome())])["tasks"]
    assert "outputKeys" not in task and "ignoredOutputKeys" not in task


def test_outputs_are_kept_whole_and_the_log_is_cut_first() -> None:
    output = {"test": {"start": "a", "end": "b"}, "report": "r" * 20_000}
    message = "L" * 100_000
    event = events.finished(
        INFO, IDENTITY, status="succeeded", result="pass", message=message, max_bytes=32_768, now=T0,
        outputs=[output],
    )  # fmt: skip
    assert size_budget.body_size(event) <= 32_768
    assert event["data"]["report"] == output["report"]
    assert "bytes omitted to fit the event size limit" in event["data"]["message"]
    assert event["data"]["status"] == "succeeded"


def test_outputs_that_cannot_fit_fail_the_action_without_them() -> None:
    output = {"report": "r" * 40_000}
    event = events.finished(
        INFO, IDENTITY, status="succeeded", result="pass", message="task log\n", max_bytes=32_768, now=T0,
        outputs=[output],
    )  # fmt: skip
    data = event["data"]
    assert size_budget.body_size(event) <= 32_768
    assert "report" not in data
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("The tasks' outputs ($KEPTN_OUTPUT_FILE, 40013 bytes of JSON) do not fit")
    assert "JES_MAX_EVENT_BYTES (32768 bytes)" in data["message"] and data["message"].endswith("task log\n")
