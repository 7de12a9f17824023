"""Fixtures shared by every test directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

REPO = Path(__file__).resolve().parent.parent
K8S_VERSIONS = ("1.31.0", "1.33.0")


def k8s_valid(manifest: dict[str, Any]) -> None:
    """Fail the test unless the manifest passes `kubernetes-validate --strict` on each version."""
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment: start every test without the executor's variables."""
    from jes import settings

    for name in settings.ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def nats(tmp_path: Path) -> Any:
    """A real nats-server with JetStream (as Keptn's chart runs it) on a free loopback port."""
    from tests.natsserver import nats_server

    with nats_server(tmp_path / "nats-store") as server:
        yield server
