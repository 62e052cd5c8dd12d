"""A route moves records source -> store -> sink, with bindings and cursors, and nothing twice."""

from __future__ import annotations

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from hub.runner.actors import declare
from hub.runner.broker import middleware
from hub.store.schema import Binding, Connection, Cursor, Operation, Quarantine
from hub.sync.drain import drain
from hub.sync.operations import due_operations
from hub.sync.pull import sync_route
from sqlalchemy import func, select

from tests.flows import apply_demo_routes


def count(rt, model, *where):
    with rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_a_route_moves_records_with_bindings_and_cursors(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("categories", 5)
    erp.seed("products", 120)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)

    report = sync_route(rt, "demo", "catalog")
    assert report.ok, report
    states = drain(rt)
    assert states == {"done": 125}
    assert len(shop.records("products")) == 120
    assert {p["sku"] for p in shop.records("products")} == {p["sku"] for p in erp.records("products")}
    with rt.store.sessions() as s:
        shop_id = s.scalar(select(Connection.id).where(Connection.name == "shop"))
        cursor = s.scalar(select(Cursor).where(Cursor.stream == "products"))
    assert count(rt, Binding, Binding.connection_id == shop_id, Binding.entity == "products") == 120
    assert cursor.position and cursor.last_success_at

    again = sync_route(rt, "demo", "catalog")
    assert all(r.counts.new == 0 and r.counts.changed == 0 and r.counts.operations == 0 for r in again.streams)
    assert due_operations(rt) == []
    assert len(shop.records("products")) == 120


def test_a_changed_record_is_pushed_as_an_update(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    ids = erp.seed("products", 10)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    sync_route(rt, "demo", "catalog")
    drain(rt)
    erp.touch("products", ids[3])
    report = sync_route(rt, "demo", "catalog")
    assert report.streams[0].counts.changed == 1
    assert drain(rt) == {"done": 11}
    touched = next(p for p in erp.records("products") if p["id"] == ids[3])
    remote = next(p for p in shop.records("products") if p["sku"] == touched["sku"])
    assert remote["nome"] == touched["nome"] and len(shop.records("products")) == 10


def test_every_message_delivered_twice_creates_nothing_twice(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 60)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    sync_route(rt, "demo", "catalog")
    broker = StubBroker(middleware=middleware())
    actors = declare(broker, rt)
    worker = Worker(broker, worker_threads=4, worker_timeout=50)
    worker.start()
    try:
        for op_id in due_operations(rt):
            actors.execute_operation.send(op_id)
            actors.execute_operation.send(op_id)
        broker.join("hub", timeout=60_000)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    assert count(rt, Operation, Operation.state == "done") == 60
    assert len(shop.records("products")) == 60
    assert len({p["sku"] for p in shop.records("products")}) == 60
    assert isinstance(broker, dramatiq.Broker)


def test_a_bad_record_is_quarantined_and_the_others_go_through(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 20)
    erp.seed_invalid("products")
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    report = sync_route(rt, "demo", "catalog")
    assert report.ok
    assert report.streams[0].counts.quarantined == 1
    drain(rt)
    assert len(shop.records("products")) == 20
    with rt.store.sessions() as s:
        (q,) = s.scalars(select(Quarantine))
    assert q.tenant_id == "demo" and q.entity == "products" and q.field and q.fix
    assert "lojinha" in q.reason


def test_an_unmapped_payment_method_stops_the_route_before_anything_moves(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)
    shop.seed("sales", 5)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url,
                      **{"sales.mappings.payment_methods": {"dinheiro": "dinheiro", "pix": "pix"}})
    report = sync_route(rt, "demo", "sales")
    assert not report.ok
    error = report.streams[0].error if report.streams else ""
    assert "credito" in error and "DE-PARA" in error
    assert count(rt, Operation) == 0
    assert erp.records("sales") == []


def test_status_transitions_run_each_action_exactly_once(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)
    ids = shop.seed("sales", 4)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    sync_route(rt, "demo", "sales")
    drain(rt)
    assert len(erp.records("sales")) == 4
    shop.touch("sales", ids[0])  # aberto -> atendido
    sync_route(rt, "demo", "sales")
    drain(rt)
    sync_route(rt, "demo", "sales")
    drain(rt)
    shop.touch("sales", ids[0])  # atendido -> cancelado
    sync_route(rt, "demo", "sales")
    drain(rt)
    order = next(o for o in erp.records("sales") if o["numero"] == next(
        s["numero"] for s in shop.records("sales") if s["id"] == ids[0]))
    assert order["situacao"] == "cancelado"
    assert sorted(order["actions"]) == ["post-accounts", "post-stock", "reverse-accounts", "reverse-stock"]
    assert len(erp.records("sales")) == 4


def test_a_sale_reopened_and_cancelled_again_posts_and_reverses_again(rt, tmp_path, lojinha_pair):
    """Atendido -> cancelado -> atendido -> cancelado: each passage runs its actions, so the stock posted by the
    reopening is reversed by the second cancellation (the same change twice is two changes, not a replay)."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)
    (sale,) = shop.seed("sales", 1)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    for status in ("atendido", "cancelado", "atendido", "cancelado"):
        shop.edit("sales", sale, situacao=status)
        assert sync_route(rt, "demo", "sales").ok
        drain(rt)
    (order,) = erp.records("sales")
    assert order["situacao"] == "cancelado"
    assert sorted(order["actions"]) == ["post-accounts"] * 2 + ["post-stock"] * 2 + ["reverse-accounts"] * 2 + \
        ["reverse-stock"] * 2


def test_a_page_listing_a_record_twice_binds_it_once(rt, tmp_path, lojinha_pair):
    from hub.models import Product
    from hub.platform import Incoming
    from hub.store.schema import Route
    from hub.sync.ingest import ingest_page
    from hub.sync.loading import route_view

    (_erp, erp_url), (_shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    items = [Incoming(external_id="9", data=Product(sku="X", name=name)) for name in ("first", "second")]
    with rt.store.begin() as s:
        route = s.scalar(select(Route).where(Route.name == "catalog"))
        counts = ingest_page(s, rt.registry, route, route_view(s, route), "products", items)
    assert counts.new == 1 and counts.operations == 1
    assert count(rt, Binding, Binding.external_id == "9") == 1
