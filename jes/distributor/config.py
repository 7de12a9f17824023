"""The Keptn distributor's environment variables, with its defaults and its parsing.

Every variable the distributor 1.4.5 reads is in :data:`VARIABLES`, with the distributor's default.
Typed values are parsed as Go parses them: booleans by ``strconv.ParseBool``, durations by
``time.ParseDuration`` (``10s``; a bare ``10`` is an error), integers as decimals. Two values the
distributor reads as text and converts later keep its silent fall-back — ``HTTP_POLLING_INTERVAL``
(10) and ``API_PROXY_HTTP_TIMEOUT`` (30) — but jes says so in a warning. Everything else that is wrong
is one :class:`errors.SettingsError` line per variable (``jes distributor`` exits 1, as the
distributor does). Where jes checks more than the distributor (a recipient URL that could never
work, retries of 0) docs/distributor.md says so.

A variable set to the empty string counts as unset (its default), except ``PUBSUB_RECIPIENT``,
which must name a host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from jes import errors
from jes.settings import Settings
from jes.util import parsing

NATS_LOCATION = "control-plane"
REMOTE_LOCATION = "remote-execution-plane"
DEFAULT_NODE_NAME = "keptn-node"
#: Keptn's own services never register as integrations (the distributor's rule).
KEPTN_SERVICES = frozenset(
    ("statistics-service", "api-service", "mongodb-datastore", "resource-service", "secret-service",
     "shipyard-controller")
)  # fmt: skip
#: Between registration attempts (fixed in the distributor; REGISTRATION_INTERVAL is not used).
REGISTRATION_PAUSE_S = 5.0
#: ``HTTP_POLLING_INTERVAL=0`` polls back to back; jes still pauses this long between rounds.
SHORTEST_POLL_S = 0.1


class FallBack(Exception):
    """A value the distributor would silently replace by its default: jes does too, and warns."""


@dataclass(frozen=True)
class DistributorConfig:
    """The parsed variables. Build with :func:`load`; ``warnings`` lists the fall-backs taken."""

    keptn_api_endpoint: str = ""
    keptn_api_token: str = field(default="", repr=False)
    api_proxy_port: int = 8081
    api_proxy_path: str = "/"
    api_proxy_http_timeout_s: int = 30
    api_proxy_max_payload_bytes_kb: int = 64
    http_polling_interval_s: int = 10
    event_forwarding_path: str = "/event"
    http_ssl_verify: bool = True
    pubsub_url: str = "nats://keptn-nats"
    pubsub_topics: tuple[str, ...] = ()
    pubsub_recipient: str = "http://127.0.0.1"
    pubsub_recipient_port: int = 8080
    pubsub_recipient_path: str = ""
    pubsub_group: str = ""
    project_filter: tuple[str, ...] = ()
    stage_filter: tuple[str, ...] = ()
    service_filter: tuple[str, ...] = ()
    disable_registration: bool = False
    registration_interval: str = "10s"
    location: str = ""
    distributor_version: str = "0.9.0"
    version: str = ""
    k8s_deployment_name: str = ""
    k8s_pod_name: str = ""
    k8s_namespace: str = ""
    k8s_node_name: str = ""
    max_heartbeat_retries: int = 10
    heartbeat_interval_s: float = 10.0
    max_registration_retries: int = 10
    oauth_client_id: str = ""
    oauth_client_secret: str = field(default="", repr=False)
    oauth_scopes: tuple[str, ...] = ()
    oauth_discovery: str = ""
    oauth_token_url: str = ""
    # jes's own
    log_format: str = "console"
    max_concurrent_forwards: int = 16
    recipient_retry_s: float = 300.0
    warnings: tuple[str, ...] = ()

    @property
    def nats_mode(self) -> bool:
        """No endpoint: beside Keptn, events from NATS (the distributor's only switch)."""
        return not self.keptn_api_endpoint

    @property
    def effective_location(self) -> str:
        return self.location or (NATS_LOCATION if self.nats_mode else REMOTE_LOCATION)

    @property
    def node_name(self) -> str:
        return self.k8s_node_name or DEFAULT_NODE_NAME

    @property
    def recipient_url(self) -> str:
        """``{PUBSUB_RECIPIENT}:{PUBSUB_RECIPIENT_PORT}{PUBSUB_RECIPIENT_PATH}``."""
        return f"{self.pubsub_recipient}:{self.pubsub_recipient_port}{self.pubsub_recipient_path}"

    @property
    def registration_blocked(self) -> str | None:
        """Why there is no registration (and so no heartbeat and no error log); None: register."""
        if self.disable_registration:
            return "DISABLE_REGISTRATION is true"
        missing = [n for n, v in (("K8S_NAMESPACE", self.k8s_namespace), ("K8S_DEPLOYMENT_NAME", self.k8s_deployment_name))
                   if not v]  # fmt: skip
        if missing:
            return f"{' and '.join(missing)} not set"
        if self.k8s_deployment_name in KEPTN_SERVICES:
            return f"K8S_DEPLOYMENT_NAME {self.k8s_deployment_name!r} is one of Keptn's own services"
        return None

    @property
    def uses_oauth(self) -> bool:
        return bool(self.oauth_client_id and self.oauth_client_secret and self.oauth_scopes
                    and (self.oauth_token_url or self.oauth_discovery))  # fmt: skip

    def settings(self) -> Settings:
        """jes's settings for the parts it shares with ``jes serve`` (client, poller, NATS, proxy).

        Filters are left out on purpose: the distributor applies a control-plane subscription's
        filter alone, and ``*_FILTER`` only where no subscription is used (the caller builds those
        topics). The poller never registers by itself: :mod:`jes.distributor.uniform` does."""
        return Settings(
            keptn_api_endpoint=self.keptn_api_endpoint,
            keptn_api_token=self.keptn_api_token,
            http_ssl_verify=self.http_ssl_verify,
            http_timeout_s=float(self.api_proxy_http_timeout_s),
            oauth_client_id=self.oauth_client_id,
            oauth_client_secret=self.oauth_client_secret,
            oauth_scopes=self.oauth_scopes,
            oauth_discovery=self.oauth_discovery,
            oauth_token_url=self.oauth_token_url,
            http_polling_interval_s=float(self.http_polling_interval_s) or SHORTEST_POLL_S,
            location=self.effective_location,
            pubsub_url=self.pubsub_url,
            pubsub_group=self.pubsub_group,
            api_proxy_port=self.api_proxy_port,
            api_proxy_path=self.api_proxy_path,
            api_proxy_http_timeout_s=float(self.api_proxy_http_timeout_s),
            api_proxy_max_payload_bytes_kb=max(0, self.api_proxy_max_payload_bytes_kb),
            event_forwarding_path=self.event_forwarding_path,
            api_proxy_host="127.0.0.1",
            pubsub_recipient=self.pubsub_recipient,
            pubsub_recipient_port=str(self.pubsub_recipient_port),
            pubsub_recipient_path=self.pubsub_recipient_path,
            integration_name=self.k8s_deployment_name or "distributor",
            disable_registration=True,
            heartbeat_interval_s=self.heartbeat_interval_s,
            max_registration_retries=self.max_registration_retries,
            max_heartbeat_retries=self.max_heartbeat_retries,
            k8s_deployment_name=self.k8s_deployment_name,
            k8s_deployment_version=self.version,
            k8s_namespace=self.k8s_namespace,
            k8s_pod_name=self.k8s_pod_name,
            k8s_node_name=self.node_name,
            max_concurrent_events=self.max_concurrent_forwards,
            log_format=self.log_format,
            health_endpoint_enabled=False,
        )


# ---------------------------------------------------------------------------------------------
# Parsers particular to the distributor


def _int_seconds_or(default: int) -> Callable[[str], int]:
    """Whole seconds read as the distributor reads them (``strconv.Atoi``); anything else is the
    default, with a warning (the distributor falls back silently)."""

    def parse(raw: str) -> int:
        if not re.fullmatch(r"\s*\d+\s*", raw):
            raise FallBack(f"{raw!r} is not a whole number of seconds; using {default}")
        return int(raw)

    return parse


def _at_least_one(raw: str) -> int:
    value = parsing.whole_number(raw)
    if value < 1:
        raise ValueError(f"must be at least 1, got {raw!r}")
    return value


def _positive_duration(raw: str) -> float:
    value = parsing.go_duration(raw)
    if value <= 0:
        raise ValueError(f"must be longer than 0, got {raw!r}")
    return value


def _listen_port(raw: str) -> int:
    value = parsing.whole_number(raw)
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a TCP port (0-65535; 0 = any free port), got {raw!r}")
    return value


def _recipient_port(raw: str) -> int:
    value = parsing.whole_number(raw) if re.fullmatch(r"\s*\d+\s*", raw) else -1
    if not 1 <= value <= 65535:
        raise ValueError(f"expected a TCP port (1-65535) such as 8080, got {raw!r}")
    return value


def _handler_path(raw: str) -> str:
    path = raw.strip()
    if not path.startswith("/"):
        raise ValueError(f"must start with /, e.g. /event, got {raw!r}")
    return path


def _recipient_host(raw: str) -> str:
    """``http://`` added when there is no scheme; a port or a path here could only make a broken
    URL (the distributor appends ``:{PUBSUB_RECIPIENT_PORT}``), so they are refused."""
    value = raw.strip()
    if not value:
        raise ValueError("must name the host to forward events to, e.g. http://127.0.0.1 (the default)")
    if not value.startswith(("http://", "https://")):
        value = "http://" + value
    host = value.split("://", 1)[1]
    bare = re.sub(r"^\[[0-9A-Fa-f:.]+\]", "", host)
    if not host or "/" in bare or "?" in bare or "#" in bare:
        raise ValueError(f"must be a host only, such as http://my-service; put the path in PUBSUB_RECIPIENT_PATH, got {raw!r}")
    if ":" in bare:
        raise ValueError(f"must not carry a port (the URL would be {value}:<PUBSUB_RECIPIENT_PORT>); set PUBSUB_RECIPIENT_PORT instead, got {raw!r}")
    return value


def _recipient_path(raw: str) -> str:
    path = raw.strip()
    return "" if not path else "/" + path.lstrip("/")


def _comma_list(raw: str) -> tuple[str, ...]:
    return parsing.comma_list(raw)


@dataclass(frozen=True)
class Variable:
    env: str
    attr: str
    parse: Callable[[str], Any]
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable("KEPTN_API_ENDPOINT", "keptn_api_endpoint", parsing.http_url, "empty: NATS mode beside Keptn; set (http(s)://host/api): HTTP polling mode"),
    Variable("KEPTN_API_TOKEN", "keptn_api_token", parsing.text, "x-token on every API call and proxied request"),
    Variable("API_PROXY_PORT", "api_proxy_port", _listen_port, "port of the proxy, /event and /health on localhost [8081]"),
    Variable("API_PROXY_PATH", "api_proxy_path", _handler_path, "path of the API proxy [/]"),
    Variable("API_PROXY_HTTP_TIMEOUT", "api_proxy_http_timeout_s", _int_seconds_or(30), "timeout of proxied requests and API calls, whole seconds; 0 = none [30]"),
    Variable("API_PROXY_MAX_PAYLOAD_BYTES_KB", "api_proxy_max_payload_bytes_kb", parsing.whole_number, "largest request body in KiB; 0 or less = no limit [64]"),
    Variable("HTTP_POLLING_INTERVAL", "http_polling_interval_s", _int_seconds_or(10), "HTTP mode: whole seconds between polls [10]"),
    Variable("EVENT_FORWARDING_PATH", "event_forwarding_path", _handler_path, "path that takes CloudEvents to send to Keptn [/event]"),
    Variable("HTTP_SSL_VERIFY", "http_ssl_verify", parsing.go_bool, "verify the control plane's TLS certificate [true]"),
    Variable("PUBSUB_URL", "pubsub_url", parsing.text, "NATS mode: the NATS server(s) [nats://keptn-nats]"),
    Variable("PUBSUB_TOPIC", "pubsub_topics", _comma_list, "event types to register (and, NATS mode, to subscribe to at start)"),
    Variable("PUBSUB_RECIPIENT", "pubsub_recipient", _recipient_host, "host events are forwarded to [http://127.0.0.1]"),
    Variable("PUBSUB_RECIPIENT_PORT", "pubsub_recipient_port", _recipient_port, "its port [8080]"),
    Variable("PUBSUB_RECIPIENT_PATH", "pubsub_recipient_path", _recipient_path, "its path [none]"),
    Variable("PUBSUB_GROUP", "pubsub_group", parsing.text, "NATS queue group; empty = every replica gets every event"),
    Variable("PROJECT_FILTER", "project_filter", _comma_list, "projects of the registered subscriptions (and of events without one)"),
    Variable("STAGE_FILTER", "stage_filter", _comma_list, "stages, likewise"),
    Variable("SERVICE_FILTER", "service_filter", _comma_list, "services, likewise"),
    Variable("DISABLE_REGISTRATION", "disable_registration", parsing.go_bool, "no registration, heartbeat or error log [false]"),
    Variable("REGISTRATION_INTERVAL", "registration_interval", parsing.text, "read but not used, as in the distributor [10s]"),
    Variable("LOCATION", "location", parsing.text, "metadata.location [control-plane / remote-execution-plane]"),
    Variable("DISTRIBUTOR_VERSION", "distributor_version", parsing.text, "metadata.distributorversion [0.9.0]"),
    Variable("VERSION", "version", parsing.text, "metadata.integrationversion"),
    Variable("K8S_DEPLOYMENT_NAME", "k8s_deployment_name", parsing.text, "the integration's name; needed to register"),
    Variable("K8S_POD_NAME", "k8s_pod_name", parsing.text, "kubernetesmetadata.podname"),
    Variable("K8S_NAMESPACE", "k8s_namespace", parsing.text, "kubernetesmetadata.namespace; needed to register"),
    Variable("K8S_NODE_NAME", "k8s_node_name", parsing.text, "metadata.hostname [keptn-node]"),
    Variable("MAX_HEARTBEAT_RETRIES", "max_heartbeat_retries", _at_least_one, "failed heartbeats in a row that stop the distributor [10]"),
    Variable("HEARTBEAT_INTERVAL", "heartbeat_interval_s", _positive_duration, "Go duration between heartbeats [10s]"),
    Variable("MAX_REGISTRATION_RETRIES", "max_registration_retries", _at_least_one, "registration attempts before giving up (exit 1) [10]"),
    Variable("OAUTH_CLIENT_ID", "oauth_client_id", parsing.text, "OAuth client id"),
    Variable("OAUTH_CLIENT_SECRET", "oauth_client_secret", parsing.text, "OAuth client secret"),
    Variable("OAUTH_SCOPES", "oauth_scopes", _comma_list, "OAuth scopes, comma list"),
    Variable("OAUTH_DISCOVERY", "oauth_discovery", parsing.text, "OIDC discovery URL (when OAUTH_TOKEN_URL is empty)"),
    Variable("OAUTH_TOKEN_URL", "oauth_token_url", parsing.text, "OAuth token URL"),
    Variable("JES_LOG_FORMAT", "log_format", parsing.choice("console", "json"), "jes: console or json [console]"),
    Variable("JES_MAX_CONCURRENT_EVENTS", "max_concurrent_forwards", parsing.positive_int, "jes: events forwarded to the recipient at once [16]"),
    Variable("JES_RECIPIENT_RETRY_S", "recipient_retry_s", parsing.non_negative_seconds, "jes, NATS mode: how long an event the recipient refused is offered again; 0 = never [300]"),
)  # fmt: skip

#: The variables of the Keptn distributor (the rest are jes's own).
DISTRIBUTOR_VARIABLES = tuple(v.env for v in VARIABLES if not v.env.startswith("JES_"))
_MUST_NOT_BE_EMPTY = ("PUBSUB_RECIPIENT",)


def load(environ: Mapping[str, str] | None = None) -> DistributorConfig:
    """The configuration in ``environ`` (default: the process environment).

    :class:`errors.SettingsError` lists every bad value, one ``NAME: reason`` each."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    warnings: list[str] = []
    for var in VARIABLES:
        raw = env.get(var.env)
        if raw is None or (not raw.strip() and var.env not in _MUST_NOT_BE_EMPTY):
            continue
        try:
            values[var.attr] = var.parse(raw)
        except FallBack as fallback:
            warnings.append(f"{var.env}: {fallback}")
        except ValueError as exc:
            problems.append(f"{var.env}: {exc}")
    if "REGISTRATION_INTERVAL" in env and env["REGISTRATION_INTERVAL"].strip():
        warnings.append(f"REGISTRATION_INTERVAL is not used (as in the distributor): registration is retried every {REGISTRATION_PAUSE_S:g}s")
    problems.extend(_cross_checks(values))
    if problems:
        raise errors.SettingsError(problems)
    known = {f.name for f in fields(DistributorConfig)}
    return DistributorConfig(**{k: v for k, v in values.items() if k in known}, warnings=tuple(warnings))


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    problems = []
    if values.get("event_forwarding_path") == "/health":
        problems.append("EVENT_FORWARDING_PATH: /health is the health endpoint; choose another path such as /event")
    parts = {
        "OAUTH_CLIENT_ID": values.get("oauth_client_id"),
        "OAUTH_CLIENT_SECRET": values.get("oauth_client_secret"),
        "OAUTH_SCOPES": values.get("oauth_scopes"),
        "OAUTH_TOKEN_URL or OAUTH_DISCOVERY": values.get("oauth_token_url") or values.get("oauth_discovery"),
    }
    if any(parts.values()) and not all(parts.values()):
        missing = ", ".join(name for name, given in parts.items() if not given)
        problems.append(f"OAUTH_CLIENT_ID: OAuth needs {missing} as well (the distributor would quietly use no OAuth)")
    return problems
