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
