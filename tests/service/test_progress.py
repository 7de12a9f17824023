"""Progress: a best-effort ``.status.changed`` when each task starts and when it ends, in order,
with both runners; a task read again after a restart is not announced twice."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.service.support import (
    jes_settings,
    put_config,
    restarted_between_tasks,
    running,
    sequence_done,
    task_events,
    trigger_body,
    wait_until,
)
from tests.service.test_end_to_end import config_with, sh
from tests.service.test_on_error import image_task


def progress_messages(plane: LocalControlPlane, context: str) -> list[str]:
    return [e["data"]["message"] for e in task_events(plane, context) if e["type"].endswith(".status.changed")]


def progress_tasks(plane: LocalControlPlane, context: str) -> list[dict[str, Any]]:
    return [e["data"]["jes"]["task"] for e in task_events(plane, context) if e["type"].endswith(".status.changed")]


async def test_local_each_task_is_announced_when_it_starts_and_ends(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(
        plane,
        config_with(sh("build", "echo built") + sh("lint", "exit 4", onError="warning") + sh("tests", "exit 3")),
    )
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    messages = progress_messages(plane, context)
    assert len(messages) == 6, messages
    assert messages[0] == "task 1/3 'build' started (image alpine)"
    assert re.fullmatch(r"task 1/3 'build' succeeded in \d+\.\d s", messages[1])
    assert messages[2] == "task 2/3 'lint' started (image alpine)"
    assert re.fullmatch(
        r"task 2/3 'lint' failed after \d+\.\d s: exit code 4 — onError: warning, the next tasks still run",
        messages[3],
    )
    assert messages[4] == "task 3/3 'tests' started (image alpine)"
    assert re.fullmatch(r"task 3/3 'tests' failed after \d+\.\d s: exit code 3", messages[5])
    ended = progress_tasks(plane, context)[5]
    assert (ended["status"], ended["exitCode"], ended["index"], ended["count"]) == ("failed", 3, 2, 3)
    finished = task_events(plane, context)[-1]
    assert finished["type"].endswith(".finished"), "progress is delivered before the .finished"


async def test_kubernetes_a_task_done_before_a_restart_is_not_announced_again(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="example.com/first:1", logs="first\n")
    kube.behave(image="alpine", logs="slow\n", duration_s=1.5)
    context = await restarted_between_tasks(plane, kube, tmp_path, config_with(image_task("first", "example.com/first:1") + image_task("second", "alpine")))
    messages = progress_messages(plane, context)
    assert [m.split(" ", 3)[1:3] + [m.split(" ")[3]] for m in messages] == [
        ["1/2", "'first'", "started"],
        ["1/2", "'first'", "succeeded"],
        ["2/2", "'second'", "started"],
        ["2/2", "'second'", "succeeded"],
    ], messages
