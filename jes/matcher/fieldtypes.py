"""Field types of the job/config.yaml model that apply yaml.v2's scalar rules.

Upstream read the file with Go's yaml.v2: ``cpu: 1`` is the string ``"1"``, a number or a boolean
is accepted where a string is expected, and a boolean must be a real YAML boolean. Each
validator raises :class:`ValueError` with a message for people; :func:`kind_of` names what was
found instead ("a list", "a number", ...).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from jes.matcher.yamlsource import BOOL, FLOAT, INT, Text


def kind_of(value: Any) -> str:
    """What ``value`` is, in the words of a message ("a list", "a number", "nothing (null)")."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, Text):
        return {BOOL: "a boolean", INT: "a number", FLOAT: "a number"}.get(value.tag, "a string")
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    raise ValueError(f"expected a string, got {kind_of(value)}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, Text) and value.tag == BOOL:
        return value.lower() in ("true", "yes", "on", "y")
    raise ValueError(f"expected a boolean (true or false), got {kind_of(value)}")


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Text) and value.tag == INT:
        try:
            return int(value.replace("_", ""), 0)
        except ValueError:
            pass
    raise ValueError(f"expected a whole number, got {kind_of(value)}")


def _list_of_text(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {kind_of(value)}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, list | dict):
            raise ValueError(f"expected a list of strings, but item {i} is {kind_of(item)}")
        out.append(_text(item))
    return out


def _list_of_int(value: Any) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of whole numbers, got {kind_of(value)}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_int(item))
        except ValueError:
            raise ValueError(f"expected a list of whole numbers, but item {i} is {kind_of(item)}") from None
    return out


def _map_of_text(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        hint = " (write `key: value` lines, not a list)" if isinstance(value, list) else ""
        raise ValueError(f"expected a mapping of strings, got {kind_of(value)}{hint}")
    return {str(k): _text(v) for k, v in value.items()}


def optional_block(value: Any) -> Any:
    """A nested block; null means "absent" (pydantic maps None to the field default)."""
    return value


def list_or_none(value: Any) -> Any:
    """A list of blocks, or null; anything else is refused before pydantic says it less clearly."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {kind_of(value)}")
    return value


_SCALAR_SCHEMA = {"type": ["string", "number", "boolean", "null"]}


def one_of(values: tuple[str, ...], *, empty: bool = False) -> Any:
    """A string field that must be one of ``values`` (Kubernetes spells them case-sensitively)."""

    def check(value: Any) -> str:
        text = _text(value)
        if (empty and text == "") or text in values:
            return text
        shown = ", ".join(f'"{v}"' for v in values)
        hint = next((f" (did you mean {v!r}?)" for v in values if v.lower() == text.lower()), "")
        raise ValueError(f'Unsupported value: "{text}": supported values: {shown}{hint}')

    enum: list[Any] = [*values, ""] if empty else list(values)
    return Annotated[str, BeforeValidator(check), WithJsonSchema({"enum": enum})]


YStr = Annotated[str, BeforeValidator(_text), WithJsonSchema(_SCALAR_SCHEMA)]
YBool = Annotated[bool, BeforeValidator(_bool), WithJsonSchema({"type": "boolean"})]
YInt = Annotated[int, BeforeValidator(_int), WithJsonSchema({"type": "integer"})]
YStrList = Annotated[
    list[str] | None,
    BeforeValidator(_list_of_text),
    WithJsonSchema({"type": ["array", "null"], "items": _SCALAR_SCHEMA}),
]
YIntList = Annotated[
    list[int] | None,
    BeforeValidator(_list_of_int),
    WithJsonSchema({"type": ["array", "null"], "items": {"type": "integer"}}),
]
YStrMap = Annotated[
    dict[str, str] | None,
    BeforeValidator(_map_of_text),
    WithJsonSchema({"type": ["object", "null"], "additionalProperties": _SCALAR_SCHEMA}),
]


class StrictModel(BaseModel):
    """A block of the file: unknown fields are errors, values are frozen, aliases or names work."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ModelT = TypeVar("ModelT", bound=StrictModel)
