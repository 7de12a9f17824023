"""``retries`` as the authoring commands and ``jes run`` show it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands.test_authoring import APAC, run
from tests.commands.test_run_serve_demo import jes


def config(tmp_path: Path, retries: str = "retries: 2\n        retryOnExitCodes: [2]") -> str:
    counter = tmp_path / "count"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; exit 2"
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sayhello}]\n    tasks:\n"
        f"      - name: tests\n        image: alpine\n        cmd: [/bin/sh, -c, {json.dumps(script)}]\n"
        f"        {retries}\n"
    )
    return str(path)


def test_validate_refuses_exit_codes_without_retries_at_file_line_col(tmp_path: Path) -> None:
    path = config(tmp_path, "retryOnExitCodes: [2]")
    code, out, _ = run("validate", path)
    assert code == 1
    assert out.splitlines() == [
        f"{path}:9:27: actions[0].tasks[0].retryOnExitCodes: has no effect without retries: "
        "set retries (1 to 10) or remove retryOnExitCodes"
    ]


def test_match_shows_retries_in_text_and_json(tmp_path: Path) -> None:
    path = config(tmp_path)
    code, out, _ = run("match", "--config", path, "--event", APAC, "--json")
    assert code == 0
    (task,) = json.loads(out)["actions"][0]["tasks"]
    assert (task["retries"], task["retryOnExitCodes"]) == (2, [2])
    code, out, _ = run("match", "--config", path, "--event", APAC)
    assert "  task 0 'tests' (retries: 2 on exit codes 2): alpine" in out


def test_render_shows_the_backoff_limit_and_the_policy(tmp_path: Path) -> None:
    code, out, _ = run("render", "--config", config(tmp_path), "--event", APAC)
    assert code == 0
    assert (
        "# task 'tests' runs up to 3 times after exit codes [2] (backoffLimit; podFailurePolicy: "
        "disruptions do not count)\n" in out.split("apiVersion:")[0]
    ), "a note above the Job"
    assert "backoffLimit: 2\n" in out and "podFailurePolicy:\n" in out and "operator: NotIn\n" in out


def test_run_retries_with_the_local_runner(tmp_path: Path) -> None:
    done = jes("run", "--config", config(tmp_path), "--event", APAC, "--runner", "local", "--yes")
    assert done.returncode == 1
    data = json.loads(done.stdout.splitlines()[-1])["data"]
    assert data["message"].startswith("Task 'tests' failed: exit code 2 after 3 attempts, no retry left\n")
    assert (data["jes"]["tasks"][0]["attempts"], data["jes"]["tasks"][0]["exitCodes"]) == (3, [2, 2, 2])
    assert (tmp_path / "count").read_text().strip() == "3"
