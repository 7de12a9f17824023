"""The control plane's request contract as pydantic models.

Written from the Keptn swagger definitions and reference/keptn-api.md: a body that real Keptn
would refuse is refused here too, with the same status (422 with go-openapi codes on
``/v1/event``; 400 on the shipyard-controller and resource-service). Like Go's JSON decoding, the
models ignore unknown fields and read ``null`` as the empty value; unlike it, they never coerce
types (a number where a string belongs is an error, as in Go). The shipyard file's models are
:mod:`shipyard`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from jes.devtools.controlplane import eventtypes, keptntime

#: go-openapi validation codes used by the api-service for 422 answers.
CODE_INVALID_TYPE = 601
CODE_REQUIRED = 602
#: go-openapi's code for a list of several validation failures.
CODE_COMPOSITE = 422

INCOMPLETE_INTEGRATION = "incomplete integration ID. At least 'name','namespace' and 'nodename' must be set"


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else value


#: A Go ``string`` field: ``null`` reads as "", other types are errors.
GoStr = Annotated[str, BeforeValidator(_null_is_empty)]


class GoModel(BaseModel):
    """A Go struct as Keptn decodes it: unknown fields are ignored; frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


M = TypeVar("M", bound=GoModel)


class ApiProblem(Exception):
    """A request cannot be served: the HTTP ``status`` and Keptn's error ``code``/``message``."""

    def __init__(self, status: int, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = status if code is None else code
        self.message = message


# ---------------------------------------------------------------------------------------------
# api-service: POST /v1/event


class IncomingEvent(BaseModel):
    """A structured CloudEvent as the api-service accepts it (``keptnContextExtendedCE``).

    ``data`` (an object), ``source`` and ``type`` are required and must not be empty; ``time``,
    when given, must be an RFC 3339 date-time. Unknown top-level fields — including
    ``shkeptnspecversion``, which the api-service's model does not know — are dropped.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    data: dict[str, Any]
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    specversion: str | None = None
    id: str | None = None
    time: str | None = None
    contenttype: str | None = None
    shkeptncontext: str | None = None
    triggeredid: str | None = None
    gitcommitid: str | None = None
    shkeptnversion: str | None = None
    extensions: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _time_is_a_date_time(self) -> IncomingEvent:
        if self.time is not None and keptntime.parse_time(self.time) is None:
            raise ValueError(f"time: {self.time!r} is not an RFC 3339 date-time")
        return self


_JSON_TYPES = {
    "dict_type": "object",
    "string_type": "string",
    "model_type": "object",
    "list_type": "array",
    "int_type": "integer",
    "bool_type": "boolean",
}
_REQUIRED_FIELDS = ("data", "source", "type")


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def parse_incoming_event(body: Any) -> IncomingEvent:
    """Validate a decoded ``/v1/event`` body; :class:`ApiProblem` says why it is refused."""
    if not isinstance(body, dict):
        raise ApiProblem(400, f"parsing body failed: expected a JSON object, got {_json_type_name(body)}")
    try:
        return IncomingEvent.model_validate(body)
    except ValidationError as exc:
        raise _event_problem(exc, body) from None


def _event_problem(exc: ValidationError, body: dict[str, Any]) -> ApiProblem:
    lines: list[tuple[int, str]] = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "value_error":
            return ApiProblem(400, f"parsing body failed: {error['ctx']['error']}")
        value = body.get(field)
        if field in _REQUIRED_FIELDS and (error["type"] in ("missing", "string_too_short") or value is None):
            lines.append((CODE_REQUIRED, f"{field} in body is required"))
        else:
            expected = _JSON_TYPES.get(error["type"], "valid")
            lines.append((CODE_INVALID_TYPE, f'{field} in body must be of type {expected}: "{_json_type_name(value)}"'))
    if len(lines) == 1:
        code, message = lines[0]
        return ApiProblem(422, message, code=code)
    return ApiProblem(422, "validation failure list:\n" + "\n".join(m for _, m in lines), code=CODE_COMPOSITE)


#: Event types strict validation lets through besides task and sequence events.
_STRICT_OTHER_TYPES = ("sh.keptn.log.error", "sh.keptn.events.problem", "sh.keptn.event.monitoring.configure")


def strict_problem(event: IncomingEvent) -> str | None:
    """What the api-service's optional strict validation (``EVENT_VALIDATION_ENABLED``) refuses."""
    if event.type in _STRICT_OTHER_TYPES:
        return None
    parsed = eventtypes.parse(event.type)
    if parsed is None:
        return "unknown event type"
    data = event.data
    scope_missing = not all(isinstance(data.get(k), str) and data.get(k) for k in ("project", "stage", "service"))
    if isinstance(parsed, eventtypes.SequenceType):
        if parsed.kind != "triggered":
            return f"unknown event type action: {parsed.kind}"
        if scope_missing:
            return "project, stage and service must be set in data"
        if data["stage"] != parsed.stage:
            return f"stage {data['stage']!r} in data does not match the stage {parsed.stage!r} of the event type"
        return None
    if parsed.kind not in ("started", "finished", "invalidated"):
        return f"unknown event type action: {parsed.kind}"
    if scope_missing:
        return "project, stage and service must be set in data"
    if not event.triggeredid:
        return "triggeredid must be set"
    if parsed.kind == "finished" and not (data.get("result") and data.get("status")):
        return "result and status must be set in data of a finished event"
    return None


# ---------------------------------------------------------------------------------------------
# shipyard-controller: uniform registration, subscriptions, logs, projects, sequences


class KubernetesMetadata(GoModel):
    namespace: GoStr = ""
    podname: GoStr = ""
    deploymentname: GoStr = ""


class IntegrationMetadata(GoModel):
    hostname: GoStr = ""
    integrationversion: GoStr = ""
    distributorversion: GoStr = ""
    location: GoStr = ""
    kubernetesmetadata: KubernetesMetadata = Field(default_factory=KubernetesMetadata)
    lastseen: GoStr = ""

    @model_validator(mode="before")
    @classmethod
    def _null_metadata(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("kubernetesmetadata") is None:
            return {**value, "kubernetesmetadata": {}}
        return value


class SubscriptionFilter(GoModel):
    """Per dimension: ``None``/empty = everything, else the value must be listed."""

    projects: list[str] | None = None
    stages: list[str] | None = None
    services: list[str] | None = None


class EventSubscription(GoModel):
    """A subscription of an integration to one event type."""

    id: GoStr = ""
    event: GoStr = ""
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)

    @model_validator(mode="before")
    @classmethod
    def _null_filter(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("filter") is None:
            return {**value, "filter": {}}
        return value

    @model_validator(mode="after")
    def _valid(self) -> EventSubscription:
        if not self.event:
            raise ValueError("subscription event must be set")
        if self.filter.services is not None and self.filter.stages is None:
            raise ValueError("at least one stage must be specified when filtering by service")
        return self


class Registration(GoModel):
    """``POST /uniform/registration``: an integration announcing itself.

    ``name``, ``metadata.hostname`` and ``metadata.kubernetesmetadata.namespace`` make up the
    integration id and must be set; integrations named ``webhook-service`` must filter every
    subscription on exactly one project.
    """

    name: GoStr = ""
    metadata: IntegrationMetadata = Field(default_factory=IntegrationMetadata)
    subscriptions: list[EventSubscription] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_metadata(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("metadata") is None:
            return {**value, "metadata": {}}
        return value

    @model_validator(mode="after")
    def _valid(self) -> Registration:
        if not (self.name and self.metadata.hostname and self.metadata.kubernetesmetadata.namespace):
            raise ValueError(INCOMPLETE_INTEGRATION)
        if self.name == "webhook-service":
            for subscription in self.subscriptions or []:
                if len(subscription.filter.projects or []) != 1:
                    raise ValueError("webhook-service subscriptions must filter on exactly one project")
        return self


class LogEntry(GoModel):
    integrationid: GoStr = ""
    message: GoStr = ""
    time: GoStr = ""
    shkeptncontext: GoStr = ""
    task: GoStr = ""
    triggeredid: GoStr = ""
    gitcommitid: GoStr = ""


class CreateLogsRequest(GoModel):
    logs: list[LogEntry] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _null_logs(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("logs") is None:
            return {**value, "logs": []}
        return value


class CreateProject(GoModel):
    """``POST /controlPlane/v1/project``; ``shipyard`` is the base64 of the shipyard YAML."""

    name: GoStr = Field(default="")
    shipyard: GoStr = Field(default="")

    @model_validator(mode="after")
    def _valid(self) -> CreateProject:
        if not self.name or not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise ValueError("project name must start with a lower-case letter and contain only a-z, 0-9 and -")
        if not self.shipyard:
            raise ValueError("shipyard must be set")
        return self


class CreateService(GoModel):
    serviceName: GoStr = ""

    @model_validator(mode="after")
    def _valid(self) -> CreateService:
        if not self.serviceName or not re.fullmatch(r"[a-z][a-z0-9-]*", self.serviceName):
            raise ValueError("service name must start with a lower-case letter and contain only a-z, 0-9 and -")
        return self


class SequenceControl(GoModel):
    """``POST /sequence/{project}/{keptnContext}/control``: go-utils' ``SequenceControlCommand``
    has ``State string `binding:"required"``` and an optional ``Stage``; a state other than
    ``abort``/``pause``/``resume`` passes the binding and is ignored by ``ControlSequence``
    (shipyard-controller/internal/controller/shipyardcontroller.go: the switch has no default)."""

    state: GoStr
    stage: GoStr = ""

    @model_validator(mode="after")
    def _required(self) -> SequenceControl:
        if not self.state:
            raise ValueError(
                "Invalid request format: Key: 'SequenceControlCommand.State' Error:Field validation for "
                "'State' failed on the 'required' tag"
            )
        return self


# ---------------------------------------------------------------------------------------------
# resource-service writes


class ResourceIn(GoModel):
    resourceURI: GoStr = ""
    resourceContent: GoStr = ""

    @model_validator(mode="after")
    def _valid(self) -> ResourceIn:
        if not self.resourceURI.strip("/"):
            raise ValueError("resourceURI must be set")
        return self


class ResourcesIn(GoModel):
    resources: list[ResourceIn] = Field(min_length=1)


class ResourceContentIn(GoModel):
    resourceContent: GoStr = ""


def first_problem(exc: ValidationError) -> str:
    """One line for the first validation error: the message of a model check, or path + message."""
    error = exc.errors()[0]
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def parse_body(model: type[M], body: Any) -> M:
    """Validate a shipyard-controller / resource-service body; 400 :class:`ApiProblem` if bad."""
    if not isinstance(body, dict):
        raise ApiProblem(400, f"Invalid request format: expected a JSON object, got {_json_type_name(body)}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problem = first_problem(exc)
        if exc.errors()[0]["type"] != "value_error":
            problem = f"Invalid request format: {problem}"
        raise ApiProblem(400, problem) from None
