"""The runner runs in the event's own task (no task of its own while a Job runs), and what that
means for an abort: the abort cancels the runner's wait and stops the task; jes stopping at the
same moment wins (the task is handed over, not stopped). And what the event keeps while its task
runs: not the parsed event."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import pytest

from jes import errors, ledger
from jes.ledger import TaskState
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
    """Waits until released (as a Job that runs); records in which task it ran and what was stopped.
    ``then``: what it does with the task's files first ("discard" as the real runners do, "keep",
    "raise" an error), or "ends anyway" when its wait is cancelled."""

    name = "waiting"
    absent_means_never_started = True

    def __init__(self, then: str = "discard", slots: asyncio.Semaphore | None = None) -> None:
        self.then, self.slots = then, slots
        self.free_slots: list[int] = []  # of ``slots``: on entry, after the files were discarded
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
        self._count_slots()
        if self.then == "raise":
            raise RuntimeError("a bug in the runner")
        if self.then == "discard":
            spec.files.discard()
            spec.files.discard()  # (twice: the slot is given back once)
            self._count_slots()
        self.waiting.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(spec.job_name)
            if self.then != "ends anyway":
                raise
            await asyncio.sleep(0.01)
        now = events.utc_now()
        return Outcome(spec.job_name, Status.SUCCEEDED, "exit code 0", 0, (), now, now)

    def _count_slots(self) -> None:
        if self.slots is not None:
            self.free_slots.append(self.slots._value)

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


def _handler(runner: Any, reporter: RecordingReporter, **options: Any) -> handler.EventHandler:
    fields: dict[str, Any] = {"configs": TextConfig(CONFIG), "files": NoFiles(), "store": ledger.MemoryLedger()}
    return handler.EventHandler(
        runner=runner, reporter=reporter, executor=matcher.Executor(), identity=events.Identity(), **fields | options
    )


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


async def test_a_runner_that_ends_anyway_after_the_abort_still_has_its_task_stopped() -> None:
    runner, reporter = WaitingRunner("ends anyway"), RecordingReporter()
    subject = _handler(runner, reporter)

    async def handle_then_wait() -> tuple[str, int]:
        result = await subject.handle(_event("anyway"))
        await asyncio.sleep(0.01)  # a later await of the same task: no cancellation left to hit it
        task = asyncio.current_task()
        assert task is not None
        return result.outcome, task.cancelling()

    task = asyncio.create_task(handle_then_wait())
    await asyncio.wait_for(runner.waiting.wait(), 5)
    subject.running.abort("e-anyway")
    assert await asyncio.wait_for(task, 5) == ("cancelled", 0)
    assert runner.stopped == runner.cancelled and len(runner.stopped) == 1


class AbortedWhileLaunching(ledger.MemoryLedger):
    """Keptn aborts the sequence while the task's ``launching`` record is being written."""

    subject: handler.EventHandler | None = None

    async def save(self, claim: ledger.Claim) -> None:
        if self.subject is not None and any(r.state is TaskState.LAUNCHING for r in claim.tasks.values()):
            self.subject.running.abort(claim.event_id)
            self.subject = None
            await asyncio.sleep(0.01)
        await super().save(claim)


async def test_an_abort_while_the_task_is_launched_starts_nothing() -> None:
    runner, reporter, store = WaitingRunner(), RecordingReporter(), AbortedWhileLaunching()
    store.subject = subject = _handler(runner, reporter, store=store)
    result = await asyncio.wait_for(subject.handle(_event("early")), 5)
    assert result.outcome == "cancelled"
    assert runner.ran_in == [] and runner.stopped == []  # the runner never began creating anything
    record = store.get("e-early")
    assert record is not None and record.done and record.cancelled


CONFIG_WITH_FILES = CONFIG + """        files: ["/a.txt"]\n"""


class OneFile:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails

    async def fetch(self, info: Any, task: Any, into: Path) -> dict[str, int]:
        if self.fails:
            raise errors.KeptnNotFoundError("resource a.txt not found")
        (into / "a.txt").write_bytes(b"x")
        return {"a.txt": 1}


@pytest.mark.parametrize("ending", ["discard", "keep", "raise", "fetch fails", "abort", "jes stops"])
async def test_a_file_slot_is_held_until_the_files_are_discarded_and_given_back_once(ending: str) -> None:
    slots = asyncio.Semaphore(1)
    runner = WaitingRunner("keep" if ending in ("abort", "jes stops") else ending, slots)
    subject = _handler(
        runner, RecordingReporter(), configs=TextConfig(CONFIG_WITH_FILES), files=OneFile(ending == "fetch fails"),
        file_slots=slots,
    )  # fmt: skip
    task = asyncio.create_task(subject.handle(_event("files")))
    if ending in ("discard", "keep", "abort", "jes stops"):
        await asyncio.wait_for(runner.waiting.wait(), 5)
        assert runner.free_slots == ([0, 1] if ending == "discard" else [0])  # held while created, not while it runs
    if ending == "abort":
        subject.running.abort("e-files")
    elif ending == "jes stops":
        task.cancel()
    else:
        runner.release.set()
    with pytest.raises(RuntimeError) if ending == "raise" else _nothing():
        with pytest.raises(asyncio.CancelledError) if ending == "jes stops" else _nothing():
            await asyncio.wait_for(task, 5)
    assert slots._value == 1


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class ClosedOnceFinished:
    """The control plane's open events: the event is closed once its ``.finished`` was sent."""

    def __init__(self, reporter: RecordingReporter, event: dict[str, Any]) -> None:
        self.reporter, self.event, self.fetches = reporter, event, 0

    async def fetch(self, ref: Any) -> dict[str, Any] | None:
        self.fetches += 1
        return None if _finished(self.reporter) else dict(self.event)


class DoneWriteFailsOnce(ledger.MemoryLedger):
    failed = False

    async def save(self, claim: ledger.Claim) -> None:
        if claim.done and not self.failed:
            self.failed = True
            raise errors.StateError("etcd: request timed out")
        await super().save(claim)


async def test_a_resume_tried_again_after_its_done_write_failed_completes_without_asking_again() -> None:
    runner, reporter, store = WaitingRunner(), RecordingReporter(), DoneWriteFailsOnce()
    runner.release.set()
    event = _event("again")
    triggered = ClosedOnceFinished(reporter, event)
    subject = _handler(runner, reporter, store=store, triggered=triggered)
    await store.save(ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder))
    (claim,) = await store.resumable()
    with pytest.raises(errors.StateError):
        await subject.resume(claim)
    result = await subject.resume(claim)  # as the service tries again: the same claim
    assert result.outcome == "resumed" and triggered.fetches == 1 and len(_finished(reporter)) == 1
    record = store.get("e-again")
    assert record is not None and record.done  # the done record written by the second try
