"""Task outputs end to end, with both runners: what a task writes to ``$KEPTN_OUTPUT_FILE`` is merged
into the action's ``.finished`` data (later tasks win, Keptn's keys are never replaced); an invalid
output fails the task with the reason; a restart after a task ended reads its output again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.conftest import k8s_valid
from tests.service.support import (
    jes_environment,
    jes_process,
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
    wait_for_sigterm_handler,
    wait_until,
)
from tests.service.test_crash_safety import registered, wait
from tests.service.test_end_to_end import config_with, sh
from tests.service.test_on_error import image_task


def writes(output: object) -> str:
    return f"printf '%s' '{json.dumps(output)}' > \"$KEPTN_OUTPUT_FILE\""


async def test_local_outputs_are_merged_into_the_finished_data(plane: LocalControlPlane, tmp_path: Path) -> None:
    report = "r" * 20_000
    first = {"test": {"start": "2026-12-05T03:00:00Z", "end": "2026-12-05T03:01:00Z"}, "report": report, "n": 1}
    second = {"n": 2, "result": "pass", "stage": "prod"}
    put_config(plane, config_with(sh("first", writes(first)) + sh("second", writes(second))))
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"], data["stage"]) == ("succeeded", "pass", "dev")
    assert data["test"] == first["test"] and data["report"] == report and data["n"] == 2
    assert [t.get("ignoredOutputKeys") for t in data["jes"]["tasks"]] == [None, ["result", "stage"]]
    ledger_check(plane)


async def test_local_invalid_output_errors_the_action(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(plane, config_with(sh("test", "echo '[1, 2]' > \"$KEPTN_OUTPUT_FILE\"")))
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("Task 'test' failed: output file ")
    assert "output.json: not a JSON object (found a list)" in data["message"].splitlines()[0]
    ledger_check(plane)


async def test_local_outputs_off_set_no_variable(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(plane, config_with(sh("test", 'echo "file=[${KEPTN_OUTPUT_FILE:-none}]"')))
    async with running(jes_settings(plane, tmp_path / "state", task_outputs=False)):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    data = task_events(plane, context)[-1]["data"]
    assert data["status"] == "succeeded" and "file=[none]" in data["message"]


def test_local_restart_after_a_task_ended_still_reports_its_output(plane: LocalControlPlane, tmp_path: Path) -> None:
    """jes is killed (SIGKILL) while the second task runs: the first one's output is in its state
    directory, and the restarted jes reads it again for the .finished."""
    marker = tmp_path / "second-started"
    put_config(
        plane,
        config_with(sh("first", writes({"test": {"result": "pass"}})) + sh("second", f"touch {marker}; sleep 1")),
    )
    env = jes_environment(plane, tmp_path / "state")
    with jes_process(env, tmp_path / "jes.log") as process:
        wait(lambda: registered(plane), what="registration")
        context = plane.trigger_sequence(trigger_body())
        wait(marker.exists, what="the second task")
        process.send_signal(signal.SIGKILL)
        process.wait()
    with jes_process(env, tmp_path / "jes.log") as last:
        wait(lambda: sequence_done(plane, context), what="the sequence after the restart")
        wait_for_sigterm_handler(last)
        last.send_signal(signal.SIGTERM)
        assert last.wait(timeout=10) == 0
    data = task_events(plane, context)[-1]["data"]
    assert data["status"] == "succeeded" and data["test"] == {"result": "pass"}
    ledger_check(plane)


async def test_kubernetes_twenty_kib_of_output_reach_the_finished_data(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    output = {"test": {"start": "2026-12-05T03:00:00Z", "end": "2026-12-05T03:01:00Z"}, "report": "k" * 20 * 1024}
    kube.behave(image="example.com/locust:1", logs="load test done\n", output=json.dumps(output))
    put_config(plane, config_with(image_task("test", "example.com/locust:1")))
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass")
    assert data["test"] == output["test"] and data["report"] == output["report"]
    assert "load test done" in data["message"] and "jes-output" not in data["message"]
    (job,) = kube.created_jobs
    k8s_valid(job)
    assert [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]] == ["jes-output"]
    ledger_check(plane)


async def test_kubernetes_invalid_json_errors_the_action_with_the_reason(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="example.com/locust:1", output='{"test": ')
    put_config(plane, config_with(image_task("test", "example.com/locust:1")))
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith(
        "Task 'test' failed: output file /keptn-output/output.json: not valid JSON (Expecting value at line 1 column 10)"
    )
    ledger_check(plane)


async def test_kubernetes_restart_after_a_task_ended_reads_its_output_again(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="example.com/locust:1", output='{"test": {"result": "pass"}}')
    kube.behave(image="alpine", logs="slow deploy\n", duration_s=1.5)
    put_config(plane, config_with(image_task("test", "example.com/locust:1") + image_task("deploy", "alpine")))
    first = make_kube_service(plane, kube, tmp_path, "jes-0")
    await first.start()
    context = plane.trigger_sequence(trigger_body("EU"))
    await wait_until(lambda: len(kube.created_jobs) == 2, what="the second task's Job")
    await first.abandon()
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    assert set(jobs_created(kube).values()) == {1}, "no Job is created twice"
    data = task_events(plane, context)[-1]["data"]
    assert data["status"] == "succeeded" and data["test"] == {"result": "pass"}
    ledger_check(plane)
