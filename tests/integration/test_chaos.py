"""Chaos at CI size (`hub bench chaos` runs the same at 10,000 on PostgreSQL + Redis): 400 POS sales through the
shipped CPlug -> Bling route while 20% of the API requests on both platforms fail (5xx, timeouts past the client's
timeout, 429s), and the worker (`hub run`) is SIGKILLed mid-run and restarted.

Afterwards every sale is in Bling exactly once, each transition action ran exactly once (Bling's ledgers), no
customer was created twice, nothing was lost and nothing failed; the sales cancelled before the run, and those
cancelled while the restarted worker runs its schedule, are reversed exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub.bench.chaos import (
    audit_bling,
    audit_store,
    flush_broker,
    operation_counts,
    pull_until_ok,
    spawn_worker,
    wait_for,
    worker_env,
)
from hub.sandbox import serve
from hub.settings import Settings
from hub.sync.loading import Runtime
from hub_bling.sandbox import BlingSandbox
from hub_cplug.sandbox import CPlugSandbox

from tests.integration.conftest import TENANT, Pair

SALES = 400
FAULT_RATE = 0.2
KINDS = ("500", "timeout", "429")


@pytest.fixture
def chaos(rt: Runtime, tmp_path: Path) -> Iterator[Pair]:
    """Both sandboxes at ~100 requests/s, their injected timeouts (1.5 s) past the clients' (1 s)."""
    bling = BlingSandbox(rate_per_second=100, daily_limit=None, nfe_delay_seconds=0.1, fault_delay=1.5)
    cplug = CPlugSandbox(rate_per_second=100, fault_delay=1.5)
    servers = [serve(bling.app), serve(cplug.app)]
    yield Pair(rt, bling, cplug, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """A `hub run` on the test's store (and on HUB_TEST_REDIS_URL, flushed, when set)."""
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:
        flush_broker(redis_url)
    return spawn_worker(worker_env(settings.model_copy(update={"redis_url": redis_url})), log)


def counts(rt: Runtime, **where: str) -> dict[str, int]:
    return operation_counts(rt.store, TENANT, **where)


@pytest.mark.slow
def test_chaos_sales_with_faults_and_a_killed_worker_land_exactly_once(chaos: Pair, settings: Settings,
                                                                           tmp_path: Path) -> None:
    rt, bling, cplug = chaos.rt, chaos.bling, chaos.cplug
    log = tmp_path / "worker.log"
    started = time.monotonic()
    marks: dict[str, float] = {}
    chaos.catalog(30)
    chaos.apply(**{"connections.bling.options.timeout_seconds": 1, "connections.cplug.options.timeout_seconds": 1,
                   "routes.sales.schedule": "2s"})
    assert chaos.sync("catalog").ok
    assert len(cplug.records("products")) == len(bling.expected_pull("products"))

    marks["catalog"] = time.monotonic() - started
    cplug.seed("sales", SALES)
    marks["seeded"] = time.monotonic() - started
    sales = cplug.records("sales")
    assert len(sales) == SALES
    bling.set_fault_rate(FAULT_RATE, KINDS, seed=7)

    # The backlog is read before CPlug's faults start: a CPlug pull retries no 5xx or timeout and reads its whole
    # window again after one, so a large window under 13% failing requests takes dozens of runs (minutes).
    # The worker's scheduled pulls below meet CPlug's faults.
    pull_until_ok(rt, TENANT, "sales")  # every sale recorded closed; pushes and "lancar" actions wait in the outbox
    marks["first pull"] = time.monotonic() - started
    cancelled_before = {str(s["id"]) for s in sales[::17]}
    for sale_id in cancelled_before:
        cplug.cancel_sale(sale_id)
    pull_until_ok(rt, TENANT, "sales")  # their cancellations (and reversals) queued behind the pushes, before any ran
    assert counts(rt, kind="push_sale").get("done", 0) == 0
    cplug.set_fault_rate(FAULT_RATE, KINDS, seed=11)

    marks["pulled"] = time.monotonic() - started
    worker = start_worker(settings, log)
    try:
        wait_for(lambda: counts(rt, kind="push_sale").get("done", 0) >= SALES * 0.3
                 and counts(rt).get("running", 0) > 0, 180, "30% of the sales in Bling with operations in flight", log)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    orphaned = counts(rt).get("running", 0)
    marks["killed"] = time.monotonic() - started
    assert counts(rt, kind="push_sale").get("done", 0) < SALES, "the kill came too late to matter"

    worker = start_worker(settings, log)
    try:
        # Sales cancelled while the restarted worker runs: its scheduled pulls (faults included) bring them.
        wait_for(lambda: len(bling.records("sales")) >= SALES * 0.4, 180,
                 "40% of the orders in Bling after the restart", log)
        in_bling = {str(o["numeroLoja"]) for o in bling.records("sales")}
        cancelled_later = {str(s["id"]) for s in [s for s in sales if str(s["id"]) not in cancelled_before
                                                  and str(s["number"]) in in_bling][:20]}
        for sale_id in cancelled_later:
            cplug.cancel_sale(sale_id)
        cancelled = cancelled_before | cancelled_later
        cancelado = bling.situacao_id("Cancelado")

        def converged() -> bool:
            if set(counts(rt)) - {"done", "superseded", "failed"}:
                return False
            orders = bling.records("sales")
            return len(orders) >= SALES and sum(
                1 for o in orders if o["situacao"]["id"] == cancelado) >= len(cancelled)

        wait_for(converged, 600, "every sale and cancellation in Bling", log)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    marks["converged"] = time.monotonic() - started
    bling.set_fault_rate(0)
    cplug.set_fault_rate(0)

    # every sale once in the right situação, each posting (and reversal) once, no customer twice, nothing left
    audit = audit_bling(cplug.records("sales"), bling.records, bling.situacao_id)
    audit_store(rt.store, TENANT, audit)
    assert audit.clean, f"expected a clean audit, found {audit.counts()}: {audit.evidence()}"
    orders = bling.records("sales")
    print(f"chaos: {len(orders)} orders, {len(cancelled)} cancelled, {orphaned} operations orphaned by the kill, "
          f"bling {bling.requests} requests ({bling.throttled} 429), cplug {cplug.requests} requests; "
          + ", ".join(f"{k} at {v:.0f}s" for k, v in marks.items()))
