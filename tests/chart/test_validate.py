"""Every rendered manifest passes `kubernetes-validate --strict` (Kubernetes 1.31 and 1.33)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.support import USER_SETS, Helm
from tests.conftest import k8s_valid

UPSTREAM_VALUES = Path(__file__).with_name("upstream-values.yaml")
WITHOUT_TOKEN = [s for s in USER_SETS if "api.token" not in s]

#: name -> (--set arguments, values files)
SCENARIOS: dict[str, tuple[list[str], list[Path]]] = {
    "user command": (list(USER_SETS), []),
    "upstream values file": ([], [UPSTREAM_VALUES]),
    "oauth": (
        WITHOUT_TOKEN
        + [
            "remoteControlPlane.api.authMode=oauth",
            "remoteControlPlane.api.oauth.clientId=jes",
            "remoteControlPlane.api.oauth.clientSecret=s3cret",
            "remoteControlPlane.api.oauth.clientDiscovery=https://sso.example.com/.well-known/openid-configuration",
            "remoteControlPlane.api.oauth.scopes=keptn:api",
            "remoteControlPlane.api.oauth.tokenUrl=https://sso.example.com/token",
            "remoteControlPlane.api.caBundle.configMap=keptn-ca",
        ],
        [],
    ),
    "extra namespaces and network policies": (
        [
            *USER_SETS,
            "jobConfig.extraNamespaces={jobs-eu,builds}",
            "jobConfig.networkPolicy.enabled=true",
            "jobConfig.networkPolicy.blockCIDRs={10.0.0.0/8}",
            "networkPolicy.egress.enabled=true",
            "networkPolicy.egress.k8sMasterCIDR=10.96.0.0/12",
            "networkPolicy.ingress.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
            "networkPolicy.egress.extraRules[0].to[0].ipBlock.cidr=203.0.113.0/24",
        ],
        [],
    ),
    "service accounts not created": (
        [*USER_SETS, "jobConfig.serviceAccount.create=false", "serviceAccount.create=false", "serviceAccount.name=sa"],
        [],
    ),
    "existing secret, metrics, replicas": (
        WITHOUT_TOKEN
        + [
            "remoteControlPlane.api.existingSecret=keptn-creds",
            "metrics.serviceMonitor.enabled=true",
            "metrics.podAnnotations=true",
            "replicaCount=3",
            "image.digest=sha256:" + "a" * 64,
            "extraEnv[0].name=DISABLE_REGISTRATION",
            "extraEnv[0].value=false",
        ],
        [],
    ),
    "nats mode": (["remoteControlPlane.enabled=false"], []),
    "nats mode, api proxy for tasks, network policies": (
        [
            "remoteControlPlane.enabled=false",
            "nats.url=nats://keptn-nats.keptn:4222",
            "apiProxy.enabled=true",
            "apiProxy.forTasks.enabled=true",
            "jobNamespace=keptn-jobs",
            "jobConfig.extraNamespaces={builds}",
            "jobConfig.networkPolicy.enabled=true",
            "jobConfig.networkPolicy.blockCIDRs={10.0.0.0/8}",
            "networkPolicy.egress.enabled=true",
            "networkPolicy.egress.k8sMasterCIDR=10.96.0.0/12",
        ],
        [],
    ),
    "api proxy for side-cars and tasks": (
        [*USER_SETS, "apiProxy.enabled=true", "apiProxy.host=127.0.0.1", "apiProxy.forTasks.enabled=true",
         "apiProxy.forTasks.port=9000", "networkPolicy.ingress.metricsFrom[0].podSelector.matchLabels.app=prom"],
        [],
    ),  # fmt: skip
}

#: Custom resources kubernetes-validate has no schema for.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_manifests_are_valid_kubernetes(helm: Helm, scenario: str) -> None:
    sets, files = SCENARIOS[scenario]
    rendered = helm.template(sets, values_files=files)
    assert rendered.all("Deployment")
    for doc in rendered.docs:
        if doc["kind"] not in CUSTOM_KINDS:
            k8s_valid(doc)
