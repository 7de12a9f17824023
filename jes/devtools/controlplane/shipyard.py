"""A project's shipyard as pydantic models: stages → sequences → tasks, and ``triggeredOn``.

Checked as Keptn's shipyard-controller checks it when a project is created or its shipyard
changes (names without dots, no stage or sequence twice, Go durations in ``triggeredAfter``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from jes.devtools.controlplane.models import GoModel, GoStr

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)")
_DURATION_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> timedelta:
    """A Go duration such as ``10m`` or ``1h30m`` (what ``triggeredAfter`` holds)."""
    if text in ("0", ""):
        return timedelta(0)
    if not re.fullmatch(f"(?:{_GO_DURATION.pattern})+", text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h30m")
    total_s = 0.0
    for match in re.finditer(r"((?:\d+(?:\.\d*)?|\.\d+))(ns|us|µs|ms|s|m|h)", text):
        total_s += float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
    return timedelta(seconds=total_s)


def _check_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} may contain only letters, digits, '-' and '_' (no dots)")
    return name


class ShipyardTask(GoModel):
    name: str
    properties: dict[str, Any] | None = None
    triggeredAfter: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> ShipyardTask:
        _check_name("task", self.name)
        if self.triggeredAfter is not None:
            parse_go_duration(self.triggeredAfter)
        return self

    @property
    def delay(self) -> timedelta:
        return parse_go_duration(self.triggeredAfter or "")


class TriggeredOnSelector(GoModel):
    match: dict[str, str] = Field(default_factory=dict)


class TriggeredOn(GoModel):
    event: str
    selector: TriggeredOnSelector | None = None


class ShipyardSequence(GoModel):
    name: str
    tasks: list[ShipyardTask] = Field(default_factory=list)
    triggeredOn: list[TriggeredOn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> ShipyardSequence:
        _check_name("sequence", self.name)
        return self


class ShipyardStage(GoModel):
    name: str
    sequences: list[ShipyardSequence] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> ShipyardStage:
        _check_name("stage", self.name)
        names = [s.name for s in self.sequences]
        if len(set(names)) != len(names):
            raise ValueError(f"stage {self.name!r} defines a sequence twice")
        return self

    def sequence(self, name: str) -> ShipyardSequence | None:
        return next((s for s in self.sequences if s.name == name), None)


class ShipyardSpec(GoModel):
    stages: list[ShipyardStage] = Field(default_factory=list)


class ShipyardMetadata(GoModel):
    name: GoStr = ""


class Shipyard(GoModel):
    """A project's shipyard: stages → sequences → tasks."""

    apiVersion: str
    kind: Literal["Shipyard"]
    metadata: ShipyardMetadata = Field(default_factory=ShipyardMetadata)
    spec: ShipyardSpec

    @model_validator(mode="after")
    def _valid(self) -> Shipyard:
        if not re.fullmatch(r"spec\.keptn\.sh/0\.2\.\d+", self.apiVersion):
            raise ValueError(f"unsupported shipyard apiVersion {self.apiVersion!r} (expected spec.keptn.sh/0.2.x)")
        names = [s.name for s in self.spec.stages]
        if len(set(names)) != len(names):
            raise ValueError("a stage is defined twice")
        return self

    def stage(self, name: str) -> ShipyardStage | None:
        return next((s for s in self.spec.stages if s.name == name), None)
