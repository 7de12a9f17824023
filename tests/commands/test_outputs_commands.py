"""Task outputs as the authoring commands and ``jes run`` show them: ``jes render`` has the
``jes-output`` sidecar and ``$KEPTN_OUTPUT_FILE`` (none with JES_TASK_OUTPUTS=false), ``jes run``
prints the merged data in the ``.finished`` it prints."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.commands.test_authoring import APAC
from tests.commands.test_run_serve_demo import jes
from tests.conftest import k8s_valid

CONFIG = """apiVersion: v2
actions:
  - name: a
    events: [{name: sayhello}]
    tasks:
      - name: test
        image: alpine
        cmd: [/bin/sh, -c]
        args: ['echo testing; printf "%s" "{\\"test\\": {\\"result\\": \\"pass\\"}, \\"score\\": 97}" > "$KEPTN_OUTPUT_FILE"']
"""


def write(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_render_shows_the_sidecar_and_the_variable(tmp_path: Path) -> None:
    done = jes("render", "--config", write(tmp_path), "--event", APAC)
    assert done.returncode == 0, done.stderr
    assert "# the task may write a JSON object to $KEPTN_OUTPUT_FILE: the jes-output sidecar relays it" in done.stdout
    (job,) = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    k8s_valid(job)
    pod = job["spec"]["template"]["spec"]
    assert [(c["name"], c["restartPolicy"]) for c in pod["initContainers"]] == [("jes-output", "Always")]
    assert {"name": "KEPTN_OUTPUT_FILE", "value": "/keptn-output/output.json"} in pod["containers"][0]["env"]


def test_render_without_outputs_has_no_sidecar(tmp_path: Path) -> None:
    done = jes("render", "--config", write(tmp_path), "--event", APAC, env={"JES_TASK_OUTPUTS": "false"})
    assert done.returncode == 0, done.stderr
    assert "jes-output" not in done.stdout
    (job,) = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert "KEPTN_OUTPUT_FILE" not in [e["name"] for e in pod["containers"][0].get("env", [])]
    assert [v["name"] for v in pod["volumes"]] == ["job-volume"]


def test_run_prints_the_merged_data(tmp_path: Path) -> None:
    done = jes("run", "--config", write(tmp_path), "--event", APAC, "--runner", "local", "--yes",
               env={"JES_STATE_DIR": str(tmp_path / "state")})  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.splitlines()[-1])["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass")
    assert (data["test"], data["score"]) == ({"result": "pass"}, 97)
    assert data["jes"]["tasks"][0]["outputKeys"] == ["score", "test"]
