"""What the proxy tests share."""

from __future__ import annotations

from typing import Any

from jes.proxy.scopes import TaskScope


def status_changed(scope: TaskScope, **changes: Any) -> dict[str, Any]:
    """A ``.status.changed`` event for the scope's own triggered event (``changes`` override)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "4a1f6a8e-0000-4000-8000-000000000001",
        "source": "my-task",
        "type": scope.status_changed_type,
        "shkeptncontext": scope.keptn_context,
        "triggeredid": scope.triggered_id,
        "data": {"project": scope.project, "stage": scope.stage, "service": scope.service, "status": "succeeded"},
    }
    event.update(changes)
    return event
