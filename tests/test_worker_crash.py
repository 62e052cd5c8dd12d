"""`hub run` killed mid-run (SIGKILL) and restarted: everything completes, nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from hub.store.schema import Operation
from hub.sync.pull import sync_route
from sqlalchemy import func, select

from tests.flows import apply_demo_routes


def done(rt) -> int:
    with rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(Operation).where(Operation.state == "done")) or 0


def start_worker(settings, tmp_path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=str(tmp_path),
               HUB_OPERATION_LEASE_SECONDS="2", HUB_RELAY_INTERVAL_SECONDS="0.2", HUB_WORKER_THREADS="2")
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env["HUB_REDIS_URL"] = redis_url
    hub = os.path.join(os.path.dirname(sys.executable), "hub")
    return subprocess.Popen([hub, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_killing_the_worker_mid_run_loses_nothing(rt, settings, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 60)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    shop.inject_fault("slow", 10_000)

    worker = start_worker(settings, tmp_path)
    try:
        assert wait_for(lambda: done(rt) >= 8, 60), worker.stdout.read() if worker.poll() is not None else "slow"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert done(rt) < 60

    worker = start_worker(settings, tmp_path)
    try:
        assert wait_for(lambda: done(rt) == 60, 120)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    skus = [p["sku"] for p in shop.records("products")]
    assert len(skus) == 60 and len(set(skus)) == 60
