"""``jes demo``: the whole loop on one machine, for a newcomer.

A local control plane seeded with the hello-world (project my-first-project, stage dev, service
service1, sequence1 → task sayhello, and the service's job/config.yaml), ``jes serve`` with the
local runner, and the user's two trigger events (APAC and EU). It prints what each task said
and the events of each sequence, then stops — or keeps running with ``--keep-running`` so you can
send events yourself.

``--regions`` runs two executors instead, ``LOCATION=APAC`` and ``LOCATION=EU``, with a config
whose actions carry ``locations``: each event runs in exactly one region.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from jes import errors, settings
from jes.devtools import demonats, examples
from jes.devtools.controlplane.server import LocalControlPlane
from jes.service.core import Service
from jes.util import logfmt

TOPIC = "sh.keptn.event.sayhello.triggered"
SEQUENCE_FINISHED = "sh.keptn.event.dev.sequence1.finished"


def _trigger(location: str) -> dict[str, Any]:
    """The user's trigger body (hello-world/trigger-<region>.json)."""
    return examples.hello_world_trigger(location)


@dataclass(frozen=True)
class Executor:
    name: str
    location: str | None
    namespace: str


def run(
    *, regions: bool = False, nats: bool = False, keep_running: bool = False, port: int = 0, out: TextIO = sys.stdout
) -> int:
    token = secrets.token_urlsafe(16)
    logfmt.setup(fmt="console", level=logging.WARNING, secrets=(token,))
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)  # so that the temporary folders are removed
    with ExitStack() as stack:
        seed = stack.enter_context(_seed(regions=regions))
        nats_url = stack.enter_context(demonats.nats_server()) if nats else None
        plane = stack.enter_context(LocalControlPlane(token=token, seed_dir=seed, port=port, nats_url=nats_url))
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jes-demo-")))
        executors = (
            [Executor("APAC executor", "APAC", "keptn-jes-apac"), Executor("EU executor", "EU", "keptn-jes-eu")]
            if regions
            else [Executor(f"replica {i}", None, "keptn-jes") for i in (1, 2)]
            if nats
            else [Executor("executor", None, "keptn-jes")]
        )
        if nats_url is not None:
            stack.enter_context(demonats.in_cluster_names_to(plane.base_url))
        return asyncio.run(_main(plane, executors, state, keep_running=keep_running, out=out, nats_url=nats_url))
    return 1  # pragma: no cover - ExitStack does not swallow


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a service manager) stops the demo as Ctrl-C does: services shut down, the
    temporary state folder is removed."""
    raise KeyboardInterrupt


@contextmanager
def _seed(*, regions: bool) -> Iterator[Path]:
    """The packaged hello-world seed; with ``regions``, a copy whose config has locations."""
    if not regions:
        yield examples.HELLO_WORLD_SEED
        return
    with tempfile.TemporaryDirectory(prefix="jes-demo-seed-") as folder:
        seed = Path(folder) / "seed"
        shutil.copytree(examples.HELLO_WORLD_SEED, seed)
        shutil.copyfile(examples.REGIONS_CONFIG, seed / examples.SEED_CONFIG)
        yield seed


def _settings(plane: LocalControlPlane, executor: Executor, state: Path, nats_url: str | None) -> settings.Settings:
    in_cluster = {"keptn_api_endpoint": "", "keptn_api_token": "", "pubsub_url": nats_url, "pubsub_group": "jes"}
    current = settings.Settings(
        keptn_api_endpoint=plane.url,
        keptn_api_token=plane.token,
        pubsub_topics=(TOPIC,),
        http_polling_interval_s=0.2,
        heartbeat_interval_s=2.0,
        runner="local",
        location=executor.location,
        k8s_namespace=executor.namespace,
        k8s_pod_name=f"{executor.namespace}-demo",
        state_dir=str(state / executor.namespace),
        health_endpoint_port=0,
        log_format="console",
        shutdown_grace_s=5.0,
    )
    if nats_url is None:
        return current
    return current.with_overrides(**in_cluster, k8s_pod_name=f"jes-{executor.name.replace(' ', '-')}")


async def _main(
    plane: LocalControlPlane,
    executors: list[Executor],
    state: Path,
    *,
    keep_running: bool,
    out: TextIO,
    nats_url: str | None = None,
) -> int:
    ledgers = demonats.shared_ledgers(*(e.name for e in executors)) if nats_url else [None] * len(executors)
    services = [
        Service(_settings(plane, e, state, nats_url), health_host="127.0.0.1", store=store)
        for e, store in zip(executors, ledgers, strict=True)
    ]
    for service in services:
        await service.start()
    try:
        _say(out, _banner(plane, executors, nats_url))
        if nats_url is not None:
            await _wait_subscribed(services)
        contexts = {region: plane.trigger_sequence(_trigger(region)) for region in ("APAC", "EU")}
        _say(out, "Triggered sh.keptn.event.dev.sequence1.triggered for APAC and EU (the user's two events).\n")
        finished = await _wait_for_sequences(plane, list(contexts.values()), timeout_s=60.0)
        for region, context in contexts.items():
            _say(out, _report(plane, region, context))
        if keep_running:
            _say(out, _keep_running_help(plane))
            await asyncio.Event().wait()  # until Ctrl-C
        ok = finished and all(_sequence_passed(plane, c) for c in contexts.values())
        if nats_url is not None:
            _say(out, _shares(services))
        _say(out, "Demo finished: both sequences passed.\n" if ok else "Demo finished with problems (see above).\n")
        return 0 if ok else 1
    finally:
        for service in services:
            await service.shutdown()


async def _wait_for_sequences(plane: LocalControlPlane, contexts: list[str], *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(plane.events(type=SEQUENCE_FINISHED, keptn_context=c) for c in contexts):
            return True
        await asyncio.sleep(0.1)
    return False


def _sequence_passed(plane: LocalControlPlane, context: str) -> bool:
    done = plane.events(type=SEQUENCE_FINISHED, keptn_context=context)
    return bool(done) and done[0]["data"].get("result") == "pass"


def _banner(plane: LocalControlPlane, executors: list[Executor], nats_url: str | None = None) -> str:
    who = ", ".join(f"{e.name} (LOCATION={e.location})" if e.location else e.name for e in executors)
    how = f"subscribed to {TOPIC} on {nats_url}, queue group jes" if nats_url else f"polling {TOPIC}"
    return (
        "jes demo\n"
        f"  control plane: {plane.url} (local, seeded with the hello-world project)\n"
        f"  jes:           {who}, local runner, {how}\n\n"
    )


async def _wait_subscribed(services: list[Service], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(s.intake.subscriber and s.intake.subscriber.ready for s in services):
        if time.monotonic() > deadline:
            raise errors.JesError("jes demo --nats: the replicas did not subscribe to NATS in time")
        await asyncio.sleep(0.05)


def _shares(services: list[Service]) -> str:
    counts = [s.intake.subscriber.received if s.intake.subscriber else 0 for s in services]
    shown = ", ".join(f"replica {i} received {n}" for i, n in enumerate(counts, 1))
    return f"NATS queue group jes: {shown} (each event to one member).\n"


def _report(plane: LocalControlPlane, region: str, context: str) -> str:
    lines = [f"== {region}: keptn context {context}"]
    for event in plane.events(keptn_context=context):
        data = event.get("data", {})
        status = "/".join(x for x in (data.get("status"), data.get("result")) if x)
        executor = (data.get("jes") or {}).get("executor")
        by = f" by {executor}" if executor and event.get("source") == "job-executor-service" else ""
        lines.append(f"   {event['type']:45} from {event.get('source')}{by} {status}".rstrip())
        if event["type"].endswith("sayhello.finished"):
            lines.extend(f"      | {line}" for line in _task_output(data.get("message", "")))
    return "\n".join(lines) + "\n\n"


def _task_output(message: str) -> list[str]:
    """The task's own output lines from a finished message (without headers and notes)."""
    keep = []
    for line in message.splitlines():
        if not line or line.startswith(("Task '", "Logs:", "Container ", "local runner:")):
            continue
        keep.append(line)
    return keep


def _keep_running_help(plane: LocalControlPlane) -> str:
    body = json.dumps(_trigger("APAC"))
    return (
        "Still running; press Ctrl-C to stop.\n"
        f"Watch and trigger sequences in a browser: {plane.base_url}/ (token {plane.token})\n"
        "Or trigger the hello-world yourself:\n"
        f"  curl -X POST {plane.url}/v1/event -H 'x-token: {plane.token}' -H 'Content-Type: application/json' \\\n"
        f"    --data-raw '{body}'\n"
        f"  curl -H 'x-token: {plane.token}' '{plane.url}/mongodb-datastore/event?project=my-first-project'\n\n"
    )


def _say(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()
