"""The ``hub`` command line."""

from __future__ import annotations

import click

from hub.bench import bench
from hub.cli import admin, operate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub-core")
def cli() -> None:
    """hub: connect Bling, Amazon, Plugg.to, Zydon and CPlug through one canonical store."""


for command in (*admin.COMMANDS, *operate.COMMANDS, bench):
    cli.add_command(command)


def main() -> None:
    from hub.registry import get_registry

    registry = get_registry()
    registry.broadcast("register_commands", cli=cli)
    cli()
