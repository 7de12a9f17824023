"""``tasks[].onError: warning`` end to end, with both runners: a failed warning task lets the next
tasks run and the action ends ``succeeded/warning``; a later ``fail`` task that fails still wins."""

from __future__ import annotations

from pathlib import Path

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.conftest import k8s_valid
from tests.service.support import (
    jes_settings,
    jobs_created,
    ledger_check,
    make_kube_service,
    put_config,
    restarted_between_tasks,
    running,
    sequence_done,
    started,
    task_events,
    trigger_body,
    wait_until,
)
from tests.service.test_end_to_end import config_with, sh


def image_task(name: str, image: str, on_error: str = "") -> str:
    line = f"\n        onError: {on_error}" if on_error else ""
    return f"      - name: {name}\n        image: {image}{line}\n"


async def test_local_warning_task_fails_and_the_next_task_runs(plane: LocalControlPlane, tmp_path: Path) -> None:
    marker = tmp_path / "deploy-ran"
    put_config(
        plane,
        config_with(
            sh("build", "echo built")
            + sh("lint", "echo lint found 3 issues; exit 1", onError="warning")
            + sh("deploy", f"touch {marker}; echo deployed")
        ),
    )
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    assert data["message"].startswith("task 2/3 'lint' failed (exit code 1) — onError: warning\n")
    assert "lint found 3 issues" in data["message"] and "Task 'deploy' finished successfully!" in data["message"]
    assert marker.exists(), "the task after a warning must run"
    tasks = data["jes"]["tasks"]
    assert [(t["name"], t["status"], t["onError"]) for t in tasks] == [
        ("build", "succeeded", "fail"),
        ("lint", "failed", "warning"),
        ("deploy", "succeeded", "fail"),
    ]
    assert tasks[1]["exitCode"] == 1
    sequence = plane.events(type="sh.keptn.event.dev.sequence1.finished", keptn_context=context)[0]
    assert sequence["data"]["result"] == "warning"
    ledger_check(plane)


async def test_local_a_later_fail_task_wins_over_warnings(plane: LocalControlPlane, tmp_path: Path) -> None:
    marker = tmp_path / "third-ran"
    put_config(
        plane,
        config_with(
            sh("lint", "exit 1", onError="warning")
            + sh("test", "echo broken; exit 3")
            + sh("third", f"touch {marker}", onError="warning")
        ),
    )
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("Task 'test' failed: exit code 3\n")
    assert "task 1/3 'lint' failed (exit code 1) — onError: warning" in data["message"]
    assert [t["status"] for t in data["jes"]["tasks"]] == ["failed", "failed"]
    assert not marker.exists(), "a failed onError: fail task still stops the action"
    ledger_check(plane)


async def test_kubernetes_warning_tasks_image_pull_and_exit_code_then_the_next_runs(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="example.com/lint:1", exit_code=2, logs="style issues\n")
    kube.behave(image="example.com/missing:1", image_pull="ErrImagePull")
    kube.behave(image="alpine", logs="deployed\n")
    put_config(
        plane,
        config_with(
            image_task("lint", "example.com/lint:1", "warning")
            + image_task("scan", "example.com/missing:1", "warning")
            + image_task("deploy", "alpine")
        ),
    )
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    lines = data["message"].splitlines()
    assert lines[0] == "task 1/3 'lint' failed (exit code 2) — onError: warning"
    assert lines[1].startswith("task 2/3 'scan' failed (") and lines[1].endswith(") — onError: warning")
    assert "ErrImagePull" in lines[1]
    assert "deployed" in data["message"]
    assert [(t["status"], t["onError"]) for t in data["jes"]["tasks"]] == [
        ("failed", "warning"),
        ("cannot_start", "warning"),
        ("succeeded", "fail"),
    ]
    assert len(jobs_created(kube)) == 3
    for job in kube.created_jobs:
        k8s_valid(job)
    ledger_check(plane)


async def test_kubernetes_restart_after_a_warning_task_reaches_the_same_result(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """The claim recorded the warning task's outcome: a restart between tasks neither reruns it
    nor forgets it."""
    kube.behave(image="example.com/lint:1", exit_code=1, logs="lint output\n")
    kube.behave(image="alpine", logs="slow deploy\n", duration_s=1.5)
    context = await restarted_between_tasks(plane, kube, tmp_path, config_with(image_task("lint", "example.com/lint:1", "warning") + image_task("deploy", "alpine")))
    ledger_check(plane)
    assert set(jobs_created(kube).values()) == {1}, "no Job is created twice"
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    assert data["message"].startswith("task 1/2 'lint' failed (exit code 1) — onError: warning\n")
    assert [t["status"] for t in data["jes"]["tasks"]] == ["failed", "succeeded"]
