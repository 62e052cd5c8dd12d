"""``hub bench chaos`` at CI size: 300 POS sales through the shipped CPlug -> Bling route with three `hub run`
processes on PostgreSQL + Redis, 20% faults on both sandboxes (timeouts after completed writes included), a worker
SIGKILLed every 5 s, the broker's Redis database flushed once, the store's connections terminated once and every
access token expired every 10 s. Afterwards the audit is clean: every sale in Bling once, every posting and reversal
once, no customer twice, nothing stuck, failed or quarantined, no connection paused.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from hub.bench.chaos import Audit, audit_bling, audit_store, run_chaos
from hub.cli import with_plugins
from hub.sync.drain import drain

from tests.integration.conftest import TENANT, Pair

DATABASE_URL = os.environ.get("HUB_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "")

shared_backends = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql") or not REDIS_URL,
    reason="the chaos bench runs three `hub run` processes: it needs HUB_TEST_DATABASE_URL (PostgreSQL) and "
           "HUB_TEST_REDIS_URL")


@pytest.mark.slow
@shared_backends
def test_chaos_bench_300_sales_converge_with_a_clean_audit() -> None:
    figures = run_chaos(300, DATABASE_URL, REDIS_URL, workers=3, fault_rate=0.2, kill_every=5,
                        token_expiry_every=10, converge_timeout=120)
    summary = {k: figures[k] for k in ("audit", "evidence", "faults", "operations", "fault_errors")}
    assert figures["audit_clean"], f"expected a clean audit after the chaos, got {summary}\n" \
                                   f"{figures['worker_log_tail']}"
    assert figures["converged"] and figures["converge_seconds_after_last_fault"] is not None, summary
    assert figures["kills"] >= 2, f"expected several workers SIGKILLed, got {figures['kills']}"
    faults = figures["faults"]
    assert faults["flushdb"] == 1 and faults["terminate_connections"] == 1 and faults["token_expiry"] >= 1, faults
    for platform in ("bling", "cplug"):
        for kind in ("500", "timeout", "429"):
            assert faults.get(f"{platform}:{kind}", 0) > 0, f"expected {platform} to play {kind} faults: {faults}"
    assert faults.get("bling:timeout-after-write", 0) > 0, f"expected Bling to time out after writes: {faults}"
    assert not figures["fault_errors"], figures["fault_errors"]
    assert figures["operations"]["pending"] == 0 and figures["operations"]["failed"] == 0, figures["operations"]
    assert figures["sales"] > 300 and figures["cancelled"] > 0, "expected the exchanges' new sales and cancellations"


def test_chaos_bench_refuses_sqlite_with_the_fix() -> None:
    result = CliRunner().invoke(with_plugins(), ["bench", "chaos", "--sales", "10", "--database-url",
                                                 "sqlite:///hub.db", "--redis-url", "redis://127.0.0.1:6379/0"])
    assert result.exit_code == 1, result.output
    assert "needs PostgreSQL" in result.output and "HUB_DATABASE_URL" in result.output, result.output


def test_the_audit_is_clean_after_a_sync_and_names_each_violation_it_finds(pair: Pair) -> None:
    """The audit the chaos bench trusts: clean on a synced pair, and it catches a cancellation Bling never saw and
    an order Bling has for no CPlug sale."""
    pair.catalog(6)
    pair.apply()
    assert pair.sync("catalog").ok
    pair.cplug.seed("sales", 4)
    assert pair.sync("sales").ok
    drain(pair.rt, max_wait=10)

    def audit() -> Audit:
        found = audit_bling(pair.cplug.records("sales"), pair.bling.records, pair.bling.situacao_id)
        return audit_store(pair.rt.store, TENANT, found)

    clean = audit()
    assert clean.clean, f"expected a clean audit after a plain sync, got {clean.evidence()}"

    sale = pair.cplug.records("sales")[0]
    pair.cplug.cancel_sale(sale["id"])  # never synced: Bling still shows it Atendido, nothing reversed
    pair.bling.seed("sales", 1)  # an order typed into Bling by hand
    found = audit()
    counts = found.counts()
    assert counts["wrong_status"] == 1 and counts["missing_reversals"] >= 1, found.evidence()
    assert counts["unexpected_sales"] == 1, found.evidence()
    assert any(f"sale {sale['number']}" in e for e in found.found["wrong_status"]), found.evidence()
    assert not found.clean
