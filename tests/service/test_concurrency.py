"""``actions[].concurrency`` end to end: events of one queue run one after another in arrival order
with "queued, position N" progress, events of two queues in parallel — with the local runner, with
the kubernetes runner on the fake API, with two replicas sharing the Lease ledger, and across a
restart while events wait (the waiting keep their place, the running holder keeps its slot)."""

from __future__ import annotations

import contextlib
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from jes.ledger import Claim, EventRef, FileLedger
from jes.ledger.slots import Slots
from jes.models import queue_of
from tests.service.support import (
    jes_environment,
    jes_process,
    jes_settings,
    job_uids,
    jobs_created,
    make_kube_service,
    running,
    started,
    wait_until,
)

PROJECT = "loadtests"
STAGES = ("dev", "prod")
SHIPYARD = "apiVersion: spec.keptn.sh/0.2.2\nkind: Shipyard\nmetadata: {name: s}\nspec:\n  stages:\n" + "".join(
    f"    - name: {s}\n      sequences:\n        - name: load\n          tasks: [{{name: sayhello}}]\n" for s in STAGES
)
POLL_S = 0.1


def config(script: str) -> str:
    return (
        "apiVersion: v2\nactions:\n  - name: load-test\n"
        "    events: [{name: sh.keptn.event.sayhello.triggered}]\n"
        '    concurrency: {limit: 1, key: "$.data.stage"}\n'
        "    tasks:\n      - name: run\n        image: alpine\n        cmd: [/bin/sh, -c]\n"
        f"        args: [{json.dumps(script)}]\n"
    )


def setup_project(plane: LocalControlPlane, script: str = "sleep 0.1") -> None:
    plane.create_project(PROJECT, SHIPYARD)
    plane.create_service(PROJECT, "svc")
    for stage in STAGES:
        plane.put_resource(
            project=PROJECT, stage=stage, service="svc", uri="job/config.yaml", content=config(script).encode()
        )


def inject(plane: LocalControlPlane, stage: str, count: int = 1) -> list[str]:
    return plane.inject_triggered(task="sayhello", project=PROJECT, stage=stage, service="svc", count=count)


def all_finished(plane: LocalControlPlane, ids: list[str]) -> bool:
    return all(plane.events(type="sh.keptn.event.sayhello.finished", triggered_id=i) for i in ids)


def timeline(plane: LocalControlPlane, ids: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(triggered id, what, data) of jes's reports, in the order the control plane received them;
    what: started, queued, task (a task started) or finished."""
    lines = []
    for event in plane.events():
        if event.get("triggeredid") not in ids or event.get("source") != "job-executor-service":
            continue
        kind = event["type"].rsplit(".", 1)[-1]
        data = event["data"]
        if kind == "changed":
            if "queue" in data["jes"]:
                kind = "queued"
            elif "started" in data["message"]:
                kind = "task"
            else:
                continue
        lines.append((event["triggeredid"], kind, data))
    return lines


def run_order(lines: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [event_id for event_id, kind, _ in lines if kind == "task"]


def assert_one_after_another(lines: list[tuple[str, str, dict[str, Any]]], ids: list[str]) -> None:
    """Between an event's task start and its .finished no other event's task started; exactly one
    .started and one .finished each; the k-th to run was queued at positions k-1, ..., 1."""
    running: str | None = None
    for event_id, kind, _ in lines:
        if kind == "task":
            assert running is None, f"{event_id} started while {running} still ran: {lines}"
            running = event_id
        elif kind == "finished" and event_id == running:
            running = None
    counts = Counter((event_id, kind) for event_id, kind, _ in lines)
    for event_id in ids:
        assert counts[(event_id, "started")] == 1 and counts[(event_id, "finished")] == 1, counts
        assert counts[(event_id, "task")] == 1, counts
    order = run_order(lines)
    assert sorted(order) == sorted(ids)
    for k, event_id in enumerate(order):
        kinds = [kind for e, kind, _ in lines if e == event_id]
        positions = [d["jes"]["queue"]["position"] for e, kind, d in lines if e == event_id and kind == "queued"]
        assert positions == list(range(k, 0, -1)), (event_id, k, positions, lines)
        assert kinds.index("started") < kinds.index("task"), kinds  # .started at once, before waiting
        if positions:
            assert kinds.index("started") < kinds.index("queued") < kinds.index("task"), kinds
    for _, kind, data in lines:
        if kind == "queued":
            assert data["message"].startswith(
                f"queued, position {data['jes']['queue']['position']}: action 'load-test'"
            )
            assert data["jes"]["queue"] | {"position": 0} == {
                "action": "load-test", "position": 0, "limit": 1, "key": "$.data.stage", "value": "dev"
            }  # fmt: skip


def assert_in_parallel(lines: list[tuple[str, str, dict[str, Any]]], ids: list[str]) -> None:
    kinds = [kind for _, kind, _ in lines]
    assert kinds.count("task") == len(ids) and "queued" not in kinds
    first_finished = kinds.index("finished")
    assert all(i < first_finished for i, kind in enumerate(kinds) if kind == "task"), lines


def windows(log: Path) -> dict[str, tuple[float, float, str]]:
    """task run → (start, end, stage) as the tasks themselves wrote them."""
    seen: dict[str, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        pid, what, moment, stage = line.split()
        seen.setdefault(pid, {})[what] = float(moment)
        seen[pid]["stage"] = stage
    return {pid: (w["start"], w["end"], w["stage"]) for pid, w in seen.items()}


def logging_script(log: Path, sleep_s: float) -> str:
    line = f'echo "$id {{}} $(date +%s.%N) $KEPTN_STAGE" >> {log}'
    unique = "id=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"  # (the task may run in its own pid namespace)
    return f"{unique}; {line.format('start')}; sleep {sleep_s}; {line.format('end')}"


# ---------------------------------------------------------------------------------------------
# local runner


async def test_local_one_stage_runs_one_after_another(plane: LocalControlPlane, tmp_path: Path) -> None:
    log = tmp_path / "windows.log"
    setup_project(plane, logging_script(log, 0.3))
    async with running(jes_settings(plane, tmp_path / "state"), queue_poll_s=POLL_S) as service:
        ids = inject(plane, "dev", count=3)
        await wait_until(lambda: all_finished(plane, ids), timeout_s=20, what="three events")
        assert service.metrics.events_waiting._value.get() == 0
    assert_one_after_another(timeline(plane, ids), ids)
    spans = sorted(windows(log).values())
    assert len(spans) == 3
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert earlier[1] <= later[0], f"task windows overlap: {spans}"
    assert not list((tmp_path / "state" / "queues").iterdir()), "an empty queue leaves no file"


async def test_local_two_stages_run_in_parallel(plane: LocalControlPlane, tmp_path: Path) -> None:
    log = tmp_path / "windows.log"
    setup_project(plane, logging_script(log, 1.0))
    async with running(jes_settings(plane, tmp_path / "state"), queue_poll_s=POLL_S):
        ids = inject(plane, "dev") + inject(plane, "prod")
        await wait_until(lambda: all_finished(plane, ids), timeout_s=20, what="two events")
    assert_in_parallel(timeline(plane, ids), ids)
    (a_start, a_end, a_stage), (b_start, b_end, b_stage) = sorted(windows(log).values())
    assert {a_stage, b_stage} == set(STAGES)
    assert b_start < a_end, "the tasks of two stages must overlap"


# ---------------------------------------------------------------------------------------------
# kubernetes runner (fake API)


async def test_kubernetes_one_stage_serial_two_stages_parallel(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    setup_project(plane)
    kube.behave(image="alpine", logs="load\n", duration_s=0.4)
    service = make_kube_service(plane, kube, tmp_path, "jes-0", service_options={"queue_poll_s": POLL_S})
    async with started(service):
        serial = inject(plane, "dev", count=3)
        await wait_until(lambda: all_finished(plane, serial), timeout_s=20, what="three events")
        parallel = inject(plane, "dev") + inject(plane, "prod")
        await wait_until(lambda: all_finished(plane, parallel), timeout_s=20, what="two stages")
    assert_one_after_another(timeline(plane, serial), serial)
    assert_in_parallel(timeline(plane, parallel), parallel)
    assert set(jobs_created(kube).values()) == {1}
    assert not [q for q in kube.objects("leases", "keptn-jes") if q["metadata"]["name"].startswith("jes-queue-")]


async def test_two_replicas_share_the_queue(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path) -> None:
    """Both replicas poll the same events; whichever takes one, it waits in the one queue."""
    setup_project(plane)
    kube.behave(image="alpine", logs="load\n", duration_s=0.4)
    options = {"queue_poll_s": POLL_S}
    async with contextlib.AsyncExitStack() as stack:
        for holder in ("jes-a", "jes-b"):
            service = make_kube_service(plane, kube, tmp_path, holder, service_options=options)
            await stack.enter_async_context(started(service))
        ids = inject(plane, "dev", count=4)
        await wait_until(lambda: all_finished(plane, ids), timeout_s=30, what="four events")
    assert_one_after_another(timeline(plane, ids), ids)
    assert set(jobs_created(kube).values()) == {1}


@pytest.mark.parametrize("successor", ["jes-0", "jes-1"])
async def test_a_restart_keeps_the_holder_and_the_places(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, successor: str
) -> None:
    """jes dies while one event runs and two wait; the restarted jes (``jes-0``) — or another
    replica that takes the dead one's claims over after the lease (``jes-1``) — finds the running
    Job (the holder keeps its slot: nobody starts beside it) and the waiting ones run in their order."""
    setup_project(plane)
    kube.behave(image="alpine", logs="load\n", duration_s=1.5)
    options = {"queue_poll_s": POLL_S}
    first = make_kube_service(plane, kube, tmp_path, "jes-0", service_options=options)
    await first.start()
    ids = inject(plane, "dev", count=3)

    def queued() -> list[str]:
        return [e for e, kind, _ in timeline(plane, ids) if kind == "queued"]

    await wait_until(lambda: len(queued()) == 2 and len(kube.created_jobs) == 1, what="one running, two queued")
    original = job_uids(kube)
    await first.abandon()
    async with started(make_kube_service(plane, kube, tmp_path, successor, service_options=options)):
        await wait_until(lambda: all_finished(plane, ids), timeout_s=30, what="the three events")
    lines = timeline(plane, ids)
    holder = run_order(lines)[0]
    assert_order_kept(lines, before_restart=queued())
    assert job_uids(kube).items() >= original.items()  # the holder's Job adopted, never created again
    assert holder not in {e for e, kind, _ in lines if kind == "queued"}
    assert set(jobs_created(kube).values()) == {1}


def assert_order_kept(lines: list[tuple[str, str, dict[str, Any]]], *, before_restart: list[str]) -> None:
    """One after another; the order of the waiting ones is the order they were queued in before."""
    running: str | None = None
    for event_id, kind, _ in lines:
        if kind == "task":
            assert running is None, f"{event_id} started while {running} still ran: {lines}"
            running = event_id
        elif kind == "finished" and event_id == running:
            running = None
    first_positions = {}
    for event_id, kind, data in lines:
        if kind == "queued" and event_id not in first_positions:
            first_positions[event_id] = data["jes"]["queue"]["position"]
    waiting = sorted(first_positions, key=first_positions.__getitem__)
    assert run_order(lines)[1:] == waiting, (run_order(lines), first_positions)
    assert set(before_restart) == set(waiting)


async def test_local_kill_9_while_one_runs_and_two_wait(plane: LocalControlPlane, tmp_path: Path) -> None:
    """A real ``jes serve`` (local runner, file ledger) killed with SIGKILL while one event runs and
    two wait; the restarted process adopts the running task (its slot still counts: nobody starts
    beside it) and runs the waiting ones in their order, each task once."""
    log = tmp_path / "windows.log"
    setup_project(plane, logging_script(log, 1.5))
    env = jes_environment(plane, tmp_path / "state")
    with jes_process(env, tmp_path / "jes-1.log") as first:
        ids = inject(plane, "dev", count=3)

        def queued() -> list[str]:
            return [e for e, kind, _ in timeline(plane, ids) if kind == "queued"]

        await wait_until(lambda: len(queued()) == 2 and log.exists(), timeout_s=20, what="one running, two queued")
        before = queued()
        first.send_signal(signal.SIGKILL)
        first.wait()
    with jes_process(env, tmp_path / "jes-2.log"):
        await wait_until(lambda: all_finished(plane, ids), timeout_s=40, what="the three events")
    lines = timeline(plane, ids)
    assert_order_kept(lines, before_restart=before)
    spans = sorted(windows(log).values())
    assert len(spans) == 3, f"each task runs once: {log.read_text()}"
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert earlier[1] <= later[0], f"task windows overlap: {spans}"


async def test_a_holder_that_ended_without_leaving_frees_its_slot(plane: LocalControlPlane, tmp_path: Path) -> None:
    """A queue left holding by an event whose claim is done (it ended another way, e.g. Keptn closed
    it): the next event waits, finds the claim done after a few polls, and runs."""
    setup_project(plane)
    state = tmp_path / "state"
    files = FileLedger(state)
    await files.start()
    ghost = Claim(ref=EventRef(id="ghost", type="sh.keptn.event.sayhello.triggered"), holder="jes-test")
    ghost.mark_done()
    await files.claim(ghost)
    assert (await Slots(files).enter(queue_of(PROJECT, "load-test", "dev"), "ghost", 1)).holding
    await files.close()
    async with running(jes_settings(plane, state), queue_poll_s=POLL_S):
        ids = inject(plane, "dev")
        await wait_until(lambda: all_finished(plane, ids), timeout_s=20, what="the event behind the ghost")
    lines = timeline(plane, ids)
    assert [kind for _, kind, _ in lines] == ["started", "queued", "task", "finished"]
    assert lines[-1][2]["result"] == "pass"
    assert not list((state / "queues").iterdir())
