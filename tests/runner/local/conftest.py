"""Fixtures of the local runner's tests: a started runner on a fresh state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jes.runner.local.runner import LocalRunner


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir()
    return path


@pytest.fixture
async def runner(state_dir: Path, secrets_dir: Path) -> AsyncIterator[LocalRunner]:
    local = LocalRunner(state_dir=state_dir, secrets_dir=secrets_dir, kill_grace_s=0.5)
    await local.start()
    yield local
    # Stop whatever a failed test left running, and its state.
    for job_name in await local.list_jobs():
        await local.forget(job_name)
    await local.close()
