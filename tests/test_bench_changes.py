"""``hub bench changes`` at CI size: Bling stock changes reach Zydon through a running `hub run` fed by Bling's
webhooks, every change is carried, and a burst over a few products is drained with no failure."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import with_plugins


@pytest.mark.slow
def test_bench_changes_reports_latency_calls_and_the_burst_with_no_failure() -> None:
    result = CliRunner().invoke(with_plugins(), [
        "bench", "changes", "--products", "12", "--changes", "4", "--interval", "0.5", "--burst", "40",
        "--burst-records", "4", "--limits", "off", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])["rate_limits_off"]
    steady, burst = figures["steady"], figures["burst"]
    assert figures["failed"] == 0, figures
    assert steady["settled"] and steady["changes_not_carried"] == 0, steady
    assert steady["latency_p95_s"] is not None and steady["api_calls_per_change"] > 0, steady
    assert burst["settled"] and burst["writes_failed"] == 0, burst
    assert 1 <= burst["writes_done"] <= burst["changes"], "a burst never costs more writes than changes"
    # A run with nothing changed: catalog = products' three stock passes of the list, contacts, payment methods (no
    # categories re-read, no detail inside the overlap); stock_prices = the three passes and one balance read, the
    # prices taken from that listing (it cost 6 and 8 calls before webhooks read only what they name).
    quiet = figures["no_change_run_calls"]
    assert quiet["catalog"] <= 5 and quiet["stock_prices"] <= 4, quiet
