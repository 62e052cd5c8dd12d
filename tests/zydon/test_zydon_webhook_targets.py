"""Zydon's order webhook names its order: the route's next run reads that order by id, not the orders list."""

from __future__ import annotations

from typing import Any

from hub import webhooks
from hub.runner.routes import run_route
from hub.sandbox import serve

from tests.zydon.test_zydon_rules import TENANT, start  # noqa: F401 (the fixture "start")


def test_an_order_webhook_reads_that_order_alone(start: Any) -> None:  # noqa: F811 (the fixture)
    h = start(pull="sales", push="sales")
    assert h.pull(full=True).ok  # the first sync: the cursor exists, so a webhook's run may be targeted
    with serve(webhooks.app(h.rt)) as receiver:
        h.sandbox.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/platform")
        order_id = h.sandbox.place_order()
        (delivery,) = h.sandbox.deliveries
        assert delivery["status"] == 200 and delivery["answer"]["routes"] == ["pull"]
    mark = len(h.sandbox.request_log)
    assert run_route(h.rt, TENANT, "pull", None).ok
    reads = [(r["method"], str(r["path"])) for r in h.sandbox.request_log[mark:]]
    orders = [path for method, path in reads if method == "GET" and "/orders" in path]
    assert orders == [orders[0]] and orders[0].endswith(f"/orders/{order_id}"), f"one read by id: {reads}"
    assert h.bound("sales") == 1
