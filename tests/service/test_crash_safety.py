"""Nothing lost, nothing doubled: jes as a real process, killed with SIGKILL at seeded points,
stopped with SIGTERM with work in flight, restarted. Every run ends with a ledger check: per
triggered event exactly one .started and one .finished, and every task ran exactly once."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from tests.service.support import (
    TOKEN,
    jes_environment,
    jes_process,
    ledger_check,
    put_config,
    sequence_done,
    trigger_body,
    wait_for_sigterm_handler,
)


def counting_config(markers: Path, seconds: float) -> str:
    """One task that appends a line per run to markers/<label run> and then sleeps."""
    script = f"echo ran >> {markers}/$LABELS_RUN; sleep {seconds}; echo finished $LABELS_RUN"
    return (
        "apiVersion: v2\nactions:\n  - name: count\n    events: [{name: sh.keptn.event.sayhello.triggered}]\n"
        f"    tasks:\n      - name: count\n        image: alpine\n        cmd: [/bin/sh, -c]\n        args: ['{script}']\n"
    )


def wait(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def registered(plane: LocalControlPlane) -> bool:
    return bool(plane.integrations())


def assert_each_task_ran_once(markers: Path, runs: list[str]) -> None:
    for run in runs:
        assert (markers / run).read_text().splitlines() == ["ran"], run


@pytest.mark.parametrize("seed", range(8))
def test_kill_9_at_seeded_points_then_restart(plane: LocalControlPlane, tmp_path: Path, seed: int) -> None:
    """Four events in a row; jes is killed twice at seeded moments and restarted each time."""
    rng = random.Random(seed)
    markers = tmp_path / "markers"
    markers.mkdir()
    put_config(plane, counting_config(markers, 0.3))
    env = jes_environment(plane, tmp_path / "state")
    runs = [f"r{seed}-{i}" for i in range(4)]
    contexts = []
    for kill in range(2):
        with jes_process(env, tmp_path / "jes.log") as process:
            wait(lambda: registered(plane), what="registration")
            if kill == 0:
                for run in runs:
                    contexts.append(plane.trigger_sequence(trigger_body(run=run)))
                    time.sleep(rng.uniform(0, 0.1))
            time.sleep(rng.uniform(0, 1.0))
            process.send_signal(signal.SIGKILL)
            process.wait()
    with jes_process(env, tmp_path / "jes.log") as last:
        wait(lambda: all(sequence_done(plane, c) for c in contexts), what="every sequence after the restarts")
        wait_for_sigterm_handler(last)  # the sequences may be done before this process even started
        last.send_signal(signal.SIGTERM)
        assert last.wait(timeout=10) == 0
    ledger_check(plane)
    assert_each_task_ran_once(markers, runs)
    for context in contexts:
        assert (
            plane.events(type="sh.keptn.event.dev.sequence1.finished", keptn_context=context)[0]["data"]["result"]
            == "pass"
        )


def test_sigterm_lets_in_flight_tasks_finish_and_flushes_reports(plane: LocalControlPlane, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    put_config(plane, counting_config(markers, 1.0))
    env = jes_environment(plane, tmp_path / "state", JES_SHUTDOWN_GRACE_S="10")
    with jes_process(env, tmp_path / "jes.log") as process:
        wait(lambda: registered(plane), what="registration")
        context = plane.trigger_sequence(trigger_body(run="term"))
        wait(lambda: bool(plane.events(type="sh.keptn.event.sayhello.started", keptn_context=context)), what=".started")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert sequence_done(plane, context), "the in-flight task finished and its .finished was sent before exit"
    ledger_check(plane)
    assert_each_task_ran_once(markers, ["term"])


def test_sigterm_past_the_grace_period_hands_over_to_the_next_start(plane: LocalControlPlane, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    put_config(plane, counting_config(markers, 1.5))
    env = jes_environment(plane, tmp_path / "state", JES_SHUTDOWN_GRACE_S="0.2")
    with jes_process(env, tmp_path / "jes.log") as process:
        wait(lambda: registered(plane), what="registration")
        context = plane.trigger_sequence(trigger_body(run="handover"))
        wait(lambda: (markers / "handover").exists(), what="the task to start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert not sequence_done(plane, context)
    with jes_process(env, tmp_path / "jes.log") as process:
        wait(lambda: sequence_done(plane, context), what="the restarted jes to finish the event")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    ledger_check(plane)
    assert_each_task_ran_once(markers, ["handover"])
    assert TOKEN not in (tmp_path / "jes.log").read_text()


@pytest.mark.parametrize("seed", range(4))
def test_sigterm_or_sigint_during_start_up_ends_with_exit_0(plane: LocalControlPlane, tmp_path: Path, seed: int) -> None:
    """At a seeded moment of the start-up (an event is open, so start-up has work to pick up), then
    a restart: the event is handled once, so nothing was left half-written."""
    rng = random.Random(seed)
    signum = signal.SIGTERM if seed % 2 == 0 else signal.SIGINT
    markers = tmp_path / "markers"
    markers.mkdir()
    put_config(plane, counting_config(markers, 0.2))
    env = jes_environment(plane, tmp_path / "state")
    context = plane.trigger_sequence(trigger_body(run=f"s{seed}"))
    with jes_process(env, tmp_path / "jes.log") as process:
        wait_for_sigterm_handler(process)
        time.sleep(rng.uniform(0, 0.8))
        process.send_signal(signum)
        assert process.wait(timeout=15) == 0
    with jes_process(env, tmp_path / "jes.log") as process:
        wait(lambda: sequence_done(plane, context), what="the sequence after the restart")
        wait_for_sigterm_handler(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    ledger_check(plane)
    assert_each_task_ran_once(markers, [f"s{seed}"])
