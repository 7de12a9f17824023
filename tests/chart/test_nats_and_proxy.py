"""NATS mode (remoteControlPlane.enabled=false) and the API proxy (apiProxy, apiProxy.forTasks),
rendered with helm 3 and helm 4."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.support import RELEASE, USER_NAMESPACE, USER_SETS, FakeKubeApi, Helm, Rendered

KEPTN = "keptn"
NATS = ["remoteControlPlane.enabled=false"]
PROXY = ["apiProxy.enabled=true"]
FOR_TASKS = [*PROXY, "apiProxy.forTasks.enabled=true"]
#: What NATS mode needs before tasks get a token: Jobs outside Keptn's namespace, the pod and
#: Service CIDRs blocked for them (Keptn's services and NATS there have no authentication).
TASKS_APART = ["jobNamespace=keptn-jobs", "jobConfig.networkPolicy.enabled=true",
               "jobConfig.networkPolicy.blockCIDRs={10.244.0.0/16,10.96.0.0/12}"]  # fmt: skip
NATS_ONLY = {"PUBSUB_URL", "PUBSUB_GROUP", "JES_NATS_RECONCILE_S"}
REMOTE_ONLY = {"KEPTN_API_ENDPOINT", "KEPTN_API_TOKEN_FILE", "HTTP_SSL_VERIFY"}
PROXY_VARIABLES = {"API_PROXY_PORT", "API_PROXY_PATH", "API_PROXY_HTTP_TIMEOUT", "API_PROXY_MAX_PAYLOAD_BYTES_KB",
                   "EVENT_FORWARDING_PATH", "JES_API_PROXY_HOST", "JES_API_PROXY_TASK_PORT", "JES_API_PROXY_TASK_URL"}  # fmt: skip
SECRETS_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}
#: Verbs whose answer is the whole object: any of them on Secrets would let jes read Keptn's.
READING_VERBS = {"get", "list", "watch", "patch", "update", "*"}
SELECTOR = {"app.kubernetes.io/name": RELEASE, "app.kubernetes.io/instance": RELEASE}


def nats(helm: Helm, *sets: str, **kwargs: Any) -> Rendered:
    """NATS mode as a user installs it: into Keptn's namespace, without any control-plane value."""
    return helm.template([*NATS, *sets], namespace=kwargs.pop("namespace", KEPTN), **kwargs)


def job_namespace_rules(rendered: Rendered, namespace: str) -> list[dict[str, Any]]:
    roles = [r for r in rendered.all("Role") if r["metadata"]["namespace"] == namespace]
    assert len(roles) == 1
    rules: list[dict[str, Any]] = roles[0]["rules"]
    return rules


# --- the two modes --------------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [USER_SETS, [*USER_SETS, "remoteControlPlane.enabled=true"]], ids=["unset", "true"])
def test_remote_mode_renders_no_nats_and_no_proxy(helm: Helm, sets: list[str]) -> None:
    rendered = helm.template(sets)
    assert not (NATS_ONLY | PROXY_VARIABLES) & set(rendered.env)
    assert REMOTE_ONLY - {"HTTP_SSL_VERIFY"} <= set(rendered.env)
    assert not [s for s in rendered.all("Service") if s["metadata"]["name"].endswith("-api-proxy")]
    assert SECRETS_RULE not in job_namespace_rules(rendered, USER_NAMESPACE)
    assert [p["name"] for p in rendered.container["ports"]] == ["http"]


def test_nats_mode_runs_beside_keptn_without_endpoint_or_credentials(helm: Helm) -> None:
    rendered = nats(helm)
    assert rendered.value("PUBSUB_URL") == "nats://keptn-nats"
    assert rendered.value("PUBSUB_GROUP") == RELEASE  # the fullname: replicas share the events
    assert rendered.value("JES_NATS_RECONCILE_S") == "30"
    assert not REMOTE_ONLY & set(rendered.env)
    assert not {"OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET_FILE", "HTTP_SSL_CA_BUNDLE"} & set(rendered.env)
    assert rendered.value("JES_HTTP_TIMEOUT_S") == "30"
    assert rendered.value("JES_RESOURCE_SERVICE_PATH") == "resource-service"
    # no token Secret, nothing mounted, no helm test pod (nothing to check without an endpoint)
    assert not rendered.all("Secret") and not rendered.all("Pod")
    pod = rendered.deployment["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert rendered.container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    # Keptn's own token Secret lives in the namespace jes runs in: no task may name it
    assert rendered.value("JES_PROTECTED_SECRETS") == "keptn-api-token"
    assert rendered.value("JOB_NAMESPACE") == KEPTN


def test_nats_mode_values(helm: Helm) -> None:
    rendered = nats(
        helm,
        "nats.url=nats://nats-a.keptn:4222\\,nats://nats-b.keptn:4222",
        "nats.queueGroup=jes-shared",
        "nats.reconcileSeconds=7.5",
        "remoteControlPlane.api.timeoutSeconds=10",
        "remoteControlPlane.api.resourceServicePath=configuration-service",
    )
    assert rendered.value("PUBSUB_URL") == "nats://nats-a.keptn:4222,nats://nats-b.keptn:4222"
    assert rendered.value("PUBSUB_GROUP") == "jes-shared"
    assert rendered.value("JES_NATS_RECONCILE_S") == "7.5"
    assert rendered.value("JES_HTTP_TIMEOUT_S") == "10"
    assert rendered.value("JES_RESOURCE_SERVICE_PATH") == "configuration-service"


def test_each_release_has_its_own_queue_group(helm: Helm) -> None:
    """Two executors (say EU and APAC) beside one Keptn must each see every event."""
    assert nats(helm, release="jes-eu").value("PUBSUB_GROUP") == "jes-eu-job-executor-service"
    assert nats(helm, "fullnameOverride=jes-apac").value("PUBSUB_GROUP") == "jes-apac"


def test_nats_mode_allows_subject_wildcards(helm: Helm) -> None:
    rendered = nats(helm, "remoteControlPlane.topicSubscription=sh.keptn.event.*.triggered")
    assert rendered.value("PUBSUB_TOPIC") == "sh.keptn.event.*.triggered"
    error = helm.template_error([*USER_SETS, "remoteControlPlane.topicSubscription=sh.keptn.event.*.triggered"])
    assert "wildcards cannot be polled over HTTP" in error and "NATS mode" in error


def test_nats_mode_ignores_the_remote_values_of_a_values_file(helm: Helm) -> None:
    """A user switching an existing values file to NATS mode keeps token and hostname there: they
    are neither required nor used, and the token is stored nowhere."""
    rendered = nats(helm, *USER_SETS)
    assert "KEPTN_API_ENDPOINT" not in rendered.env and not rendered.all("Secret")
    assert "my-keptn-api-token" not in json.dumps(rendered.docs)
    quoted = helm.template(USER_SETS, extra=["--set-string", "remoteControlPlane.enabled=false"])
    assert "PUBSUB_URL" in quoted.env  # a quoted "false", as old values files have it


def test_nats_mode_and_auto_detection_contradict_each_other(helm: Helm) -> None:
    error = helm.template_error([*NATS, "remoteControlPlane.autoDetect.enabled=true"], namespace=KEPTN)
    assert "remoteControlPlane.enabled=false" in error and "remoteControlPlane.autoDetect.enabled=true" in error


def test_nats_mode_egress_reaches_nats_and_keptns_services(helm: Helm) -> None:
    rendered = nats(helm, "networkPolicy.egress.enabled=true", "networkPolicy.egress.k8sMasterCIDR=10.96.0.1/32")
    egress = rendered.one("NetworkPolicy", f"{RELEASE}-egress")["spec"]["egress"]
    in_cluster = {"to": [{"podSelector": {}}],
                  "ports": [{"protocol": "TCP", "port": 4222}, {"protocol": "TCP", "port": 8080}]}  # fmt: skip
    assert in_cluster in egress
    assert not any("ipBlock" in peer and peer["ipBlock"]["cidr"] != "10.96.0.1/32" for r in egress for peer in r["to"])
    remote = helm.template([*USER_SETS, "networkPolicy.egress.enabled=true"])
    assert in_cluster not in remote.one("NetworkPolicy", f"{RELEASE}-egress")["spec"]["egress"]


def test_nats_mode_notes(helm: Helm, kube_api: FakeKubeApi) -> None:
    _, notes = helm.install_dry_run(kube_api.url, [*NATS, *PROXY], namespace=KEPTN)
    assert "NATS mode: events from nats://keptn-nats (queue group job-executor-service)" in notes
    assert "Keptn API:" not in notes and "helm test" not in notes
    # Jobs beside Keptn's Secrets, services and NATS (no authentication there)
    assert "Set jobNamespace to a namespace of their own" in notes
    assert "beside Keptn's services and NATS, which answer anyone without authentication" in notes
    assert "nothing keeps tasks\n         away from them" in notes  # no job network policy
    _, separate = helm.install_dry_run(kube_api.url, [*NATS, "jobNamespace=keptn-jobs"], namespace=KEPTN)
    assert "Set jobNamespace" not in separate and "nothing keeps tasks" in separate
    _, apart = helm.install_dry_run(kube_api.url, [*NATS, *FOR_TASKS, *TASKS_APART], namespace=KEPTN)
    assert f"For tasks:      http://{RELEASE}-api-proxy.{KEPTN}.svc:8082" in apart
    assert "WARNING" not in apart
    _, remote = helm.install_dry_run(kube_api.url, [*USER_SETS, *FOR_TASKS])
    assert "WARNING" not in remote  # Keptn's services are not beside the Jobs


@pytest.mark.parametrize(
    "where",
    [[], [f"jobNamespace={KEPTN}"], ["jobNamespace=keptn-jobs", f"jobConfig.extraNamespaces={{builds,{KEPTN}}}"]],
    ids=["default", "named", "extra"],
)
def test_nats_mode_refuses_a_task_token_for_jobs_beside_keptn(helm: Helm, where: list[str]) -> None:
    """Keptn's services and NATS answer without authentication: a task in Keptn's namespace does
    not need its scoped token to talk to Keptn, so giving it one would only pretend to limit it."""
    policy = TASKS_APART[1:]
    error = helm.template_error([*NATS, *FOR_TASKS, *policy, *where], namespace=KEPTN)
    assert "apiProxy.forTasks.enabled=true with remoteControlPlane.enabled=false" in error
    assert f'in the release namespace "{KEPTN}"' in error
    assert "answer without authentication, so a task that reaches them bypasses its scoped API-proxy token" in error
    assert "Set jobNamespace to a namespace of their own" in error


@pytest.mark.parametrize(
    "policy",
    [[], ["jobConfig.networkPolicy.enabled=true"], ["jobConfig.networkPolicy.blockCIDRs={10.244.0.0/16}"]],
    ids=["none", "no-cidrs", "not-enabled"],
)
def test_nats_mode_refuses_a_task_token_without_the_pod_network_blocked(helm: Helm, policy: list[str]) -> None:
    error = helm.template_error([*NATS, *FOR_TASKS, "jobNamespace=keptn-jobs", *policy], namespace=KEPTN)
    assert "needs jobConfig.networkPolicy.enabled=true and jobConfig.networkPolicy.blockCIDRs" in error
    assert "the cluster's pod and Service CIDRs" in error
    assert "most CNIs let an ipBlock of 0.0.0.0/0 match pod IPs" in error


def test_nats_mode_with_jobs_apart_gives_tasks_a_token(helm: Helm) -> None:
    rendered = nats(helm, *FOR_TASKS, *TASKS_APART)
    policy = rendered.one("NetworkPolicy", f"{RELEASE}-jobs-{KEPTN}", "keptn-jobs")
    blocked = next(r for r in policy["spec"]["egress"] if any("ipBlock" in p for p in r["to"]))
    assert blocked["to"][0]["ipBlock"] == {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16", "10.96.0.0/12"]}
    assert SECRETS_RULE in job_namespace_rules(rendered, "keptn-jobs")
    assert SECRETS_RULE not in job_namespace_rules(rendered, KEPTN)  # nothing of Keptn's namespace


# --- the API proxy ------------------------------------------------------------------------------------


def test_api_proxy_for_side_cars_listens_on_localhost_with_the_distributors_defaults(helm: Helm) -> None:
    rendered = helm.template([*USER_SETS, *PROXY])
    assert {name: rendered.value(name) for name in PROXY_VARIABLES & set(rendered.env)} == {
        "API_PROXY_PORT": "8081",
        "API_PROXY_PATH": "/",
        "API_PROXY_HTTP_TIMEOUT": "30",
        "API_PROXY_MAX_PAYLOAD_BYTES_KB": "64",
        "EVENT_FORWARDING_PATH": "/event",
    }
    # 127.0.0.1 (jes's default): no JES_API_PROXY_HOST, no containerPort, no Service
    assert [p["name"] for p in rendered.container["ports"]] == ["http"]
    assert [s["metadata"]["name"] for s in rendered.all("Service")] == []
    assert SECRETS_RULE not in job_namespace_rules(rendered, USER_NAMESPACE)


def test_api_proxy_values(helm: Helm) -> None:
    rendered = helm.template(
        [
            *USER_SETS, *PROXY, "apiProxy.port=9091", "apiProxy.path=/keptn", "apiProxy.httpTimeoutSeconds=0",
            "apiProxy.maxPayloadBytesKB=0", "apiProxy.eventForwardingPath=/events", "apiProxy.host=127.0.0.2",
        ]
    )  # fmt: skip
    assert {name: rendered.value(name) for name in PROXY_VARIABLES & set(rendered.env)} == {
        "API_PROXY_PORT": "9091",
        "API_PROXY_PATH": "/keptn",
        "API_PROXY_HTTP_TIMEOUT": "0",  # 0 means no timeout: kept, not replaced by the default
        "API_PROXY_MAX_PAYLOAD_BYTES_KB": "0",
        "EVENT_FORWARDING_PATH": "/events",
        "JES_API_PROXY_HOST": "127.0.0.2",
    }


@pytest.mark.parametrize("mode", [USER_SETS, [*NATS, *TASKS_APART]], ids=["remote", "nats"])
def test_api_proxy_for_tasks(helm: Helm, mode: list[str]) -> None:
    namespace = KEPTN if NATS[0] in mode else USER_NAMESPACE
    job_namespace = "keptn-jobs" if NATS[0] in mode else namespace
    rendered = helm.template([*mode, *FOR_TASKS, "jobConfig.extraNamespaces={builds}"], namespace=namespace)
    service = rendered.one("Service", f"{RELEASE}-api-proxy", namespace)
    assert service["spec"]["selector"] == SELECTOR | {"app.kubernetes.io/component": "executor"}
    assert service["spec"]["ports"] == [{"name": "task-proxy", "port": 8082, "targetPort": "task-proxy", "protocol": "TCP"}]
    assert {"name": "task-proxy", "containerPort": 8082, "protocol": "TCP"} in rendered.container["ports"]
    assert rendered.value("JES_API_PROXY_TASK_PORT") == "8082"
    assert rendered.value("JES_API_PROXY_TASK_URL") == f"http://{RELEASE}-api-proxy.{namespace}.svc:8082"
    assert rendered.value("API_PROXY_PORT") == "8081"
    # jes writes each task's token Secret wherever Jobs run: create and delete — nothing that answers
    # with a Secret's data (get, list, watch, and patch or update, whose answer is the whole object)
    for each in (job_namespace, "builds"):
        assert SECRETS_RULE in job_namespace_rules(rendered, each)
    secret_rules = [r for role in rendered.all("Role") for r in role["rules"] if {"secrets", "*"} & set(r["resources"])]
    assert secret_rules and all(not READING_VERBS & set(r["verbs"]) for r in secret_rules)


def test_for_tasks_port_and_release_name(helm: Helm) -> None:
    rendered = helm.template([*USER_SETS, *FOR_TASKS, "apiProxy.forTasks.port=9000"], release="jes-eu")
    assert rendered.value("JES_API_PROXY_TASK_URL") == f"http://jes-eu-{RELEASE}-api-proxy.{USER_NAMESPACE}.svc:9000"
    assert rendered.one("Service", f"jes-eu-{RELEASE}-api-proxy")["spec"]["ports"][0]["port"] == 9000


def test_for_tasks_network_policies_let_job_pods_reach_that_port_only(helm: Helm) -> None:
    rendered = helm.template(
        [
            *USER_SETS, *FOR_TASKS, "jobNamespace=keptn-jobs", "jobConfig.extraNamespaces={builds}",
            "jobConfig.networkPolicy.enabled=true", "jobConfig.networkPolicy.blockCIDRs={10.0.0.0/8}",
            "networkPolicy.ingress.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
        ]
    )  # fmt: skip
    ingress = rendered.one("NetworkPolicy", f"{RELEASE}-ingress")["spec"]["ingress"]
    job_pods = {"app.kubernetes.io/managed-by": RELEASE}
    assert ingress[1] == {
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
             "podSelector": {"matchLabels": job_pods}}
            for ns in ("keptn-jobs", "builds")
        ],
        "ports": [{"protocol": "TCP", "port": 8082}],
    }  # fmt: skip
    assert ingress[0]["ports"] == [{"protocol": "TCP", "port": 8080}]  # metrics, as before
    to_jes = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": USER_NAMESPACE}},
                "podSelector": {"matchLabels": SELECTOR}}],
        "ports": [{"protocol": "TCP", "port": 8082}],
    }  # fmt: skip
    for namespace in ("keptn-jobs", "builds"):
        assert to_jes in rendered.one("NetworkPolicy", f"{RELEASE}-jobs-{USER_NAMESPACE}", namespace)["spec"]["egress"]
    without = helm.template([*USER_SETS, *PROXY, "jobConfig.networkPolicy.enabled=true"])
    assert without.one("NetworkPolicy", f"{RELEASE}-ingress")["spec"]["ingress"] == []
    assert "8082" not in json.dumps(without.one("NetworkPolicy", f"{RELEASE}-jobs"))


def test_for_tasks_without_the_api_proxy_refuses_to_render(helm: Helm) -> None:
    error = helm.template_error([*USER_SETS, "apiProxy.forTasks.enabled=true"])
    assert "apiProxy.forTasks.enabled=true requires apiProxy.enabled=true" in error
    error = helm.template_error([*NATS, "apiProxy.forTasks.enabled=true"], namespace=KEPTN)
    assert "apiProxy.forTasks.enabled=true requires apiProxy.enabled=true" in error


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["apiProxy.port=8080"], "apiProxy.port=8080 is the port of /health"),
        (["apiProxy.forTasks.enabled=true", "apiProxy.forTasks.port=8081"], "apiProxy.forTasks.port=8081 is taken"),
        (["apiProxy.forTasks.enabled=true", "apiProxy.forTasks.port=8080"], "apiProxy.forTasks.port=8080 is taken"),
    ],
)
def test_ports_that_clash_are_refused(helm: Helm, sets: list[str], message: str) -> None:
    assert message in helm.template_error([*USER_SETS, *PROXY, *sets])


@pytest.mark.parametrize(
    "sets", [[*NATS], [*NATS, *FOR_TASKS, *TASKS_APART], [*USER_SETS, *FOR_TASKS], [*USER_SETS, *PROXY]]
)
def test_lint_strict_in_every_mode(helm: Helm, sets: list[str]) -> None:
    helm.lint(sets)
