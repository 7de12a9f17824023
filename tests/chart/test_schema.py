"""values.schema.json: typos and wrong types are refused with a message naming the value."""

from __future__ import annotations

import pytest

from tests.chart.support import USER_SETS, Helm

#: misspelt keys -> the name the error must show
TYPOS = {
    "replicaCont=2": "replicaCont",
    "remoteControlPlane.api.tokn=abc": "tokn",
    "remoteControlPlane.autoDetect.enable=true": "enable",
    "jobConfig.serviceAcount.create=false": "serviceAcount",
    "jobConfig.networkPolicy.blockCIRDs={10.0.0.0/8}": "blockCIRDs",
    "networkPolicy.egress.k8sMasterCidr=10.0.0.1/32": "k8sMasterCidr",
    "subscription.pubsubTopics=sh.keptn.event.test.triggered": "pubsubTopics",
    "image.tags=1.0": "tags",
    "nats.queuegroup=jes": "queuegroup",
    "apiProxy.forTask.enabled=true": "forTask",
    "apiProxy.maxPayloadKB=10": "maxPayloadKB",
}

#: values of the wrong type or out of range -> the value's name the error must show
WRONG = {
    "replicaCount=two": "replicaCount",
    "jobConfig.labels=team": "labels",
    "jobConfig.taskDeadlineSeconds=-1": "taskDeadlineSeconds",
    "jobConfig.allowPrivilegedJobs=maybe": "allowPrivilegedJobs",
    "jobConfig.defaultResources.limits.memory=lots": "memory",
    "jobConfig.extraNamespaces={Jobs_EU}": "extraNamespaces",
    "maxConcurrentEvents=0": "maxConcurrentEvents",
    "pollingInterval=soon": "pollingInterval",
    "logFormat=xml": "logFormat",
    "image.pullPolicy=Sometimes": "pullPolicy",
    "remoteControlPlane.api.protocol=ftp": "protocol",
    "remoteControlPlane.api.authMode=ldap": "authMode",
    "remoteControlPlane.api.hostname=http://1.2.3.4": "hostname",
    "networkPolicy.egress.k8sMasterPort=70000": "k8sMasterPort",
    "remoteControlPlane.enabled=maybe": "enabled",
    "nats.reconcileSeconds=0": "reconcileSeconds",
    "nats.url=": "url",
    "apiProxy.forTasks.port=70000": "forTasks",
    "apiProxy.path=event": "path",
    "apiProxy.eventForwardingPath=": "eventForwardingPath",
    "apiProxy.maxPayloadBytesKB=-1": "maxPayloadBytesKB",
    "apiProxy.httpTimeoutSeconds=soon": "httpTimeoutSeconds",
}


@pytest.mark.parametrize("cases", [TYPOS, WRONG], ids=["typos", "wrong types"])
def test_bad_values_are_refused_each_by_name(helm: Helm, cases: dict[str, str]) -> None:
    # helm reports every schema violation at once, so one rendering checks them all
    error = helm.template_error([*USER_SETS, *cases])
    assert "don't meet the specifications of the schema" in error
    missing = [name for name in cases.values() if name not in error]
    assert not missing, f"not named in the error: {missing}\n{error}"


def test_token_required_without_auto_detect(helm: Helm) -> None:
    error = helm.template_error([s for s in USER_SETS if "api.token" not in s])
    assert "token" in error


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_api_proxy_ports_are_port_numbers(helm: Helm, port: str) -> None:
    error = helm.template_error([*USER_SETS, f"apiProxy.port={port}"])
    assert "schema" in error and "apiProxy" in error and "port" in error


def test_nats_mode_needs_neither_token_nor_hostname(helm: Helm) -> None:
    rendered = helm.template(
        ["remoteControlPlane.enabled=false", "remoteControlPlane.api.hostname=", "remoteControlPlane.api.protocol="]
    )
    assert "KEPTN_API_ENDPOINT" not in rendered.env
    # the conditions of remote mode still hold there
    assert "token" in helm.template_error(["remoteControlPlane.enabled=true", "remoteControlPlane.api.hostname=h"])


def test_token_must_be_empty_with_auto_detect(helm: Helm) -> None:
    error = helm.template_error([*USER_SETS, "remoteControlPlane.autoDetect.enabled=true"])
    assert "schema" in error and "token" in error


def test_oauth_requires_its_fields(helm: Helm) -> None:
    error = helm.template_error(
        [s for s in USER_SETS if "api.token" not in s] + ["remoteControlPlane.api.authMode=oauth"]
    )
    for field in ("clientId", "clientSecret", "clientDiscovery", "scopes"):
        assert field in error


def test_quoted_booleans_of_old_values_files_are_accepted(helm: Helm) -> None:
    rendered = helm.template(
        [*USER_SETS],
        extra=["--set-string", "jobConfig.allowPrivilegedJobs=true", "--set-string", "serviceAccount.create=false"],
    )
    assert rendered.value("ALLOW_PRIVILEGED_JOBS") == "true"
    assert all(sa["metadata"]["name"] != "job-executor-service" for sa in rendered.all("ServiceAccount"))
