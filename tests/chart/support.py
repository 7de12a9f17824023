"""Support for the Helm chart tests: the two real helm binaries, rendering, and a fake Kubernetes API.

The helm binaries come from ``JES_HELM3`` / ``JES_HELM4`` (set by ``make unit``) or from
``.tools/helm3/helm`` / ``.tools/helm4/helm`` (``make tools``). A missing binary fails the tests:
the chart is part of the product and must not go untested silently.

``FakeKubeApi`` is a tiny Kubernetes API server on loopback that answers discovery and GETs of the
objects a test puts into it, so ``helm template --dry-run=server`` and ``helm install
--dry-run=server`` can run the chart's ``lookup`` calls (Keptn auto-detection, API endpoints)
exactly as against a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
HELM_TIMEOUT_S = 60

#: helm flavour -> (environment variable, fallback path under the repository)
HELMS: dict[str, tuple[str, str]] = {
    "helm3": ("JES_HELM3", ".tools/helm3/helm"),
    "helm4": ("JES_HELM4", ".tools/helm4/helm"),
}

#: The user's install command for the EU region (hello-world/README.md), as --set arguments.
USER_SETS: tuple[str, ...] = (
    "remoteControlPlane.autoDetect.enabled=false",
    "remoteControlPlane.topicSubscription=sh.keptn.event.sayhello.triggered",
    "remoteControlPlane.api.token=my-keptn-api-token",
    "remoteControlPlane.api.hostname=1.2.3.4",
    "remoteControlPlane.api.protocol=http",
)
USER_NAMESPACE = "keptn-jes-eu"
RELEASE = "job-executor-service"


#: helm must not talk to whatever cluster the developer's kubeconfig points at.
_HELM_ENV = {**os.environ, "KUBECONFIG": "/nonexistent/jes-chart-tests/kubeconfig"}


#: renderings by (helm, arguments); only successful ones are kept
_RENDERED: dict[tuple[str, ...], Rendered] = {}


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


@dataclass(frozen=True)
class Rendered:
    """The documents of one rendering, with small finders."""

    docs: tuple[dict[str, Any], ...]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        found = [
            d
            for d in self.all(kind)
            if (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''} {namespace or ''}, found {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """The jes container's env entries by name (each entry as rendered)."""
        return {e["name"]: e for e in self.container["env"]}

    def value(self, name: str) -> str:
        entry = self.env[name]
        assert "value" in entry, f"{name} is not a plain value: {entry}"
        return str(entry["value"])

    def mounted_secret(self, variable: str, pod: dict[str, Any] | None = None) -> tuple[str, str]:
        """(Secret name, key) of the file a ``*_FILE`` variable names, through the pod's mounts."""
        spec = pod["spec"] if pod is not None else self.deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        path = next(e["value"] for e in container["env"] if e["name"] == variable)
        directory, file = path.rsplit("/", 1)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
        assert mount.get("readOnly") is True and "subPath" not in mount  # subPath mounts are never updated
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
        key = next(item["key"] for item in volume["items"] if item["path"] == file)
        return volume["secretName"], key


@dataclass(frozen=True)
class Helm:
    """One helm binary and the ways the tests call it."""

    flavour: str
    path: Path

    def run(self, *args: str) -> str:
        proc = subprocess.run(
            [str(self.path), *args],
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_S,
            env=_HELM_ENV,
        )
        if proc.returncode != 0:
            raise HelmError(proc.stderr)
        return proc.stdout

    def template(
        self,
        sets: Sequence[str] = USER_SETS,
        *,
        values_files: Sequence[Path] = (),
        namespace: str = USER_NAMESPACE,
        release: str = RELEASE,
        extra: Sequence[str] = (),
    ) -> Rendered:
        args = [
            "template",
            release,
            str(CHART),
            "-n",
            namespace,
            *self._value_args(sets, values_files),
        ]
        return self._render((*args, *extra))

    def _render(self, args: tuple[str, ...]) -> Rendered:
        """helm template, remembered per argument list: the chart does not change during a run."""
        if "--dry-run=server" in args:  # the answer depends on the API server's objects
            return Rendered(tuple(d for d in yaml.safe_load_all(self.run(*args)) if d))
        key = (str(self.path), *args)
        if key not in _RENDERED:
            _RENDERED[key] = Rendered(tuple(d for d in yaml.safe_load_all(self.run(*args)) if d))
        return _RENDERED[key]

    def install_dry_run(
        self, api_url: str, sets: Sequence[str] = USER_SETS, *, namespace: str = USER_NAMESPACE
    ) -> tuple[Rendered, str]:
        """`helm install --dry-run=server` against a (fake) API server: the manifests and NOTES."""
        out = self.run(
            "install", RELEASE, str(CHART), "-n", namespace, "--dry-run=server", "--disable-openapi-validation",
            "--kube-apiserver", api_url, "-o", "json", *self._value_args(sets, ()),
        )  # fmt: skip
        release = json.loads(out)
        texts = [release["manifest"], *(hook["manifest"] for hook in release.get("hooks") or [])]
        docs = tuple(d for text in texts for d in yaml.safe_load_all(text) if d)
        return Rendered(docs), str(release["info"].get("notes", ""))

    def template_error(self, sets: Sequence[str] = (), **kwargs: Any) -> str:
        with pytest.raises(HelmError) as caught:
            self.template(sets, **kwargs)
        return str(caught.value)

    def lint(self, sets: Sequence[str] = USER_SETS, values_files: Sequence[Path] = ()) -> str:
        return self.run("lint", "--strict", str(CHART), *self._value_args(sets, values_files))

    @staticmethod
    def _value_args(sets: Sequence[str], values_files: Sequence[Path]) -> list[str]:
        args: list[str] = []
        for path in values_files:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        return args


def helm_binary(flavour: str) -> Path:
    env_name, fallback = HELMS[flavour]
    path = Path(os.environ.get(env_name) or REPO / fallback)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"{flavour} not found at {path}: run `make tools` (sh scripts/get-helm.sh .tools) or set {env_name}"
        )
    return path


# ---------------------------------------------------------------------------------------------
# A fake Kubernetes API server for `lookup`.

#: group/version -> [(resource, kind)] the fake serves (discovery only lists these).
_RESOURCES: dict[str, list[tuple[str, str]]] = {
    "v1": [
        ("services", "Service"), ("secrets", "Secret"), ("serviceaccounts", "ServiceAccount"),
        ("pods", "Pod"), ("endpoints", "Endpoints"), ("configmaps", "ConfigMap"),
    ],
    "apps/v1": [("deployments", "Deployment")],
    "rbac.authorization.k8s.io/v1": [("roles", "Role"), ("rolebindings", "RoleBinding")],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy")],
    "discovery.k8s.io/v1": [("endpointslices", "EndpointSlice")],
}  # fmt: skip


@dataclass
class FakeKubeApi:
    """Objects by (group/version, resource, namespace, name); lists are filtered by namespace."""

    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def add(self, group_version: str, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(group_version, resource, meta.get("namespace", ""), meta["name"])] = obj

    def answer(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}  # fmt: skip
        if path == "/apis":
            groups = [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                for gv in _RESOURCES if "/" in gv
            ]  # fmt: skip
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        parts = path.strip("/").split("/")
        prefix = 1 if parts[0] == "api" else 2
        group_version = "/".join(parts[1 : prefix + 1])
        if group_version not in _RESOURCES:
            return None
        rest = parts[prefix + 1 :]
        if not rest:
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                    "resources": [{"name": r, "singularName": k.lower(), "namespaced": True, "kind": k,
                                   "verbs": ["get", "list"]} for r, k in _RESOURCES[group_version]]}  # fmt: skip
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if len(rest) == 2:
            return self.objects.get((group_version, rest[0], namespace, rest[1]))
        items = [o for (gv, r, ns, _), o in self.objects.items()
                 if gv == group_version and r == rest[0] and namespace in ("", ns)]  # fmt: skip
        return {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}


def _handler(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = api.answer(self.path.split("?")[0])
            status = 200
            if body is None:
                status = 404
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve(api: FakeKubeApi) -> ThreadingHTTPServer:
    """A server for ``api`` on a free loopback port (sets ``api.url``); the caller shuts it down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server
