"""Checks of a job/config.yaml beyond its shape: regexes, JSONPaths, names and quantities
Kubernetes would refuse, env sources, the variables jes sets itself (the API proxy's), and the
executor's policy (image allowlist, privileged containers, jes's own Secrets and service account).

Each event entry and task that has the right shape is checked on its own, so one wrong field
elsewhere hides no other problem. Problems and warnings carry the file position of the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pydantic

from jes import errors
from jes.matcher import imagepolicy, jsonpath, volumes, yamlsource
from jes.matcher.fieldtypes import ModelT
from jes.matcher.schema import (
    EXIT_CODES,
    MAX_RETRIES,
    MIN_TTL_SECONDS_AFTER_FINISHED,
    VALUE_FROM,
    Concurrency,
    Env,
    EventTrigger,
    ResourceRequirements,
    SecurityContext,
    Task,
)
from jes.models import API_PROXY_ENV_NAMES, is_api_proxy_secret_name
from jes.util import parsing


@dataclass(frozen=True)
class Policy:
    """Checks that depend on the executor's settings, applied at validation time when given."""

    allowed_images: tuple[str, ...] | None = None
    allow_privileged: bool = False
    protected_secrets: tuple[str, ...] = ()
    """Secrets holding jes's own credentials (API token, OAuth secret): no task may reference them."""
    protected_service_accounts: tuple[str, ...] = ()
    """jes's own service account(s): no task may run with it."""
    allowed_volume_claims: tuple[str, ...] = ()
    """Globs of the PersistentVolumeClaims a task may mount (JES_ALLOWED_VOLUME_CLAIMS); none: no claim."""


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


def reserved_references(task: Task) -> list[tuple[yamlsource.Path, str]]:
    """Where ``task`` sets a variable jes sets for it, or names another task's API-proxy token
    Secret: (path below the task, message) pairs. Refused whatever the executor's settings: a task
    must not be able to replace the proxy URL or token jes gives it, nor borrow another task's."""
    found: list[tuple[yamlsource.Path, str]] = []
    for i, env in enumerate(task.env or ()):
        if env.valueFrom in ("event", "string") and env.name in API_PROXY_ENV_NAMES:
            message = (
                f"{env.name} is set by jes (a task that may use the API proxy gets its URL and a token of its "
                "own); a task's env may not set it — use another name"
            )
            found.append((("env", i, "name"), message))
        elif env.valueFrom == "secret" and is_api_proxy_secret_name(env.name):
            found.append((("env", i, "name"), _token_secret(env.name)))
    for i, name in enumerate(task.imagePullSecrets or ()):
        if is_api_proxy_secret_name(name):
            found.append((("imagePullSecrets", i), _token_secret(name)))
    return found


def _token_secret(name: str) -> str:
    return f"secret {name!r} holds another task's API-proxy token: no task may use it"


def _protected_secret(name: str) -> str:
    return (
        f"secret {name!r} holds jes's own credentials (the Keptn API token or OAuth secret): no task may "
        "use it; give the task a Secret of its own"
    )


@dataclass
class Checker:
    """The problems and warnings found in one file, each at its position."""

    document: yamlsource.Document
    file: str
    problems: list[errors.Problem] = field(default_factory=list)
    warnings: list[errors.Problem] = field(default_factory=list)

    def add(self, path: yamlsource.Path, message: str, *, warning: bool = False) -> None:
        pos = self.document.position(path)
        problem = errors.Problem(self.file, pos.line, pos.column, yamlsource.format_path(path), message)
        (self.warnings if warning else self.problems).append(problem)


def semantic_checks(document: yamlsource.Document, file: str, policy: Policy | None) -> Checker:
    """Checks beyond shapes, on every part of the file that has the right shape: each event entry
    and task is validated on its own, so one wrong field elsewhere hides no other problem."""
    checker = Checker(document, file)
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
        if isinstance(action.get("concurrency"), dict):
            for _, concurrency in _valid_parts([action["concurrency"]], Concurrency):
                _check_concurrency(checker, (*here, "concurrency"), concurrency)
    return checker


def _valid_parts(raw: Any, model: type[ModelT]) -> list[tuple[int, ModelT]]:
    parts = []
    for index, item in enumerate(raw if isinstance(raw, list) else ()):
        try:
            parts.append((index, model.model_validate(item)))
        except pydantic.ValidationError:
            continue  # its shape problems are reported by the validation of the whole file
    return parts


def _check_trigger(checker: Checker, path: yamlsource.Path, trigger: EventTrigger) -> None:
    try:
        re.compile(trigger.name)
    except re.error as exc:
        checker.add((*path, "name"), f"invalid regular expression {trigger.name!r}: {exc}")
    if trigger.jsonpath and trigger.jsonpath.property:
        _check_jsonpath(checker, (*path, "jsonpath", "property"), trigger.jsonpath.property)


def _check_concurrency(checker: Checker, path: yamlsource.Path, concurrency: Concurrency) -> None:
    if concurrency.limit < 1:
        checker.add(
            (*path, "limit"),
            f"must be at least 1 (how many events may run this action at once), got {concurrency.limit}",
        )
    if concurrency.key:
        _check_jsonpath(checker, (*path, "key"), concurrency.key)


def _check_jsonpath(checker: Checker, path: yamlsource.Path, expression: str) -> None:
    try:
        jsonpath.compile(expression)
    except errors.RenderError as exc:
        checker.add(path, str(exc))


def _check_task(checker: Checker, path: yamlsource.Path, task: Task, policy: Policy | None) -> None:
    for i, env in enumerate(task.env or ()):
        _check_env(checker, (*path, "env", i), env)
    for where, message in reserved_references(task):
        checker.add((*path, *where), message)
    _check_resources(checker, path, task.resources)
    _check_security_context(checker, (*path, "securityContext"), task.securityContext)
    _check_names(checker, path, task)
    for where, message in volumes.volume_problems(task):
        checker.add((*path, *where), message)
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
    _check_retries(checker, path, task)
    if policy is not None:
        _check_policy(checker, path, task, policy)


def _check_retries(checker: Checker, path: yamlsource.Path, task: Task) -> None:
    """``retries`` within 0..MAX_RETRIES; ``retryOnExitCodes`` only with retries, each 1-255, once."""
    if not 0 <= task.retries <= MAX_RETRIES:
        checker.add((*path, "retries"), f"{task.retries} is out of range: write 0 (no retry) to {MAX_RETRIES}")
    codes = task.retryOnExitCodes
    if codes is None:
        return
    where = (*path, "retryOnExitCodes")
    if task.retries <= 0:
        checker.add(where, "has no effect without retries: set retries (1 to 10) or remove retryOnExitCodes")
    if not codes:
        checker.add(where, "is empty: list the exit codes to retry, or remove it to retry every non-zero exit code")
    low, high = EXIT_CODES
    seen: set[int] = set()
    for i, code in enumerate(codes):
        if not low <= code <= high:
            checker.add((*where, i), f"{code} is not a failing exit code: write {low} to {high} (0 is success)")
        elif code in seen:
            checker.add((*where, i), f"{code} is listed twice")
        seen.add(code)


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


def _check_names(checker: Checker, path: yamlsource.Path, task: Task) -> None:
    """The names a Job would carry that Kubernetes would refuse (422), refused here first."""
    named: list[tuple[yamlsource.Path, str, bool]] = []
    if task.namespace:
        named.append(((*path, "namespace"), task.namespace, True))
    if task.serviceAccount:
        named.append(((*path, "serviceAccount"), task.serviceAccount, False))
    named += [((*path, "imagePullSecrets", i), n, False) for i, n in enumerate(task.imagePullSecrets or ())]
    secrets = [(i, e.name) for i, e in enumerate(task.env or ()) if e.valueFrom == "secret"]
    named += [((*path, "env", i, "name"), name, False) for i, name in secrets]
    for i, volume in enumerate(task.volumes or ()):
        named.append(((*path, "volumes", i, "name"), volume.name, True))
        if volume.persistentVolumeClaim is not None:
            claim = volume.persistentVolumeClaim.claimName
            named.append(((*path, "volumes", i, "persistentVolumeClaim", "claimName"), claim, False))
    for where, name, label in named:
        if (problem := _dns_problem(name, label=label)) is not None:
            checker.add(where, problem)


def _check_security_context(checker: Checker, path: yamlsource.Path, context: SecurityContext | None) -> None:
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


def _check_env_name(checker: Checker, path: yamlsource.Path, name: str) -> None:
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


def _check_env(checker: Checker, path: yamlsource.Path, env: Env) -> None:
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


def _check_resources(checker: Checker, path: yamlsource.Path, resources: ResourceRequirements | None) -> None:
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


def _check_policy(checker: Checker, path: yamlsource.Path, task: Task, policy: Policy) -> None:
    for where, message in protected_references(
        task, secrets=policy.protected_secrets, service_accounts=policy.protected_service_accounts
    ):
        checker.add((*path, *where), message)
    if policy.allowed_images is not None and not imagepolicy.allowed(task.image, policy.allowed_images):
        checker.add((*path, "image"), f"image {task.image!r} does not match the allowed image list")
    for where, message in volumes.forbidden_claims(task, policy.allowed_volume_claims):
        checker.add((*path, *where), message)
    context = task.securityContext
    if context and context.privileged and not policy.allow_privileged:
        checker.add(
            (*path, "securityContext", "privileged"),
            "privileged containers are not allowed (set ALLOW_PRIVILEGED_JOBS=true or --allow-privileged-jobs)",
        )
