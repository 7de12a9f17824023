"""Uniform integrations (registration, heartbeat, subscriptions) and their error logs.

Registration follows Keptn (reference/keptn-api.md §6): an integration is found again by name and
namespace (200, its id; the subscriptions sent are ignored unless it has none, in which case they
are copied as they are, without ids — Keptn's quirk); otherwise it is created with the id
``sha1("<name>-<namespace>-<hostname>")`` and server-assigned subscription ids (201). Integrations
not pinged within the TTL are deleted, after which pings answer 404.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jes.devtools.controlplane import keptntime, models


def integration_id(name: str, namespace: str, hostname: str) -> str:
    return hashlib.sha1(f"{name}-{namespace}-{hostname}".encode()).hexdigest()


def subscription_json(subscription: models.EventSubscription, sub_id: str) -> dict[str, Any]:
    return {
        "id": sub_id,
        "event": subscription.event,
        "filter": {
            "projects": subscription.filter.projects,
            "stages": subscription.filter.stages,
            "services": subscription.filter.services,
        },
    }


def _admits(values: list[str] | None, value: str) -> bool:
    return not values or value in values


@dataclass(eq=False)
class Integration:
    id: str
    name: str
    metadata: models.IntegrationMetadata
    lastseen: datetime
    subscriptions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        metadata = self.metadata.model_dump()
        metadata["lastseen"] = keptntime.keptn_time(self.lastseen)
        return {
            "id": self.id,
            "name": self.name,
            "metadata": metadata,
            "subscription": {
                "topics": [s["event"] for s in self.subscriptions],
                "status": "",
                "filter": {"project": "", "stage": "", "service": ""},
            },
            "subscriptions": copy.deepcopy(self.subscriptions),
        }

    def serves(self, project: str | None, stage: str | None, service: str | None) -> bool:
        """Whether some subscription's filter admits these values (``None`` = not asked)."""
        if project is None and stage is None and service is None:
            return True
        for subscription in self.subscriptions:
            flt = subscription["filter"]
            if (
                (project is None or _admits(flt["projects"], project))
                and (stage is None or _admits(flt["stages"], stage))
                and (service is None or _admits(flt["services"], service))
            ):
                return True
        return False


@dataclass(frozen=True)
class IntegrationQuery:
    id: str | None = None
    name: str | None = None
    namespace: str | None = None
    hostname: str | None = None
    project: str | None = None
    stage: str | None = None
    service: str | None = None

    def matches(self, integration: Integration) -> bool:
        meta = integration.metadata
        checks = (
            (self.id, integration.id),
            (self.name, integration.name),
            (self.namespace, meta.kubernetesmetadata.namespace),
            (self.hostname, meta.hostname),
        )
        if any(wanted is not None and wanted != actual for wanted, actual in checks):
            return False
        return integration.serves(self.project, self.stage, self.service)


class UniformRegistry:
    """Registered integrations and posted logs; not thread-safe (the state's lock guards it)."""

    def __init__(self) -> None:
        self._integrations: dict[str, Integration] = {}
        self._logs: list[dict[str, Any]] = []

    def register(self, request: models.Registration, now: datetime) -> tuple[str, bool]:
        """(id, created) for a valid registration."""
        namespace = request.metadata.kubernetesmetadata.namespace
        for existing in self._integrations.values():
            if existing.name == request.name and existing.metadata.kubernetesmetadata.namespace == namespace:
                self._refresh(existing, request, now)
                return existing.id, False
        new_id = integration_id(request.name, namespace, request.metadata.hostname)
        self._integrations[new_id] = Integration(
            id=new_id,
            name=request.name,
            metadata=request.metadata,
            lastseen=now,
            subscriptions=[subscription_json(s, str(uuid.uuid4())) for s in request.subscriptions or []],
        )
        return new_id, True

    @staticmethod
    def _refresh(existing: Integration, request: models.Registration, now: datetime) -> None:
        existing.metadata = existing.metadata.model_copy(
            update={
                "integrationversion": request.metadata.integrationversion,
                "distributorversion": request.metadata.distributorversion,
            }
        )
        existing.lastseen = now
        if not existing.subscriptions and request.subscriptions:
            existing.subscriptions = [subscription_json(s, s.id) for s in request.subscriptions]

    def ping(self, integration_id_: str, now: datetime) -> dict[str, Any] | None:
        integration = self._integrations.get(integration_id_)
        if integration is None:
            return None
        integration.lastseen = now
        return integration.to_json()

    def get(self, integration_id_: str) -> Integration | None:
        return self._integrations.get(integration_id_)

    def query(self, query: IntegrationQuery) -> list[dict[str, Any]]:
        return [i.to_json() for i in self._integrations.values() if query.matches(i)]

    def delete(self, integration_id_: str) -> None:
        self._integrations.pop(integration_id_, None)

    def expire(self, now: datetime, ttl: timedelta) -> list[str]:
        """Delete integrations not seen within ``ttl``; their ids."""
        expired = [i.id for i in self._integrations.values() if now - i.lastseen > ttl]
        for gone in expired:
            del self._integrations[gone]
        return expired

    # -- subscriptions -----------------------------------------------------------------------

    def add_subscription(self, integration: Integration, subscription: models.EventSubscription) -> str:
        sub_id = str(uuid.uuid4())
        integration.subscriptions.append(subscription_json(subscription, sub_id))
        return sub_id

    def put_subscription(self, integration: Integration, sub_id: str, subscription: models.EventSubscription) -> None:
        replacement = subscription_json(subscription, sub_id)
        for index, existing in enumerate(integration.subscriptions):
            if existing["id"] == sub_id:
                integration.subscriptions[index] = replacement
                return
        integration.subscriptions.append(replacement)

    @staticmethod
    def find_subscription(integration: Integration, sub_id: str) -> dict[str, Any] | None:
        return next((copy.deepcopy(s) for s in integration.subscriptions if s["id"] == sub_id), None)

    @staticmethod
    def delete_subscription(integration: Integration, sub_id: str) -> None:
        integration.subscriptions = [s for s in integration.subscriptions if s["id"] != sub_id]

    # -- logs --------------------------------------------------------------------------------

    def add_logs(self, entries: list[models.LogEntry], now: datetime) -> None:
        for entry in entries:
            record = entry.model_dump()
            record["time"] = record["time"] or keptntime.keptn_time(now)
            self._logs.append(record)

    def logs(self, integration_id_: str | None = None) -> list[dict[str, Any]]:
        """Log entries, oldest first."""
        return [dict(e) for e in self._logs if integration_id_ is None or e["integrationid"] == integration_id_]
