"""`hub run`'s pieces together: the scheduler starts due routes once, the relay feeds the workers, and the
runner drains a route end to end (on the Redis broker when HUB_TEST_REDIS_URL is set)."""

from __future__ import annotations

import os
import time

from hub.runner.service import Service, schedule_once
from hub.store.engine import utcnow
from hub.store.schema import Route
from sqlalchemy import select, update

from tests.flows import apply_demo_routes


def test_scheduler_starts_each_due_route_once_across_instances(rt, tmp_path):
    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    started: list[tuple[str, str]] = []
    assert schedule_once(rt, lambda t, r: started.append((t, r))) == 2
    assert schedule_once(rt, lambda t, r: started.append((t, r))) == 0
    assert sorted(started) == [("demo", "catalog"), ("demo", "sales")]
    with rt.store.sessions() as s:
        nxt = {r.name: r.next_run_at for r in s.scalars(select(Route))}
    assert (nxt["catalog"] - utcnow()).total_seconds() > 250


def test_the_service_syncs_a_scheduled_route_end_to_end(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("categories", 3)
    erp.seed("products", 40)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    with rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "sales").values(enabled=False))
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    service = Service(rt, redis_url, threads=4, relay_interval=0.1, scheduler_interval=0.1)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while len(shop.records("products")) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop(timeout=10)
    assert len(shop.records("products")) == 40
    assert len(shop.records("categories")) == 3
