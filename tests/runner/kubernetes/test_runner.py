"""The kubernetes runner against the fake API server (real HTTP, the unmodified official client)."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from fakes.fake_kube import FakeKube
from jes import errors
from jes.clients import kube as kube_client
from jes.commands import copy_files as filecopy
from jes.models import Outcome, Status, TaskFiles, TaskSpec, job_name
from jes.runner.kubernetes import logs as kube_logs
from jes.runner.kubernetes import manifests, tasklogs
from jes.runner.kubernetes.runner import KubernetesRunner
from jes.runner.logs import BoundedBuffer
from tests.runner.kubernetes import helpers
from tests.runner.kubernetes.conftest import FAST, validate_jobs

pytestmark = pytest.mark.asyncio


async def eventually(predicate: Any, timeout_s: float = 15.0) -> Any:
    """Await a condition (polled on a short interval, never a blind sleep)."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
    return value


def _log(outcome: Outcome, index: int = -1) -> str:
    return outcome.logs[index].text.text()


def _running(kube: FakeKube, job: str) -> bool:
    pods = kube.objects("pods", "default", labels=f"job-name={job}")
    return any("running" in s["state"] for p in pods for s in p["status"].get("containerStatuses") or [])


# --- success and failure -----------------------------------------------------------------------------


async def test_a_successful_task_reports_its_logs(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="ok", logs="hello\nworld\n", duration_s=0.1)
    chunks: list[tuple[str, bytes]] = []
    running: list[bool] = []

    outcome = await runner.run(
        helpers.spec("ok", files={"f0": "x"}),
        on_log=lambda c, b: chunks.append((c, b)),
        on_running=lambda: running.append(True),
    )

    assert (outcome.status, outcome.reason, outcome.exit_code) == (Status.SUCCEEDED, "completed", 0)
    assert outcome.succeeded and outcome.events == ()
    assert [(log.container, log.reason, log.exit_code, log.init) for log in outcome.logs] == [
        ("ok", "Completed", 0, False)
    ]
    assert outcome.logs[0].pod.startswith("ok-")
    assert _log(outcome) == "hello\nworld\n"
    assert chunks == [("ok", b"hello\nworld\n")]
    assert running == [True]
    assert 0.1 <= outcome.duration_s < 4.0  # seen when it happens, not at upstream's 5 s poll
    job = kube.get("jobs", "default", "ok")
    assert job is not None
    config_map = kube.get("configmaps", "default", "ok-files-0")
    assert config_map is not None
    assert config_map["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "ok", "uid": job["metadata"]["uid"]}
    ]
    assert kube.request_count("get", "batch/jobs") == 0  # watched, not polled


async def test_a_failing_task_reports_exit_code_message_and_logs(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="bad", exit_code=3, logs="oops\n", message="assertion failed\n")

    outcome = await runner.run(helpers.spec("bad"))

    assert (outcome.status, outcome.exit_code) == (Status.FAILED, 3)
    assert outcome.reason == "exit code 3: assertion failed"
    assert [(log.reason, log.message, log.exit_code) for log in outcome.logs] == [("Error", "assertion failed\n", 3)]
    assert _log(outcome) == "oops\n"


async def test_a_failed_init_container_shows_its_logs(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="init", init_exit_code=255, init_logs="Error while copying files: boom\n")

    outcome = await runner.run(helpers.spec("init", init_image="ghcr.io/jes-project/jes:0.1.0"))

    assert outcome.status is Status.FAILED
    assert outcome.reason == "init container init-init failed: exit code 255"
    assert outcome.exit_code == 255
    assert [(log.container, log.init) for log in outcome.logs] == [("init-init", True)]
    assert _log(outcome, 0) == "Error while copying files: boom\n"


async def test_init_logs_are_left_out_when_everything_completed(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="quiet-init", init_logs="copied 3 files\n", logs="done\n")
    outcome = await runner.run(helpers.spec("quiet-init", init_image="ghcr.io/jes-project/jes:0.1.0"))
    assert outcome.status is Status.SUCCEEDED
    assert [log.container for log in outcome.logs] == ["quiet-init"]


async def test_oom_killed(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="oom", oom_killed=True, logs="allocating\n")
    outcome = await runner.run(helpers.spec("oom"))
    assert (outcome.status, outcome.reason, outcome.exit_code) == (Status.FAILED, "OOMKilled (exit code 137)", 137)
    assert outcome.logs[0].reason == "OOMKilled"


async def test_deadline_exceeded(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="deadline", duration_s=3600)
    task = asyncio.create_task(runner.run(helpers.spec("deadline", deadline_s=600)), name="run-deadline")
    await eventually(lambda: _running(kube, "deadline"))
    kube.clock.advance(601)
    outcome = await task
    assert outcome.status is Status.DEADLINE_EXCEEDED
    assert outcome.reason == (
        "job deadline exceeded (activeDeadlineSeconds=600): Job was active longer than specified deadline"
    )


async def test_output_beyond_the_budget_keeps_head_and_tail(kube: FakeKube, runner: KubernetesRunner) -> None:
    size = 20_000_000
    # running for a second: the runner follows a container it sees running; one that ends before the
    # pod watch shows it running is read once at the end, and a 20 MB log is rotated by then (a busy
    # machine made that race lose the head here now and then)
    kube.behave(job="loud", logs="FIRST LINE\n", log_bytes=size, log_tail="LAST LINE\n", duration_s=1.0)
    forwarded = 0

    def count(container: str, chunk: bytes) -> None:
        nonlocal forwarded
        forwarded += len(chunk)

    tracemalloc.start()
    try:
        outcome = await runner.run(helpers.spec("loud"), on_log=count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    text = outcome.logs[0].text
    total = len("FIRST LINE\n") + size + len("LAST LINE\n")
    assert outcome.status is Status.SUCCEEDED
    assert forwarded == total == text.total_bytes
    assert len(text.head) == 4096 and len(text.tail) == 4096
    assert text.head.startswith(b"FIRST LINE\n") and text.tail.endswith(b"LAST LINE\n")
    assert text.omitted_bytes == total - 8192
    assert peak < 8_000_000, f"reading {size} bytes of output peaked at {peak} bytes"


# --- adoption ------------------------------------------------------------------------------------------


async def test_the_same_task_twice_at_once_makes_one_job(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="twice", logs="once\n", duration_s=0.2)
    first, second = await asyncio.gather(runner.run(helpers.spec("twice")), runner.run(helpers.spec("twice")))
    assert first.status is second.status is Status.SUCCEEDED
    assert _log(first) == _log(second) == "once\n"
    assert len(kube.objects("jobs", "default")) == 1
    assert len(kube.objects("pods", "default")) == 1
    assert kube.request_count("create", "batch/jobs") == 2  # the second answered 409 and was adopted


async def test_a_finished_job_is_adopted_with_its_outcome(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="done", exit_code=4, logs="earlier output\n")
    first = await runner.run(helpers.spec("done"))
    kube.behave(job="done", exit_code=0, logs="must not run again\n")

    again = await runner.run(helpers.spec("done"))

    assert (again.status, again.reason, again.exit_code) == (first.status, first.reason, 4)
    assert _log(again) == "earlier output\n"
    assert len(kube.objects("pods", "default")) == 1
    assert again.started_at <= again.finished_at


async def test_adopt_only_does_not_create(kube: FakeKube, runner: KubernetesRunner) -> None:
    outcome = await runner.run(helpers.spec("never-created"), adopt_only=True)
    assert outcome.status is Status.LOST
    assert kube.created_jobs == []


async def test_cancelling_leaves_the_job_to_be_adopted_later(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="long", duration_s=3600, logs="finally\n")
    task = asyncio.create_task(runner.run(helpers.spec("long")), name="run-long")
    await eventually(lambda: _running(kube, "long"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kube.get("jobs", "default", "long") is not None

    again = asyncio.create_task(runner.run(helpers.spec("long"), adopt_only=True), name="adopt-long")
    await asyncio.sleep(0)
    kube.clock.advance(3600)
    outcome = await again
    assert outcome.status is Status.SUCCEEDED and _log(outcome) == "finally\n"


async def test_a_job_deleted_while_waiting_is_lost(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="gone", duration_s=3600)
    task = asyncio.create_task(runner.run(helpers.spec("gone")), name="run-gone")
    await eventually(lambda: _running(kube, "gone"))
    kube.delete("jobs", "default", "gone", propagation="Background")
    outcome = await task
    assert outcome.status is Status.LOST


async def test_a_job_deleted_right_after_finishing_still_reports(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="ttl-zero", exit_code=0)
    outcome = await runner.run(helpers.spec("ttl-zero", ttl_s=0))
    assert outcome.status is Status.SUCCEEDED
    await eventually(lambda: kube.get("jobs", "default", "ttl-zero") is None)


# --- pods that can never start -----------------------------------------------------------------------


async def _assert_cannot_start(kube: FakeKube, outcome: Outcome, *fragments: str) -> None:
    assert outcome.status is Status.CANNOT_START, outcome
    for fragment in fragments:
        assert fragment in outcome.reason
    await eventually(lambda: kube.get("jobs", "default", outcome.job_name) is None)  # deleted


async def test_image_pull_errors_fail_fast(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(image="registry.example/private", image_pull="ErrImagePull")
    outcome = await runner.run(helpers.spec("pull", image="registry.example/private:1"))
    await _assert_cannot_start(kube, outcome, "registry.example/private:1", "(container pull)")
    assert outcome.reason.startswith(("ErrImagePull: ", "ImagePullBackOff: "))
    assert any(event.startswith("Failed: ") for event in outcome.events)


async def test_invalid_image_names_fail_fast(kube: FakeKube, runner: KubernetesRunner) -> None:
    outcome = await runner.run(helpers.spec("invalid", image="Busybox:Latest!"))
    await _assert_cannot_start(kube, outcome, "InvalidImageName")


async def test_a_missing_secret_fails_fast(kube: FakeKube, runner: KubernetesRunner) -> None:
    outcome = await runner.run(helpers.spec("secret", env_from=[{"secretRef": {"name": "api-token"}}]))
    await _assert_cannot_start(kube, outcome, 'CreateContainerConfigError: secret "api-token" not found')


async def test_a_missing_service_account_fails_fast() -> None:
    with FakeKube(check_service_accounts=True) as kube, kube.api_client() as client:
        own = KubernetesRunner(api_client=client, build_job=helpers.hand_made_job, backoff=FAST, missing_pod_check_s=0.05)
        try:
            outcome = await own.run(helpers.spec("sa", service_account="deployer"))
        finally:
            await own.close()
        await _assert_cannot_start(kube, outcome, "FailedCreate", 'serviceaccount "deployer" not found')
        assert outcome.events[0].startswith("FailedCreate: Error creating: pods")
        validate_jobs(kube)


async def test_unschedulable_past_the_grace_period_fails(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="huge", unschedulable=True)
    started = time.monotonic()
    outcome = await runner.run(helpers.spec("huge"))
    assert time.monotonic() - started >= runner.pending_grace_s
    await _assert_cannot_start(kube, outcome, "Unschedulable for more than 0.3s", "Insufficient cpu")
    assert any(event.startswith("FailedScheduling: ") for event in outcome.events)


async def test_max_poll_duration_deletes_the_job(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="slow", duration_s=3600, logs="started\n")
    outcome = await runner.run(helpers.spec("slow", max_poll_duration_s=1))
    assert outcome.status is Status.TIMED_OUT
    assert outcome.reason == "maxPollDuration of 1s exceeded; the Job was deleted"
    assert _log(outcome) == "started\n"  # what it printed so far
    job = kube.get("jobs", "default", "slow")  # foreground deletion: it waits for its pod's grace period
    assert job is None or job["metadata"]["deletionTimestamp"]
    kube.clock.advance(31)
    await eventually(lambda: kube.get("jobs", "default", "slow") is None)
    assert kube.objects("pods", "default") == []


# --- API trouble -------------------------------------------------------------------------------------


async def test_server_errors_and_throttling_are_retried(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="flaky", logs="made it\n")
    kube.faults.fail(503, times=3, verb="create", resource="batch/jobs")
    kube.faults.throttle(retry_after_s=1, times=1, verb="create", resource="configmaps")
    kube.faults.fail(500, times=2, verb="patch", resource="configmaps")
    kube.faults.fail(502, times=1, verb="get", resource="pods/log")
    started = time.monotonic()

    outcome = await runner.run(helpers.spec("flaky", files={"f0": "x"}))

    assert outcome.status is Status.SUCCEEDED and _log(outcome) == "made it\n"
    assert kube.request_count("create", "batch/jobs") == 4
    assert len(kube.objects("jobs", "default")) == 1
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured


async def test_a_lost_create_response_is_adopted(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="dropped", logs="ran once\n")
    kube.faults.drop(verb="create", resource="batch/jobs", commit=True)
    outcome = await runner.run(helpers.spec("dropped"))
    assert outcome.status is Status.SUCCEEDED
    assert kube.request_count("create", "batch/jobs") == 2
    assert len(kube.objects("pods", "default")) == 1


async def test_forbidden_names_the_missing_permission(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.faults.forbid("create", "batch/jobs", "default")
    outcome = await runner.run(helpers.spec("forbidden", files={"f0": "x"}))
    assert outcome.status is Status.ERROR
    assert outcome.reason.startswith(
        "permission denied: jes may not create batch/jobs in namespace 'default'; "
        "grant 'create' on 'batch/jobs' to jes's service account in its Role"
    )
    assert kube.objects("configmaps", "default") == []  # cleaned up


async def test_forbidden_watch_is_an_error_not_a_hang(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.faults.forbid("list", "batch/jobs", "ci")
    outcome = await runner.run(helpers.spec("no-list", namespace="ci"))
    assert outcome.status is Status.ERROR
    assert "may not list batch/jobs in namespace 'ci'" in outcome.reason
    assert kube.created_jobs == []


async def test_an_invalid_job_is_an_error_with_the_servers_words(runner: KubernetesRunner) -> None:
    spec = helpers.spec("ok-name")
    spec.job["metadata"]["labels"]["keptn.sh/event-id"] = "not a valid label value!"
    outcome = await runner.run(spec)
    assert outcome.status is Status.ERROR
    assert "422 Invalid" in outcome.reason and "metadata.labels" in outcome.reason


async def test_a_manifest_without_the_managed_by_label_is_refused(runner: KubernetesRunner) -> None:
    spec = helpers.spec("unlabelled")
    del spec.job["metadata"]["labels"][helpers.MANAGED_BY]
    outcome = await runner.run(spec)
    assert outcome.status is Status.ERROR and "app.kubernetes.io/managed-by" in outcome.reason


# --- watches -----------------------------------------------------------------------------------------


async def test_a_completion_during_a_410_gap_is_not_lost(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="gap", duration_s=3600, logs="seen\n")
    task = asyncio.create_task(runner.run(helpers.spec("gap")), name="run-gap")
    await eventually(lambda: _running(kube, "gap"))
    lists_before = kube.request_count("list", "batch/jobs")

    kube.faults.fail(503, times=None, verb="watch")  # the watches cannot come back for now
    kube.close_watches()
    await eventually(lambda: kube.open_watches("jobs") == 0)
    kube.clock.advance(3600)  # the Job completes while nobody watches
    await eventually(lambda: kube.get("jobs", "default", "gap")["status"].get("succeeded"))
    kube.expire_watches()  # and the history that would have told is gone
    kube.faults.clear()

    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.SUCCEEDED and _log(outcome) == "seen\n"
    assert kube.request_count("list", "batch/jobs") > lists_before  # listed again after 410


async def test_a_watch_gap_longer_than_the_ttl_still_reports_the_success(
    kube: FakeKube, runner: KubernetesRunner
) -> None:
    """The Job completes and its TTL deletes it while jes cannot watch: its Events still tell."""
    kube.behave(job="gap-ttl", duration_s=3600, logs="seen\n")
    task = asyncio.create_task(runner.run(helpers.spec("gap-ttl", ttl_s=60)), name="run-gap-ttl")
    await eventually(lambda: _running(kube, "gap-ttl"))
    kube.faults.fail(503, times=None, verb="watch")
    kube.close_watches()
    await eventually(lambda: kube.open_watches("jobs") == 0)
    kube.clock.advance(3600)  # completes unseen
    await eventually(lambda: kube.get("jobs", "default", "gap-ttl")["status"].get("succeeded"))
    kube.clock.advance(61)  # and its TTL deletes it, with its pod and logs
    await eventually(lambda: kube.get("jobs", "default", "gap-ttl") is None)
    kube.expire_watches()
    kube.faults.clear()

    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.SUCCEEDED, outcome
    assert outcome.reason.startswith("Completed: Job completed") and "logs are gone" in outcome.reason
    assert _log(outcome) == "(logs no longer available)\n"


async def test_adopting_a_job_deleted_by_its_ttl_reads_its_events(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="failed-ttl", exit_code=2)
    first = await runner.run(helpers.spec("failed-ttl", ttl_s=60))
    assert first.status is Status.FAILED
    kube.clock.advance(61)
    await eventually(lambda: kube.get("jobs", "default", "failed-ttl") is None)

    again = await runner.run(helpers.spec("failed-ttl", ttl_s=60), adopt_only=True)
    assert again.status is Status.FAILED and again.reason.startswith("BackoffLimitExceeded")
    assert len(kube.created_jobs) == 1


async def test_a_dropped_watch_connection_is_resumed(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="dropped-watch", duration_s=3600)
    task = asyncio.create_task(runner.run(helpers.spec("dropped-watch")), name="run-dropped-watch")
    await eventually(lambda: _running(kube, "dropped-watch"))
    watches_before = kube.request_count("watch", "batch/jobs")
    kube.faults.drop(verb="watch", resource="batch/jobs", times=2)
    kube.close_watches("jobs")
    await eventually(lambda: kube.request_count("watch", "batch/jobs") >= watches_before + 3)
    kube.clock.advance(3600)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.SUCCEEDED


async def test_hundreds_of_jobs_share_one_watch_per_namespace(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(image="busybox", logs="ok\n", duration_s=0.2)
    specs = [helpers.spec(f"many-{i:03d}", namespace="ci" if i % 2 else "cd") for i in range(300)]
    threads_before = threading.active_count()
    most_threads = 0

    async def run(spec: Any) -> Outcome:
        nonlocal most_threads
        outcome = await runner.run(spec)
        most_threads = max(most_threads, threading.active_count())
        return outcome

    outcomes = await asyncio.gather(*(run(s) for s in specs))

    assert [o.status for o in outcomes] == [Status.SUCCEEDED] * 300
    assert {_log(o) for o in outcomes} == {"ok\n"}
    assert runner.watch_count() == 4  # jobs and pods, in two namespaces
    assert kube.open_watches("jobs", "ci") == kube.open_watches("pods", "cd") == 1
    assert kube.request_count("get", "batch/jobs") == 0
    assert kube.open_watches("jobs") == kube.open_watches("pods") == 2
    assert most_threads <= threads_before + runner.max_workers + 4  # a pool and the watches, none per Job


async def test_a_kubeconfig_file_is_enough(kube: FakeKube, tmp_path: Path) -> None:
    kube.behave(job="via-config", logs="hi\n")
    client = kube_client.connect(kubeconfig=str(kube.kubeconfig(tmp_path / "config")))
    own = KubernetesRunner(api_client=client, build_job=helpers.hand_made_job, backoff=FAST)
    try:
        outcome = await own.run(helpers.spec("via-config"))
    finally:
        await own.close()
        client.close()
    assert outcome.status is Status.SUCCEEDED and _log(outcome) == "hi\n"


async def test_no_cluster_configuration_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.KubeConfigError, match="no Kubernetes configuration"):
        kube_client.connect(kubeconfig=str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.KubeConfigError, match="not running in a cluster"):
        kube_client.connect()


async def test_jobs_built_by_jes_manifests_run_with_their_files(
    kube: FakeKube, runner: KubernetesRunner, tmp_path: Path
) -> None:
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB: five times what one ConfigMap may hold
    spool = tmp_path / "spool"
    files = TaskFiles.of(spool, {"locust/basic.py": b"print('hi')\n", "locust/locust.conf": b"users = 1\n", "big.bin": big})
    task = helpers.task()
    name = job_name(helpers.EVENT.id, task.action_index, task.task_index)
    kube.behave(job=name, logs="locust done\n")
    spec = TaskSpec(task=task, event=helpers.EVENT, job_name=name, config_hash="abc", files=files)

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED and _log(outcome) == "locust done\n"
    stored = {m["metadata"]["name"]: m for m in kube.objects("configmaps", "default")}
    assert len(stored) == 6  # the big file in pieces, the small ones with the last: each accepted under 1 MiB
    assert {m["metadata"]["ownerReferences"][0]["name"] for m in stored.values()} == {name}
    assert not spool.exists() and files.root is None  # the spool went once the ConfigMaps existed
    # what the pod gets: the projected volume as the kubelet lays it out, then the init container
    projected = tmp_path / "jes-files"
    job = next(j for j in kube.objects("jobs", "default") if j["metadata"]["name"] == name)
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == manifests.FILES_VOLUME)
    for source in volume["projected"]["sources"]:
        config_map = stored[source["configMap"]["name"]]
        for item in source["configMap"]["items"]:
            target = projected / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(config_map["binaryData"][item["key"]]))
    keptn = tmp_path / "keptn"
    filecopy.copy_tree(projected, keptn)
    assert (keptn / "big.bin").read_bytes() == big and (keptn / "locust/basic.py").read_bytes() == b"print('hi')\n"


async def test_cancelling_while_an_event_arrives_still_stops_waiting(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(image="busybox", duration_s=3600)
    names = [f"busy-{i:02d}" for i in range(20)]
    tasks = [asyncio.create_task(runner.run(helpers.spec(n)), name=f"run-{n}") for n in names]

    def trackers() -> list[Any]:  # what each waiting run() knows (white box: the runner's watches)
        return [t for group in runner._watches.values() for ts in group.by_name.values() for t in ts]

    await eventually(lambda: len(trackers()) == len(names) and all(t.job and t.pods for t in trackers()))
    for offset in range(len(tasks)):  # wake each waiting run() just before its cancellation lands
        for tracker in trackers():
            tracker.changed.set()
        for _ in range(offset % 4):
            await asyncio.sleep(0)
        tasks[offset].cancel()
    done, pending = await asyncio.wait(tasks, timeout=10)
    assert not pending and all(t.cancelled() for t in done)


# --- logs that outgrow the kubelet's rotation ------------------------------------------------------


async def test_a_log_bigger_than_the_kubelets_rotation_keeps_its_true_head(kube: FakeKube, runner: KubernetesRunner) -> None:
    """30 MiB of output on a kubelet that rotates at 10 MiB: a read after the end returns only the
    current file; jes followed the log while the container ran, so the report has the real first
    and last lines."""
    kube.behave(job="chatty", logs="FIRST LINE\n", log_bytes=30 * 1024 * 1024, log_tail="LAST LINE\n", duration_s=0.5)
    outcome = await runner.run(helpers.spec("chatty"))
    assert outcome.status is Status.SUCCEEDED
    text = outcome.logs[-1].text
    assert text.head.startswith(b"FIRST LINE\n") and text.tail.endswith(b"LAST LINE\n")
    assert text.total_bytes == len("FIRST LINE\n") + 30 * 1024 * 1024 + len("LAST LINE\n")
    pod = kube.objects("pods", "default", labels="job-name=chatty")[0]["metadata"]["name"]
    after = _core_log(kube, pod)  # what a read after the end gets: the head is gone
    assert not after.startswith("FIRST LINE") and after.endswith("LAST LINE\n") and len(after) <= 10 * 1024 * 1024


async def test_a_followed_log_that_lags_behind_its_container_is_awaited_while_it_delivers(
    kube: FakeKube, runner: KubernetesRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of output at the end arrives seconds after the container ended (a real kubelet's
    stream over a busy node does the same): jes keeps reading while bytes keep coming, rather than
    giving up after a fixed time and losing the streamed middle."""
    monkeypatch.setattr(tasklogs, "FOLLOW_END_WAIT_S", 0.5)
    size = 640 * 1024
    kube.behave(job="lagging", logs="FIRST LINE\n", log_bytes=size, log_tail="LAST LINE\n", log_rate_bytes_per_s=256 * 1024)
    forwarded = 0

    def count(container: str, chunk: bytes) -> None:
        nonlocal forwarded
        forwarded += len(chunk)

    outcome = await runner.run(helpers.spec("lagging"), on_log=count)
    total = len("FIRST LINE\n") + size + len("LAST LINE\n")
    assert outcome.status is Status.SUCCEEDED
    assert forwarded == total == outcome.logs[0].text.total_bytes  # all of it came through the stream
    assert "broke off" not in _log(outcome) and _log(outcome).endswith("LAST LINE\n")


async def test_a_log_stream_that_breaks_off_is_completed_by_a_read(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="broken", logs="FIRST LINE\n", log_bytes=200_000, log_tail="LAST LINE\n", duration_s=0.5)
    kube.faults.drop(verb="get", resource="pods/log", times=1)  # the follow stream breaks after its headers
    outcome = await runner.run(helpers.spec("broken"))
    assert outcome.status is Status.SUCCEEDED
    log = _log(outcome)
    assert "following this log broke off" in log and log.endswith("LAST LINE\n")


def _core_log(kube: FakeKube, pod: str) -> str:
    with kube.api_client() as client:
        return str(kubernetes.client.CoreV1Api(client).read_namespaced_pod_log(pod, "default"))


# --- kubelet reasons that heal by themselves --------------------------------------------------------


async def test_a_secret_cache_that_syncs_late_is_waited_for(kube: FakeKube, runner: KubernetesRunner) -> None:
    """CreateContainerConfigError "failed to sync secret cache" heals; after 20 s the task runs."""
    kube.behave(job="cache", transient="secret-cache", transient_s=20, logs="ran\n")
    task = asyncio.create_task(runner.run(helpers.spec("cache")), name="run-cache")
    await eventually(lambda: _waiting_reason(kube, "cache") == "CreateContainerConfigError")
    kube.clock.advance(20)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.SUCCEEDED and _log(outcome) == "ran\n"


async def test_a_registry_rate_limit_is_waited_for(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="limited", transient="registry-429", transient_s=30, logs="pulled at last\n")
    task = asyncio.create_task(runner.run(helpers.spec("limited")), name="run-limited")
    await eventually(lambda: _waiting_reason(kube, "limited") in ("ErrImagePull", "ImagePullBackOff"))
    await asyncio.sleep(0.3)  # several back-offs seen, none fatal
    assert not task.done()
    kube.clock.advance(30)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.SUCCEEDED


async def test_a_passing_reason_that_does_not_heal_fails_after_the_grace(kube: FakeKube) -> None:
    kube.behave(job="outage", transient="registry-503", transient_s=3600)
    with kube.api_client() as client:
        own = KubernetesRunner(api_client=client, build_job=helpers.hand_made_job, backoff=FAST, transient_grace_s=0.5)
        try:
            outcome = await own.run(helpers.spec("outage"))
        finally:
            await own.close()
    assert outcome.status is Status.CANNOT_START
    assert outcome.reason.startswith("still failing after 0.5s: ") and "503 Service Unavailable" in outcome.reason


def _waiting_reason(kube: FakeKube, job: str) -> str:
    pods = kube.objects("pods", "default", labels=f"job-name={job}")
    states = [s.get("state", {}) for p in pods for s in p["status"].get("containerStatuses") or []]
    return next((str(s["waiting"].get("reason")) for s in states if "waiting" in s), "")


async def test_a_followed_log_whose_stream_ended_is_taken_without_a_loop_round() -> None:
    """On the way to an event's .finished, every round of a busy event loop is latency."""
    stream = asyncio.ensure_future(asyncio.sleep(0))
    await stream
    followed = kube_logs.Followed(BoundedBuffer(head_bytes=64, tail_bytes=64), task=stream, complete=True)
    waiting = tasklogs._until_ended_or_idle(followed, stream)
    with pytest.raises(StopIteration):
        waiting.send(None)  # done at its first step: it never yielded to the loop
    logs = tasklogs.TaskLogs(
        lambda: None,  # type: ignore[arg-type,return-value]
        lambda: None,
        "ns",
        None,
        head_bytes=64,
        tail_bytes=64,
        final_reads=asyncio.Semaphore(1),
    )
    logs.followed[("pod", "main")] = followed
    stopping = logs.stop_following()
    with pytest.raises(StopIteration):
        stopping.send(None)
