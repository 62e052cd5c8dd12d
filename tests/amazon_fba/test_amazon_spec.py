"""Every request the connector sends, and every answer and notification the sandbox gives, conforms to Amazon's
published SP-API models, read from shared/specs/amazon (not a copy); the sandbox refuses what the models refuse."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub.models import Invoice, Price, Product, ProductFiscal, Ref
from hub.store.schema import Route
from hub.testing import Harness
from hub_amazon_fba import spec
from sqlalchemy import update

SHARED = Path(__file__).resolve().parents[3] / "shared" / "specs" / "amazon"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.start(tmp_path, "amazon_fba", "sales", "products",
                      sandbox_options={"plan_scale": None, "page_size": 5})
    yield h
    h.stop()


def _token(h: Harness) -> dict[str, str]:
    creds = h.sandbox.connection(h.served.base_url)["credentials"]
    answer = httpx.post(f"{h.served.base_url}/auth/o2/token", data={
        "grant_type": "refresh_token", "refresh_token": creds["refresh_token"], "client_id": creds["client_id"],
        "client_secret": creds["client_secret"]})
    return {"x-amz-access-token": answer.json()["access_token"]}


def test_the_models_read_are_the_published_files_and_the_packaged_copies_match_them() -> None:
    assert SHARED.is_dir(), f"the published models are expected at {SHARED}"
    packaged = Path(spec.__file__).parent / "data"
    for name in spec.MODELS:
        assert spec.model_path(name) == SHARED / name
        assert spec.load(name) == json.loads((SHARED / name).read_text())
        assert gzip.decompress((packaged / f"{name}.gz").read_bytes()) == (SHARED / name).read_bytes()


def test_every_request_the_connector_sends_validates_against_the_sp_api_models(harness: Harness) -> None:
    h = harness
    h.sandbox.seed("sales", 12)
    assert h.pull().ok
    (shipment,) = h.sandbox.seed("sales", 1)
    for sku in ("SPEC-1",):
        h.sandbox.create_listing(sku)
    products = [Product(sku=f"SPEC-P{i}", name=f"Produto {i}", price="19.90", gtin="7891000315507",
                        fiscal=ProductFiscal(ncm="61091000", origin=0)) for i in range(2)]
    assert [h.run(op) for op in h.stage(*products)] == ["done", "done"]
    with h.rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "push").values(config={"streams": ["prices"]}))
    h.stream_out = "prices"
    assert [h.run(op) for op in h.stage(Price(sku="SPEC-1", price=Decimal("24.90")))] == ["done"]
    with h.rt.store.begin() as s:
        s.execute(update(Route).where(Route.name == "push").values(config={"streams": ["invoices"]}))
    h.stream_out = "invoices"
    key, xml = h.sandbox.authorized_nfe(shipment, number=77)
    note = Invoice(number="77", series="1", access_key=key, status="authorized", xml=xml,
                   sale=Ref(external_id=shipment))
    assert [h.run(op) for op in h.stage(note)] == ["done"]
    log = [r for r in h.sandbox.request_log if r["path"] not in ("/", "/auth/o2/token")]
    problems = [f"{r['method']} {r['path']}: {p}" for r in log
                for p in spec.request_problems(r["method"], r["path"], r["query"], r["body"])]
    assert problems == []
    used = {r["operation"] for r in log}
    assert {"searchOrders", "getOrder", "createRestrictedDataToken", "getShipmentDetails", "submitInvoice",
            "getInvoiceStatus", "getListingsItem", "putListingsItem", "patchListingsItem"} <= used


def test_every_answer_of_the_sandbox_validates_against_the_models(harness: Harness) -> None:
    h = harness
    base, auth = h.served.base_url, _token(h)
    order_id, shipment = h.sandbox.create_order()
    h.sandbox.create_listing("SPEC-L")
    path = f"/fba/outbound/brazil/v0/shipments/{shipment}"
    rdt = httpx.post(f"{base}/tokens/2021-03-01/restrictedDataToken", headers=auth,
                     json={"restrictedResources": [{"method": "GET", "path": path}]})
    _key, xml = h.sandbox.authorized_nfe(shipment, number=5)
    calls: list[tuple[str, str, httpx.Response]] = [
        ("POST", "/tokens/2021-03-01/restrictedDataToken", rdt),
        ("GET", "/orders/2026-01-01/orders", httpx.get(f"{base}/orders/2026-01-01/orders", headers=auth, params={
            "lastUpdatedAfter": "2026-01-01T00:00:00Z", "includedData": "BUYER,RECIPIENT,PROCEEDS,TAX,PAYMENT,"
                                                                          "FULFILLMENT,FULFILLMENT_ORDERS"})),
        ("GET", f"/orders/2026-01-01/orders/{order_id}", httpx.get(
            f"{base}/orders/2026-01-01/orders/{order_id}", headers=auth, params={"includedData": "TAX,PAYMENT"})),
        ("GET", path, httpx.get(f"{base}{path}", headers={"x-amz-access-token": rdt.json()["restrictedDataToken"]})),
        ("POST", f"{path}/invoice", httpx.post(f"{base}{path}/invoice", headers=auth, json={
            "InvoiceContent": base64.b64encode(xml.encode()).decode(), "MarketplaceId": "A2Q3Y263D00KWC",
            "ContentMD5Value": base64.b64encode(hashlib.md5(xml.encode()).digest()).decode()})),
        ("GET", f"{path}/invoice/status", httpx.get(f"{base}{path}/invoice/status", headers=auth)),
        ("GET", f"/listings/2021-08-01/items/{h.sandbox.seller_id}/SPEC-L", httpx.get(
            f"{base}/listings/2021-08-01/items/{h.sandbox.seller_id}/SPEC-L", headers=auth, params={
                "marketplaceIds": "A2Q3Y263D00KWC", "includedData": "summaries,attributes,fulfillmentAvailability"})),
        ("PUT", f"/listings/2021-08-01/items/{h.sandbox.seller_id}/SPEC-N", httpx.put(
            f"{base}/listings/2021-08-01/items/{h.sandbox.seller_id}/SPEC-N", headers=auth,
            params={"marketplaceIds": "A2Q3Y263D00KWC", "mode": "VALIDATION_PREVIEW"},
            json={"productType": "PRODUCT", "attributes": {}})),
        ("GET", "/orders/2026-01-01/orders/NOPE", httpx.get(f"{base}/orders/2026-01-01/orders/NOPE", headers=auth)),
    ]
    for method, where, answer in calls:
        assert answer.status_code in (200, 404), (where, answer.text)
        assert spec.response_problems(method, where, answer.status_code, answer.json()) == [], where
        assert answer.headers.get("x-amzn-RequestId"), where
    issues = calls[7][2].json()["issues"]
    assert {n for i in issues for n in i["attributeNames"]} >= {"ncm_code", "import_designation"}


def test_the_sandbox_refuses_what_the_models_refuse_naming_the_parameter(harness: Harness) -> None:
    h = harness
    base, auth = h.served.base_url, _token(h)
    wrong = httpx.get(f"{base}/orders/2026-01-01/orders", headers=auth,
                      params={"lastUpdatedAfter": "2026-01-01T00:00:00Z", "fulfilledBy": "AFN"})
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "InvalidInput"
    assert "fulfilledBy" in wrong.json()["errors"][0]["details"]
    (shipment,) = h.sandbox.seed("sales", 1)
    no_md5 = httpx.post(f"{base}/fba/outbound/brazil/v0/shipments/{shipment}/invoice", headers=auth,
                        json={"InvoiceContent": "PGE+PC9hPg=="})
    assert no_md5.status_code == 400 and "ContentMD5Value" in no_md5.json()["errors"][0]["details"]
    assert spec.response_problems("POST", f"/fba/outbound/brazil/v0/shipments/{shipment}/invoice", 400,
                                  no_md5.json()) == []


def test_every_notification_the_sandbox_sends_validates_against_its_schema(harness: Harness) -> None:
    h = harness
    shipments = h.sandbox.seed("sales", 2)
    h.sandbox.touch("sales", shipments[0])
    h.sandbox.cancel_shipment(shipments[1])
    kinds: dict[str, Any] = {}
    for notification in h.sandbox.sent_notifications:
        assert spec.notification_problems(notification) == []
        kinds[notification["NotificationType"]] = notification
    assert set(kinds) == {"FBA_OUTBOUND_SHIPMENT_STATUS", "ORDER_CHANGE"}
    statuses = [n["Payload"]["FBAOutboundShipmentStatusNotification"]["ShipmentStatus"]
                for n in h.sandbox.sent_notifications if n["NotificationType"] == "FBA_OUTBOUND_SHIPMENT_STATUS"]
    assert statuses == ["Created", "Created", "Cancelled"]
