"""Helpers of the local runner's tests: task specs (also built by crash-test child processes), waiting."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from jes.models import EnvEntry, EventInfo, RenderedTask, TaskFiles, TaskSpec

EVENT = EventInfo(
    id="0f1e2d3c-event",
    type="sh.keptn.event.test.triggered",
    source="tests",
    keptn_context="ctx-1",
    git_commit_id="",
    project="proj",
    stage="dev",
    service="svc",
)


def make_spec(
    job_name: str,
    cmd: Sequence[str] | None,
    args: Sequence[str] | None = None,
    *,
    env: Sequence[EnvEntry] = (),
    working_dir: str = "",
    files: Mapping[str, bytes] | None = None,
    max_poll_duration_s: int = 60,
    image: str = "alpine",
) -> TaskSpec:
    task = RenderedTask(
        action_index=0,
        task_index=0,
        action_name="action",
        name="task",
        image=image,
        image_pull_policy="IfNotPresent",
        cmd=tuple(cmd) if cmd is not None else None,
        args=tuple(args) if args is not None else None,
        working_dir=working_dir,
        env=tuple(env),
        files=tuple(files or ()),
        resources=None,
        max_poll_duration_s=max_poll_duration_s,
        ttl_seconds_after_finished=60,
        namespace="default",
        service_account="",
        security_context={},
        annotations={},
        image_pull_secrets=(),
    )
    spool = Path(tempfile.mkdtemp(prefix="jes-test-files-"))
    safe = {name: content for name, content in (files or {}).items() if ".." not in name}
    spooled = TaskFiles.of(spool, safe)
    spooled.sizes = {name: len(content) for name, content in (files or {}).items()}  # also the unsafe names
    return TaskSpec(task=task, event=EVENT, job_name=job_name, files=spooled)


async def wait_until(condition: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
