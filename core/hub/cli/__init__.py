"""The ``hub`` command line."""

from __future__ import annotations

import click

from hub.bench import bench
from hub.cli import admin, control, operate, serve
from hub.cli.plugin import plugin


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub-core")
def cli() -> None:
    """hub: connect Bling, Amazon, Plugg.to, Zydon and CPlug through one canonical store."""


for command in (*admin.COMMANDS, *operate.COMMANDS, *control.COMMANDS, *serve.COMMANDS, bench, plugin):
    cli.add_command(command)

_plugged = False


def with_plugins() -> click.Group:
    """The CLI with the commands installed plugins add (``hub auth bling``, ``hub bench bling-pull``...)."""
    global _plugged
    if not _plugged:
        from hub.registry import get_registry

        get_registry().broadcast("register_commands", cli=cli)
        _plugged = True
    return cli


def main() -> None:
    with_plugins()()
