"""NATS mode, jes as a real process killed with SIGKILL mid-event: nothing lost, nothing doubled.

Core NATS gave the message to a member that died; the claim (or, before the claim, the
triggered-event API asked every JES_NATS_RECONCILE_S) brings it back after the restart."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from jes.devtools.demonats import proxy_environment
from tests.natsserver import NatsServer
from tests.service.support import (
    DATASTORE_LAG_S,
    SEED,
    TOKEN,
    jes_environment,
    jes_process,
    ledger_check,
    put_config,
    sequence_done,
    trigger_body,
)
from tests.service.test_crash_safety import assert_each_task_ran_once, counting_config, registered, wait


@pytest.fixture
def nats_plane(nats: NatsServer) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED, datastore_lag_s=DATASTORE_LAG_S, nats_url=nats.url) as plane:
        yield plane


def nats_environment(plane: LocalControlPlane, nats: NatsServer, state_dir: Path) -> dict[str, str]:
    env = jes_environment(plane, state_dir)
    del env["KEPTN_API_ENDPOINT"], env["KEPTN_API_TOKEN"]
    return env | proxy_environment(plane.base_url) | {"PUBSUB_URL": nats.url, "PUBSUB_GROUP": "jes", "JES_NATS_RECONCILE_S": "1"}


@pytest.mark.parametrize("seed", range(4))
def test_a_member_killed_with_9_mid_event_loses_nothing(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    markers = tmp_path / "markers"
    markers.mkdir()
    put_config(nats_plane, counting_config(markers, 0.3))
    env = nats_environment(nats_plane, nats, tmp_path / "state")
    runs = [f"n{seed}-{i}" for i in range(3)]
    with jes_process(env, tmp_path / "jes.log") as process:
        wait(lambda: registered(nats_plane), what="registration")
        contexts = [nats_plane.trigger_sequence(trigger_body(run=run)) for run in runs]
        time.sleep(rng.uniform(0.05, 0.6))  # the first event is being worked on
        process.send_signal(signal.SIGKILL)
        process.wait()
    with jes_process(env, tmp_path / "jes.log") as last:
        wait(lambda: all(sequence_done(nats_plane, c) for c in contexts), timeout_s=30,
             what="every sequence after the restart")  # fmt: skip
        last.send_signal(signal.SIGTERM)
        assert last.wait(timeout=10) == 0
    ledger_check(nats_plane)
    assert_each_task_ran_once(markers, runs)
