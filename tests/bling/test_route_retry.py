"""A route only webhooks trigger keeps its promise: a run that fails is tried again by itself until the change
announced by the webhook arrives (``hub run``'s scheduler and workers, Bling's sandbox failing on its side)."""

from __future__ import annotations

import os
import time
from decimal import Decimal

from hub import webhooks
from hub.runner.routes import RunPolicy
from hub.runner.service import Service
from hub.sandbox import serve
from hub.store.schema import Binding, Record, Route
from sqlalchemy import select, update

from tests.bling.conftest import TENANT, World
from tests.bling.test_bling_webhooks import know_company


def _price(world: World, external_id: str) -> Decimal:
    with world.rt.store.sessions() as s:
        payload = s.scalar(select(Record.payload).join(Binding, Binding.canonical_id == Record.canonical_id).where(
            Binding.connection_id == world.bling_id, Binding.external_id == external_id, Record.entity == "products"))
    assert payload is not None, f"product {external_id} was never pulled"
    return Decimal(str(payload["price"]))


def _webhook_route(world: World) -> tuple[list[str], str | None]:
    """A synced catalog route only webhooks trigger (nothing scheduled), the broker's Redis emptied when set."""
    ids = world.box.seed("products", 3)
    world.route("catalog", ["products"], pull=True)
    assert world.pull("catalog").ok
    know_company(world)
    with world.rt.store.begin() as s:
        s.execute(update(Route).values(next_run_at=None))
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    return ids, redis_url


def test_a_webhook_triggered_run_that_fails_runs_again_until_the_change_arrives(world: World):
    ids, redis_url = _webhook_route(world)
    before = _price(world, ids[1])
    receiver = serve(webhooks.app(world.rt))
    service = Service(world.rt, redis_url, threads=2, relay_interval=0.1, scheduler_interval=0.1,
                      policy=RunPolicy(retry_base_seconds=0.2, retry_cap_seconds=1.0))
    try:
        world.box.webhook_url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        world.box.inject_fault("500", times=4)  # the run's read fails, the client's own retries included
        world.box.touch("products", ids[1])  # Bling sends product.updated
        service.start()
        deadline = time.monotonic() + 60
        while _price(world, ids[1]) == before and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        service.stop(timeout=10)
        receiver.stop()
    assert _price(world, ids[1]) == before + Decimal("0.1"), "the change announced by the webhook never arrived"
    assert any(c.status == 500 for c in world.api_errors()), "the first run was expected to fail on Bling's 500s"
    with world.rt.store.sessions() as s:
        route = s.scalar(select(Route).where(Route.name == "catalog"))
    assert route is not None and route.sync_failures == 0 and route.next_run_at is None, \
        "after a successful run the webhook-only route must rest (no failures counted, not due)"


def test_a_webhook_received_by_hub_run_starts_its_route_at_once_not_at_the_next_scheduler_tick(world: World):
    ids, redis_url = _webhook_route(world)
    before = _price(world, ids[2])
    receiver = serve(webhooks.app(world.rt))
    # The scheduler's tick is an hour away: only the webhook's wake-up can start the run.
    service = Service(world.rt, redis_url, threads=2, relay_interval=0.1, scheduler_interval=3600)
    try:
        service.start()
        time.sleep(0.5)  # the scheduler's first pass (nothing due) is over
        world.box.webhook_url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        world.box.touch("products", ids[2])  # Bling sends product.updated
        deadline = time.monotonic() + 60
        while _price(world, ids[2]) == before and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        service.stop(timeout=10)
        receiver.stop()
    assert _price(world, ids[2]) == before + Decimal("0.1"), "the webhook's route waited for the scheduler's tick"
