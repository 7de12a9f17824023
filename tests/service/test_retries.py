"""``tasks[].retries`` end to end against the local control plane, with both runners: a task failing
with exit code 2 under ``retries: 2, retryOnExitCodes: [2]`` runs 3 times (one ``.status.changed``
per retry, ``data.jes.tasks[].attempts`` and ``exitCodes``), with exit code 1 once; a success on a
retry succeeds; ``onError: warning`` applies after the retries; a restart between attempts (kubernetes)
reaches the same result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.conftest import k8s_valid
from tests.runner.kubernetes.test_retries import ticking
from tests.service.support import (
    jes_settings,
    jobs_created,
    ledger_check,
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


def counted(tmp_path: Path, name: str, body: str, **extra: object) -> str:
    """A task that counts its runs in a file (``$n``) and then runs ``body``."""
    counter = tmp_path / f"{name}.count"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo run $n; {body}"
    return sh(name, script, **extra)


def runs(tmp_path: Path, name: str) -> int:
    return int((tmp_path / f"{name}.count").read_text())


def retry_messages(plane: LocalControlPlane, context: str) -> list[str]:
    return [
        e["data"]["message"]
        for e in task_events(plane, context)
        if e["type"].endswith(".status.changed") and "attempt" in e["data"].get("jes", {}).get("task", {})
    ]


def image_task(name: str, image: str, **extra: Any) -> str:
    fields = "".join(f"\n        {k}: {v}" for k, v in extra.items())
    return f"      - name: {name}\n        image: {image}{fields}\n"


async def test_local_exit_code_2_runs_three_times(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(
        plane,
        config_with(counted(tmp_path, "tests", "exit 2", retries=2, retryOnExitCodes=[2]) + sh("deploy", "echo no")),
    )
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    assert runs(tmp_path, "tests") == 3
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("Task 'tests' failed: exit code 2 after 3 attempts, no retry left\n")
    assert "--- jes: attempt 3/3 (the last one ended with exit code 2) ---\nrun 3" in data["message"]
    (task,) = data["jes"]["tasks"]
    assert (task["status"], task["exitCode"], task["attempts"], task["exitCodes"]) == ("failed", 2, 3, [2, 2, 2])
    assert retry_messages(plane, context) == [
        "task 1/2 'tests' attempt 2/3 after exit code 2",
        "task 1/2 'tests' attempt 3/3 after exit code 2",
    ]
    ledger_check(plane)


async def test_local_exit_code_1_runs_once_and_warning_applies_after(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(
        plane,
        config_with(
            counted(tmp_path, "tests", "exit 1", retries=2, retryOnExitCodes=[2], onError="warning")
            + counted(tmp_path, "flaky", 'test "$n" -ge 2 || exit 5', retries=1)
        ),
    )
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    assert runs(tmp_path, "tests") == 1 and runs(tmp_path, "flaky") == 2
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    assert data["message"].startswith(
        "task 1/2 'tests' failed (exit code 1, not retried: retryOnExitCodes is [2]) — onError: warning\n"
    )
    tests, flaky = data["jes"]["tasks"]
    assert (tests["attempts"], tests["exitCodes"]) == (1, [1])
    assert (flaky["status"], flaky["attempts"], flaky["exitCodes"]) == ("succeeded", 2, [5, 0])
    assert retry_messages(plane, context) == ["task 2/2 'flaky' attempt 2/2 after exit code 5"]
    ledger_check(plane)


async def test_local_without_retries_data_jes_is_unchanged(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(plane, config_with(sh("tests", "exit 2")))
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    (task,) = task_events(plane, context)[-1]["data"]["jes"]["tasks"]
    assert "attempts" not in task and "exitCodes" not in task
    assert retry_messages(plane, context) == []


async def test_kubernetes_exit_code_2_three_pods_exit_code_1_one(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="example.com/two:1", exit_code=2, logs="flaky\n")
    kube.behave(image="example.com/one:1", exit_code=1, logs="broken\n")
    put_config(
        plane,
        config_with(
            image_task("two", "example.com/two:1", retries=2, retryOnExitCodes="[2]", onError="warning")
            + image_task("one", "example.com/one:1", retries=2, retryOnExitCodes="[2]")
        ),
    )
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")), ticking(kube):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=30)
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith(
        "Task 'one' failed: exit code 1, not retried: retryOnExitCodes is [2] (PodFailurePolicy)\n"
    )
    two, one = data["jes"]["tasks"]
    assert (two["attempts"], two["exitCodes"], two["reason"]) == (
        3, [2, 2, 2], "exit code 2 after 3 attempts, no retry left (BackoffLimitExceeded)"
    )  # fmt: skip
    assert (one["attempts"], one["exitCodes"]) == (1, [1])
    assert retry_messages(plane, context) == [
        "task 1/2 'two' attempt 2/3 after exit code 2",
        "task 1/2 'two' attempt 3/3 after exit code 2",
    ]
    pods = {job: len(kube.objects("pods", "keptn-jes", labels=f"job-name={job}")) for job in jobs_created(kube)}
    assert sorted(pods.values()) == [1, 3]
    for job in kube.created_jobs:
        k8s_valid(job)
    ledger_check(plane)


async def test_kubernetes_restart_between_attempts_reaches_the_same_result(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="example.com/two:1", exit_code=2)
    put_config(plane, config_with(image_task("two", "example.com/two:1", retries=2, retryOnExitCodes="[2]")))
    first = make_kube_service(plane, kube, tmp_path, "jes-0")
    await first.start()
    context = plane.trigger_sequence(trigger_body("EU"))
    await wait_until(lambda: len(kube.created_jobs) == 1, what="the Job")
    (name,) = jobs_created(kube)
    async with ticking(kube):
        await wait_until(lambda: len(kube.objects("pods", "keptn-jes", labels=f"job-name={name}")) == 2, what="2 pods")
    await first.abandon()
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")), ticking(kube):
        await wait_until(lambda: sequence_done(plane, context), timeout_s=30)
    assert set(jobs_created(kube).values()) == {1}, "no Job is created twice"
    (task,) = task_events(plane, context)[-1]["data"]["jes"]["tasks"]
    assert (task["status"], task["attempts"], task["exitCodes"]) == ("failed", 3, [2, 2, 2])
    assert task["reason"] == "exit code 2 after 3 attempts, no retry left (BackoffLimitExceeded)"
    ledger_check(plane)
