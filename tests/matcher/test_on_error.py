"""``tasks[].onError``: strict values, the default, the schema and the rendered task."""

from __future__ import annotations

import pytest

from jes import errors
from jes.matcher import config
from tests.matcher.test_rendering import plan_action

TASK = "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: x}]\n    tasks:\n      - name: t\n        image: alpine\n"


@pytest.mark.parametrize(("value", "expected"), [("", "fail"), ("        onError: fail\n", "fail"),
                                                 ("        onError: warning\n", "warning")])  # fmt: skip
def test_on_error_values_and_default(value: str, expected: str) -> None:
    loaded = config.load(TASK + value)
    assert loaded.config.actions is not None and loaded.config.actions[0].tasks is not None
    assert loaded.config.actions[0].tasks[0].onError == expected
    action = plan_action(f"      - name: t\n        image: alpine\n{value}")
    assert action.tasks[0].on_error == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("warn", 'Unsupported value: "warn": supported values: "fail", "warning"'),
        ("Warning", 'Unsupported value: "Warning": supported values: "fail", "warning" (did you mean \'warning\'?)'),
        ("''", 'Unsupported value: "": supported values: "fail", "warning"'),
        ("[warning]", "expected a string, got a list"),
        ("true", 'Unsupported value: "true": supported values: "fail", "warning"'),
    ],
)
def test_other_values_are_refused_with_the_allowed_ones(value: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(TASK + f"        onError: {value}\n")
    assert [(p.line, p.column, p.path, p.message) for p in caught.value.problems] == [
        (8, 18, "actions[0].tasks[0].onError", message)
    ]


def test_schema_lists_the_values_and_the_default() -> None:
    field = config.json_schema()["$defs"]["Task"]["properties"]["onError"]
    assert field["enum"] == ["fail", "warning"] and field["default"] == "fail"
