"""Priority within a shared rate budget, and fairness across tenants and routes when operations are handed out.

The budget tests book slots an interval of a minute apart and never sleep: what they check is the order in which
slots are booked (which is the order the calls go out), not how long anything takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from hub.config import apply as applying
from hub.config import routes as config
from hub.ratelimit import BULK, BULK_HORIZON, BULK_SHARE, URGENT, LocalThrottle, RedisThrottle, pace
from hub.runner.service import relay_once
from hub.store.schema import Operation, Route
from hub.sync.context import ConnectorContext, budget_priority
from hub.sync.ingest import enqueue, operation_row
from hub.sync.operations import due_operations
from sqlalchemy import select

MINUTE = 60.0
"""The interval of the budget tests: no call of a test is ever that late, so the bookings are deterministic."""


def book(throttle: LocalThrottle | RedisThrottle, key: str, priority: str) -> float | None:
    """The slot booked (seconds from now), or None when a bulk call was told to ask again later."""
    wait = throttle.reserve(key, MINUTE, priority=priority)
    return None if wait < 0 else round(wait / MINUTE)


def test_sales_queued_after_catalog_calls_go_before_the_rest_of_the_catalog() -> None:
    budget, key = LocalThrottle(), "bling:loja/bling"
    assert book(budget, key, BULK) == 0, "an idle budget serves bulk work at once"
    assert book(budget, key, BULK) is None, "bulk work never books ahead of whoever may come"
    sales = [book(budget, key, URGENT) for _ in range(4)]
    assert sales == [1, 2, 3, 4], "the sale calls wait only for the catalog call already on its way"
    assert book(budget, key, BULK) == 5, "after BULK_SHARE - 1 urgent slots the catalog gets one"
    assert book(budget, key, URGENT) == 6


def test_bulk_work_is_never_starved_by_a_steady_stream_of_sales() -> None:
    budget, key = LocalThrottle(), "bling:loja/bling"
    order = []
    for _ in range(40):
        order.append("U" if book(budget, key, URGENT) is not None else "?")
        if book(budget, key, BULK) is not None:  # a catalog worker asking after every sale call
            order.append("B")
    assert order.count("U") == 40
    assert order.count("B") >= 40 // (BULK_SHARE - 1) - 1, "at least one slot in BULK_SHARE goes to bulk work"
    assert order.count("B") <= 40 // (BULK_SHARE - 1) + 1, "and not more while sales queue"


def test_a_refused_bulk_call_asks_again_when_the_budget_frees_up() -> None:
    budget, key = LocalThrottle(), "bling:loja/bling"
    assert book(budget, key, BULK) == 0
    retry = -budget.reserve(key, MINUTE, priority=BULK)
    horizon = MINUTE * (1 - BULK_HORIZON)
    assert horizon - 1 < retry <= horizon, "it asks again as the slot under way ends: the budget is never left idle"


def test_a_throttle_without_priorities_is_still_paced_first_come_first_served() -> None:
    class Plain:
        def __init__(self) -> None:
            self.calls: list[tuple[str, float]] = []

        def reserve(self, key: str, interval: float) -> float:
            self.calls.append((key, interval))
            return 0.0

        def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
            return 0

    plain = Plain()
    assert pace(plain, "k", 2.0, priority=BULK) == 0.0  # type: ignore[arg-type]
    assert plain.calls == [("k", 0.5)]


def test_switching_priority_off_serves_every_call_first_come_first_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_BUDGET_PRIORITY", "off")
    budget, slept = LocalThrottle(), list[float]()
    for _ in range(3):
        pace(budget, "bling:loja/bling", 1 / MINUTE, priority=BULK, sleep=slept.append)
    assert [round(w / MINUTE) for w in slept] == [1, 2], "bulk calls booked ahead like any other"


class Recording:
    """The Throttle protocol with classes, recording what each call asked for (no pacing)."""

    prioritized = True

    def __init__(self) -> None:
        self.asked: list[str] = []

    def reserve(self, key: str, interval: float, burst: int = 1, priority: str = URGENT) -> float:
        self.asked.append(priority)
        return 0.0

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        return 0


def test_the_context_decides_the_class_from_its_stream_not_the_plugin() -> None:
    assert budget_priority("sales") == budget_priority("invoices") == URGENT
    assert budget_priority(None) == URGENT, "a token renewal is never held back"
    assert budget_priority("products") == budget_priority("stock") == budget_priority("prices") == BULK
    assert budget_priority("customers", ["customers", "sales"]) == URGENT, \
        "a sale waits for its customer: the customers a sales route writes go with its sales"
    assert budget_priority("customers", ["products", "customers"]) == BULK, "a catalog's customers wait their turn"
    budget = Recording()
    for stream in ("products", "sales", None):
        ctx = ConnectorContext(tenant="loja", connection="bling", platform="bling", options={}, credentials={},
                               stream=stream, budget=budget)  # type: ignore[arg-type]
        ctx.throttle("bling:loja", 3.0)
    assert budget.asked == [BULK, URGENT, URGENT]


REDIS = os.environ.get("HUB_TEST_REDIS_URL")
CHILD = textwrap.dedent("""
    import sys
    from hub.ratelimit import RedisThrottle, URGENT
    budget = RedisThrottle(sys.argv[1], namespace=sys.argv[2])
    print(",".join(str(round(budget.reserve("bling:loja", 60.0, priority=URGENT) / 60.0)) for _ in range(4)))
""")


@pytest.mark.skipif(not REDIS, reason="needs Redis (set HUB_TEST_REDIS_URL)")
def test_the_priority_holds_across_processes_sharing_redis() -> None:
    assert REDIS is not None
    namespace = f"hub-test:{uuid.uuid4()}"
    here = RedisThrottle(REDIS, namespace=namespace)
    key = "bling:loja"
    assert book(here, key, BULK) == 0
    assert book(here, key, BULK) is None
    other = subprocess.run([sys.executable, "-c", CHILD, REDIS, namespace], capture_output=True, text=True,
                           check=True, timeout=60)
    assert other.stdout.strip() == "1,2,3,4", "the other process's sales go right after the call under way"
    assert book(here, key, BULK) == 5, "and this process's catalog gets its share after them"
    assert book(here, key, URGENT) == 6


# --- fairness across tenants and routes -------------------------------------------------------------------------

TWO_TENANTS = """
version: 1
tenants:
{tenants}
"""
TENANT = """
  {name}:
    name: {name}
    connections:
      erp: {{platform: lojinha, options: {{base_url: "http://127.0.0.1:9"}}, credentials: stored}}
      shop: {{platform: lojinha, options: {{base_url: "http://127.0.0.1:9"}}, credentials: stored}}
    routes:
      catalog: {{source: erp, sink: shop, streams: [products]}}
      sales: {{source: shop, sink: erp, streams: [sales]}}
"""


def _two_tenants(rt, tmp_path: Path) -> dict[tuple[str, str], Route]:
    path = tmp_path / "routes.yaml"
    path.write_text(TWO_TENANTS.format(tenants="".join(TENANT.format(name=n) for n in ("big", "small"))))
    parsed = config.load(path)
    errors, _ = applying.check(parsed, rt.registry, str(path))
    assert not errors, errors
    applying.apply(parsed, rt.store, rt.vault, tenants="all")
    with rt.store.sessions() as s:
        routes = {(r.tenant_id, r.name): r for r in s.scalars(select(Route))}
        s.expunge_all()
    return routes


def _queue(rt, route: Route, kind: str, entity: str, n: int, tag: str) -> list[int]:
    rows = [operation_row(route, kind=kind, entity=entity, canonical_id=f"{tag}-{i}", content_hash=f"h{i}")
            for i in range(n)]
    with rt.store.begin() as s:
        enqueue(s, rows)
    with rt.store.sessions() as s:
        return list(s.scalars(select(Operation.id).where(Operation.route_id == route.id,
                                                         Operation.canonical_id.like(f"{tag}-%"))
                              .order_by(Operation.id)))


def test_a_tenants_catalog_backlog_does_not_delay_another_tenants_sale(rt, tmp_path: Path) -> None:
    routes = _two_tenants(rt, tmp_path)
    backlog = _queue(rt, routes[("big", "catalog")], "push_catalog", "products", 1000, "p")
    their_product = _queue(rt, routes[("small", "catalog")], "push_catalog", "products", 1, "q")
    their_sale = _queue(rt, routes[("small", "sales")], "push_sale", "sales", 1, "s")

    first = due_operations(rt, limit=4)
    assert first[0] == their_sale[0], "a sale goes before any catalog write"
    assert first[1:4] == [backlog[0], their_product[0], backlog[1]], "tenants take turns; the oldest goes first"

    everything = due_operations(rt, limit=2000)
    assert len(everything) == 1002, "every due operation is still handed out"
    assert everything[3:] == backlog[1:], "a route's own writes keep their order"


def test_the_relay_sends_sales_to_their_own_queue_and_bounds_each_routes_share(rt, tmp_path: Path) -> None:
    routes = _two_tenants(rt, tmp_path)
    backlog = _queue(rt, routes[("big", "catalog")], "push_catalog", "products", 1000, "p")
    sent, urgent = list[int](), list[int]()
    assert relay_once(rt, sent.append, send_urgent=urgent.append, window=16) == 16
    assert sent == backlog[:16], "a route gets at most its window in flight, in its own order"

    their_sale = _queue(rt, routes[("small", "sales")], "push_sale", "sales", 1, "s")
    their_product = _queue(rt, routes[("small", "catalog")], "push_catalog", "products", 1, "q")
    sent.clear()
    assert relay_once(rt, sent.append, send_urgent=urgent.append, window=16) == 2
    assert urgent == their_sale and sent == their_product, "the full route waits; the others go at once"

    with rt.store.begin() as s:  # the big tenant's first writes finished
        s.execute(Operation.__table__.update().where(Operation.id.in_(backlog[:8])).values(state="done"))
    sent.clear()
    assert relay_once(rt, sent.append, send_urgent=urgent.append, window=16) == 8
    assert sent == backlog[16:24], "the window refills as writes finish"


def test_low_priority_work_still_progresses_behind_a_flood_of_sales(rt, tmp_path: Path) -> None:
    routes = _two_tenants(rt, tmp_path)
    sales = _queue(rt, routes[("small", "sales")], "push_sale", "sales", 300, "s")
    products = _queue(rt, routes[("small", "catalog")], "push_catalog", "products", 5, "p")
    sent, urgent = list[int](), list[int]()
    relay_once(rt, sent.append, send_urgent=urgent.append, window=16)
    assert urgent == sales[:16] and sent == products, "catalog writes go out beside a sales backlog"


def test_postings_told_to_wait_for_their_sales_push_never_keep_the_push_from_the_window(rt, tmp_path: Path) -> None:
    """The 10,000-sale chaos run stalled: a few hundred postings of earlier sales, each told to wait for its sale's
    (later, re-queued) push, filled the route's window at every relay pass by their lower ids, ran, waited again,
    and the pushes never went out."""
    routes = _two_tenants(rt, tmp_path)
    postings = _queue(rt, routes[("small", "sales")], "perform_action", "sales", 40, "a")
    pushes = _queue(rt, routes[("small", "sales")], "push_sale", "sales", 40, "s")
    with rt.store.begin() as s:
        s.execute(Operation.__table__.update().where(Operation.id.in_(postings)).values(
            last_error="waiting for the record to reach the sink first"))
    urgent: list[int] = []
    assert relay_once(rt, urgent.append, send_urgent=urgent.append, window=16) == 16
    assert urgent == pushes[:16], "the pushes the postings wait for go first"
    with rt.store.begin() as s:  # those pushes ran; the postings still wait for the other pushes
        s.execute(Operation.__table__.update().where(Operation.id.in_(pushes[:16])).values(state="done"))
    urgent.clear()
    relay_once(rt, urgent.append, send_urgent=urgent.append, window=16)
    assert urgent == pushes[16:32]
    with rt.store.begin() as s:
        s.execute(Operation.__table__.update().where(Operation.id.in_(pushes)).values(state="done"))
    urgent.clear()
    relay_once(rt, urgent.append, send_urgent=urgent.append, window=16)
    assert urgent == postings[:16], "the waiting postings still go out once nothing else can run"


def test_bulk_work_gives_way_while_urgent_work_runs_in_the_process_and_only_so_long() -> None:
    from hub.sync.give_way import PAUSE_LIMIT_SECONDS, give_way, urgent_running, urgent_work

    assert give_way() == 0, "nothing urgent runs: a catalog page goes on at once"
    with urgent_work():
        assert urgent_running() == 1
        paused = give_way()
    assert paused == pytest.approx(PAUSE_LIMIT_SECONDS), "a page waits at most the limit, however long a sale takes"
    assert urgent_running() == 0 and give_way() == 0
