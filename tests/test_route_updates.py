"""A route that only updates fields (``updates: {sales: [status]}``): an order's status set in the ERP goes back to
the shop the order came from, orders the hub never exchanged are left alone, and nothing bounces back."""

from __future__ import annotations

import json

from hub.config import apply as applying
from hub.config import routes as config
from hub.store.schema import Quarantine
from hub.sync.drain import drain
from hub.sync.pull import sync_route
from sqlalchemy import func, select

from tests.flows import apply_demo_routes

STATUSES = {"source": "erp", "sink": "shop", "streams": ["sales"], "updates": {"sales": ["status"]}}


def _orders(box):
    return {o["numero"]: o for o in box.records("sales")}


def test_a_status_set_in_the_erp_reaches_the_shop_order_and_does_not_bounce(rt, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, statuses=STATUSES)
    shop.seed("sales", 3)
    assert sync_route(rt, "demo", "sales").ok
    assert set(drain(rt)) == {"done"}
    pushed = _orders(erp)
    assert len(pushed) == 3
    typed_by_hand = erp.seed("sales", 1)[0]

    number, order = next(iter(pushed.items()))
    erp.touch("sales", str(order["id"]))  # a person moves the order on in the ERP
    new_status = _orders(erp)[number]["situacao"]
    assert new_status != order["situacao"]

    report = sync_route(rt, "demo", "statuses")
    assert report.ok, report
    counts = report.streams[0].counts
    assert counts.changed == 1 and counts.new == 0, counts
    assert counts.skipped >= 1, "the order typed into the ERP by hand is not the hub's to carry"
    assert set(drain(rt)) == {"done"}
    assert _orders(shop)[number]["situacao"] == new_status
    assert len(shop.records("sales")) == 3, "the order typed by hand was not created on the shop"
    assert typed_by_hand not in {str(o["id"]) for o in shop.records("sales")}

    # The shop now shows the status the hub wrote: reading it back moves nothing, in either direction.
    for route in ("sales", "statuses", "sales"):
        again = sync_route(rt, "demo", route)
        assert again.ok and sum(s.counts.operations for s in again.streams) == 0, (route, again)
    assert drain(rt) == {"done": 4}, "the 3 orders and the one status change; nothing more"
    with rt.store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Quarantine)) == 0


def test_updates_name_only_fields_the_stream_has(rt, tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("""
version: 1
tenants:
  demo:
    name: Demo
    connections:
      erp: {platform: lojinha, options: {base_url: "http://127.0.0.1:1"}}
      shop: {platform: lojinha, options: {base_url: "http://127.0.0.1:2"}}
    routes:
      statuses:
        source: erp
        sink: shop
        streams: [sales]
        updates: {sales: [stauts], products: [price]}
""")
    errors, _ = applying.check(config.load(path), rt.registry, str(path))
    text = "\n".join(errors)
    assert "updates.sales: sales records have no field 'stauts'" in text and "status" in text, text
    assert "updates.products: 'products' is not one of the route's streams" in text, text


def test_the_erps_word_for_a_status_is_stored_in_the_shops_words_keep_leaves_it_and_a_missing_one_is_refused(
        rt, tmp_path, lojinha_pair, hub):
    """The record holds the status in the words of the route that brought it (the shop's). Had the statuses route
    stored the ERP's word, the two routes would rewrite the record in turn for ever, each with its own word."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    table = {"faturado": "atendido", "em aberto": "keep"}
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, statuses={**STATUSES, "mappings": {"statuses": table}})
    shop.seed("sales", 3)
    assert sync_route(rt, "demo", "sales").ok and set(drain(rt)) == {"done"}
    numbers = sorted(_orders(erp))
    billed, untouched, odd = (_orders(erp)[n] for n in numbers)
    erp.edit("sales", str(billed["id"]), situacao="faturado")
    erp.edit("sales", str(untouched["id"]), situacao="em aberto")
    erp.edit("sales", str(odd["id"]), situacao="em separação")

    report = sync_route(rt, "demo", "statuses")
    assert report.ok, report
    assert set(drain(rt)) == {"done"}
    shop_orders = _orders(shop)
    assert shop_orders[numbers[0]]["situacao"] == "atendido", "the ERP's 'faturado' in the shop's words"
    assert shop_orders[numbers[1]]["situacao"] == "aberto", "'keep': the shop's status stays as it was"
    assert shop_orders[numbers[2]]["situacao"] == "aberto", "an unmapped status is not guessed"
    with rt.store.sessions() as s:
        (refused,) = s.scalars(select(Quarantine)).all()
    assert refused.field == "status" and "'em separação' has no mapping" in refused.reason, refused.reason
    assert "routes.statuses.mappings.statuses" in refused.fix and "'keep'" in refused.fix, refused.fix

    seen = {box: len(box.request_log) for box in (erp, shop)}
    for route in ("sales", "statuses", "sales", "statuses"):
        again = sync_route(rt, "demo", route)
        assert again.ok and sum(s.counts.operations for s in again.streams) == 0, (route, again)
        assert not any(s.counts.changed for s in again.streams), "the shop's 'atendido' is the record's own word"
    assert drain(rt) == {"done": 4}, "the 3 orders and the one status carried; nothing more"
    assert not [r for box, at in seen.items() for r in box.request_log[at:] if r["method"] != "GET"]

    # `hub mappings` reads the ERP's words for this route, not the shop's words the records hold for it
    tables = json.loads(hub("mappings", "demo", "statuses", "--json").stdout)
    assert [t["table"] for t in tables] == ["statuses"], "the route carries only the status"
    assert {r["source"] for r in tables[0]["rows"]} == {"faturado", "em aberto"}, tables[0]["rows"]
    assert not tables[0]["problems"], tables[0]["problems"]

    apply_demo_routes(rt, tmp_path, erp_url, shop_url,
                      statuses={**STATUSES, "mappings": {"statuses": {**table, "em separação": "atendido"}}})
    assert sync_route(rt, "demo", "statuses").ok and set(drain(rt)) == {"done"}
    assert _orders(shop)[numbers[2]]["situacao"] == "atendido", "the mapping added, the same ERP record is carried"
