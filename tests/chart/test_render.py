"""The chart rendered with helm 3 and helm 4: the user's install command and other value sets."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from jes import settings
from tests.chart.support import RELEASE, USER_NAMESPACE, USER_SETS, Helm, Rendered

UPSTREAM_VALUES = Path(__file__).with_name("upstream-values.yaml")
JES_IMAGE = "ghcr.io/jes-project/jes:0.1.0"
SECRET = "job-executor-service-keptn-api"

RELEASE_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "patch", "delete"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["create", "get", "list", "update", "delete"],
    },
]
JOB_NAMESPACE_RULES = RELEASE_RULES[:-1]


def helm_test_container(rendered: Rendered) -> dict[str, Any]:
    containers: list[dict[str, Any]] = rendered.one("Pod", f"{RELEASE}-test-api-connection")["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def secret_value(rendered: Rendered, name: str, key: str) -> str:
    return base64.b64decode(rendered.one("Secret", name)["data"][key]).decode()


def test_lint_strict(helm: Helm) -> None:
    helm.lint()
    helm.lint(sets=(), values_files=[UPSTREAM_VALUES])


def test_user_command_wires_endpoint_token_and_topic(helm: Helm) -> None:
    rendered = helm.template()
    env = rendered.env
    assert rendered.value("KEPTN_API_ENDPOINT") == "http://1.2.3.4/api"
    assert rendered.value("PUBSUB_TOPIC") == "sh.keptn.event.sayhello.triggered"
    name, key = rendered.mounted_secret("KEPTN_API_TOKEN_FILE")
    assert name == SECRET
    assert secret_value(rendered, name, key) == "my-keptn-api-token"
    assert "KEPTN_API_TOKEN" not in env  # a file, never an environment variable
    assert env["JES_PROTECTED_SECRETS"]["value"] == SECRET  # and no task may use that Secret
    assert env["JES_PROTECTED_SERVICE_ACCOUNTS"]["value"] == rendered.deployment["spec"]["template"]["spec"][
        "serviceAccountName"
    ]
    # the token appears nowhere in clear text
    assert "my-keptn-api-token" not in json.dumps(rendered.docs)


def test_user_command_deployment(helm: Helm) -> None:
    rendered = helm.template()
    deployment = rendered.deployment
    assert deployment["metadata"]["name"] == RELEASE
    assert deployment["metadata"]["namespace"] == USER_NAMESPACE
    container = rendered.container
    assert container["image"] == JES_IMAGE
    assert container["args"] == ["serve"]
    assert "command" not in container  # the image's entrypoint is `jes`
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    values = {name: rendered.value(name) for name, e in rendered.env.items() if "value" in e}
    assert (
        values
        | {
            "JOB_NAMESPACE": USER_NAMESPACE,
            "JES_RUNNER": "kubernetes",
            "JES_INIT_IMAGE": JES_IMAGE,
            "FULL_DEPLOYMENT_NAME": "job-executor-service",
            "K8S_DEPLOYMENT_NAME": "job-executor-service",
            "K8S_DEPLOYMENT_VERSION": "0.1.0",
            "DEFAULT_JOB_SERVICE_ACCOUNT": "job-executor-service-default-job-account",
            "HTTP_SSL_VERIFY": "true",
            "HEALTH_ENDPOINT_PORT": "8080",
            "DEFAULT_RESOURCE_LIMITS_CPU": "1",
            "DEFAULT_RESOURCE_LIMITS_MEMORY": "512Mi",
            "DEFAULT_RESOURCE_REQUESTS_CPU": "50m",
            "DEFAULT_RESOURCE_REQUESTS_MEMORY": "128Mi",
            "JES_SHUTDOWN_GRACE_S": "30",
            "JES_LOG_FORMAT": "json",
        }
        == values
    )
    for name, path in {"K8S_NAMESPACE": "metadata.namespace", "K8S_POD_NAME": "metadata.name",
                       "K8S_NODE_NAME": "spec.nodeName"}.items():  # fmt: skip
        assert rendered.env[name]["valueFrom"] == {"fieldRef": {"fieldPath": path}}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45  # shutdownGraceSeconds + 15
    assert json.loads(rendered.value("JES_JOB_SECURITY_CONTEXT"))["capabilities"] == {"drop": ["ALL"]}
    assert json.loads(rendered.value("JES_POD_SECURITY_CONTEXT"))["runAsNonRoot"] is True


def test_security_contexts(helm: Helm) -> None:
    rendered = helm.template()
    pod = rendered.deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True  # jes needs the API
    assert pod["serviceAccountName"] == "job-executor-service"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for context in (rendered.container["securityContext"], helm_test_container(rendered)["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] >= 1000
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in rendered.container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    job_sa = rendered.one("ServiceAccount", "job-executor-service-default-job-account")
    assert job_sa["automountServiceAccountToken"] is False
    # the job service account has no permissions: no binding names it
    for binding in rendered.all("RoleBinding"):
        assert all(s["name"] != job_sa["metadata"]["name"] for s in binding["subjects"])


def test_pod_rolls_when_the_credentials_change(helm: Helm) -> None:
    def checksum(token: str) -> str:
        rendered = helm.template([*USER_SETS, f"remoteControlPlane.api.token={token}"])
        annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
        assert "rollme" not in annotations
        return str(annotations["checksum/secret"])

    assert checksum("one-token") == checksum("one-token") != checksum("another-token")


def test_role_rules_are_exactly_what_jes_needs(helm: Helm) -> None:
    rendered = helm.template([*USER_SETS, "jobConfig.extraNamespaces={jobs-eu,builds}"])
    assert not rendered.all("ClusterRole") and not rendered.all("ClusterRoleBinding")
    assert rendered.one("Role", RELEASE, USER_NAMESPACE)["rules"] == RELEASE_RULES
    for namespace in ("jobs-eu", "builds"):
        name = f"{RELEASE}-{USER_NAMESPACE}"
        assert rendered.one("Role", name, namespace)["rules"] == JOB_NAMESPACE_RULES
        binding = rendered.one("RoleBinding", name, namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": USER_NAMESPACE}]
        # the job service account exists wherever jobs run
        sa = rendered.one("ServiceAccount", "job-executor-service-default-job-account", namespace)
        assert sa["automountServiceAccountToken"] is False
    binding = rendered.one("RoleBinding", RELEASE, USER_NAMESPACE)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": USER_NAMESPACE}]
    assert "secrets" not in json.dumps([r["rules"] for r in rendered.all("Role")])


def test_jobs_can_run_in_a_namespace_without_jes_secrets(helm: Helm) -> None:
    """jobNamespace: jes may run Jobs there; in its own namespace it only keeps its Leases, and the
    Secret with its credentials stays where the Jobs are not."""
    rendered = helm.template([*USER_SETS, "jobNamespace=keptn-jobs"])
    assert rendered.value("JOB_NAMESPACE") == "keptn-jobs"
    name = f"{RELEASE}-{USER_NAMESPACE}"
    assert rendered.one("Role", name, "keptn-jobs")["rules"] == JOB_NAMESPACE_RULES
    assert rendered.one("Role", RELEASE, USER_NAMESPACE)["rules"] == RELEASE_RULES[-1:]  # Leases only
    assert rendered.one("RoleBinding", RELEASE, USER_NAMESPACE)["roleRef"]["name"] == RELEASE
    assert rendered.one("ServiceAccount", "job-executor-service-default-job-account", "keptn-jobs")
    assert rendered.one("Secret", SECRET)["metadata"]["namespace"] == USER_NAMESPACE
    with pytest.raises(AssertionError):
        rendered.one("ServiceAccount", "job-executor-service-default-job-account", USER_NAMESPACE)


def test_topic_subscription_wins_over_pubsub_topic(helm: Helm) -> None:
    both = helm.template([*USER_SETS, "subscription.pubsubTopic=sh.keptn.event.test.triggered"])
    assert both.value("PUBSUB_TOPIC") == "sh.keptn.event.sayhello.triggered"
    only_pubsub = helm.template(
        [s for s in USER_SETS if "topicSubscription" not in s] + ["subscription.pubsubTopic=sh.keptn.event.a.triggered"]
    )
    assert only_pubsub.value("PUBSUB_TOPIC") == "sh.keptn.event.a.triggered"
    default = helm.template([s for s in USER_SETS if "topicSubscription" not in s])
    assert default.value("PUBSUB_TOPIC").split(",") == [
        f"sh.keptn.event.{t}.triggered" for t in ("test", "deployment", "evaluation", "release", "approval", "action")
    ]


def test_wildcard_topics_are_refused(helm: Helm) -> None:
    error = helm.template_error([*USER_SETS, "remoteControlPlane.topicSubscription=sh.keptn.>"])
    assert "remoteControlPlane.topicSubscription" in error and "wildcards cannot be polled" in error


def test_oauth(helm: Helm) -> None:
    sets = [s for s in USER_SETS if "api.token" not in s] + [
        "remoteControlPlane.api.authMode=oauth",
        "remoteControlPlane.api.oauth.clientId=jes-client",
        "remoteControlPlane.api.oauth.clientSecret=oauth-secret",
        "remoteControlPlane.api.oauth.clientDiscovery=https://sso.example.com/.well-known/openid-configuration",
        "remoteControlPlane.api.oauth.scopes=keptn:api",
        "remoteControlPlane.api.apiValidateTls=false",
    ]
    rendered = helm.template(sets)
    assert rendered.value("OAUTH_CLIENT_ID") == "jes-client"
    assert rendered.value("OAUTH_DISCOVERY") == "https://sso.example.com/.well-known/openid-configuration"
    assert rendered.value("OAUTH_SCOPES") == "keptn:api"
    assert rendered.value("HTTP_SSL_VERIFY") == "false"
    name, key = rendered.mounted_secret("OAUTH_CLIENT_SECRET_FILE")
    assert secret_value(rendered, name, key) == "oauth-secret"
    assert "KEPTN_API_TOKEN_FILE" not in rendered.env and "OAUTH_CLIENT_SECRET" not in rendered.env
    assert "oauth-secret" not in json.dumps(rendered.deployment)
    test_env = {e["name"] for e in helm_test_container(rendered)["env"]}
    assert {"OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET_FILE", "OAUTH_DISCOVERY", "OAUTH_SCOPES"} <= test_env


def test_existing_secret(helm: Helm) -> None:
    sets = [s for s in USER_SETS if "api.token" not in s] + ["remoteControlPlane.api.existingSecret=keptn-creds"]
    rendered = helm.template(sets)
    assert not rendered.all("Secret")
    assert rendered.mounted_secret("KEPTN_API_TOKEN_FILE") == ("keptn-creds", "keptn-api-token")


def test_job_service_account_create_false_uses_the_name_given(helm: Helm) -> None:
    rendered = helm.template(
        [*USER_SETS, "jobConfig.serviceAccount.create=false", "jobConfig.serviceAccount.name=my-job-runner"]
    )
    assert rendered.value("DEFAULT_JOB_SERVICE_ACCOUNT") == "my-job-runner"
    assert [sa["metadata"]["name"] for sa in rendered.all("ServiceAccount")] == [RELEASE]
    none = helm.template([*USER_SETS, "jobConfig.serviceAccount.create=false", "jobConfig.serviceAccount.name="])
    assert none.value("DEFAULT_JOB_SERVICE_ACCOUNT") == ""


def test_jes_service_account_create_false(helm: Helm) -> None:
    rendered = helm.template([*USER_SETS, "serviceAccount.create=false", "serviceAccount.name=existing-sa"])
    assert rendered.deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"
    assert rendered.one("RoleBinding")["subjects"][0]["name"] == "existing-sa"
    assert all(sa["metadata"]["name"] != "existing-sa" for sa in rendered.all("ServiceAccount"))


def test_our_values(helm: Helm) -> None:
    sets = [
        *USER_SETS,
        "location=EU",
        "maxConcurrentEvents=8",
        "pendingGraceSeconds=60",
        "shutdownGraceSeconds=90",
        "maxEventBytes=131072",
        "logFormat=console",
        "pollingInterval=0.5",
        "subscription.projectFilter=my-first-project",
        "subscription.stageFilter=dev",
        "subscription.serviceFilter=service1",
        "jobConfig.defaultResources.limits.cpu=2",
        "jobConfig.defaultResources.limits.memory=1Gi",
        "jobConfig.defaultResources.requests.cpu=100m",
        "jobConfig.defaultResources.requests.memory=256Mi",
        "jobConfig.filesSizeLimit=50Mi",
        "jobConfig.allowedImageList=docker.io/*",
        "jobConfig.allowPrivilegedJobs=true",
        "jobConfig.taskDeadlineSeconds=3600",
        "jobConfig.labels.team=platform",
        "remoteControlPlane.api.caBundle.configMap=keptn-ca",
        "remoteControlPlane.api.resourceServicePath=configuration-service",
        "remoteControlPlane.api.timeoutSeconds=10",
        "extraEnv[0].name=HEARTBEAT_INTERVAL",
        "extraEnv[0].value=30",
    ]
    rendered = helm.template(sets)
    assert {
        name: rendered.value(name)
        for name in (
            "LOCATION", "JES_MAX_CONCURRENT_EVENTS", "JES_PENDING_GRACE_S", "JES_SHUTDOWN_GRACE_S",
            "JES_MAX_EVENT_BYTES", "JES_LOG_FORMAT", "HTTP_POLLING_INTERVAL", "PROJECT_FILTER", "STAGE_FILTER",
            "SERVICE_FILTER", "DEFAULT_RESOURCE_LIMITS_CPU", "DEFAULT_RESOURCE_LIMITS_MEMORY",
            "DEFAULT_RESOURCE_REQUESTS_CPU", "DEFAULT_RESOURCE_REQUESTS_MEMORY", "JES_FILES_SIZE_LIMIT",
            "ALLOWED_IMAGE_LIST", "ALLOW_PRIVILEGED_JOBS", "TASK_DEADLINE_SECONDS", "JES_JOB_LABELS",
            "HTTP_SSL_CA_BUNDLE", "JES_RESOURCE_SERVICE_PATH", "JES_HTTP_TIMEOUT_S", "HEARTBEAT_INTERVAL",
        )
    } == {
        "LOCATION": "EU", "JES_MAX_CONCURRENT_EVENTS": "8", "JES_PENDING_GRACE_S": "60",
        "JES_SHUTDOWN_GRACE_S": "90", "JES_MAX_EVENT_BYTES": "131072", "JES_LOG_FORMAT": "console",
        "HTTP_POLLING_INTERVAL": "0.5", "PROJECT_FILTER": "my-first-project", "STAGE_FILTER": "dev",
        "SERVICE_FILTER": "service1", "DEFAULT_RESOURCE_LIMITS_CPU": "2", "DEFAULT_RESOURCE_LIMITS_MEMORY": "1Gi",
        "DEFAULT_RESOURCE_REQUESTS_CPU": "100m", "DEFAULT_RESOURCE_REQUESTS_MEMORY": "256Mi",
        "JES_FILES_SIZE_LIMIT": "50Mi", "ALLOWED_IMAGE_LIST": "docker.io/*", "ALLOW_PRIVILEGED_JOBS": "true",
        "TASK_DEADLINE_SECONDS": "3600", "JES_JOB_LABELS": '{"team":"platform"}',
        "HTTP_SSL_CA_BUNDLE": "/etc/jes/ca/ca.crt", "JES_RESOURCE_SERVICE_PATH": "configuration-service",
        "JES_HTTP_TIMEOUT_S": "10", "HEARTBEAT_INTERVAL": "30",
    }  # fmt: skip
    pod = rendered.deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 105
    assert {"name": "ca-bundle", "configMap": {"name": "keptn-ca"}} in pod["volumes"]


def test_upstream_values_file_keeps_working(helm: Helm) -> None:
    rendered = helm.template((), values_files=[UPSTREAM_VALUES])
    # the original images cannot run jes: the jes image replaces them
    assert rendered.container["image"] == JES_IMAGE
    assert rendered.value("JES_INIT_IMAGE") == JES_IMAGE
    assert rendered.value("KEPTN_API_ENDPOINT") == "https://keptn.example.com:8443/api"
    assert rendered.value("HTTP_SSL_VERIFY") == "false"
    assert rendered.value("PUBSUB_TOPIC") == "sh.keptn.event.sayhello.triggered"
    assert rendered.value("ALLOWED_IMAGE_LIST") == "docker.io/*,ghcr.io/my-org/*"
    assert rendered.value("TASK_DEADLINE_SECONDS") == "600"
    # upstream's capitalised keys reach jes renamed (runAsUser), winning over the chart's defaults
    assert json.loads(rendered.value("JES_POD_SECURITY_CONTEXT"))["runAsUser"] == 1000
    assert json.loads(rendered.value("JES_JOB_SECURITY_CONTEXT"))["capabilities"] == {"drop": ["ALL"]}
    assert rendered.container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    pod = rendered.deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert rendered.deployment["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == "platform-team"
    job_sa = rendered.one("ServiceAccount", "job-executor-service-default-job-account")
    assert job_sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/jobs"}
    names = {p["metadata"]["name"] for p in rendered.all("NetworkPolicy")}
    assert names == {f"{RELEASE}-ingress", f"{RELEASE}-egress", f"{RELEASE}-jobs"}


def test_network_policies(helm: Helm) -> None:
    rendered = helm.template(
        [
            *USER_SETS,
            "networkPolicy.egress.enabled=true",
            "networkPolicy.egress.k8sMasterCIDR=10.96.0.1/32",
            "networkPolicy.egress.k8sMasterPort=6443",
            "jobConfig.networkPolicy.enabled=true",
            "jobConfig.networkPolicy.blockCIDRs={10.0.0.0/8,192.168.0.0/16}",
            "jobConfig.extraNamespaces={jobs-eu}",
        ]
    )
    selector = {"app.kubernetes.io/name": RELEASE, "app.kubernetes.io/instance": RELEASE}
    ingress = rendered.one("NetworkPolicy", f"{RELEASE}-ingress")["spec"]
    assert ingress == {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []}
    egress = rendered.one("NetworkPolicy", f"{RELEASE}-egress")["spec"]
    assert egress["policyTypes"] == ["Egress"]
    peers = [rule["to"][0] for rule in egress["egress"]]
    assert {"ipBlock": {"cidr": "10.96.0.1/32"}} in peers
    assert {"ipBlock": {"cidr": "1.2.3.4/32"}} in peers  # the Keptn API given as an IP address
    assert egress["egress"][peers.index({"ipBlock": {"cidr": "10.96.0.1/32"}})]["ports"] == [
        {"protocol": "TCP", "port": 6443}
    ]
    assert any(p.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"} for p in peers)
    for namespace, name in ((USER_NAMESPACE, f"{RELEASE}-jobs"), ("jobs-eu", f"{RELEASE}-jobs-{USER_NAMESPACE}")):
        jobs = rendered.one("NetworkPolicy", name, namespace)["spec"]
        assert jobs["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": RELEASE}}
        assert jobs["policyTypes"] == ["Ingress", "Egress"]
        assert {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "192.168.0.0/16"]}}]} in jobs[
            "egress"
        ]
    off = helm.template([*USER_SETS, "networkPolicy.ingress.enabled=false"])
    assert not off.all("NetworkPolicy")


def test_metrics(helm: Helm) -> None:
    rendered = helm.template(
        [
            *USER_SETS,
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prometheus",
            "metrics.podAnnotations=true",
        ]
    )
    service = rendered.one("Service", f"{RELEASE}-metrics")
    assert service["spec"]["ports"] == [{"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    monitor = rendered.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"


def test_helm_test_pod_runs_jes_check(helm: Helm) -> None:
    rendered = helm.template()
    pod = rendered.one("Pod", f"{RELEASE}-test-api-connection")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["restartPolicy"] == "Never"
    container = helm_test_container(rendered)
    assert container["image"] == JES_IMAGE and container["args"] == ["check"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KEPTN_API_ENDPOINT"]["value"] == "http://1.2.3.4/api"
    assert rendered.mounted_secret("KEPTN_API_TOKEN_FILE", pod) == (SECRET, "keptn-api-token")


def test_fullname_follows_the_release_name(helm: Helm) -> None:
    rendered = helm.template(release="jes-eu")
    assert rendered.deployment["metadata"]["name"] == "jes-eu-job-executor-service"
    assert rendered.value("FULL_DEPLOYMENT_NAME") == "jes-eu-job-executor-service"
    assert rendered.value("DEFAULT_JOB_SERVICE_ACCOUNT") == "jes-eu-job-executor-service-default-job-account"


def test_init_image_from_a_mirror(helm: Helm) -> None:
    mirror = helm.template([*USER_SETS, "jobexecutorserviceinitcontainer.image.repository=mirror.example.com/jes"])
    assert mirror.value("JES_INIT_IMAGE") == "mirror.example.com/jes:0.1.0"
    digest = "sha256:" + "b" * 64
    pinned = helm.template([*USER_SETS, f"image.digest={digest}", "image.tag=0.1.0"])
    assert pinned.container["image"] == f"ghcr.io/jes-project/jes:0.1.0@{digest}"
    assert pinned.value("JES_INIT_IMAGE") == f"ghcr.io/jes-project/jes:0.1.0@{digest}"
    annotations = pinned.deployment["metadata"]["annotations"]
    assert not any(v.startswith("CKV_K8S_43=") for v in annotations.values())


def test_network_policy_layout_of_0_2(helm: Helm) -> None:
    rendered = helm.template(
        [
            *USER_SETS,
            "networkPolicy.enabled=true",
            "networkPolicy.k8sMasterCIDR=10.96.0.1/32",
            "remoteControlPlane.enabled=true",
        ]
    )
    egress = rendered.one("NetworkPolicy", f"{RELEASE}-egress")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]} in egress
    assert rendered.one("NetworkPolicy", f"{RELEASE}-ingress")


def test_allowed_volume_claims(helm: Helm) -> None:
    """``jobConfig.allowedVolumeClaims`` (a list of globs) becomes JES_ALLOWED_VOLUME_CLAIMS, a comma
    list that jes/settings.py reads back; by default no claim is allowed; a comma in a glob is refused."""
    assert helm.template().value("JES_ALLOWED_VOLUME_CLAIMS") == ""
    rendered = helm.template([*USER_SETS, "jobConfig.allowedVolumeClaims={shared-data,cache-*}"])
    value = rendered.value("JES_ALLOWED_VOLUME_CLAIMS")
    assert value == "shared-data,cache-*"
    assert settings.load({"JES_ALLOWED_VOLUME_CLAIMS": value}).allowed_volume_claims == ("shared-data", "cache-*")
    error = helm.template_error([*USER_SETS, "jobConfig.allowedVolumeClaims[0]=a\\,b"])
    assert "allowedVolumeClaims" in error


def test_task_outputs_are_on_by_default_and_can_be_turned_off(helm: Helm) -> None:
    rendered = helm.template(USER_SETS)
    assert (rendered.value("JES_TASK_OUTPUTS"), rendered.value("JES_MAX_OUTPUT_BYTES")) == ("true", "64Ki")
    assert rendered.value("JES_INIT_IMAGE") == JES_IMAGE  # the sidecar runs jes's own image
    off = helm.template([*USER_SETS, "jobConfig.taskOutputs=false", "jobConfig.maxOutputBytes=256Ki"])
    assert (off.value("JES_TASK_OUTPUTS"), off.value("JES_MAX_OUTPUT_BYTES")) == ("false", "256Ki")
    settings.load({"JES_TASK_OUTPUTS": "false", "JES_MAX_OUTPUT_BYTES": "256Ki"})  # jes reads them
