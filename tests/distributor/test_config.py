"""Every variable of the Keptn distributor reaches the configuration, parsed as the distributor
parses it; bad values are one line each; jes's settings are derived from it."""

from __future__ import annotations

from typing import Any

import pytest

from jes import errors
from jes.distributor import config
from jes.distributor.uniform import registration
from jes.util import parsing

#: The variables the distributor 1.4.5 reads (its envconfig struct), nothing more, nothing less.
DISTRIBUTOR_1_4_5 = {
    "KEPTN_API_ENDPOINT", "KEPTN_API_TOKEN", "API_PROXY_PORT", "API_PROXY_PATH", "API_PROXY_HTTP_TIMEOUT",
    "API_PROXY_MAX_PAYLOAD_BYTES_KB", "HTTP_POLLING_INTERVAL", "EVENT_FORWARDING_PATH", "HTTP_SSL_VERIFY",
    "PUBSUB_URL", "PUBSUB_TOPIC", "PUBSUB_RECIPIENT", "PUBSUB_RECIPIENT_PORT", "PUBSUB_RECIPIENT_PATH",
    "PUBSUB_GROUP", "PROJECT_FILTER", "STAGE_FILTER", "SERVICE_FILTER", "DISABLE_REGISTRATION",
    "REGISTRATION_INTERVAL", "LOCATION", "DISTRIBUTOR_VERSION", "VERSION", "K8S_DEPLOYMENT_NAME", "K8S_POD_NAME",
    "K8S_NAMESPACE", "K8S_NODE_NAME", "MAX_HEARTBEAT_RETRIES", "HEARTBEAT_INTERVAL", "MAX_REGISTRATION_RETRIES",
    "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OAUTH_DISCOVERY", "OAUTH_TOKEN_URL",
}  # fmt: skip

# (variable, value, attribute, parsed)
CASES: list[tuple[str, str, str, Any]] = [
    ("KEPTN_API_ENDPOINT", "https://keptn.example.com/api/", "keptn_api_endpoint", "https://keptn.example.com/api"),
    ("KEPTN_API_TOKEN", "s3cret", "keptn_api_token", "s3cret"),
    ("API_PROXY_PORT", "9091", "api_proxy_port", 9091),
    ("API_PROXY_PATH", "/", "api_proxy_path", "/"),
    ("API_PROXY_HTTP_TIMEOUT", "7", "api_proxy_http_timeout_s", 7),
    ("API_PROXY_MAX_PAYLOAD_BYTES_KB", "128", "api_proxy_max_payload_bytes_kb", 128),
    ("HTTP_POLLING_INTERVAL", "3", "http_polling_interval_s", 3),
    ("EVENT_FORWARDING_PATH", "/events", "event_forwarding_path", "/events"),
    ("HTTP_SSL_VERIFY", "F", "http_ssl_verify", False),
    ("PUBSUB_URL", "nats://a:4222,nats://b:4222", "pubsub_url", "nats://a:4222,nats://b:4222"),
    ("PUBSUB_TOPIC", "sh.keptn.event.a.triggered,sh.keptn.>", "pubsub_topics", ("sh.keptn.event.a.triggered", "sh.keptn.>")),
    ("PUBSUB_RECIPIENT", "my-service", "pubsub_recipient", "http://my-service"),
    ("PUBSUB_RECIPIENT_PORT", "9000", "pubsub_recipient_port", 9000),
    ("PUBSUB_RECIPIENT_PATH", "events", "pubsub_recipient_path", "/events"),
    ("PUBSUB_GROUP", "my-group", "pubsub_group", "my-group"),
    ("PROJECT_FILTER", "p1,p2", "project_filter", ("p1", "p2")),
    ("STAGE_FILTER", "dev", "stage_filter", ("dev",)),
    ("SERVICE_FILTER", "svc", "service_filter", ("svc",)),
    ("DISABLE_REGISTRATION", "TRUE", "disable_registration", True),
    ("REGISTRATION_INTERVAL", "30s", "registration_interval", "30s"),
    ("LOCATION", "EU", "location", "EU"),
    ("DISTRIBUTOR_VERSION", "1.4.5", "distributor_version", "1.4.5"),
    ("VERSION", "2.0.1", "version", "2.0.1"),
    ("K8S_DEPLOYMENT_NAME", "my-integration", "k8s_deployment_name", "my-integration"),
    ("K8S_POD_NAME", "my-integration-7d9f", "k8s_pod_name", "my-integration-7d9f"),
    ("K8S_NAMESPACE", "keptn", "k8s_namespace", "keptn"),
    ("K8S_NODE_NAME", "node-1", "k8s_node_name", "node-1"),
    ("MAX_HEARTBEAT_RETRIES", "3", "max_heartbeat_retries", 3),
    ("HEARTBEAT_INTERVAL", "1m30s", "heartbeat_interval_s", 90.0),
    ("MAX_REGISTRATION_RETRIES", "2", "max_registration_retries", 2),
    ("OAUTH_CLIENT_ID", "client", "oauth_client_id", "client"),
    ("OAUTH_CLIENT_SECRET", "secret", "oauth_client_secret", "secret"),
    ("OAUTH_SCOPES", "a,b", "oauth_scopes", ("a", "b")),
    ("OAUTH_DISCOVERY", "https://idp/.well-known/openid-configuration", "oauth_discovery", "https://idp/.well-known/openid-configuration"),
    ("OAUTH_TOKEN_URL", "https://idp/token", "oauth_token_url", "https://idp/token"),
]
#: OAuth is all or nothing: the others of the group, so that one variable can be checked alone.
OAUTH_REST = {"OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s", "OAUTH_SCOPES": "x", "OAUTH_TOKEN_URL": "https://idp/t"}


def test_the_table_is_the_distributors_variables() -> None:
    assert set(config.DISTRIBUTOR_VARIABLES) == DISTRIBUTOR_1_4_5
    assert {case[0] for case in CASES} == DISTRIBUTOR_1_4_5


@pytest.mark.parametrize(("variable", "value", "attr", "parsed"), CASES, ids=[c[0] for c in CASES])
def test_each_variable_reaches_the_configuration(variable: str, value: str, attr: str, parsed: Any) -> None:
    environ = dict(OAUTH_REST) if variable.startswith("OAUTH_") else {}
    environ[variable] = value
    assert getattr(config.load(environ), attr) == parsed


def test_defaults_are_the_distributors() -> None:
    loaded = config.load({})
    assert loaded.nats_mode and loaded.effective_location == "control-plane"
    assert (loaded.api_proxy_port, loaded.api_proxy_path, loaded.event_forwarding_path) == (8081, "/", "/event")
    assert (loaded.api_proxy_http_timeout_s, loaded.api_proxy_max_payload_bytes_kb, loaded.http_polling_interval_s) == (30, 64, 10)
    assert loaded.recipient_url == "http://127.0.0.1:8080"
    assert (loaded.pubsub_url, loaded.pubsub_group, loaded.pubsub_topics) == ("nats://keptn-nats", "", ())
    assert (loaded.heartbeat_interval_s, loaded.max_heartbeat_retries, loaded.max_registration_retries) == (10.0, 10, 10)
    assert (loaded.distributor_version, loaded.version, loaded.node_name) == ("0.9.0", "", "keptn-node")
    assert loaded.http_ssl_verify and not loaded.disable_registration and not loaded.uses_oauth
    assert loaded.registration_blocked == "K8S_NAMESPACE and K8S_DEPLOYMENT_NAME not set"
    assert config.load({"KEPTN_API_ENDPOINT": "http://k/api"}).effective_location == "remote-execution-plane"


def test_an_empty_variable_counts_as_unset() -> None:
    loaded = config.load({"API_PROXY_PORT": "", "HEARTBEAT_INTERVAL": " ", "DISABLE_REGISTRATION": ""})
    assert (loaded.api_proxy_port, loaded.heartbeat_interval_s, loaded.disable_registration) == (8081, 10.0, False)


@pytest.mark.parametrize(
    ("variable", "value", "fallback"),
    [("HTTP_POLLING_INTERVAL", "0.5", 10), ("HTTP_POLLING_INTERVAL", "10s", 10), ("API_PROXY_HTTP_TIMEOUT", "1m", 30)],
)
def test_the_distributors_silent_fallbacks_are_kept_with_a_warning(variable: str, value: str, fallback: int) -> None:
    loaded = config.load({variable: value})
    attr = "http_polling_interval_s" if variable == "HTTP_POLLING_INTERVAL" else "api_proxy_http_timeout_s"
    assert getattr(loaded, attr) == fallback
    assert loaded.warnings == (f"{variable}: {value!r} is not a whole number of seconds; using {fallback}",)


def test_zero_means_what_it_means_to_the_distributor() -> None:
    loaded = config.load({"HTTP_POLLING_INTERVAL": "0", "API_PROXY_HTTP_TIMEOUT": "0", "API_PROXY_MAX_PAYLOAD_BYTES_KB": "-1"})
    current = loaded.settings()
    assert current.http_polling_interval_s == config.SHORTEST_POLL_S  # back to back, with a breath
    assert current.http_timeout_s == 0 and current.api_proxy_http_timeout_s == 0  # no timeout
    assert current.api_proxy_max_payload_bytes_kb == 0  # no limit


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HEARTBEAT_INTERVAL", "10", "HEARTBEAT_INTERVAL: expected a duration such as 10s, 500ms or 1m30s (a number needs a unit), got '10'"),
        ("HEARTBEAT_INTERVAL", "0s", "HEARTBEAT_INTERVAL: must be longer than 0, got '0s'"),
        ("DISABLE_REGISTRATION", "yes", "DISABLE_REGISTRATION: expected true or false (1, t, TRUE, 0, f, FALSE, ...), got 'yes'"),
        ("HTTP_SSL_VERIFY", "on", "HTTP_SSL_VERIFY: expected true or false (1, t, TRUE, 0, f, FALSE, ...), got 'on'"),
        ("API_PROXY_PORT", "80a", "API_PROXY_PORT: expected a whole number, got '80a'"),
        ("API_PROXY_PORT", "70000", "API_PROXY_PORT: expected a TCP port (0-65535; 0 = any free port), got '70000'"),
        ("API_PROXY_MAX_PAYLOAD_BYTES_KB", "64k", "API_PROXY_MAX_PAYLOAD_BYTES_KB: expected a whole number, got '64k'"),
        ("MAX_HEARTBEAT_RETRIES", "0", "MAX_HEARTBEAT_RETRIES: must be at least 1, got '0'"),
        ("MAX_REGISTRATION_RETRIES", "ten", "MAX_REGISTRATION_RETRIES: expected a whole number, got 'ten'"),
        ("KEPTN_API_ENDPOINT", "keptn.example.com/api", "KEPTN_API_ENDPOINT: expected an http:// or https:// URL such as http://1.2.3.4/api, got 'keptn.example.com/api'"),
        ("PUBSUB_RECIPIENT", "", "PUBSUB_RECIPIENT: must name the host to forward events to, e.g. http://127.0.0.1 (the default)"),
        ("PUBSUB_RECIPIENT", "svc:9000", "PUBSUB_RECIPIENT: must not carry a port (the URL would be http://svc:9000:<PUBSUB_RECIPIENT_PORT>); set PUBSUB_RECIPIENT_PORT instead, got 'svc:9000'"),
        ("PUBSUB_RECIPIENT", "http://svc/in", "PUBSUB_RECIPIENT: must be a host only, such as http://my-service; put the path in PUBSUB_RECIPIENT_PATH, got 'http://svc/in'"),
        ("PUBSUB_RECIPIENT_PORT", "http", "PUBSUB_RECIPIENT_PORT: expected a TCP port (1-65535) such as 8080, got 'http'"),
        ("API_PROXY_PATH", "api", "API_PROXY_PATH: must start with /, e.g. /event, got 'api'"),
        ("EVENT_FORWARDING_PATH", "/health", "EVENT_FORWARDING_PATH: /health is the health endpoint; choose another path such as /event"),
        ("OAUTH_CLIENT_ID", "me", "OAUTH_CLIENT_ID: OAuth needs OAUTH_CLIENT_SECRET, OAUTH_SCOPES, OAUTH_TOKEN_URL or OAUTH_DISCOVERY as well (the distributor would quietly use no OAuth)"),
        ("JES_LOG_FORMAT", "xml", "JES_LOG_FORMAT: expected one of console, json, got 'xml'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(errors.SettingsError) as caught:
        config.load({variable: value})
    assert caught.value.problems == [message]


def test_registration_constraints() -> None:
    base = {"K8S_NAMESPACE": "keptn", "K8S_DEPLOYMENT_NAME": "my-service"}
    assert config.load(base).registration_blocked is None
    assert config.load(base | {"DISABLE_REGISTRATION": "true"}).registration_blocked == "DISABLE_REGISTRATION is true"
    assert config.load({"K8S_NAMESPACE": "keptn"}).registration_blocked == "K8S_DEPLOYMENT_NAME not set"
    for own in ("shipyard-controller", "api-service", "mongodb-datastore", "resource-service", "secret-service", "statistics-service"):
        blocked = config.load(base | {"K8S_DEPLOYMENT_NAME": own}).registration_blocked
        assert blocked is not None and "Keptn's own services" in blocked


def test_the_registration_body_is_the_distributors() -> None:
    loaded = config.load({
        "K8S_DEPLOYMENT_NAME": "my-service", "K8S_NAMESPACE": "keptn", "K8S_POD_NAME": "my-service-1", "VERSION": "2.0.1",
        "PUBSUB_TOPIC": "sh.keptn.event.a.triggered,sh.keptn.event.b.triggered", "PROJECT_FILTER": "p", "SERVICE_FILTER": "s1,s2",
        "KEPTN_API_ENDPOINT": "http://k/api",
    })  # fmt: skip
    flt = {"projects": ["p"], "stages": [], "services": ["s1", "s2"]}
    assert registration(loaded).body() == {
        "name": "my-service",
        "metadata": {
            "hostname": "keptn-node", "integrationversion": "2.0.1", "distributorversion": "0.9.0",
            "location": "remote-execution-plane",
            "kubernetesmetadata": {"namespace": "keptn", "podname": "my-service-1", "deploymentname": "my-service"},
        },
        "subscriptions": [{"event": "sh.keptn.event.a.triggered", "filter": flt}, {"event": "sh.keptn.event.b.triggered", "filter": flt}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", 0.0), ("-2s", -2.0), (".5s", 0.5), ("300us", 0.0003), ("2\u00b5s", 2e-6)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parsing.go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "", "s", "1x", "1 s", "1s2"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parsing.go_duration(text)


def test_go_booleans_are_exactly_gos() -> None:
    assert all(parsing.go_bool(t) for t in ("1", "t", "T", "TRUE", "true", "True"))
    assert not any(parsing.go_bool(t) for t in ("0", "f", "F", "FALSE", "false", "False"))
    for text in ("yes", "tRUE", "on", "2"):
        with pytest.raises(ValueError):
            parsing.go_bool(text)


def test_docs_list_every_variable_with_its_default() -> None:
    from tests.distributor.support import REPO

    table = (REPO / "docs" / "distributor.md").read_text().split("## Variables", 1)[1].split("\n## ", 1)[0]
    for variable in config.VARIABLES:
        assert f"`{variable.env}`" in table, variable.env
