"""The examples jes ships: the hello-world that ``jes demo`` and ``jes control-plane --hello-world``
seed the local control plane with.

They are copies of the repository's ``examples/`` (the user-facing ones the README links; a test
keeps the two byte for byte equal), kept inside the package so an installed wheel has them.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
#: A seed directory (see ``jes control-plane --seed``): project my-first-project, stage dev,
#: service service1, sequence1 → task sayhello, and the service's job/config.yaml.
HELLO_WORLD_SEED = DATA_DIR / "control-plane"
#: The hello-world's job/config.yaml with ``locations`` on its actions (``jes demo --regions``).
REGIONS_CONFIG = DATA_DIR / "job" / "regions.yaml"
#: Where the config sits in the seed.
SEED_CONFIG = Path("my-first-project/dev/service1/resources/job/config.yaml")
