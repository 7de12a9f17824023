"""Small typed values that flow between the pipeline stages.

matcher → :class:`Plan` (which actions run, each task rendered for the event) → manifests/runner
→ :class:`jes.runner.base.Outcome`. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jes.settings import Settings


@dataclass(frozen=True)
class EnvValue:
    """An environment variable with a value (from the event, a string, or KEPTN_*/LABELS_*)."""

    name: str
    value: str
    from_event: bool = False
    """The value comes from the event (untrusted): it reaches the task exactly as it is. Kubernetes
    expands ``$(VAR)`` in env values, so a Job manifest escapes every ``$`` of it
    (:func:`k8s_literal`); the config author's own values keep ``$(VAR)`` working."""

    @property
    def manifest_value(self) -> str:
        """The value as written into a container's ``env``."""
        return k8s_literal(self.value) if self.from_event else self.value


def k8s_literal(text: str) -> str:
    """``text`` escaped so that Kubernetes' ``$(VAR)`` expansion leaves it as it is.

    The kubelet turns ``$$`` into ``$`` and ``$(NAME)`` into a variable's value; doubling every
    ``$`` makes both impossible (``$$(X)`` from an attacker becomes ``$$$$(X)``, which expands
    to the literal ``$$(X)``)."""
    return text.replace("$", "$$")


@dataclass(frozen=True)
class EnvSecret:
    """Every key of a Kubernetes Secret becomes a variable (``envFrom.secretRef``)."""

    secret: str


EnvEntry = EnvValue | EnvSecret


@dataclass(frozen=True)
class Resources:
    """Container resources; ``None`` for a quantity means 'not set'."""

    limits_cpu: str | None = None
    limits_memory: str | None = None
    requests_cpu: str | None = None
    requests_memory: str | None = None

    @classmethod
    def defaults_of(cls, settings: Settings) -> Resources:
        """The executor's default task resources (DEFAULT_RESOURCE_*; empty = not set)."""
        return cls(
            limits_cpu=settings.default_resource_limits_cpu or None,
            limits_memory=settings.default_resource_limits_memory or None,
            requests_cpu=settings.default_resource_requests_cpu or None,
            requests_memory=settings.default_resource_requests_memory or None,
        )

    def as_k8s(self) -> dict[str, dict[str, str]]:
        limits = {k: v for k, v in (("cpu", self.limits_cpu), ("memory", self.limits_memory)) if v}
        requests = {k: v for k, v in (("cpu", self.requests_cpu), ("memory", self.requests_memory)) if v}
        result: dict[str, dict[str, str]] = {}
        if limits:
            result["limits"] = limits
        if requests:
            result["requests"] = requests
        return result


@dataclass(frozen=True)
class EventRef:
    """Enough of a triggered event to find it again and to recognise our reports to it."""

    id: str
    type: str
    keptn_context: str = ""
    project: str = ""
    stage: str = ""
    service: str = ""

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> EventRef:
        data = event.get("data")
        data = data if isinstance(data, Mapping) else {}
        return cls(
            id=str(event.get("id") or ""),
            type=str(event.get("type") or ""),
            keptn_context=str(event.get("shkeptncontext") or ""),
            project=str(data.get("project") or ""),
            stage=str(data.get("stage") or ""),
            service=str(data.get("service") or ""),
        )


@dataclass(frozen=True)
class EventInfo:
    """What the stages need to know of the triggered event."""

    id: str
    type: str
    source: str
    keptn_context: str
    git_commit_id: str
    project: str
    stage: str
    service: str
    labels: Mapping[str, str] = field(default_factory=dict)
    time: str = ""


@dataclass(frozen=True)
class RenderedTask:
    """One task of one action, rendered for one event: ready for a runner."""

    action_index: int
    task_index: int
    action_name: str
    name: str
    image: str
    image_pull_policy: str
    cmd: tuple[str, ...] | None
    args: tuple[str, ...] | None
    working_dir: str
    env: tuple[EnvEntry, ...]
    files: tuple[str, ...]
    resources: Resources | None
    """None: the executor's defaults; Resources(): no requests or limits at all (upstream ``{}``)."""
    max_poll_duration_s: int
    ttl_seconds_after_finished: int
    namespace: str
    service_account: str
    security_context: Mapping[str, Any]
    """The merged container security context (executor default, then the task's fields)."""
    annotations: Mapping[str, str]
    image_pull_secrets: tuple[str, ...]


@dataclass(frozen=True)
class PlannedAction:
    index: int
    name: str
    silent: bool
    tasks: tuple[RenderedTask, ...]
    error: str | None = None
    """Set when the action cannot run for this event (a task failed to render, or breaks policy);
    then ``tasks`` is empty and the action reports this error without creating any Job."""


@dataclass(frozen=True)
class Plan:
    """Which actions run for an event, in order. Empty ``actions``: nothing matched."""

    event: EventInfo
    actions: tuple[PlannedAction, ...]
    config_hash: str

    @property
    def matched(self) -> bool:
        return bool(self.actions)
