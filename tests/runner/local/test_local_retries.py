"""``tasks[].retries`` in the local runner: the shim runs a failed task again by the same rule as the
Job's ``podFailurePolicy`` (an exit code in ``retryOnExitCodes``, or any with none listed), reports
each attempt, keeps every attempt's output with a marker line, and a restarted jes adopts a task
between attempts with the right count."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from jes.models import Status, TaskSpec
from jes.runner.local import shim
from jes.runner.local.runner import RUNS_DIR, LocalRunner
from tests.runner.local.support import make_spec, wait_until


def counting(tmp_path: Path, body: str) -> list[str]:
    """A command that counts its runs in ``count`` (as $n) and then runs ``body``."""
    counter = tmp_path / "count"
    script = f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo "run $n"; {body}'
    return ["sh", "-c", script]


def with_retries(spec: TaskSpec, retries: int, codes: tuple[int, ...] = ()) -> TaskSpec:
    task = dataclasses.replace(spec.task, retries=retries, retry_on_exit_codes=codes)
    return dataclasses.replace(spec, task=task)


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "count").read_text())


async def test_exit_code_2_with_retries_2_on_2_runs_three_times(runner: LocalRunner, tmp_path: Path) -> None:
    attempts: list[tuple[int, int | None]] = []
    spec = with_retries(make_spec("retry-2", counting(tmp_path, "exit 2")), 2, (2,))
    outcome = await runner.run(spec, on_attempt=lambda n, code: attempts.append((n, code)))

    assert runs(tmp_path) == 3
    assert outcome.status is Status.FAILED and outcome.exit_code == 2
    assert outcome.attempts == (2, 2, 2)
    assert outcome.reason == "exit code 2 after 3 attempts, no retry left"
    assert attempts == [(2, 2), (3, 2)]
    lines = outcome.logs[0].text.text().splitlines()[1:]
    assert lines == [
        "run 1",
        "",
        "--- jes: attempt 2/3 (the last one ended with exit code 2) ---",
        "run 2",
        "",
        "--- jes: attempt 3/3 (the last one ended with exit code 2) ---",
        "run 3",
    ]


async def test_an_exit_code_not_listed_fails_at_once(runner: LocalRunner, tmp_path: Path) -> None:
    attempts: list[tuple[int, int | None]] = []
    spec = with_retries(make_spec("retry-1", counting(tmp_path, "exit 1")), 2, (2,))
    outcome = await runner.run(spec, on_attempt=lambda n, code: attempts.append((n, code)))

    assert runs(tmp_path) == 1 and attempts == []
    assert outcome.status is Status.FAILED and outcome.exit_code == 1 and outcome.attempts == (1,)
    assert outcome.reason == "exit code 1, not retried: retryOnExitCodes is [2]"


async def test_without_exit_codes_every_failure_is_retried_and_a_later_success_wins(
    runner: LocalRunner, tmp_path: Path
) -> None:
    spec = with_retries(make_spec("retry-ok", counting(tmp_path, 'test "$n" -ge 2 || exit 7')), 3)
    outcome = await runner.run(spec)

    assert runs(tmp_path) == 2
    assert outcome.status is Status.SUCCEEDED and outcome.exit_code == 0
    assert outcome.attempts == (7, 0) and outcome.reason == "exit code 0 on attempt 2/4"


async def test_a_signal_counts_as_its_exit_code(runner: LocalRunner, tmp_path: Path) -> None:
    # (``$$`` is the escape of ``$`` in a task's command, as the kubelet expands it)
    spec = with_retries(make_spec("retry-sig", counting(tmp_path, "kill -TERM $$$$")), 1, (143,))
    outcome = await runner.run(spec)
    assert runs(tmp_path) == 2 and outcome.attempts == (143, 143)


async def test_without_retries_nothing_changes(runner: LocalRunner, tmp_path: Path, state_dir: Path) -> None:
    outcome = await runner.run(make_spec("no-retry", counting(tmp_path, "exit 2")))
    assert runs(tmp_path) == 1 and outcome.attempts == () and outcome.reason == "exit code 2"
    assert "attempts" not in (state_dir / RUNS_DIR / "no-retry" / shim.STATUS).read_text()


async def test_the_deadline_covers_every_attempt(runner: LocalRunner, tmp_path: Path) -> None:
    """maxPollDuration counts from the first start, as a Job's activeDeadlineSeconds covers all its pods."""
    spec = with_retries(make_spec("retry-slow", counting(tmp_path, "sleep 0.6; exit 2"), max_poll_duration_s=1), 5)
    outcome = await runner.run(spec)
    assert outcome.status is Status.TIMED_OUT and runs(tmp_path) == 2
    assert outcome.attempts[0] == 2 and len(outcome.attempts) == 2


async def test_a_restarted_jes_adopts_the_task_between_attempts(state_dir: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    body = f'test "$n" -ge 2 && while [ ! -e {gate} ]; do sleep 0.02; done; exit 2'
    spec = with_retries(make_spec("retry-adopt", counting(tmp_path, body)), 2, (2,))
    first = LocalRunner(state_dir=state_dir)
    seen_first: list[tuple[int, int | None]] = []
    running = asyncio.create_task(first.run(spec, on_attempt=lambda n, code: seen_first.append((n, code))))
    await wait_until(lambda: seen_first == [(2, 2)], what="the second attempt")
    running.cancel()  # jes goes away; the shim keeps supervising the task
    await asyncio.gather(running, return_exceptions=True)
    await first.close()

    second = LocalRunner(state_dir=state_dir)
    seen: list[tuple[int, int | None]] = []
    adopted = asyncio.create_task(second.run(spec, on_attempt=lambda n, code: seen.append((n, code))))
    await asyncio.sleep(0.1)
    gate.touch()
    outcome = await adopted

    assert runs(tmp_path) == 3
    assert outcome.status is Status.FAILED and outcome.attempts == (2, 2, 2)
    assert outcome.reason == "exit code 2 after 3 attempts, no retry left"
    assert seen == [(3, 2)], "attempts before the adoption are not reported again"
    await second.forget("retry-adopt")
