"""Each rule of the Plugg.to <-> Bling integration, checked end to end: the shipped route file, both sandboxes over
real HTTP (Plugg.to's notifications delivered to the hub's receiver), the real store and the outbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hub.runner.service import schedule_once
from hub.store.schema import Record, Route
from sqlalchemy import select, update

from tests.integration.pluggto_pair import TENANT, PluggtoPair, ppair_fixture  # noqa: F401 (the fixture "ppair")


def _activate(p: PluggtoPair, products: int = 10, **changes: Any) -> None:
    """Bling's account as the merchant has it, then the first sync: catalog, stock and prices."""
    p.bling.seed("categories", 3)
    p.bling.seed("products", products)
    p.bling.seed("stock", products)
    p.bling.seed("payment_methods", 12)
    p.apply(**changes)
    assert p.sync("catalog").ok
    assert p.sync("stock_prices").ok


def _orders(p: PluggtoPair, count: int, channel: str = "mercadolivre", **fields: Any) -> list[str]:
    skus = [x["codigo"] for x in p.simple_products()]
    return [p.pluggto.place_order([skus[i % len(skus)]], channel=channel, **fields) for i in range(count)]


def _deposit_balance(p: PluggtoPair, product_id: int, deposit: str) -> Decimal:
    row = next(r for r in p.bling.records("stock") if r["produto"]["id"] == product_id)
    names = {d["id"]: d["descricao"] for d in p.bling.records("deposits")}
    return Decimal(str(sum(float(d["saldoFisico"]) for d in row.get("depositos") or []
                           if names.get(d["id"]) == deposit)))


def test_blings_catalog_reaches_pluggto_with_ncm_cest_origem_and_nbm_from_the_ncm(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 12)
    active = [x for x in p.bling.records("products") if x["situacao"] == "A" and not x.get("variacao")]
    for product in active:
        mine = p.pluggto.sku(product["codigo"])
        tax = product.get("tributacao") or {}
        assert mine["name"] == product["nome"]
        assert mine["ncm"] == tax["ncm"] and mine["nbm"] == tax["ncm"], "NBM = the NCM (nbm_from_ncm)"
        assert mine.get("cest") == (tax.get("cest") or None) and mine["origin"] == int(tax["origem"])
        if product.get("variacoes"):
            assert {v["sku"] for v in mine["variations"]} == {v["codigo"] for v in product["variacoes"]}
    assert not p.quarantined()


def test_the_stock_of_each_deposito_lands_on_its_mapped_pluggto_warehouse_and_prices_follow(
        ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 8)
    rows = {(r["sku"], r["warehouse"]): Decimal(str(r["quantity"])) for r in p.pluggto.records("stock")}
    for product in p.simple_products():
        assert rows[(product["codigo"], "default")] == _deposit_balance(p, product["id"], "Geral")
        assert rows.get((product["codigo"], "cd_sul"), Decimal(0)) == _deposit_balance(p, product["id"], "CD Sul")
        prices = {r["price_list"]: r["price"] for r in p.pluggto.records("prices") if r["sku"] == product["codigo"]}
        assert Decimal(str(prices["default"][0])) == Decimal(str(product["preco"]))
    chosen = p.simple_products()[0]
    p.bling.touch("stock", str(chosen["id"]))  # one unit enters Geral
    assert p.sync("stock_prices").ok
    assert Decimal(str(p.pluggto.sku(chosen["codigo"])["quantity"])) == _deposit_balance(p, chosen["id"], "Geral")


def test_a_product_deleted_or_deactivated_in_bling_is_deleted_from_pluggto(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 10)
    gone, inactive = p.simple_products()[:2]
    p.bling.edit("products", gone["id"], {"situacao": "E"})
    p.bling.edit("products", inactive["id"], {"situacao": "I"})
    assert p.sync("catalog").ok
    skus = {r["sku"] for r in p.pluggto.records("products")}
    assert gone["codigo"] not in skus and inactive["codigo"] not in skus
    deletes = [r for r in p.pluggto.request_log if r["method"] == "DELETE"]
    assert len(deletes) == 2
    assert p.sync("catalog").ok and len([r for r in p.pluggto.request_log if r["method"] == "DELETE"]) == 2, \
        "deleted once"


def test_orders_of_any_channel_become_bling_sales_with_customer_payments_and_status(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 6)
    placed = _orders(p, 2, channel="mercadolivre") + _orders(p, 1, channel="amazon")
    report = p.sync("orders")
    assert report.ok, report
    for order_id in placed:
        mine = p.pluggto.order(order_id)
        sale = p.bling_order(order_id)
        assert sale["situacao"]["id"] == p.bling.situacao_id("Em aberto")
        contact = next(c for c in p.bling.records("customers") if c["id"] == sale["contato"]["id"])
        document = "".join(ch for ch in (mine.get("payer_cnpj") or mine.get("payer_cpf")) if ch.isdigit())
        assert "".join(ch for ch in contact["numeroDocumento"] if ch.isdigit()) == document
        methods = {m["id"]: m["descricao"] for m in p.bling.records("payment_methods")}
        assert [methods[x["formaPagamento"]["id"]] for x in sale["parcelas"]] == ["Cartão de Crédito"], \
            "Plugg.to's 'Cartão de crédito' through the DE-PARA"
    assert p.sync("orders").ok and len(p.bling.records("sales")) == 3, "never twice"


def test_blings_nfe_is_attached_to_the_pluggto_orders_shipment_and_the_order_is_invoiced_once(
        ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 6)
    (order_id,) = _orders(p, 1)
    assert p.sync("orders").ok
    (note,) = [n for n in p.bling.records("nfe") if n.get("chaveAcesso")]
    order = p.pluggto.order(order_id)
    assert order["status"] == "invoiced"
    (shipment,) = order["shipments"]
    assert shipment["nfe_key"] == note["chaveAcesso"] and shipment["nfe_number"] == str(note["numero"])
    assert p.pluggto.duplicate_deliveries == 0, "the existing shipment, never a new delivery"
    for route in ("orders", "cancellations", "orders"):
        p.sync(route)
    assert len([n for n in p.bling.records("nfe") if n.get("chaveAcesso")]) == 1
    assert len(p.pluggto.order(order_id)["shipments"]) == 1 and p.pluggto.duplicate_deliveries == 0


def test_an_order_of_a_grid_variation_gets_blings_nfe_with_the_parent_products_fiscal_data(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 10)
    grid = next(x for x in p.bling.records("products") if x["situacao"] == "A" and x.get("variacoes"))
    variation_sku = grid["variacoes"][0]["codigo"]
    order_id = p.pluggto.place_order([variation_sku])
    assert p.sync("orders").ok
    assert not [q.reason for q in p.quarantined() if q.entity == "sales"], "the variation's parent holds its NCM"
    assert p.pluggto.order(order_id)["status"] == "invoiced"
    assert len([n for n in p.bling.records("nfe") if n.get("chaveAcesso")]) == 1


def test_an_order_canceled_on_its_channel_is_cancelled_in_bling(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 6)
    first, second = _orders(p, 2)
    assert p.sync("orders").ok
    p.pluggto.set_order_status(first, "canceled")
    assert p.sync("orders").ok
    assert p.bling_order(first)["situacao"]["id"] == p.bling.situacao_id("Cancelado")
    assert p.bling_order(second)["situacao"]["id"] != p.bling.situacao_id("Cancelado")


def test_a_sale_cancelled_in_bling_cancels_the_pluggto_order_and_its_other_statuses_leave_it_alone(
        ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 6)
    first, second, third = _orders(p, 3, status="paid")
    assert p.sync("orders").ok
    assert p.sync("cancellations").ok
    assert p.pluggto.order(second)["status"] != "canceled"
    p.bling.set_order_status(p.bling_order(first)["id"], "Cancelado")
    p.bling.set_order_status(p.bling_order(second)["id"], "Atendido")
    p.pluggto.set_order_status(third, "delivered")
    p.bling.set_order_status(p.bling_order(third)["id"], "Cancelado")
    before = len(p.pluggto.request_log)
    assert p.sync("cancellations").ok
    assert p.pluggto.order(first)["status"] == "canceled"
    assert p.pluggto.order(second)["status"] == "invoiced", "Atendido in Bling leaves Plugg.to's status alone"
    assert p.pluggto.order(third)["status"] == "delivered", "a delivered order is not canceled"
    puts = [r for r in p.writes(p.pluggto, before)]
    assert [r["path"] for r in puts] == [f"/orders/{first}"], puts


def test_a_hybrid_offer_is_reported_with_its_fix_and_its_own_stock_is_not_counted_as_synced(
        ppair: PluggtoPair) -> None:
    p = ppair
    p.bling.seed("categories", 3)
    p.bling.seed("products", 6)
    p.bling.seed("stock", 6)
    p.apply()
    assert p.sync("catalog").ok
    chosen = next(x for x in p.simple_products() if _deposit_balance(p, x["id"], "Geral") > 0)
    p.pluggto.mark_fba(chosen["codigo"])
    p.sync("stock_prices")
    reported = [q for q in p.quarantined() if q.entity == "stock"]  # one per depósito the SKU has stock in
    assert reported and all(chosen["codigo"] in q.reason and "hybrid offer" in q.reason for q in reported), reported
    assert all(q.field == "stock_table" and "one way only" in (q.fix or "") for q in reported)
    failed = [o for o in p.ops(entity="stock") if o.state == "failed"]
    assert failed and all(chosen["codigo"] in (o.last_error or "") for o in failed)
    others = [o for o in p.ops(entity="stock") if o.state == "done"]
    assert others, "the other SKUs' stock goes on"


def test_a_notification_on_the_url_token_brings_the_orders_route_forward(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 4)
    (order_id,) = _orders(p, 1)
    with p.rt.store.begin() as s:  # as between two scheduled runs: nothing is due until something happens
        s.execute(update(Route).values(next_run_at=None))
    receiver = p.receiver()
    try:
        assert p.pluggto.notify("orders", order_id, "created") == 200
        p.pluggto.notify_url = p.pluggto.notify_url.replace("token=", "token=x")  # type: ignore[union-attr]
        assert p.pluggto.notify("orders", order_id, "updated", {"status": True}) == 401
    finally:
        receiver.stop()
    started: list[str] = []
    assert schedule_once(p.rt, lambda _tenant, route, _lease: started.append(route)) >= 1
    assert started == ["orders"], started
    assert p.sync("orders").ok and p.bling_order(order_id)


def _sale_versions(p: PluggtoPair) -> dict[str, tuple[int, str | None]]:
    with p.rt.store.sessions() as s:
        return {r.canonical_id: (r.version, r.payload.get("status"))
                for r in s.scalars(select(Record).where(Record.entity == "sales"))}


def test_no_echo_repeated_syncs_of_unchanged_data_write_nothing(ppair: PluggtoPair) -> None:
    p = ppair
    _activate(p, 6)
    first, _second = _orders(p, 2)
    assert p.sync("orders").ok
    p.pluggto.set_order_status(first, "canceled")
    for route in ("orders", "cancellations", "orders", "cancellations"):
        assert p.sync(route).ok
    operations, bling_at, pluggto_at = p.op_count(), len(p.bling.request_log), len(p.pluggto.request_log)
    versions = _sale_versions(p)
    for route in ("catalog", "stock_prices", "orders", "cancellations", "orders", "cancellations"):
        assert p.sync(route).ok
    assert _sale_versions(p) == versions, "each route reads its platform's word for a status as the record's own"
    assert not p.writes(p.bling, bling_at) and not p.writes(p.pluggto, pluggto_at)
    assert p.op_count() == operations, [(o.kind, o.entity, o.state, o.last_error) for o in p.ops()[operations:]]


def test_the_demo_scenario_runs_with_no_failure_but_the_hybrid_offer(tmp_path: Any) -> None:
    from hub.demo import run_demo

    from tests.integration.pluggto_pair import DEMO_FILE

    lines: list[str] = []
    result = run_demo(str(DEMO_FILE), echo=lines.append, home=tmp_path / "demo")
    failed = {(r["name"], s["stream"]) for r in result["status"]["routes"] for s in r["streams"] if s["failed"]}
    assert failed == {("stock_prices", "stock")}, "\n".join(lines)
    assert all("hybrid offer" in q["reason"] for q in result["quarantined"]), result["quarantined"]
    assert result["after"]["pluggto"]["orders"] == 4 and result["after"]["bling"]["orders"] == 4
    assert result["after"]["pluggto"]["duplicate deliveries"] == 0
    assert any("cancels order" in line for line in lines)
