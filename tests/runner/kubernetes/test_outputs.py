"""Task outputs on Kubernetes: ``$KEPTN_OUTPUT_FILE`` in a shared emptyDir, relayed by the
``jes-output`` native sidecar's log once the task ended, decoded and judged by jes. Manifests pass
``kubernetes-validate --strict``; the runner runs against the fake API server, whose kubelet starts
the sidecar before the task, stops it after the task and serves its log on its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import kubernetes.client
import pytest

from fakes.fake_kube import FakeKube
from jes.models import EnvValue, Status, TaskSpec, job_name
from jes.runner import outputrelay
from jes.runner.kubernetes import finishing, manifests, tasklogs
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes.runner import KubernetesRunner
from tests.conftest import k8s_valid
from tests.runner.kubernetes import helpers
from tests.runner.kubernetes.conftest import started_runner

SETTINGS = manifests.JobSettings(task_outputs=True, max_output_bytes=64 * 1024)


def output_spec() -> TaskSpec:
    task = helpers.task()
    return TaskSpec(task=task, event=helpers.EVENT, job_name=job_name(helpers.EVENT.id, 0, 0), config_hash="abc")


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


# --- manifests ------------------------------------------------------------------------------------


def test_the_sidecar_shares_the_output_volume_and_is_restricted() -> None:
    job = manifests.job_for(output_spec(), SETTINGS)
    k8s_valid(job)
    pod = pod_spec(job)
    (sidecar,) = pod["initContainers"]
    assert sidecar["name"] == "jes-output" and sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == SETTINGS.init_image
    assert sidecar["command"] == ["python", "-m", "jes.runner.outputrelay", "/keptn-output/output.json", "65536"]
    assert sidecar["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        # the image's user, whatever the pod's default: a root (0) pod default would otherwise make
        # the kubelet refuse the sidecar (runAsNonRoot) and every task fail to start
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert sidecar["resources"] == {"limits": {"cpu": "100m", "memory": "64Mi"}, "requests": {"cpu": "5m", "memory": "16Mi"}}
    assert sidecar["volumeMounts"] == [
        {"name": "job-output", "mountPath": "/keptn-output", "readOnly": True},
        # an empty volume over the token's path: the ServiceAccount admission mounts no token here
        {"name": "jes-output-no-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True},
    ]
    (main,) = pod["containers"]
    assert {"name": "KEPTN_OUTPUT_FILE", "value": "/keptn-output/output.json"} == main["env"][-1]
    assert {"name": "job-output", "mountPath": "/keptn-output"} in main["volumeMounts"]
    assert {"name": "job-output", "emptyDir": {"sizeLimit": "1Mi"}} in pod["volumes"]
    assert {"name": "jes-output-no-token", "emptyDir": {"sizeLimit": "1Ki"}} in pod["volumes"]
    assert not any(m["mountPath"].startswith("/var/run/secrets") for m in main["volumeMounts"])


def test_the_sidecar_comes_after_the_files_init_container_and_replaces_a_tasks_own_variable() -> None:
    own = (EnvValue("KEPTN_OUTPUT_FILE", "/tmp/mine.json"), EnvValue("KEEP", "1"))
    task = replace(helpers.task(), env=own)
    job = manifests.build_job(task, helpers.EVENT, config_hash="abc", settings=SETTINGS, files={"/keptn/a.txt": 3})
    k8s_valid(job)
    pod = pod_spec(job)
    assert [c["name"] for c in pod["initContainers"]][1] == "jes-output"
    assert "restartPolicy" not in pod["initContainers"][0]  # the files init container runs to completion first
    env = pod["containers"][0]["env"]
    assert [e for e in env if e["name"] == "KEPTN_OUTPUT_FILE"] == [
        {"name": "KEPTN_OUTPUT_FILE", "value": "/keptn-output/output.json"}
    ]
    assert {"name": "KEEP", "value": "1"} in env


def test_with_outputs_off_the_job_is_as_before() -> None:
    spec = output_spec()
    off = manifests.job_for(spec, manifests.JobSettings(task_outputs=False))
    assert "initContainers" not in pod_spec(off)
    assert "KEPTN_OUTPUT_FILE" not in json.dumps(off)
    assert [v["name"] for v in pod_spec(off)["volumes"]] == ["job-volume"]


# --- the runner against the fake API ----------------------------------------------------------------


@pytest.fixture
async def output_runner(api: kubernetes.client.ApiClient) -> AsyncIterator[KubernetesRunner]:
    async with started_runner(api, job_settings=SETTINGS) as kube_runner:
        yield kube_runner


def big_output(size: int) -> dict[str, Any]:
    """A JSON object of about ``size`` bytes: Keptn's test data and padding."""
    padding = "x" * size
    return {"test": {"start": "2026-12-05T03:00:00Z", "end": "2026-12-05T03:01:00Z"}, "report": padding}


async def test_twenty_kib_of_output_reach_the_outcome(kube: FakeKube, output_runner: KubernetesRunner) -> None:
    spec = output_spec()
    output = big_output(20 * 1024)
    kube.behave(job=spec.job_name, logs="testing\n", output=json.dumps(output))
    seen: list[tuple[str, bytes]] = []

    outcome = await output_runner.run(spec, on_log=lambda container, chunk: seen.append((container, chunk)))

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    assert outcome.output == output
    assert len(json.dumps(output)) > 20 * 1024
    assert [log.container for log in outcome.logs] == [spec.job_name]  # the relay's log is never shown
    assert {container for container, _ in seen} == {spec.job_name}
    assert b"jes-output" not in b"".join(chunk for _, chunk in seen)


async def test_the_relay_log_is_served_on_its_own_after_the_task_ended(
    kube: FakeKube, output_runner: KubernetesRunner
) -> None:
    spec = output_spec()
    kube.behave(job=spec.job_name, output='{"a": 1}')
    states: list[tuple[str, str, str]] = []

    def note(plural: str, _: str, obj: dict[str, Any]) -> None:
        if plural != "pods":
            return
        status = obj.get("status") or {}
        relay = next(iter((status.get("initContainerStatuses") or [{}])[0].get("state") or {}), "")
        main = next(iter((status.get("containerStatuses") or [{}])[0].get("state") or {}), "")
        entry = (relay, main, str(status.get("phase")))
        if not states or states[-1] != entry:
            states.append(entry)

    kube.store_listener(note)
    outcome = await output_runner.run(spec)

    assert outcome.output == {"a": 1}, outcome.reason
    # the sidecar runs before the task, outlives it, and the pod ends only after it ended
    assert ("running", "running", "Running") in states
    assert ("running", "terminated", "Running") in states
    assert states.index(("running", "terminated", "Running")) < states.index(("terminated", "terminated", "Succeeded"))
    (pod,) = kube.objects("pods")
    relay = kube_status.relay_state([pod])
    assert relay is not None and relay[1]["exitCode"] == 0


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("[1, 2]", "output file /keptn-output/output.json: not a JSON object (found a list)"),
        ("{\"a\": ", "output file /keptn-output/output.json: not valid JSON (Expecting value at line 1 column 7)"),
        ("x" * (64 * 1024 + 1), "output file /keptn-output/output.json: is larger than 65536 bytes (JES_MAX_OUTPUT_BYTES)"),
    ],
)
async def test_an_invalid_output_fails_the_task_with_the_reason(
    kube: FakeKube, output_runner: KubernetesRunner, written: str, reason: str
) -> None:
    spec = output_spec()
    kube.behave(job=spec.job_name, output=written)

    outcome = await output_runner.run(spec)

    assert outcome.status is Status.FAILED
    assert outcome.reason.startswith(reason), outcome.reason
    assert outcome.output is None
    assert outcome.exit_code == 0


async def test_no_output_file_is_no_output(kube: FakeKube, output_runner: KubernetesRunner) -> None:
    spec = output_spec()
    kube.behave(job=spec.job_name)

    outcome = await output_runner.run(spec)

    assert outcome.status is Status.SUCCEEDED and outcome.output is None


async def test_a_failed_task_keeps_a_valid_output_and_its_own_reason(
    kube: FakeKube, output_runner: KubernetesRunner
) -> None:
    spec = output_spec()
    kube.behave(job=spec.job_name, exit_code=3, output='{"test": {"result": "fail"}}')

    outcome = await output_runner.run(spec)

    assert outcome.status is Status.FAILED and outcome.reason == "exit code 3"
    assert outcome.output == {"test": {"result": "fail"}}


async def test_an_adopted_finished_job_yields_its_output_again(kube: FakeKube, output_runner: KubernetesRunner) -> None:
    spec = output_spec()
    kube.behave(job=spec.job_name, output='{"b": [1, 2]}')
    first = await output_runner.run(spec)

    again = await output_runner.run(spec, adopt_only=True)

    assert first.output == again.output == {"b": [1, 2]}


# --- the relay's own encoding -----------------------------------------------------------------------


def test_the_relay_log_survives_only_whole() -> None:
    data = json.dumps(big_output(30_000)).encode()
    log = outputrelay.report(data)
    assert outputrelay.decode(log).data == data
    lines = log.splitlines(keepends=True)
    cut = b"".join(lines[:-5] + lines[-1:])  # lines lost in the middle: length and sha256 differ
    assert "damaged" in outputrelay.decode(cut).problem
    assert "incomplete" in outputrelay.decode(b"".join(lines[:-1])).problem
    assert "printed no result" in outputrelay.decode(b"").problem
    assert outputrelay.decode(outputrelay.report(b"")).data is None
    assert outputrelay.decode(outputrelay.report(b"")).problem == ""
    restarted = outputrelay.report(b'{"old": 1}') + outputrelay.report(b'{"new": 1}')
    assert outputrelay.decode(restarted).data == b'{"new": 1}'


def test_the_relay_refuses_what_is_not_a_regular_file(tmp_path: Any) -> None:
    target = tmp_path / "secret"
    target.write_text('{"token": "x"}')
    link = tmp_path / "output.json"
    link.symlink_to(target)
    assert "symbolic link" in outputrelay.decode(outputrelay.encode(str(link), 1024)).problem
    link.unlink()
    link.mkdir()
    assert "not a regular file" in outputrelay.decode(outputrelay.encode(str(link), 1024)).problem
    assert outputrelay.decode(outputrelay.encode(str(tmp_path / "absent.json"), 1024)).data is None


def test_the_settings_bound_the_output_size_and_feed_the_job_settings() -> None:
    from jes import errors, settings

    current = settings.load({"JES_MAX_OUTPUT_BYTES": "16Ki"})
    assert (current.task_outputs, current.max_output_bytes) == (True, 16384)
    job_settings = manifests.JobSettings.from_settings(current)
    assert (job_settings.task_outputs, job_settings.max_output_bytes) == (True, 16384)
    assert manifests.JobSettings.from_settings(settings.load({"JES_TASK_OUTPUTS": "false"})).task_outputs is False
    for too in ("4Ki", "2Mi"):
        with pytest.raises(errors.SettingsError, match="JES_MAX_OUTPUT_BYTES"):
            settings.load({"JES_MAX_OUTPUT_BYTES": too})


async def test_a_cluster_without_native_sidecars_fails_the_task_at_once(
    kube: FakeKube, output_runner: KubernetesRunner
) -> None:
    """Before 1.29 the API server drops ``restartPolicy: Always`` of an init container: the relay
    would then block the pod for good. jes sees it in the create answer and deletes the Job."""
    kube.native_sidecars = False
    spec = output_spec()
    kube.behave(job=spec.job_name, output='{"a": 1}')

    outcome = await output_runner.run(spec)

    assert outcome.status is Status.ERROR
    assert outcome.reason.startswith("this cluster does not support native sidecars (Kubernetes 1.29+)")
    assert "set JES_TASK_OUTPUTS=false (the chart's jobConfig.taskOutputs=false)" in outcome.reason
    deadline = asyncio.get_running_loop().time() + 5
    while kube.objects("jobs") and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)  # foreground deletion: the pod goes (its relay exits on SIGTERM), then the Job
    assert kube.objects("jobs") == [] and kube.objects("pods") == []


async def test_the_relay_log_is_read_while_the_tasks_own_log_is_still_arriving(
    kube: FakeKube, output_runner: KubernetesRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = output_spec()
    # the task's log arrives seconds after its container ended (a slow stream): the relay's log is
    # read meanwhile, not after it (the complete -> .finished latency under a burst). The container
    # runs a second (seen running, so its log is followed) and its log comes for three more (a
    # loaded machine still starts finishing while it arrives)
    kube.behave(job=spec.job_name, logs="y" * 4000, log_rate_bytes_per_s=1000.0, duration_s=1.0, output='{"a": 1}')
    waiting_for_logs = 0
    relay_reads_while_waiting = 0
    until_ended, read_relay = tasklogs._until_ended_or_idle, finishing._read_relay_log

    async def noting_wait(*args: Any) -> None:
        nonlocal waiting_for_logs
        waiting_for_logs += 1
        try:
            await until_ended(*args)
        finally:
            waiting_for_logs -= 1

    async def noting_read(*args: Any) -> bytes:
        nonlocal relay_reads_while_waiting
        relay_reads_while_waiting += waiting_for_logs
        return await read_relay(*args)

    monkeypatch.setattr(tasklogs, "_until_ended_or_idle", noting_wait)
    monkeypatch.setattr(finishing, "_read_relay_log", noting_read)
    outcome = await output_runner.run(spec)

    assert outcome.output == {"a": 1}, outcome.reason
    assert [log.text.head for log in outcome.logs] == [b"y" * 4000]
    assert relay_reads_while_waiting == 1
