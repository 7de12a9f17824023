"""Every setting of jes, read from the environment once and validated together.

Names are upstream's where upstream had one. Each field lists its environment variable, default
and meaning in :data:`SETTINGS_DOC`, which also feeds ``jes serve --help``. :func:`load` reports
*every* bad value at once, one line per variable. The generic parsers (numbers, durations, lists,
sizes, labels) are in :mod:`jes.util.parsing`; what is particular to jes's settings is here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jes import errors
from jes.util import parsing

#: Upstream chart default for the task container's security context (jobConfig.jobSecurityContext).
DEFAULT_JOB_SECURITY_CONTEXT: dict[str, Any] = {
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 2000,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

#: Upstream chart default for the job pod's security context (jobConfig.podSecurityContext).
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsUser": 1000,
    "runAsGroup": 2000,
    "runAsNonRoot": True,
    "fsGroup": 2000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "jes")


@dataclass(frozen=True)
class Settings:
    """The validated settings. Construct with :func:`load` (environment) or directly in tests."""

    # control plane
    keptn_api_endpoint: str = ""
    keptn_api_token: str = field(default="", repr=False)
    keptn_api_token_file: str = ""
    http_ssl_verify: bool = True
    http_ssl_ca_bundle: str = ""
    http_timeout_s: float = 30.0
    http_max_connections: int = 8
    oauth_client_id: str = ""
    oauth_client_secret: str = field(default="", repr=False)
    oauth_client_secret_file: str = ""
    oauth_scopes: tuple[str, ...] = ()
    oauth_discovery: str = ""
    oauth_token_url: str = ""
    resource_service_path: str = "resource-service"
    # subscriptions and polling
    pubsub_topics: tuple[str, ...] = ()
    http_polling_interval_s: float = 1.0
    project_filter: tuple[str, ...] = ()
    stage_filter: tuple[str, ...] = ()
    service_filter: tuple[str, ...] = ()
    location: str | None = None
    # NATS: the in-cluster mode, chosen when keptn_api_endpoint is empty
    pubsub_url: str = "nats://keptn-nats"
    pubsub_group: str = ""
    nats_reconcile_s: float = 30.0
    # the distributor's API proxy and event forwarding; tasks' scoped access to it
    api_proxy_port: int | None = None
    api_proxy_path: str = "/"
    api_proxy_http_timeout_s: float = 30.0
    api_proxy_max_payload_bytes_kb: int = 64
    event_forwarding_path: str = "/event"
    api_proxy_host: str = "127.0.0.1"
    api_proxy_task_port: int | None = None
    api_proxy_task_url: str = ""
    # jes distributor: where received events are forwarded
    pubsub_recipient: str = "http://127.0.0.1"
    pubsub_recipient_port: str = "8080"
    pubsub_recipient_path: str = ""
    # registration
    integration_name: str = "job-executor-service"
    event_source: str = "job-executor-service"
    disable_registration: bool = False
    registration_interval_s: float = 10.0
    heartbeat_interval_s: float = 10.0
    max_registration_retries: int = 10
    max_heartbeat_retries: int = 10
    k8s_deployment_name: str = "job-executor-service"
    k8s_deployment_version: str = ""
    k8s_namespace: str = "default"
    k8s_pod_name: str = field(default_factory=socket.gethostname)
    k8s_node_name: str = field(default_factory=socket.gethostname)
    # jobs
    job_namespace: str = "default"
    allowed_image_list: tuple[str, ...] = ()
    allow_privileged_jobs: bool = False
    task_deadline_seconds: int = 0
    default_resource_limits_cpu: str = "1"
    default_resource_limits_memory: str = "512Mi"
    default_resource_requests_cpu: str = "50m"
    default_resource_requests_memory: str = "128Mi"
    default_job_service_account: str = ""
    full_deployment_name: str = "job-executor-service"
    job_security_context: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_JOB_SECURITY_CONTEXT))
    pod_security_context: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_POD_SECURITY_CONTEXT))
    job_labels: Mapping[str, str] = field(default_factory=dict)
    files_size_limit: str = "20Mi"
    max_config_bytes: int = 1024 * 1024
    protected_secrets: tuple[str, ...] = ()
    protected_service_accounts: tuple[str, ...] = ()
    allowed_volume_claims: tuple[str, ...] = ()
    init_image: str = "ghcr.io/jes-project/jes:0.1.0"
    task_outputs: bool = True
    max_output_bytes: int = 64 * 1024
    # runner and service
    runner: str = "kubernetes"
    max_event_bytes: int = 65536
    max_concurrent_events: int = 64
    pending_grace_s: float = 120.0
    transient_grace_s: float = 120.0
    shutdown_grace_s: float = 30.0
    lease_duration_s: float = 15.0
    lease_renew_s: float = 5.0
    datastore_settle_s: float = 10.0
    cancel_check_s: float = 5.0
    done_retention_s: float = 86400.0
    state_dir: str = field(default_factory=default_state_dir)
    local_secrets_dir: str | None = None
    health_endpoint_port: int = 8080
    health_endpoint_enabled: bool = True
    log_format: str = "json"

    @property
    def in_cluster(self) -> bool:
        """NATS mode, as the distributor chooses it: no endpoint means jes runs beside Keptn."""
        return not self.keptn_api_endpoint

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used for CLI flags)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def uses_oauth(self) -> bool:
        return bool(
            self.oauth_client_id
            and self.oauth_client_secret
            and self.oauth_scopes
            and (self.oauth_discovery or self.oauth_token_url)
        )

    @property
    def executor_id(self) -> str:
        """Identity shared by all replicas of one installation (namespace + location)."""
        return f"{self.k8s_namespace}/{self.location or '-'}"


# ---------------------------------------------------------------------------------------------
# Parsing what is particular to jes's settings; the generic parsers are in jes.util.parsing.


def image_list(raw: str) -> tuple[str, ...]:
    # Upstream splits on "," and drops empty items without trimming; we trim surrounding spaces
    # because a space can never be part of an image reference.
    return parsing.comma_list(raw)


#: A task's output: at least what Keptn users were promised (16 KiB), at most what one event may
#: reasonably carry (outputs are kept whole within JES_MAX_EVENT_BYTES).
MIN_OUTPUT_BYTES = 16 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024


def _output_bytes(raw: str) -> int:
    size = parsing.byte_size(raw)
    if not MIN_OUTPUT_BYTES <= size <= MAX_OUTPUT_BYTES:
        raise ValueError(f"expected a size between 16Ki and 1Mi, got {raw!r}")
    return size


def _wildcard_topics(topics: tuple[str, ...]) -> list[str]:
    return [topic for topic in topics if "*" in topic or ">" in topic]


def _optional_port(raw: str) -> int | None:
    return parsing.port(raw) if raw.strip() else None


def _url_path(raw: str) -> str:
    path = raw.strip() or "/"
    if not path.startswith("/"):
        raise ValueError(f"{raw!r}: must start with /, e.g. /event")
    return path


def _security_context(raw: str) -> dict[str, Any]:
    context = _normalise_keys(parsing.json_object(raw))
    _check_enumerations(context)
    return context


#: What the API server accepts (core/v1 types; validation.go refuses the rest with these values).
_PROFILE_TYPES = ("Localhost", "RuntimeDefault", "Unconfined")
_ENUMERATIONS = {"procMount": ("Default", "Unmasked"), "fsGroupChangePolicy": ("Always", "OnRootMismatch")}


def _check_enumerations(context: Mapping[str, Any]) -> None:
    """Refuse values Kubernetes would refuse in every Job: better at start than per task."""
    for field_name, allowed in _ENUMERATIONS.items():
        if field_name in context and context[field_name] not in allowed:
            raise ValueError(_unsupported(field_name, context[field_name], allowed))
    for field_name in ("seccompProfile", "appArmorProfile"):
        profile = context.get(field_name)
        if profile is None:
            continue
        if not isinstance(profile, dict) or profile.get("type") not in _PROFILE_TYPES:
            shown = profile.get("type") if isinstance(profile, dict) else profile
            raise ValueError(_unsupported(f"{field_name}.type", shown, _PROFILE_TYPES))
        if (profile["type"] == "Localhost") != bool(profile.get("localhostProfile")):
            raise ValueError(f"{field_name}.localhostProfile: set it exactly when the type is Localhost")


def _unsupported(field_name: str, value: Any, allowed: tuple[str, ...]) -> str:
    shown = ", ".join(f'"{v}"' for v in allowed)
    return f'{field_name}: Unsupported value: "{value}": supported values: {shown}'


def _normalise_keys(context: dict[str, Any]) -> dict[str, Any]:
    """Upstream matched JSON keys case-insensitively (Go): ``RunAsUser`` means ``runAsUser``."""
    known = {k.lower(): k for k in _SECURITY_CONTEXT_KEYS}
    result: dict[str, Any] = {}
    for key, value in context.items():
        canonical = known.get(key.lower())
        if canonical is None:
            raise ValueError(f"unknown security context field {key!r}")
        result[canonical] = value
    return result


_SECURITY_CONTEXT_KEYS = (
    "allowPrivilegeEscalation", "capabilities", "privileged", "procMount", "readOnlyRootFilesystem",
    "runAsGroup", "runAsNonRoot", "runAsUser", "seccompProfile", "seLinuxOptions", "windowsOptions",
    "appArmorProfile", "fsGroup", "fsGroupChangePolicy", "supplementalGroups", "sysctls",
    "supplementalGroupsPolicy", "seLinuxChangePolicy",
)  # fmt: skip


@dataclass(frozen=True)
class _Var:
    env: str
    attr: str
    parse: Callable[[str], Any]
    doc: str


_VARS: tuple[_Var, ...] = (
    _Var("KEPTN_API_ENDPOINT", "keptn_api_endpoint", parsing.http_url, "Keptn API base URL, e.g. http://1.2.3.4/api (required for serve)"),
    _Var("KEPTN_API_TOKEN", "keptn_api_token", parsing.text, "Keptn API token, sent as x-token (never logged)"),
    _Var("KEPTN_API_TOKEN_FILE", "keptn_api_token_file", parsing.text, "read the token from this file (re-read when it changes); wins over KEPTN_API_TOKEN"),
    _Var("HTTP_SSL_VERIFY", "http_ssl_verify", parsing.boolean, "verify the control plane's TLS certificate [true]"),
    _Var("HTTP_SSL_CA_BUNDLE", "http_ssl_ca_bundle", parsing.text, "CA bundle file for TLS verification"),
    _Var("JES_HTTP_TIMEOUT_S", "http_timeout_s", parsing.positive_seconds, "timeout of one control-plane request [30]"),
    _Var("JES_HTTP_MAX_CONNECTIONS", "http_max_connections", parsing.positive_int, "control-plane requests at once; more for a distant control plane and many events, fewer cost less CPU [8]"),
    _Var("OAUTH_CLIENT_ID", "oauth_client_id", parsing.text, "OAuth client id"),
    _Var("OAUTH_CLIENT_SECRET", "oauth_client_secret", parsing.text, "OAuth client secret (never logged)"),
    _Var("OAUTH_CLIENT_SECRET_FILE", "oauth_client_secret_file", parsing.text, "read the OAuth client secret from this file; wins over OAUTH_CLIENT_SECRET"),
    _Var("OAUTH_SCOPES", "oauth_scopes", parsing.comma_or_space_list, "OAuth scopes, comma or space separated"),
    _Var("OAUTH_DISCOVERY", "oauth_discovery", parsing.text, "OIDC discovery URL (.well-known/openid-configuration)"),
    _Var("OAUTH_TOKEN_URL", "oauth_token_url", parsing.text, "OAuth token URL (wins over discovery)"),
    _Var("JES_RESOURCE_SERVICE_PATH", "resource_service_path", parsing.text, "resource API path under the endpoint [resource-service]; configuration-service for Keptn 0.16/0.17"),
    _Var("PUBSUB_TOPIC", "pubsub_topics", parsing.comma_list, "comma list of event types to subscribe to (NATS mode: subject wildcards allowed)"),
    _Var("PUBSUB_URL", "pubsub_url", parsing.text, "NATS mode (KEPTN_API_ENDPOINT empty): the NATS server(s), comma list [nats://keptn-nats]"),
    _Var("PUBSUB_GROUP", "pubsub_group", parsing.text, "NATS mode: queue group shared by the replicas (each event to one member); empty = every replica gets every event"),
    _Var("JES_NATS_RECONCILE_S", "nats_reconcile_s", parsing.positive_seconds, "NATS mode: seconds between polls of the triggered-event API that pick up events NATS did not deliver [30]"),
    _Var("API_PROXY_PORT", "api_proxy_port", _optional_port, "port of the API proxy and event forwarding (jes serve: off unless set; jes distributor: 8081)"),
    _Var("API_PROXY_PATH", "api_proxy_path", _url_path, "path under which the proxy is served [/]"),
    _Var("API_PROXY_HTTP_TIMEOUT", "api_proxy_http_timeout_s", parsing.non_negative_seconds, "timeout of one proxied request in seconds; 0 = none [30]"),
    _Var("API_PROXY_MAX_PAYLOAD_BYTES_KB", "api_proxy_max_payload_bytes_kb", parsing.non_negative_int, "largest request body in KiB; larger ones get 413; 0 = no limit [64]"),
    _Var("EVENT_FORWARDING_PATH", "event_forwarding_path", _url_path, "path that accepts CloudEvents to send on [/event]"),
    _Var("JES_API_PROXY_HOST", "api_proxy_host", parsing.text, "address the API proxy listens on [127.0.0.1: only the containers of the pod]"),
    _Var("JES_API_PROXY_TASK_PORT", "api_proxy_task_port", _optional_port, "port where tasks reach the proxy with their scoped token (off unless set; the chart's apiProxy.forTasks)"),
    _Var("JES_API_PROXY_TASK_URL", "api_proxy_task_url", parsing.text, "URL tasks are given as KEPTN_API_PROXY_URL [http://127.0.0.1:<JES_API_PROXY_TASK_PORT>]"),
    _Var("PUBSUB_RECIPIENT", "pubsub_recipient", parsing.text, "jes distributor: host of the service events are forwarded to [http://127.0.0.1]"),
    _Var("PUBSUB_RECIPIENT_PORT", "pubsub_recipient_port", parsing.text, "jes distributor: its port [8080]"),
    _Var("PUBSUB_RECIPIENT_PATH", "pubsub_recipient_path", parsing.text, "jes distributor: its path [/]"),
    _Var("HTTP_POLLING_INTERVAL", "http_polling_interval_s", parsing.positive_seconds, "seconds between polls, may be fractional [1]"),
    _Var("PROJECT_FILTER", "project_filter", parsing.comma_list, "only events of these projects (comma list)"),
    _Var("STAGE_FILTER", "stage_filter", parsing.comma_list, "only events of these stages (comma list)"),
    _Var("SERVICE_FILTER", "service_filter", parsing.comma_list, "only events of these services (comma list)"),
    _Var("LOCATION", "location", parsing.optional_text, "this executor's location for actions[].locations (case-sensitive)"),
    _Var("JES_INTEGRATION_NAME", "integration_name", parsing.text, "name registered with the control plane [job-executor-service]"),
    _Var("JES_EVENT_SOURCE", "event_source", parsing.text, "source of the events jes sends [job-executor-service]"),
    _Var("DISABLE_REGISTRATION", "disable_registration", parsing.boolean, "do not register with the control plane [false]"),
    _Var("REGISTRATION_INTERVAL", "registration_interval_s", parsing.positive_seconds, "seconds between registration attempts [10]"),
    _Var("HEARTBEAT_INTERVAL", "heartbeat_interval_s", parsing.positive_seconds, "seconds between heartbeats [10]"),
    _Var("MAX_REGISTRATION_RETRIES", "max_registration_retries", parsing.non_negative_int, "quick registration retries before the slow pace [10]"),
    _Var("MAX_HEARTBEAT_RETRIES", "max_heartbeat_retries", parsing.non_negative_int, "quick heartbeat retries before the slow pace [10]"),
    _Var("K8S_DEPLOYMENT_NAME", "k8s_deployment_name", parsing.text, "registration metadata: deployment name"),
    _Var("K8S_DEPLOYMENT_VERSION", "k8s_deployment_version", parsing.text, "registration metadata: version"),
    _Var("K8S_NAMESPACE", "k8s_namespace", parsing.text, "registration metadata: namespace of jes [default]"),
    _Var("K8S_POD_NAME", "k8s_pod_name", parsing.text, "registration metadata: pod name [hostname]"),
    _Var("K8S_NODE_NAME", "k8s_node_name", parsing.text, "registration metadata: node name [hostname]"),
    _Var("JOB_NAMESPACE", "job_namespace", parsing.text, "namespace of Jobs unless a task sets one [default]"),
    _Var("ALLOWED_IMAGE_LIST", "allowed_image_list", image_list, "comma list of image globs; empty or * allows all"),
    _Var("ALLOW_PRIVILEGED_JOBS", "allow_privileged_jobs", parsing.boolean, "allow privileged task containers [false]"),
    _Var("TASK_DEADLINE_SECONDS", "task_deadline_seconds", parsing.non_negative_int, "activeDeadlineSeconds of every Job; 0 = none [0]"),
    _Var("DEFAULT_RESOURCE_LIMITS_CPU", "default_resource_limits_cpu", parsing.optional_quantity, "default CPU limit [1]"),
    _Var("DEFAULT_RESOURCE_LIMITS_MEMORY", "default_resource_limits_memory", parsing.optional_quantity, "default memory limit [512Mi]"),
    _Var("DEFAULT_RESOURCE_REQUESTS_CPU", "default_resource_requests_cpu", parsing.optional_quantity, "default CPU request [50m]"),
    _Var("DEFAULT_RESOURCE_REQUESTS_MEMORY", "default_resource_requests_memory", parsing.optional_quantity, "default memory request [128Mi]"),
    _Var("DEFAULT_JOB_SERVICE_ACCOUNT", "default_job_service_account", parsing.text, "service account of job pods unless a task sets one"),
    _Var("FULL_DEPLOYMENT_NAME", "full_deployment_name", parsing.text, "app.kubernetes.io/managed-by of Jobs [job-executor-service]"),
    _Var("JES_JOB_SECURITY_CONTEXT", "job_security_context", _security_context, "JSON: task container securityContext (tasks merge over it)"),
    _Var("JES_POD_SECURITY_CONTEXT", "pod_security_context", _security_context, "JSON: job pod securityContext"),
    _Var("JES_JOB_LABELS", "job_labels", parsing.labels, "JSON map of extra Job labels"),
    _Var("JES_FILES_SIZE_LIMIT", "files_size_limit", parsing.quantity, "size of the /keptn volume [20Mi]"),
    _Var("JES_MAX_CONFIG_BYTES", "max_config_bytes", parsing.byte_size, "largest job/config.yaml; aliases and nesting are bounded too [1Mi]"),
    _Var("JES_PROTECTED_SECRETS", "protected_secrets", parsing.comma_list, "Secrets with jes's own credentials: no task may use them (the chart sets it)"),
    _Var("JES_PROTECTED_SERVICE_ACCOUNTS", "protected_service_accounts", parsing.comma_list, "jes's own service account(s): no task may run as them (the chart sets it)"),
    _Var("JES_ALLOWED_VOLUME_CLAIMS", "allowed_volume_claims", parsing.comma_list, "comma list of globs of the PersistentVolumeClaims tasks may mount (tasks[].volumes); empty = none (the chart's jobConfig.allowedVolumeClaims)"),
    _Var("JES_INIT_IMAGE", "init_image", parsing.text, "the jes image: of the init container that copies files to /keptn and of the jes-output sidecar"),
    _Var("JES_TASK_OUTPUTS", "task_outputs", parsing.boolean, "tasks get $KEPTN_OUTPUT_FILE, merged into .finished data; kubernetes: a jes-output sidecar (Kubernetes 1.29+) [true]"),
    _Var("JES_MAX_OUTPUT_BYTES", "max_output_bytes", _output_bytes, "largest output file of one task; more fails the task [64Ki]"),
    _Var("JES_RUNNER", "runner", parsing.choice("kubernetes", "local"), "kubernetes or local [kubernetes]"),
    _Var("JES_MAX_EVENT_BYTES", "max_event_bytes", parsing.positive_int, "budget of one outgoing event in bytes [65536]"),
    _Var("JES_MAX_CONCURRENT_EVENTS", "max_concurrent_events", parsing.positive_int, "events whose tasks run at once; more wait (their .started is not delayed; an event gives its slot up when its tasks ended) [64]"),
    _Var("JES_PENDING_GRACE_S", "pending_grace_s", parsing.non_negative_seconds, "how long a pod may stay unschedulable [120]"),
    _Var("JES_TRANSIENT_GRACE_S", "transient_grace_s", parsing.non_negative_seconds, "how long a pod may show a reason that can heal (secret cache sync, registry 429/5xx, its proxy-token Secret not created yet) [120]"),
    _Var("JES_SHUTDOWN_GRACE_S", "shutdown_grace_s", parsing.non_negative_seconds, "on SIGTERM, time for in-flight tasks [30]"),
    _Var("JES_LEASE_DURATION_S", "lease_duration_s", parsing.positive_seconds, "a replica seen making no progress this long (on the reader's monotonic clock) is taken over [15]"),
    _Var("JES_LEASE_RENEW_S", "lease_renew_s", parsing.positive_seconds, "how often a replica renews its heartbeat Lease [5]"),
    _Var("JES_DATASTORE_SETTLE_S", "datastore_settle_s", parsing.non_negative_seconds, "how long the datastore may lag behind an accepted event; 'not arrived' only after it [10]"),
    _Var("JES_CANCEL_CHECK_S", "cancel_check_s", parsing.non_negative_seconds, "seconds between checks whether the triggered events of running tasks are still open; an aborted sequence's work is stopped; 0 = no checks [5]"),
    _Var("JES_DONE_RETENTION_S", "done_retention_s", parsing.non_negative_seconds, "a done claim is kept this long after the control plane stops listing its event [86400]"),
    _Var("JES_STATE_DIR", "state_dir", parsing.text, "local runner: state that survives a restart [~/.local/state/jes]"),
    _Var("JES_LOCAL_SECRETS_DIR", "local_secrets_dir", parsing.optional_text, "local runner: DIR/<secret>/<key> files stand in for Secrets"),
    _Var("HEALTH_ENDPOINT_PORT", "health_endpoint_port", parsing.port, "port of /health, /ready, /metrics [8080]"),
    _Var("HEALTH_ENDPOINT_ENABLED", "health_endpoint_enabled", parsing.boolean, "serve /health, /ready, /metrics [true]"),
    _Var("JES_LOG_FORMAT", "log_format", parsing.choice("json", "console"), "json or console [json]"),
)  # fmt: skip

#: (variable, meaning) pairs for help texts.
SETTINGS_DOC: tuple[tuple[str, str], ...] = tuple((v.env, v.doc) for v in _VARS)
ENV_NAMES: dict[str, str] = {v.attr: v.env for v in _VARS}


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``environ`` (default: the process environment), then apply overrides.

    Raises :class:`errors.SettingsError` listing every invalid variable.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for var in _VARS:
        if var.env not in env:
            continue
        try:
            values[var.attr] = var.parse(env[var.env])
        except ValueError as exc:
            problems.append(f"{var.env}: {exc}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    problems.extend(_cross_checks(values))
    if values.get("keptn_api_token_file") and not problems:
        values["keptn_api_token"] = token_from_file(values["keptn_api_token_file"], problems)
    if values.get("oauth_client_secret_file") and not problems:
        values["oauth_client_secret"] = token_from_file(values["oauth_client_secret_file"], problems, "OAUTH_CLIENT_SECRET_FILE")
    if problems:
        raise errors.SettingsError(problems)
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})


def token_from_file(path: str, problems: list[str], variable: str = "KEPTN_API_TOKEN_FILE") -> str:
    """A credential in a file (the chart mounts the Secret), without surrounding whitespace; read
    at start so that a missing file stops jes at once and the value is known to log redaction."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(f"{variable}: cannot read {path}: {reason}")
        return ""


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    problems = []
    wildcards = _wildcard_topics(values.get("pubsub_topics", ()))
    if wildcards and values.get("keptn_api_endpoint"):
        problems.append(
            f"PUBSUB_TOPIC: {', '.join(wildcards)}: wildcards cannot be polled over HTTP; list exact event "
            "types, e.g. sh.keptn.event.test.triggered (wildcards work in NATS mode, without KEPTN_API_ENDPOINT)"
        )
    renew = values.get("lease_renew_s", Settings.lease_renew_s)
    duration = values.get("lease_duration_s", Settings.lease_duration_s)
    if renew * 2 > duration:
        problems.append(
            f"JES_LEASE_RENEW_S: {renew:g}s is more than half of JES_LEASE_DURATION_S ({duration:g}s); a replica "
            "would look dead between two renewals. Renew at most every duration/2 (the default is 5 of 15)"
        )
    job_context = values.get("job_security_context", DEFAULT_JOB_SECURITY_CONTEXT)
    allow = values.get("allow_privileged_jobs", False)
    account = values.get("default_job_service_account", "")
    if account and account in values.get("protected_service_accounts", ()):
        problems.append(
            f"DEFAULT_JOB_SERVICE_ACCOUNT: {account!r} is jes's own service account; tasks must not run with "
            "jes's permissions. Name a service account made for tasks, or leave it empty"
        )
    if job_context.get("privileged") is True and not allow:
        problems.append(
            "JES_JOB_SECURITY_CONTEXT: the default job security context is privileged but "
            "ALLOW_PRIVILEGED_JOBS is false; set one of them differently"
        )
    return problems


def require_serve(settings: Settings) -> None:
    """The checks that only ``jes serve`` needs. Without ``KEPTN_API_ENDPOINT`` jes runs in NATS
    mode (beside Keptn, as the distributor does)."""
    problems = []
    if not settings.pubsub_topics and settings.disable_registration:
        problems.append(
            "PUBSUB_TOPIC: with DISABLE_REGISTRATION=true jes can only poll the topics listed here; "
            "set e.g. PUBSUB_TOPIC=sh.keptn.event.sayhello.triggered"
        )
    if problems:
        raise errors.SettingsError(problems)
