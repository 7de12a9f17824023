"""The README says what the code does: generated tables are current, examples and commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from jes import cli, settings
from jes.devtools import docgen

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_generated_reference_tables_are_current() -> None:
    assert docgen.render(README) == README, "run: python -m jes.devtools.docgen"


def test_every_setting_is_documented() -> None:
    for name in settings.ENV_NAMES.values():
        assert f"`{name}`" in README, name


def test_quick_start_is_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_every_command_in_the_table_exists() -> None:
    table = README.split("## The `jes` command", 1)[1].split("\n\n", 2)[1]
    names = set(re.findall(r"^\| `jes ([a-z-]+)", table, re.M))
    assert names == set(cli.main.list_commands(None)) - {"copy-files"}  # type: ignore[arg-type]


def test_linked_files_exist() -> None:
    for link in re.findall(r"\]\(((?:examples|docs|bench|chart)/[^)#]+)\)", README):
        assert (REPO / link).exists(), link


def test_source_paths_named_in_the_docs_exist() -> None:
    """Modules move (the house was reorganised once): every `jes/...`, `fakes/...` or
    `tests/...` path and every `jes.a.b` module the README or docs/ name must exist."""
    texts = {path.name: path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}
    missing = []
    for name, text in texts.items():
        for path in re.findall(r"`((?:jes|fakes|tests|bench)/[\w/.-]*)", text):
            if not (REPO / path.rstrip("/")).exists():
                missing.append(f"{name}: {path}")
        for module in re.findall(r"(?<![\w.])(jes(?:\.\w+)+)\b", text):
            parts = module.split(".")
            found = any(
                (REPO / Path(*parts[:n])).with_suffix(".py").exists() or (REPO / Path(*parts[:n])).is_dir()
                for n in range(len(parts), 1, -1)
                if n == len(parts) or n == len(parts) - 1  # a module, or a name in one
            )
            if not found and not module.endswith(".sh"):
                missing.append(f"{name}: {module}")
    assert not missing, missing
