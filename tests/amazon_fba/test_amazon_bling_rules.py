"""Each rule of Amazon's "Manual de integração BLING" (Enviado pela Amazon), end to end: the shipped route file, the
Bling and SP-API sandboxes over real HTTP, the real store and the outbox."""

from __future__ import annotations

from typing import Any

from tests.integration.amazon_pair import DEPOSIT, AmazonPair, apair_fixture  # noqa: F401 (the fixture "apair")


def _bling_sales(a: AmazonPair, order_id: str) -> list[dict[str, Any]]:
    """The Bling sales of an Amazon order: one per FBA Onsite shipment, numeroLoja ORDER-SHIPMENT."""
    return [o for o in a.bling.records("sales") if str(o.get("numeroLoja")).startswith(f"{order_id}-")]


def _bling_sale(a: AmazonPair, order_id: str) -> dict[str, Any]:
    (sale,) = _bling_sales(a, order_id)
    return sale


def test_a_created_shipment_becomes_a_bling_sale_whose_nfe_amazon_accepts(apair: AmazonPair) -> None:
    a = apair
    a.activate(6)
    skus = [p["codigo"] for p in a.simple_products()[:2]]
    order_id, shipment = a.order(*skus)
    report = a.sync("orders")
    assert report.ok, report
    assert not [(o.kind, o.last_error) for o in a.ops() if o.state != "done"]
    sale = _bling_sale(a, order_id)
    assert sorted(i["codigo"] for i in sale["itens"]) == sorted(skus)
    assert a.amazon.invoice_status(shipment) == "Accepted"
    (submitted,) = a.amazon.records("invoices")
    (note,) = [n for n in a.bling.records("nfe") if n.get("chaveAcesso")]
    assert submitted["key"] == note["chaveAcesso"]
    figures = a.amazon.stats()["figures"]  # what `hub bench e2e` prints for Amazon's side
    assert figures["invoices_submitted"] == 1 and figures["created_to_submitted_p50_s"] is not None
    calls = figures["calls_per_order"]
    assert calls["submitInvoice"] == 1 and calls["getShipmentDetails"] == 1 and calls["searchOrders"] <= 1
    assert a.amazon.throttled == 0



def _no_note_for(a: AmazonPair, shipment: str) -> None:
    assert [n for n in a.bling.records("nfe") if n.get("chaveAcesso")] == [], "no NF-e issued in Bling"
    assert a.amazon.records("invoices") == [] and a.amazon.invoice_status(shipment) == "NotFound"


def test_the_sale_carries_customer_items_payments_through_the_de_para_and_the_intermediary(apair: AmazonPair) -> None:
    a = apair
    a.activate(4)
    sku = a.simple_products()[0]["codigo"]
    order_id, shipment = a.order(sku, payment="Pix")
    assert a.sync("orders").ok
    sale = _bling_sale(a, order_id)
    buyer = a.amazon.orders[order_id]["tax"]["taxRegistrations"][0]["taxRegistrationNumber"]
    assert "".join(ch for ch in sale["contato"]["numeroDocumento"] if ch.isdigit()) == buyer
    pix = next(m["id"] for m in a.bling.records("payment_methods") if m["descricao"] == "PIX")
    assert [p["formaPagamento"]["id"] for p in sale["parcelas"]] == [pix], "Pix -> PIX through the DE-PARA"
    assert "15436940000103" in sale["observacoes"] and shipment in sale["observacoes"]
    assert sale["intermediador"]["cnpj"] == "15436940000103", "Amazon is the sale's intermediary in Bling"
    (submitted,) = a.amazon.submissions
    assert "<infIntermed><CNPJ>15436940000103</CNPJ>" in submitted["xml"], "the note sent names Amazon (infIntermed)"
    assert a.sync("orders").ok and len(a.bling.records("sales")) == 1, "never twice"
    assert len(a.amazon.records("invoices")) == 1 and a.amazon.invoice_status(shipment) == "Accepted"


def test_an_order_in_two_shipments_becomes_two_bling_sales_each_with_its_own_number_and_note(
        apair: AmazonPair) -> None:
    """An order Amazon delivers in two shipments (two AmazonShipmentIds): before, both sales took the order id as
    their number and the second was refused as a duplicate; now each shipment is its own sale (ORDER-SHIPMENT) with
    its own items, paid in full, and its own NF-e, accepted for its shipment."""
    a = apair
    a.activate(4)
    prices = {p["codigo"]: f"{float(p['preco']):.2f}" for p in a.bling.records("products")}
    first, second = (p["codigo"] for p in a.simple_products()[:2])
    order_id, shipments = a.amazon.create_split_order([[(first, 1, prices[first])], [(second, 2, prices[second])]])
    assert a.sync("orders").ok
    assert not a.quarantined(), [(q.field, q.reason) for q in a.quarantined()]
    sales = {str(o["numeroLoja"]): o for o in _bling_sales(a, order_id)}
    assert sorted(sales) == sorted(f"{order_id}-{s}" for s in shipments), "one sale per shipment, own number"
    one, two = (sales[f"{order_id}-{s}"] for s in shipments)
    assert [(i["codigo"], float(i["quantidade"])) for i in one["itens"]] == [(first, 1.0)]
    assert [(i["codigo"], float(i["quantidade"])) for i in two["itens"]] == [(second, 2.0)]
    notes = [n for n in a.bling.records("nfe") if n.get("chaveAcesso")]
    assert len(notes) == 2, "one NF-e per shipment"
    submitted = {r["shipment"]: r["key"] for r in a.amazon.records("invoices")}
    assert sorted(submitted) == sorted(shipments) and len(set(submitted.values())) == 2
    assert all(a.amazon.invoice_status(s) == "Accepted" for s in shipments)
    assert a.sync("orders").ok
    assert len(_bling_sales(a, order_id)) == 2 and len(a.amazon.records("invoices")) == 2, "stable: never again"


def test_offers_carry_price_ncm_and_origem_and_never_a_stock_quantity(apair: AmazonPair) -> None:
    a = apair
    a.activate(5)
    listings = {row["sku"]: row for row in a.amazon.records("products")}
    for product in a.simple_products():
        listing = listings[product["codigo"]]
        assert listing["attributes"]["ncm_code"][0]["value"] == product["tributacao"]["ncm"].replace(".", "")
        offer = listing["attributes"]["purchasable_offer"][0]["our_price"][0]["schedule"][0]["value_with_tax"]
        assert offer == float(product["preco"])
        assert listing["channels"] == {"AMAZON_NA": None}, "FBA Onsite only: no merchant offer, no quantity"


def test_a_hybrid_offer_is_reported_with_the_fix_and_the_others_go_on(apair: AmazonPair) -> None:
    a = apair
    a.bling.seed("products", 4)
    a.bling.seed("payment_methods", 12)
    hybrid = next(p["codigo"] for p in a.simple_products())
    a.amazon.make_hybrid(hybrid)
    a.apply()
    assert a.sync("offers").ok
    refused = [q for q in a.quarantined() if q.field == "fulfillment_availability"]
    assert refused and all(hybrid in q.reason for q in refused) and "Seller Central" in (refused[0].fix or "")
    assert len(a.amazon.records("products")) >= len(a.simple_products()), "the other offers are written"


def test_a_product_without_ncm_gets_no_note_and_the_fix_names_it(apair: AmazonPair) -> None:
    """Seed error a: "Ausência de atributos fiscais do produto"."""
    a = apair
    a.activate(4)
    product = a.simple_products()[0]
    a.bling.edit("products", product["id"], {"tributacao": {"ncm": ""}})
    a.sync("offers")
    _, shipment = a.order(product["codigo"])
    assert a.sync("orders").ok
    emit = [o for o in a.ops(kind="emit_invoice")]
    assert [o.state for o in emit] == ["failed"]
    problem = next(q for q in a.quarantined() if q.entity == "sales")
    assert "NCM" in problem.reason and product["codigo"] in problem.reason and "Tributação" in (problem.fix or "")
    _no_note_for(a, shipment)


def test_an_incomplete_customer_address_is_named_before_any_note(apair: AmazonPair) -> None:
    """Seed error b: "Dados do endereço do cliente incompletos"."""
    a = apair
    a.activate(4)
    sku = a.simple_products()[0]["codigo"]
    _, shipment = a.order(sku, address={"extendedFields": {"streetName": "Rua das Flores"}, "districtOrCounty": ""})
    assert a.sync("orders").ok
    (problem,) = [q for q in a.quarantined() if q.entity == "sales"]
    assert problem.field == "customer.addresses" and "number" in problem.reason and "district" in problem.reason
    assert "Complete the customer's address" in (problem.fix or "")
    _no_note_for(a, shipment)


def test_a_note_is_sent_once_and_a_duplicate_with_another_key_is_impossible(apair: AmazonPair) -> None:
    """Seed error c: "Duplicidade de NFe com diferença na chave de acesso": one note per sale in the ERP, the
    status checked before any submission, a second key for a shipment refused (tested with its key in
    test_amazon_rules)."""
    a = apair
    a.activate(4)
    _, shipment = a.order(a.simple_products()[0]["codigo"])
    for _ in range(3):
        assert a.sync("orders").ok
    assert len([n for n in a.bling.records("nfe") if n.get("chaveAcesso")]) == 1
    assert len(a.amazon.records("invoices")) == 1 and a.amazon.invoice_status(shipment) == "Accepted"
    assert len(a.ops(kind="push_invoice")) == 1


def test_an_expired_authorization_pauses_amazon_and_the_note_goes_once_it_is_renewed(apair: AmazonPair) -> None:
    """Seed error d: "Token expirado": the note waits (no attempt burnt) and goes after `hub auth amazon_fba`."""
    from datetime import UTC, datetime

    from hub.auth import authorize
    from hub.store.schema import Connection
    from hub.sync.drain import drain
    from hub.sync.pull import sync_route
    from sqlalchemy import select

    a = apair
    a.activate(4)
    _, shipment = a.order(a.simple_products()[0]["codigo"])
    assert sync_route(a.rt, "loja", "orders").ok
    a.amazon.revoke()  # the seller's authorization lapsed before the note went back
    drain(a.rt, max_wait=30)
    (waiting,) = a.ops(kind="push_invoice")
    assert waiting.state == "pending" and waiting.attempts == 0 and "Manage Your Apps" in (waiting.fix or "")
    with a.rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == "loja", Connection.name == "amazon"))
        assert conn is not None and conn.pause_kind == "auth"
    resumed = authorize(a.rt, conn.id, {"refresh_token": a.amazon.reauthorize(),
                                        "authorized_at": datetime.now(UTC).isoformat(timespec="seconds")})
    assert resumed >= 1
    drain(a.rt, max_wait=30)
    assert a.amazon.invoice_status(shipment) == "Accepted" and len(a.amazon.records("invoices")) == 1


def test_a_cancelled_shipment_never_gets_a_note(apair: AmazonPair) -> None:
    a = apair
    a.activate(4)
    order_id, shipment = a.order(a.simple_products()[0]["codigo"])
    a.amazon.cancel_shipment(shipment)
    assert a.sync("orders").ok
    cancelled = next(s["id"] for s in a.bling.records("situacoes") if s["nome"] == "Cancelado")
    assert _bling_sale(a, order_id)["situacao"]["id"] == cancelled
    (problem,) = [q for q in a.quarantined() if q.entity == "sales"]
    assert problem.field == "status" and "cancelled" in problem.reason
    _no_note_for(a, shipment)


def test_a_shipment_cancelled_after_its_note_was_authorized_is_reported_for_cancellation_in_bling(
        apair: AmazonPair) -> None:
    from hub.sync.drain import drain
    from hub.sync.pull import sync_route

    a = apair
    a.activate(4)
    _, shipment = a.order(a.simple_products()[0]["codigo"])
    assert sync_route(a.rt, "loja", "orders").ok
    a.amazon.cancel_shipment(shipment, notify=False)
    drain(a.rt, max_wait=30)
    (note,) = [n for n in a.bling.records("nfe") if n.get("chaveAcesso")]
    (problem,) = [q for q in a.quarantined() if q.entity == "invoices"]
    assert problem.field == "sale.status" and note["chaveAcesso"] in (problem.fix or "")
    assert "Cancel NF-e" in (problem.fix or "") and a.amazon.records("invoices") == []


def test_an_order_whose_notification_was_lost_still_becomes_an_accepted_note(apair: AmazonPair) -> None:
    a = apair
    a.activate(4, **{"connections.amazon.options.sweep_minutes": 0.001})
    a.amazon.lose_notifications(1)
    _, shipment = a.order(a.simple_products()[0]["codigo"])
    assert a.sync("orders").ok
    assert a.amazon.lost == 1 and a.amazon.invoice_status(shipment) == "Accepted"


def test_the_demo_shows_orders_becoming_accepted_notes_and_the_four_errors_with_their_fixes(tmp_path: Any) -> None:
    from hub.demo import run_demo

    from tests.integration.amazon_pair import DEMO_FILE

    lines: list[str] = []
    result = run_demo(str(DEMO_FILE), echo=lines.append, home=tmp_path / "demo")
    assert result["after"]["amazon"]["invoices"] == {"Accepted": 3, "NotFound": 3}
    refused = {(q["entity"], q["reason"].split(":")[0]) for q in result["quarantined"]}
    assert any(e == "products" for e, _ in refused), "a: the product without NCM is refused, with the fix"
    assert any("ncm_code" in q["reason"] and "NCM" in q["fix"] for q in result["quarantined"])
    assert any("customer.addresses" in q["reason"] for q in result["quarantined"]), "b: the incomplete address"
    assert any("cancelled" in q["reason"] for q in result["quarantined"]), "a cancelled shipment gets no note"
    assert any("0 new, 0 changed" in line for line in lines), "c: the same orders again send nothing"
    assert any("invalid_grant" in line and "Manage Your Apps" in line for line in lines), "d: the expired token"


def test_hub_status_follows_the_notes_on_their_way_to_amazon_until_accepted(apair: AmazonPair) -> None:
    from hub.status import tenant_status

    a = apair
    a.amazon.update_settings(invoice_delay_seconds=3600)  # Amazon takes its time validating the note
    a.activate(4)
    _, shipment = a.order(a.simple_products()[0]["codigo"])
    assert a.sync("orders").ok

    def invoices() -> dict[str, Any]:
        (route,) = [r for r in tenant_status(a.rt, "loja")["routes"] if r["name"] == "orders"]
        (row,) = [st for st in route["streams"] if st["stream"] == "invoices"]
        return row

    assert invoices()["pending"] == 1 and a.amazon.invoice_status(shipment) == "Processing"
    (op,) = a.ops(kind="push_invoice")
    assert op.attempts == 0 and len(a.amazon.records("invoices")) == 1
    a.amazon.update_settings(invoice_delay_seconds=0)
    from hub.store.engine import utcnow
    from hub.store.schema import Operation
    from sqlalchemy import update

    with a.rt.store.begin() as s:  # the poll comes due
        s.execute(update(Operation).where(Operation.id == op.id).values(available_at=utcnow()))
    a.sync("orders")
    assert invoices()["pending"] == 0 and invoices()["done"] == 1
    assert a.amazon.invoice_status(shipment) == "Accepted" and len(a.amazon.records("invoices")) == 1
