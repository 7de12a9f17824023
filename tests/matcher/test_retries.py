"""``tasks[].retries`` and ``retryOnExitCodes``: strict values, defaults, the schema and the rendered task."""

from __future__ import annotations

import pytest

from jes import errors
from jes.matcher import config
from tests.matcher.test_rendering import plan_action

TASK = "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: x}]\n    tasks:\n      - name: t\n        image: alpine\n"


@pytest.mark.parametrize(
    ("lines", "retries", "codes"),
    [
        ("", 0, ()),
        ("        retries: 2\n", 2, ()),
        ("        retries: 10\n        retryOnExitCodes: [3, 2]\n", 10, (2, 3)),
        ("        retries: 0\n", 0, ()),
    ],
)
def test_values_and_defaults(lines: str, retries: int, codes: tuple[int, ...]) -> None:
    action = plan_action(f"      - name: t\n        image: alpine\n{lines}")
    assert (action.tasks[0].retries, action.tasks[0].retry_on_exit_codes) == (retries, codes)


@pytest.mark.parametrize(
    ("lines", "problems"),
    [
        ("        retries: 11\n", [(8, 18, "actions[0].tasks[0].retries", "11 is out of range: write 0 (no retry) to 10")]),
        ("        retries: -1\n", [(8, 18, "actions[0].tasks[0].retries", "-1 is out of range: write 0 (no retry) to 10")]),
        ("        retries: two\n", [(8, 18, "actions[0].tasks[0].retries", "expected a whole number, got a string")]),
        (
            "        retryOnExitCodes: [2]\n",
            [(8, 27, "actions[0].tasks[0].retryOnExitCodes",
              "has no effect without retries: set retries (1 to 10) or remove retryOnExitCodes")],
        ),
        (
            "        retries: 1\n        retryOnExitCodes: [0, 2, 256, 2]\n",
            [
                (9, 28, "actions[0].tasks[0].retryOnExitCodes[0]", "0 is not a failing exit code: write 1 to 255 (0 is success)"),
                (9, 34, "actions[0].tasks[0].retryOnExitCodes[2]", "256 is not a failing exit code: write 1 to 255 (0 is success)"),
                (9, 39, "actions[0].tasks[0].retryOnExitCodes[3]", "2 is listed twice"),
            ],
        ),
        (
            "        retries: 1\n        retryOnExitCodes: []\n",
            [(9, 27, "actions[0].tasks[0].retryOnExitCodes",
              "is empty: list the exit codes to retry, or remove it to retry every non-zero exit code")],
        ),
        (
            "        retries: 1\n        retryOnExitCodes: 2\n",
            [(9, 27, "actions[0].tasks[0].retryOnExitCodes", "expected a list of whole numbers, got a number")],
        ),
        (
            "        retries: 1\n        retryOnExitCodes: [a]\n",
            [(9, 27, "actions[0].tasks[0].retryOnExitCodes",
              "expected a list of whole numbers, but item 0 is a string")],
        ),
    ],
)  # fmt: skip
def test_wrong_values_are_refused_with_where_and_how(lines: str, problems: list[tuple[int, int, str, str]]) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(TASK + lines)
    assert [(p.line, p.column, p.path, p.message) for p in caught.value.problems] == problems


def test_schema_has_both_fields() -> None:
    properties = config.json_schema()["$defs"]["Task"]["properties"]
    assert properties["retries"]["default"] == 0 and properties["retries"]["type"] == "integer"
    assert properties["retryOnExitCodes"]["items"] == {"type": "integer"}
