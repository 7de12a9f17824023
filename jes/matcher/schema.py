"""The ``job/config.yaml`` model (apiVersion v2) and its constants.

Every field of the original job-executor-service is here with its upstream default, plus the
extensions ``actions[].locations``, ``actions[].concurrency``, ``tasks[].imagePullSecrets``,
``tasks[].onError``, ``tasks[].volumes`` and ``tasks[].retries``/``retryOnExitCodes``. The field
descriptions feed the JSON Schema and the reference table in README.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from jes.matcher.fieldtypes import (
    StrictModel,
    YBool,
    YInt,
    YIntList,
    YStr,
    YStrList,
    YStrMap,
    list_or_none,
    one_of,
    optional_block,
)

DEFAULT_MAX_POLL_DURATION_S = 300
DEFAULT_TTL_SECONDS_AFTER_FINISHED = 21600
MIN_TTL_SECONDS_AFTER_FINISHED = 60
VALUE_FROM = ("event", "secret", "string")

#: Values the Kubernetes API server accepts (k8s.io/api core/v1 types; validation.go refuses others).
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROC_MOUNTS = ("Default", "Unmasked")
PROFILE_TYPES = ("RuntimeDefault", "Unconfined", "Localhost")
#: What a failed task does to its action (jes extension ``tasks[].onError``); the first is the default.
ON_ERROR = ("fail", "warning")
#: The most retries a task may have (jes extension ``tasks[].retries``): 11 runs of one task at most.
MAX_RETRIES = 10
#: The exit codes ``retryOnExitCodes`` may list: a process's non-zero exit codes.
EXIT_CODES = (1, 255)


class JsonPathFilter(StrictModel):
    """Optional filter of an event trigger: the JSONPath ``property`` must equal ``match``."""

    property: YStr = Field("", description="JSONPath evaluated on the whole event, e.g. $.data.test.teststrategy")
    match: YStr = Field("", description="value the property must equal (numbers/booleans by their JSON text)")


class EventTrigger(StrictModel):
    name: YStr = Field("", description="regular expression searched (unanchored) in the event type; empty matches all")
    jsonpath: Annotated[JsonPathFilter | None, BeforeValidator(optional_block)] = Field(
        None, description="optional filter on the event's content"
    )


class Env(StrictModel):
    name: YStr = Field("", description="variable name; for valueFrom: secret the name of the Secret")
    value: YStr = Field("", description="JSONPath (event), literal (string); ignored for secret")
    valueFrom: YStr = Field("", description="event, secret or string", json_schema_extra={"enum": list(VALUE_FROM)})
    as_: YStr = Field("", alias="as", description="event values only: json or yaml formatting")


class ResourceList(StrictModel):
    cpu: YStr = Field("", description="Kubernetes quantity, e.g. 500m")
    memory: YStr = Field("", description="Kubernetes quantity, e.g. 512Mi")


class ResourceRequirements(StrictModel):
    limits: Annotated[ResourceList | None, BeforeValidator(optional_block)] = Field(None, description="upper bounds")
    requests: Annotated[ResourceList | None, BeforeValidator(optional_block)] = Field(
        None, description="what the scheduler reserves"
    )


class Capabilities(StrictModel):
    add: YStrList = Field(None, description="capabilities to add, e.g. NET_ADMIN")
    drop: YStrList = Field(None, description="capabilities to drop, e.g. ALL")


class SeccompProfile(StrictModel):
    type: one_of(PROFILE_TYPES) = Field(description="RuntimeDefault, Unconfined or Localhost")  # type: ignore[valid-type]
    localhostProfile: YStr = Field("", description="profile file, for type Localhost")


class SecurityContext(StrictModel):
    """The subset of a container securityContext a task may set; merged over the executor default."""

    capabilities: Annotated[Capabilities | None, BeforeValidator(optional_block)] = Field(
        None, description="replaces the default's capabilities as a whole"
    )
    privileged: YBool | None = Field(None, description="refused unless ALLOW_PRIVILEGED_JOBS=true")
    runAsUser: YInt | None = Field(None, description="user id")
    runAsGroup: YInt | None = Field(None, description="group id")
    runAsNonRoot: YBool | None = Field(None, description="the image must not run as root")
    readOnlyRootFilesystem: YBool | None = Field(None, description="false lets the task write outside /keptn")
    allowPrivilegeEscalation: YBool | None = Field(None, description="setuid binaries may gain privileges")
    procMount: one_of(PROC_MOUNTS) | None = Field(None, description="Default or Unmasked")  # type: ignore[valid-type]
    seccompProfile: Annotated[SeccompProfile | None, BeforeValidator(optional_block)] = Field(
        None, description="replaces the default's profile as a whole"
    )

    def fields_set(self) -> dict[str, Any]:
        """The fields the task wrote, as Kubernetes JSON."""
        return self.model_dump(exclude_none=True, exclude_unset=True, mode="json")


class EmptyDirVolume(StrictModel):
    """A fresh, empty directory for one run of the task, removed with it."""

    sizeLimit: YStr = Field("", description="Kubernetes quantity, e.g. 1Gi; empty: no limit")


class PersistentVolumeClaimVolume(StrictModel):
    """An existing PersistentVolumeClaim in the task's namespace; jes never creates one."""

    claimName: YStr = Field(description="the claim's name; must match JES_ALLOWED_VOLUME_CLAIMS")
    readOnly: YBool = Field(False, description="mount it read-only")


class Volume(StrictModel):
    """A volume of a task: exactly one of ``emptyDir`` or ``persistentVolumeClaim`` (no other volume
    types: a task must not reach the node's files, Secrets or other storage through one)."""

    name: YStr = Field(description="DNS-1123 label, unique in the task")
    mountPath: YStr = Field(description="absolute path in the task container; not /keptn, inside or above it")
    emptyDir: Annotated[EmptyDirVolume | None, BeforeValidator(optional_block)] = Field(
        None, description="a fresh empty directory (write emptyDir: {} for no sizeLimit)"
    )
    persistentVolumeClaim: Annotated[PersistentVolumeClaimVolume | None, BeforeValidator(optional_block)] = Field(
        None, description="an existing claim allowed by JES_ALLOWED_VOLUME_CLAIMS"
    )


class Task(StrictModel):
    name: YStr = Field("", description="shown in reports and the Job's labels")
    image: YStr = Field("", description="container image, checked against the allowlist as written")
    imagePullPolicy: one_of(PULL_POLICIES, empty=True) = Field(  # type: ignore[valid-type]
        "", description="Always, IfNotPresent or Never; empty = Kubernetes default"
    )
    cmd: YStrList = Field(None, description="container command")
    args: YStrList = Field(None, description="container args")
    workingDir: YStr = Field("", description="container working directory; empty = the image's")
    files: YStrList = Field(None, description="resource files or directories copied to /keptn")
    env: Annotated[list[Env] | None, BeforeValidator(list_or_none)] = Field(
        None, description="variables; KEPTN_PROJECT/STAGE/SERVICE and LABELS_<KEY> follow"
    )
    resources: Annotated[ResourceRequirements | None, BeforeValidator(optional_block)] = Field(
        None, description="absent: executor defaults; present (even {}): exactly these"
    )
    maxPollDuration: YInt | None = Field(None, description=f"seconds [{DEFAULT_MAX_POLL_DURATION_S}]")
    ttlSecondsAfterFinished: YInt | None = Field(
        None, description=f"seconds [{DEFAULT_TTL_SECONDS_AFTER_FINISHED}], at least 60"
    )
    namespace: YStr = Field("", description="namespace of the Job [JOB_NAMESPACE]")
    serviceAccount: YStr = Field("", description="service account of the pod [DEFAULT_JOB_SERVICE_ACCOUNT]")
    securityContext: Annotated[SecurityContext | None, BeforeValidator(optional_block)] = Field(
        None, description="fields written over the executor's default container security context"
    )
    annotations: YStrMap = Field(None, description="annotations of the Job object")
    imagePullSecrets: YStrList = Field(None, description="jes extension: names of image pull Secrets")
    onError: one_of(ON_ERROR) = Field(  # type: ignore[valid-type]
        "fail",
        description="jes extension: fail ends the action errored/fail; warning lets the next tasks run "
        "and makes the action succeeded/warning",
    )
    retries: YInt = Field(
        0,
        description=f"jes extension: how often a failed task runs again, 0 to {MAX_RETRIES} "
        "(Kubernetes: the Job's backoffLimit)",
    )
    retryOnExitCodes: YIntList = Field(
        None,
        description="jes extension: only these exit codes (1-255) are retried, any other fails at once; "
        "none: every non-zero exit code",
    )
    volumes: Annotated[list[Volume] | None, BeforeValidator(list_or_none)] = Field(
        None, description="jes extension: emptyDir or persistentVolumeClaim volumes mounted into the task"
    )


class Concurrency(StrictModel):
    """jes extension: how many events may run the action at once; the others wait in arrival order."""

    limit: YInt = Field(description="at least 1: how many events may run the action at the same time")
    key: YStr = Field(
        "",
        description="JSONPath on the event, e.g. $.data.stage: one queue per value found; empty = one queue",
    )


class Action(StrictModel):
    name: YStr = Field("", description="shown in reports and the Jobs' labels")
    silent: YBool = Field(False, description="run without sending any event")
    events: Annotated[list[EventTrigger] | None, BeforeValidator(list_or_none)] = Field(
        None, description="the action runs when any entry matches; none: never"
    )
    tasks: Annotated[list[Task] | None, BeforeValidator(list_or_none)] = Field(
        None, description="run in order, one Job each, stopping at the first failure of an onError: fail task"
    )
    locations: YStrList = Field(None, description="jes extension: run only on executors whose LOCATION is listed")
    concurrency: Annotated[Concurrency | None, BeforeValidator(optional_block)] = Field(
        None, description="jes extension: at most limit events run the action at once per key value; others queue"
    )


class JobConfig(StrictModel):
    """job/config.yaml"""

    model_config = ConfigDict(title="jes job/config.yaml (apiVersion v2)")

    apiVersion: Literal["v2"] = Field(description="must be v2")
    actions: Annotated[list[Action] | None, BeforeValidator(list_or_none)] = Field(
        None, description="in file order: leading silent matches run, then the first non-silent match"
    )


def find_action(config: JobConfig, name: str) -> Action | None:
    """The first action with this exact name (upstream's lookup rule)."""
    return next((a for a in config.actions or () if a.name == name), None)


def find_task(action: Action, name: str) -> Task | None:
    return next((t for t in action.tasks or () if t.name == name), None)
