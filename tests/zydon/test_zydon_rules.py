"""Zydon's own rules, each through real HTTP to the sandbox and the real store: the JWT renewed before and after it
lapses, a wrong key pair, the customer that needs CPF/CNPJ or IE/RG, order statuses set by name, absolute stock per
warehouse, prices, NF-e attached to orders, the signed order webhook, paging and Zydon's 429."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub import webhooks
from hub.errors import AuthRevoked
from hub.models import (
    Customer,
    Invoice,
    Payment,
    Price,
    Ref,
    Sale,
    SaleItem,
    StockLevel,
    access_key_check_digit,
)
from hub.sandbox import serve
from hub.store.schema import Route
from hub.testing import Harness
from hub_zydon.auth import jwt_claims
from sqlalchemy import update

TENANT = "conformance"
FAST = {"rate_per_second": None, "page_size": 20, "fault_delay": 1.3}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Harness] = []

    def make(pull: str = "products", push: str = "products", options: dict[str, Any] | None = None,
             **settings: Any) -> Harness:
        home = tmp_path / f"h{len(started)}"
        home.mkdir()
        harness = Harness.start(home, "zydon", pull, push,
                                sandbox_options={**FAST, **settings}, options=options)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.stop()


def push(harness: Harness, *records: Any, prefix: str = "rec") -> list[str]:
    """Stage records as if read from the peer and run their operations; their states."""
    return [harness.run(op) for op in harness.stage(*records, external_prefix=prefix)]


def sale(number: str, status: str = "Em aberto", sku: str = "KIT-1") -> Sale:
    return Sale(number=number, channel="bling", issued_at=datetime(2026, 11, 20, 12, tzinfo=UTC), status=status,
                customer=Customer(name="Atacado Boa Vista", document="11222333000181"),
                items=[SaleItem(sku=sku, quantity=Decimal(2), unit_price=Decimal("15.00"))],
                payments=[Payment(method="bling-7", name="PIX", amount=Decimal("30.00"))])


# --- authentication -------------------------------------------------------------------------------------------------


def test_jwt_is_renewed_before_it_lapses(start: Any) -> None:
    """The JWT's own exp claim says when it lapses: the hub logs in again before that, with no 401 first."""
    h = start(push="stock", token_ttl_seconds=2)
    h.sandbox.create_product(sku="KIT-1")
    assert push(h, StockLevel(sku="KIT-1", quantity=Decimal(1))) == ["done"]
    token = h.credentials()["access_token"]
    assert abs(jwt_claims(token)["exp"] - time.time() - 2) < 2, "the JWT should carry the sandbox's 2 s lifetime"
    time.sleep(2.2)
    log = len(h.sandbox.request_log)
    assert push(h, StockLevel(sku="KIT-1", quantity=Decimal(2))) == ["done"]
    assert h.sandbox.token_calls == 2, "the lapsed JWT should be replaced by one new login"
    assert h.credentials()["access_token"] != token
    assert len(h.sandbox.request_log) - log == 1, \
        "the override alone (the SKU's ids are kept from the first write), no call refused with a 401 first"


def test_an_expired_jwt_answers_401_and_is_renewed_once(start: Any) -> None:
    h = start(push="stock")
    h.sandbox.create_product(sku="KIT-1")
    assert push(h, StockLevel(sku="KIT-1", quantity=Decimal(1))) == ["done"]
    h.sandbox.advance(7200)  # Zydon's clock says the JWT is expired; the hub's copy says it is not
    assert push(h, StockLevel(sku="KIT-1", quantity=Decimal(4))) == ["done"]
    assert h.sandbox.token_calls == 2
    assert h.sandbox.stock_of("KIT-1") == 4


def test_a_wrong_key_pair_pauses_the_connection_with_the_fix(start: Any) -> None:
    h = start()
    h.sandbox.key_secret = "a-key-deleted-in-zydon"
    with pytest.raises(AuthRevoked) as refused:
        h.authenticate()
    assert "Chaves de API" in (refused.value.fix or "")
    assert "key pair was refused" in refused.value.message


def test_an_app_studio_install_exchanges_the_code_for_the_key_pair(start: Any) -> None:
    """What `hub auth zydon TENANT` does: the consent page's code is exchanged (HTTP Basic with the plugin's id and
    access key) for the organization's key pair, which then logs in; the code works once."""
    from hub.auth import authorize
    from hub.store.schema import Connection
    from sqlalchemy import select

    h = start(app_install=True)
    consent = httpx.get(f"{h.served.base_url}/oauth/authorize", params={
        "client_id": h.sandbox.app_client_id, "redirect_uri": "https://hub.example/zydon/callback", "state": "s1"})
    assert consent.status_code in (302, 307)
    code = httpx.URL(consent.headers["location"]).params["code"]
    with h.rt.store.sessions() as s:
        conn_id = s.scalar(select(Connection.id).where(Connection.name == "platform"))
    assert conn_id is not None
    authorize(h.rt, conn_id, {"authorization_code": code})
    creds = h.credentials()
    assert creds["key_id"] == h.sandbox.key_id and creds["key_secret"] == h.sandbox.key_secret
    assert "authorization_code" not in creds and jwt_claims(creds["access_token"])["sub"] == h.sandbox.key_id
    with pytest.raises(AuthRevoked):
        authorize(h.rt, conn_id, {"authorization_code": code})


# --- customers ------------------------------------------------------------------------------------------------------


def test_a_customer_without_cpf_cnpj_or_ie_rg_is_quarantined_with_the_fix(start: Any) -> None:
    h = start(pull="customers", push="customers")
    assert push(h, Customer(name="Padaria Sem Documento")) == ["failed"]
    (q,) = h.quarantined()
    assert q.field == "document" and "Padaria Sem Documento" in q.reason and TENANT in q.reason
    assert "CPF/CNPJ or the IE/RG" in q.fix and "Bling" in q.fix
    assert h.sandbox.records("customers") == [], "nothing reaches Zydon"
    assert push(h, Customer(name="Mercado Só IE", state_registration="110042490114"), prefix="ie") == ["done"]
    (partner,) = h.sandbox.records("customers")
    assert partner["state_registration"] == "110042490114" and partner["fiscal_registration_number"] is None


def test_the_sandbox_refuses_a_partner_without_documents_with_zydons_error_body(start: Any) -> None:
    h = start()
    base = h.served.base_url
    token = httpx.post(f"{base}/api/account/access-key/login",
                       json={"code": h.sandbox.key_id, "token": h.sandbox.key_secret}).json()["accessToken"]
    answer = httpx.post(f"{base}/api/sales/partners", json={"name": "Sem documento"},
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "fiscal_registration_number"


# --- orders ---------------------------------------------------------------------------------------------------------


def test_order_status_is_set_by_name_and_a_missing_status_says_how_to_create_it(start: Any) -> None:
    h = start(pull="sales", push="sales")
    h.sandbox.create_product(sku="KIT-1")
    assert push(h, sale("BL-1")) == ["done"]
    (order,) = h.sandbox.records("sales")
    order_id = str(order["id"])
    assert h.sandbox.order_status(order_id) == "Em aberto"
    assert push(h, sale("BL-1", status="ATENDIDO")) == ["done"], "case and accents do not matter"
    assert h.sandbox.order_status(order_id) == "Atendido"
    assert len(h.sandbox.records("sales")) == 1, "a status change writes no second order"

    (op,) = h.stage(sale("BL-1", status="Em separação"))
    assert h.run(op) == "failed"
    (q,) = [q for q in h.quarantined() if q.entity == "sales"]
    assert q.field == "status" and "Em separação" in q.reason
    assert "create the status 'Em separação' in Zydon (Pedidos > Status)" in q.fix.replace("Create", "create")
    assert h.sandbox.order_status(order_id) == "Atendido"

    h.sandbox.add_status("Em Separacao", "PAID")  # created by hand afterwards (accents aside), then `hub retry`
    h.make_due(op, state="pending")
    assert h.run(op) == "done"
    assert h.sandbox.order_status(order_id) == "Em Separacao"

    h.sandbox.add_status("Só no portal", "PENDING", can_edit_by_api=False)
    (op,) = h.stage(sale("BL-1", status="Só no portal"))
    assert h.run(op) == "failed"
    assert any("Allow API changes on the status 'Só no portal'" in q.fix for q in h.quarantined())
    assert h.sandbox.order_status(order_id) == "Em Separacao"


def test_an_order_whose_product_is_missing_creates_its_buyer_once_and_nothing_else(start: Any) -> None:
    h = start(pull="sales", push="sales")
    (op,) = h.stage(sale("BL-2", sku="NOT-IN-ZYDON"))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "items.sku" and "NOT-IN-ZYDON" in q.reason
    assert h.operation(op).remote_id is None, "the buyer's id is not the order's"
    assert len(h.sandbox.records("customers")) == 1 and h.sandbox.records("sales") == []
    h.sandbox.create_product(sku="NOT-IN-ZYDON")
    h.make_due(op, state="pending")
    assert h.run(op) == "done"
    assert len(h.sandbox.records("customers")) == 1, "the buyer is found by its CNPJ, not created twice"
    (order,) = h.sandbox.records("sales")
    assert order["external_id"] == "BL-2" and order["payments"][0]["amount"] == 30.0


def test_an_authorized_nfe_is_attached_to_its_order_once(start: Any) -> None:
    h = start(pull="sales", push="sales")
    h.sandbox.create_product(sku="KIT-1")
    assert push(h, sale("BL-9"), prefix="sale") == ["done"]
    with h.rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "push").values(config={"streams": ["sales", "invoices"]}))
    h.stream_out = "invoices"
    first43 = "35261111222333000181550010000012341" + "12345678"
    key = first43 + str(access_key_check_digit(first43))
    invoice = Invoice(number="1234", series="1", access_key=key, status="authorized",
                      sale=Ref(external_id="sale-0"), xml="<nfeProc><NFe/></nfeProc>")
    (op,) = h.stage(invoice, external_prefix="nfe")
    assert h.run(op) == "done", h.operation(op).last_error
    (attached,) = h.sandbox.records("invoices")
    assert attached["invoice_key"] == key and attached["xml_resource_id"] is not None
    h.make_due(op, state="pending", remote_id=None)  # redelivered after a crash
    assert h.run(op) == "done"
    assert len(h.sandbox.records("invoices")) == 1, "an invoice already attached counts as done"

    # The core sending an ERP's NF-e back to the portal the order came from names Zydon's own order id.
    (order,) = h.sandbox.records("sales")
    second = first43[:-8] + "87654321"
    back = invoice.model_copy(update={"number": "1235", "sale": Ref(external_id=str(order["id"])),
                                      "access_key": second + str(access_key_check_digit(second))})
    (op,) = h.stage(back, external_prefix="back")
    assert h.run(op) == "done", h.operation(op).last_error
    assert len(h.sandbox.records("invoices")) == 2


# --- stock and prices -----------------------------------------------------------------------------------------------


def test_stock_is_an_absolute_balance_per_warehouse(start: Any) -> None:
    h = start(push="stock")
    h.sandbox.create_product(sku="ST-1")
    h.sandbox.create_product(sku="GRADE", variations=[{"sku": "GRADE-P"}, {"sku": "GRADE-M"}])
    main, branch = (str(w["id"]) for w in h.sandbox.warehouses())
    assert push(h, StockLevel(sku="ST-1", quantity=Decimal(7))) == ["done"]
    assert push(h, StockLevel(sku="ST-1", quantity=Decimal(3))) == ["done"]
    assert h.sandbox.stock_of("ST-1") == 3, "the balance is set (override), not added to (movement)"
    assert push(h, StockLevel(sku="GRADE-M", warehouse=branch, quantity=Decimal(5)), prefix="grade") == ["done"]
    assert h.sandbox.stock_of("GRADE-M", branch) == 5 and h.sandbox.stock_of("GRADE-M", main) == 0
    assert push(h, StockLevel(sku="GRADE", quantity=Decimal(1)), prefix="parent") == ["failed"]
    assert any(q.field == "sku" and "variation" in q.fix for q in h.quarantined())


def test_prices_update_the_product_and_its_variations_in_reais(start: Any) -> None:
    h = start(push="prices")
    h.sandbox.create_product(sku="PR-1", price=9.9)
    h.sandbox.create_product(sku="PR-GRADE", price=20.0, variations=[{"sku": "PR-GRADE-P"}])
    assert push(h, Price(sku="PR-1", price=Decimal("12.50")), Price(sku="PR-GRADE-P", price=Decimal("21.90"))) \
        == ["done", "done"]
    prices = {p["sku"]: p["price"] for p in h.sandbox.records("prices")}
    assert prices == {"PR-1": 12.5, "PR-GRADE": 20.0, "PR-GRADE-P": 21.9}, "reais, not cents"
    h.sandbox.create_product(sku="PR-2", price=9.9)
    puts = sum(1 for r in h.sandbox.request_log if r["method"] == "PUT")
    assert push(h, Price(sku="PR-2", price=Decimal("9.90")), prefix="same") == ["done"]
    assert sum(1 for r in h.sandbox.request_log if r["method"] == "PUT") == puts, "an unchanged price is not written"


# --- the order webhook ----------------------------------------------------------------------------------------------


def _receiver(h: Harness) -> Any:
    return serve(webhooks.app(h.rt))


def test_a_signed_order_webhook_schedules_the_sales_pull(start: Any) -> None:
    h = start(pull="sales", push="sales")
    with _receiver(h) as receiver:
        h.sandbox.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/platform")
        order_id = h.sandbox.place_order()
        (delivery,) = h.sandbox.deliveries
        assert delivery["status"] == 200 and delivery["answer"]["routes"] == ["pull"]
        h.sandbox.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/platform", secret="someone-elses-secret")
        h.sandbox.place_order()
        assert h.sandbox.deliveries[-1]["status"] == 401, "a bad signature is refused"
    assert h.pull().ok and h.bound("sales") == 2 and order_id


def test_a_webhook_is_refused_when_no_secret_is_configured(start: Any) -> None:
    h = start(pull="sales", push="sales", share_webhook_secret=False)
    with _receiver(h) as receiver:
        h.sandbox.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/platform", secret="any")
        h.sandbox.place_order()
    assert h.sandbox.deliveries[-1]["status"] == 401


# --- paging and limits ----------------------------------------------------------------------------------------------


def test_paging_reads_every_zero_based_page(start: Any) -> None:
    h = start(pull="customers", push="customers")
    h.sandbox.seed("customers", 45)
    report = h.pull(full=True)
    assert report.ok and h.bound("customers") == 45
    listed = [r["query"] for r in h.sandbox.request_log if r["path"] == "/api/sales/partners"]
    assert [q.split("page=")[1].split("&")[0] for q in listed] == ["0", "1", "2"]
    assert all("perPage=20" in q for q in listed)


def test_zydons_429_is_waited_out(start: Any) -> None:
    h = start(rate_per_second=4, page_size=5, options={"rate_per_second": 1000})
    h.sandbox.seed("products", 40)
    report = h.pull(full=True)
    assert report.ok, report
    assert h.bound("products") == 40
    assert h.sandbox.throttled > 0, "the sandbox should have answered 429 at least once"
