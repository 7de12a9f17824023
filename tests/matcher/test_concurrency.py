"""``actions[].concurrency``: strict validation at file:line:col, the schema, and the queue each
event renders to (the key's value; a key that finds nothing makes the action unable to run)."""

from __future__ import annotations

from typing import Any

import pytest

from jes import errors
from jes.matcher import config
from jes.matcher import matching as matcher
from jes.models import Concurrency, queue_of

HEAD = "apiVersion: v2\nactions:\n  - name: load-test\n    events: [{name: test}]\n"
TASKS = "    tasks:\n      - name: t\n        image: alpine\n"
EVENT: dict[str, Any] = {
    "type": "sh.keptn.event.test.triggered",
    "id": "e-1",
    "data": {"project": "p", "stage": "dev", "service": "s", "test": {"shards": [1, 2], "n": 3}},
}


def plan_of(concurrency: str, event: dict[str, Any] | None = None) -> Any:
    loaded = config.load(HEAD + concurrency + TASKS)
    (action,) = matcher.plan(loaded, event or EVENT, matcher.Executor()).actions
    return action


def problems(concurrency: str) -> list[tuple[int, int, str, str]]:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(HEAD + concurrency + TASKS)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def test_without_concurrency_nothing_changes() -> None:
    action = plan_of("")
    assert action.concurrency is None and action.error is None


@pytest.mark.parametrize(
    ("block", "key", "value"),
    [
        ('    concurrency: {limit: 1, key: "$.data.stage"}\n', "$.data.stage", "dev"),
        ("    concurrency:\n      limit: 2\n", "", ""),
        ("    concurrency: {limit: 1, key: $.data.test.n}\n", "$.data.test.n", "3"),
        (
            "    concurrency: {limit: 1, key: \"$.data['stage','service']\"}\n",
            "$.data['stage','service']",
            '["dev","s"]',
        ),
    ],
)
def test_the_key_value_names_the_queue(block: str, key: str, value: str) -> None:
    action = plan_of(block)
    assert action.error is None
    assert action.concurrency == Concurrency(action.concurrency.limit, key, value, queue_of("p", "load-test", value))


def test_the_queue_is_per_project_action_and_value() -> None:
    other_stage = {**EVENT, "data": {**EVENT["data"], "stage": "prod"}}
    other_project = {**EVENT, "data": {**EVENT["data"], "project": "q"}}
    block = '    concurrency: {limit: 1, key: "$.data.stage"}\n'
    queues = {plan_of(block, e).concurrency.queue for e in (EVENT, other_stage, other_project)}
    assert len(queues) == 3
    assert plan_of(block).concurrency.queue == plan_of(block, {**EVENT, "id": "e-2"}).concurrency.queue


def test_a_key_that_finds_nothing_makes_the_action_unable_to_run() -> None:
    action = plan_of('    concurrency: {limit: 1, key: "$.data.region"}\n')
    assert action.tasks == () and action.concurrency is None
    assert action.error == (
        "action 'load-test': concurrency key $.data.region: "
        "key 'region' not found in $.data (keys there: project, service, stage, test)"
    )


LIMIT = "actions[0].concurrency.limit"
AT_LEAST_1 = "must be at least 1 (how many events may run this action at once), got "


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("    concurrency: {limit: 0}\n", [(5, 26, LIMIT, AT_LEAST_1 + "0")]),
        ("    concurrency: {limit: -3}\n", [(5, 26, LIMIT, AT_LEAST_1 + "-3")]),
        ("    concurrency: {limit: one}\n", [(5, 26, LIMIT, "expected a whole number, got a string")]),
        ("    concurrency: {limit: true}\n", [(5, 26, LIMIT, "expected a whole number, got a boolean")]),
        ("    concurrency: {key: $.data.stage}\n", [(5, 18, LIMIT, "required field is missing")]),
        ("    concurrency: {limit: 1, key: data.stage}\n", [(5, 34, "actions[0].concurrency.key",
            "invalid JSONPath 'data.stage': it must start with $ (e.g. $.data.project)")]),
        ("    concurrency: {limit: 1, keys: $.data.stage}\n", [(5, 29, "actions[0].concurrency.keys",
            "unknown field 'keys' (did you mean 'key'?)")]),
        ("    concurrency: 1\n", [(5, 18, "actions[0].concurrency", "expected a mapping, got a number")]),
    ],
)  # fmt: skip
def test_invalid_concurrency_is_refused_where_it_is(block: str, expected: list[Any]) -> None:
    assert problems(block) == expected


def test_schema_describes_the_block() -> None:
    schema = config.json_schema()
    block = schema["$defs"]["Concurrency"]
    assert block["required"] == ["limit"] and set(block["properties"]) == {"limit", "key"}
    assert block["additionalProperties"] is False
