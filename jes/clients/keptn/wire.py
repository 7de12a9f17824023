"""Values on the wire of the Keptn control-plane API, as jes sends and reads them.

Lenient on what the server sends (unknown fields are ignored, a ``null`` list is empty), exact in
what jes sends (:meth:`Registration.body`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

Json = dict[str, Any]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SubscriptionFilter(_Wire):
    """Project/stage/service lists; an empty (or ``null``) list means "every"."""

    projects: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    @field_validator("projects", "stages", "services", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return () if value is None else value


class Subscription(_Wire):
    id: str = ""
    event: str
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)

    @field_validator("filter", mode="before")
    @classmethod
    def _null_filter(cls, value: object) -> object:
        return {} if value is None else value


class KubernetesMetadata(_Wire):
    namespace: str = ""
    podname: str = ""
    deploymentname: str = ""


class IntegrationMetadata(_Wire):
    hostname: str = ""
    integrationversion: str = ""
    distributorversion: str = ""
    location: str = ""
    kubernetesmetadata: KubernetesMetadata = Field(default_factory=KubernetesMetadata)
    lastseen: str | None = None


class Registration(_Wire):
    """What jes registers (``POST /controlPlane/v1/uniform/registration``)."""

    name: str
    metadata: IntegrationMetadata
    subscriptions: tuple[Subscription, ...] = ()

    def body(self) -> Json:
        subscriptions = [{"event": s.event, "filter": s.filter.model_dump(mode="json")} for s in self.subscriptions]
        metadata = self.metadata.model_dump(mode="json", exclude={"lastseen"})
        return {"name": self.name, "metadata": metadata, "subscriptions": subscriptions}


class Integration(_Wire):
    """A stored integration as the control plane returns it (ping, list)."""

    id: str = ""
    name: str = ""
    metadata: IntegrationMetadata = Field(default_factory=IntegrationMetadata)
    subscriptions: tuple[Subscription, ...] = ()

    @field_validator("subscriptions", "metadata", mode="before")
    @classmethod
    def _null_is_default(cls, value: object, info: pydantic.ValidationInfo) -> object:
        if value is None:
            return () if info.field_name == "subscriptions" else {}
        return value


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LogEntry(_Wire):
    """One entry for the control plane's log API (shown on the integration's page in the Bridge)."""

    integrationid: str
    message: str
    time: str = Field(default_factory=now_rfc3339)
    shkeptncontext: str = ""
    task: str = ""
    triggeredid: str = ""
    gitcommitid: str = ""


@dataclass(frozen=True)
class Resource:
    """One file from the resource service."""

    uri: str
    content: bytes
    version: str
    """The git commit the content was read at (``metadata.version``)."""


#: Keptn's error-log events: they only ever become log entries (never sent on).
LOG_ERROR_TYPE = "sh.keptn.log.error"


def log_entry_for(event: Mapping[str, Any]) -> LogEntry | None:
    """The log entry an event makes, as the distributor's uniform log does (``integrationid`` left
    empty for the integration's own id); None: none. ``sh.keptn.log.error`` events and ``.finished``
    events whose ``data.status`` is ``errored`` make one."""
    event_type = str(event.get("type") or "")
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    common = {
        "shkeptncontext": _text(event.get("shkeptncontext")),
        "triggeredid": _text(event.get("triggeredid")),
        "message": _text(data.get("message")),
    }
    if event_type == LOG_ERROR_TYPE:
        return LogEntry(integrationid=_text(data.get("integrationid")), task=_text(data.get("task")), **common)
    if event_type.endswith(".finished") and data.get("status") == "errored":
        return LogEntry(integrationid="", task=_task_of(event_type), **common)
    return None


def _task_of(event_type: str) -> str:
    """``sh.keptn.event.<task>.finished`` → ``<task>``."""
    return event_type.removeprefix("sh.keptn.event.").removesuffix(".finished")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
