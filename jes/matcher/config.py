"""The ``job/config.yaml`` model (apiVersion v2), strict loading with positions, JSON Schema.

Every field of the original job-executor-service is here with its upstream default, plus the
extensions ``actions[].locations`` and ``tasks[].imagePullSecrets``. Loading is strict: unknown
and duplicate keys, wrong shapes, an invalid event-name regex or JSONPath are errors naming file,
line, column and field path. Scalars follow yaml.v2: ``cpu: 1`` is the string ``"1"``; booleans
must be real YAML booleans.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from jes import errors
from jes.matcher import imagepolicy, jsonpath, yamlsource
from jes.matcher.yamlsource import BOOL, FLOAT, INT, Text
from jes.util import parsing

DEFAULT_MAX_POLL_DURATION_S = 300
DEFAULT_TTL_SECONDS_AFTER_FINISHED = 21600
MIN_TTL_SECONDS_AFTER_FINISHED = 60
DEFAULT_MAX_CONFIG_BYTES = 1024 * 1024
VALUE_FROM = ("event", "secret", "string")


# ---------------------------------------------------------------------------------------------
# Field types applying yaml.v2's scalar rules. Each raises ValueError with a message for people.


def _kind(value: Any) -> str:
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
    raise ValueError(f"expected a string, got {_kind(value)}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, Text) and value.tag == BOOL:
        return value.lower() in ("true", "yes", "on", "y")
    raise ValueError(f"expected a boolean (true or false), got {_kind(value)}")


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Text) and value.tag == INT:
        try:
            return int(value.replace("_", ""), 0)
        except ValueError:
            pass
    raise ValueError(f"expected a whole number, got {_kind(value)}")


def _list_of_text(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, list | dict):
            raise ValueError(f"expected a list of strings, but item {i} is {_kind(item)}")
        out.append(_text(item))
    return out


def _map_of_text(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        hint = " (write `key: value` lines, not a list)" if isinstance(value, list) else ""
        raise ValueError(f"expected a mapping of strings, got {_kind(value)}{hint}")
    return {str(k): _text(v) for k, v in value.items()}


def _optional_block(value: Any) -> Any:
    return value  # null means "absent": pydantic maps None to the field default


def _list(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {_kind(value)}")
    return value


_SCALAR_SCHEMA = {"type": ["string", "number", "boolean", "null"]}

#: Values the Kubernetes API server accepts (k8s.io/api core/v1 types; validation.go refuses others).
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROC_MOUNTS = ("Default", "Unmasked")
PROFILE_TYPES = ("RuntimeDefault", "Unconfined", "Localhost")


def _one_of(values: tuple[str, ...], *, empty: bool = False) -> Any:
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
YStrMap = Annotated[
    dict[str, str] | None,
    BeforeValidator(_map_of_text),
    WithJsonSchema({"type": ["object", "null"], "additionalProperties": _SCALAR_SCHEMA}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ModelT = TypeVar("ModelT", bound=_Model)


# ---------------------------------------------------------------------------------------------
# The schema


class JsonPathFilter(_Model):
    """Optional filter of an event trigger: the JSONPath ``property`` must equal ``match``."""

    property: YStr = Field("", description="JSONPath evaluated on the whole event, e.g. $.data.test.teststrategy")
    match: YStr = Field("", description="value the property must equal (numbers/booleans by their JSON text)")


class EventTrigger(_Model):
    name: YStr = Field("", description="regular expression searched (unanchored) in the event type; empty matches all")
    jsonpath: Annotated[JsonPathFilter | None, BeforeValidator(_optional_block)] = Field(
        None, description="optional filter on the event's content"
    )


class Env(_Model):
    name: YStr = Field("", description="variable name; for valueFrom: secret the name of the Secret")
    value: YStr = Field("", description="JSONPath (event), literal (string); ignored for secret")
    valueFrom: YStr = Field("", description="event, secret or string", json_schema_extra={"enum": list(VALUE_FROM)})
    as_: YStr = Field("", alias="as", description="event values only: json or yaml formatting")


class ResourceList(_Model):
    cpu: YStr = Field("", description="Kubernetes quantity, e.g. 500m")
    memory: YStr = Field("", description="Kubernetes quantity, e.g. 512Mi")


class ResourceRequirements(_Model):
    limits: Annotated[ResourceList | None, BeforeValidator(_optional_block)] = Field(None, description="upper bounds")
    requests: Annotated[ResourceList | None, BeforeValidator(_optional_block)] = Field(
        None, description="what the scheduler reserves"
    )


class Capabilities(_Model):
    add: YStrList = Field(None, description="capabilities to add, e.g. NET_ADMIN")
    drop: YStrList = Field(None, description="capabilities to drop, e.g. ALL")


class SeccompProfile(_Model):
    type: _one_of(PROFILE_TYPES) = Field(description="RuntimeDefault, Unconfined or Localhost")  # type: ignore[valid-type]
    localhostProfile: YStr = Field("", description="profile file, for type Localhost")


class SecurityContext(_Model):
    """The subset of a container securityContext a task may set; merged over the executor default."""

    capabilities: Annotated[Capabilities | None, BeforeValidator(_optional_block)] = Field(
        None, description="replaces the default's capabilities as a whole"
    )
    privileged: YBool | None = Field(None, description="refused unless ALLOW_PRIVILEGED_JOBS=true")
    runAsUser: YInt | None = Field(None, description="user id")
    runAsGroup: YInt | None = Field(None, description="group id")
    runAsNonRoot: YBool | None = Field(None, description="the image must not run as root")
    readOnlyRootFilesystem: YBool | None = Field(None, description="false lets the task write outside /keptn")
    allowPrivilegeEscalation: YBool | None = Field(None, description="setuid binaries may gain privileges")
    procMount: _one_of(PROC_MOUNTS) | None = Field(None, description="Default or Unmasked")  # type: ignore[valid-type]
    seccompProfile: Annotated[SeccompProfile | None, BeforeValidator(_optional_block)] = Field(
        None, description="replaces the default's profile as a whole"
    )

    def fields_set(self) -> dict[str, Any]:
        """The fields the task wrote, as Kubernetes JSON."""
        return self.model_dump(exclude_none=True, exclude_unset=True, mode="json")


class Task(_Model):
    name: YStr = Field("", description="shown in reports and the Job's labels")
    image: YStr = Field("", description="container image, checked against the allowlist as written")
    imagePullPolicy: _one_of(PULL_POLICIES, empty=True) = Field(  # type: ignore[valid-type]
        "", description="Always, IfNotPresent or Never; empty = Kubernetes default"
    )
    cmd: YStrList = Field(None, description="container command")
    args: YStrList = Field(None, description="container args")
    workingDir: YStr = Field("", description="container working directory; empty = the image's")
    files: YStrList = Field(None, description="resource files or directories copied to /keptn")
    env: Annotated[list[Env] | None, BeforeValidator(_list)] = Field(
        None, description="variables; KEPTN_PROJECT/STAGE/SERVICE and LABELS_<KEY> follow"
    )
    resources: Annotated[ResourceRequirements | None, BeforeValidator(_optional_block)] = Field(
        None, description="absent: executor defaults; present (even {}): exactly these"
    )
    maxPollDuration: YInt | None = Field(None, description=f"seconds [{DEFAULT_MAX_POLL_DURATION_S}]")
    ttlSecondsAfterFinished: YInt | None = Field(
        None, description=f"seconds [{DEFAULT_TTL_SECONDS_AFTER_FINISHED}], at least 60"
    )
    namespace: YStr = Field("", description="namespace of the Job [JOB_NAMESPACE]")
    serviceAccount: YStr = Field("", description="service account of the pod [DEFAULT_JOB_SERVICE_ACCOUNT]")
    securityContext: Annotated[SecurityContext | None, BeforeValidator(_optional_block)] = Field(
        None, description="fields written over the executor's default container security context"
    )
    annotations: YStrMap = Field(None, description="annotations of the Job object")
    imagePullSecrets: YStrList = Field(None, description="jes extension: names of image pull Secrets")


class Action(_Model):
    name: YStr = Field("", description="shown in reports and the Jobs' labels")
    silent: YBool = Field(False, description="run without sending any event")
    events: Annotated[list[EventTrigger] | None, BeforeValidator(_list)] = Field(
        None, description="the action runs when any entry matches; none: never"
    )
    tasks: Annotated[list[Task] | None, BeforeValidator(_list)] = Field(
        None, description="run in order, one Job each, stopping at the first failure"
    )
    locations: YStrList = Field(None, description="jes extension: run only on executors whose LOCATION is listed")


class JobConfig(_Model):
    """job/config.yaml"""

    model_config = ConfigDict(title="jes job/config.yaml (apiVersion v2)")

    apiVersion: Literal["v2"] = Field(description="must be v2")
    actions: Annotated[list[Action] | None, BeforeValidator(_list)] = Field(
        None, description="in file order: leading silent matches run, then the first non-silent match"
    )


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with the hash of its bytes (label ``keptn.sh/jes-job-confighash``)."""

    config: JobConfig
    file: str
    sha3_224: str
    warnings: tuple[errors.Problem, ...] = field(default=())


@dataclass(frozen=True)
class Policy:
    """Checks that depend on the executor's settings, applied at validation time when given."""

    allowed_images: tuple[str, ...] | None = None
    allow_privileged: bool = False
    protected_secrets: tuple[str, ...] = ()
    """Secrets holding jes's own credentials (API token, OAuth secret): no task may reference them."""
    protected_service_accounts: tuple[str, ...] = ()
    """jes's own service account(s): no task may run with it."""


def protected_references(
    task: Task, *, secrets: tuple[str, ...], service_accounts: tuple[str, ...]
) -> list[tuple[yamlsource.Path, str]]:
    """Where ``task`` reaches for jes's own identity: (path below the task, message) pairs.

    Names are compared whatever the Job's namespace: a task must not be able to name them at all."""
    found: list[tuple[yamlsource.Path, str]] = []
    for i, env in enumerate(task.env or ()):
        if env.valueFrom == "secret" and env.name in secrets:
            found.append((("env", i, "name"), _protected_secret(env.name)))
    for i, name in enumerate(task.imagePullSecrets or ()):
        if name in secrets:
            found.append((("imagePullSecrets", i), _protected_secret(name)))
    if task.serviceAccount and task.serviceAccount in service_accounts:
        message = (
            f"service account {task.serviceAccount!r} is jes's own: a task may not run with jes's Kubernetes "
            "permissions; give the task a service account of its own"
        )
        found.append((("serviceAccount",), message))
    return found


def _protected_secret(name: str) -> str:
    return (
        f"secret {name!r} holds jes's own credentials (the Keptn API token or OAuth secret): no task may "
        "use it; give the task a Secret of its own"
    )


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
    checker = _semantic_checks(document, file, policy)  # also on the valid parts of an invalid file
    problems += checker.problems
    if problems or config is None:
        raise errors.ConfigError(_sorted(problems), _sorted(checker.warnings))
    return LoadedConfig(config, file, hashlib.sha3_224(raw).hexdigest(), tuple(_sorted(checker.warnings)))


def _sorted(problems: list[errors.Problem]) -> list[errors.Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column))


def _validate(document: yamlsource.Document, file: str) -> JobConfig:
    value = document.value
    if not isinstance(value, dict):
        got = "an empty file" if value is None else _kind(value)
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
              "ResourceRequirements", "Capabilities", "SeccompProfile", "SecurityContext"}  # fmt: skip
    return [p for p in loc if not (isinstance(p, str) and (p in models or "[" in p))]


def _message(error: Any, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_field_message(loc)
    if kind == "missing":
        return "required field is missing"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"expected a mapping, got {_kind(error.get('input'))}"
    if kind == "list_type":
        return f"expected a list, got {_kind(error.get('input'))}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _unknown_field_message(loc: tuple[Any, ...]) -> str:
    name = str(loc[-1])
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


# ---------------------------------------------------------------------------------------------
# Checks beyond shapes: regexes, JSONPaths, quantities, env sources, policy


@dataclass
class _Checker:
    document: yamlsource.Document
    file: str
    problems: list[errors.Problem] = field(default_factory=list)
    warnings: list[errors.Problem] = field(default_factory=list)

    def add(self, path: yamlsource.Path, message: str, *, warning: bool = False) -> None:
        pos = self.document.position(path)
        problem = errors.Problem(self.file, pos.line, pos.column, yamlsource.format_path(path), message)
        (self.warnings if warning else self.problems).append(problem)


def _semantic_checks(document: yamlsource.Document, file: str, policy: Policy | None) -> _Checker:
    """Checks beyond shapes, on every part of the file that has the right shape: each event entry
    and task is validated on its own, so one wrong field elsewhere hides no other problem."""
    checker = _Checker(document, file)
    value = document.value
    actions = value.get("actions") if isinstance(value, dict) else None
    for a, action in enumerate(actions if isinstance(actions, list) else ()):
        here: yamlsource.Path = ("actions", a)
        if not isinstance(action, dict):
            continue
        events, tasks = action.get("events"), action.get("tasks")
        for e, trigger in _valid_parts(events, EventTrigger):
            _check_trigger(checker, (*here, "events", e), trigger)
        for t, task in _valid_parts(tasks, Task):
            _check_task(checker, (*here, "tasks", t), task, policy)
        if not events:
            checker.add(here, "action has no events, so it never runs", warning=True)
    return checker


def _valid_parts(raw: Any, model: type[ModelT]) -> list[tuple[int, ModelT]]:
    parts = []
    for index, item in enumerate(raw if isinstance(raw, list) else ()):
        try:
            parts.append((index, model.model_validate(item)))
        except pydantic.ValidationError:
            continue  # its shape problems are reported by the validation of the whole file
    return parts


def _check_trigger(checker: _Checker, path: yamlsource.Path, trigger: EventTrigger) -> None:
    try:
        re.compile(trigger.name)
    except re.error as exc:
        checker.add((*path, "name"), f"invalid regular expression {trigger.name!r}: {exc}")
    if trigger.jsonpath and trigger.jsonpath.property:
        _check_jsonpath(checker, (*path, "jsonpath", "property"), trigger.jsonpath.property)


def _check_jsonpath(checker: _Checker, path: yamlsource.Path, expression: str) -> None:
    try:
        jsonpath.compile(expression)
    except errors.RenderError as exc:
        checker.add(path, str(exc))


def _check_task(checker: _Checker, path: yamlsource.Path, task: Task, policy: Policy | None) -> None:
    for i, env in enumerate(task.env or ()):
        _check_env(checker, (*path, "env", i), env)
    _check_resources(checker, path, task.resources)
    _check_security_context(checker, (*path, "securityContext"), task.securityContext)
    _check_names(checker, path, task)
    if task.ttlSecondsAfterFinished is not None and task.ttlSecondsAfterFinished < MIN_TTL_SECONDS_AFTER_FINISHED:
        checker.add(
            (*path, "ttlSecondsAfterFinished"),
            f"{task.ttlSecondsAfterFinished} is raised to {MIN_TTL_SECONDS_AFTER_FINISHED} so logs can be read",
            warning=True,
        )
    if task.maxPollDuration is not None and task.maxPollDuration <= 0:
        checker.add((*path, "maxPollDuration"), "must be greater than 0 seconds")
    if not task.image:
        checker.add((*path, "image"), "task has no image", warning=True)
    if policy is not None:
        _check_policy(checker, path, task, policy)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CAPABILITY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _dns_problem(name: str, *, label: bool) -> str | None:
    """Kubernetes' words for a name that is not a DNS-1123 label (namespaces) or subdomain."""
    if label and (len(name) > 63 or not _DNS_LABEL.match(name)):
        return (
            f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
            "characters or '-', start and end with an alphanumeric character, and be at most 63 characters"
        )
    if not label and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        return (
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    return None


def _check_names(checker: _Checker, path: yamlsource.Path, task: Task) -> None:
    """The names a Job would carry that Kubernetes would refuse (422), refused here first."""
    named: list[tuple[yamlsource.Path, str, bool]] = []
    if task.namespace:
        named.append(((*path, "namespace"), task.namespace, True))
    if task.serviceAccount:
        named.append(((*path, "serviceAccount"), task.serviceAccount, False))
    named += [((*path, "imagePullSecrets", i), n, False) for i, n in enumerate(task.imagePullSecrets or ())]
    secrets = [(i, e.name) for i, e in enumerate(task.env or ()) if e.valueFrom == "secret"]
    named += [((*path, "env", i, "name"), name, False) for i, name in secrets]
    for where, name, label in named:
        if (problem := _dns_problem(name, label=label)) is not None:
            checker.add(where, problem)


def _check_security_context(checker: _Checker, path: yamlsource.Path, context: SecurityContext | None) -> None:
    if context is None:
        return
    profile = context.seccompProfile
    if profile is not None:
        where = (*path, "seccompProfile", "localhostProfile")
        if profile.type == "Localhost" and not profile.localhostProfile:
            checker.add(where, "Required value: must be set when seccomp type is Localhost")
        if profile.type != "Localhost" and profile.localhostProfile:
            checker.add(where, "Invalid value: can only be set when seccomp type is Localhost")
    capabilities = context.capabilities
    for kind in ("add", "drop"):
        for i, name in enumerate(getattr(capabilities, kind) or () if capabilities else ()):
            where = (*path, "capabilities", kind, i)
            if not _CAPABILITY.match(name):
                checker.add(where, f"invalid capability {name!r}: write names such as NET_ADMIN or ALL")
            elif name.upper().startswith("CAP_"):
                message = (
                    f"{name!r}: the container runtime adds CAP_ itself, so this becomes CAP_{name.upper()} and is "
                    f"silently ignored; write {name[4:].upper()}"
                )
                checker.add(where, message, warning=True)


def _check_env_name(checker: _Checker, path: yamlsource.Path, name: str) -> None:
    """Kubernetes 1.32+ accept any printable ASCII but '=' (RelaxedEnvironmentVariableValidation,
    on by default since 1.32); older API servers only ``[-._a-zA-Z][-._a-zA-Z0-9]*``."""
    if any(not " " <= c <= "~" for c in name) or "=" in name:
        message = (
            f'Invalid value: "{name}": a valid environment variable name must consist only of printable ASCII '
            "characters other than '='"
        )
        checker.add(path, message)
    elif not _ENV_NAME.match(name):
        message = (
            f"{name!r} is refused by Kubernetes before 1.32, which wants letters, digits, '_', '-' and '.', "
            "not starting with a digit"
        )
        checker.add(path, message, warning=True)


def _check_env(checker: _Checker, path: yamlsource.Path, env: Env) -> None:
    if env.valueFrom not in VALUE_FROM:
        shown = repr(env.valueFrom) if env.valueFrom else "nothing"
        checker.add((*path, "valueFrom"), f"must be one of event, secret, string; got {shown}")
    elif env.valueFrom == "event":
        _check_jsonpath(checker, (*path, "value"), env.value)
    if not env.name:
        checker.add((*path, "name"), "env entry has no name")
    elif env.valueFrom in ("event", "string"):
        _check_env_name(checker, (*path, "name"), env.name)
    if env.as_ and env.as_.lower() not in ("json", "yaml"):
        checker.add((*path, "as"), f"unknown format {env.as_!r}: only json and yaml exist", warning=True)


def _check_resources(checker: _Checker, path: yamlsource.Path, resources: ResourceRequirements | None) -> None:
    if resources is None:
        return
    if resources.limits is None and resources.requests is None:
        checker.add((*path, "resources"), "empty resources: the task runs without requests or limits", warning=True)
    for group_name in ("limits", "requests"):
        group = getattr(resources, group_name)
        for quantity_name in ("cpu", "memory"):
            value = getattr(group, quantity_name) if group else ""
            if not value:
                continue
            try:
                parsing.quantity(value)
            except ValueError as exc:
                checker.add((*path, "resources", group_name, quantity_name), str(exc))


def _check_policy(checker: _Checker, path: yamlsource.Path, task: Task, policy: Policy) -> None:
    for where, message in protected_references(
        task, secrets=policy.protected_secrets, service_accounts=policy.protected_service_accounts
    ):
        checker.add((*path, *where), message)
    if policy.allowed_images is not None and not imagepolicy.allowed(task.image, policy.allowed_images):
        checker.add((*path, "image"), f"image {task.image!r} does not match the allowed image list")
    context = task.securityContext
    if context and context.privileged and not policy.allow_privileged:
        checker.add(
            (*path, "securityContext", "privileged"),
            "privileged containers are not allowed (set ALLOW_PRIVILEGED_JOBS=true or --allow-privileged-jobs)",
        )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of job/config.yaml (for editors and `jes schema`)."""
    schema = JobConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/jes-project/jes/job-config.schema.json"
    return schema


def find_action(config: JobConfig, name: str) -> Action | None:
    """The first action with this exact name (upstream's lookup rule)."""
    return next((a for a in config.actions or () if a.name == name), None)


def find_task(action: Action, name: str) -> Task | None:
    return next((t for t in action.tasks or () if t.name == name), None)
