"""Nothing lost, nothing doubled with the kubernetes runner and the Lease ledger: real ``jes serve``
processes against the fake Kubernetes API, killed with SIGKILL at seeded points, frozen with
SIGSTOP past their lease while another replica takes over, then resumed. The control plane's
datastore lags behind, as Keptn's does."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from jes.ledger import leases
from tests.service.support import (
    jes_environment,
    jes_process,
    ledger_check,
    sequence_done,
    trigger_body,
    wait_for_sigterm_handler,
)

pytestmark = pytest.mark.slow


def wait(predicate: Any, timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


class Created:
    """Jobs and pods the fake API ever stored, per Job name (so "ran once" is checkable)."""

    def __init__(self, kube: FakeKube) -> None:
        self.jobs: Counter[str] = Counter()
        self.pods: Counter[str] = Counter()
        self._lock = threading.Lock()
        kube.store_listener(self._note)

    def _note(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        if kind != "ADDED":
            return
        with self._lock:
            if plural == "jobs":
                self.jobs[obj["metadata"]["name"]] += 1
            elif plural == "pods":
                self.pods[obj["metadata"].get("labels", {}).get("job-name", "")] += 1

    def assert_each_task_ran_once(self, expected: int) -> None:
        assert len(self.jobs) == expected and set(self.jobs.values()) == {1}, self.jobs
        assert len(self.pods) == expected and set(self.pods.values()) == {1}, self.pods


def kube_environment(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, holder: str) -> dict[str, str]:
    config = kube.kubeconfig(tmp_path / "kubeconfig", namespace="keptn-jes")
    return jes_environment(
        plane,
        tmp_path / holder,
        JES_RUNNER="kubernetes",
        KUBECONFIG=str(config),
        K8S_NAMESPACE="keptn-jes",
        JOB_NAMESPACE="keptn-jes",
        K8S_POD_NAME=holder,
        JES_LEASE_DURATION_S="2",
        JES_LEASE_RENEW_S="0.5",
        JES_DATASTORE_SETTLE_S="1",
        JES_PENDING_GRACE_S="5",
    )


def registered(plane: LocalControlPlane) -> bool:
    return bool(plane.integrations())


def claim_holders(kube: FakeKube) -> dict[str, str]:
    found = {}
    for lease in kube.objects("leases", "keptn-jes"):
        if lease["metadata"]["labels"].get(leases.CLAIM_LABEL) == "event":
            found[lease["metadata"]["name"]] = (lease.get("spec") or {}).get("holderIdentity") or ""
    return found


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_with_the_kubernetes_runner_at_seeded_points(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, seed: int
) -> None:
    """Four events; jes killed twice at seeded moments. Odd seeds come back as a new pod (another
    holder name: the claims are taken over once their holder is seen dead), even seeds as the same
    pod restarting its container (resumed at once)."""
    rng = random.Random(seed)
    kube.behave(image="alpine", logs="hello from the job\n", duration_s=0.4)
    created = Created(kube)
    contexts: list[str] = []
    log = tmp_path / "jes.log"
    for round_ in range(3):
        holder = f"jes-{round_}" if seed % 2 else "jes-0"
        env = kube_environment(plane, kube, tmp_path, holder)
        with jes_process(env, log) as process:
            if round_ == 0:
                wait(lambda: registered(plane), what="registration")
                for _ in range(4):
                    contexts.append(plane.trigger_sequence(trigger_body("EU")))
                    time.sleep(rng.uniform(0, 0.2))
            if round_ < 2:
                time.sleep(rng.uniform(0.2, 2.0))
                process.send_signal(signal.SIGKILL)
                process.wait()
                continue
            wait(lambda: all(sequence_done(plane, c) for c in contexts), what="every sequence after the restarts")
            wait_for_sigterm_handler(process)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
    ledger_check(plane)
    created.assert_each_task_ran_once(4)
    for context in contexts:
        finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]["data"]
        assert finished["result"] == "pass", finished["message"]


def test_a_replica_frozen_past_its_lease_is_fenced_out(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path) -> None:
    """SIGSTOP the replica running the task for longer than JES_LEASE_DURATION_S: the other one takes
    the event over, adopts the Job and reports. SIGCONT: the frozen one learns on its next write
    that the claim is not its own any more, and sends nothing."""
    kube.behave(image="alpine", logs="the task\n", duration_s=3600)
    created = Created(kube)
    log = tmp_path / "jes.log"
    with (
        jes_process(kube_environment(plane, kube, tmp_path, "jes-a"), log) as a,
        jes_process(kube_environment(plane, kube, tmp_path, "jes-b"), log) as b,
    ):
        wait(lambda: len(plane.integrations()) >= 1, what="registration")
        context = plane.trigger_sequence(trigger_body("EU"))
        wait(lambda: kube.objects("pods", "keptn-jes"), what="the task's pod")
        (holder,) = wait(lambda: set(claim_holders(kube).values()) - {""}, what="the claim's holder")
        frozen, other = (a, "jes-b") if holder == "jes-a" else (b, "jes-a")
        frozen.send_signal(signal.SIGSTOP)
        try:
            wait(lambda: set(claim_holders(kube).values()) == {other}, timeout_s=20, what="the takeover")
            kube.clock.advance(3600)  # the task ends while the first holder is frozen
            wait(lambda: sequence_done(plane, context), what="the other replica to report")
        finally:
            frozen.send_signal(signal.SIGCONT)
        time.sleep(3.0)  # the thawed replica sees the Job end and tries to report
        for process in (a, b):
            wait_for_sigterm_handler(process)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
    ledger_check(plane)
    created.assert_each_task_ran_once(1)
    finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)
    assert len(finished) == 1 and "the task" in finished[0]["data"]["message"]
