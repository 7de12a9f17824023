"""jes.util.shared: equal strings kept once, values unchanged (event data reaches tasks literally)."""

from __future__ import annotations

import json
from typing import Any

from jes.util.shared import MAX_PACKED_DEPTH, SHARED_MAX_CHARS, packed_json, shared_json, unpacked_json

EVENT = (
    '{"type": "sh.keptn.event.test.triggered", "id": "%s", "data": {"project": "p", "stage": "dev",'
    ' "labels": {"a": "1"}, "n": 1, "flag": true, "none": null, "x": 1.5, "list": ["a", 2, [false]],'
    ' "long": "%s"}}'
)


def _event(event_id: str) -> Any:
    return json.loads(EVENT % (event_id, "z" * (SHARED_MAX_CHARS + 1)))


def test_the_value_is_equal_in_every_way_and_left_as_it_was() -> None:
    parsed = _event("e1")
    kept = shared_json(parsed)
    assert kept == parsed and kept is not parsed and parsed == _event("e1")
    assert json.dumps(kept) == json.dumps(parsed)  # the same types (True is not 1), order and text
    assert type(kept["data"]["flag"]) is bool and type(kept["data"]["x"]) is float


def test_keys_and_short_strings_of_separate_events_are_one_object() -> None:
    first, second = shared_json(_event("e1")), shared_json(_event("e2"))
    first_keys, second_keys = list(first["data"]), list(second["data"])
    assert all(a is b for a, b in zip(first_keys, second_keys, strict=True))
    assert first["type"] is second["type"] and first["data"]["stage"] is second["data"]["stage"]
    assert first["data"]["long"] == second["data"]["long"] and first["data"]["long"] is not second["data"]["long"]


def test_a_structure_too_deep_to_walk_is_kept_as_it_is() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    assert shared_json(deep) is deep


def test_a_packed_event_comes_back_equal_in_every_way() -> None:
    text = (
        '{"id": "e1", "data": {"z": 1, "a": null, "t": true, "f": 1.0, "neg": -0.0, "big": 123456789012345678901234,'
        ' "nan": NaN, "text": "\\u00e9\\u4e2d $(VAR) \\ud800 lone", "list": [1, [2, {"k": "v"}]]}}'
    )
    parsed = json.loads(text)
    packed = packed_json(parsed)
    assert isinstance(packed, bytes) and len(packed) < len(text)
    back = unpacked_json(packed)
    assert json.dumps(back) == json.dumps(parsed)  # key order, types (1.0 stays a float, True is not 1), text
    assert back["data"]["text"] == "é中 $(VAR) \ud800 lone" and str(back["data"]["neg"]) == "-0.0"
    assert list(back["data"]) == ["z", "a", "t", "f", "neg", "big", "nan", "text", "list"]


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer


def test_an_event_too_deep_to_pack_or_to_unpack_safely_is_kept_as_it_is() -> None:
    assert isinstance(packed_json(_nested(MAX_PACKED_DEPTH)), bytes)
    assert isinstance(packed_json({"many": [{"a": [1]}] * 500}), bytes)  # many brackets, not deep
    too_deep = _nested(MAX_PACKED_DEPTH + 1)  # (json would pack it; unpacking deeper might fail)
    assert packed_json(too_deep) is too_deep
    deepest = _nested(100_000)  # (json cannot pack it)
    assert packed_json(deepest) is deepest
