"""``tasks[].retries`` with the kubernetes runner on the fake API: the Job controller retries (one pod
per attempt, after its back-off on the fake clock), jes follows the Job across its pods, reports each
new attempt, keeps every attempt's logs and reports the Job's outcome with the exit code per attempt;
a restart (adoption) between attempts gives the same outcome."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import kubernetes.client
import pytest

from fakes.fake_kube import FakeKube
from jes.models import Status, TaskFiles, TaskSpec
from jes.runner.kubernetes.runner import KubernetesRunner
from tests.runner.kubernetes import helpers
from tests.runner.kubernetes.conftest import FAST
from tests.runner.kubernetes.test_runner import eventually

pytestmark = pytest.mark.asyncio


def retried(name: str, retries: int, codes: tuple[int, ...] = ()) -> TaskSpec:
    """A spec whose Job jes builds itself (backoffLimit, podFailurePolicy); its container is ``name``."""
    task = dataclasses.replace(helpers.task(), retries=retries, retry_on_exit_codes=codes)
    return TaskSpec(task=task, event=helpers.EVENT, job_name=name, files=TaskFiles())


@contextlib.asynccontextmanager
async def ticking(kube: FakeKube, paused: asyncio.Event | None = None) -> AsyncIterator[None]:
    """Move the fake clock 1 s every 10 ms, over the Job controller's 10 s, 20 s... pod back-off
    (while ``paused`` is not set)."""

    async def tick() -> None:
        while True:
            if paused is None or not paused.is_set():
                kube.clock.advance(1)
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick(), name="fake-clock-ticker")
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def pod_count(kube: FakeKube, name: str) -> int:
    return len(kube.objects("pods", "default", labels=f"job-name={name}"))


async def test_exit_code_2_runs_three_times_then_fails(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="two", exit_code=2, logs="flaky\n")
    seen: list[tuple[int, int | None]] = []
    async with ticking(kube):
        outcome = await runner.run(retried("two", 2, (2,)), on_attempt=lambda n, code: seen.append((n, code)))

    assert pod_count(kube, "two") == 3
    assert outcome.status is Status.FAILED and outcome.exit_code == 2
    assert outcome.attempts == (2, 2, 2)
    assert outcome.reason == "exit code 2 after 3 attempts, no retry left (BackoffLimitExceeded)"
    assert seen == [(2, 2), (3, 2)]
    assert [log.text.text() for log in outcome.logs] == ["flaky\n"] * 3, "every attempt's logs, oldest first"
    assert len({log.pod for log in outcome.logs}) == 3


async def test_exit_code_1_is_not_retried(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave(job="one", exit_code=1)
    seen: list[tuple[int, int | None]] = []
    async with ticking(kube):
        outcome = await runner.run(retried("one", 2, (2,)), on_attempt=lambda n, code: seen.append((n, code)))

    assert pod_count(kube, "one") == 1 and seen == []
    assert outcome.status is Status.FAILED and outcome.exit_code == 1 and outcome.attempts == (1,)
    assert outcome.reason == "exit code 1, not retried: retryOnExitCodes is [2] (PodFailurePolicy)"


async def test_a_later_attempt_that_succeeds_wins(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave_attempts("later", {"exit_code": 2, "logs": "first\n"}, {"exit_code": 0, "logs": "second\n"})
    seen: list[tuple[int, int | None]] = []
    async with ticking(kube):
        outcome = await runner.run(retried("later", 2, (2,)), on_attempt=lambda n, code: seen.append((n, code)))

    assert outcome.status is Status.SUCCEEDED and outcome.attempts == (2, 0)
    assert outcome.reason == "completed on attempt 2/3" and seen == [(2, 2)]
    assert [log.text.text() for log in outcome.logs] == ["first\n", "second\n"]


async def test_a_disrupted_pod_does_not_use_up_a_retry(kube: FakeKube, runner: KubernetesRunner) -> None:
    kube.behave_attempts("evicted", {"duration_s": 3600, "sigterm_exit_s": 0.5}, {"exit_code": 0})
    task = asyncio.create_task(runner.run(retried("evicted", 1, (2,))))
    pod = await eventually(lambda: _running_pod(kube, "evicted"))
    assert kube.disrupt("default", pod)
    async with ticking(kube):
        outcome = await task
    assert outcome.status is Status.SUCCEEDED
    job = kube.get("jobs", "default", "evicted") or {}
    assert job["status"].get("failed", 0) == 0, "the disruption is not counted against backoffLimit"


def _running_pod(kube: FakeKube, job: str) -> str | None:
    for pod in kube.objects("pods", "default", labels=f"job-name={job}"):
        if any("running" in s["state"] for s in pod["status"].get("containerStatuses") or []):
            return str(pod["metadata"]["name"])
    return None


async def test_a_restart_between_attempts_adopts_the_job_with_the_right_count(
    kube: FakeKube, api: kubernetes.client.ApiClient
) -> None:
    kube.behave(job="restart", exit_code=2)
    paused = asyncio.Event()
    first = KubernetesRunner(api_client=api, backoff=FAST, watch_timeout_s=5)
    seen_first: list[tuple[int, int | None]] = []
    async with ticking(kube, paused):
        running = asyncio.create_task(
            first.run(retried("restart", 2, (2,)), on_attempt=lambda n, code: seen_first.append((n, code)))
        )
        await eventually(lambda: seen_first == [(2, 2)])
        paused.set()  # the third pod waits for the clock: it comes after the restart
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await first.close()

        second = KubernetesRunner(api_client=api, backoff=FAST, watch_timeout_s=5)
        seen: list[tuple[int, int | None]] = []
        adopted = asyncio.create_task(
            second.run(retried("restart", 2, (2,)), adopt_only=True, on_attempt=lambda n, code: seen.append((n, code)))
        )
        await eventually(lambda: pod_count(kube, "restart") == 2)
        paused.clear()
        try:
            outcome = await adopted
        finally:
            await second.close()

    assert outcome.status is Status.FAILED and outcome.attempts == (2, 2, 2)
    assert outcome.reason == "exit code 2 after 3 attempts, no retry left (BackoffLimitExceeded)"
    assert seen == [(3, 2)], "the attempts before the restart are not reported again"
    assert len(kube.created_jobs) == 1
