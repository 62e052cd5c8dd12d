"""``hub bench priority`` at CI size: POS sales rung during a first catalog sync on the same Bling account all
reach Bling through a running `hub run`, the catalog goes on meanwhile, and nothing fails; the same with the first
sync made by another tenant on its own accounts (``--neighbour-products``). Counts only."""

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


@pytest.mark.slow
def test_bench_priority_neighbour_syncs_on_its_own_accounts_while_every_sale_reaches_bling() -> None:
    result = CliRunner().invoke(with_plugins(), [
        "bench", "priority", "--neighbour-products", "60", "--neighbour-rate", "40", "--warm", "4",
        "--duration", "6", "--interval", "1", "--read-every", "1", "--rate", "40", "--priority", "on", "--finish",
        "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])["priority_on"]
    assert figures["failed"] == 0, figures
    assert figures["settled"] and figures["sales_pushed"] == figures["sales_rung"] >= 3, figures
    assert figures["sales_in_sink"] >= figures["sales_rung"], "every sale rung reached Bling"
    assert figures["sale_rung_to_sink_p95_s"] is not None, figures
    assert figures["catalog_products"] == figures["catalog_writes_queued"] == 0, "the first tenant's catalog rests"
    neighbour = figures["neighbour"]
    assert neighbour["tenant"] == "loja-neighbour" and neighbour["products"] == 60, neighbour
    assert figures["neighbour_catalog_finished"], "the neighbour's first sync ended and its writes were done"
    assert figures["neighbour_catalog_writes_done_total"] >= 60, "the neighbour's catalog reached its own POS"
    calls = sum(figures["neighbour_account_calls"].values())
    assert figures["neighbour_account_calls"]["bulk"] > 0, figures
    served = figures["account_requests_served"]
    # every call the hub logged on the neighbour's account in the phase reached the neighbour's own Bling sandbox
    # (requests and token calls), and every call on the first tenant's account its own
    assert served[neighbour["account"]] >= calls > 0, figures
    assert served["loja/bling"] >= sum(figures["shared_account_calls"].values()), figures
