"""``hub bench``: measured figures, printed as JSON. Plugins add their own subcommands to the group."""

from __future__ import annotations

import click

from hub.bench.changes import bench_changes
from hub.bench.chaos import bench_chaos
from hub.bench.e2e import bench_e2e
from hub.bench.priority import bench_priority
from hub.bench.scaleout import bench_scaleout
from hub.bench.store import bench_store


@click.group()
def bench() -> None:
    """Benchmarks that print JSON figures."""


bench.add_command(bench_store)
bench.add_command(bench_e2e)
bench.add_command(bench_changes)
bench.add_command(bench_chaos)
bench.add_command(bench_priority)
bench.add_command(bench_scaleout)
