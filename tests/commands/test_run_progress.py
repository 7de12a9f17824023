"""``jes run`` shows a progress line per task on stderr: coloured on a terminal, plain otherwise."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JES = str(Path(sys.executable).parent / "jes")
HELLO = str(REPO / "examples/job/config.yaml")
APAC = str(REPO / "examples/events/sayhello-apac.json")
ARGS = ["run", "--config", HELLO, "--event", APAC, "--runner", "local", "--yes"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB", "LOCATION"))}


def test_plain_progress_lines_without_a_terminal() -> None:
    done = subprocess.run([JES, *ARGS], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("jes: ")]
    assert lines[0] == "jes: task 1/1 'Say Hello World' started (image alpine)"
    assert re.fullmatch(r"jes: task 1/1 'Say Hello World' succeeded in \d+\.\d s", lines[1])
    assert lines[2] == "jes: sayhello.finished: succeeded/pass"
    assert "\x1b[" not in done.stderr


def test_coloured_progress_lines_on_a_terminal() -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen([JES, *ARGS], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary,
                               env={**clean_env(), "TERM": "xterm-256color"})  # fmt: skip
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0
    text = seen.decode()
    assert "\x1b[" in text, "styled on a terminal"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "▶ task 1/1 'Say Hello World' started (image alpine)" in plain
    assert re.search(r"✓ task 1/1 'Say Hello World' succeeded in \d+\.\d s", plain)
    assert "✓ sayhello.finished: succeeded/pass" in plain
