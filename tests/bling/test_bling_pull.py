"""Reading Bling's catalog: every page, the list defaults that hide data, variations, fiscal data, categories,
stock per depósito, sellers and payment methods; incremental by change date; a run stopped mid-way resumes."""

from __future__ import annotations

import json

from hub.store.schema import Cursor, Record
from sqlalchemy import select

from tests.bling.conftest import World, parents


def _records(world: World, entity: str) -> list[dict]:
    with world.rt.store.sessions() as s:
        return [r.payload for r in s.scalars(select(Record).where(Record.entity == entity))]


def test_a_full_pull_reads_every_active_product_with_its_grid_and_fiscal_data(world: World):
    world.box.seed("categories", 25)
    world.box.seed("products", 230)
    world.route("catalog", ["categories", "products"], pull=True)
    report = world.pull("catalog")
    assert report.ok, report
    remote = parents(world.box)
    active = [p for p in remote if p["situacao"] == "A"]
    products = {p["sku"]: p for p in _records(world, "products")}
    assert set(products) == {p["codigo"] for p in active}, "zero-stock and old products are read too"
    with_grid = [p for p in active if p.get("variacoes")]
    assert with_grid, "the sandbox seeds products with variations"
    sample = with_grid[0]
    grid = products[sample["codigo"]]["variations"]
    assert {v["sku"] for v in grid} == {v["codigo"] for v in sample["variacoes"]}
    assert all(v["attributes"] for v in grid)
    simple = next(p for p in active if not p.get("variacoes") and p["categoria"]["id"])
    canon = products[simple["codigo"]]
    assert canon["fiscal"]["ncm"] == simple["tributacao"]["ncm"].replace(".", "")
    assert canon["fiscal"]["origin"] == simple["tributacao"]["origem"]
    assert canon["gtin"] == simple["gtin"] and canon["images"]
    assert canon["category_path"] and len(canon["category_path"]) >= 1
    categories = _records(world, "categories")
    assert any(len(c["path"]) == 2 for c in categories), "sub-categories carry their parent's name"


def test_later_pulls_read_only_what_changed_including_inactivation(world: World):
    ids = world.box.seed("products", 40)
    world.route("catalog", ["products"], pull=True)
    assert world.pull("catalog").ok
    with world.rt.store.sessions() as s:
        cursor = json.loads(s.scalar(select(Cursor.position).where(Cursor.stream == "products")))
    assert cursor["mode"] == "incremental" and len(cursor["since"]) == 19
    requests = world.box.requests
    again = world.pull("catalog")
    assert again.streams[0].counts.new == 0 and again.streams[0].counts.changed == 0
    assert world.box.requests - requests < 10, "an unchanged catalog costs a few list calls, no details"
    world.box.touch("products", ids[3])
    third = world.pull("catalog")
    assert third.streams[0].counts.changed == 1


def test_a_pull_stopped_mid_way_resumes_without_skipping(world: World):
    from hub.platform import Incoming
    from hub.sync.loading import make_context
    from hub_bling import catalog

    world.box.seed("products", 260)
    ctx = make_context(world.rt, world.connection(), None, "products")
    try:
        pages = catalog.pull_products(ctx, None)
        seen = [r.data.sku for _ in range(2) for r in next(pages).records if isinstance(r, Incoming)]
        cursor = None
        first = catalog.pull_products(ctx, None)
        for _ in range(2):
            cursor = next(first).cursor
        state = json.loads(cursor or "{}")
        assert state["mode"] == "full" and "pass" in state, "the cursor says where to resume"
        rest = [r.data.sku for page in catalog.pull_products(ctx, cursor) for r in page.records
                if isinstance(r, Incoming)]
    finally:
        ctx.close()
    active = {p["codigo"] for p in parents(world.box) if p["situacao"] == "A"}
    assert set(seen) | set(rest) == active


def test_stock_sellers_and_payment_methods(world: World):
    world.box.seed("products", 12)
    world.box.seed("stock", 12)
    world.box.seed("sellers", 3)
    world.box.seed("payment_methods", 5)
    world.route("catalog", ["stock", "sellers", "payment_methods"], pull=True)
    assert world.pull("catalog").ok
    levels = _records(world, "stock")
    assert {lvl["warehouse"] for lvl in levels} >= {"Geral", "Loja Centro"}
    assert len(_records(world, "sellers")) >= 3
    methods = _records(world, "payment_methods")
    assert all(m["tpag"] for m in methods) and any(m["tpag"] == "17" for m in methods)


def test_a_product_bling_accepts_but_hub_refuses_is_quarantined(world: World):
    world.box.seed("products", 8)
    bad = world.box.seed_invalid("products")
    world.route("catalog", ["products"], pull=True)
    report = world.pull("catalog")
    assert report.ok and report.streams[0].counts.quarantined == 1
    (q,) = world.quarantined()
    assert q.record == bad and q.field == "gtin" and "Bling" in q.fix
