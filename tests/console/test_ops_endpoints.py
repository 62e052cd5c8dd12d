"""/health, /health/ready and /metrics: what an orchestrator and Prometheus read."""

from __future__ import annotations

import os
import re

from hub.console.app import make_app
from hub.store import migrate
from starlette.testclient import TestClient

from tests.console.conftest import SECRET, ring


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_move_during_a_sync(rt, shop, client):
    shop.catalog(4)
    shop.apply()
    before = client.get("/metrics")
    assert before.status_code == 200 and "hub_queue_depth" in before.text
    assert _value(before.text, "hub_api_calls_total", platform="bling") == 0
    shop.sync("catalog")
    ring(shop, 2)
    shop.sync("sales")
    after = client.get("/metrics").text
    assert _value(after, "hub_api_calls_total", platform="bling", status="200") > 0
    assert _value(after, "hub_api_calls_total", platform="cplug") > 0
    assert _value(after, "hub_api_call_duration_seconds_count", platform="bling") == _value(
        after, "hub_api_calls_total", platform="bling")
    assert _value(after, "hub_operations", platform="bling", kind="push_sale", outcome="done") == 2
    assert _value(after, "hub_operations", platform="cplug", outcome="done") > 0
    assert re.search(r'hub_sync_lag_seconds\{route="sales",stream="sales",tenant="loja"\} ', after)
    assert "hub_oldest_pending_operation_age_seconds 0.0" in after
    calls = _value(after, "hub_api_calls_total")
    ring(shop, 1)
    shop.sync("sales")
    again = client.get("/metrics").text
    assert _value(again, "hub_api_calls_total") > calls, "a counter only grows"
    assert _value(again, "hub_operations", platform="bling", kind="push_sale", outcome="done") == 3


def test_liveness_answers_and_readiness_checks_the_store_the_schema_and_the_broker(rt, client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "schema": "ok",
                                                                   "broker": "in-process"}
    with TestClient(make_app(rt, SECRET, redis_url="redis://127.0.0.1:1/0")) as no_broker:
        answer = no_broker.get("/health/ready")
        assert answer.status_code == 503 and answer.json()["checks"]["broker"].startswith("unreachable")
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if redis_url:  # the PostgreSQL + Redis pass: a broker that answers
        with TestClient(make_app(rt, SECRET, redis_url=redis_url)) as with_broker:
            assert with_broker.get("/health/ready").json()["checks"]["broker"] == "ok"
    migrate.downgrade(rt.store, "0004")
    stale = client.get("/health/ready")
    assert stale.status_code == 503 and "hub db upgrade" in stale.json()["checks"]["schema"]
    migrate.upgrade(rt.store)
    assert client.get("/health/ready").status_code == 200


def test_webhooks_are_received_on_the_console_port(rt, client):
    answer = client.post("/webhooks/nobody/nothing", content=b"{}")
    assert answer.status_code == 401 and answer.json() == {"error": "invalid signature"}
