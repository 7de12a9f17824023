"""Which actions run: name regex, JSONPath filter, locations, and the silent/first-non-silent rule."""

from __future__ import annotations

from typing import Any

import pytest

from jes.matcher import config
from jes.matcher import matching as matcher


def event(event_type: str = "sh.keptn.event.test.triggered", **data: Any) -> dict[str, Any]:
    return {
        "id": "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b",
        "type": event_type,
        "source": "shipyard-controller",
        "specversion": "1.0",
        "shkeptncontext": "ctx-1",
        "time": "2023-12-21T10:00:00Z",
        "data": {"project": "p", "stage": "s", "service": "svc", **data},
    }


def cfg(actions_yaml: str) -> config.LoadedConfig:
    return config.load("apiVersion: v2\nactions:\n" + actions_yaml)


def running(loaded: config.LoadedConfig, ev: dict[str, Any], location: str | None = None) -> list[int]:
    return [a.index for a in matcher.plan(loaded, ev, matcher.Executor(location=location)).actions]


def trigger(name: str, prop: str = "", match: str = "") -> str:
    jsonpath = f", jsonpath: {{property: '{prop}', match: '{match}'}}" if prop else ""
    return f"  - name: a\n    events: [{{name: '{name}'{jsonpath}}}]\n    tasks: [{{name: t, image: alpine}}]\n"


@pytest.mark.parametrize(
    ("name", "event_type", "matches"),
    [
        ("sh.keptn.event.test.triggered", "sh.keptn.event.test.triggered", True),
        ("sh.keptn.event.*.triggered", "sh.keptn.event.action.triggered", True),
        ("sh.keptn.event.*.triggered", "sh.keptn.event.test.triggered", True),
        ("sh.keptn.event.deployment", "sh.keptn.event.deployment.triggered", True),  # unanchored
        ("sh.keptn.event.deployment", "sh.keptn.event.deployment.finished", True),
        ("test", "sh.keptn.event.mytest.triggered", True),
        ("sh.keptn.event.test.triggered", "sh.keptn.event.action.triggered", False),
        ("sh.keptn.event.action.started", "sh.keptn.event.action.started", True),
        ("^sh.keptn.event.test.triggered$", "sh.keptn.event.test.triggered.x", False),
        ("sh.keptn.event.test.triggered", "shXkeptnXeventXtestXtriggered", True),  # dots match anything
        ("", "anything.at.all", True),
    ],
)
def test_event_name_is_an_unanchored_regex(name: str, event_type: str, matches: bool) -> None:
    assert running(cfg(trigger(name)), event(event_type)) == ([0] if matches else [])


@pytest.mark.parametrize(
    ("prop", "match", "data", "matches"),
    [
        ("$.data.test.teststrategy", "health", {"test": {"teststrategy": "health"}}, True),
        ("$.data.test.teststrategy", "health", {"test": {"teststrategy": "locust"}}, False),
        ("$.data.test.teststrategy", "health", {}, False),  # missing: no match, no error
        ("$.data.test.teststrategy", "health", {"test": "flat"}, False),
        ("$.data.count", "3", {"count": 3}, True),  # numbers by JSON text
        ("$.data.count", "3.5", {"count": 3.5}, True),
        ("$.data.count", "3", {"count": "3"}, True),
        ("$.data.flag", "true", {"flag": True}, True),  # booleans by JSON text
        ("$.data.flag", "True", {"flag": True}, False),
        ("$.data.list", "[a]", {"list": ["a"]}, False),  # lists never match
        ("$.data.obj", "{}", {"obj": {}}, False),  # objects never match
        ("$.data.nothing", "null", {"nothing": None}, False),
        ("$.data.list[*]", "a", {"list": ["a"]}, False),  # multi-valued paths yield lists
        ("$.data.list[0]", "a", {"list": ["a", "b"]}, True),
        ("$.data.list[5]", "a", {"list": ["a", "b"]}, False),
        ("$.type", "sh.keptn.event.test.triggered", {}, True),  # plain strings (upstream: pointers)
        ("$.source", "shipyard-controller", {}, True),
        ("$.shkeptncontext", "ctx-1", {}, True),
        ("$.id", "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b", {}, True),
        ("$.data[\"odd key\"]", "v", {"odd key": "v"}, True),
    ],
)
def test_jsonpath_filter_compares_strings(prop: str, match: str, data: dict[str, Any], matches: bool) -> None:
    loaded = cfg(trigger("sh.keptn.event.test.triggered", prop, match))
    assert running(loaded, event(**data)) == ([0] if matches else [])


def test_any_event_entry_can_match() -> None:
    loaded = cfg(
        "  - name: a\n    events:\n"
        "      - {name: sh.keptn.event.action.triggered, jsonpath: {property: $.data.action.action, match: hello}}\n"
        "      - {name: sh.keptn.event.action.triggered, jsonpath: {property: $.data.action.action, match: goodbye}}\n"
    )
    assert running(loaded, event("sh.keptn.event.action.triggered", action={"action": "goodbye"})) == [0]
    assert running(loaded, event("sh.keptn.event.action.triggered", action={"action": "hello"})) == [0]
    assert running(loaded, event("sh.keptn.event.action.triggered", action={"action": "other"})) == []


def test_action_without_events_never_runs() -> None:
    assert running(cfg("  - name: a\n    tasks: [{name: t}]\n"), event()) == []


@pytest.mark.parametrize(
    ("silent_flags", "expected"),
    [
        ([False, False], [0]),  # first non-silent match decides
        ([True, False, False], [0, 1]),  # leading silent ones run too
        ([True, True], [0, 1]),  # only silent: all run
        ([False, True], [0]),  # silent after the decision: ignored
        ([True, False, True, False], [0, 1]),
    ],
)
def test_leading_silent_matches_then_the_first_non_silent_one(silent_flags: list[bool], expected: list[int]) -> None:
    actions = "".join(
        f"  - name: a{i}\n    silent: {str(flag).lower()}\n    events: [{{name: test}}]\n"
        for i, flag in enumerate(silent_flags)
    )
    assert running(cfg(actions), event()) == expected


def test_non_matching_actions_are_skipped_and_indexes_are_positions_in_the_file() -> None:
    actions = "  - name: a\n    events: [{name: nope}]\n  - name: b\n    events: [{name: test}]\n"
    assert running(cfg(actions), event()) == [1]


@pytest.mark.parametrize(
    ("locations", "executor", "runs"),
    [
        (None, None, True),
        (None, "EU", True),
        (["EU"], "EU", True),
        (["EU", "APAC"], "APAC", True),
        (["EU"], "APAC", False),
        (["EU"], None, False),  # an executor without location never runs a located action
        (["EU"], "eu", False),  # case-sensitive
        ([], "EU", False),
    ],
)
def test_locations(locations: list[str] | None, executor: str | None, runs: bool) -> None:
    extra = f"    locations: {locations}\n" if locations is not None else ""
    loaded = cfg(f"  - name: a\n{extra}    events: [{{name: test}}]\n")
    assert running(loaded, event(), executor) == ([0] if runs else [])


def test_hello_world_routes_each_region_to_its_action(repo) -> None:  # type: ignore[no-untyped-def]
    loaded = config.load((repo / "examples/job/config.yaml").read_bytes())
    apac = event("sh.keptn.event.sayhello.triggered", sayhello={"location": "APAC"})
    eu = event("sh.keptn.event.sayhello.triggered", sayhello={"location": "EU"})
    assert running(loaded, apac) == [0]
    assert running(loaded, eu) == [1]
    assert running(loaded, event("sh.keptn.event.sayhello.triggered")) == []


def test_a_location_filtered_action_lets_the_next_match_decide() -> None:
    loaded = cfg(
        "  - name: eu\n    locations: [EU]\n    events: [{name: test}]\n"
        "  - name: apac\n    locations: [APAC]\n    events: [{name: test}]\n"
    )
    assert running(loaded, event(), "EU") == [0]
    assert running(loaded, event(), "APAC") == [1]
    assert running(loaded, event(), None) == []


def test_explanations_say_why() -> None:
    loaded = cfg(
        "  - name: a\n    events:\n      - {name: deploy}\n"
        "      - {name: test, jsonpath: {property: $.data.x.y, match: v}}\n"
        "      - {name: test, jsonpath: {property: $.data.list, match: v}}\n"
        "  - name: b\n    locations: [EU]\n    events: [{name: test}]\n"
    )
    verdicts = matcher.judge(loaded.config, event(list=["v"], x={"z": 1}), location="APAC")
    first = [t.explain() for t in verdicts[0].triggers]
    assert first[0] == "event name regex 'deploy' does not occur in the event type"
    assert first[1] == "name matches, but jsonpath $.data.x.y: key 'y' not found in $.data.x (keys there: z)"
    assert first[2] == 'name matches, but jsonpath $.data.list = ["v"], expected \'v\' (lists and objects never match)'
    assert verdicts[1].location_note == "runs only in [EU]; this executor's location is 'APAC'"
    assert not any(v.runs for v in verdicts)


def test_event_info_rejects_malformed_events() -> None:
    from jes import errors

    with pytest.raises(errors.EventError, match="id is missing"):
        matcher.event_info({"type": "x", "data": {}})
    with pytest.raises(errors.EventError, match="data must be a JSON object"):
        matcher.event_info({"id": "1", "type": "x", "data": [1]})
    with pytest.raises(errors.EventError, match="data.labels must map names to strings"):
        matcher.event_info({"id": "1", "type": "x", "data": {"labels": {"a": 1}}})
    with pytest.raises(errors.EventError, match="data.project must be a string"):
        matcher.event_info({"id": "1", "type": "x", "data": {"project": 1}})
    info = matcher.event_info({"id": "1", "type": "x"})
    assert (info.project, info.labels, info.git_commit_id) == ("", {}, "")
