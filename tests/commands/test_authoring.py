"""The authoring commands as a user runs them: output formats and exit codes of the CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from jes import cli
from tests.conftest import k8s_valid

REPO = Path(__file__).resolve().parents[2]
HELLO = str(REPO / "examples/job/config.yaml")
ALL = str(REPO / "examples/job/all-features.yaml")
APAC = str(REPO / "examples/events/sayhello-apac.json")
EU = str(REPO / "examples/events/sayhello-eu.json")
TEST_EVENT = str(REPO / "examples/events/test-triggered.json")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_validate_accepts_the_examples() -> None:
    code, out, _ = run("validate", HELLO, ALL)
    assert code == 0
    assert out.splitlines() == [f"{HELLO}: valid", f"{ALL}: valid"]


def test_validate_reports_every_problem_as_file_line_col(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("apiVersion: v2\nactions:\n  - name: a\n    tasks:\n      - cmd: wrong value\n        nmae: x\n")
    code, out, _ = run("validate", HELLO, str(bad), str(tmp_path / "missing.yaml"))
    assert code == 1
    assert out.splitlines() == [
        f"{HELLO}: valid",
        f"{bad}:3:5: warning: actions[0]: action has no events, so it never runs",  # in the same pass
        f"{bad}:5:14: actions[0].tasks[0].cmd: expected a list of strings, got a string",
        f"{bad}:6:9: actions[0].tasks[0].nmae: unknown field 'nmae' (did you mean 'name'?)",
        f"{tmp_path / 'missing.yaml'}:1:1: cannot read the file: No such file or directory",
    ]


def test_validate_checks_images_only_when_a_list_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("validate", HELLO)[0] == 0
    code, out, _ = run("validate", "--allowed-images", "docker.io/*", HELLO)
    assert code == 1 and "image 'alpine' does not match the allowed image list" in out
    assert run("validate", "--allowed-images", "alpine,docker.io/*", HELLO)[0] == 0
    monkeypatch.setenv("ALLOWED_IMAGE_LIST", "ghcr.io/*")
    assert run("validate", HELLO)[0] == 1


def test_validate_refuses_privileged_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("apiVersion: v2\nactions:\n  - tasks:\n      - image: x\n        securityContext: {privileged: true}\n")
    code, out, _ = run("validate", str(path))
    assert code == 1 and f"{path}:5:39: actions[0].tasks[0].securityContext.privileged: privileged" in out
    assert run("validate", "--allow-privileged-jobs", str(path))[0] == 0
    monkeypatch.setenv("ALLOW_PRIVILEGED_JOBS", "true")
    assert run("validate", str(path))[0] == 0


def test_validate_prints_warnings_without_failing(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("apiVersion: v2\nactions:\n  - name: a\n    tasks: [{name: t, image: x, ttlSecondsAfterFinished: 1}]\n")
    code, out, _ = run("validate", str(path))
    assert code == 0
    assert f"{path}:3:5: warning: actions[0]: action has no events, so it never runs" in out.splitlines()


def test_bad_settings_stop_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_PRIVILEGED_JOBS", "perhaps")
    code, _, err = run("validate", HELLO)
    assert code == 2
    assert "ALLOW_PRIVILEGED_JOBS: expected true or false, got 'perhaps'" in err


def test_match_json_contract() -> None:
    code, out, _ = run("match", "--config", HELLO, "--event", APAC, "--json")
    assert code == 0
    assert json.loads(out) == {
        "matched": True,
        "actions": [
            {
                "index": 0,
                "name": "Run alpine image to say hello world from APAC",
                "silent": False,
                "tasks": [
                    {
                        "index": 0,
                        "name": "Say Hello World",
                        "image": "alpine",
                        "cmd": ["echo"],
                        "args": ["Hello, world from APAC!"],
                        "workingDir": "",
                        "env": [
                            {"name": "KEPTN_PROJECT", "value": "my-first-project"},
                            {"name": "KEPTN_STAGE", "value": "dev"},
                            {"name": "KEPTN_SERVICE", "value": "service1"},
                            {"name": "LABELS_FOO", "value": "bar - labels are optional"},
                        ],
                        "onError": "fail",
                        "volumes": [],
                        "retries": 0,
                        "retryOnExitCodes": [],
                    }
                ],
            }
        ],
    }


def test_match_json_with_secrets_locations_and_no_match(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run("match", "--config", ALL, "--event", TEST_EVENT, "--location", "EU", "--json")
    document = json.loads(out)
    assert code == 0 and [a["index"] for a in document["actions"]] == [0, 1]
    env = document["actions"][1]["tasks"][0]["env"]
    assert {"name": "locust-credentials", "secretRef": "locust-credentials"} in env
    assert {"name": "URIS", "value": "- http://carts.sockshop-dev:80\n- http://carts-canary.sockshop-dev:80\n"} in env
    monkeypatch.setenv("LOCATION", "US")
    document = json.loads(run("match", "--config", ALL, "--event", TEST_EVENT, "--json")[1])
    assert [a["index"] for a in document["actions"]] == [0]
    code, out, _ = run("match", "--config", HELLO, "--event", TEST_EVENT, "--json")
    assert code == 0 and json.loads(out) == {"matched": False, "actions": []}


def test_match_exit_1_for_invalid_config_or_event(tmp_path: Path) -> None:
    event = tmp_path / "e.json"
    event.write_text("{not json")
    code, _, err = run("match", "--config", HELLO, "--event", str(event))
    assert code == 1 and f"{event}:1:2: not valid JSON" in err
    event.write_text('{"id": "x"}')
    code, _, err = run("match", "--config", HELLO, "--event", str(event))
    assert code == 1 and "type is missing" in err
    config = tmp_path / "c.yaml"
    config.write_text("apiVersion: v3\n")
    code, _, err = run("match", "--config", str(config), "--event", APAC)
    assert code == 1 and "apiVersion v3 is not supported, use v2" in err


def test_explain_says_why_for_every_action_and_entry() -> None:
    code, out, _ = run("explain", "--config", HELLO, "--event", EU, "--location", "EU")
    assert code == 0
    assert "[skip] action 0 'Run alpine image to say hello world from APAC': does not match" in out
    assert "events[0] no match: name matches, but jsonpath $.data.sayhello.location = \"EU\", expected 'APAC'" in out
    assert "[RUNS] action 1 'Run alpine image to say hello world from EU': runs and reports" in out
    assert "location: no locations: runs on every executor" in out
    assert out.rstrip().endswith("result: runs action(s) 1 'Run alpine image to say hello world from EU'")


def test_render_prints_valid_job_manifests() -> None:
    code, out, _ = run("render", "--config", ALL, "--event", TEST_EVENT, "--location", "EU", "--namespace", "keptn-jes-eu")
    assert code == 0
    assert "# files ['locust/basic.py', '/helm'] are fetched when the task runs" in out
    jobs = [doc for doc in yaml.safe_load_all(out) if doc]
    assert len(jobs) == 2
    for job in jobs:
        k8s_valid(job)
    assert jobs[0]["metadata"]["namespace"] == "keptn-jes-eu"  # --namespace overrides JOB_NAMESPACE
    assert jobs[1]["metadata"]["namespace"] == "carts-tests"  # the task's own namespace wins


def test_render_without_match_says_so() -> None:
    code, out, _ = run("render", "--config", HELLO, "--event", TEST_EVENT)
    assert code == 0 and out == "# no action matches this event: no Job would be created\n"


def test_schema_is_json_schema_of_the_model() -> None:
    code, out, _ = run("schema")
    schema = json.loads(out)
    assert code == 0 and schema["$schema"].startswith("https://json-schema.org/")
    assert schema["required"] == ["apiVersion"] and schema["additionalProperties"] is False


def test_the_installed_command_runs_and_keeps_exit_codes(tmp_path: Path) -> None:
    jes = str(Path(sys.executable).parent / "jes")
    assert subprocess.run([jes, "validate", HELLO], capture_output=True).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v2\nactions: [")
    done = subprocess.run([jes, "validate", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout.startswith(f"{bad}:2:") and "YAML syntax error" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
