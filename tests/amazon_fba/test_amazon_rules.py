"""The SP-API rules of the FBA Onsite connector, each through real HTTP to the sandbox and the real store: Login with
Amazon and the 365-day authorization, restricted data tokens, usage plans, Orders API v2026-01-01 with includedData,
the notification queue with the sweep as backstop, shipment invoicing (one note per shipment), listings."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub.auth import authorize
from hub.errors import AuthRevoked
from hub.models import Invoice, Price, Product, ProductFiscal, Ref
from hub.store.schema import Connection, Cursor, Record
from hub.testing import Harness
from hub_amazon_fba.auth import authorization_notice, secret_notice
from sqlalchemy import select, update

FAST = {"plan_scale": None, "page_size": 20, "fault_delay": 1.3}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Harness] = []

    def make(push: str = "invoices", options: dict[str, Any] | None = None, **settings: Any) -> Harness:
        home = tmp_path / f"h{len(started)}"
        home.mkdir()
        harness = Harness.start(home, "amazon_fba", "sales", push, sandbox_options={**FAST, **settings},
                                options=options)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.stop()


def calls(h: Harness, operation: str) -> list[dict[str, Any]]:
    return [r for r in h.sandbox.request_log if r.get("operation") == operation]


def invoice(h: Harness, shipment: str, number: int = 1, **xml_changes: str) -> Invoice:
    key, xml = h.sandbox.authorized_nfe(shipment, number=number)
    for old, new in xml_changes.items():
        xml = xml.replace(old, new)
    return Invoice(number=str(number), series="1", access_key=key, status="authorized", xml=xml,
                   sale=Ref(external_id=shipment))


def connection_id(h: Harness) -> int:
    with h.rt.store.sessions() as s:
        found = s.scalar(select(Connection.id).where(Connection.name == "platform"))
    assert found is not None
    return found


def stored_sales(h: Harness) -> dict[str, dict[str, Any]]:
    with h.rt.store.sessions() as s:
        return {r.natural_key: r.payload for r in s.scalars(select(Record).where(Record.entity == "sales"))}


def lwa(h: Harness) -> str:
    conn = h.sandbox.connection(h.served.base_url)["credentials"]
    answer = httpx.post(f"{h.served.base_url}/auth/o2/token", data={
        "grant_type": "refresh_token", "refresh_token": conn["refresh_token"], "client_id": conn["client_id"],
        "client_secret": conn["client_secret"]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


# --- Login with Amazon and the seller's authorization ----------------------------------------------------------------


def test_access_tokens_come_from_the_refresh_token_last_one_hour_and_go_in_x_amz_access_token(start: Any) -> None:
    h = start()
    h.sandbox.seed("sales", 2)
    assert h.pull().ok
    creds = h.credentials()
    assert creds["access_token"].startswith("Atza|") and creds["authorized_at"]
    with h.rt.store.sessions() as s:
        expires = s.get_one(Connection, connection_id(h)).token_expires_at
    assert expires is not None and timedelta(minutes=50) < expires - datetime.now(UTC).replace(tzinfo=None) \
        <= timedelta(hours=1)
    h.sandbox.expire_tokens()  # Amazon's clock says the hour is over; the hub's copy says it is not
    h.sandbox.seed("sales", 1)
    assert h.pull().ok and h.bound("sales") == 3, "a 403 'expired' renews the token once and the pull goes on"
    assert h.sandbox.token_calls == 2


def test_a_revoked_authorization_pauses_the_connection_with_the_reauthorization_fix(start: Any) -> None:
    h = start()
    h.sandbox.seed("sales", 1)
    h.sandbox.revoke()
    with pytest.raises(AuthRevoked) as revoked:
        h.authenticate()
    assert "invalid_grant" in revoked.value.message
    assert "Manage Your Apps" in (revoked.value.fix or "") and "hub auth amazon_fba" in (revoked.value.fix or "")
    report = h.pull()
    assert not report.ok and h.bound("sales") == 0
    with h.rt.store.sessions() as s:
        conn = s.get_one(Connection, connection_id(h))
        assert conn.pause_kind == "auth" and "Manage Your Apps" in (conn.pause_reason or "") + str(report)
    # The seller authorizes the app again: `hub auth amazon_fba TENANT --refresh-token ...` stores it.
    authorize(h.rt, connection_id(h), {"refresh_token": h.sandbox.reauthorize(),
                                       "authorized_at": datetime.now(UTC).isoformat(timespec="seconds")})
    assert h.pull().ok and h.bound("sales") == 1


def test_the_authorization_expiry_is_warned_30_7_and_1_days_before_and_after_it_lapses() -> None:
    now = datetime(2026, 12, 1, 12, 0)

    def notice(days_ago: float) -> str | None:
        return authorization_notice({"authorized_at": (now - timedelta(days=days_ago)).isoformat()}, now)

    assert notice(300) is None, "65 days left: nothing yet"
    assert "within 30" in (notice(340) or "") and "2027" not in (notice(340) or "")
    assert "within 7" in (notice(360) or "")
    assert "within 1" in (notice(364.5) or "")
    assert "expired" in (notice(366) or "")
    assert authorization_notice({}, now) is None, "no date recorded: nothing to say"


def test_the_client_secret_rotation_is_warned_before_its_180_days(start: Any) -> None:
    h = start()
    h.authenticate()
    creds = h.credentials()
    since = datetime.fromisoformat(creds["client_secret_since"]).replace(tzinfo=None)
    assert secret_notice(creds, since + timedelta(days=100)) is None
    assert "must be rotated by" in (secret_notice(creds, since + timedelta(days=175)) or "")
    assert "passed its 180 days" in (secret_notice(creds, since + timedelta(days=181)) or "")
    h.sandbox.rotate_client_secret()  # rotated in Developer Central, the new secret set in the route file
    with h.rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id(h))
        conn.credentials = h.rt.vault.encrypt({**creds, "client_secret": h.sandbox.client_secret})
    from hub.sync.loading import ensure_auth

    ensure_auth(h.rt, connection_id(h), force=True)
    assert h.credentials()["client_secret_since"] >= creds["client_secret_since"]
    assert h.credentials()["client_secret_fingerprint"] != creds["client_secret_fingerprint"]


def test_a_rotated_client_secret_pauses_with_the_rotation_fix(start: Any) -> None:
    h = start()
    h.sandbox.rotate_client_secret()
    with pytest.raises(AuthRevoked) as refused:
        h.authenticate()
    assert "invalid_client" in refused.value.message and "180 days" in (refused.value.fix or "")


# --- restricted data tokens and usage plans --------------------------------------------------------------------------


def test_get_shipment_details_requires_a_restricted_data_token(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    base, token = h.served.base_url, lwa(h)
    path = f"/fba/outbound/brazil/v0/shipments/{shipment}"
    plain = httpx.get(f"{base}{path}", headers={"x-amz-access-token": token})
    assert plain.status_code == 403 and "Restricted Data Token" in plain.json()["errors"][0]["details"]
    rdt = httpx.post(f"{base}/tokens/2021-03-01/restrictedDataToken", headers={"x-amz-access-token": token},
                     json={"restrictedResources": [{"method": "GET", "path": path}]}).json()["restrictedDataToken"]
    detail = httpx.get(f"{base}{path}", headers={"x-amz-access-token": rdt})
    assert detail.status_code == 200 and detail.json()["payload"]["AmazonShipmentId"] == shipment
    other = httpx.get(f"{base}/fba/outbound/brazil/v0/shipments/OTHER1", headers={"x-amz-access-token": rdt})
    assert other.status_code == 403, "an RDT covers only the resources it was minted for"


def test_usage_plans_answer_429_quota_exceeded_with_the_request_id_and_no_rate_header(start: Any) -> None:
    h = start(plan_scale=1.0)
    base, token = h.served.base_url, lwa(h)
    query = {"marketplaceIds": "A2Q3Y263D00KWC", "lastUpdatedAfter": "2026-11-01T00:00:00Z"}
    answers = [httpx.get(f"{base}/orders/2026-01-01/orders", params=query, headers={"x-amz-access-token": token})
               for _ in range(21)]
    assert [a.status_code for a in answers[:20]] == [200] * 20, "searchOrders' burst is 20"
    assert answers[0].headers["x-amzn-RateLimit-Limit"] == "0.0056" and answers[0].headers["x-amzn-RequestId"]
    throttled = answers[20]
    assert throttled.status_code == 429 and throttled.json()["errors"][0]["code"] == "QuotaExceeded"
    assert "x-amzn-RateLimit-Limit" not in throttled.headers and throttled.headers["x-amzn-RequestId"]
    status = httpx.get(f"{base}/fba/outbound/brazil/v0/shipments/X/invoice/status",
                       headers={"x-amz-access-token": token})
    assert status.status_code == 404, "another operation has its own bucket"


def test_each_operation_is_paced_on_its_own_bucket_so_amazon_never_answers_429(start: Any) -> None:
    h = start(push="products", plan_scale=1.0)
    products = [Product(sku=f"PACE-{i}", name=f"Produto {i}", price="10.00",
                        fiscal=ProductFiscal(ncm="61091000", origin=0)) for i in range(8)]
    states = [h.run(op) for op in h.stage(*products)]
    assert states == ["done"] * 8
    assert len(calls(h, "putListingsItem")) == 16, "a preview and a write per offer"
    assert h.sandbox.throttled == 0, "putListingsItem's 5/s with burst 10 is respected by the client"


def test_a_429_on_an_invoice_is_waited_out_with_the_plans_period_and_no_attempt(start: Any) -> None:
    h = start(plan_scale=1.0)
    (shipment,) = h.sandbox.seed("sales", 1)
    (op,) = h.stage(invoice(h, shipment))
    h.authenticate()
    h.sandbox.inject_fault("429", 1)
    assert h.run(op) == "pending"
    row = h.operation(op)
    assert row.attempts == 0 and row.waits == 1 and "QuotaExceeded" in (row.last_error or "")
    assert "x-amzn-RequestId" in (row.last_error or ""), "the request id is kept for Amazon's support"
    h.make_due(op)
    assert h.run(op) == "done"


# --- orders and notifications ----------------------------------------------------------------------------------------


def test_search_orders_brings_items_tax_and_payments_in_one_call_per_page_never_one_per_order(start: Any) -> None:
    h = start()
    h.sandbox.lose_notifications(46)
    h.sandbox.seed("sales", 45)
    h.sandbox.create_order(fulfilled_by="MERCHANT")  # a merchant-fulfilled order: not FBA Onsite
    report = h.pull()
    assert report.ok and h.bound("sales") == 45
    searches = calls(h, "searchOrders")
    assert len(searches) == 3 and calls(h, "getOrder") == []
    first = dict(searches[0]["query"])
    assert first["fulfilledBy"] == "AMAZON"
    assert {"BUYER", "RECIPIENT", "TAX", "PAYMENT", "FULFILLMENT_ORDERS"} <= set(first["includedData"].split(","))
    assert all("paginationToken" in dict(s["query"]) for s in searches[1:]), "nextToken paging"
    sale = next(iter(stored_sales(h).values()))
    assert sale["customer"]["document"] and sale["customer"]["addresses"][0]["zip"]
    assert sale["payments"][0]["method"] == "CreditCard" and sale["payments"][0]["tpag"] == "03"
    assert "15436940000103" in sale["notes"] and "authorizationCode" in sale["notes"]


def test_a_lost_notification_is_recovered_by_the_sweep(start: Any) -> None:
    h = start(options={"sweep_minutes": 15})
    h.sandbox.seed("sales", 2)
    assert h.pull().ok and h.bound("sales") == 2
    h.sandbox.lose_notifications(1)
    _, lost = h.sandbox.create_order()
    _, heard = h.sandbox.create_order()
    assert h.pull().ok
    assert h.bound("sales") == 3 and calls(h, "searchOrders").__len__() == 1, \
        "the notified order comes at once; the sweep is not due yet"
    with h.rt.store.begin() as s:  # fifteen minutes later
        cursor = s.scalar(select(Cursor).where(Cursor.stream == "sales"))
        assert cursor is not None
        position = json.loads(cursor.position)
        position["swept"] = (datetime.now(UTC) - timedelta(minutes=16)).strftime("%Y-%m-%dT%H:%M:%SZ")
        s.execute(update(Cursor).where(Cursor.id == cursor.id).values(position=json.dumps(position)))
    assert h.pull().ok and h.bound("sales") == 4, "the sweep finds the order whose notification was lost"
    assert lost != heard and h.sandbox.lost == 1


def test_with_long_polling_an_order_notified_while_the_queue_is_read_comes_in_that_same_read(start: Any) -> None:
    import threading
    import time

    h = start(options={"queue_wait_seconds": 5})
    h.sandbox.seed("sales", 1)
    assert h.pull().ok and h.bound("sales") == 1
    later = threading.Timer(1.0, h.sandbox.create_order)
    started = time.monotonic()
    later.start()
    assert h.pull().ok  # the receive waits for the queue instead of answering empty
    took = time.monotonic() - started
    later.join()
    assert h.bound("sales") == 2, "the order notified during the receive came in the same run"
    assert took < 4.0, f"the receive answered when the notification arrived, not at its 5 s limit ({took:.1f} s)"


def test_notifications_are_deduplicated_on_notification_id(start: Any) -> None:
    h = start()
    h.sandbox.seed("sales", 1)
    assert h.pull().ok
    before = len(calls(h, "getOrder"))
    h.sandbox.create_order()
    with h.sandbox.lock:  # SQS delivers at least once: the same notification twice
        copy = dict(h.sandbox.queue[-1], id=str(uuid.uuid4()), receipt=None)
        h.sandbox.queue.append(copy)
    assert h.pull().ok and h.bound("sales") == 2
    assert len(calls(h, "getOrder")) - before == 1, "one read for the order, whatever the copies"
    assert h.sandbox.queue == [], "both copies are deleted"


def test_a_cancelled_shipment_is_read_as_cancelled_and_never_gets_a_note(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    assert h.pull().ok
    h.sandbox.cancel_shipment(shipment)
    assert h.pull().ok
    (sale,) = stored_sales(h).values()
    assert sale["status"] == "Cancelled"
    (op,) = h.stage(invoice(h, shipment))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "sale.status" and "cancelled" in q.reason and "Cancel NF-e" in (q.fix or "")
    assert h.sandbox.records("invoices") == [], "nothing goes to Amazon"


# --- shipment invoicing ----------------------------------------------------------------------------------------------


def test_the_note_goes_as_base64_with_its_md5_after_a_status_check(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    note = invoice(h, shipment)
    (op,) = h.stage(note)
    assert h.run(op) == "done", h.operation(op).last_error
    order = [r["operation"] for r in h.sandbox.request_log if r.get("operation") not in (None, "unknown")]
    assert order.index("getInvoiceStatus") < order.index("getShipmentDetails") < order.index("submitInvoice")
    (sent,) = calls(h, "submitInvoice")
    xml = base64.b64decode(sent["body"]["InvoiceContent"])
    assert xml == (note.xml or "").encode()
    assert sent["body"]["ContentMD5Value"] == base64.b64encode(hashlib.md5(xml).digest()).decode()
    assert h.sandbox.invoice_status(shipment) == "Accepted"


def test_an_invoice_waits_while_amazon_processes_it_and_is_never_submitted_twice(start: Any) -> None:
    h = start(invoice_delay_seconds=3600)
    (shipment,) = h.sandbox.seed("sales", 1)
    (op,) = h.stage(invoice(h, shipment))
    assert h.run(op) == "pending"
    row = h.operation(op)
    assert row.attempts == 0 and "Processing" in (row.last_error or "")
    h.make_due(op)
    assert h.run(op) == "pending"
    assert len(h.sandbox.records("invoices")) == 1, "a Processing note is read again, never sent again"
    h.sandbox.update_settings(invoice_delay_seconds=0)
    h.make_due(op)
    assert h.run(op) == "done" and len(h.sandbox.records("invoices")) == 1
    assert h.sandbox.invoice_status(shipment) == "Accepted"


def test_a_second_note_for_a_shipment_is_refused_and_never_reaches_amazon(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    (op,) = h.stage(invoice(h, shipment, 1), external_prefix="nfe")
    assert h.run(op) == "done"
    (second,) = h.stage(invoice(h, shipment, 2), external_prefix="nfe")  # the ERP issued another note for it
    assert h.run(second) == "failed"
    (q,) = h.quarantined()
    assert q.field == "access_key" and "second note" in q.reason and "Cancel NF-e" in (q.fix or "")
    assert len(h.sandbox.records("invoices")) == 1 and h.sandbox.invoice_status(shipment) == "Accepted"


def test_an_errored_note_is_quarantined_with_likely_causes_and_a_corrected_one_is_accepted(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    order = h.sandbox.orders[h.sandbox.shipments[shipment]["order_id"]]
    buyer = order["tax"]["taxRegistrations"][0]["taxRegistrationNumber"]
    wrong = invoice(h, shipment, 1, **{f"<CPF>{buyer}</CPF>": "<CPF>52998224725</CPF>"})
    (op,) = h.stage(wrong, external_prefix="nfe")
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert "Errored" in q.reason and "Likely" in q.reason and "corrected" in (q.fix or "")
    (fixed,) = h.stage(invoice(h, shipment, 2), external_prefix="nfe")
    assert h.run(fixed) == "done", h.operation(fixed).last_error
    assert [i["status"] for i in h.sandbox.records("invoices")] == ["Errored", "Accepted"]


def test_a_note_whose_items_are_not_the_shipments_is_refused_before_submission(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    sku = h.sandbox.orders[h.sandbox.shipments[shipment]["order_id"]]["orderItems"][0]["product"]["sellerSku"]
    (op,) = h.stage(invoice(h, shipment, 1, **{f"<cProd>{sku}</cProd>": "<cProd>OUTRO</cProd>"}))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "items" and sku in q.reason
    assert h.sandbox.records("invoices") == []


# --- listings --------------------------------------------------------------------------------------------------------


def test_offers_are_previewed_first_and_refused_with_their_attribute_names(start: Any) -> None:
    h = start(push="products")
    (bad,) = h.stage(Product(sku="SEM-FISCAL", name="Sem NCM", price="10.00"))
    assert h.run(bad) == "failed"
    (q,) = h.quarantined()
    assert q.field == "ncm_code" and "import_designation" in q.reason and "NCM" in (q.fix or "")
    assert [dict(r["query"]).get("mode") for r in calls(h, "putListingsItem")] == ["VALIDATION_PREVIEW"]
    assert h.sandbox.records("products") == [], "nothing written after a refused preview"
    (good,) = h.stage(Product(sku="COM-FISCAL", name="Com NCM", price="10.00",
                              fiscal=ProductFiscal(ncm="61091000", origin=2)), external_prefix="ok")
    assert h.run(good) == "done"
    assert [dict(r["query"]).get("mode") for r in calls(h, "putListingsItem")][1:] == ["VALIDATION_PREVIEW", None]
    (listing,) = h.sandbox.records("products")
    assert listing["attributes"]["import_designation"][0]["value"] == "2"


def test_stock_is_never_sent_to_fba_onsite_offers(start: Any, tmp_path: Path) -> None:
    from hub.config import apply as applying
    from hub.config import routes as config
    from hub.registry import get_registry

    h = start(push="products")
    (op,) = h.stage(Product(sku="FBA-1", name="Oferta", price="10.00", fiscal=ProductFiscal(ncm="61091000", origin=0)))
    assert h.run(op) == "done"
    for put in calls(h, "putListingsItem"):
        assert all("quantity" not in f for f in put["body"]["attributes"]["fulfillment_availability"])
    assert h.sandbox.records("products")[0]["channels"] == {"AMAZON_NA": None}, "no merchant offer beside it"
    routes = tmp_path / "stock.yaml"
    routes.write_text("version: 1\ntenants:\n  t:\n    name: T\n    connections:\n      erp: {platform: bling}\n"
                      "      amazon: {platform: amazon_fba}\n    routes:\n      stock:\n        source: erp\n"
                      "        sink: amazon\n        streams: [stock]\n")
    errors, _ = applying.check(config.load(routes), get_registry(), str(routes))
    assert any("stock" in e for e in errors), errors


def test_a_hybrid_offer_is_detected_and_reported_with_the_fix(start: Any) -> None:
    h = start(push="prices")
    h.sandbox.create_listing("HIB-1")
    h.sandbox.make_hybrid("HIB-1")
    (op,) = h.stage(Price(sku="HIB-1", price=Decimal("12.00")))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "fulfillment_availability" and "hybrid" in q.reason
    assert "Manage All Inventory" in (q.fix or "") and "never sends stock" in (q.fix or "")
    assert calls(h, "patchListingsItem") == []


def test_hub_status_warns_7_days_before_the_sellers_authorization_lapses(start: Any) -> None:
    from hub.status import tenant_status

    h = start()
    granted = datetime.now(UTC) - timedelta(days=360)
    authorize(h.rt, connection_id(h), {"authorized_at": granted.isoformat(timespec="seconds")})
    (conn,) = [c for c in tenant_status(h.rt, "conformance")["connections"] if c["platform"] == "amazon_fba"]
    (notice,) = conn["notices"]
    assert "within 7" in notice and "Manage Your Apps" in notice
    assert f"{granted + timedelta(days=365):%Y-%m-%d}" in notice


def test_each_variation_of_a_grid_is_an_offer_of_its_own(start: Any) -> None:
    from hub.models import Variation

    h = start(push="products")
    grid = Product(sku="CAM", name="Camiseta", price="50.00", fiscal=ProductFiscal(ncm="61091000", origin=0),
                   variations=[Variation(sku="CAM-P", attributes={"Tamanho": "P"}),
                               Variation(sku="CAM-G", attributes={"Tamanho": "G"}, price=Decimal("55.00")),
                               Variation(sku="CAM-X", active=False)])
    (op,) = h.stage(grid)
    assert h.run(op) == "done"
    offers = {row["sku"]: row for row in h.sandbox.records("products")}
    assert set(offers) == {"CAM-P", "CAM-G"}
    assert offers["CAM-G"]["attributes"]["purchasable_offer"][0]["our_price"][0]["schedule"][0]["value_with_tax"] \
        == 55.0
    assert offers["CAM-P"]["attributes"]["item_name"][0]["value"] == "Camiseta (Tamanho: P)"
