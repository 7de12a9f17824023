"""``jes distributor`` as a process: bad variables, SIGTERM, a taken port, and the example
integration served by it (``make demo-integration``)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jes.devtools import integration_demo

JES = str(Path(sys.executable).parent / "jes")


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB", "API_PROXY", "K8S_"))}
    return base | extra


def distributor(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JES, "distributor"], capture_output=True, text=True, env=clean_env(**env), timeout=30)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HEARTBEAT_INTERVAL", "10"), ("DISABLE_REGISTRATION", "yes"), ("API_PROXY_PORT", "eighty"), ("PUBSUB_RECIPIENT", "svc:9000")],
)
def test_a_bad_value_is_one_line_and_exit_1(variable: str, value: str) -> None:
    done = distributor(**{variable: value})
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"jes distributor: {variable}: ") and repr(value) in line


def test_each_bad_value_has_its_line() -> None:
    done = distributor(HEARTBEAT_INTERVAL="10", MAX_REGISTRATION_RETRIES="0")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 2 and "Traceback" not in done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_stops_it_gracefully_with_exit_0() -> None:
    port = free_port()
    env = clean_env(KEPTN_API_ENDPOINT="http://127.0.0.1:9/api", DISABLE_REGISTRATION="true", API_PROXY_PORT=str(port))
    process = subprocess.Popen([JES, "distributor"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not integration_demo._listening(port):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "received SIGTERM" in stderr and "Traceback" not in stderr
    assert "not registering with the control plane: DISABLE_REGISTRATION is true" in stderr


def test_a_taken_port_is_exit_1_naming_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = distributor(KEPTN_API_ENDPOINT="http://127.0.0.1:9/api", DISABLE_REGISTRATION="1", API_PROXY_PORT=str(port))
    assert done.returncode == 1
    assert f"port {port} is already in use; set API_PROXY_PORT" in done.stderr and "Traceback" not in done.stderr


def test_the_example_integration_finishes_the_hello_world_sequence() -> None:
    """``make demo-integration``: control plane, jes distributor and examples/integration as processes."""
    out = io.StringIO()
    assert integration_demo.run(out=out, time_limit_s=60) == 0, out.getvalue()
    text = out.getvalue()
    assert "sequence1 finished: pass" in text
    for kind in ("started", "status.changed", "finished"):
        assert f"sh.keptn.event.sayhello.{kind}" in text
    assert "Hello, world from APAC!" in text
    assert "integration: received sh.keptn.event.sayhello.triggered" in text and "(subscription -)" not in text
