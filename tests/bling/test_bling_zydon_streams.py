"""What the Zydon route reads from Bling besides sales: prices from the product list pages (no detail call),
re-read on a product webhook together with the products; customers, active ones only on a first sync."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
from hub import webhooks
from hub.sandbox import serve
from hub.store.schema import Record, Route
from sqlalchemy import select, update

from tests.bling.conftest import TENANT, World
from tests.bling.test_bling_webhooks import _signed, know_company


def _records(world: World, entity: str) -> list[dict]:
    with world.rt.store.sessions() as s:
        return [r.payload for r in s.scalars(select(Record).where(Record.entity == entity))]


def test_prices_come_from_the_list_pages_alone_and_follow_a_change(world: World):
    ids = world.box.seed("products", 40)
    with world.box.state.lock:
        active = {p["codigo"]: p["preco"] for p in world.box.state.products.values() if p["situacao"] == "A"}
    world.route("prices", ["prices"], pull=True)
    before = len(world.box.request_log)
    assert world.pull("prices").ok
    prices = {p["sku"]: p for p in _records(world, "prices")}
    assert set(prices) == set(active), "every active product and variation, zero and negative stock included"
    assert all(Decimal(prices[sku]["price"]) == Decimal(str(active[sku])) for sku in active)
    assert {p["price_list"] for p in prices.values()} == {"default"}
    paths = {c["path"] for c in world.box.request_log[before:]} - {"/empresas/me/dados-basicos"}
    assert paths == {"/produtos"}, f"list pages only, no detail: {sorted(paths)}"
    with world.box.state.lock:
        pid = next(i for i in ids if world.box.state.products[int(i)]["situacao"] == "A"
                   and not world.box.state.pmeta[int(i)].children)
    world.box.age("products", 3600)
    world.box.touch("products", pid)  # Bling's price goes up 0.10
    again = world.pull("prices")
    assert again.ok and again.streams[0].counts.changed == 1
    changed = world.box.state.products[int(pid)]
    assert Decimal(next(p for p in _records(world, "prices") if p["sku"] == changed["codigo"])["price"]) == \
        Decimal(str(changed["preco"]))


def test_a_product_event_re_reads_products_and_prices(world: World):
    world.route("catalog", ["products"], pull=True)
    world.route("prices", ["prices"], pull=True)
    world.route("stock", ["stock"], pull=True)
    know_company(world)
    with world.rt.store.begin() as s:
        s.execute(update(Route).values(next_run_at=None))
    body = json.dumps({"eventId": "0194-product-1", "date": "2026-11-24T12:00:00Z", "version": "v1",
                       "event": "product.updated", "companyId": world.box.company_id,
                       "data": {"id": 123, "codigo": "SKU-1", "preco": 10.5}}).encode()
    with serve(webhooks.app(world.rt)) as receiver:
        url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        first = httpx.post(url, content=body, headers=_signed(world.box.client_secret, body))
        again = httpx.post(url, content=body, headers=_signed(world.box.client_secret, body))
    assert first.status_code == 200 and first.json()["routes"] == ["catalog", "prices"]
    assert again.json()["accepted"] == 0, "a redelivery is a duplicate for both streams"


def test_a_first_customer_sync_sends_active_contacts_only_and_later_an_inactivation(world: World):
    ids = world.box.seed("customers", 12)
    for cid in ids[:3]:
        world.box.edit("customers", cid, {"situacao": "I"})
    world.route("customers", ["customers"], pull=True)
    before = len(world.box.request_log)
    assert world.pull("customers").ok
    names = {c["name"] for c in _records(world, "customers")}
    assert len(names) == 9 and all(c["active"] for c in _records(world, "customers"))
    details = [c["path"] for c in world.box.request_log[before:] if c["path"].startswith("/contatos/")]
    assert len(details) == 9, "an inactive contact costs no detail call"
    world.box.age("customers", 3600)
    world.box.edit("customers", ids[5], {"situacao": "I"})  # sent before: the sink must learn it
    world.box.edit("customers", ids[0], {"nome": "Inativo Renomeado"})  # never sent: stays out
    again = world.pull("customers")
    counts = again.streams[0].counts
    assert again.ok and counts.changed == 1 and counts.new == 0
    assert sum(1 for c in _records(world, "customers") if not c["active"]) == 1
