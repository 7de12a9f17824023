"""The reports of a task with retries: one ``.status.changed`` per retry, ``attempts`` and
``exitCodes`` in ``data.jes.tasks[]`` (absent for a task without retries), kept in the claim."""

from __future__ import annotations

import dataclasses

from jes.ledger.claim import TaskRecord, TaskState
from jes.models import Status
from jes.reporter import events
from tests.reporter.test_events import IDENTITY, INFO, outcome


def test_a_retry_is_a_status_changed_naming_task_attempt_and_exit_code() -> None:
    event = events.status_changed_attempt(
        INFO, IDENTITY, task="tests", index=0, count=2, attempt=2, attempts=3, exit_code=2, job="jes-x"
    )
    assert event["type"] == events.response_type(INFO.type, "status.changed")
    assert event["data"]["message"] == "task 1/2 'tests' attempt 2/3 after exit code 2"
    task = event["data"]["jes"]["task"]
    assert (task["name"], task["attempt"], task["attempts"], task["previousExitCode"]) == ("tests", 2, 3, 2)
    without = events.status_changed_attempt(
        INFO, IDENTITY, task="t", index=1, count=2, attempt=3, attempts=3, exit_code=None, job="jes-x"
    )
    assert without["data"]["message"] == "task 2/2 't' attempt 3/3 after a failure without exit code"


def test_the_summary_has_attempts_only_for_tasks_with_retries() -> None:
    retried = events.TaskReport("tests", dataclasses.replace(outcome(Status.FAILED), attempts=(2, 2, 2)))
    plain = events.TaskReport("deploy", outcome())
    tasks = events.summary(IDENTITY, "act", [retried, plain])["tasks"]
    assert (tasks[0]["attempts"], tasks[0]["exitCodes"]) == (3, [2, 2, 2])
    assert "attempts" not in tasks[1] and "exitCodes" not in tasks[1]


def test_the_claim_keeps_the_attempts_of_a_done_task() -> None:
    record = TaskRecord(TaskState.DONE, "jes-x", status="failed", reason="r", exit_code=2, attempts=(2, None, 2))
    assert TaskRecord.from_json(record.to_json()) == record
    plain = TaskRecord(TaskState.DONE, "jes-y", status="succeeded")
    assert "attempts" not in plain.to_json() and TaskRecord.from_json(plain.to_json()).attempts == ()
