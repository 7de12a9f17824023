"""``actions[].concurrency`` as the authoring commands and ``jes run`` show it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands.test_authoring import APAC, run
from tests.commands.test_run_serve_demo import jes

CONFIG = """apiVersion: v2
actions:
  - name: load-test
    events: [{name: sayhello}]
    concurrency: {limit: 1, key: "$.data.stage"}
    tasks:
      - name: run
        image: alpine
        cmd: [echo, load]
"""
SHOWN = 'at most 1 event at a time for $.data.stage = "dev"; others wait in arrival order'


def write(tmp_path: Path, text: str = CONFIG) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_validate_refuses_a_limit_below_1_at_file_line_col(tmp_path: Path) -> None:
    config = write(tmp_path, CONFIG.replace("limit: 1", "limit: 0"))
    code, out, _ = run("validate", config)
    assert code == 1
    assert out.splitlines() == [
        f"{config}:5:26: actions[0].concurrency.limit: must be at least 1 (how many events may run this "
        "action at once), got 0"
    ]
    assert run("validate", write(tmp_path))[0] == 0


def test_match_shows_the_queue_in_text_and_json(tmp_path: Path) -> None:
    config = write(tmp_path)
    code, out, _ = run("match", "--config", config, "--event", APAC, "--json")
    assert code == 0
    assert json.loads(out)["actions"][0]["concurrency"] == {"limit": 1, "key": "$.data.stage", "value": "dev"}
    code, out, _ = run("match", "--config", config, "--event", APAC)
    assert code == 0
    assert f"  concurrency: {SHOWN}\n" in out
    code, out, _ = run(
        "match", "--config", write(tmp_path, CONFIG.replace("    concurrency", "    #")), "--event", APAC, "--json"
    )
    assert "concurrency" not in json.loads(out)["actions"][0]  # no field: as before


def test_explain_shows_the_key_value_or_why_it_cannot_run(tmp_path: Path) -> None:
    code, out, _ = run("explain", "--config", write(tmp_path), "--event", APAC)
    assert code == 0
    assert f"    concurrency: {SHOWN}\n" in out
    code, out, _ = run(
        "explain", "--config", write(tmp_path, CONFIG.replace("data.stage", "data.region")), "--event", APAC
    )
    assert (
        "    concurrency: cannot run: action 'load-test': concurrency key $.data.region: key 'region' not found" in out
    )


def test_render_notes_the_queue(tmp_path: Path) -> None:
    code, out, _ = run("render", "--config", write(tmp_path), "--event", APAC)
    assert code == 0
    assert out.startswith(f"# action 'load-test': {SHOWN}\n")  # first, above the Job's other notes
    assert "\napiVersion: batch/v1\n" in out


def test_run_an_action_with_concurrency_runs_at_once(tmp_path: Path) -> None:
    done = jes("run", "--config", write(tmp_path), "--event", APAC, "--runner", "local", "--yes")
    assert done.returncode == 0, done.stderr
    types = [json.loads(line)["type"].rsplit(".", 1)[-1] for line in done.stdout.splitlines()]
    assert types[0] == "started" and types[-1] == "finished"
    assert all("queue" not in json.loads(line)["data"].get("jes", {}) for line in done.stdout.splitlines())
    assert "load" in json.loads(done.stdout.splitlines()[-1])["data"]["message"]
