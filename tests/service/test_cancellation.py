"""Cancellation end to end: aborting a sequence in the local control plane (Keptn's sequence control
API) stops the running task within ``JES_CANCEL_CHECK_S`` + 2 s — the local process group killed, the
Job deleted on the fake Kubernetes API — no further task starts, nothing more is reported, the claim
is done and cancelled, and a restart does not run it again. Errors of the check never cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from jes.ledger import EventRef
from jes.service import cancelling
from tests.natsserver import NatsServer
from tests.service.support import (
    jes_settings,
    make_kube_service,
    put_config,
    running,
    sequence_done,
    started,
    task_events,
    trigger_body,
    wait_until,
)
from tests.service.test_end_to_end import config_with, sh
from tests.service.test_nats_mode import nats_overrides

CHECK_S = 0.5
BOUND_S = CHECK_S + 2.0


async def abort(plane: LocalControlPlane, context: str, state: str = "abort") -> None:
    async with httpx.AsyncClient(base_url=plane.url, headers={"x-token": plane.token}, trust_env=False) as http:
        reply = await http.post(f"/controlPlane/v1/sequence/my-first-project/{context}/control", json={"state": state})
    assert reply.status_code == 200, reply.text


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where a task writes its pids; whatever of them a failed test left running is killed."""
    path = tmp_path / "pids"
    yield path
    for pid in pids(path):
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def jes_reports(plane: LocalControlPlane, context: str) -> list[str]:
    """The ``.started``/``.finished`` jes sent (``.status.changed`` aside)."""
    kinds = ("sh.keptn.event.sayhello.started", "sh.keptn.event.sayhello.finished")
    return [
        e["type"]
        for e in task_events(plane, context)
        if e.get("source") == "job-executor-service" and e["type"] in kinds
    ]


def sequence_status(plane: LocalControlPlane, context: str) -> tuple[str, str]:
    (event,) = plane.events(type="sh.keptn.event.dev.sequence1.finished", keptn_context=context)
    return event["data"]["status"], event["data"]["result"]


async def test_local_abort_kills_the_process_group_and_no_further_task_starts(
    plane: LocalControlPlane, tmp_path: Path, pid_file: Path
) -> None:
    marker = tmp_path / "second-ran"
    put_config(
        plane,
        config_with(
            sh("slow", f"echo $$$$ > {pid_file}; sleep 60 & echo $$! >> {pid_file}; wait")
            + sh("second", f"touch {marker}")
        ),
    )
    state = tmp_path / "state"
    async with running(jes_settings(plane, state, cancel_check_s=CHECK_S)) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: len(pids(pid_file)) == 2, what="the task's processes")
        (triggered,) = plane.events(type="sh.keptn.event.sayhello.triggered", keptn_context=context)
        aborted_at = time.monotonic()
        await abort(plane, context)
        await wait_until(lambda: not any(alive(p) for p in pids(pid_file)), timeout_s=BOUND_S, what="processes gone")
        stopped_s = time.monotonic() - aborted_at
        await wait_until(lambda: service.in_flight == 0, what="the event handled")
        claim = await service.store.read(triggered["id"])
        assert claim is not None and claim.done and claim.cancelled
        assert service.metrics.tasks_cancelled._value.get() == 1
        assert service.metrics.events_skipped.labels("cancelled")._value.get() == 1
    assert stopped_s < BOUND_S
    assert not marker.exists(), "the next task must never start"
    # Keptn's rule: the shipyard-controller finished the sequence (aborted/pass); jes sends nothing more
    assert sequence_status(plane, context) == ("aborted", "pass")
    assert jes_reports(plane, context) == ["sh.keptn.event.sayhello.started"]
    assert not list((state / "local-runner").glob("*-0-0")), "the task's state is removed, as a deleted Job's"

    async with running(jes_settings(plane, state, cancel_check_s=CHECK_S)) as again:
        polls = len(plane.state.poll_times("sh.keptn.event.sayhello.triggered"))
        await wait_until(lambda: len(plane.state.poll_times("sh.keptn.event.sayhello.triggered")) > polls + 3)
        assert again.in_flight == 0 and await again.store.resumable() == []
    assert not marker.exists() and len(pids(pid_file)) == 2
    assert jes_reports(plane, context) == ["sh.keptn.event.sayhello.started"]


async def test_kubernetes_abort_deletes_the_job_and_its_pods(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    # the container exits 0.3 s after SIGTERM (the fake kubelet honours the pod's grace period)
    kube.behave(image="example.com/slow:1", logs="working\n", duration_s=60, sigterm_exit_s=0.3)
    put_config(
        plane,
        config_with(
            "      - name: slow\n        image: example.com/slow:1\n      - name: second\n        image: alpine\n"
        ),
    )
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0", cancel_check_s=CHECK_S)) as service:
        context = plane.trigger_sequence(trigger_body())

        def running_pods() -> list[dict[str, Any]]:
            return [p for p in kube.objects("pods", "keptn-jes") if (p.get("status") or {}).get("phase") == "Running"]

        await wait_until(lambda: bool(running_pods()), what="the task's pod running")
        (job,) = kube.objects("jobs", "keptn-jes")
        name = job["metadata"]["name"]
        (triggered,) = plane.events(type="sh.keptn.event.sayhello.triggered", keptn_context=context)
        aborted_at = time.monotonic()
        await abort(plane, context)

        def deleting() -> bool:  # foreground deletion: the Job stays, marked, until its pods are gone
            return all(j["metadata"].get("deletionTimestamp") for j in kube.objects("jobs", "keptn-jes"))

        await wait_until(deleting, timeout_s=BOUND_S, what="the Job being deleted")
        stopped_s = time.monotonic() - aborted_at
        await wait_until(lambda: not kube.objects("pods", "keptn-jes"), what="the pods gone")
        await wait_until(lambda: not kube.objects("jobs", "keptn-jes"), what="the Job gone")
        await wait_until(lambda: service.in_flight == 0, what="the event handled")
        claim = await service.store.read(triggered["id"])
        assert claim is not None and claim.done and claim.cancelled
        assert service.metrics.tasks_cancelled._value.get() == 1
    assert stopped_s < BOUND_S
    assert [j["metadata"]["name"] for j in kube.created_jobs] == [name], "the next task's Job is never created"
    assert sequence_status(plane, context) == ("aborted", "pass")
    assert jes_reports(plane, context) == ["sh.keptn.event.sayhello.started"]


async def test_nats_mode_asks_the_in_cluster_shipyard_controller(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path, pid_file: Path
) -> None:
    put_config(nats_plane, config_with(sh("slow", f"echo $$$$ > {pid_file}; sleep 60")))
    current = jes_settings(nats_plane, tmp_path / "state", cancel_check_s=CHECK_S, **nats_overrides(nats))
    async with running(current) as service:
        await wait_until(lambda: service.intake.subscriber is not None and service.intake.subscriber.ready,
                         what="the NATS subscription")  # fmt: skip
        context = nats_plane.trigger_sequence(trigger_body())
        await wait_until(lambda: bool(pids(pid_file)), what="the task running")
        aborted_at = time.monotonic()
        await abort(nats_plane, context)
        await wait_until(lambda: not any(alive(p) for p in pids(pid_file)), timeout_s=BOUND_S, what="processes gone")
        assert time.monotonic() - aborted_at < BOUND_S
        await wait_until(lambda: service.in_flight == 0, what="the event handled")
    assert jes_reports(nats_plane, context) == ["sh.keptn.event.sayhello.started"]


async def test_check_errors_never_cancel(plane: LocalControlPlane, tmp_path: Path, pid_file: Path) -> None:
    """500s and garbage from the triggered-event API while the task runs: it runs to its end."""
    put_config(plane, config_with(sh("slow", f"echo $$$$ > {pid_file}; sleep 1.5; echo done")))
    async with running(jes_settings(plane, tmp_path / "state", cancel_check_s=0.1)):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: bool(pids(pid_file)), what="the task running")
        plane.faults.add(method="GET", path=r"/controlPlane/v1/event/triggered/.*", status=500, times=5)
        plane.faults.add(method="GET", path=r"/controlPlane/v1/event/triggered/.*", garbage_body=True, times=5)
        await wait_until(lambda: sequence_done(plane, context), what="the sequence finished")
    assert sequence_status(plane, context) == ("succeeded", "pass")
    assert jes_reports(plane, context)[-1] == "sh.keptn.event.sayhello.finished"


async def test_zero_turns_the_checks_off(plane: LocalControlPlane, tmp_path: Path, pid_file: Path) -> None:
    marker = tmp_path / "second-ran"
    put_config(plane, config_with(sh("slow", f"echo $$$$ > {pid_file}; sleep 1") + sh("second", f"touch {marker}")))
    async with running(jes_settings(plane, tmp_path / "state", cancel_check_s=0)) as service:
        assert "jes-cancel-check" not in {t.get_name() for t in service._root_tasks}
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: bool(pids(pid_file)), what="the task running")
        await abort(plane, context)
        await wait_until(lambda: marker.exists() and service.in_flight == 0, what="both tasks ran")
    assert service.metrics.tasks_cancelled._value.get() == 0
    # jes did not notice: its .finished comes after the abort, and Keptn stores and ignores it
    assert sequence_status(plane, context) == ("aborted", "pass")
    assert jes_reports(plane, context)[-1] == "sh.keptn.event.sayhello.finished"


async def test_pause_does_not_cancel(plane: LocalControlPlane, tmp_path: Path, pid_file: Path) -> None:
    put_config(plane, config_with(sh("slow", f"echo $$$$ > {pid_file}; sleep 1.5")))
    async with running(jes_settings(plane, tmp_path / "state", cancel_check_s=0.1)) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: bool(pids(pid_file)), what="the task running")
        await abort(plane, context, "pause")
        await wait_until(lambda: service.in_flight == 0, what="the task finished")
        await abort(plane, context, "resume")
        await wait_until(lambda: sequence_done(plane, context), what="the sequence finished")
    assert service.metrics.tasks_cancelled._value.get() == 0
    assert sequence_status(plane, context) == ("succeeded", "pass")


# -- the checker alone ---------------------------------------------------------------------------

REF = EventRef(id="e1", type="sh.keptn.event.test.triggered", keptn_context="c1")


class ScriptedCheck:
    def __init__(self, *answers: bool | None) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def is_open(self, ref: EventRef) -> bool | None:
        self.asked += 1
        return self.answers.pop(0) if self.answers else True


async def test_only_a_confirmed_definite_answer_cancels() -> None:
    running_events = cancelling.RunningEvents()
    with running_events.watching(REF) as aborted:
        for answers in ((None,), (True,), (False, None), (False, True)):
            checker = cancelling.CancelChecker(running_events, ScriptedCheck(*answers), interval_s=1)
            assert await checker.check_once() == []
        assert not aborted.is_set()
        checker = cancelling.CancelChecker(running_events, ScriptedCheck(False, False), interval_s=1)
        assert await checker.check_once() == ["e1"]
        assert aborted.is_set() and running_events.refs() == []
    assert running_events.signal("e1") is None


async def test_nothing_running_asks_nothing() -> None:
    check = ScriptedCheck(False, False)
    assert await cancelling.CancelChecker(cancelling.RunningEvents(), check, interval_s=1).check_once() == []
    assert check.asked == 0


class HangingClient:
    async def get_triggered(self, event_type: str, **kwargs: Any) -> list[dict[str, Any]]:
        await asyncio.sleep(3600)
        return []


class FailingClient:
    async def get_triggered(self, event_type: str, **kwargs: Any) -> list[dict[str, Any]]:
        raise httpx.ConnectError("refused")


class AnsweringClient:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.kwargs: dict[str, Any] = {}

    async def get_triggered(self, event_type: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.kwargs = kwargs
        return self.events


async def test_the_control_plane_check_times_out_and_treats_errors_as_unknown() -> None:
    hanging = cancelling.ControlPlaneOpenCheck(HangingClient(), timeout_s=0.05)  # type: ignore[arg-type]
    assert await hanging.is_open(REF) is None
    assert await cancelling.ControlPlaneOpenCheck(FailingClient()).is_open(REF) is None  # type: ignore[arg-type]
    listed = AnsweringClient([{"id": "e1"}])
    assert await cancelling.ControlPlaneOpenCheck(listed).is_open(REF) is True  # type: ignore[arg-type]
    assert listed.kwargs["event_id"] == "e1" and list(listed.kwargs["backoff"]) == []  # one request, no retries
    # with its project: Keptn's list over all projects drops a project whose query failed (an empty 200)
    in_project = EventRef(id="e1", type=REF.type, keptn_context="c1", project="my-project")
    assert await cancelling.ControlPlaneOpenCheck(listed).is_open(in_project) is True  # type: ignore[arg-type]
    assert listed.kwargs["project"] == "my-project"
    other = cancelling.ControlPlaneOpenCheck(AnsweringClient([{"id": "e2"}]))  # type: ignore[arg-type]
    assert await other.is_open(REF) is False
