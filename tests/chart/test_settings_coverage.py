"""The chart and jes/settings.py agree: the chart sets only variables jes reads, and a user can reach
every variable of jes that matters in a cluster through a value of its own."""

from __future__ import annotations

from jes import settings
from tests.chart.support import USER_SETS, Helm, Rendered

#: Variables of jes/settings.py without a chart value of their own, and why.
NOT_IN_CHART: dict[str, str] = {
    "KEPTN_API_TOKEN": "the chart mounts the token as a file: KEPTN_API_TOKEN_FILE",
    "OAUTH_CLIENT_SECRET": "the chart mounts the secret as a file: OAUTH_CLIENT_SECRET_FILE",
    "JES_STATE_DIR": "local runner only",
    "JES_LOCAL_SECRETS_DIR": "local runner only",
    "HEALTH_ENDPOINT_ENABLED": "the probes and metrics need the endpoint",
    "JES_INTEGRATION_NAME": "the name jes registers as; stays job-executor-service (extraEnv can change it)",
    "JES_EVENT_SOURCE": "source of the events jes sends; stays job-executor-service (extraEnv)",
    "DISABLE_REGISTRATION": "registration is how the Bridge shows the executor (extraEnv)",
    "REGISTRATION_INTERVAL": "tuning, rarely needed (extraEnv)",
    "HEARTBEAT_INTERVAL": "tuning, rarely needed (extraEnv)",
    "MAX_REGISTRATION_RETRIES": "tuning, rarely needed (extraEnv)",
    "MAX_HEARTBEAT_RETRIES": "tuning, rarely needed (extraEnv)",
    "PUBSUB_RECIPIENT": "jes distributor only: where it forwards events; jes serve handles them itself",
    "PUBSUB_RECIPIENT_PORT": "jes distributor only (see PUBSUB_RECIPIENT)",
    "PUBSUB_RECIPIENT_PATH": "jes distributor only (see PUBSUB_RECIPIENT)",
}

#: Everything switched on, so that every conditional variable is rendered.
FULL_SETS = [s for s in USER_SETS if "api.token" not in s] + [
    "remoteControlPlane.api.authMode=oauth",
    "remoteControlPlane.api.token=also-a-token",
    "remoteControlPlane.api.oauth.clientId=jes",
    "remoteControlPlane.api.oauth.clientSecret=s3cret",
    "remoteControlPlane.api.oauth.clientDiscovery=https://sso.example.com/.well-known/openid-configuration",
    "remoteControlPlane.api.oauth.scopes=keptn:api",
    "remoteControlPlane.api.oauth.tokenUrl=https://sso.example.com/token",
    "remoteControlPlane.api.caBundle.configMap=keptn-ca",
    "apiProxy.enabled=true",
    "apiProxy.host=127.0.0.1",
    "apiProxy.forTasks.enabled=true",
]

#: NATS mode with everything switched on: the variables only that mode renders.
NATS_FULL_SETS = [
    "remoteControlPlane.enabled=false", "apiProxy.enabled=true", "apiProxy.forTasks.enabled=true",
    "jobNamespace=keptn-jobs", "jobConfig.networkPolicy.enabled=true", "jobConfig.networkPolicy.blockCIDRs={10.244.0.0/16}",
]  # fmt: skip


def chart_env_names(rendered: Rendered) -> set[str]:
    names = set(rendered.env)
    for pod in rendered.all("Pod"):
        names |= {e["name"] for c in pod["spec"]["containers"] for e in c.get("env", [])}
    return names


def test_the_chart_sets_only_variables_jes_reads(helm: Helm) -> None:
    known = set(settings.ENV_NAMES.values())
    for sets in (USER_SETS, FULL_SETS, NATS_FULL_SETS):
        unknown = chart_env_names(helm.template(sets)) - known
        assert not unknown, f"the chart sets variables jes/settings.py does not know: {sorted(unknown)}"


def test_every_setting_a_user_may_want_is_reachable(helm: Helm) -> None:
    """In one of the two modes: the NATS variables exist only in NATS mode, the endpoint and the
    credentials only in remote mode."""
    rendered = chart_env_names(helm.template(FULL_SETS)) | chart_env_names(helm.template(NATS_FULL_SETS))
    known = set(settings.ENV_NAMES.values())
    missing = known - rendered - set(NOT_IN_CHART)
    assert not missing, f"jes settings without a chart value: {sorted(missing)}"
    stale = set(NOT_IN_CHART) - known
    assert not stale, f"exceptions that jes/settings.py no longer has: {sorted(stale)}"
    assert not set(NOT_IN_CHART) & rendered, "an exception is rendered after all; remove it from NOT_IN_CHART"
