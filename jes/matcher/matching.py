"""Which actions run for an event, and every task rendered for it. Pure: no I/O.

Rules:

* An event trigger matches when its ``name`` regex occurs anywhere in the event type and, if it
  has a ``jsonpath.property``, the value there equals ``match`` — strings as they are, numbers and
  booleans by their JSON text; lists, objects and missing values never match.
* An action with ``locations`` runs only on an executor whose location is listed.
* Leading silent matches run, then the first non-silent match; later matches are ignored.

The JSONPath root is the event map: id, shkeptncontext, time, source, type, specversion,
gitcommitid and data — all plain values (upstream 0.3.0 exposed type/source as pointers).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from jes import errors
from jes.matcher import checks, imagepolicy, jsonpath, schema, volumes
from jes.matcher import config as cfg
from jes.models import (
    Concurrency,
    EnvEntry,
    EnvSecret,
    EnvValue,
    EventInfo,
    Plan,
    PlannedAction,
    RenderedTask,
    Resources,
    queue_of,
)
from jes.settings import Settings
from jes.util.textutil import whole_characters


@dataclass(frozen=True)
class Executor:
    """What the matcher needs to know about the executor (a subset of the settings)."""

    location: str | None = None
    job_namespace: str = "default"
    default_service_account: str = ""
    default_resources: Resources = Resources("1", "512Mi", "50m", "128Mi")
    job_security_context: Mapping[str, Any] | None = None
    allowed_images: tuple[str, ...] = ()
    allow_privileged: bool = False
    protected_secrets: tuple[str, ...] = ()
    protected_service_accounts: tuple[str, ...] = ()
    allowed_volume_claims: tuple[str, ...] = ()
    """Globs of the PersistentVolumeClaims tasks may mount; none: no claim."""


# ---------------------------------------------------------------------------------------------
# The event


def event_info(event: Mapping[str, Any]) -> EventInfo:
    """The fields of a Keptn CloudEvent the pipeline uses. Raises :class:`errors.EventError`."""
    if not isinstance(event, Mapping):
        raise errors.EventError(f"an event must be a JSON object, got {type(event).__name__}")
    problems = [f"{key} is missing or not a string" for key in ("id", "type") if not _is_text(event.get(key))]
    data = event.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append("data must be a JSON object")
        data = {}
    labels = data.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        problems.append("data.labels must map names to strings")
        labels = {}
    for key in ("project", "stage", "service"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            problems.append(f"data.{key} must be a string")
    if problems:
        raise errors.EventError("invalid event: " + "; ".join(problems))
    return EventInfo(
        id=str(event["id"]),
        type=str(event["type"]),
        source=str(event.get("source") or ""),
        keptn_context=str(event.get("shkeptncontext") or ""),
        git_commit_id=str(event.get("gitcommitid") or ""),
        project=str(data.get("project") or ""),
        stage=str(data.get("stage") or ""),
        service=str(data.get("service") or ""),
        labels=dict(labels),
        time=str(event.get("time") or ""),
    )


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def event_map(event: Mapping[str, Any]) -> dict[str, Any]:
    """The document JSONPath expressions see (upstream's event map, with plain strings)."""
    return {
        "id": event.get("id", ""),
        "shkeptncontext": event.get("shkeptncontext", ""),
        "time": event.get("time", ""),
        "source": event.get("source", ""),
        "type": event.get("type", ""),
        "specversion": event.get("specversion", ""),
        "gitcommitid": event.get("gitcommitid") or "",
        "data": event.get("data") if event.get("data") is not None else {},
    }


# ---------------------------------------------------------------------------------------------
# Matching, with a record of why (for `jes explain`)


@dataclass(frozen=True)
class TriggerVerdict:
    index: int
    name: str
    name_matched: bool
    jsonpath: str
    expected: str
    found: Any
    found_error: str | None
    matched: bool

    def explain(self) -> str:
        pattern = repr(self.name) if self.name else "'' (matches every type)"
        if not self.name_matched:
            return f"event name regex {pattern} does not occur in the event type"
        if not self.jsonpath:
            return f"event name regex {pattern} matches; no jsonpath filter"
        if self.found_error is not None:
            return f"name matches, but jsonpath {self.jsonpath}: {self.found_error}"
        shown = json.dumps(self.found, sort_keys=True)
        if self.matched:
            return f"name matches and jsonpath {self.jsonpath} = {shown} equals {self.expected!r}"
        why = "lists and objects never match" if isinstance(self.found, list | dict) else "not equal"
        return f"name matches, but jsonpath {self.jsonpath} = {shown}, expected {self.expected!r} ({why})"


@dataclass(frozen=True)
class ActionVerdict:
    index: int
    name: str
    silent: bool
    triggers: tuple[TriggerVerdict, ...]
    location_ok: bool
    location_note: str
    runs: bool
    note: str


def comparable_text(value: Any) -> str | None:
    """The text a ``jsonpath.match`` is compared with, or None for values that never match."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None  # null, lists and objects never match


def judge_trigger(index: int, trigger: schema.EventTrigger, event_type: str, document: Any) -> TriggerVerdict:
    name_matched = re.search(trigger.name, event_type) is not None
    spec = trigger.jsonpath
    prop = spec.property if spec else ""
    expected = spec.match if spec else ""
    found: Any = None
    found_error = None
    matched = name_matched
    if name_matched and prop:
        try:
            found = jsonpath.find(prop, document)
        except errors.RenderError as exc:
            found_error = str(exc)
        matched = found_error is None and comparable_text(found) == expected
    return TriggerVerdict(index, trigger.name, name_matched, prop, expected, found, found_error, matched)


def judge(config: schema.JobConfig, event: Mapping[str, Any], *, location: str | None) -> tuple[ActionVerdict, ...]:
    """Every action's verdict, in file order, applying the 'which actions run' rule."""
    document = event_map(event)
    event_type = str(event.get("type", ""))
    verdicts = []
    decided = False
    for index, action in enumerate(config.actions or ()):
        triggers = tuple(judge_trigger(i, t, event_type, document) for i, t in enumerate(action.events or ()))
        location_ok, location_note = _location(action, location)
        matched = any(t.matched for t in triggers) and location_ok
        runs = matched and not decided
        note = _run_note(matched, runs, action.silent, decided, bool(triggers))
        if runs and not action.silent:
            decided = True
        verdicts.append(
            ActionVerdict(index, action.name, action.silent, triggers, location_ok, location_note, runs, note)
        )
    return tuple(verdicts)


def _location(action: schema.Action, location: str | None) -> tuple[bool, str]:
    if action.locations is None:
        return True, "no locations: runs on every executor"
    listed = ", ".join(action.locations) or "none"
    if location is None:
        return False, f"runs only in [{listed}]; this executor has no LOCATION"
    if location in action.locations:
        return True, f"this executor's location {location!r} is listed in [{listed}]"
    return False, f"runs only in [{listed}]; this executor's location is {location!r}"


def _run_note(matched: bool, runs: bool, silent: bool, decided: bool, has_triggers: bool) -> str:
    if not has_triggers:
        return "no events: never runs"
    if not matched:
        return "does not match"
    if not runs and decided:
        return "matches, but an earlier non-silent action already decides the result"
    return "runs silently (no events sent); later matches are still considered" if silent else "runs and reports"


# ---------------------------------------------------------------------------------------------
# Rendering


def plan(loaded: cfg.LoadedConfig, event: Mapping[str, Any], executor: Executor, info: EventInfo | None = None) -> Plan:
    """The actions that run for ``event`` (``info``: what :func:`event_info` says of it, if known)
    and their rendered tasks."""
    info = info if info is not None else event_info(event)
    verdicts = judge(loaded.config, event, location=executor.location)
    actions = loaded.config.actions or []
    planned = tuple(_plan_action(v.index, actions[v.index], event, info, executor) for v in verdicts if v.runs)
    return Plan(event=info, actions=planned, config_hash=loaded.sha3_224)


def _plan_action(
    index: int, action: schema.Action, event: Mapping[str, Any], info: EventInfo, executor: Executor
) -> PlannedAction:
    tasks = action.tasks or []
    try:
        _check_policy(tasks, executor)
        rendered = tuple(render_task(index, i, action, t, event, info, executor) for i, t in enumerate(tasks))
        concurrency = render_concurrency(action, event, info)
    except errors.RenderError as exc:
        return PlannedAction(index, action.name, action.silent, (), error=str(exc))
    return PlannedAction(index, action.name, action.silent, rendered, concurrency=concurrency)


def render_concurrency(action: schema.Action, event: Mapping[str, Any], info: EventInfo) -> Concurrency | None:
    """The action's queue for this event. A key that finds nothing makes the action unable to run
    (:class:`errors.RenderError`), as an env JSONPath that finds nothing does."""
    if action.concurrency is None:
        return None
    key = action.concurrency.key
    value = ""
    if key:
        try:
            found = jsonpath.find(key, event_map(event))
        except errors.RenderError as exc:
            raise errors.RenderError(f"action {action.name!r}: concurrency key {key}: {exc}") from exc
        value = found if isinstance(found, str) else jsonpath.json_text(found)
    limit = action.concurrency.limit
    return Concurrency(limit, key, value, queue_of(info.project, action.name, value))


def _check_policy(tasks: Sequence[schema.Task], executor: Executor) -> None:
    """All tasks are checked before any runs, as upstream did for images: the image allowlist, no
    reference to jes's own Secrets or service account, no variable jes sets itself, and only the
    PersistentVolumeClaims the executor allows."""
    for task in tasks:
        if not imagepolicy.allowed(task.image, executor.allowed_images):
            raise errors.PolicyError(imagepolicy.forbidden_message(task.image))
        refused = checks.reserved_references(task) + checks.protected_references(
            task, secrets=executor.protected_secrets, service_accounts=executor.protected_service_accounts
        )
        refused += volumes.forbidden_claims(task, executor.allowed_volume_claims)
        if refused:
            raise errors.PolicyError(f"Forbidden: task {task.name!r}: {refused[0][1]}")


def render_task(
    action_index: int,
    task_index: int,
    action: schema.Action,
    task: schema.Task,
    event: Mapping[str, Any],
    info: EventInfo,
    executor: Executor,
) -> RenderedTask:
    security_context = merge_security_context(executor.job_security_context or {}, task.securityContext)
    if security_context.get("privileged") is True and not executor.allow_privileged:
        raise errors.PolicyError(f"task {task.name!r}: privileged containers are not allowed")
    ttl = task.ttlSecondsAfterFinished
    max_poll = task.maxPollDuration
    return RenderedTask(
        action_index=action_index,
        task_index=task_index,
        action_name=action.name,
        name=task.name,
        image=task.image,
        image_pull_policy=task.imagePullPolicy,
        cmd=tuple(task.cmd) if task.cmd is not None else None,
        args=tuple(task.args) if task.args is not None else None,
        working_dir=task.workingDir,
        env=render_env(task, event, info),
        files=tuple(task.files or ()),
        resources=_resources(task.resources, executor),
        max_poll_duration_s=schema.DEFAULT_MAX_POLL_DURATION_S if max_poll is None else max_poll,
        ttl_seconds_after_finished=max(
            schema.MIN_TTL_SECONDS_AFTER_FINISHED, schema.DEFAULT_TTL_SECONDS_AFTER_FINISHED if ttl is None else ttl
        ),
        namespace=task.namespace or executor.job_namespace,
        service_account=task.serviceAccount or executor.default_service_account,
        security_context=security_context,
        annotations=dict(task.annotations or {}),
        image_pull_secrets=tuple(task.imagePullSecrets or ()),
        on_error=task.onError,
        volumes=volumes.rendered(task),
        retries=task.retries,
        retry_on_exit_codes=tuple(sorted(task.retryOnExitCodes or ())) if task.retries > 0 else (),
    )


def render_env(task: schema.Task, event: Mapping[str, Any], info: EventInfo) -> tuple[EnvEntry, ...]:
    """Upstream order: the task's env, then KEPTN_PROJECT/STAGE/SERVICE, then LABELS_<KEY>."""
    document = event_map(event)
    entries: list[EnvEntry] = [_env_entry(task, env, document) for env in task.env or ()]
    entries += [
        EnvValue("KEPTN_PROJECT", info.project, from_event=True),
        EnvValue("KEPTN_STAGE", info.stage, from_event=True),
        EnvValue("KEPTN_SERVICE", info.service, from_event=True),
    ]
    entries += [EnvValue(label_variable(key), value, from_event=True) for key, value in info.labels.items()]
    # event text may hold halves of surrogate pairs, which no environment (or UTF-8) can carry
    return tuple(_whole(e) for e in entries)


def _whole(entry: EnvEntry) -> EnvEntry:
    if isinstance(entry, EnvValue) and entry.from_event:
        return EnvValue(whole_characters(entry.name), whole_characters(entry.value), from_event=True)
    return entry


def label_variable(key: str) -> str:
    return "LABELS_" + key.replace("-", "_").replace(" ", "_").upper()


def _env_entry(task: schema.Task, env: schema.Env, document: Any) -> EnvEntry:
    if env.valueFrom == "string":
        return EnvValue(env.name, env.value)
    if env.valueFrom == "secret":
        return EnvSecret(env.name)
    if env.valueFrom == "event":
        try:
            value = jsonpath.find(env.value, document)
        except errors.RenderError as exc:
            raise errors.RenderError(
                f"task {task.name!r}: env {env.name!r} from event path {env.value}: {exc}"
            ) from exc
        return EnvValue(env.name, format_value(value, env.as_), from_event=True)
    raise errors.RenderError(f"task {task.name!r}: env {env.name!r}: unknown valueFrom {env.valueFrom!r}")


def format_value(value: Any, as_: str) -> str:
    """Decision 4: strings verbatim, everything else compact JSON; ``as: json|yaml`` on request."""
    style = as_.lower()
    if style == "yaml":
        return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, allow_unicode=True)
    if style == "json" or not isinstance(value, str):
        return jsonpath.json_text(value)
    return value


def _resources(resources: schema.ResourceRequirements | None, executor: Executor) -> Resources:
    if resources is None:
        return executor.default_resources
    limits = resources.limits or schema.ResourceList()
    requests = resources.requests or schema.ResourceList()
    return Resources(
        limits_cpu=limits.cpu or None,
        limits_memory=limits.memory or None,
        requests_cpu=requests.cpu or None,
        requests_memory=requests.memory or None,
    )


def merge_security_context(default: Mapping[str, Any], task: schema.SecurityContext | None) -> dict[str, Any]:
    """The executor default with every field the task sets written over it (blocks as a whole).
    A task that sets none shares one copy of the default (nothing modifies it: the manifests copy)."""
    text = json.dumps(dict(default))
    if task is None:
        return _shared_default(text)
    merged: dict[str, Any] = json.loads(text)  # a deep copy of plain JSON
    merged.update(task.fields_set())
    return merged


@functools.lru_cache(maxsize=8)
def _shared_default(text: str) -> dict[str, Any]:
    """One copy of a default security context for every task that sets none (with ten thousand
    tasks in flight, a copy each was a few dozen objects per task)."""
    shared: dict[str, Any] = json.loads(text)
    return shared


def executor_from_settings(settings: Settings) -> Executor:
    """The matcher's view of :class:`jes.settings.Settings`."""
    return Executor(
        location=settings.location,
        job_namespace=settings.job_namespace,
        default_service_account=settings.default_job_service_account,
        default_resources=Resources.defaults_of(settings),
        job_security_context=dict(settings.job_security_context),
        allowed_images=tuple(settings.allowed_image_list),
        allow_privileged=settings.allow_privileged_jobs,
        protected_secrets=settings.protected_secrets,
        protected_service_accounts=settings.protected_service_accounts,
        allowed_volume_claims=settings.allowed_volume_claims,
    )
