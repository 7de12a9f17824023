"""Loading ``job/config.yaml``: strict, bounded, with positions; and its JSON Schema.

Loading is strict: unknown and duplicate keys, wrong shapes, an invalid event-name regex or
JSONPath are errors naming file, line, column and field path. Scalars follow yaml.v2
(:mod:`jes.matcher.fieldtypes`); the model is :mod:`jes.matcher.schema`, the checks beyond shapes
:mod:`jes.matcher.checks`.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel

from jes import errors
from jes.matcher import yamlsource
from jes.matcher.checks import Policy, semantic_checks
from jes.matcher.fieldtypes import kind_of
from jes.matcher.schema import JobConfig
from jes.matcher.volumes import volume_type_message

DEFAULT_MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with the hash of its bytes (label ``keptn.sh/jes-job-confighash``)."""

    config: JobConfig
    file: str
    sha3_224: str
    warnings: tuple[errors.Problem, ...] = field(default=())


def load(
    data: str | bytes,
    *,
    file: str = "job/config.yaml",
    policy: Policy | None = None,
    max_bytes: int = DEFAULT_MAX_CONFIG_BYTES,
) -> LoadedConfig:
    """Parse and validate a config. Raises :class:`errors.ConfigError` with every problem found.

    ``policy`` adds the executor's checks (image allowlist, privileged containers, jes's own
    Secrets and service account); without it only the file itself is checked (the matcher applies
    the policy again when a task is planned). A file over ``max_bytes`` is refused unread, and
    parsing is bounded (:mod:`jes.matcher.yamlsource`), so a hostile file costs little time and memory."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_bytes:
        message = (
            f"the file has more than {max_bytes} bytes (JES_MAX_CONFIG_BYTES); split it, or raise the limit"
        )
        raise errors.ConfigError([errors.Problem(file, 1, 1, "", message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.ConfigError([errors.Problem(file, 1, 1, "", f"not UTF-8 text: {exc.reason}")]) from exc
    document = yamlsource.load(text, file=file)
    problems = list(document.problems)
    config: JobConfig | None = None
    try:
        config = _validate(document, file)
    except errors.ConfigError as exc:
        problems += exc.problems
    checker = semantic_checks(document, file, policy)  # also on the valid parts of an invalid file
    problems += checker.problems
    if problems or config is None:
        raise errors.ConfigError(_sorted(problems), _sorted(checker.warnings))
    return LoadedConfig(config, file, hashlib.sha3_224(raw).hexdigest(), tuple(_sorted(checker.warnings)))


def _sorted(problems: list[errors.Problem]) -> list[errors.Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column))


def _validate(document: yamlsource.Document, file: str) -> JobConfig:
    value = document.value
    if not isinstance(value, dict):
        got = "an empty file" if value is None else kind_of(value)
        raise errors.ConfigError(
            [errors.Problem(file, 1, 1, "", f"expected a mapping with apiVersion: v2 and actions, got {got}")]
        )
    if value.get("apiVersion") in (None, ""):
        pos = document.position(())
        raise errors.ConfigError(
            [errors.Problem(file, pos.line, pos.column, "apiVersion", "apiVersion must be specified")]
        )
    if not (isinstance(value["apiVersion"], str) and value["apiVersion"] == "v2"):
        pos = document.position(("apiVersion",))
        message = f"apiVersion {value['apiVersion']} is not supported, use v2"
        raise errors.ConfigError([errors.Problem(file, pos.line, pos.column, "apiVersion", message)])
    try:
        return JobConfig.model_validate(value)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(_problems_from(exc, document, file)) from None


def _problems_from(exc: pydantic.ValidationError, document: yamlsource.Document, file: str) -> list[errors.Problem]:
    problems = []
    seen = set()
    for error in exc.errors():
        loc = tuple(_strip_union_parts(error["loc"]))
        message = _message(error, loc)
        key_pos = document.positions.get((*loc, "<key>"))
        pos = key_pos if error["type"] == "extra_forbidden" and key_pos else document.position(loc)
        problem = errors.Problem(file, pos.line, pos.column, yamlsource.format_path(loc), message)
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            problems.append(problem)
    return sorted(problems, key=lambda p: (p.line, p.column))


def _strip_union_parts(loc: tuple[Any, ...]) -> list[str | int]:
    # pydantic adds the chosen union member ("Action", "list[...]", "function-before[...]") to locs
    models = {"JobConfig", "Action", "EventTrigger", "JsonPathFilter", "Task", "Env", "ResourceList",
              "ResourceRequirements", "Capabilities", "SeccompProfile", "SecurityContext",
              "Volume", "EmptyDirVolume", "PersistentVolumeClaimVolume"}  # fmt: skip
    return [p for p in loc if not (isinstance(p, str) and (p in models or "[" in p))]


def _message(error: Any, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_field_message(loc)
    if kind == "missing":
        return "required field is missing"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"expected a mapping, got {kind_of(error.get('input'))}"
    if kind == "list_type":
        return f"expected a list, got {kind_of(error.get('input'))}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _unknown_field_message(loc: tuple[Any, ...]) -> str:
    name = str(loc[-1])
    if len(loc) >= 3 and loc[-3] == "volumes" and isinstance(loc[-2], int):
        return volume_type_message(name)
    allowed = _allowed_fields(loc[:-1])
    message = f"unknown field {name!r}"
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    elif allowed:
        message += f"; allowed here: {', '.join(allowed)}"
    return message


def _allowed_fields(parent: tuple[Any, ...]) -> list[str]:
    model: Any = JobConfig
    for part in parent:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if info is None:
            return []
        model = _model_of(info.annotation)
        if model is None:
            return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        return _model_of(origin)
    return None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of job/config.yaml (for editors and `jes schema`)."""
    schema = JobConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/jes-project/jes/job-config.schema.json"
    return schema
