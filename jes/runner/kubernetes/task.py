"""A task as the kubernetes runner handles it, and what every phase of a run shares.

:class:`JobTask` is the runner-neutral :class:`~jes.models.TaskSpec` together with the Job
manifest the runner built for it; the phases (:mod:`.creation`, :mod:`.waiting`, :mod:`.finishing`)
read the namespace, the main container and the files ConfigMaps from that manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from jes.clients import kube as kube_client
from jes.models import Outcome, Status, TaskSpec
from jes.runner.kubernetes.status import RELAY_CONTAINER

Obj = dict[str, Any]
logger = logging.getLogger(__name__)

ApiLookup = Callable[[], kube_client.KubeApi]
"""The runner's API access, looked up at every use: once the runner is closed the lookup raises
:class:`~jes.errors.RunnerError` (rather than a call landing on a thread pool that was shut down)."""

LOST_REASON = "the Job disappeared before its result was known"


@dataclass(frozen=True)
class JobTask(TaskSpec):
    """A task with the Job manifest the runner built for it."""

    job: Mapping[str, Any] = field(default_factory=dict)
    kept: tuple[str, str, bool] | None = None
    """Once the Job exists (:meth:`created`): its namespace, main container and whether it has the
    relay container — all that waiting and finishing read, instead of the manifest."""

    @classmethod
    def of(cls, spec: TaskSpec, job: Mapping[str, Any]) -> JobTask:
        return cls(**{f.name: getattr(spec, f.name) for f in fields(TaskSpec)}, job=job)

    def created(self) -> JobTask:
        """This task once its Job exists: three values, not the whole manifest (nor a skeleton of
        it) for as long as the Job runs."""
        return replace(self, job={}, kept=(self.namespace, self.main_container, self.has_relay))

    @property
    def pod_spec(self) -> Mapping[str, Any]:
        """The manifest's pod spec (empty once the Job exists)."""
        return ((self.job.get("spec") or {}).get("template") or {}).get("spec") or {}

    @property
    def namespace(self) -> str:
        """The manifest's namespace, else the task's, else ``default``."""
        if self.kept is not None:
            return self.kept[0]
        meta = self.job.get("metadata") or {}
        return str(meta.get("namespace") or self.task.namespace or "default")

    @property
    def main_container(self) -> str:
        if self.kept is not None:
            return self.kept[1]
        containers = self.pod_spec.get("containers") or []
        return str(containers[0].get("name", "")) if containers else ""

    @property
    def has_relay(self) -> bool:
        """Whether the pod has the relay init container (its log carries the task's outputs)."""
        if self.kept is not None:
            return self.kept[2]
        return any(c.get("name") == RELAY_CONTAINER for c in self.pod_spec.get("initContainers") or [])


def now() -> datetime:
    return datetime.now(UTC)


def call_safely(callback: Callable[..., None] | None, *args: Any) -> None:
    """Call a caller's callback; its failure is logged, never raised into the run."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        logger.exception("a runner callback failed")


def outcome_without_logs(spec: TaskSpec, status: Status, reason: str, started_at: datetime) -> Outcome:
    """The outcome of a task that ends before there is anything to report but ``reason``."""
    return Outcome(
        job_name=spec.job_name,
        status=status,
        reason=reason,
        exit_code=None,
        logs=(),
        started_at=started_at,
        finished_at=now(),
    )
