"""Event-driven changes on the shipped Zydon <-> Bling pair: a Bling webhook's run reads only the record the event
names (counted in both sandboxes' requests), a lost webhook converges by the incremental backstop, a wake-up
published by another process starts the route at once (Redis), and a run with no change reads no list twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from hub.runner.routes import run_route
from hub.runner.service import Service
from hub.store.engine import utcnow
from hub.store.schema import Cursor, Route, Run, WebhookTarget
from hub.sync import targets
from hub.sync.drain import drain
from hub.sync.pull import sync_route
from sqlalchemy import func, select, update

from tests.integration.test_zydon_bling_rules import _activate, _balance, _stock_holders
from tests.integration.zydon_pair import TENANT, ZydonPair, zpair_fixture  # noqa: F401 (the fixture "zpair")


def _count(z: ZydonPair, model: type) -> int:
    with z.rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _calls(z: ZydonPair) -> int:
    return z.bling.requests + z.zydon.requests


def _bling_paths(z: ZydonPair, mark: int) -> list[str]:
    return [str(r["path"]).split("/Api/v3", 1)[-1] for r in z.bling.request_log[mark:]]


def _quiet(z: ZydonPair) -> None:
    """As between two scheduled runs: the records are older than the incremental overlap and nothing is due."""
    z.bling.age("products", 3600)
    z.bling.age("customers", 3600)
    with z.rt.store.begin() as s:
        s.execute(update(Route).values(next_run_at=None))


def _run(z: ZydonPair, *routes: str) -> None:
    """The scheduler's runs of ``routes`` (targeted, as ``hub run`` makes them), then the outbox."""
    for route in routes:
        assert run_route(z.rt, TENANT, route, None).ok
    drain(z.rt, max_wait=5)


def test_a_stock_webhook_reads_only_its_product_within_three_calls(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 8)
    _quiet(z)
    chosen = _stock_holders(z)[:4]
    receiver = z.bling_webhooks()
    try:
        calls, mark = _calls(z), len(z.bling.request_log)
        for product in chosen:
            z.bling.touch("stock", str(product["id"]))  # Bling sends stock.updated naming the product
            _run(z, "stock_prices")
        spent = _calls(z) - calls
    finally:
        receiver.stop()
    assert _bling_paths(z, mark) == ["/estoques/saldos"] * len(chosen), "one balance read per change, no list"
    assert spent <= 3 * len(chosen), f"{spent} calls for {len(chosen)} changes"
    for product in chosen:
        assert z.zydon.stock_of(product["codigo"]) == _balance(z, product["id"]), product["codigo"]
    assert _count(z, WebhookTarget) == 0, "every named record was read and forgotten"


def test_a_product_webhook_is_one_detail_read_for_both_routes(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 8)
    _quiet(z)
    chosen = _stock_holders(z)[:3]
    receiver = z.bling_webhooks()
    try:
        calls, mark = z.bling.requests, len(z.bling.request_log)
        for product in chosen:
            z.bling.touch("products", str(product["id"]))  # the price goes up 0.10; Bling sends product.updated
            _run(z, "catalog", "stock_prices")
        spent = z.bling.requests - calls
    finally:
        receiver.stop()
    # The source's side of the goal: one call per changed product, whatever routes read it. (Zydon's writes of the
    # product and of its price are the sink's own: a lookup and a PUT each.)
    assert _bling_paths(z, mark) == [f"/produtos/{p['id']}" for p in chosen], "catalog and prices share one read"
    assert spent == len(chosen), f"{spent} Bling calls for {len(chosen)} changes"
    prices = {p["sku"]: p["price"] for p in z.zydon.records("prices")}
    bling = {p["id"]: p for p in z.bling.records("products")}
    for product in chosen:
        assert float(prices[product["codigo"]]) == pytest.approx(float(bling[product["id"]]["preco"]))


def test_a_lost_webhook_converges_by_the_incremental_backstop(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 8)
    _quiet(z)
    announced, lost = _stock_holders(z)[:2]
    receiver = z.bling_webhooks()
    try:
        z.bling.touch("stock", str(announced["id"]))
        z.bling.webhook_url = None  # this event never reaches the hub
        z.bling.touch("stock", str(lost["id"]))
        _run(z, "stock_prices")
    finally:
        receiver.stop()
    assert z.zydon.stock_of(announced["codigo"]) == _balance(z, announced["id"])
    assert z.zydon.stock_of(lost["codigo"]) != _balance(z, lost["id"]), "only the named record was read"
    with z.rt.store.sessions() as s:
        route = s.scalar(select(Route).where(Route.tenant_id == TENANT, Route.name == "stock_prices"))
        assert route is not None and route.next_run_at is not None and route.schedule_seconds
        last = s.scalar(select(func.min(Cursor.last_success_at)).where(Cursor.route_id == route.id))
        assert last is not None
        assert route.next_run_at <= last + timedelta(seconds=route.schedule_seconds), \
            "the targeted run must not push the route's incremental run back"
    with z.rt.store.begin() as s:  # the schedule's time comes
        s.execute(update(Cursor).where(Cursor.route_id == route.id)
                  .values(last_success_at=utcnow() - timedelta(seconds=route.schedule_seconds + 1)))
        s.execute(update(Route).where(Route.id == route.id).values(next_run_at=utcnow()))
    _run(z, "stock_prices")
    assert z.zydon.stock_of(lost["codigo"]) == _balance(z, lost["id"]), "the backstop did not converge"


def test_a_run_with_no_change_reads_no_list_twice_and_no_detail(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 8)
    _quiet(z)
    mark, calls = len(z.bling.request_log), z.bling.requests
    assert sync_route(z.rt, TENANT, "stock_prices").ok
    assert sync_route(z.rt, TENANT, "catalog").ok
    paths = _bling_paths(z, mark)
    assert not [p for p in paths if p.startswith(("/depositos", "/categorias"))], paths
    assert not [p for p in paths if p.startswith("/produtos/")], f"a detail re-read with no change: {paths}"
    assert z.bling.requests - calls == len(paths)


@pytest.mark.skipif(not os.environ.get("HUB_TEST_REDIS_URL"), reason="needs Redis (the PG+Redis pass)")
def test_a_webhook_received_by_another_process_wakes_this_scheduler(zpair: ZydonPair) -> None:
    z = zpair
    redis_url = os.environ["HUB_TEST_REDIS_URL"]
    _activate(z, 6)
    _quiet(z)
    product = _stock_holders(z)[0]
    service = Service(z.rt, redis_url, threads=2, relay_interval=0.1, scheduler_interval=600)
    service.start()
    try:
        assert service.wakeups is not None and service.wakeups.ready.wait(10), "never subscribed"
        time.sleep(0.5)  # the scheduler's first tick has passed; the next is ten minutes away
        z.bling.touch("stock", str(product["id"]))  # no receiver here: the other process got the webhook
        with z.rt.store.begin() as s:
            route_id = s.scalar(select(Route.id).where(Route.tenant_id == TENANT, Route.name == "stock_prices"))
            assert route_id is not None
            targets.record(s, z.rt.store.dialect, TENANT, route_id, "stock", [str(product["id"])], utcnow())
            s.execute(update(Route).where(Route.id == route_id).values(next_run_at=utcnow()))
        runs = _count(z, Run)
        time.sleep(1.5)
        assert _count(z, Run) == runs, "the scheduler was expected to sleep until woken"
        subprocess.run([sys.executable, "-c", "import sys; from hub.sync.targets import wake; wake(sys.argv[1])",
                        redis_url], check=True, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and z.zydon.stock_of(product["codigo"]) != _balance(z, product["id"]):
            time.sleep(0.1)
    finally:
        service.stop(timeout=10)
    assert _count(z, Run) > runs, "the published wake-up did not start the route"
    assert z.zydon.stock_of(product["codigo"]) == _balance(z, product["id"])
