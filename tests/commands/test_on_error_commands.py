"""``onError`` as the authoring commands and ``jes run`` show it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands.test_authoring import APAC, run
from tests.commands.test_run_serve_demo import jes

CONFIG = """apiVersion: v2
actions:
  - name: a
    events: [{name: sayhello}]
    tasks:
      - name: lint
        image: alpine
        cmd: [/bin/sh, -c]
        args: ['echo lint says no; exit 1']
        onError: warning
      - name: deploy
        image: alpine
        cmd: [echo, deployed]
"""


def write(tmp_path: Path, text: str = CONFIG) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_validate_refuses_another_value_at_file_line_col(tmp_path: Path) -> None:
    config = write(tmp_path, CONFIG.replace("onError: warning", "onError: ignore"))
    code, out, _ = run("validate", config)
    assert code == 1
    assert out.splitlines() == [
        f'{config}:10:18: actions[0].tasks[0].onError: Unsupported value: "ignore": supported values: "fail", "warning"'
    ]
    assert run("validate", write(tmp_path))[0] == 0


def test_match_shows_on_error_in_text_and_json(tmp_path: Path) -> None:
    config = write(tmp_path)
    code, out, _ = run("match", "--config", config, "--event", APAC, "--json")
    assert code == 0
    assert [t["onError"] for t in json.loads(out)["actions"][0]["tasks"]] == ["warning", "fail"]
    code, out, _ = run("match", "--config", config, "--event", APAC)
    assert code == 0
    assert "  task 0 'lint' (onError: warning): alpine" in out
    assert "  task 1 'deploy': alpine" in out


def test_render_notes_a_warning_task(tmp_path: Path) -> None:
    code, out, _ = run("render", "--config", write(tmp_path), "--event", APAC)
    assert code == 0
    assert out.count("# task 'lint' has onError: warning: if it fails, the next tasks still run\n") == 1


def test_run_a_failed_warning_task_exits_0_and_runs_the_next(tmp_path: Path) -> None:
    done = jes("run", "--config", write(tmp_path), "--event", APAC, "--runner", "local", "--yes")
    assert done.returncode == 0, done.stderr
    finished = json.loads(done.stdout.splitlines()[-1])
    data = finished["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    assert data["message"].startswith("task 1/2 'lint' failed (exit code 1) — onError: warning\n")
    assert "lint says no" in data["message"] and "Task 'deploy' finished successfully!" in data["message"]
    assert [(t["status"], t["onError"]) for t in data["jes"]["tasks"]] == [("failed", "warning"), ("succeeded", "fail")]


def test_run_a_failed_fail_task_after_a_warning_exits_1(tmp_path: Path) -> None:
    config = write(tmp_path, CONFIG.replace("cmd: [echo, deployed]", "cmd: [/bin/sh, -c, 'exit 5']"))
    done = jes("run", "--config", config, "--event", APAC, "--runner", "local", "--yes")
    assert done.returncode == 1
    data = json.loads(done.stdout.splitlines()[-1])["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("Task 'deploy' failed: exit code 5")
