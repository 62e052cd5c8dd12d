"""Bling's limits: a daily quota pauses the whole connection until midnight in São Paulo (visible in `hub status`)
without losing or burning anything; the per-account budget is shared by every worker, across processes through
Redis when it is configured."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest
from hub.ratelimit import LocalThrottle, RedisThrottle, pace
from hub.status import tenant_status
from hub.sync.loading import ensure_auth

from tests.bling.conftest import TENANT, World, customer


def test_the_daily_quota_pauses_the_connection_until_midnight_and_nothing_is_lost(world: World):
    world.route("customers", ["customers"])
    ensure_auth(world.rt, world.bling_id)  # the token and company id first: the quota runs out on the write
    world.box.inject_fault("429-day", 1)
    world.stage("customers", "customers", customer())
    world.drain()
    (op,) = world.ops(entity="customers")
    assert op.state == "pending" and op.attempts == 0 and op.waits == 1
    conn = world.connection()
    assert conn.pause_kind == "quota" and conn.paused_until is not None
    hours = (conn.paused_until - op.updated_at).total_seconds() / 3600
    assert 0 < hours <= 24 and op.available_at >= conn.paused_until.replace(microsecond=0)
    erp = next(c for c in tenant_status(world.rt, TENANT)["connections"] if c["name"] == "erp")
    assert erp["paused"] and "120,000 requests/day" in erp["pause_reason"]
    # A pull on the paused connection stops at once with the same reason, without calling Bling.
    world.route("catalog", ["products"], pull=True)
    before = world.box.requests
    report = world.pull("catalog")
    assert not report.ok and "paused" in (report.streams[0].error or "")
    assert world.box.requests == before


def test_threads_share_one_budget_and_never_burst():
    throttle = LocalThrottle()
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            pace(throttle, "acct", 20)
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent.sort()
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    # A thread may note its send a little late (scheduling), so one gap can look short; a burst cannot hide.
    assert len(sent) == 20 and min(gaps) > 0.02 and sent[-1] - sent[0] > 19 * 0.05 * 0.9, \
        "one slot every 1/20 s, whichever thread takes it"


@pytest.mark.skipif(not os.environ.get("HUB_TEST_REDIS_URL"), reason="needs Redis (set HUB_TEST_REDIS_URL)")
def test_processes_share_the_budget_through_redis():
    url = os.environ["HUB_TEST_REDIS_URL"]
    key = f"test-{time.time_ns()}"
    first, second = RedisThrottle(url), RedisThrottle(url)  # two processes' views of the same account
    waits = [first.reserve(key, 0.5), second.reserve(key, 0.5), first.reserve(key, 0.5)]
    assert waits[0] < 0.05 and 0.4 < waits[1] < 0.55 and 0.9 < waits[2] < 1.05
    assert first.count(key, "20261124", 60) == 1 and second.count(key, "20261124", 60) == 2
    with first.lock(key, timeout=5):
        assert not second.lock(key, timeout=0.2).acquire(blocking=False)
