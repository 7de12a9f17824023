"""Building the runner the settings ask for (imported lazily: each pulls in its own client)."""

from __future__ import annotations

import importlib

from jes.runner import base
from jes.settings import Settings


def build_runner(settings: Settings) -> base.Runner:
    if settings.runner == "local":
        local = importlib.import_module("jes.runner.local.runner")
        runner: base.Runner = local.LocalRunner.from_settings(settings)
    else:
        kubernetes = importlib.import_module("jes.runner.kubernetes.runner")
        runner = kubernetes.KubernetesRunner.from_settings(settings)
    return runner
