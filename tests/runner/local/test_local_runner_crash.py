"""Crash safety of the local runner: adopting after jes was killed, recorded outcomes, lost shims.

"jes" here is a separate Python process that runs one task and is killed with SIGKILL mid-task;
a new LocalRunner on the same state directory then finishes the job. Tasks wait on a gate file the
test creates, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jes.models import EnvValue, Status, TaskSpec
from jes.runner.local import shim
from jes.runner.local.runner import RUNS_DIR, LocalRunner
from jes.util import fsutil
from tests.runner.local.support import make_spec, process_gone, wait_until

REPO = Path(__file__).resolve().parents[3]

# Waits for $GATE, counts its runs in $RUNS, then fails with a recognisable exit code.
GATED = 'echo run >> "$RUNS"; echo started; while [ ! -e "$GATE" ]; do sleep 0.02; done; echo finishing; exit 4'

JES_PROCESS = """
import asyncio, sys
from jes.runner.local.runner import LocalRunner
from jes.models import EnvValue
from tests.runner.local.support import make_spec

async def main() -> None:
    runner = LocalRunner(state_dir=sys.argv[1])
    await runner.start()
    env = (EnvValue("GATE", sys.argv[3]), EnvValue("RUNS", sys.argv[4]))
    await runner.run(make_spec(sys.argv[2], ["/bin/sh", "-c", sys.argv[5]], env=env))

asyncio.run(main())
"""


def gated_spec(job_name: str, tmp_path: Path) -> TaskSpec:
    env = (EnvValue("GATE", str(tmp_path / "gate")), EnvValue("RUNS", str(tmp_path / "runs")))
    return make_spec(job_name, ["/bin/sh", "-c", GATED], env=env)


def runs(tmp_path: Path) -> int:
    path = tmp_path / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


async def start_jes_and_kill_it(state_dir: Path, tmp_path: Path, job_name: str) -> None:
    """Run the gated task from a separate jes process; SIGKILL that process once the task runs."""
    jes = subprocess.Popen(
        [
            sys.executable,
            "-c",
            JES_PROCESS,
            str(state_dir),
            job_name,
            str(tmp_path / "gate"),
            str(tmp_path / "runs"),
            GATED,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        await wait_until(lambda: runs(tmp_path) == 1, what="the task to start")
    finally:
        jes.send_signal(signal.SIGKILL)
        jes.wait()


@pytest.fixture
def job_dir(state_dir: Path) -> Path:
    return state_dir / RUNS_DIR / "crash-job"


async def test_a_running_task_is_adopted_after_jes_was_killed(
    runner: LocalRunner, state_dir: Path, tmp_path: Path, job_dir: Path
) -> None:
    await start_jes_and_kill_it(state_dir, tmp_path, "crash-job")
    assert not (job_dir / shim.STATUS).exists()  # the task outlived jes and is still running

    running: list[bool] = []
    adopted = asyncio.create_task(
        runner.run(gated_spec("crash-job", tmp_path), on_running=lambda: running.append(True))
    )
    await wait_until(lambda: running == [True], what="on_running for the adopted task")
    (tmp_path / "gate").touch()
    outcome = await adopted

    assert outcome.status is Status.FAILED and outcome.exit_code == 4
    assert outcome.logs[0].text.text().splitlines()[1:] == ["started", "finishing"]
    assert runs(tmp_path) == 1


async def test_a_task_that_finished_while_jes_was_down_returns_its_outcome(
    runner: LocalRunner, state_dir: Path, tmp_path: Path, job_dir: Path
) -> None:
    await start_jes_and_kill_it(state_dir, tmp_path, "crash-job")
    (tmp_path / "gate").touch()
    await wait_until(lambda: (job_dir / shim.STATUS).exists(), what="the task to finish")

    outcome = await runner.run(gated_spec("crash-job", tmp_path))

    assert outcome.status is Status.FAILED and outcome.exit_code == 4
    assert outcome.logs[0].text.text().splitlines()[1:] == ["started", "finishing"]
    assert runs(tmp_path) == 1


async def test_run_is_idempotent_across_runner_instances(state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "gate").touch()
    first = await LocalRunner(state_dir=state_dir).run(gated_spec("again-job", tmp_path))
    second = await LocalRunner(state_dir=state_dir).run(gated_spec("again-job", tmp_path))

    assert first == second
    assert runs(tmp_path) == 1


async def test_concurrent_runs_share_one_process(runner: LocalRunner, tmp_path: Path) -> None:
    spec = gated_spec("twice-job", tmp_path)
    both = [asyncio.create_task(runner.run(spec)) for _ in range(2)]
    await wait_until(lambda: runs(tmp_path) == 1, what="the task to start")
    (tmp_path / "gate").touch()
    first, second = await asyncio.gather(*both)

    assert first.status is second.status is Status.FAILED
    assert first.logs == second.logs
    assert runs(tmp_path) == 1


async def test_cancelling_run_leaves_the_task_running(runner: LocalRunner, tmp_path: Path) -> None:
    spec = gated_spec("cancel-job", tmp_path)
    waiting = asyncio.create_task(runner.run(spec))
    await wait_until(lambda: runs(tmp_path) == 1, what="the task to start")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    (tmp_path / "gate").touch()
    outcome = await runner.run(spec)
    assert outcome.exit_code == 4 and "finishing" in outcome.logs[0].text.text()
    assert runs(tmp_path) == 1


async def test_cancelling_right_after_the_call_still_starts_the_task_once(runner: LocalRunner, tmp_path: Path) -> None:
    spec = gated_spec("early-job", tmp_path)
    waiting = asyncio.create_task(runner.run(spec))
    await asyncio.sleep(0)  # run() has begun starting the task
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    (tmp_path / "gate").touch()
    outcome = await runner.run(spec)
    assert outcome.exit_code == 4
    assert runs(tmp_path) == 1


async def test_a_killed_shim_means_lost(runner: LocalRunner, tmp_path: Path, job_dir: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()));"
        "print('working', flush=True); time.sleep(30)"
    )
    waiting = asyncio.create_task(runner.run(make_spec("crash-job", [sys.executable, "-c", code])))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", what="the task to start")
    shim_pid = int(fsutil.read_json(job_dir / shim.SHIM)["pid"])  # type: ignore[index]

    os.kill(shim_pid, signal.SIGKILL)
    outcome = await waiting

    assert outcome.status is Status.LOST
    assert f"shim, pid {shim_pid}" in outcome.reason and "ended without a status" in outcome.reason
    assert "working" in outcome.logs[0].text.text()
    task_pid = int(pid_file.read_text())
    await wait_until(lambda: process_gone(task_pid), what="the orphaned task to be killed")
    # The verdict is recorded: asking again gives the same outcome.
    assert (await runner.run(make_spec("crash-job", [sys.executable, "-c", code]))).status is Status.LOST


async def test_state_of_a_jes_that_died_before_starting_the_shim_is_started_afresh(
    runner: LocalRunner, state_dir: Path, tmp_path: Path
) -> None:
    half = state_dir / RUNS_DIR / "half-job"
    (half / "files").mkdir(parents=True)
    (half / shim.OUTPUT).write_bytes(b"stale\n")
    (tmp_path / "gate").touch()

    outcome = await runner.run(gated_spec("half-job", tmp_path))

    assert outcome.exit_code == 4 and "stale" not in outcome.logs[0].text.text()
    assert runs(tmp_path) == 1


async def test_adopt_only_never_starts_a_task(runner: LocalRunner, tmp_path: Path) -> None:
    (tmp_path / "gate").touch()
    outcome = await runner.run(gated_spec("adopt-job", tmp_path), adopt_only=True)

    assert outcome.status is Status.LOST and "no process or outcome" in outcome.reason
    assert runs(tmp_path) == 0 and await runner.list_jobs() == []

    finished = await runner.run(gated_spec("adopt-job", tmp_path))
    assert await runner.run(gated_spec("adopt-job", tmp_path), adopt_only=True) == finished
    assert runs(tmp_path) == 1
