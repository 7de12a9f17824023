"""The local runner's volumes: directories mapped like /keptn, named by JES_VOLUME_<NAME>_DIR; an
emptyDir in the task's own folder (gone with it), a claim under <state dir>/volumes/<claimName>."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from jes.models import Status, TaskSpec, TaskVolume
from jes.runner.local.prepare import volume_variable
from jes.runner.local.runner import RUNS_DIR, VOLUMES_DIR, LocalRunner
from tests.runner.local.support import make_spec

PY = sys.executable
REPORT = (
    "import json, os, sys; "
    "print(json.dumps([sys.argv[1:], os.getcwd(), {k: v for k, v in os.environ.items() if k.startswith('JES_')}]))"
)


def with_volumes(spec: TaskSpec, *volumes: TaskVolume) -> TaskSpec:
    return replace(spec, task=replace(spec.task, volumes=volumes))


def report(text: str) -> tuple[list[str], str, dict[str, str]]:
    argv, cwd, env = json.loads(text.splitlines()[-1])
    return argv, cwd, env


def test_volume_variable_names() -> None:
    assert volume_variable("shared-data") == "JES_VOLUME_SHARED_DATA_DIR"
    assert volume_variable("cache") == "JES_VOLUME_CACHE_DIR"


async def test_volumes_are_mapped_named_and_created(runner: LocalRunner, state_dir: Path) -> None:
    args = ["/data/in", "/cache", "/data2", "/keptn/f", "--out=/data/x", "/data/cache/deep"]
    spec = with_volumes(
        make_spec("vol-job", [PY, "-c", REPORT], args, working_dir="/cache/work"),
        TaskVolume("data", "/data", claim_name="shared-data", read_only=True),
        TaskVolume("cache", "/cache", size_limit="1Gi"),
        TaskVolume("nested", "/data/cache"),
    )
    outcome = await runner.run(spec)

    assert outcome.succeeded, outcome.logs[0].text.text()
    argv, cwd, env = report(outcome.logs[0].text.text())
    claim = state_dir / VOLUMES_DIR / "shared-data"
    job = state_dir / RUNS_DIR / "vol-job"
    cache, nested = job / VOLUMES_DIR / "cache", job / VOLUMES_DIR / "nested"
    # Only whole leading mount paths are mapped, the longest first, each once.
    assert argv == [f"{claim}/in", str(cache), "/data2", f"{job}/files/f", "--out=/data/x", f"{nested}/deep"]
    assert cwd == f"{cache}/work", "a working directory inside a volume is created, as a container runtime does"
    assert env["JES_VOLUME_DATA_DIR"] == str(claim)
    assert env["JES_VOLUME_CACHE_DIR"] == str(cache)
    assert env["JES_VOLUME_NESTED_DIR"] == str(nested)
    assert claim.is_dir() and cache.is_dir() and nested.is_dir()

    await runner.forget("vol-job")
    assert not job.exists(), "an emptyDir goes with its task"
    assert claim.is_dir(), "a claim's directory is kept"


async def test_a_claim_is_shared_between_tasks(runner: LocalRunner, state_dir: Path) -> None:
    data = TaskVolume("data", "/data", claim_name="results")
    write = with_volumes(make_spec("write-job", ["/bin/sh", "-c", 'echo 42 > "$1/answer"', "sh", "/data"]), data)
    assert (await runner.run(write)).succeeded
    await runner.forget("write-job")
    read = with_volumes(make_spec("read-job", ["/bin/sh", "-c", 'cat "$1/answer"', "sh", "/data"]), data)
    outcome = await runner.run(read)
    assert outcome.succeeded and outcome.logs[0].text.text().splitlines()[-1] == "42"
    assert (state_dir / VOLUMES_DIR / "results" / "answer").read_text() == "42\n"


async def test_a_volume_name_that_is_no_directory_name_is_refused(runner: LocalRunner) -> None:
    """The matcher only lets DNS-1123 names through; the runner does not rely on it for paths."""
    spec = with_volumes(make_spec("bad-job", ["true"]), TaskVolume("v", "/v", claim_name="../../etc"))
    outcome = await runner.run(spec)
    assert outcome.status is Status.ERROR and "cannot name a local directory" in outcome.reason
