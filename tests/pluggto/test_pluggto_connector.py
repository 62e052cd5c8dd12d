"""The Plugg.to rules, one test each, through real HTTP to the sandbox and the real store: single-use refresh
tokens (a lost rotation recovered by the password grant), the app's authorization code, SKU upserts with
NCM/CEST/NBM, stock and price updates, orders read by ``modified`` with ``next``, the NF-e attached once to the
order's existing shipment, ``not_updated`` counted as done, 429s waited out, notifications on a shared token, and
the fiscal checks of Plugg.to as the NF-e issuer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub.errors import AuthRevoked, BadSignature
from hub.models import (
    Address,
    Customer,
    Invoice,
    Price,
    Product,
    ProductFiscal,
    Ref,
    Sale,
    SaleItem,
    StockLevel,
    Variation,
    access_key_check_digit,
)
from hub.store.engine import utcnow
from hub.store.schema import Connection
from hub.sync.context import Endpoint, RouteView
from hub.sync.loading import ensure_auth, grant_digest
from hub.testing import Harness
from hub.webhooks import accept
from sqlalchemy import select, update

FAST = {"rate_per_second": None}


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    started: list[Harness] = []

    def start(pull: str = "sales", push: str = "products", sandbox: dict[str, Any] | None = None,
              options: dict[str, Any] | None = None) -> Harness:
        h = Harness.start(tmp_path / str(len(started)), "pluggto", pull, push, sandbox_options=sandbox or FAST,
                          options=options)
        started.append(h)
        return h

    (tmp_path).mkdir(exist_ok=True)
    for i in range(4):
        (tmp_path / str(i)).mkdir()
    yield start
    for h in started:
        h.stop()


def conn_id(h: Harness) -> int:
    with h.rt.store.sessions() as s:
        found = s.scalar(select(Connection.id).where(Connection.name == "platform"))
    assert found is not None
    return found


def grants(h: Harness) -> list[str]:
    return [e["grant_type"] for e in h.sandbox.request_log if e.get("path") == "/oauth/token"]


def key(n: int) -> str:
    first = f"3526120000000000000155001{n:09d}100000001"[:43]
    return first + str(access_key_check_digit(first))


# --- OAuth ------------------------------------------------------------------------------------------------------


def test_refresh_tokens_work_once_and_each_renewal_stores_the_new_pair(make: Any) -> None:
    h = make()
    first = ensure_auth(h.rt, conn_id(h), force=True)
    second = ensure_auth(h.rt, conn_id(h), force=True)
    assert second["refresh_token"] != first["refresh_token"], "every answer brings a new refresh token"
    assert h.credentials()["refresh_token"] == second["refresh_token"], "the new pair is stored at once"
    with h.rt.store.sessions() as s:
        expires = s.get_one(Connection, conn_id(h)).token_expires_at
    assert expires is not None and 3500 < (expires - utcnow()).total_seconds() <= 3600, "1 h access tokens"
    spent = httpx.post(f"{h.served.base_url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": h.sandbox.client_id,
        "client_secret": h.sandbox.client_secret})
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant", "a spent refresh token is refused"
    assert grants(h) == ["password", "refresh_token", "refresh_token"]


def test_a_rotation_whose_answer_was_lost_is_recovered_by_the_password_grant(make: Any) -> None:
    h = make()
    cid = conn_id(h)
    first = ensure_auth(h.rt, cid, force=True)
    # A worker sent the refresh token, Plugg.to rotated it, and the worker died before storing the answer.
    lost = httpx.post(f"{h.served.base_url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": h.sandbox.client_id,
        "client_secret": h.sandbox.client_secret})
    assert lost.status_code == 200
    with h.rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.id == cid).values(
            auth_attempt_at=utcnow() - timedelta(minutes=10), auth_attempt_token=grant_digest(first),
            token_expires_at=utcnow() - timedelta(seconds=1)))
    renewed = ensure_auth(h.rt, cid)
    assert renewed["access_token"] != first["access_token"]
    assert grants(h)[-2:] == ["refresh_token", "password"], "the spent refresh token, then the password grant"
    with h.rt.store.sessions() as s:
        row = s.get_one(Connection, cid)
        assert row.pause_kind is None and row.auth_attempt_at is None, "recovered with no person involved"
    assert h.pull().ok, "the connection works with the recovered pair"


def test_an_app_connection_uses_the_pluggtocode_once_and_pauses_when_its_refresh_token_is_spent(make: Any) -> None:
    h = make()
    cid = conn_id(h)
    code = h.sandbox.authorization_code()
    app = {"client_id": h.sandbox.client_id, "client_secret": h.sandbox.client_secret, "authorization_code": code}
    with h.rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.id == cid).values(credentials=h.rt.vault.encrypt(app)))
    first = ensure_auth(h.rt, cid, force=True)
    assert "authorization_code" not in first, "the single-use code is not kept"
    assert grants(h) == ["authorization_code"]
    httpx.post(f"{h.served.base_url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": h.sandbox.client_id,
        "client_secret": h.sandbox.client_secret})  # someone else spent it
    with pytest.raises(AuthRevoked) as refused:
        ensure_auth(h.rt, cid, force=True)
    assert "authorization_code" in (refused.value.fix or ""), refused.value.fix


# --- products, stock, prices --------------------------------------------------------------------------------------


def test_a_product_is_upserted_by_sku_with_ncm_cest_and_nbm(make: Any) -> None:
    h = make(pull="products", push="products")
    record = Product(sku="CAM-01", name="Camiseta", price="59.90", gtin="7891000315507",
                     category_path=["Moda", "Camisetas", "Básicas"], images=["https://img.example/1.jpg"],
                     attributes={"Material": "Algodão"},
                     variations=[Variation(sku="CAM-01-P", attributes={"Tamanho": "P"}, gtin="7891000053508")],
                     fiscal=ProductFiscal(ncm="61091000", cest="2806300", nbm="61091000", origin=0))
    (op,) = h.stage(record)
    assert h.run(op) == "done", h.operation(op).last_error
    sku = h.sandbox.sku("CAM-01")
    assert (sku["ncm"], sku["cest"], sku["nbm"], sku["origin"]) == ("61091000", "2806300", "61091000", 0)
    assert sku["categories"] == [{"name": "Moda > Camisetas > Básicas"}]
    assert [v["sku"] for v in sku["variations"]] == ["CAM-01-P"]
    assert sku["variations"][0]["attributes"][0]["value"]["label"] == "P"
    assert sku["photos"][0]["url"] == "https://img.example/1.jpg"
    assert h.operation(op).remote_id == sku["id"]
    renamed = record.model_copy(update={"name": "Camiseta lisa"})
    (op2,) = h.stage(renamed)
    assert h.run(op2) == "done"
    assert len(h.sandbox.records("products")) == 1, "an upsert by SKU never makes a second product"
    assert h.sandbox.sku("CAM-01")["name"] == "Camiseta lisa"


def test_a_variation_or_product_the_source_deletes_or_deactivates_is_deleted_from_pluggto_once(make: Any) -> None:
    h = make(pull="products", push="products")
    grid = Product(sku="GRID-1", name="Camiseta", price="59.90",
                   variations=[Variation(sku="GRID-1-P", attributes={"Tamanho": "P"}),
                               Variation(sku="GRID-1-M", attributes={"Tamanho": "M"}),
                               Variation(sku="GRID-1-G", attributes={"Tamanho": "G"})])
    (op,) = h.stage(grid)
    assert h.run(op) == "done", h.operation(op).last_error
    trimmed = grid.model_copy(update={"variations": [grid.variations[0],
                                                     grid.variations[1].model_copy(update={"active": False})]})
    (op,) = h.stage(trimmed)
    assert h.run(op) == "done", h.operation(op).last_error
    assert [v["sku"] for v in h.sandbox.sku("GRID-1")["variations"]] == ["GRID-1-P"], "removed and inactive: gone"
    (op,) = h.stage(trimmed.model_copy(update={"active": False}))
    assert h.run(op) == "done", h.operation(op).last_error
    assert not h.sandbox.records("products")
    deletes = [r["path"] for r in h.sandbox.request_log if r["method"] == "DELETE"]
    assert sorted(deletes) == ["/skus/GRID-1", "/skus/GRID-1-G", "/skus/GRID-1-M"]
    h.make_due(op, state="pending")
    assert h.run(op) == "done", "a redelivery finds it gone: done"


def test_a_hybrid_offer_read_from_pluggto_is_quarantined_with_its_fix_and_the_rest_goes_on(make: Any) -> None:
    h = make(pull="products")
    h.sandbox.create_sku("FBA-ONLY", name="Só FBA", quantity=0)
    h.sandbox.create_sku("BOTH", name="Híbrido", quantity=4)
    h.sandbox.create_sku("OWN", name="Estoque próprio", quantity=4)
    for sku in ("FBA-ONLY", "BOTH"):
        h.sandbox.mark_fba(sku)
    assert h.pull(full=True).ok
    (q,) = h.quarantined()
    assert "BOTH" in q.reason and "hybrid offer" in q.reason and q.field == "stock_table"
    assert "one way only" in (q.fix or "")
    with h.rt.store.sessions() as s:
        from hub.store.schema import Record
        skus = {r.natural_key for r in s.scalars(select(Record).where(Record.entity == "products"))}
    assert skus == {"FBA-ONLY", "OWN"}


def test_stock_is_never_written_to_amazons_fba_warehouse(make: Any) -> None:
    h = make(push="stock")
    h.sandbox.create_sku("FBA-W", name="Produto FBA")
    (op,) = h.stage(StockLevel(sku="FBA-W", warehouse="amazon_fba", quantity="7"))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "warehouse" and "mappings.stores" in (q.fix or "")
    assert not [r for r in h.sandbox.request_log if r["method"] == "PUT"]


def test_a_product_without_nbm_sends_its_ncm_as_nbm_and_reads_back_either_spelling(make: Any) -> None:
    h = make(pull="products", push="products")
    (op,) = h.stage(Product(sku="NCM-ONLY", name="Só NCM", price="10.00", fiscal=ProductFiscal(ncm="61091000")))
    assert h.run(op) == "done", h.operation(op).last_error
    assert h.sandbox.sku("NCM-ONLY")["nbm"] == "61091000", "the SDK's field carries the NCM when there is no NBM"
    h.sandbox.create_sku("OLD-SDK", name="Cadastro antigo", ncm=None, nbm="42022220", cest=None)
    assert h.pull(full=True).ok
    with h.rt.store.sessions() as s:
        from hub.store.schema import Record
        payloads = [r.payload for r in s.scalars(select(Record).where(Record.entity == "products"))]
    old = next(p for p in payloads if p["sku"] == "OLD-SDK")
    assert old["fiscal"]["ncm"] == "42022220" and old["fiscal"]["nbm"] == "42022220"


def test_stock_and_prices_update_the_sku_and_its_warehouse_and_price_list_rows(make: Any) -> None:
    h = make(pull="products", push="stock")
    h.sandbox.create_sku("EST-1", name="Estoque")
    for record in (StockLevel(sku="EST-1", quantity="7"), StockLevel(sku="EST-1", warehouse="CD-SP", quantity="3"),
                   StockLevel(sku="EST-1", quantity="-2", warehouse="CD-RJ")):
        (op,) = h.stage(record, external_prefix=record.warehouse)
        assert h.run(op) == "done", h.operation(op).last_error
    sku = h.sandbox.sku("EST-1")
    assert sku["quantity"] == 7
    assert {r["code"]: r["quantity"] for r in sku["stock_table"]} == {"CD-SP": 3, "CD-RJ": 0}, \
        "a warehouse is a stock_table row; a negative ERP balance is offered as 0"
    h2 = make(pull="products", push="prices")
    h2.sandbox.create_sku("PRC-1", name="Preço")
    for record in (Price(sku="PRC-1", price="79.90", list_price="99.90"),
                   Price(sku="PRC-1", price="85.00", price_list="amazon")):
        (op,) = h2.stage(record, external_prefix=record.price_list)
        assert h2.run(op) == "done", h2.operation(op).last_error
    sku = h2.sandbox.sku("PRC-1")
    assert (sku["price"], sku["special_price"]) == (99.9, 79.9), "list price as price, the sold one as special"
    assert sku["price_table"][0]["code"] == "amazon" and sku["price_table"][0]["price"] == 85


# --- orders -------------------------------------------------------------------------------------------------------


def test_orders_are_read_by_modified_with_next_and_mapped(make: Any) -> None:
    h = make(pull="sales")
    h.sandbox.seed("products", 3)
    ids = h.sandbox.seed("sales", 230)
    report = h.pull()
    assert report.ok and h.bound("sales") == 230, report
    lists = [e["query"] for e in h.sandbox.request_log if e["path"] == "/orders"]
    assert [q.get("next") for q in lists] == [None, ids[99], ids[199]], "next is the last id of the page before"
    assert all(q["orderby"] == "modified" and q["limit"] == "100" for q in lists)
    h.sandbox.touch("sales", ids[5])
    again = h.pull()
    assert again.ok and again.streams[0].counts.changed == 1
    window = [e["query"] for e in h.sandbox.request_log if e["path"] == "/orders"][-1]["modified"]
    today = datetime.now(UTC)
    assert window.endswith(f"to{today + timedelta(days=1):%Y-%m-%d}"), window
    with h.rt.store.sessions() as s:
        from hub.store.schema import Record
        sales = [r.payload for r in s.scalars(select(Record).where(Record.entity == "sales"))]
    one = next(p for p in sales if p["customer"] and len(p["customer"]["document"]) == 11)
    assert one["customer"]["document"].isdigit(), "a masked CPF arrives as digits"
    assert one["payments"][0]["name"] == "Cartão de crédito" and one["payments"][0]["installments"] >= 1
    assert one["customer"]["addresses"][0]["zip"].isdigit()
    company = next(p for p in sales if p["customer"] and len(p["customer"]["document"]) == 14)
    assert company["customer"]["name"].endswith("Ltda")


def test_an_order_with_a_bad_cpf_or_an_unknown_status_is_quarantined_with_its_field(make: Any) -> None:
    h = make(pull="sales")
    h.sandbox.seed("sales", 3)
    h.sandbox.seed_invalid("sales")
    h.sandbox.create_order(status="lost_in_space")
    report = h.pull()
    assert report.ok and report.streams[0].counts.quarantined == 2
    assert sorted(q.field or "" for q in h.quarantined()) == ["customer.document", "status"]


def test_a_429_with_pluggtos_body_is_waited_out(make: Any) -> None:
    h = make(pull="sales", sandbox={"rate_per_second": 2}, options={"rate_per_second": 1000, "page_size": 10})
    h.sandbox.seed("sales", 35)
    report = h.pull()
    assert report.ok and h.bound("sales") == 35, report
    assert h.sandbox.throttled > 0, "the sandbox's limit answered 429s, and the pull waited them out"


# --- invoices -----------------------------------------------------------------------------------------------------


def invoice(order_id: str, n: int = 1) -> Invoice:
    return Invoice(number=str(1000 + n), series="1", access_key=key(n), status="authorized",
                   issued_at=datetime(2026, 11, 30, 15, 0), sale=Ref(external_id=order_id),
                   xml="https://files.example/nfe.xml")


def order_puts(h: Harness, order_id: str) -> int:
    return sum(1 for e in h.sandbox.request_log if e["method"] == "PUT" and e["path"] == f"/orders/{order_id}")


def test_the_nfe_is_attached_once_to_the_existing_shipment_never_a_second_delivery(make: Any) -> None:
    h = make(push="invoices")
    order_id = h.sandbox.create_order()
    shipment = h.sandbox.order(order_id)["shipments"][0]["id"]
    (op,) = h.stage(invoice(order_id))
    assert h.run(op) == "done", h.operation(op).last_error
    order = h.sandbox.order(order_id)
    assert order["status"] == "invoiced" and len(order["shipments"]) == 1
    attached = order["shipments"][0]
    assert (attached["id"], attached["nfe_key"], attached["nfe_number"], attached["nfe_serie"]) == \
        (shipment, key(1), "1001", "1")
    assert attached["nfe_date"] == "2026-11-30T15:00:00.000Z" and attached["nfe_link"].endswith("nfe.xml")
    # Redelivered (the worker died before recording it): the lookup finds the key, nothing is written again.
    h.make_due(op, state="pending", remote_id=None)
    assert h.run(op) == "done"
    assert order_puts(h, order_id) == 1 and h.sandbox.duplicate_deliveries == 0
    assert len(h.sandbox.records("invoices")) == 1


def test_an_answer_lost_after_the_write_is_not_attached_twice(make: Any) -> None:
    h = make(push="invoices", sandbox={"rate_per_second": None, "fault_delay": 1.5},
             options={"timeout_seconds": 0.5})
    order_id = h.sandbox.create_order()
    (op,) = h.stage(invoice(order_id, 2))
    h.authenticate()
    h.sandbox.inject_fault("timeout-after-write", 1, method="PUT")
    assert h.run(op) == "pending"
    h.make_due(op)
    assert h.run(op) == "done", h.operation(op).last_error
    assert order_puts(h, order_id) == 1 and h.sandbox.duplicate_deliveries == 0


def test_not_updated_counts_as_already_done(make: Any) -> None:
    h = make(push="invoices")
    order_id = h.sandbox.create_order()
    (op,) = h.stage(invoice(order_id, 3))
    h.authenticate()
    h.sandbox.inject_fault("not_updated", 1, method="PUT")
    assert h.run(op) == "done", h.operation(op).last_error
    assert h.operation(op).remote_id == key(3) and h.sandbox.duplicate_deliveries == 0


def test_an_order_without_a_shipment_is_refused_instead_of_creating_a_delivery(make: Any) -> None:
    h = make(push="invoices")
    order_id = h.sandbox.create_order(shipments=[])
    (op,) = h.stage(invoice(order_id, 4))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "shipments" and "duplicate delivery" in (q.fix or "")
    assert order_puts(h, order_id) == 0 and h.sandbox.duplicate_deliveries == 0


# --- notifications ------------------------------------------------------------------------------------------------


def test_notifications_need_the_connections_token_and_trigger_a_re_read(make: Any) -> None:
    h = make(pull="sales")
    body = json.dumps({"type": "orders", "id": "abc123", "action": "updated", "user": 129,
                       "changes": {"status": True}}).encode()
    for headers in ({}, {"x-pluggto-token": "wrong"}):
        with pytest.raises(BadSignature):
            accept(h.rt, "conformance", "platform", headers, body)
    good = {"x-pluggto-token": h.sandbox.webhook_token}
    result = accept(h.rt, "conformance", "platform", good, body)
    assert result == {"accepted": 1, "duplicates": 0, "routes": ["pull"]}
    assert accept(h.rt, "conformance", "platform", good, body)["duplicates"] == 1, "a redelivery is deduped"
    other_user = json.dumps({"type": "orders", "id": "x", "action": "created", "user": 7}).encode()
    with pytest.raises(BadSignature):
        accept(h.rt, "conformance", "platform", good, other_user)
    message = json.dumps({"type": "messages", "id": "m1", "action": "created", "user": 129}).encode()
    assert accept(h.rt, "conformance", "platform", good, message)["routes"] == []


def test_the_notification_url_carries_the_token_in_its_query_string_through_the_receiver(make: Any) -> None:
    """Plugg.to's notification settings take a URL, not headers: the receiver hands the query string to the plugin,
    which compares the token in constant time; a repeated name cannot override the first value."""
    from hub import webhooks
    from hub.sandbox import serve

    h = make(pull="sales")
    receiver = serve(webhooks.app(h.rt))
    url = f"{receiver.base_url}/webhooks/conformance/platform"
    token = h.sandbox.webhook_token
    body = {"type": "orders", "id": "q1", "action": "created", "user": 129}
    try:
        answers = [httpx.post(f"{url}?token={token}", json=body).status_code,
                   httpx.post(f"{url}?token=nope", json={**body, "id": "q2"}).status_code,
                   httpx.post(f"{url}?token=nope&token={token}", json={**body, "id": "q3"}).status_code,
                   httpx.post(url, json={**body, "id": "q4"}).status_code,
                   httpx.post(url, json={**body, "id": "q5"}, headers={"x-pluggto-token": token}).status_code]
    finally:
        receiver.stop()
    assert answers == [200, 401, 401, 401, 200], answers


# --- Plugg.to as the NF-e issuer ----------------------------------------------------------------------------------


def test_fiscal_checks_name_the_manuals_rejection_causes(make: Any) -> None:
    h = make()
    route = RouteView(tenant="t", name="amazon", source=Endpoint(connection="amz", platform="amazon"),
                      sink=Endpoint(connection="plg", platform="pluggto"), streams=["sales"],
                      options={"channel_token_expires_at": "2020-01-01"})
    sale = Sale(number="702-1", issued_at=datetime(2026, 11, 30), items=[SaleItem(sku="A", quantity="1",
                                                                                   unit_price="10")],
                customer=Customer(name="Ana", addresses=[Address(street="Rua X", city="São Paulo", state="SP")]))
    products = {"A": Product(sku="A", name="A", fiscal=ProductFiscal(ncm="61091000", nbm="6109"))}
    found = [p for _, got in h.rt.registry.broadcast("validate_fiscal", document=sale, route=route,
                                                     products=products) for p in got
             if p.platform == "pluggto"]
    fields = {p.field for p in found}
    assert {"items[0] (A) fiscal.cest", "items[0] (A) fiscal.nbm", "items[0] (A) fiscal.origin",
            "customer.document", "customer.addresses[0]", "route.options.channel_token_expires_at"} <= fields
    assert all(p.record == "sale 702-1" and p.fix for p in found)
    elsewhere = route.model_copy(update={"sink": Endpoint(connection="b", platform="bling")})
    assert not [p for _, got in h.rt.registry.broadcast("validate_fiscal", document=sale, route=elsewhere,
                                                        products=products) for p in got if p.platform == "pluggto"]
