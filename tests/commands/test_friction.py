"""The newcomer's friction list: each first step a new user took that went wrong, as a test."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jes.devtools import examples
from jes.devtools.controlplane import server

REPO = Path(__file__).resolve().parents[2]
JES = str(Path(sys.executable).parent / "jes")
HELLO = str(REPO / "examples/job/config.yaml")
APAC = str(REPO / "examples/events/sayhello-apac.json")


def jes(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB", "LOCATION"))}
    return subprocess.run(
        [JES, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout, cwd=cwd
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- jes run ------------------------------------------------------------------------------------


def write_config(folder: Path, files: str, command: str) -> Path:
    config = folder / "cfg.yaml"
    config.write_text(
        "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.sayhello.triggered}]\n"
        f"    tasks:\n      - name: t\n        image: alpine\n        files: [{files}]\n"
        f"        workingDir: /keptn\n        cmd: [/bin/sh, -c]\n        args: [{json.dumps(command)}]\n"
    )
    return config


def test_run_with_a_relative_resources_folder_copies_a_whole_folder(tmp_path: Path) -> None:
    (tmp_path / "res" / "helm" / "templates").mkdir(parents=True)
    (tmp_path / "res" / "helm" / "values.yaml").write_text("a: 1\n")
    (tmp_path / "res" / "helm" / "templates" / "d.yaml").write_text("kind: x\n")
    write_config(tmp_path, "helm", "cat helm/values.yaml helm/templates/d.yaml")
    done = jes("run", "--config", "cfg.yaml", "--event", APAC, "--runner", "local", "--yes", "--resources", "res",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    finished = json.loads(done.stdout.splitlines()[-1])
    assert "a: 1" in finished["data"]["message"] and "kind: x" in finished["data"]["message"]


def test_run_local_refuses_without_a_terminal_unless_yes(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = write_config(tmp_path, "", f"touch {marker}").read_text().replace("        files: []\n", "")
    (tmp_path / "cfg.yaml").write_text(config)
    refused = jes("run", "--config", str(tmp_path / "cfg.yaml"), "--event", APAC, "--runner", "local")
    assert refused.returncode == 2
    assert f"task 1/1 't' (image alpine) in /keptn: /bin/sh -c 'touch {marker}'" in refused.stderr
    assert "add --yes" in refused.stderr and refused.stdout == ""
    assert not marker.exists()
    allowed = jes("run", "--config", str(tmp_path / "cfg.yaml"), "--event", APAC, "--runner", "local", "--yes")
    assert allowed.returncode == 0 and marker.exists()


@pytest.mark.parametrize(("answer", "runs"), [("n\n", False), ("y\n", True)])
def test_run_local_asks_on_a_terminal(tmp_path: Path, answer: str, runs: bool) -> None:
    import pty

    marker = tmp_path / "ran"
    config = write_config(tmp_path, "", f"touch {marker}").read_text().replace("        files: []\n", "")
    (tmp_path / "cfg.yaml").write_text(config)
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_"))}
    process = subprocess.Popen(
        [JES, "run", "--config", str(tmp_path / "cfg.yaml"), "--event", APAC, "--runner", "local"],
        stdin=secondary, stdout=subprocess.DEVNULL, stderr=secondary, env=env,
    )  # fmt: skip
    os.close(secondary)
    seen = b""
    while b"Run them?" not in seen:
        chunk = os.read(primary, 4096)
        assert chunk, seen
        seen += chunk
    os.write(primary, answer.encode())
    assert process.wait(timeout=60) == (0 if runs else 2)
    os.close(primary)
    assert b"runs these commands on this machine" in seen
    assert marker.exists() is runs


# -- busy ports, a seed without a shipyard ------------------------------------------------------------


def test_control_plane_on_a_busy_port_says_so_in_one_line(busy_port: int) -> None:
    done = jes("control-plane", "--port", str(busy_port), timeout=30)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"port {busy_port} is already in use" in line and f"--port {busy_port + 1}" in line


def test_demo_keep_running_on_a_busy_port_says_so_in_one_line(busy_port: int) -> None:
    done = jes("demo", "--keep-running", "--port", str(busy_port), timeout=60)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("jes demo: ") and "already in use" in line and "--port" in line


def test_serve_on_a_busy_health_port_says_so_in_one_line(busy_port: int, tmp_path: Path) -> None:
    env = {"KEPTN_API_ENDPOINT": "http://127.0.0.1:9/api", "KEPTN_API_TOKEN": "t", "JES_RUNNER": "local",
           "JES_STATE_DIR": str(tmp_path), "HEALTH_ENDPOINT_PORT": str(busy_port)}  # fmt: skip
    done = jes("serve", "--once", env=env, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    stopped = [json.loads(line) for line in done.stderr.splitlines() if '"jes stopped' in line]
    assert len(stopped) == 1 and "HEALTH_ENDPOINT_PORT" in stopped[0]["message"], done.stderr


def test_a_seed_project_without_a_shipyard_is_one_line_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "seed" / "myproject").mkdir(parents=True)
    done = jes("control-plane", "--port", "0", "--seed", str(tmp_path / "seed"), timeout=30)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "myproject/shipyard.yaml: missing" in line and "--hello-world" in line


# -- the control plane's banner ----------------------------------------------------------------------


def test_the_banner_prints_the_hello_world_body_its_config_matches() -> None:
    with server.LocalControlPlane(seed_dir=examples.HELLO_WORLD_SEED) as plane:
        banner = server._banner(plane)
    body = json.loads(re.search(r"--data-raw '(.*)'", banner).group(1))  # type: ignore[union-attr]
    assert body == examples.hello_world_trigger("APAC")
    assert body["data"]["sayhello"]["location"] == "APAC"
    assert "APAC or EU" in banner


# -- event files: the datastore's answer, events without id ------------------------------------------


def datastore_answer(tmp_path: Path, *, with_id: bool = True) -> Path:
    task = json.loads(Path(APAC).read_text())
    if not with_id:
        task.pop("id")
    sequence = {**task, "id": "seq-1", "type": "sh.keptn.event.dev.sequence1.triggered"}
    started = {**task, "id": "s-1", "type": "sh.keptn.event.sayhello.started"}
    path = tmp_path / "answer.json"
    path.write_text(json.dumps({"events": [started, task, sequence], "pageSize": 20, "totalCount": 3}))
    return path


@pytest.mark.parametrize("command", ["match", "explain", "render"])
def test_the_datastore_answer_is_accepted_and_the_task_event_picked(tmp_path: Path, command: str) -> None:
    done = jes(command, "--config", HELLO, "--event", str(datastore_answer(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "using the triggered event 0b9f6c52-6a8e-4c70-9d6b-1f0f3c8e2a11 of type sh.keptn.event.sayhello.triggered" in (
        done.stderr
    )
    assert "Say Hello World" in done.stdout or "say" in done.stdout.lower()


def test_an_event_without_an_id_is_accepted_with_a_stable_one(tmp_path: Path) -> None:
    event = json.loads(Path(APAC).read_text())
    event.pop("id")
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    first = jes("render", "--config", HELLO, "--event", str(path))
    second = jes("render", "--config", HELLO, "--event", str(path))
    assert first.returncode == 0, first.stderr
    assert "the event has no id; using" in first.stderr
    assert first.stdout == second.stdout, "the same file gives the same Job names"


# -- exit codes of match and render --------------------------------------------------------------------


def blocked_config(tmp_path: Path) -> Path:
    path = tmp_path / "blocked.yaml"
    path.write_text(
        "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.sayhello.triggered}]\n"
        "    tasks:\n      - name: t\n        image: alpine\n        env:\n"
        "          - {name: X, value: $.data.nothing.here, valueFrom: event}\n"
    )
    return path


@pytest.mark.parametrize("command", ["match", "render"])
def test_exit_codes_say_no_match_blocked_or_invalid(tmp_path: Path, command: str) -> None:
    assert jes(command, "--config", HELLO, "--event", APAC).returncode == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(Path(APAC).read_text()), "type": "sh.keptn.event.other.triggered"}))
    assert jes(command, "--config", HELLO, "--event", str(other)).returncode == 0, "no match is not an error"
    blocked = jes(command, "--config", str(blocked_config(tmp_path)), "--event", APAC)
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert jes(command, "--config", HELLO, "--event", str(bad)).returncode == 1


# -- jes demo --keep-running and SIGTERM ---------------------------------------------------------------


def test_demo_keep_running_stopped_with_sigterm_removes_its_state(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with subprocess.Popen(
        [JES, "demo", "--keep-running", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            if line.startswith("Still running"):
                break
            assert time.monotonic() < deadline
        assert list(tmp_path.glob("jes-demo-*")), "the demo keeps its state in a temporary folder"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not list(tmp_path.glob("jes-demo-*")), "SIGTERM must remove the temporary state folder"
