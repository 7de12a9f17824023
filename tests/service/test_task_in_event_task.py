"""The runner runs in the event's own task (no task of its own while a Job runs), and what that
means for an abort: the abort cancels the runner's wait and stops the task; jes stopping at the
same moment wins (the task is handed over, not stopped). And what the event keeps while its task
runs: not the parsed event."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest

from jes import ledger
from jes.matcher import matching as matcher
from jes.models import Outcome, Status, TaskSpec
from jes.reporter import events
from jes.service import handler
from jes.util import shared
from tests.service.test_faults import NoFiles, RecordingReporter, TextConfig

CONFIG = """apiVersion: v2
actions:
  - name: "Run"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "wait"
        image: "alpine:3.20"
"""


class WaitingRunner:
    """Waits until released (as a Job that runs); records in which task it ran and what was stopped."""

    name = "waiting"
    absent_means_never_started = True

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.ran_in: list[asyncio.Task[Any] | None] = []
        self.cancelled: list[str] = []
        self.stopped: list[str] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, spec: TaskSpec, **_: Any) -> Outcome:
        self.ran_in.append(asyncio.current_task())
        self.waiting.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(spec.job_name)
            raise
        now = events.utc_now()
        spec.files.discard()
        return Outcome(spec.job_name, Status.SUCCEEDED, "exit code 0", 0, (), now, now)

    async def cancel(self, spec: TaskSpec) -> str:
        self.stopped.append(spec.job_name)
        return "stopped"


def _event(marker: str) -> dict[str, Any]:
    return {
        "id": f"e-{marker}",
        "type": "sh.keptn.event.test.triggered",
        "shkeptncontext": f"c-{marker}",
        "source": "shipyard-controller",
        "data": {"project": "p", "stage": "s", "service": "svc", "marker": marker, "deployment": {"uris": ["u"]}},
    }


def _handler(runner: WaitingRunner, reporter: RecordingReporter) -> handler.EventHandler:
    return handler.EventHandler(
        configs=TextConfig(CONFIG), files=NoFiles(), runner=runner, reporter=reporter,
        store=ledger.MemoryLedger(), executor=matcher.Executor(), identity=events.Identity(),
    )  # fmt: skip


def _finished(reporter: RecordingReporter) -> list[dict[str, Any]]:
    return [e for e in reporter.sent if e["type"].endswith(".finished")]


async def test_the_runner_runs_in_the_events_own_task() -> None:
    runner, reporter = WaitingRunner(), RecordingReporter()
    subject = _handler(runner, reporter)
    task = asyncio.create_task(subject.handle(_event("own")))
    await asyncio.wait_for(runner.waiting.wait(), 5)
    assert runner.ran_in == [task]
    runner.release.set()
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "succeeded" and len(_finished(reporter)) == 1


async def test_an_abort_stops_the_task_and_the_event_task_goes_on_uncancelled() -> None:
    runner, reporter = WaitingRunner(), RecordingReporter()
    subject = _handler(runner, reporter)
    task = asyncio.create_task(subject.handle(_event("abort")))
    await asyncio.wait_for(runner.waiting.wait(), 5)
    assert subject.running.abort("e-abort")
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "cancelled"
    assert len(runner.cancelled) == 1 and runner.stopped == runner.cancelled  # its wait cancelled, its Job stopped
    assert task.cancelling() == 0  # the abort's cancellation was taken back: nothing left to hit a later await
    assert not _finished(reporter)  # Keptn finished the aborted sequence itself


async def test_an_abort_and_jes_stopping_at_once_hand_the_task_over() -> None:
    runner, reporter = WaitingRunner(), RecordingReporter()
    subject = _handler(runner, reporter)
    task = asyncio.create_task(subject.handle(_event("both")))
    await asyncio.wait_for(runner.waiting.wait(), 5)
    subject.running.abort("e-both")
    task.cancel()  # jes stopping, in the same loop round
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runner.cancelled) == 1 and runner.stopped == []  # left running for whoever takes it over


async def test_the_parsed_event_is_not_kept_while_its_task_runs() -> None:
    runner, reporter = WaitingRunner(), RecordingReporter()
    subject = _handler(runner, reporter)
    event = _event("kept-or-not")
    task = asyncio.create_task(subject.handle(shared.packed_json(event)))  # as the service keeps it
    await asyncio.wait_for(runner.waiting.wait(), 5)
    gc.collect()
    found = [o for o in gc.get_objects() if type(o) is dict and o.get("marker") == "kept-or-not"]
    assert found == [event["data"]]  # (a dict holding containers is seen by gc) only this test's own copy
    runner.release.set()
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "succeeded"
    assert json.loads(json.dumps(_finished(reporter)[0]["data"]["project"])) == "p"
