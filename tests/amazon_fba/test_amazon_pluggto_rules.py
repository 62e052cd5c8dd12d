"""Each rule of Amazon's "Manual de integração PLUGG.TO" (Enviado pela Amazon), end to end: the shipped route file
(Amazon -> Plugg.to, Plugg.to holding the orders and issuing the NF-e), the Plugg.to and SP-API sandboxes over real
HTTP, the real store and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hub.models import Invoice
from hub.sync.drain import drain
from hub.sync.operations import retry_failed
from hub.sync.pull import sync_route

from tests.integration.amazon_pluggto_pair import AmazonPluggtoPair, azpair_fixture  # noqa: F401 (fixture "azpair")


def _buyer(a: AmazonPluggtoPair, order_id: str) -> str:
    regs = a.amazon.orders[order_id]["tax"]["taxRegistrations"]
    return str(next(r for r in regs if r["entityType"] == "BUYER")["taxRegistrationNumber"])


def _no_note_for(a: AmazonPluggtoPair, shipment: str) -> None:
    assert a.notes() == [], "no NF-e authorized in Plugg.to"
    assert a.amazon.records("invoices") == [] and a.amazon.invoice_status(shipment) == "NotFound"


def _sale_problems(a: AmazonPluggtoPair) -> list[Any]:
    return [q for q in a.quarantined() if q.entity == "sales"]


def test_a_created_shipment_arrives_in_pluggto_as_an_order_with_its_customer_items_and_payments(
        azpair: AmazonPluggtoPair) -> None:
    a = azpair
    a.activate(4)
    skus = [p["sku"] for p in a.simple_products()[:2]]
    order_id, shipment = a.order(*skus, payment="Pix")
    assert a.sync("orders").ok
    (order,) = a.orders_of(order_id)
    assert order["external"] == order["original_id"] == f"{order_id}-{shipment}", "the shipment's own number"
    assert order["channel"] == "amazon"
    assert sorted(i["sku"] for i in order["items"]) == sorted(skus)
    assert (order.get("payer_cpf") or order.get("payer_cnpj")) == _buyer(a, order_id)
    delivery = a.amazon.orders[order_id]["recipient"]["deliveryAddress"]
    assert order["receiver_zipcode"] == delivery["postalCode"]
    assert order["receiver_address_number"] == delivery["extendedFields"]["streetNumber"]
    assert order["receiver_neighborhood"] == delivery["extendedFields"]["neighborhood"]
    total = sum(Decimal(a.line(sku)[2]) for sku in skus)
    assert [(p["payment_type"], Decimal(str(p["payment_total"]))) for p in order["payments"]] == [("pix", total)], \
        "Pix -> pix through the DE-PARA, the whole order paid"
    history = " ".join(h["message"] for h in order.get("log_history") or [])
    assert "15436940000103" in history and shipment in history, "the intermediary's CNPJ and the shipment"
    assert a.sync("orders").ok and len(a.orders_of(order_id)) == 1, "never twice"


def test_pluggto_issues_the_note_and_amazon_accepts_it(azpair: AmazonPluggtoPair) -> None:
    a = azpair
    a.activate(4)
    order_id, shipment = a.order(a.simple_products()[0]["sku"])
    report = a.sync("orders")
    assert report.ok, report
    assert not [(o.kind, o.last_error) for o in a.ops() if o.state != "done"]
    assert [o.kind for o in a.ops() if o.entity != "products"] == ["push_sale", "emit_invoice", "push_invoice"]
    (order,) = a.orders_of(order_id)
    (note,) = a.notes()
    assert note["reference_order"] == order["id"], "Plugg.to issued the note of the order the hub created"
    assert a.amazon.invoice_status(shipment) == "Accepted"
    (submitted,) = a.amazon.records("invoices")
    assert submitted["key"] == note["nfe_key"] and submitted["shipment"] == shipment
    (stored,) = a.stored("invoices")
    invoice = Invoice.model_validate(stored.payload)
    assert invoice.access_key == note["nfe_key"] and invoice.status == "authorized"
    assert invoice.xml is not None and "<nfeProc" in invoice.xml, "the authorized XML itself, not a link"
    assert a.bound("pluggto", "invoices") == 1 and a.bound("amazon", "invoices") == 1
    calls = a.amazon.stats()["figures"]["calls_per_order"]
    assert calls["submitInvoice"] == 1 and calls["getShipmentDetails"] == 1
    assert a.pluggto.duplicate_invoices == 0 and a.amazon.throttled == 0


def test_a_product_without_ncm_cest_or_nbm_gets_no_note_and_the_fix_names_them(azpair: AmazonPluggtoPair) -> None:
    """Seed error a: "Ausência de atributos fiscais do produto" (NCM, CEST and NBM in Plugg.to). The hub names
    what its store shows before asking Plugg.to; Plugg.to's own rejection names the rest; the seller fixes and the
    same note is resent: one note, accepted."""
    a = azpair
    a.activate(4)
    sku = a.simple_products()[0]["sku"]
    a.pluggto.edit_sku(sku, cest="", nbm="")
    assert a.sync("offers").ok
    _, shipment = a.order(sku)
    assert a.sync("orders").ok
    assert [o.state for o in a.ops(kind="emit_invoice")] == ["failed"]
    (problem,) = _sale_problems(a)
    assert "CEST" in problem.reason and sku in problem.reason and "fiscal.cest" in (problem.field or "")
    assert "CEST" in (problem.fix or "") and "Plugg.to" in (problem.fix or "")
    assert a.pluggto.records("issued") == [], "no note asked of Plugg.to"
    _no_note_for(a, shipment)

    a.pluggto.edit_sku(sku, cest="2806300")  # the CEST is filled; the NBM is still missing in Plugg.to
    assert a.sync("offers").ok
    assert retry_failed(a.rt, "loja") == 1
    drain(a.rt, max_wait=30)
    (problem,) = _sale_problems(a)
    assert "NBM" in problem.reason and "missing_fiscal_attributes" in problem.reason
    assert "NBM" in (problem.fix or "") and "hub retry" in (problem.fix or "")
    _no_note_for(a, shipment)

    a.pluggto.edit_sku(sku, nbm="61091000")
    assert retry_failed(a.rt, "loja") == 1
    drain(a.rt, max_wait=30)
    assert not _sale_problems(a)
    (issued,) = a.pluggto.records("issued")
    assert issued["nfe_status"] == "authorized" and a.pluggto.resends() == 1, "the same note, resent"
    assert a.amazon.invoice_status(shipment) == "Accepted" and len(a.amazon.records("invoices")) == 1


def test_an_incomplete_customer_address_is_named_before_any_note(azpair: AmazonPluggtoPair) -> None:
    """Seed error b: "Dados do endereço do cliente incompletos"."""
    a = azpair
    a.activate(4)
    sku = a.simple_products()[0]["sku"]
    _, shipment = a.order(sku, address={"extendedFields": {"streetName": "Rua das Flores"}, "districtOrCounty": "",
                                        "addressLine2": ""})
    assert a.sync("orders").ok
    (problem,) = _sale_problems(a)
    assert problem.field is not None and problem.field.startswith("customer.addresses")
    assert "number" in problem.reason and "district" in problem.reason
    assert "Complete" in (problem.fix or "") and "address" in (problem.fix or "")
    assert a.pluggto.records("issued") == []
    _no_note_for(a, shipment)


def test_an_expired_amazon_token_holds_the_note_until_it_is_renewed(azpair: AmazonPluggtoPair) -> None:
    """Seed error c: "Token expirado": the note Plugg.to issued waits (no attempt burnt) and goes to Amazon after
    `hub auth amazon_fba`; never a second note."""
    from hub.auth import authorize
    from hub.store.schema import Connection
    from sqlalchemy import select

    a = azpair
    a.activate(4)
    _, shipment = a.order(a.simple_products()[0]["sku"])
    assert sync_route(a.rt, "loja", "orders").ok
    a.amazon.revoke()  # the seller's authorization lapsed before the note went back
    drain(a.rt, max_wait=30)
    assert len(a.notes()) == 1, "Plugg.to issued the note; only its way to Amazon waits"
    (waiting,) = a.ops(kind="push_invoice")
    assert waiting.state == "pending" and waiting.attempts == 0 and "Manage Your Apps" in (waiting.fix or "")
    with a.rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == "loja", Connection.name == "amazon"))
        assert conn is not None and conn.pause_kind == "auth"
    assert authorize(a.rt, conn.id, {"refresh_token": a.amazon.reauthorize(),
                                     "authorized_at": datetime.now(UTC).isoformat(timespec="seconds")}) >= 1
    drain(a.rt, max_wait=30)
    assert a.amazon.invoice_status(shipment) == "Accepted" and len(a.amazon.records("invoices")) == 1
    assert len(a.notes()) == 1


def test_an_expired_channel_token_is_named_before_any_note(azpair: AmazonPluggtoPair) -> None:
    """Seed error c, for a Plugg.to account that also holds an Amazon token of its own (the route option
    channel_token_expires_at): named with the fix before Plugg.to is asked."""
    a = azpair
    a.activate(4, **{"routes.orders.options": {"channel_token_expires_at": "2026-01-31"}})
    _, shipment = a.order(a.simple_products()[0]["sku"])
    assert a.sync("orders").ok
    (problem,) = _sale_problems(a)
    assert "token expired" in problem.reason and "channel_token_expires_at" in (problem.fix or "")
    assert a.pluggto.records("issued") == []
    _no_note_for(a, shipment)


def test_wrong_tax_data_is_named_before_any_note(azpair: AmazonPluggtoPair) -> None:
    """Seed error d: "Dados tributários incorretos" (here an NBM that is not the NCM's 8 digits)."""
    a = azpair
    a.activate(4)
    sku = a.simple_products()[0]["sku"]
    a.pluggto.edit_sku(sku, nbm="6109")
    assert a.sync("offers").ok
    _, shipment = a.order(sku)
    assert a.sync("orders").ok
    (problem,) = _sale_problems(a)
    assert "NBM '6109' is not 8 digits" in problem.reason and "wrong tax data" in problem.reason
    assert "NBM" in (problem.fix or "") and sku in (problem.fix or "")
    _no_note_for(a, shipment)


def test_a_cancelled_shipment_never_gets_a_note(azpair: AmazonPluggtoPair) -> None:
    a = azpair
    a.activate(4)
    order_id, shipment = a.order(a.simple_products()[0]["sku"])
    a.amazon.cancel_shipment(shipment)
    assert a.sync("orders").ok
    (order,) = a.orders_of(order_id)
    assert order["status"] == "canceled"
    problems = _sale_problems(a)
    assert problems and any("cancelled" in q.reason for q in problems)
    assert a.pluggto.records("issued") == [], "no note asked of Plugg.to"
    _no_note_for(a, shipment)
    assert a.sync("orders").ok
    _no_note_for(a, shipment)


def test_a_retry_never_yields_a_second_note(azpair: AmazonPluggtoPair) -> None:
    """The answers of Plugg.to's order and note creations are lost (the calls went through): the retries find
    them, and the same orders read again issue and send nothing: one order, one note, one submission."""
    a = azpair
    a.pluggto.update_settings(fault_delay=1.0)
    a.activate(4, **{"connections.pluggto.options.timeout_seconds": 0.5})
    order_id, shipment = a.order(a.simple_products()[0]["sku"])
    a.pluggto.inject_fault("timeout-after-write", 2, method="POST")
    assert a.sync("orders", wait=60).ok
    for _ in range(2):
        assert a.sync("orders").ok
    assert len(a.orders_of(order_id)) == 1
    assert len(a.pluggto.records("issued")) == 1 and a.pluggto.duplicate_invoices == 0
    assert a.amazon.invoice_status(shipment) == "Accepted" and len(a.amazon.records("invoices")) == 1
    assert len(a.ops(kind="emit_invoice")) == 1 and len(a.ops(kind="push_invoice")) == 1


def test_an_order_in_two_shipments_becomes_two_orders_each_with_its_own_number_and_note(
        azpair: AmazonPluggtoPair) -> None:
    a = azpair
    a.activate(4)
    first, second = (p["sku"] for p in a.simple_products()[:2])
    order_id, shipments = a.amazon.create_split_order([[a.line(first)], [a.line(second, 2)]])
    assert a.sync("orders").ok
    assert not a.quarantined(), [(q.field, q.reason) for q in a.quarantined()]
    orders = {o["external"]: o for o in a.orders_of(order_id)}
    assert sorted(orders) == sorted(f"{order_id}-{s}" for s in shipments), "one order per shipment, own number"
    one, two = (orders[f"{order_id}-{s}"] for s in shipments)
    assert [(i["sku"], i["quantity"]) for i in one["items"]] == [(first, 1)]
    assert [(i["sku"], i["quantity"]) for i in two["items"]] == [(second, 2)]
    for order in (one, two):
        assert sum(Decimal(str(p["payment_total"])) for p in order["payments"]) == Decimal(str(order["total"]))
    keys = {n["reference_order"]: n["nfe_key"] for n in a.notes()}
    assert len(keys) == 2 and set(keys) == {one["id"], two["id"]}, "one note per shipment"
    submitted = {r["shipment"]: r["key"] for r in a.amazon.records("invoices")}
    assert submitted == {shipments[0]: keys[one["id"]], shipments[1]: keys[two["id"]]}
    assert all(a.amazon.invoice_status(s) == "Accepted" for s in shipments)
    assert a.sync("orders").ok
    assert len(a.orders_of(order_id)) == 2 and len(a.notes()) == 2 and len(a.amazon.records("invoices")) == 2


def test_the_demo_shows_orders_becoming_accepted_notes_and_the_errors_with_their_fixes(tmp_path: Any) -> None:
    from hub.demo import run_demo

    from tests.integration.amazon_pluggto_pair import DEMO_FILE

    lines: list[str] = []
    result = run_demo(str(DEMO_FILE), echo=lines.append, home=tmp_path / "demo")
    invoices = result["after"]["amazon"]["invoices"]
    assert invoices["Accepted"] == 5, invoices  # three orders, and the order Amazon split in two shipments
    reasons = " ".join(q["reason"] for q in result["quarantined"])
    assert "CEST" in reasons, "a: the product without CEST"
    assert "customer" in reasons and "address" in reasons, "b: the incomplete address"
    assert "cancelled" in reasons, "a cancelled shipment gets no note"
    assert "not 8 digits" in reasons, "d: wrong tax data"
    assert any("0 new, 0 changed" in line for line in lines), "the same orders again send nothing"
    assert any("invalid_grant" in line and "Manage Your Apps" in line for line in lines), "c: the expired token"
