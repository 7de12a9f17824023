"""The examples jes ships: the hello-world that ``jes demo`` and ``jes control-plane --hello-world``
seed the local control plane with.

They are copies of the repository's ``examples/`` (the user-facing ones the README links; a test
keeps the two byte for byte equal), kept inside the package so an installed wheel has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
#: A seed directory (see ``jes control-plane --seed``): project my-first-project, stage dev,
#: service service1, sequence1 → task sayhello, and the service's job/config.yaml.
HELLO_WORLD_SEED = DATA_DIR / "control-plane"
#: The hello-world's job/config.yaml with ``locations`` on its actions (``jes demo --regions``).
REGIONS_CONFIG = DATA_DIR / "job" / "regions.yaml"
#: Where the config sits in the seed.
SEED_CONFIG = Path("my-first-project/dev/service1/resources/job/config.yaml")


def hello_world_trigger(location: str) -> dict[str, Any]:
    """The hello-world's trigger body for a region (APAC or EU), as the users' trigger-<region>.json."""
    return {
        "data": {
            "labels": {"foo": "bar - labels are optional"},
            "project": "my-first-project",
            "service": "service1",
            "stage": "dev",
            "sayhello": {"location": location},
        },
        "source": "postman",
        "type": "sh.keptn.event.dev.sequence1.triggered",
        "specversion": "1.0",
        "shkeptnspecversion": "0.2.3",
    }
