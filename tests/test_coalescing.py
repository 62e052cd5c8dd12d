"""A burst of changes to one record is one write: the queued, never-tried writes it replaces are superseded when the
newer one is recorded, and only the latest value reaches the sink."""

from __future__ import annotations

from typing import Any

import pytest
from hub.store.schema import ApiCall, Operation
from hub.sync.drain import drain
from hub.sync.ingest import enqueue
from hub.sync.pull import sync_route
from sqlalchemy import event, func, select

from tests.flows import apply_demo_routes


def test_five_changes_to_one_product_before_the_worker_runs_cost_one_write(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    ids = erp.seed("products", 3)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    assert drain(rt) == {"done": 3}
    with rt.store.sessions() as s:
        calls_before = s.scalar(select(func.count()).select_from(ApiCall).where(ApiCall.action.like("PUT%")))

    for _ in range(5):  # five edits, each read by a sync, before any worker runs
        erp.touch("products", ids[0])
        assert sync_route(rt, "demo", "catalog").ok
    assert drain(rt) == {"done": 4, "superseded": 4}

    latest = next(p for p in erp.records("products") if p["id"] == ids[0])
    remote = next(p for p in shop.records("products") if p["sku"] == latest["sku"])
    assert remote["nome"] == latest["nome"] and remote["preco"] == latest["preco"]
    with rt.store.sessions() as s:
        writes = s.scalar(select(func.count()).select_from(ApiCall).where(ApiCall.action.like("PUT%")))
        tried = s.scalar(select(func.count()).select_from(Operation).where(Operation.state == "superseded",
                                                                          Operation.attempts > 0))
    assert writes - calls_before == 1, "one write for five changes"
    assert tried == 0, "the superseded writes were never claimed"


def test_superseding_a_pages_queued_writes_probes_each_record_not_the_routes_whole_queue(rt, tmp_path, lojinha_pair):
    """A catalog changed again while its writes still wait: each page supersedes them through the record index, so
    a page costs the same whatever the size of the route's queue (SQLite once read every pending operation of the
    route for each page)."""
    if rt.store.dialect != "sqlite":
        pytest.skip("PostgreSQL rightly scans tables this small; the plan is SQLite's to check here")
    (erp, erp_url), (_, shop_url) = lojinha_pair
    ids = erp.seed("products", 12)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE OPERATIONS SET STATE"):
            statements.append((statement, parameters))

    event.listen(rt.store.engine, "before_cursor_execute", seen)
    try:
        for product in ids:
            erp.touch("products", product)
        assert sync_route(rt, "demo", "catalog").ok
    finally:
        event.remove(rt.store.engine, "before_cursor_execute", seen)
    assert statements, "the changed products' queued writes were superseded"
    with rt.store.engine.connect() as conn:
        for statement, parameters in statements:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                         parameters))
            assert "ix_operations_record" in plan, f"superseding did not probe the record index: {plan}"
    with rt.store.sessions() as s:
        superseded = s.scalar(select(func.count()).select_from(Operation).where(Operation.state == "superseded"))
    assert superseded == 12, "each product's first write gave way to its newer one"


def test_a_product_put_back_as_it_was_is_written_again(rt, tmp_path, lojinha_pair):
    """A price raised and then put back (a promotion's end) reaches the sink both times: the write of the old value
    is a new write, not the one already done."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    (product,) = erp.seed("products", 1)
    before = next(p for p in erp.records("products") if p["id"] == product)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    drain(rt)

    def on_the_shop() -> str:
        return str(next(p for p in shop.records("products") if p["sku"] == before["sku"])["preco"])

    erp.edit("products", product, preco="99.90")
    assert sync_route(rt, "demo", "catalog").ok
    drain(rt)
    assert on_the_shop() == "99.90"
    erp.edit("products", product, preco=before["preco"])
    assert sync_route(rt, "demo", "catalog").ok
    drain(rt)
    assert on_the_shop() == before["preco"]


def test_a_product_changed_and_put_back_before_any_write_ran_still_reaches_the_sink(rt, tmp_path, lojinha_pair):
    """Its first write superseded by the change, the change's by the return: the last one must still run."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    (product,) = erp.seed("products", 1)
    before = next(p for p in erp.records("products") if p["id"] == product)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    erp.edit("products", product, preco="99.90")
    assert sync_route(rt, "demo", "catalog").ok
    erp.edit("products", product, preco=before["preco"])
    assert sync_route(rt, "demo", "catalog").ok
    drain(rt)
    (created,) = shop.records("products")
    assert created["sku"] == before["sku"] and created["preco"] == before["preco"]
    with rt.store.sessions() as s:
        states = sorted(s.scalars(select(Operation.state)))
    assert states == ["done", "superseded", "superseded"]


def test_the_same_writes_recorded_again_are_queued_once_and_the_queued_ones_stay(rt, tmp_path, lojinha_pair):
    """Two runs that read the same change at once both record its write: the store's unique key keeps one, and
    superseding spares a queued write with the very key being recorded (it is that write)."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 3)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    columns = [c.key for c in Operation.__table__.columns if c.key != "id"]
    with rt.store.sessions() as s:
        queued = [{c: getattr(op, c) for c in columns} for op in s.scalars(select(Operation))]
    assert len(queued) == 3
    with rt.store.begin() as s:
        assert enqueue(s, queued + queued[:1]) == 0
    with rt.store.sessions() as s:
        assert sorted(s.scalars(select(Operation.state))) == ["pending"] * 3
    drain(rt)
    assert len(shop.records("products")) == 3
