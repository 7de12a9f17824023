"""Fixtures of the end-to-end tests: a local control plane seeded with the hello-world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jes.keptn.controlplane.server import LocalControlPlane
from tests.service.support import SEED, TOKEN


@pytest.fixture
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED) as control_plane:
        yield control_plane
