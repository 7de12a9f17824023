"""Serving: lifecycle, addresses, prefix, HTTPS, seeding, and ``run_control_plane`` in a process."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jes import errors
from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers


def test_start_and_stop(make_client: Callable[..., httpx.Client]) -> None:
    with server.LocalControlPlane(token="t") as cp:
        assert cp.url.startswith("http://127.0.0.1:") and cp.url.endswith("/api")
        assert cp.token == "t"
        assert make_client(cp, token="t").get("/v1/metadata").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(cp.url + "/v1/metadata", timeout=2)


def test_a_busy_port_is_a_settings_error() -> None:
    with server.LocalControlPlane() as cp:
        port = int(cp.url.split(":")[2].split("/")[0])
        with pytest.raises(errors.SettingsError, match="cannot listen"):
            server.LocalControlPlane(port=port).start()


def test_a_path_prefix(
    make_cp: Callable[..., server.LocalControlPlane], make_client: Callable[..., httpx.Client]
) -> None:
    cp = make_cp(api_prefix="/keptn/api")
    client = make_client(cp)

    assert cp.url.endswith("/keptn/api")
    assert helpers.send(client, helpers.hello())
    cp.wait_idle()
    assert len(helpers.triggered(client, helpers.SAYHELLO_TRIGGERED)) == 1
    path = "/resource-service/v1/project/my-first-project/stage/dev/service/service1/resource/job%252Fconfig.yaml"
    assert client.get(path).status_code == 200
    assert httpx.get(cp.base_url + "/api/v1/metadata", headers={"x-token": helpers.TOKEN}).status_code == 404


def test_https(make_cp: Callable[..., server.LocalControlPlane], tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    cp = make_cp(ssl_certfile=cert, ssl_keyfile=key)

    assert cp.url.startswith("https://")
    headers = {"x-token": helpers.TOKEN}
    trusting = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(cp.url + "/v1/metadata", headers=headers, verify=trusting).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(cp.url + "/v1/metadata", headers=headers)


def test_the_example_seed(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    project = client.get("/controlPlane/v1/project/my-first-project").json()

    assert cp.seeded_projects == ["my-first-project"]
    assert project["stages"] == [{"stageName": "dev", "services": [{"serviceName": "service1"}]}]
    config = helpers.SEED / "my-first-project/dev/service1/resources/job/config.yaml"
    assert config.read_text().startswith("# job/config.yaml of the hello-world")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


SHIPYARD = helpers.PIPELINE_SHIPYARD


def test_a_seed_with_every_level(tmp_path: Path, make_client: Callable[..., httpx.Client]) -> None:
    seed = write(
        tmp_path,
        {
            "proj/shipyard.yaml": SHIPYARD,
            "proj/resources/job/config.yaml": "project",
            "proj/dev/resources/job/config.yaml": "stage",
            "proj/dev/api/resources/job/config.yaml": "service",
            "proj/prod/web/.keep": "",
        },
    )
    with server.LocalControlPlane(seed_dir=seed, token=helpers.TOKEN) as cp:
        client = make_client(cp)
        base = "/resource-service/v1/project/proj"
        bodies = [
            client.get(f"{base}/resource/job%252Fconfig.yaml"),
            client.get(f"{base}/stage/dev/resource/job%252Fconfig.yaml"),
            client.get(f"{base}/stage/dev/service/api/resource/job%252Fconfig.yaml"),
            client.get(f"{base}/stage/prod/service/web/resource"),
        ]
    assert [b.status_code for b in bodies] == [200, 200, 200, 200]
    assert bodies[3].json()["resources"] == []
    assert sorted(cp.state.services("proj")) == ["api", "web"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"proj/resources/x": "x"}, "shipyard.yaml: missing"),
        ({"proj/shipyard.yaml": "kind: Shipyard\n"}, "invalid shipyard"),
        ({"proj/shipyard.yaml": "a: [b"}, "not valid YAML"),
        ({"proj/shipyard.yaml": SHIPYARD, "proj/staging/x/resources/a": "a"}, "stage 'staging' is not in"),
        ({"proj/shipyard.yaml": SHIPYARD.replace("name: test", "name: te.st")}, "no dots"),
    ],
)
def test_seed_problems_are_settings_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(errors.SettingsError, match=message) as caught:
        server.LocalControlPlane(seed_dir=write(tmp_path, files))

    assert str(tmp_path) in str(caught.value)


def test_a_missing_seed_dir(tmp_path: Path) -> None:
    with pytest.raises(errors.SettingsError, match="not a directory"):
        server.LocalControlPlane(seed_dir=tmp_path / "nope")


def test_run_control_plane_serves_until_interrupted(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from jes.devtools.controlplane import server
        server.run_control_plane(host="127.0.0.1", port=0, token="secret-token-x", seed_dir={str(helpers.SEED)!r})
        """
    )
    command = [sys.executable, "-c", script]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=helpers.REPO
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            first = process.stdout.readline()
            url = first.rsplit(" ", 1)[-1].strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/api"), first
            headers = {"x-token": "secret-token-x", "Content-Type": "application/json"}
            reply = httpx.post(f"{url}/v1/event", headers=headers, content=json.dumps(helpers.HELLO_APAC), timeout=5)
            assert reply.status_code == 200
            poll = f"{url}/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}"
            events: list[object] = []
            for _ in range(100):
                events = httpx.get(poll, headers=headers, timeout=5).json()["events"]
                if events:
                    break
            assert len(events) == 1
            process.send_signal(signal.SIGINT)
            process.wait(timeout=10)
            out, err = process.stdout.read(), process.stderr.read()
        finally:
            process.kill()
    banner = first + out
    assert process.returncode == 0, err
    assert "secret-token-x" not in banner, "a non-default token is never printed"
    assert "sh.keptn.event.dev.sequence1.triggered" in banner
    assert "local control plane stopped" in out
