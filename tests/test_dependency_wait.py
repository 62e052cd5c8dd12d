"""A status action waits for its sale to reach the sink for as long as the sale's write is on its way (a backlog, a
long rate-limit pause): it gives up only when nothing will bring the record."""

from __future__ import annotations

from datetime import timedelta

from hub.store.engine import utcnow
from hub.store.schema import Operation
from hub.sync.drain import drain
from hub.sync.operations import MAX_DEPENDENCY_WAITS, execute
from hub.sync.pull import sync_route
from sqlalchemy import select, update

from tests.flows import apply_demo_routes


def test_an_action_outwaits_a_long_queued_push_and_then_runs(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    shop.seed("sales", 1)
    (sale,) = shop.records("sales")
    shop.touch("sales", str(sale["id"]))  # aberto -> atendido: the route's transition posts stock and accounts
    assert sync_route(rt, "demo", "sales").ok
    later = utcnow() + timedelta(hours=1)
    with rt.store.begin() as s:  # the sale's write waits behind a long backlog
        s.execute(update(Operation).where(Operation.kind == "push_sale").values(available_at=later))
        actions = list(s.scalars(select(Operation.id).where(Operation.kind == "perform_action")))
        s.execute(update(Operation).where(Operation.id.in_(actions)).values(waits=MAX_DEPENDENCY_WAITS + 5))
    assert actions
    for op_id in actions:
        assert execute(rt, op_id) == "pending", "the sale's write is still on its way: keep waiting"

    with rt.store.begin() as s:
        s.execute(update(Operation).values(available_at=utcnow()))
    assert drain(rt, max_wait=70) == {"done": 1 + len(actions)}
    assert len(erp.records("sales")) == 1
