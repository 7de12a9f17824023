"""``tasks[].volumes`` as the authoring commands and ``jes run`` show and apply them; ``jes validate``
refuses a claim outside JES_ALLOWED_VOLUME_CLAIMS (or ``--allowed-volume-claims``) at file:line:col."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.commands.test_authoring import APAC, run
from tests.commands.test_run_serve_demo import jes
from tests.conftest import k8s_valid

CONFIG = """apiVersion: v2
actions:
  - name: a
    events: [{name: sayhello}]
    tasks:
      - name: build
        image: alpine
        cmd: [/bin/sh, -c, 'echo built > "$1/artifact"; echo tmp > "$2/t"', sh, /data, /cache]
        volumes:
          - name: cache
            mountPath: /cache
            emptyDir: {sizeLimit: 1Gi}
          - name: data
            mountPath: /data
            persistentVolumeClaim: {claimName: shared-data}
      - name: check
        image: alpine
        cmd: [/bin/sh, -c, 'cat "$1/artifact"', sh, /data]
        volumes:
          - name: data
            mountPath: /data
            persistentVolumeClaim: {claimName: shared-data, readOnly: true}
"""
REFUSED = (
    ":15:48: actions[0].tasks[0].volumes[1].persistentVolumeClaim.claimName: persistentVolumeClaim 'shared-data' is "
    "not in the executor's allowed volume claims (JES_ALLOWED_VOLUME_CLAIMS: {listed}); add the claim or a glob "
    "matching it to JES_ALLOWED_VOLUME_CLAIMS (chart: jobConfig.allowedVolumeClaims)"
)


def write(tmp_path: Path, text: str = CONFIG) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_validate_refuses_a_claim_outside_the_list_and_accepts_one_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path)
    code, out, _ = run("validate", config)
    assert code == 1
    assert out.splitlines()[0] == config + REFUSED.format(listed="it is empty, so no claim is allowed")
    assert len(out.splitlines()) == 2  # and the second task's claim, at its own line
    code, out, _ = run("validate", "--allowed-volume-claims", "cache-*,other", config)
    assert code == 1 and out.splitlines()[0] == config + REFUSED.format(listed="it allows cache-*, other")
    assert run("validate", "--allowed-volume-claims", "shared-*", config) == (0, f"{config}: valid\n", "")
    monkeypatch.setenv("JES_ALLOWED_VOLUME_CLAIMS", "shared-data")
    assert run("validate", config)[0] == 0
    monkeypatch.setenv("JES_ALLOWED_VOLUME_CLAIMS", "shared")
    assert run("validate", config)[0] == 1


def test_validate_refuses_a_host_path(tmp_path: Path) -> None:
    config = write(tmp_path, CONFIG.replace("emptyDir: {sizeLimit: 1Gi}", "hostPath: {path: /var/run}"))
    code, out, _ = run("validate", "--allowed-volume-claims", "*", config)
    assert code == 1
    assert out.startswith(f"{config}:12:13: actions[0].tasks[0].volumes[0].hostPath: unknown field 'hostPath': ")
    assert "other volume types such as hostPath are not allowed, for security" in out


def test_match_shows_volumes_in_text_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JES_ALLOWED_VOLUME_CLAIMS", "shared-*")
    config = write(tmp_path)
    code, out, _ = run("match", "--config", config, "--event", APAC, "--json")
    assert code == 0
    tasks = json.loads(out)["actions"][0]["tasks"]
    assert tasks[0]["volumes"] == [
        {"name": "cache", "mountPath": "/cache", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "data", "mountPath": "/data", "persistentVolumeClaim": {"claimName": "shared-data", "readOnly": False}},
    ]
    assert tasks[1]["volumes"] == [
        {"name": "data", "mountPath": "/data", "persistentVolumeClaim": {"claimName": "shared-data", "readOnly": True}}
    ]
    code, out, _ = run("match", "--config", config, "--event", APAC)
    assert code == 0
    assert "    volume 'cache' at /cache: emptyDir (sizeLimit 1Gi)\n" in out
    assert "    volume 'data' at /data: persistentVolumeClaim 'shared-data'\n" in out
    assert "    volume 'data' at /data: persistentVolumeClaim 'shared-data' (read-only)\n" in out


def test_match_shows_the_refused_action_error(tmp_path: Path) -> None:
    code, out, _ = run("match", "--config", write(tmp_path), "--event", APAC, "--json")
    assert code == 3  # an action matched but cannot run
    action = json.loads(out)["actions"][0]
    assert action["tasks"] == []
    assert action["error"].startswith("Forbidden: task 'build': persistentVolumeClaim 'shared-data' is not in")


def test_render_shows_the_volumes_in_valid_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JES_ALLOWED_VOLUME_CLAIMS", "shared-*")
    code, out, _ = run("render", "--config", write(tmp_path), "--event", APAC)
    assert code == 0
    jobs = [doc for doc in yaml.safe_load_all(out) if doc]
    for job in jobs:
        k8s_valid(job)
    pod = jobs[1]["spec"]["template"]["spec"]
    assert pod["volumes"][1] == {"name": "data", "persistentVolumeClaim": {"claimName": "shared-data", "readOnly": True}}
    assert pod["containers"][0]["volumeMounts"][1] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert out.count("# task 'build' mounts persistentVolumeClaim 'shared-data': it must exist in namespace") == 1


def test_run_local_shares_the_claim_directory_between_tasks(tmp_path: Path) -> None:
    """``jes run`` keeps its local state in a temporary folder: the claim lasts for the run."""
    env = {"JES_ALLOWED_VOLUME_CLAIMS": "shared-data", "JES_STATE_DIR": str(tmp_path / "state")}
    done = jes("run", "--config", write(tmp_path), "--event", APAC, "--runner", "local", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.splitlines()[-1])["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass")
    assert "built" in data["message"].split("Task 'check' finished successfully!")[1]
    assert not (tmp_path / "state").exists()


def test_run_refuses_a_claim_not_allowed(tmp_path: Path) -> None:
    done = jes("run", "--config", write(tmp_path), "--event", APAC, "--runner", "local", "--yes",
               env={"JES_STATE_DIR": str(tmp_path / "state")})  # fmt: skip
    assert done.returncode == 1
    data = json.loads(done.stdout.splitlines()[-1])["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert "persistentVolumeClaim 'shared-data' is not in the executor's allowed volume claims" in data["message"]
    assert not (tmp_path / "state" / "volumes").exists()
