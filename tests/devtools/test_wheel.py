"""The built wheel, installed without a checkout: jes and its seed data inside, no test doubles or
tests; ``jes control-plane --hello-world`` serves the packaged hello-world and ``jes demo`` runs.

No network: the wheel is built without build isolation (setuptools and wheel come with the test
extras), installed with ``--no-deps --target`` and run by an empty venv's python that reaches the
dependencies through ``PYTHONPATH``. ``.pth`` files are not read from ``PYTHONPATH`` entries, so the
editable install of this checkout cannot serve a module the wheel lacks.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jes.devtools.controlplane import webpage

REPO = Path(__file__).resolve().parents[2]
SEED_FILES = (
    "jes/devtools/data/control-plane/my-first-project/shipyard.yaml",
    "jes/devtools/data/control-plane/my-first-project/dev/service1/resources/job/config.yaml",
    "jes/devtools/data/job/regions.yaml",
)
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    python: Path
    site: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.python), *args]
        return subprocess.run(command, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO / "jes", source / "jes", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(source)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # a quiet install: no deprecation screens from the build backend (they preceded `make demo`'s output)
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    (built,) = (root / "dist").glob("jes-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    site = root / "site"
    done = subprocess.run([*PIP, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=60)
    dependencies = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *dependencies])
    (root / "cwd").mkdir()
    return Installed(python=root / "venv" / "bin" / "python", site=site, cwd=root / "cwd", env=env)


def test_the_wheel_holds_jes_and_its_seed_data_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/", 1)[0] for name in names} == {"jes", "jes-0.1.0.dist-info"}
    assert not [n for n in names if n.startswith(("fakes/", "tests/")) or "/fakes/" in n or "/tests/" in n]
    assert set(SEED_FILES) <= set(names)
    assert {"jes/py.typed", "jes/devtools/doubles/server.py", "jes/devtools/controlplane/server.py"} <= set(names)
    assert {f"jes/devtools/controlplane/static/{name}" for name in webpage.ASSETS} <= set(names)  # the page


def test_the_installed_jes_is_the_wheels_and_has_no_doubles_of_the_tests(installed: Installed) -> None:
    script = (
        "import importlib.util, jes, jes.devtools.examples as e; "
        "print(jes.__file__); print(e.HELLO_WORLD_SEED); print(importlib.util.find_spec('fakes'))"
    )
    done = installed.run("-c", script)
    assert done.returncode == 0, done.stderr
    package, seed, fakes = done.stdout.splitlines()
    assert Path(package).is_relative_to(installed.site) and Path(seed).is_relative_to(installed.site)
    assert fakes == "None"


def test_jes_control_plane_serves_the_packaged_hello_world(installed: Installed) -> None:
    command = [str(installed.python), "-m", "jes.cli", "control-plane", "--port", "0", "--token", "t", "--hello-world"]
    with subprocess.Popen(command, cwd=installed.cwd, env=installed.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:  # fmt: skip
        try:
            assert process.stdout is not None and process.stderr is not None
            first = process.stdout.readline()
            url = first.rsplit(" ", 1)[-1].strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/api"), first + process.stderr.read()
            headers = {"x-token": "t"}
            project = httpx.get(f"{url}/controlPlane/v1/project/my-first-project", headers=headers, timeout=5)
            config = httpx.get(
                f"{url}/resource-service/v1/project/my-first-project/stage/dev/service/service1/resource/job%252Fconfig.yaml",
                headers=headers,
                timeout=5,
            )
            page = httpx.get(url.removesuffix("/api") + "/", timeout=5)
            script = httpx.get(url.removesuffix("/api") + "/page/main.js", timeout=5)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
            out = process.stdout.read()
        finally:
            process.kill()
    assert project.status_code == 200 and [s["stageName"] for s in project.json()["stages"]] == ["dev"]
    assert config.status_code == 200
    assert page.status_code == 200 and "/page/main.js" in page.text
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert base64.b64decode(config.json()["resourceContent"]) == (REPO / "examples/job/config.yaml").read_bytes()
    assert "project my-first-project: stages dev; services service1" in out
    assert process.returncode == 0 and "local control plane stopped" in out


def test_jes_demo_runs_from_the_wheel(installed: Installed) -> None:
    assert installed.run("-m", "jes.cli", "demo", "--help").returncode == 0
    done = installed.run("-m", "jes.cli", "demo", "--regions")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Demo finished: both sequences passed." in done.stdout
    assert "by keptn-jes-apac/APAC" in done.stdout and "by keptn-jes-eu/EU" in done.stdout
