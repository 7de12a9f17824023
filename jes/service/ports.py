"""What the event handler needs from outside and what it answers: the providers ``jes serve`` and
``jes run`` plug in (control plane or local files), the handler's errors and its results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jes import errors
from jes.ledger import EventRef
from jes.matcher import config as cfg
from jes.models import EventInfo, Plan, RenderedTask


class ConfigNotFound(errors.JesError):
    """No job/config.yaml exists for the event: another integration may own it."""


class EventGone(errors.JesError):
    """The control plane no longer lists the triggered event (completed, aborted or timed out)."""


class ConfigProvider(Protocol):
    async def load(self, info: EventInfo) -> cfg.LoadedConfig:
        """The config for the event. Raises :class:`ConfigNotFound`, :class:`errors.ConfigError`
        (with where the file came from in its problems) or other :class:`errors.JesError`."""
        ...


class FileProvider(Protocol):
    async def fetch(self, info: EventInfo, task: RenderedTask, into: Path) -> dict[str, int]:
        """Write the task's ``files`` under ``into`` (path relative to /keptn), one at a time;
        their sizes by path."""
        ...


class TriggeredEvents(Protocol):
    async def fetch(self, ref: EventRef) -> dict[str, Any] | None:
        """The triggered event while the control plane still lists it as open, else None."""
        ...


@dataclass(frozen=True)
class Result:
    """What happened to one event (for logs, tests and ``jes run``'s exit code)."""

    event_id: str
    outcome: str
    """``no_match``, ``no_config``, ``silent``, ``succeeded``, ``errored``, ``resumed`` (only the
    bookkeeping was left), ``skipped`` (another holder, or done), ``gone`` (no longer open) or
    ``lost`` (another replica took it over) or ``cancelled`` (its sequence was aborted in Keptn)."""
    finished: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """What the config says about an event, before anything is done about it."""

    plan: Plan | None = None
    error: str = ""
    """The config cannot be used: reported as an errored .finished."""
    no_config: str = ""

    @property
    def reports(self) -> bool:
        """Whether .started/.finished will be sent."""
        return bool(self.error) or (self.plan is not None and any(not a.silent for a in self.plan.actions))


class NoTriggeredEvents:
    """Triggered events for ``jes run``: nothing is ever resumed, so nothing is looked up."""

    async def fetch(self, ref: EventRef) -> dict[str, Any] | None:
        return None
