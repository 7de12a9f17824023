"""Task outputs with the local runner: ``$KEPTN_OUTPUT_FILE`` is ``output.json`` in the task's state
directory, read when the task ended — again after a restart, since the file stays until jes forgets
the task — and judged as on Kubernetes (:mod:`jes.runner.outputs`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jes.models import EnvValue, Status
from jes.runner import outputs
from jes.runner.local.runner import LocalRunner
from tests.runner.local.support import make_spec

WRITE = 'printf "%s" "$OUT" > "$KEPTN_OUTPUT_FILE"'


@pytest.fixture
async def output_runner(state_dir: Path) -> AsyncIterator[LocalRunner]:
    local = LocalRunner(state_dir=state_dir, kill_grace_s=0.5, task_outputs=True, max_output_bytes=64 * 1024)
    await local.start()
    yield local
    for job_name in await local.list_jobs():
        await local.forget(job_name)
    await local.close()


def writing(job: str, text: str, *, exit_code: int = 0) -> object:
    return make_spec(job, ["sh", "-c", f"{WRITE}; exit {exit_code}"], env=[EnvValue("OUT", text)])


async def test_the_output_file_reaches_the_outcome(output_runner: LocalRunner, state_dir: Path) -> None:
    output = {"test": {"start": "2026-12-05T03:00:00Z", "end": "2026-12-05T03:01:00Z"}, "pad": "p" * 20_000}
    spec = writing("job-out", json.dumps(output))

    result = await output_runner.run(spec)  # type: ignore[arg-type]

    assert result.status is Status.SUCCEEDED, result.reason
    assert result.output == output
    assert (state_dir / "local-runner" / "job-out" / "output.json").exists()


async def test_a_restarted_runner_reads_the_output_again(output_runner: LocalRunner, state_dir: Path) -> None:
    spec = writing("job-again", '{"a": 1}')
    first = await output_runner.run(spec)  # type: ignore[arg-type]
    restarted = LocalRunner(state_dir=state_dir, task_outputs=True)
    await restarted.start()

    again = await restarted.run(spec, adopt_only=True)  # type: ignore[arg-type]

    assert first.output == again.output == {"a": 1}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"just a string"', "not a JSON object (found a string)"),
        ("{oops", "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ("x" * (64 * 1024 + 1), "is larger than 65536 bytes (JES_MAX_OUTPUT_BYTES)"),
    ],
)
async def test_an_invalid_output_fails_the_task(
    output_runner: LocalRunner, state_dir: Path, text: str, problem: str
) -> None:
    spec = writing("job-bad", text)

    result = await output_runner.run(spec)  # type: ignore[arg-type]

    path = state_dir / "local-runner" / "job-bad" / "output.json"
    assert result.status is Status.FAILED
    assert result.reason.startswith(f"output file {path}: {problem}"), result.reason
    assert result.output is None


async def test_a_symlink_is_refused(output_runner: LocalRunner) -> None:
    spec = make_spec("job-link", ["sh", "-c", 'ln -s /etc/hostname "$KEPTN_OUTPUT_FILE"'])
    result = await output_runner.run(spec)
    assert result.status is Status.FAILED and "is a symbolic link" in result.reason


async def test_a_failed_task_keeps_its_reason_and_a_valid_output(output_runner: LocalRunner) -> None:
    result = await output_runner.run(writing("job-fail", '{"test": {}}', exit_code=4))  # type: ignore[arg-type]
    assert result.status is Status.FAILED and result.reason == "exit code 4"
    assert result.output == {"test": {}}
    bad = await output_runner.run(writing("job-fail-bad", "[]", exit_code=4))  # type: ignore[arg-type]
    assert bad.reason.startswith("exit code 4; and its output file ") and bad.reason.endswith(
        "not a JSON object (found a list); write an object such as {\"test\": {}}"
    )


async def test_without_outputs_the_variable_is_the_tasks_own(runner: LocalRunner) -> None:
    spec = make_spec("job-off", ["sh", "-c", 'echo "[$KEPTN_OUTPUT_FILE]"'], env=[EnvValue("KEPTN_OUTPUT_FILE", "mine")])
    result = await runner.run(spec)
    assert result.output is None
    assert result.logs[0].text.text().endswith("\n[mine]\n")


def test_parse_judges_the_content() -> None:
    assert outputs.parse(b"", "f") == (None, "")
    assert outputs.parse(b"  \n", "f") == (None, "")
    assert outputs.parse(b'{"a": 1}', "f") == ({"a": 1}, "")
    assert outputs.parse(b"null", "f")[1] == 'output file f: not a JSON object (found null); write an object such as {"test": {}}'
    assert outputs.parse(b"12", "f")[1].startswith("output file f: not a JSON object (found a number)")
    assert outputs.parse(b"\xff{}", "f")[1] == "output file f: not UTF-8 text (byte 0)"
    assert outputs.parse(b"[" * 100_000, "f")[1].startswith("output file f: not valid JSON")
