"""Building the runner the settings ask for (imported lazily: each pulls in its own client)."""

from __future__ import annotations

import importlib
from typing import Any

from jes.runner import base
from jes.settings import Settings


def kube_client_for(settings: Settings) -> Any:
    """The process's one Kubernetes client when the settings need one (the kubernetes runner and
    the Lease ledger), else None. Raises :class:`jes.errors.KubeConfigError` without a cluster."""
    if settings.runner == "local":
        return None
    kube = importlib.import_module("jes.clients.kube")
    return kube.connect()


def build_runner(settings: Settings, kube: Any) -> base.Runner:
    """The runner of ``settings.runner``; the kubernetes one on ``kube``, the process's client from
    :func:`kube_client_for` (whoever built it closes it)."""
    if settings.runner == "local":
        local = importlib.import_module("jes.runner.local.runner")
        runner: base.Runner = local.LocalRunner.from_settings(settings)
    else:
        kubernetes = importlib.import_module("jes.runner.kubernetes.runner")
        runner = kubernetes.KubernetesRunner.from_settings(settings, kube)
    return runner
