"""`hub run`'s pieces together: the scheduler starts due routes once, the relay feeds the workers, and the
runner drains a route end to end (on the Redis broker when HUB_TEST_REDIS_URL is set)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

from click.testing import CliRunner
from hub.cli import cli
from hub.runner.routes import RunPolicy, run_route
from hub.runner.service import Service, next_due_in, schedule_once
from hub.store.engine import utcnow
from hub.store.schema import Route, Run
from sqlalchemy import select, update

from tests.flows import apply_demo_routes


def _emptied_redis() -> str | None:
    """The PostgreSQL pass's Redis, emptied: no broker message or budget left by an earlier test."""
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def test_scheduler_starts_each_due_route_once_across_instances(rt, tmp_path):
    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    started: list[tuple[str, str]] = []
    assert schedule_once(rt, lambda t, r, _lease: started.append((t, r))) == 2
    assert schedule_once(rt, lambda t, r, _lease: started.append((t, r))) == 0
    assert sorted(started) == [("demo", "catalog"), ("demo", "sales")]
    with rt.store.sessions() as s:
        nxt = {r.name: r.next_run_at for r in s.scalars(select(Route))}
    assert (nxt["catalog"] - utcnow()).total_seconds() > 100, "a claimed route is held for its lease"


def test_a_lost_run_message_is_sent_again_once_its_lease_lapses(rt, tmp_path):
    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    policy = RunPolicy(lease_seconds=0.3)
    lost: list[str] = []
    assert schedule_once(rt, lambda t, r, _lease: lost.append(r), policy) == 2
    assert schedule_once(rt, lambda t, r, _lease: lost.append(r), policy) == 0, "a run in its lease starts twice"
    time.sleep(0.4)
    resent: list[tuple[str, str, str]] = []
    assert schedule_once(rt, lambda t, r, lease: resent.append((t, r, lease)), policy) == 2, \
        "routes whose run message was lost (no outcome within the lease) were not started again"
    assert sorted(r for _, r, _ in resent) == ["catalog", "sales"]


def test_a_route_is_due_its_schedule_after_its_run_began_and_the_scheduler_sleeps_only_until_then(
        rt, tmp_path, lojinha_pair):
    (_erp, erp_url), (shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"sales.schedule": "30s", "catalog.enabled": False})
    shop.seed("sales", 2)
    runs: list[tuple[str, str, str]] = []
    assert schedule_once(rt, lambda t, r, lease: runs.append((t, r, lease))) == 1
    (tenant, name, lease) = runs[0]
    began = utcnow()
    assert run_route(rt, tenant, name, datetime.fromisoformat(lease)).ok
    with rt.store.sessions() as s:
        due = s.scalar(select(Route.next_run_at).where(Route.name == "sales"))
        run = s.scalars(select(Run).order_by(Run.id.desc())).first()
    assert due is not None and run is not None and run.ended_at is not None
    assert began <= due - timedelta(seconds=30) <= run.started_at < run.ended_at, \
        "every 30 s counts from the run's start, not its end"
    waits = next_due_in(rt)
    assert waits is not None and 25 < waits <= 30, "the scheduler sleeps until the route is due, not a whole tick"
    with rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "sales").values(paused_at=utcnow()))
    assert next_due_in(rt) is None, "a paused route wakes nobody"


def test_a_failing_run_is_retried_with_growing_backoff_and_shown_in_status(rt, settings, tmp_path, monkeypatch):
    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")  # nothing answers there
    with rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "sales").values(enabled=False))
    # A first backoff of 0.8-1.2 s: at 0.4-0.6 s, a fresh clone's loaded machine once took longer than that between
    # recording the failure and asking again, and the route was rightly due.
    policy = RunPolicy(retry_base_seconds=1.0, retry_cap_seconds=3.0)
    delays = []
    runs: list[tuple[str, str, str]] = []
    for failures in (1, 2, 3):
        runs.clear()
        assert schedule_once(rt, lambda t, r, lease: runs.append((t, r, lease)), policy) == 1, \
            f"the failed route was not retried (after {failures - 1} failures)"
        (tenant, name, lease) = runs[0]
        report = run_route(rt, tenant, name, datetime.fromisoformat(lease), policy)
        assert not report.ok, "the run was expected to fail: its platform does not answer"
        with rt.store.sessions() as s:
            route = s.scalar(select(Route).where(Route.name == "catalog"))
        assert route is not None and route.sync_failures == failures, "consecutive failures are not counted"
        assert route.next_run_at is not None, "a failed route must be due again"
        delays.append((route.next_run_at - utcnow()).total_seconds())
        assert schedule_once(rt, lambda *_: None, policy) == 0, "a failed route was retried without waiting"
        time.sleep(delays[-1] + 0.05)
    assert 0.6 < delays[0] < 1.4 and delays[1] > delays[0] and delays[2] <= 3.0, \
        f"expected a doubling backoff capped at 3 s, got {delays}"

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    from hub.settings import get_settings

    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(cli, ["status", "demo"]).output
    finally:
        get_settings.cache_clear()
    assert "failed 3 times in a row" in out and "next try" in out, f"hub status hides the failing route:\n{out}"


def test_the_service_syncs_a_scheduled_route_end_to_end(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("categories", 3)
    erp.seed("products", 40)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    with rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "sales").values(enabled=False))
    service = Service(rt, _emptied_redis(), threads=4, relay_interval=0.1, scheduler_interval=0.1)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while len(shop.records("products")) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop(timeout=10)
    assert len(shop.records("products")) == 40
    assert len(shop.records("categories")) == 3


def test_a_long_run_keeps_its_route_and_a_killed_one_comes_back(rt, tmp_path):
    """The claim is renewed while the run goes on (a first sync of a big catalog takes hours), and lapses soon
    after its worker dies."""
    from hub.runner.routes import Lease

    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    policy = RunPolicy(lease_seconds=0.3)
    runs: list[tuple[str, str, str]] = []
    assert schedule_once(rt, lambda t, r, lease: runs.append((t, r, lease)), policy) == 2
    tenant, name, lease_until = next(run for run in runs if run[1] == "catalog")
    with Lease(rt, tenant, name, datetime.fromisoformat(lease_until), policy):
        time.sleep(1.0)  # over three leases long
        again: list[str] = []
        schedule_once(rt, lambda t, r, _lease: again.append(r), policy)
        assert "catalog" not in again, "a run still going was started a second time"
    # The worker dies here: nothing renews the lease or records an outcome.
    time.sleep(0.4)
    back: list[str] = []
    schedule_once(rt, lambda t, r, _lease: back.append(r), policy)
    assert "catalog" in back, "the run of a killed worker never came back"


def test_a_sale_is_read_and_written_while_the_catalog_holds_every_catalog_thread(rt, tmp_path, lojinha_pair):
    """One catalog thread, busy with slow product writes (each answered after 1.5 s): the sales route's run and its
    writes go on the urgent queue, served by threads of their own, so the sale reaches the ERP long before the
    catalog is through (its run used to wait behind every catalog write handed to the broker)."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 16)
    shop.seed("payment_methods", 3)
    shop.fault_delay = 1.5
    shop.inject_fault("timeout", 100, method="POST")  # slow, then served: the client waits 30 s
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    with rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "sales").values(next_run_at=None))
    service = Service(rt, _emptied_redis(), threads=1, relay_interval=0.1, scheduler_interval=0.1)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while not shop.records("products") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert shop.records("products"), "the catalog's writes never began"
        shop.seed("sales", 1)
        with rt.store.begin() as s:  # as a webhook would: the sales route is due now
            s.execute(update(Route).where(Route.name == "sales").values(next_run_at=utcnow()))
        service.due_now.set()
        rung = time.monotonic()
        while not erp.records("sales") and time.monotonic() - rung < 15:
            time.sleep(0.1)
        took = time.monotonic() - rung
        written = len(shop.records("products"))
    finally:
        service.stop(timeout=10)
    assert erp.records("sales"), "the sale never reached the ERP while the catalog was being written"
    assert written < 16, f"the catalog was through ({written} products) before the sale went: nothing was shown"
    assert took < 8, f"the sale took {took:.1f} s behind the catalog's writes"
