"""Chaos: 1,000 POS sales through the shipped CPlug -> Bling route while 20% of the API requests on both platforms
fail (5xx, timeouts past the client's timeout, 429s), and the worker (`hub run`) is SIGKILLed mid-run and restarted.

Afterwards every sale is in Bling exactly once, each transition action ran exactly once (Bling's ledgers), no
customer was created twice, nothing was lost and nothing failed; the sales cancelled before the run, and those
cancelled while the restarted worker runs its schedule, are reversed exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hub.sandbox import serve
from hub.settings import Settings
from hub.store.schema import Operation
from hub.sync.loading import Runtime
from hub.sync.pull import sync_route
from hub_bling.sandbox import BlingSandbox
from hub_cplug.sandbox import CPlugSandbox
from sqlalchemy import func, select

from tests.integration.conftest import TENANT, Pair

SALES = 1000
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


def start_worker(settings: Settings, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=str(home),
               HUB_WORKER_THREADS="8", HUB_OPERATION_LEASE_SECONDS="10", HUB_RELAY_INTERVAL_SECONDS="0.2",
               HUB_SCHEDULER_INTERVAL_SECONDS="0.5", HUB_MAX_ATTEMPTS="60", HUB_MAX_BACKOFF_SECONDS="2")
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env["HUB_REDIS_URL"] = redis_url
    hub = os.path.join(os.path.dirname(sys.executable), "hub")
    with log.open("ab") as out:  # a file, not a pipe: a long run's log would fill a pipe and block the worker
        return subprocess.Popen([hub, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n--- worker log (tail) ---\n{tail}")


def counts(rt: Runtime, **where: Any) -> dict[str, int]:
    with rt.store.sessions() as s:
        query = select(Operation.state, func.count()).group_by(Operation.state)
        for key, value in where.items():
            query = query.where(getattr(Operation, key) == value)
        return {state: n for state, n in s.execute(query)}


def pull_until_ok(rt: Runtime, route: str) -> None:
    """A pull that meets a fault stops where it was (the cursor is kept); run it again until it gets through."""
    for _ in range(20):
        if sync_route(rt, TENANT, route).ok:
            return
    raise AssertionError(f"{route}: the pull never got through the faults")


@pytest.mark.slow
def test_chaos_1000_sales_with_faults_and_a_killed_worker_land_exactly_once(chaos: Pair, settings: Settings,
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
    # window again after one, so a 1,000-sale window under 13% failing requests takes dozens of runs (minutes).
    # The worker's scheduled pulls below meet CPlug's faults.
    pull_until_ok(rt, "sales")  # every sale recorded closed; pushes and "lancar" actions wait in the outbox
    marks["first pull"] = time.monotonic() - started
    cancelled_before = {str(s["id"]) for s in sales[::17]}
    for sale_id in cancelled_before:
        cplug.cancel_sale(sale_id)
    pull_until_ok(rt, "sales")  # their cancellations (and reversals) queued behind the pushes, before any ran
    assert counts(rt, kind="push_sale").get("done", 0) == 0
    cplug.set_fault_rate(FAULT_RATE, KINDS, seed=11)

    marks["pulled"] = time.monotonic() - started
    worker = start_worker(settings, tmp_path, log)
    try:
        wait_for(lambda: counts(rt, kind="push_sale").get("done", 0) >= 300
                 and counts(rt).get("running", 0) > 0, 180, "300 sales in Bling with operations in flight", log)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    orphaned = counts(rt).get("running", 0)
    marks["killed"] = time.monotonic() - started
    assert counts(rt, kind="push_sale").get("done", 0) < SALES, "the kill came too late to matter"

    worker = start_worker(settings, tmp_path, log)
    try:
        # Sales cancelled while the restarted worker runs: its scheduled pulls (faults included) bring them.
        wait_for(lambda: len(bling.records("sales")) >= 400, 180, "400 orders in Bling after the restart", log)
        in_bling = {str(o["numeroLoja"]) for o in bling.records("sales")}
        cancelled_later = {str(s["id"]) for s in [s for s in sales if str(s["id"]) not in cancelled_before
                                                  and str(s["number"]) in in_bling][:20]}
        for sale_id in cancelled_later:
            cplug.cancel_sale(sale_id)
        cancelled = cancelled_before | cancelled_later
        numbers = {str(s["number"]): str(s["id"]) for s in sales}
        cancelado = bling.situacao_id("Cancelado")

        def converged() -> bool:
            if set(counts(rt)) - {"done", "superseded", "failed"}:
                return False
            orders = bling.records("sales")
            return len(orders) >= SALES and sum(
                1 for o in orders if o["situacao"]["id"] == cancelado) >= len(cancelled)

        wait_for(converged, 360, "every sale and cancellation in Bling", log)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    marks["converged"] = time.monotonic() - started
    bling.set_fault_rate(0)
    cplug.set_fault_rate(0)

    failed = [(o.kind, o.last_error) for o in chaos.ops(state="failed")]
    assert not failed, failed[:5]
    assert not chaos.quarantined()

    # every sale exactly once, nothing lost
    orders = bling.records("sales")
    per_number = Counter(str(o["numeroLoja"]) for o in orders)
    assert set(per_number) == set(numbers), "every CPlug sale has its Bling order, and only those"
    assert max(per_number.values()) == 1, [n for n, k in per_number.items() if k > 1][:10]
    atendido = bling.situacao_id("Atendido")
    for order in orders:
        wanted = cancelado if numbers[str(order["numeroLoja"])] in cancelled else atendido
        assert order["situacao"]["id"] == wanted, order["numeroLoja"]

    # no customer created twice
    documents = Counter(c.get("numeroDocumento") for c in bling.records("customers") if c.get("numeroDocumento"))
    assert max(documents.values()) == 1, [d for d, k in documents.items() if k > 1][:10]

    # each transition action exactly once: one posting (and one reversal when cancelled) per order
    grids = {p["id"] for p in bling.records("products") if p.get("variacoes")}
    moves: dict[str, dict[str, list[tuple[Any, Decimal]]]] = {}
    for m in bling.records("stock_movements"):
        if m.get("pedido"):
            moves.setdefault(str(m["pedido"]["id"]), {}).setdefault(m["operacao"], []).append(
                (m["produto"]["id"], Decimal(str(m["quantidade"]))))
    accounts: dict[str, Counter[str]] = {}
    for a in bling.records("accounts"):
        accounts.setdefault(str(a["pedido"]["id"]), Counter())[a["operacao"]] += 1
    for order in orders:
        oid, was_cancelled = str(order["id"]), numbers[str(order["numeroLoja"])] in cancelled
        items = sorted((i["produto"]["id"], Decimal(str(i["quantidade"]))) for i in order["itens"]
                       if (i.get("produto") or {}).get("id") and i["produto"]["id"] not in grids)
        mine = moves.get(oid, {})
        assert sorted(mine.get("S", [])) == items, f"order {order['numeroLoja']}: stock posted once"
        assert sorted(mine.get("E", [])) == (items if was_cancelled else []), \
            f"order {order['numeroLoja']}: stock reversed {'once' if was_cancelled else 'never'}"
        parcels = len(order.get("parcelas") or [])
        booked = accounts.get(oid, Counter())
        assert booked["lancamento"] == parcels, f"order {order['numeroLoja']}: accounts posted once"
        assert booked["estorno"] == (parcels if was_cancelled else 0), \
            f"order {order['numeroLoja']}: accounts reversed {'once' if was_cancelled else 'never'}"
    print(f"chaos: {len(orders)} orders, {len(cancelled)} cancelled, {orphaned} operations orphaned by the kill, "
          f"bling {bling.requests} requests ({bling.throttled} 429), cplug {cplug.requests} requests; "
          + ", ".join(f"{k} at {v:.0f}s" for k, v in marks.items()))
