"""The hello-world shipped inside jes (for an installed ``jes demo`` and ``jes control-plane
--hello-world``) is the repository's examples/, byte for byte: the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from jes.devtools import examples

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_packaged_seed_is_the_examples_seed() -> None:
    packaged = _files(examples.HELLO_WORLD_SEED)
    assert packaged and packaged == _files(REPO / "examples" / "control-plane")


def test_the_packaged_regions_config_is_the_examples_one() -> None:
    assert examples.REGIONS_CONFIG.read_bytes() == (REPO / "examples" / "job" / "regions.yaml").read_bytes()
    assert (examples.HELLO_WORLD_SEED / examples.SEED_CONFIG).is_file()


def test_the_package_data_holds_nothing_else() -> None:
    shipped = {str(p.relative_to(examples.DATA_DIR)) for p in examples.DATA_DIR.rglob("*") if p.is_file()}
    seed = {f"control-plane/{name}" for name in _files(examples.HELLO_WORLD_SEED)}
    assert shipped == seed | {"job/regions.yaml"}
