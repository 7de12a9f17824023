"""Small typed values that flow between the pipeline stages.

matcher → :class:`Plan` (which actions run, each task rendered for the event) → runner
(:class:`TaskSpec` in, :class:`Outcome` out) → reporter. Nothing here talks to a network;
:class:`TaskFiles` (from :mod:`jes.util.spool`) only reads and removes its own spool folder.
"""

from __future__ import annotations

import enum
import hashlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jes.util.spool import TaskFiles as TaskFiles  # (a value the stages pass, given here with the others)

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


#: Names of the volumes jes itself puts into a task's pod (the ``/keptn`` emptyDir, the files
#: ConfigMaps' projection, the outputs' emptyDir and the sidecar's token blocker,
#: :mod:`jes.runner.kubernetes.manifests`): a task's volumes may not use them.
JES_VOLUME_NAMES = ("job-volume", "job-files", "job-output", "jes-output-no-token")
#: Where jes mounts into the task container (the task's files; ``$KEPTN_OUTPUT_FILE``'s folder): a
#: task's volume may not be mounted there, inside or above.
JES_MOUNT_PATHS = ("/keptn", "/keptn-output")


@dataclass(frozen=True)
class TaskVolume:
    """A volume of a task (jes extension ``tasks[].volumes``): an emptyDir (``claim_name`` empty)
    or an existing PersistentVolumeClaim, mounted into the task container at ``mount_path``."""

    name: str
    mount_path: str
    size_limit: str = ""
    """emptyDir only: its ``sizeLimit`` (a Kubernetes quantity); empty: none."""
    claim_name: str = ""
    """persistentVolumeClaim only: the claim's name, in the task's namespace."""
    read_only: bool = False
    """persistentVolumeClaim only: mounted read-only."""

    @property
    def kind(self) -> str:
        return "persistentVolumeClaim" if self.claim_name else "emptyDir"


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
    on_error: str = "fail"
    """``fail``: a failure ends the action errored/fail; ``warning``: the next tasks run and the
    action ends succeeded/warning (unless a ``fail`` task fails later)."""
    volumes: tuple[TaskVolume, ...] = ()
    """The task's own volumes (``tasks[].volumes``), in file order."""
    retries: int = 0
    """How often the task runs again after failing (Kubernetes: the Job's ``backoffLimit``)."""
    retry_on_exit_codes: tuple[int, ...] = ()
    """Only these exit codes are retried, in ascending order; empty: every non-zero exit code."""

    def may_retry(self, exit_code: int | None) -> bool:
        """Whether an attempt that failed with ``exit_code`` (None: no exit code, such as a failed
        start) is retried, attempts left aside; the same rule as the Job's ``podFailurePolicy``."""
        if self.retries <= 0:
            return False
        if not self.retry_on_exit_codes:
            return True
        return exit_code in self.retry_on_exit_codes


@dataclass(frozen=True)
class Concurrency:
    """``actions[].concurrency`` rendered for one event: at most ``limit`` events of one queue run
    the action at once; the others wait in arrival order."""

    limit: int
    key: str
    """The JSONPath (``""``: no key, one queue for the action)."""
    value: str
    """What the key found in the event: a string as it is, anything else as compact JSON."""
    queue: str
    """The queue's identity: the Keptn project, the action's name and ``value`` — events share a
    queue (and its slots) when all three are equal (the ledger hashes it for object names)."""


def queue_of(project: str, action: str, value: str) -> str:
    """The identity of a concurrency queue (:attr:`Concurrency.queue`)."""
    return "\0".join((project, action, value))


@dataclass(frozen=True)
class PlannedAction:
    index: int
    name: str
    silent: bool
    tasks: tuple[RenderedTask, ...]
    error: str | None = None
    """Set when the action cannot run for this event (a task failed to render, or breaks policy);
    then ``tasks`` is empty and the action reports this error without creating any Job."""
    concurrency: Concurrency | None = None
    """``actions[].concurrency`` for this event (None: the action runs at once)."""


@dataclass(frozen=True)
class Plan:
    """Which actions run for an event, in order. Empty ``actions``: nothing matched."""

    event: EventInfo
    actions: tuple[PlannedAction, ...]
    config_hash: str

    @property
    def matched(self) -> bool:
        return bool(self.actions)


def job_name(event_id: str, action_index: int, task_index: int, *, executor: str = "") -> str:
    """The name of one task's Job (or local process) for one event: deterministic, so that a
    restarted jes finds what it started; DNS-1123-valid and at most 45 characters for any event id;
    executors sharing a namespace (``executor`` = ``<namespace>/<location>``) never share names."""
    readable = re.sub(r"[^a-z0-9]+", "-", event_id.lower()).strip("-")[:12].strip("-") or "x"
    digest = hashlib.sha256(f"{event_id}\0{executor}".encode()).hexdigest()[:16]
    # interned: the same object as the names the watches read (the Job's, its pod's labels)
    return sys.intern(f"jes-{readable}-{digest}-{action_index:03d}-{task_index + 1:03d}")


# ---------------------------------------------------------------------------------------------
# What a runner gets and gives back


@dataclass(frozen=True)
class LogText:
    """The retained part of one output stream."""

    head: bytes
    tail: bytes
    omitted_bytes: int

    @property
    def total_bytes(self) -> int:
        return len(self.head) + len(self.tail) + self.omitted_bytes

    def text(self) -> str:
        """Head, an omission marker when something was dropped, and tail, as text."""
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.omitted_bytes:
            return head + tail
        return f"{head}\n[... {self.omitted_bytes} bytes omitted ...]\n{tail}"

    @classmethod
    def of(cls, data: bytes | str) -> LogText:
        raw = data.encode() if isinstance(data, str) else data
        return cls(head=raw, tail=b"", omitted_bytes=0)


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The task ran and failed: non-zero exit code, OOMKilled, init container failure."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """activeDeadlineSeconds (TASK_DEADLINE_SECONDS) was reached."""
    TIMED_OUT = "timed_out"
    """maxPollDuration passed; the Job (or process) was stopped."""
    CANNOT_START = "cannot_start"
    """The pod can never start: image pull error, missing Secret/key or service account,
    unschedulable past the grace period."""
    LOST = "lost"
    """The Job (or process) disappeared before its result was known."""
    ERROR = "error"
    """jes could not create the Job at all (permission, invalid spec, API error)."""
    CANCELLED = "cancelled"
    """Its sequence was aborted in Keptn: the Job (or process) was stopped (README "Cancellation")."""


@dataclass(frozen=True)
class ContainerLog:
    """The retained output of one container (or the local process)."""

    container: str
    pod: str
    text: LogText
    exit_code: int | None = None
    reason: str = ""
    """Termination reason as Kubernetes reports it (``Completed``, ``Error``, ``OOMKilled``)."""
    message: str = ""
    init: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened to one task."""

    job_name: str
    status: Status
    reason: str
    """One line for people: 'exit code 1', 'ErrImagePull: ...', 'maxPollDuration of 300s exceeded'."""
    exit_code: int | None
    logs: tuple[ContainerLog, ...]
    started_at: datetime
    finished_at: datetime
    events: tuple[str, ...] = ()
    """Messages of the Job's ``Failed*`` Kubernetes events, as ``Reason: message``."""
    output: Mapping[str, Any] | None = None
    """The JSON object the task wrote to ``$KEPTN_OUTPUT_FILE`` (None: no output); merged into the
    ``.finished`` data (:func:`jes.reporter.events.merge_outputs`)."""
    attempts: tuple[int | None, ...] = ()
    """The exit code of each attempt, in order (None: the attempt ended without one), for a task
    with ``retries``; empty for a task without (it has one attempt)."""

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCEEDED

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


#: The variable naming the file a task may write its output (a JSON object) to; jes sets it.
OUTPUT_FILE_ENV = "KEPTN_OUTPUT_FILE"


#: The variables a task gets when it may use the API proxy (:class:`ApiProxyAccess`). They are
#: jes's to set: a config's own ``env`` may not name them.
API_PROXY_URL_ENV = "KEPTN_API_PROXY_URL"
API_PROXY_TOKEN_ENV = "KEPTN_API_PROXY_TOKEN"
API_PROXY_ENV_NAMES = (API_PROXY_URL_ENV, API_PROXY_TOKEN_ENV)

_TOKEN_SECRET_SUFFIX = "-api-proxy"
_TOKEN_SECRET_NAME = re.compile(r"^jes-[a-z0-9-]*-[0-9a-f]{16}-[0-9]{3,}-[0-9]{3,}" + _TOKEN_SECRET_SUFFIX + "$")


@dataclass(frozen=True)
class ApiProxyAccess:
    """A task's way to the Keptn API: the proxy's URL and a token scoped to this task (its own
    event, until it ends) — never the Keptn API token. The token is a credential: it is left out of
    ``repr`` and reaches a Kubernetes task only through a Secret (:func:`api_proxy_secret_name`)."""

    url: str
    token: str = field(repr=False)


def api_proxy_secret_name(job: str) -> str:
    """The Secret that holds the proxy token of the task run by Job ``job`` (key ``token``)."""
    return job + _TOKEN_SECRET_SUFFIX


def is_api_proxy_secret_name(name: str) -> bool:
    """Whether ``name`` is the name of some task's proxy-token Secret (no config may use one)."""
    return _TOKEN_SECRET_NAME.match(name) is not None


@dataclass(frozen=True)
class TaskSpec:
    """Everything a runner needs for one task of one event."""

    task: RenderedTask
    event: EventInfo
    job_name: str
    config_hash: str = ""
    """The hash of the config the task came from (a Job label: which config made this Job)."""
    files: TaskFiles = field(default_factory=TaskFiles)
    """The task's files; the runner discards the spool once the task exists."""
    api_proxy: ApiProxyAccess | None = None
    """When set, the task gets ``KEPTN_API_PROXY_URL`` and ``KEPTN_API_PROXY_TOKEN`` (the kubernetes
    runner puts the token into a Secret owned by the Job, never into the Job itself)."""
