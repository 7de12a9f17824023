"""Helpers for end-to-end tests: a local control plane, jes in-process or as a process, ledgers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from fakes.fake_kube import FakeKube
from jes import settings
from jes.devtools.controlplane.server import LocalControlPlane
from jes.ledger import leases
from jes.runner.kubernetes.runner import KubernetesRunner
from jes.service.core import Service
from jes.util import retry

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "control-plane"
TOPIC = "sh.keptn.event.sayhello.triggered"
SEQUENCE = "sh.keptn.event.dev.sequence1.triggered"
TOKEN = "service-tests-s3cret-token"
#: The local control plane's datastore shows events this much later (Keptn fills it asynchronously).
DATASTORE_LAG_S = 0.3


def trigger_body(location: str = "APAC", **labels: str) -> dict[str, Any]:
    return {
        "data": {
            "labels": {"foo": "bar - labels are optional", **labels},
            "project": "my-first-project",
            "service": "service1",
            "stage": "dev",
            "sayhello": {"location": location},
        },
        "source": "postman",
        "type": SEQUENCE,
        "specversion": "1.0",
        "shkeptnspecversion": "0.2.3",
    }


def jes_settings(plane: LocalControlPlane, state_dir: Path, **overrides: Any) -> settings.Settings:
    values: dict[str, Any] = {
        "keptn_api_endpoint": plane.url,
        "keptn_api_token": plane.token,
        "pubsub_topics": (TOPIC,),
        "http_polling_interval_s": 0.05,
        "heartbeat_interval_s": 1.0,
        "runner": "local",
        "state_dir": str(state_dir),
        "health_endpoint_port": 0,
        "k8s_namespace": "keptn-jes",
        "k8s_pod_name": "jes-test",
        "shutdown_grace_s": 5.0,
        "datastore_settle_s": 1.0,
        "lease_duration_s": 1.5,
        "lease_renew_s": 0.3,
    }
    values.update(overrides)
    return settings.Settings(**values)


@contextlib.asynccontextmanager
async def running(current: settings.Settings, **kwargs: Any) -> AsyncIterator[Service]:
    service = Service(current, health_host="127.0.0.1", **kwargs)
    await service.start()
    try:
        yield service
    finally:
        await service.shutdown()


#: Quick retries of Kubernetes calls in tests.
FAST = retry.Backoff((0.01, 0.05, 0.1, 0.2))
#: Quick retries of a whole event in tests (the service's default starts at 1 s and ends at 60 s).
QUICK_INTAKE = retry.Backoff((0.1, 0.2, 0.5, 1.0), forever=True)


def make_kube_service(
    plane: LocalControlPlane,
    kube: FakeKube,
    tmp_path: Path,
    holder: str,
    *,
    wall_clock: Callable[[], float] = time.time,
    service_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> Service:
    """``jes serve`` in-process with the kubernetes runner and the Lease ledger on the fake API."""
    current = jes_settings(
        plane, tmp_path / holder, runner="kubernetes", k8s_pod_name=holder, job_namespace="keptn-jes", **overrides
    )
    client = kube.api_client()
    runner = KubernetesRunner.from_settings(current, client, backoff=FAST, pending_grace_s=0.5, watch_timeout_s=5)
    store = leases.LeaseLedger.from_settings(client, current, backoff=FAST, wall_clock=wall_clock)
    options: dict[str, Any] = {"intake_backoff": QUICK_INTAKE} | (service_options or {})
    return Service(current, runner=runner, store=store, kube=client, health_host="127.0.0.1", **options)


@contextlib.asynccontextmanager
async def started(service: Service) -> AsyncIterator[Service]:
    await service.start()
    try:
        yield service
    finally:
        if not service.http.is_closed:  # abandon() already stopped it
            await service.shutdown()


def jobs_created(kube: FakeKube) -> Counter[str]:
    """Create requests per Job name (a second request is answered 409 and the Job adopted)."""
    return Counter(job["metadata"]["name"] for job in kube.created_jobs)


def job_uids(kube: FakeKube) -> dict[str, str]:
    return {job["metadata"]["name"]: job["metadata"]["uid"] for job in kube.objects("jobs", "keptn-jes")}


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def sequence_done(plane: LocalControlPlane, context: str) -> bool:
    return bool(plane.events(type="sh.keptn.event.dev.sequence1.finished", keptn_context=context))


def task_events(plane: LocalControlPlane, context: str) -> list[dict[str, Any]]:
    return [e for e in plane.events(keptn_context=context) if e["type"].startswith("sh.keptn.event.sayhello.")]


def ledger_check(plane: LocalControlPlane, task: str = "sayhello") -> Counter[tuple[str, str]]:
    """Per triggered event of the task: how many started and finished jes sent. Asserts exactly one each."""
    counts: Counter[tuple[str, str]] = Counter()
    triggered = plane.events(type=f"sh.keptn.event.{task}.triggered")
    for event in plane.events():
        if event.get("source") == "job-executor-service" and event["type"].rsplit(".", 1)[-1] in (
            "started",
            "finished",
        ):
            counts[(event["triggeredid"], event["type"].rsplit(".", 1)[-1])] += 1
    for event in triggered:
        assert counts[(event["id"], "started")] == 1, (event["id"], counts)
        assert counts[(event["id"], "finished")] == 1, (event["id"], counts)
    return counts


def put_config(plane: LocalControlPlane, text: str, *, service: str = "service1") -> str:
    return plane.put_resource(
        project="my-first-project", stage="dev", service=service, uri="job/config.yaml", content=text.encode()
    )


# ---------------------------------------------------------------------------------------------
# jes as a separate process (for SIGTERM and kill -9)


def jes_environment(plane: LocalControlPlane, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB"))}
    env.update(
        {
            "KEPTN_API_ENDPOINT": plane.url,
            "KEPTN_API_TOKEN": plane.token,
            "PUBSUB_TOPIC": TOPIC,
            "HTTP_POLLING_INTERVAL": "0.05",
            "HEARTBEAT_INTERVAL": "1",
            "JES_RUNNER": "local",
            "JES_STATE_DIR": str(state_dir),
            "HEALTH_ENDPOINT_PORT": "0",
            "K8S_NAMESPACE": "keptn-jes",
            "K8S_POD_NAME": "jes-test",
            "JES_LOG_FORMAT": "json",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def jes_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "jes.cli", "serve"], env=env, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


def catches_sigterm(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process has its own SIGTERM handler yet (Linux: SigCgt in /proc/PID/status).

    Before that — the first ~25 ms, while the interpreter starts and before any jes code runs — the
    kernel's default action applies; that window belongs to Python, not to jes."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def wait_for_sigterm_handler(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not catches_sigterm(process):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("jes never installed its SIGTERM handler")
        time.sleep(0.002)


async def restarted_between_tasks(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, config: str) -> str:
    """Run ``config`` (two tasks) for one EU sequence on the fake API: jes dies (no handover) once the
    second task's Job exists, and a new jes of the same pod finishes it. The sequence's context."""
    put_config(plane, config)
    first = make_kube_service(plane, kube, tmp_path, "jes-0")
    await first.start()
    context = plane.trigger_sequence(trigger_body("EU"))
    await wait_until(lambda: len(kube.created_jobs) == 2, what="the second task's Job")
    await first.abandon()
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    return context
