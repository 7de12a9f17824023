"""The ``jes`` command."""

from __future__ import annotations

import click

from jes import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jes")
def main() -> None:
    """jes - a Keptn job executor service."""
