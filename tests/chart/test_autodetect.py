"""remoteControlPlane.autoDetect: Helm `lookup` of Keptn's gateway and token, against a fake API server.

`helm template` has no cluster, so auto-detection must fail there with a clear message; with
`--dry-run=server` (or a real install) helm asks the API server, here the loopback fake.
"""

from __future__ import annotations

import base64

from tests.chart.support import RELEASE, USER_NAMESPACE, FakeKubeApi, Helm, Rendered

#: The auto-detect install command of the original README.
AUTODETECT_SETS = (
    "remoteControlPlane.autoDetect.enabled=true",
    "remoteControlPlane.topicSubscription=sh.keptn.event.sayhello.triggered",
    "remoteControlPlane.api.token=",
    "remoteControlPlane.api.hostname=",
    "remoteControlPlane.api.protocol=",
)
KEPTN_TOKEN = "keptn-generated-token"


def add_keptn(api: FakeKubeApi, namespace: str = "keptn", part_of: str = "keptn-keptn", token: bool = True) -> None:
    api.add(
        "v1",
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "api-gateway-nginx",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/part-of": part_of, "app.kubernetes.io/name": "api-gateway-nginx"},
            },
            "spec": {"ports": [{"port": 80}]},
        },
    )
    if token:
        api.add(
            "v1",
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "keptn-api-token", "namespace": namespace},
                "data": {"keptn-api-token": base64.b64encode(KEPTN_TOKEN.encode()).decode()},
            },
        )


def server_args(api: FakeKubeApi) -> list[str]:
    """Let helm ask the fake API server (lookup); it serves no OpenAPI documents to validate with."""
    return ["--dry-run=server", "--disable-openapi-validation", "--kube-apiserver", api.url]


def server_template(helm: Helm, api: FakeKubeApi, *sets: str) -> Rendered:
    return helm.template([*AUTODETECT_SETS, *sets], extra=server_args(api))


def test_helm_template_cannot_auto_detect(helm: Helm) -> None:
    error = helm.template_error(AUTODETECT_SETS)
    assert "Unable to detect Keptn in the kubernetes cluster" in error
    assert "helm template" in error and "--dry-run=server" in error


def test_auto_detect_finds_the_gateway_and_token(helm: Helm, kube_api: FakeKubeApi) -> None:
    add_keptn(kube_api, "keptn")
    add_keptn(kube_api, "other-app", part_of="something-else")  # not Keptn's
    rendered = server_template(helm, kube_api)
    assert rendered.value("KEPTN_API_ENDPOINT") == "http://api-gateway-nginx.keptn/api"
    name, key = rendered.mounted_secret("KEPTN_API_TOKEN_FILE")
    secret = rendered.one("Secret", name)
    assert base64.b64decode(secret["data"][key]).decode() == KEPTN_TOKEN


def test_auto_detect_in_a_given_namespace(helm: Helm, kube_api: FakeKubeApi) -> None:
    add_keptn(kube_api, "keptn")
    add_keptn(kube_api, "keptn-staging")
    error = helm.template_error(AUTODETECT_SETS, extra=server_args(kube_api))
    assert "Detected more than one Keptn installation" in error
    assert "keptn, keptn-staging" in error
    rendered = server_template(helm, kube_api, "remoteControlPlane.autoDetect.namespace=keptn-staging")
    assert rendered.value("KEPTN_API_ENDPOINT") == "http://api-gateway-nginx.keptn-staging/api"


def test_auto_detect_without_the_token_secret(helm: Helm, kube_api: FakeKubeApi) -> None:
    add_keptn(kube_api, "keptn", token=False)
    error = helm.template_error(AUTODETECT_SETS, extra=server_args(kube_api))
    assert "Please provide an api token" in error and "keptn-api-token" in error


def test_auto_detect_with_the_default_hostname_and_protocol(helm: Helm, kube_api: FakeKubeApi) -> None:
    """Another command of the original docs: only autoDetect.enabled and the topics."""
    add_keptn(kube_api, "keptn")
    rendered = helm.template(
        ["remoteControlPlane.autoDetect.enabled=true", "subscription.pubsubTopic=sh.keptn.event.remote-task.triggered"],
        extra=server_args(kube_api),
    )
    assert rendered.value("KEPTN_API_ENDPOINT") == "http://api-gateway-nginx.keptn/api"
    assert rendered.value("PUBSUB_TOPIC") == "sh.keptn.event.remote-task.triggered"


def test_install_dry_run_notes_and_api_egress(helm: Helm, kube_api: FakeKubeApi) -> None:
    add_keptn(kube_api, "keptn")
    kube_api.add(
        "discovery.k8s.io/v1",
        "endpointslices",
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["172.18.0.2"]}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        },
    )
    rendered, notes = helm.install_dry_run(
        kube_api.url, [*AUTODETECT_SETS, "networkPolicy.egress.enabled=true", "location=EU"]
    )
    egress = rendered.one("NetworkPolicy", f"{RELEASE}-egress")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [{"protocol": "TCP", "port": 6443}]} in egress
    assert rendered.one("Pod", f"{RELEASE}-test-api-connection")["spec"]["containers"][0]["args"] == ["check"]
    assert "http://api-gateway-nginx.keptn/api" in notes
    assert "sh.keptn.event.sayhello.triggered" in notes
    assert f"kubectl -n {USER_NAMESPACE} logs deployment/{RELEASE}" in notes
    assert f"helm test -n {USER_NAMESPACE} {RELEASE}" in notes
    assert "Integrations" in notes and "location EU" in notes
    assert "WARNING" not in notes


def test_notes_warn_about_what_cannot_work(helm: Helm, kube_api: FakeKubeApi) -> None:
    _, notes = helm.install_dry_run(
        kube_api.url,
        [
            "remoteControlPlane.api.token=t0ken",
            "remoteControlPlane.api.hostname=keptn.example.com",
            "networkPolicy.egress.enabled=true",
            "image.repository=docker.io/keptncontrib/job-executor-service",
        ],
    )
    assert "Kubernetes API endpoints could not be detected" in notes
    assert "keptn.example.com could not be resolved" in notes
    assert "is the original Go service" in notes


def test_auto_detect_with_oauth_needs_no_token(helm: Helm, kube_api: FakeKubeApi) -> None:
    add_keptn(kube_api, "keptn", token=False)
    rendered = server_template(
        helm,
        kube_api,
        "remoteControlPlane.api.authMode=oauth",
        "remoteControlPlane.api.oauth.clientId=jes",
        "remoteControlPlane.api.oauth.clientSecret=s3cret",
        "remoteControlPlane.api.oauth.clientDiscovery=https://sso.example.com/.well-known/openid-configuration",
        "remoteControlPlane.api.oauth.scopes=keptn:api",
    )
    assert rendered.value("KEPTN_API_ENDPOINT") == "http://api-gateway-nginx.keptn/api"
    assert "KEPTN_API_TOKEN_FILE" not in rendered.env
    assert set(rendered.one("Secret")["data"]) == {"oauth-client-secret"}
