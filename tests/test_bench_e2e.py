"""``hub bench e2e`` on a small catalog: both phases run end to end and report their figures with no failures."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import with_plugins


@pytest.mark.slow
def test_bench_e2e_reports_both_phases_with_no_failures():
    result = CliRunner().invoke(with_plugins(), ["bench", "e2e", "--products", "30", "--sales", "10",
                                                 "--limited-products", "10", "--limited-sales", "4", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["peak_rss_mb"] > 0
    for phase, (products, sales) in (("rate_limits_on", (10, 4)), ("rate_limits_off", (30, 10))):
        run = figures[phase]
        assert run["failed"] == 0 and run["quarantined"] == 0, run["failures"]
        catalog, sold = run["catalog"], run["sales"]
        assert catalog["seeded"]["bling.products"] == products
        assert 0 < catalog["products_in_sink"] <= products
        assert catalog["seconds"] > 0 and catalog["products_per_s"] > 0
        assert catalog["api_calls_per_product"] > 0 and not catalog["stream_errors"]
        assert sold["sales_in_sink"] == sales and not sold["stream_errors"]
        assert sold["api_calls_per_sale"] > 0
        assert 0 <= sold["latency_p50_s"] <= sold["latency_p95_s"]
        assert set(run["throttled"]) == {"bling", "cplug"} and run["http_429"] >= 0
        assert run["peak_rss_mb"] > 0
    assert figures["rate_limits_off"]["sandboxes"]["bling"]["rate_per_second"] is None
