"""``hub bench priority`` at CI size: POS sales rung during a first catalog sync on the same Bling account all
reach Bling through a running `hub run`, the catalog goes on meanwhile, and nothing fails; counts only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import with_plugins


@pytest.mark.slow
def test_bench_priority_reports_every_sale_in_the_sink_and_the_catalog_still_moving() -> None:
    result = CliRunner().invoke(with_plugins(), [
        "bench", "priority", "--products", "40", "--warm", "4", "--duration", "3", "--interval", "1",
        "--read-every", "1", "--rate", "40", "--priority", "on", "--finish", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])["priority_on"]
    assert figures["failed"] == 0, figures
    assert figures["settled"] and figures["sales_pushed"] == figures["sales_rung"] >= 3, figures
    assert figures["sales_in_sink"] >= figures["sales_rung"], "every sale rung reached Bling"
    assert figures["sale_latency_p95_s"] is not None, figures
    assert figures["catalog_finished"], "the first sync ended and its writes were done"
    assert figures["catalog_writes_done_total"] >= 20, "the big catalog reached the POS"
