"""The API log and the webhooks received are kept HUB_LOG_RETENTION_DAYS: `hub run` prunes older rows, `hub db prune`
does it on demand, and the outbox is never pruned (its keys keep a write from being made twice)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from hub.runner.service import Service
from hub.store.engine import utcnow
from hub.store.retention import prune
from hub.store.schema import ApiCall, Connection, Operation, WebhookEvent
from hub.sync.pull import sync_route
from sqlalchemy import func, select, update

from tests.flows import apply_demo_routes


def _counts(rt) -> tuple[int, int, int]:
    with rt.store.sessions() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) or 0  # type: ignore[return-value]
                     for t in (ApiCall, WebhookEvent, Operation))


def _a_month_of_logs(rt, tmp_path, lojinha_pair) -> tuple[int, int]:
    """A sync's API log and two webhooks, half of each made 40 days old; returns the recent rows of each."""
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 6)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    old = utcnow() - timedelta(days=40)
    with rt.store.begin() as s:
        ids = list(s.scalars(select(ApiCall.id).order_by(ApiCall.id)))
        assert len(ids) >= 2
        s.execute(update(ApiCall).where(ApiCall.id.in_(ids[: len(ids) // 2])).values(at=old))
        conn = s.scalars(select(Connection.id)).first()
        s.add_all([WebhookEvent(tenant_id="demo", connection_id=conn, event_id=f"e{i}", event="products.updated",
                                received_at=at, external_id="1") for i, at in enumerate((old, utcnow()))])
    return len(ids) - len(ids) // 2, 1


def test_hub_db_prune_deletes_what_is_older_than_the_retention_and_keeps_the_outbox(
        rt, tmp_path, lojinha_pair, hub):
    recent_calls, recent_events = _a_month_of_logs(rt, tmp_path, lojinha_pair)
    *_, operations = _counts(rt)
    result = hub("db", "prune", "--days", "30", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["days"] == 30 and out["api_log"] > 0 and out["webhook_events"] == 1, out
    assert _counts(rt) == (recent_calls, recent_events, operations), "the recent rows and every operation stay"
    assert json.loads(hub("db", "prune", "--days", "30", "--json").output)["api_log"] == 0, "nothing twice"


def test_prune_goes_a_batch_at_a_time_and_picks_up_where_it_stopped(rt, tmp_path, lojinha_pair):
    recent_calls, recent_events = _a_month_of_logs(rt, tmp_path, lojinha_pair)
    first = prune(rt.store, 30, batch=1, max_batches=1)
    assert not first.done and first.api_log == 1
    rest = prune(rt.store, 30, batch=1)
    assert rest.done and rest.webhook_events == 1
    assert _counts(rt)[:2] == (recent_calls, recent_events)


def test_hub_run_prunes_old_logs_and_zero_days_keeps_them(rt, tmp_path, lojinha_pair):
    recent_calls, recent_events = _a_month_of_logs(rt, tmp_path, lojinha_pair)
    assert prune(rt.store, 0).api_log == 0 and _counts(rt)[0] > recent_calls, "0 days keeps everything"
    service = Service(rt, None, threads=1, relay_interval=0.1, scheduler_interval=0.1, retention_days=30)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while _counts(rt)[1] > recent_events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop(timeout=10)
    calls, events, _ = _counts(rt)
    assert events == recent_events and calls >= recent_calls
    with rt.store.sessions() as s:
        oldest = s.scalar(select(func.min(ApiCall.at)))
    assert oldest is not None and oldest > utcnow() - timedelta(days=30), "no API-log row older than 30 days"
