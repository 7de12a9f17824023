"""jes run, jes serve (settings at start, --help, logs), jes demo and jes check, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jes.devtools.controlplane.server import LocalControlPlane

REPO = Path(__file__).resolve().parents[2]
JES = str(Path(sys.executable).parent / "jes")
HELLO = str(REPO / "examples/job/config.yaml")
APAC = str(REPO / "examples/events/sayhello-apac.json")
TEST_EVENT = str(REPO / "examples/events/test-triggered.json")


def jes(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB", "LOCATION"))}
    return subprocess.run([JES, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout)


def test_run_local_prints_started_status_and_finished_and_streams_logs() -> None:
    done = jes("run", "--config", HELLO, "--event", APAC, "--runner", "local", "--yes")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in lines] == [
        "sh.keptn.event.sayhello.started",
        "sh.keptn.event.sayhello.status.changed",
        "sh.keptn.event.sayhello.status.changed",
        "sh.keptn.event.sayhello.finished",
    ]
    assert "'Say Hello World' succeeded in" in lines[2]["data"]["message"]
    finished = lines[-1]
    assert finished["triggeredid"] == "0b9f6c52-6a8e-4c70-9d6b-1f0f3c8e2a11"
    assert (finished["data"]["status"], finished["data"]["result"]) == ("succeeded", "pass")
    assert "Hello, world from APAC!" in finished["data"]["message"]
    assert finished["data"]["jes"]["tasks"][0]["exitCode"] == 0
    assert "Hello, world from APAC!" in done.stderr  # streamed while running


def test_run_failure_exit_1_with_reason_logs_and_budget(tmp_path: Path) -> None:
    config = tmp_path / "job" / "config.yaml"
    config.parent.mkdir()
    config.write_text(
        "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sayhello}]\n    tasks:\n"
        "      - name: noisy\n        image: alpine\n        cmd: [python3, -c]\n"
        '        args: [\'import sys; print("START"); print("x" * 300000); print("END"); sys.exit(4)\']\n'
    )
    done = jes(
        "run", "--config", str(config), "--event", APAC, "--runner", "local", "--yes", env={"JES_MAX_EVENT_BYTES": "20000"}
    )
    assert done.returncode == 1
    finished = json.loads(done.stdout.splitlines()[-1])
    message = finished["data"]["message"]
    assert message.startswith("Task 'noisy' failed: exit code 4")
    assert "START" in message and "END" in message and "bytes omitted" in message
    assert len(json.dumps(finished, separators=(",", ":"), ensure_ascii=False).encode()) <= 20000


def test_run_with_files_from_the_resources_folder(tmp_path: Path) -> None:
    (tmp_path / "job").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "hello.sh").write_text("echo from a file: $KEPTN_SERVICE\n")
    config = tmp_path / "job" / "config.yaml"
    config.write_text(
        "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sayhello}]\n    tasks:\n"
        "      - name: t\n        image: alpine\n        files: [scripts]\n        cmd: [/bin/sh]\n        args: [/keptn/scripts/hello.sh]\n"
    )
    done = jes("run", "--config", str(config), "--event", APAC, "--runner", "local", "--yes")
    assert done.returncode == 0, done.stderr
    assert "from a file: service1" in json.loads(done.stdout.splitlines()[-1])["data"]["message"]


def test_run_with_nothing_matching_exits_0_and_prints_no_events() -> None:
    done = jes("run", "--config", HELLO, "--event", TEST_EVENT, "--runner", "local", "--yes")
    assert done.returncode == 0 and done.stdout == ""
    assert "no action matches this event" in done.stderr


def test_serve_refuses_bad_settings_listing_each(tmp_path: Path) -> None:
    done = jes(
        "serve",
        env={
            "HTTP_POLLING_INTERVAL": "soon",
            "JES_RUNNER": "docker",
            "JES_JOB_LABELS": "{bad",
            "KEPTN_API_ENDPOINT": "1.2.3.4",
        },
    )
    assert done.returncode == 2
    for line in (
        "KEPTN_API_ENDPOINT: expected an http:// or https:// URL such as http://1.2.3.4/api, got '1.2.3.4'",
        "HTTP_POLLING_INTERVAL: expected a number of seconds, got 'soon'",
        "JES_JOB_LABELS: not valid JSON",
        "JES_RUNNER: expected one of kubernetes, local, got 'docker'",
    ):
        assert line in done.stderr
    assert "Traceback" not in done.stderr
    nothing_to_poll = jes("serve", env={"DISABLE_REGISTRATION": "true"})  # (NATS mode: no endpoint)
    assert nothing_to_poll.returncode == 2 and "PUBSUB_TOPIC: with DISABLE_REGISTRATION=true" in nothing_to_poll.stderr


def test_serve_without_a_cluster_says_so_and_exits_1(tmp_path: Path) -> None:
    env = {"KEPTN_API_ENDPOINT": "http://127.0.0.1:9/api", "JES_RUNNER": "kubernetes",
           "KUBECONFIG": str(tmp_path / "missing"), "JES_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    done = jes("serve", env={k: v for k, v in env.items()} | {"KUBERNETES_SERVICE_HOST": ""})
    assert done.returncode == 1, done.stderr
    assert "no Kubernetes configuration: not running in a cluster and no usable kubeconfig" in done.stderr


def test_serve_help_documents_every_setting() -> None:
    from jes import settings

    done = jes("serve", "--help")
    for name in settings.ENV_NAMES.values():
        assert name in done.stdout, name


def test_serve_once_logs_json_with_the_event_context_and_never_the_token(tmp_path: Path) -> None:
    token = "very-secret-token-value"
    with LocalControlPlane(token=token, seed_dir=REPO / "examples/control-plane") as plane:
        context = plane.trigger_sequence(
            {"type": "sh.keptn.event.dev.sequence1.triggered", "source": "test", "specversion": "1.0",
             "data": {"project": "my-first-project", "stage": "dev", "service": "service1", "sayhello": {"location": "EU"}}}
        )  # fmt: skip
        env = {
            "KEPTN_API_ENDPOINT": plane.url,
            "KEPTN_API_TOKEN": token,
            "PUBSUB_TOPIC": "sh.keptn.event.sayhello.triggered",
            "JES_RUNNER": "local",
            "JES_STATE_DIR": str(tmp_path / "state"),
            "HEALTH_ENDPOINT_PORT": "0",
        }
        done = jes("serve", "--once", env=env)
        assert done.returncode == 0, done.stderr
        plane.wait_for(lambda: bool(plane.events(type="sh.keptn.event.dev.sequence1.finished", keptn_context=context)))
    records = [json.loads(line) for line in done.stderr.splitlines()]
    task_record = next(r for r in records if r["message"].startswith("task 'Say Hello World'"))
    assert task_record["keptn_context"] == context and task_record["task"] == "Say Hello World"
    assert task_record["action"] == "Run alpine image to say hello world from EU" and task_record["event_id"]
    assert token not in done.stderr


def test_check_reports_ok_and_failure() -> None:
    with LocalControlPlane(token="check-token") as plane:
        good = jes("check", env={"KEPTN_API_ENDPOINT": plane.url, "KEPTN_API_TOKEN": "check-token"})
        bad = jes("check", env={"KEPTN_API_ENDPOINT": plane.url, "KEPTN_API_TOKEN": "wrong-token"})
    assert good.returncode == 0 and "OK" in good.stdout
    assert bad.returncode == 1 and "401" in bad.stderr and "wrong-token" not in bad.stderr + bad.stdout


@pytest.mark.parametrize("regions", [False, True])
def test_demo_runs_the_hello_world(regions: bool) -> None:
    done = jes("demo", *(["--regions"] if regions else []))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| Hello, world from APAC!" in done.stdout and "| Hello, world from Europe!" in done.stdout
    assert "Demo finished: both sequences passed." in done.stdout
    if regions:
        assert "by keptn-jes-apac/APAC" in done.stdout and "by keptn-jes-eu/EU" in done.stdout


def test_demo_nats_runs_the_hello_world_through_a_queue_group() -> None:
    done = jes("demo", "--nats")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| Hello, world from APAC!" in done.stdout and "| Hello, world from Europe!" in done.stdout
    shares = re.search(r"replica 1 received (\d+), replica 2 received (\d+)", done.stdout)
    assert shares is not None and int(shares[1]) + int(shares[2]) == 2, done.stdout  # each event to one member
    assert "Traceback" not in done.stderr and "disconnected" not in done.stderr


def test_run_kubernetes_creates_the_job_through_the_kubeconfig(tmp_path: Path) -> None:
    from fakes.fake_kube import FakeKube

    with FakeKube() as kube:
        kube.behave(image="alpine", logs="Hello, world from APAC!\n", duration_s=0.2)
        kubeconfig = tmp_path / "kubeconfig"
        kube.kubeconfig(str(kubeconfig))
        done = jes("run", "--config", HELLO, "--event", APAC, "--runner", "kubernetes",
                   env={"KUBECONFIG": str(kubeconfig), "JOB_NAMESPACE": "keptn-jes-apac"})  # fmt: skip
        (job,) = kube.created_jobs
    assert done.returncode == 0, done.stderr
    finished = json.loads(done.stdout.splitlines()[-1])
    assert finished["data"]["result"] == "pass" and "Hello, world from APAC!" in finished["data"]["message"]
    assert job["metadata"]["namespace"] == "keptn-jes-apac"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["Hello, world from APAC!"]
