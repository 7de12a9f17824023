"""``make demo-integration``: an integration in another language's clothes, served by ``jes distributor``.

The local control plane seeded with the hello-world, ``jes distributor`` in HTTP mode
(``PUBSUB_TOPIC=sh.keptn.event.sayhello.triggered``) and the example integration of
``examples/integration/`` (Python standard library only) as separate processes. The hello-world
sequence is triggered; the distributor forwards the ``sayhello.triggered`` event, the integration
reports ``.started``, ``.status.changed`` and ``.finished`` through the distributor's ``/event``, and
the sequence finishes. Prints what happened; exit 0 when the sequence passed within the time limit.

Run it from a checkout (``python -m jes.devtools.integration_demo``): the integration is the
repository's example, not part of the package.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TextIO

from jes.devtools import examples
from jes.devtools.controlplane.server import LocalControlPlane

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = REPO / "examples" / "integration" / "integration.py"
TOPIC = "sh.keptn.event.sayhello.triggered"
SEQUENCE_FINISHED = "sh.keptn.event.dev.sequence1.finished"
NAME = "hello-integration"
TIME_LIMIT_S = 60.0


def trigger(location: str = "APAC") -> dict[str, Any]:
    return {
        "data": {
            "project": "my-first-project", "stage": "dev", "service": "service1", "sayhello": {"location": location}
        },  # fmt: skip
        "source": "integration-demo",
        "type": "sh.keptn.event.dev.sequence1.triggered",
        "specversion": "1.0",
        "shkeptnspecversion": "0.2.3",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def distributor_environment(plane: LocalControlPlane, *, proxy_port: int, recipient_port: int) -> dict[str, str]:
    """``jes distributor`` in HTTP mode against ``plane``, forwarding to 127.0.0.1:``recipient_port``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB_", "API_PROXY_"))}
    return inherited | {
        "KEPTN_API_ENDPOINT": plane.url,
        "KEPTN_API_TOKEN": plane.token,
        "PUBSUB_TOPIC": TOPIC,
        "PUBSUB_RECIPIENT": "127.0.0.1",
        "PUBSUB_RECIPIENT_PORT": str(recipient_port),
        "API_PROXY_PORT": str(proxy_port),
        "HTTP_POLLING_INTERVAL": "1",
        "HEARTBEAT_INTERVAL": "2s",
        "K8S_DEPLOYMENT_NAME": NAME,
        "K8S_NAMESPACE": "demo",
        "K8S_POD_NAME": f"{NAME}-0",
        "K8S_NODE_NAME": socket.gethostname(),
        "VERSION": "0.1.0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def run(*, time_limit_s: float = TIME_LIMIT_S, out: TextIO = sys.stdout) -> int:
    if not INTEGRATION.exists():
        print(f"integration demo: {INTEGRATION} is missing; run it from a checkout of jes", file=out)
        return 1
    token = secrets.token_urlsafe(16)
    deadline = time.monotonic() + time_limit_s
    with LocalControlPlane(token=token, seed_dir=examples.HELLO_WORLD_SEED) as plane, \
            tempfile.TemporaryDirectory(prefix="jes-integration-demo-") as logs:  # fmt: skip
        proxy_port, recipient_port = free_port(), free_port()
        env = distributor_environment(plane, proxy_port=proxy_port, recipient_port=recipient_port)
        integration_env = env | {"PORT": str(recipient_port), "EVENT_URL": f"http://127.0.0.1:{proxy_port}/event"}
        dist_log, integ_log = Path(logs) / "distributor.log", Path(logs) / "integration.log"
        with dist_log.open("w") as dist_out, integ_log.open("w") as integ_out:
            distributor = _start([sys.executable, "-m", "jes.cli", "distributor"], env, dist_out)
            integration = _start([sys.executable, str(INTEGRATION)], integration_env, integ_out)
            try:
                passed = _drive(plane, proxy_port, recipient_port, deadline, out)
            finally:
                codes = [_stop(distributor), _stop(integration)]
        if not passed or codes[0] != 0:
            print(f"jes distributor exited {codes[0]}; its log:\n{_tail(dist_log)}", file=out)
            print(f"the integration's log:\n{_tail(integ_log)}", file=out)
            return 1
        print("jes distributor's log:\n" + _tail(dist_log), file=out)
        print("the integration's log:\n" + _tail(integ_log), file=out)
    return 0


def _drive(plane: LocalControlPlane, proxy_port: int, recipient_port: int, deadline: float, out: TextIO) -> bool:
    if not _wait(lambda: _listening(proxy_port) and _listening(recipient_port), deadline):
        print("integration demo: the distributor or the integration did not start", file=out)
        return False
    print(f"local control plane on {plane.url}; jes distributor on 127.0.0.1:{proxy_port}; integration on "
          f"127.0.0.1:{recipient_port}", file=out)  # fmt: skip
    context = plane.trigger_sequence(trigger())
    print(f"triggered sh.keptn.event.dev.sequence1.triggered (context {context})", file=out)
    if not _wait(lambda: bool(plane.events(type=SEQUENCE_FINISHED, keptn_context=context)), deadline):
        print("integration demo: the sequence did not finish in time", file=out)
        return False
    for event in plane.events(keptn_context=context):
        if event["type"].startswith("sh.keptn.event.sayhello."):
            data = event.get("data", {})
            said = f" {data.get('status')}/{data.get('result')}: {data.get('message')}" if "result" in data else ""
            print(f"  {event['type']:40} from {event.get('source')}{said}", file=out)
    [finished] = plane.events(type=SEQUENCE_FINISHED, keptn_context=context)
    result = finished.get("data", {}).get("result")
    print(f"sequence1 finished: {result}", file=out)
    [integration] = [i for i in plane.integrations() if i["name"] == NAME]
    print(f"registered as {NAME} ({integration['metadata']['location']}), subscribed to "
          f"{', '.join(s['event'] for s in integration['subscriptions'])}", file=out)  # fmt: skip
    return bool(result == "pass")


def _start(argv: list[str], env: dict[str, str], log: IO[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait(predicate: Callable[[], bool], deadline: float) -> bool:
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join("  " + line for line in path.read_text().splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(run())
