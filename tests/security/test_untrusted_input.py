"""Configs and event data are untrusted: jes's own credentials and identity are out of reach of a
task, and event data reaches a task literally — checked through the commands a user runs and
through ``jes serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from tests.service.support import (
    ledger_check,
    make_kube_service,
    put_config,
    sequence_done,
    started,
    trigger_body,
    wait_until,
)

JES = str(Path(sys.executable).parent / "jes")
TOKEN_SECRET = "job-executor-service-keptn-api-token"

STEALING = f"""apiVersion: v2
actions:
  - name: steal
    events: [{{name: sh.keptn.event.sayhello.triggered}}]
    tasks:
      - name: print the token
        image: alpine
        cmd: [sh, -c, 'env']
        env:
          - {{name: {TOKEN_SECRET}, valueFrom: secret}}
      - name: act as jes
        image: alpine
        serviceAccount: job-executor-service
"""

EXPANDING = """apiVersion: v2
actions:
  - name: build
    events: [{name: sh.keptn.event.sayhello.triggered}]
    tasks:
      - name: build
        image: alpine
        env:
          - {name: DB_PASSWORD, value: s3cr3t-pw, valueFrom: string}
          - {name: GREETING, value: "hello $(DB_PASSWORD)", valueFrom: string}
        cmd: [printf]
        args: ["building for %s / %s\\n", "$(LABELS_TARGET)", "$(GREETING)"]
"""


def jes(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB", "LOCATION"))}
    return subprocess.run([JES, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=60)


def event_file(tmp_path: Path, **labels: str) -> str:
    event: dict[str, Any] = {
        "specversion": "1.0", "id": "e-1", "source": "shipyard-controller", "type": "sh.keptn.event.sayhello.triggered",
        "shkeptncontext": "5d2b7e0a-3f4c-4b1e-8a6d-9c0e1f2a3b4c",
        "data": {"project": "p", "stage": "dev", "service": "s", "labels": labels},
    }  # fmt: skip
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return str(path)


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


PROTECTED = {"JES_PROTECTED_SECRETS": TOKEN_SECRET, "JES_PROTECTED_SERVICE_ACCOUNTS": "job-executor-service"}


def test_validate_refuses_jes_own_secret_and_service_account(tmp_path: Path) -> None:
    path = config_file(tmp_path, STEALING)
    done = jes("validate", path, env=PROTECTED)
    assert done.returncode == 1
    assert f"{path}:10:20: actions[0].tasks[0].env[0].name: secret '{TOKEN_SECRET}' holds jes's own credentials" in done.stdout
    assert f"{path}:13:25: actions[0].tasks[1].serviceAccount: service account 'job-executor-service' is jes's own" in done.stdout
    flags = jes("validate", path, "--protected-secrets", TOKEN_SECRET, "--protected-service-accounts", "x")
    assert flags.returncode == 1 and "holds jes's own credentials" in flags.stdout
    assert jes("validate", path).returncode == 0  # nothing protected: nothing to refuse


def test_render_refuses_before_any_manifest(tmp_path: Path) -> None:
    done = jes("render", "--config", config_file(tmp_path, STEALING), "--event", event_file(tmp_path), env=PROTECTED)
    assert "holds jes's own credentials" in done.stdout + done.stderr
    assert "kind: Job" not in done.stdout


async def test_serve_refuses_before_any_job_exists(plane: LocalControlPlane, kube: FakeKube, tmp_path: Path) -> None:
    put_config(plane, STEALING)
    service = make_kube_service(
        plane, kube, tmp_path, "jes-0",
        protected_secrets=(TOKEN_SECRET,), protected_service_accounts=("job-executor-service",),
    )  # fmt: skip
    async with started(service):
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: sequence_done(plane, context))
    finished = plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)[0]["data"]
    assert finished["result"] == "fail" and "holds jes's own credentials" in finished["message"]
    assert kube.created_jobs == [] and kube.objects("configmaps", "keptn-jes") == []
    ledger_check(plane)


def test_event_data_is_not_expanded_by_kubernetes(tmp_path: Path) -> None:
    """A label `$(DB_PASSWORD)` must not pull in another variable: render escapes it as Kubernetes
    wants, while the config author's own `$(DB_PASSWORD)` keeps working."""
    done = jes("render", "--config", config_file(tmp_path, EXPANDING),
               "--event", event_file(tmp_path, target="$(DB_PASSWORD)", sneaky="$$(DB_PASSWORD)"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (job,) = [d for d in yaml.safe_load_all(done.stdout) if d and d.get("kind") == "Job"]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LABELS_TARGET"] == "$$(DB_PASSWORD)"
    assert env["LABELS_SNEAKY"] == "$$$$(DB_PASSWORD)"
    assert env["GREETING"] == "hello $(DB_PASSWORD)"  # the author's own reference stays


def test_the_local_runner_follows_the_same_rule(tmp_path: Path) -> None:
    done = jes("run", "--runner", "local", "--yes", "--config", config_file(tmp_path, EXPANDING),
               "--event", event_file(tmp_path, target="$(DB_PASSWORD)"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "building for $(DB_PASSWORD) / hello s3cr3t-pw" in done.stderr


def test_escapes_of_lone_surrogates_in_events_and_configs_cannot_block_reports(tmp_path: Path) -> None:
    """``"\\ud800"`` in event JSON or config YAML is half a character that UTF-8 cannot encode: jes
    reports anyway (the half becomes U+FFFD; a complete pair is joined)."""
    event = tmp_path / "event.json"
    event.write_text(
        '{"specversion": "1.0", "id": "e-1", "type": "sh.keptn.event.sayhello.triggered", "shkeptncontext": "c",'
        ' "data": {"project": "p", "stage": "dev", "service": "s", "labels": {"half": "a\\ud800b"}}}'
    )
    config = config_file(tmp_path, 'apiVersion: v2\nactions:\n  - name: "\\ud83d\\ude00"\n    events: [{name: x}]\n'
                         "    tasks: [{name: t, image: alpine, cmd: [printf], args: [ok]}]\n"
                         "  - name: all\n    events: [{name: sayhello}]\n"
                         "    tasks: [{name: t, image: alpine, cmd: [printf, '%s', \"$(LABELS_HALF)\"]}]\n")  # fmt: skip
    done = jes("run", "--runner", "local", "--yes", "--config", config, "--event", str(event))
    assert done.returncode == 0, done.stderr
    finished = json.loads(done.stdout.splitlines()[-1])
    assert finished["data"]["labels"]["half"] == "a\ufffdb"
