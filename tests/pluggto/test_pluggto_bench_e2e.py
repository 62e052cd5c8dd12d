"""``hub bench e2e`` on the Plugg.to <-> Bling demo, CI-sized: the catalog route (Bling -> Plugg.to) and the orders
route (Plugg.to -> Bling, with Bling's NF-e back to the Plugg.to order) run end to end in sandboxes of their own
processes and report calls per product and per order, order -> Bling latency and peak RSS, with no failure."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import with_plugins
from hub_pluggto.plugin import ROUTES


@pytest.mark.slow
def test_bench_e2e_on_the_pluggto_bling_pair_reports_calls_latency_and_rss_with_no_failures() -> None:
    result = CliRunner().invoke(with_plugins(), [
        "bench", "e2e", "--scenario", str(ROUTES / "bling-demo.yaml"), "--products", "12", "--sales", "4",
        "--limited-products", "0", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    run = figures["rate_limits_off"]
    assert run["failed"] == 0 and run["quarantined"] == 0, run["failures"]
    catalog, orders = run["catalog"], run["orders"]
    assert catalog["seeded"]["bling.products"] == 12 and 0 < catalog["products_in_sink"] <= 12
    assert catalog["api_calls_per_product"] > 0 and catalog["api_calls"]["pluggto"] >= catalog["products_in_sink"]
    assert orders["seeded"] == {"pluggto.sales": 4} and orders["sales_in_sink"] == 4
    assert orders["api_calls_per_sale"] > 0 and not orders["stream_errors"]
    assert 0 <= orders["latency_p50_s"] <= orders["latency_p95_s"]
    assert set(run["throttled"]) == {"bling", "pluggto"} and figures["peak_rss_mb"] > 0
