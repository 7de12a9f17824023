"""A task's output file (``$KEPTN_OUTPUT_FILE``): validated and attached to its outcome.

Both runners end the same way: the file's bytes (or why they could not be read) are judged here.
Empty or absent: no output. Otherwise it must be UTF-8 JSON whose top level is an object; anything
else fails the task (status failed, so the action's ``.finished`` is errored) with a reason naming
the file and what is wrong. A task that failed anyway keeps its own reason, with the output's
problem added; a valid output of a failed task is kept (and merged into the ``.finished`` data).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from jes.models import Outcome, Status

KUBERNETES_OUTPUT_DIR = "/keptn-output"
KUBERNETES_OUTPUT_FILE = KUBERNETES_OUTPUT_DIR + "/output.json"

_JSON_TYPES = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def parse(raw: bytes, path: str) -> tuple[Mapping[str, Any] | None, str]:
    """(the output object or None, the problem with it or '')."""
    if not raw.strip():
        return None, ""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"output file {path}: not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"output file {path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return None, f"output file {path}: not valid JSON (nested too deeply)"
    if not isinstance(value, dict):
        found = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
        return None, f'output file {path}: not a JSON object (found {found}); write an object such as {{"test": {{}}}}'
    return value, ""


def attach(outcome: Outcome, output: Mapping[str, Any] | None, problem: str) -> Outcome:
    """``outcome`` with its output, or failed for the output's ``problem``."""
    if not problem:
        return dataclasses.replace(outcome, output=output) if output is not None else outcome
    if outcome.succeeded:
        return dataclasses.replace(outcome, status=Status.FAILED, reason=problem, output=None)
    return dataclasses.replace(outcome, reason=f"{outcome.reason}; and its {problem}", output=None)


def judged(outcome: Outcome, raw: bytes | None, path: str, problem: str = "") -> Outcome:
    """``outcome`` with the output file's ``raw`` bytes judged (``problem``: why they could not be
    read at all)."""
    if problem:
        return attach(outcome, None, f"output file {path}: {problem}")
    output, problem = parse(raw or b"", path)
    return attach(outcome, output, problem)
