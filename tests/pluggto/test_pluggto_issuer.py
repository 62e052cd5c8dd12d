"""Plugg.to as the seller's system for Amazon FBA Onsite (Plugg.to's manual for Amazon "Enviado pela Amazon"): orders
pushed into Plugg.to once, statuses moved as Plugg.to's flow allows, the NF-e Plugg.to issues with each of the
manual's four rejection causes named with its fix, "correct and resend" through `hub retry` with never a second
note, and the notes read back as invoice records. Real HTTP to the sandbox, the real store and outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hub.models import Address, Customer, Invoice, Payment, Sale, SaleItem
from hub.store.schema import Operation, Record, Route
from hub.sync.operations import retry_failed
from hub.testing import Harness
from sqlalchemy import select, update

FAST = {"rate_per_second": None}
TENANT = "conformance"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    started: list[Harness] = []

    def start(push: str = "sales", pull: str = "invoices", sandbox: dict[str, Any] | None = None,
              options: dict[str, Any] | None = None, emit: bool = False) -> Harness:
        h = Harness.start(tmp_path / str(len(started)), "pluggto", pull, push, sandbox_options=sandbox or FAST,
                          options=options)
        started.append(h)
        if emit:
            with h.rt.store.begin() as s:
                route = s.scalar(select(Route).where(Route.name == "push"))
                assert route is not None
                s.execute(update(Route).where(Route.id == route.id).values(
                    config={**route.config, "emit_invoices": True}))
        return h

    for i in range(4):
        (tmp_path / str(i)).mkdir(parents=True)
    yield start
    for h in started:
        h.stop()


def amazon_order(n: int, sku: str, status: str = "approved") -> Sale:
    return Sale(number=f"702-{n:07d}-4455667", channel="amazon", issued_at=datetime(2026, 11, 30, 10, 0),
                status=status, items=[SaleItem(sku=sku, quantity="1", unit_price="79.90")],
                customer=Customer(name="Ana Souza", document="52998224725", addresses=[Address(
                    street="Rua Augusta", number="1200", district="Consolação", city="São Paulo", state="SP",
                    zip="01305000")]),
                payments=[Payment(method="credit", name="Cartão de crédito", amount="79.90")])


def orders_for(h: Harness, number: str) -> list[dict[str, Any]]:
    return [o for o in h.sandbox.records("sales") if o.get("external") == number]


def test_an_order_pushed_into_pluggto_is_created_once_even_when_its_answer_is_lost(make: Any) -> None:
    h = make(options={"timeout_seconds": 0.5}, sandbox={**FAST, "fault_delay": 1.0})
    h.sandbox.create_sku("FBA-1", name="Camiseta FBA")
    (op,) = h.stage(amazon_order(1, "FBA-1"))
    h.authenticate()
    h.sandbox.inject_fault("timeout-after-write", 1, method="POST")
    assert h.run(op) == "pending", "the answer was lost: maybe done"
    h.make_due(op)
    assert h.run(op) == "done", h.operation(op).last_error
    (order,) = orders_for(h, "702-0000001-4455667")
    assert h.operation(op).remote_id == order["id"], "found by its channel number on the retry"
    assert order["channel"] == "amazon" and order["payer_cpf"] == "52998224725"
    assert order["receiver_zipcode"] == "01305000" and order["items"][0]["sku"] == "FBA-1"


def test_an_order_pluggtos_own_channel_integration_already_imported_is_updated_not_duplicated(make: Any) -> None:
    h = make()
    h.sandbox.create_sku("FBA-6", name="Garrafa")
    sale = amazon_order(6, "FBA-6", status="invoiced")
    imported = h.sandbox.place_order(["FBA-6"], channel="Amazon", status="approved", external="AMZ-IMPORT-1",
                                     original_id=sale.number)
    (op,) = h.stage(sale)
    assert h.run(op) == "done", h.operation(op).last_error
    assert h.operation(op).remote_id == imported and len(h.sandbox.records("sales")) == 1
    assert h.sandbox.order(imported)["status"] == "invoiced"


def test_a_status_change_moves_the_order_only_as_pluggtos_flow_allows(make: Any) -> None:
    h = make()
    h.sandbox.create_sku("FBA-2", name="Caneca")
    sale = amazon_order(2, "FBA-2")
    (op,) = h.stage(sale)
    assert h.run(op) == "done"
    (order,) = orders_for(h, sale.number)
    for status, expected in (("invoiced", "invoiced"), ("approved", "invoiced"), ("canceled", "canceled"),
                             ("shipped", "canceled")):
        before = len(h.sandbox.request_log)
        (op,) = h.stage(sale.model_copy(update={"status": status}))
        assert h.run(op) == "done", h.operation(op).last_error
        assert h.sandbox.order(order["id"])["status"] == expected, status
        puts = [r for r in h.sandbox.request_log[before:] if r["method"] == "PUT"]
        assert len(puts) == (1 if status == expected else 0), (status, puts)
    assert len(orders_for(h, sale.number)) == 1


def _broken_everywhere(h: Harness, order_id: str) -> None:
    """The manual's four causes at once: no CEST (and an origin that is not 0-8) on the SKU, the delivery address
    without number, the Amazon token expired."""
    h.sandbox.edit_sku("FBA-3", cest=None, origin=None)
    h.sandbox.edit_order(order_id, receiver_address_number="", payer_address_number="")
    h.sandbox.set_channel_token("amazon", datetime.now(UTC) - timedelta(days=1))


def test_the_nfe_plugg_to_issues_names_each_of_the_manuals_four_rejection_causes_with_its_fix_and_is_resent_once(
        make: Any) -> None:
    h = make(emit=True)
    h.sandbox.create_sku("FBA-3", name="Tênis", ncm="64041100", nbm="64041100", cest="2806500", origin=0)
    sale = amazon_order(3, "FBA-3")
    (op,) = h.stage(sale)
    assert h.run(op) == "done"
    (order,) = orders_for(h, sale.number)
    _broken_everywhere(h, order["id"])
    emit = next(o for o in _ops(h) if o.kind == "emit_invoice")
    assert h.run(emit.id) == "failed"
    failed = h.operation(emit.id)
    error, fix = failed.last_error or "", failed.fix or ""
    for cause in ("missing_fiscal_attributes", "incomplete_address", "token_expired", "tax_data"):
        assert cause in error, (cause, error)
    for named in ("NCM, CEST and NBM", "customer's address", "integration token", "origem 0-8", "hub retry"):
        assert named in fix, (named, fix)
    (q,) = h.quarantined()
    assert q.field == "items[0] (FBA-3) fiscal.cest" and q.fix == fix
    note_id = failed.remote_id
    assert note_id and len(h.sandbox.records("issued")) == 1

    h.sandbox.edit_sku("FBA-3", cest="2806500", origin=0)  # correct, then `hub retry`
    h.sandbox.edit_order(order["id"], receiver_address_number="1200", payer_address_number="1200")
    h.sandbox.set_channel_token("amazon", datetime.now(UTC) + timedelta(days=365))
    assert retry_failed(h.rt, TENANT) == 1
    assert h.run(emit.id) == "done", h.operation(emit.id).last_error
    (note,) = h.sandbox.records("issued")
    assert note["id"] == note_id and note["nfe_status"] == "authorized", "the same note, resent"
    assert h.sandbox.resends() == 1 and h.sandbox.duplicate_invoices == 0
    assert h.sandbox.order(order["id"])["shipments"][0]["nfe_key"] == note["nfe_key"]
    with h.rt.store.sessions() as s:
        stored = [Invoice.model_validate(r.payload) for r in s.scalars(select(Record).where(
            Record.entity == "invoices"))]
    assert [i.access_key for i in stored] == [note["nfe_key"]] and stored[0].status == "authorized"


def test_a_note_still_with_sefaz_is_read_again_later_and_never_issued_twice(make: Any) -> None:
    h = make(emit=True, sandbox={**FAST, "nfe_delay_seconds": 3600})
    h.sandbox.create_sku("FBA-4", name="Mochila", ncm="42029200", nbm="42029200", cest="1234567", origin=0)
    (op,) = h.stage(amazon_order(4, "FBA-4"))
    assert h.run(op) == "done"
    emit = next(o for o in _ops(h) if o.kind == "emit_invoice")
    assert h.run(emit.id) == "pending", "processing: waited without an attempt burnt"
    waiting = h.operation(emit.id)
    assert waiting.remote_id and "waiting for SEFAZ" in (waiting.last_error or "")
    h.sandbox.settings.nfe_delay_seconds = 0
    with h.sandbox.lock:
        h.sandbox.invoices[waiting.remote_id]["due_at"] = 0
    h.make_due(emit.id)
    assert h.run(emit.id) == "done", h.operation(emit.id).last_error
    assert len(h.sandbox.records("issued")) == 1 and h.sandbox.duplicate_invoices == 0
    assert h.sandbox.resends() == 0


def test_the_notes_pluggto_issued_are_read_as_invoice_records_with_their_order(make: Any) -> None:
    h = make(pull="invoices")
    h.sandbox.create_sku("FBA-5", name="Luminária", ncm="94052000", nbm="94052000", cest="1234567", origin=0)
    order_id = h.sandbox.place_order(["FBA-5"], channel="amazon")
    rejected_order = h.sandbox.place_order(["FBA-5"], channel="amazon", receiver_city="")
    good = h.sandbox.issue(order_id)
    h.sandbox.issue(rejected_order)
    assert h.pull().ok
    with h.rt.store.sessions() as s:
        stored = [Invoice.model_validate(r.payload) for r in s.scalars(select(Record).where(
            Record.entity == "invoices"))]
    (note,) = [n for n in h.sandbox.records("issued") if n["id"] == good]
    assert [(i.access_key, i.status) for i in stored] == [(note["nfe_key"], "authorized")], \
        "a rejected note is not an invoice"
    (invoice,) = stored
    assert invoice.sale is not None and invoice.sale.external_id == order_id
    assert invoice.sale.name == h.sandbox.order(order_id)["original_id"], "the channel's order number"
    assert invoice.xml and invoice.xml.endswith(".xml")
    assert h.pull().ok


def _ops(h: Harness) -> list[Operation]:
    with h.rt.store.sessions() as s:
        return list(s.scalars(select(Operation).order_by(Operation.id)))
