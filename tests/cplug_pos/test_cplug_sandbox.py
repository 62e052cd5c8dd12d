"""The CPlug sandbox speaks CPlug API v3 as the connector (and anyone poking it with curl) sees it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from hub.models import TPAG_CODES, Invoice
from hub.sandbox import Sandbox, serve
from hub_cplug.sandbox import CPlugSandbox


@pytest.fixture
def api() -> Iterator[tuple[CPlugSandbox, httpx.Client]]:
    """A sandbox and a client already holding a token and the company header."""
    box = CPlugSandbox()
    served = serve(box.app)
    client = httpx.Client(base_url=served.base_url, timeout=5)
    info = box.connection(served.base_url)
    token = client.post("/oauth/token", json={"grant_type": "password", "scope": "*", **{
        k: info["credentials"][k] for k in ("client_id", "client_secret", "username", "password")}}).json()
    client.headers.update({"Authorization": f"Bearer {token['access_token']}",
                           "CPlug-Company-Id": str(info["options"]["company_id"])})
    yield box, client
    client.close()
    served.stop()


def test_the_token_endpoint_is_a_json_password_grant_with_single_use_refresh_tokens(api):
    box, client = api
    creds = box.connection("")["credentials"]
    form = client.post("/oauth/token", data={"grant_type": "password", **creds})
    assert form.status_code == 400 and form.json()["error"] == "invalid_request"
    wrong = client.post("/oauth/token", json={"grant_type": "password", **creds, "password": "x"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    ok = client.post("/oauth/token", json={"grant_type": "password", "scope": "*", **creds}).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3600 and ok["refresh_token"]
    body = {"grant_type": "refresh_token", "refresh_token": ok["refresh_token"], "client_id": creds["client_id"],
            "client_secret": creds["client_secret"]}
    assert client.post("/oauth/token", json=body).status_code == 200
    assert client.post("/oauth/token", json=body).json()["error"] == "invalid_grant"
    assert box.token_calls == 6 and isinstance(box, Sandbox)


def test_headers_are_required_and_an_idempotency_key_replays_the_first_answer(api):
    box, client = api
    no_company = client.get("/api/v3/sellers", headers={"CPlug-Company-Id": ""})
    del client.headers["CPlug-Company-Id"]
    missing = client.get("/api/v3/sellers")
    assert missing.status_code == 400
    assert missing.json() == {"code": "missing_headers", "message": "The CPlug-Company-Id header is required.",
                              "meta": []}
    assert no_company.status_code == 403
    client.headers["CPlug-Company-Id"] = str(box.company_id)
    assert client.post("/api/v3/sellers", json={"name": "Ana"}).json()["code"] == "missing_headers"
    assert client.post("/api/v3/sellers", json={"name": "Ana"},
                       headers={"Idempotency-Key": "not-a-uuid"}).json()["code"] == "invalid_headers"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/api/v3/sellers", json={"name": "Ana", "document": "52998224725"}, headers=key)
    second = client.post("/api/v3/sellers", json={"name": "Ana", "document": "52998224725"}, headers=key)
    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert len(box.records("sellers")) == 1 and box.request_log[-1]["replayed"] is True


def test_lists_page_filter_and_read_incrementally_in_cplugs_envelope(api):
    box, client = api
    box.seed("products", 12)
    page = client.get("/api/v3/products", params={"page": 2, "per_page": 5}).json()
    assert page["meta"] == {"current_page": 2, "last_page": 3, "per_page": 5, "total": 12}
    assert len(page["data"]["products"]) == 5
    sku = page["data"]["products"][0]["sku"]
    assert [p["sku"] for p in client.get("/api/v3/products", params={"sku": sku}).json()["data"]["products"]] == [sku]
    too_big = client.get("/api/v3/products", params={"per_page": 101})
    assert too_big.status_code == 422 and too_big.json()["meta"][0]["field"] == "per_page"
    bad_date = client.get("/api/v3/products", params={"updated_from": "2026-01-01 10:00"})
    assert bad_date.json()["meta"][0]["field"] == "updated_from"
    latest = max(p["updated_at"] for p in box.records("products"))
    box.touch("products", str(page["data"]["products"][0]["id"]))
    fresh = client.get("/api/v3/products", params={"updated_from": latest}).json()["data"]["products"]
    assert sku in {p["sku"] for p in fresh}


def test_a_product_write_is_validated_like_cplug_and_fiscal_is_merged(api):
    box, client = api
    refused = client.post("/api/v3/products", json={"sku": "X"}, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert refused.status_code == 422 and refused.json()["code"] == "unprocessable_entity"
    fields = {m["field"] for m in refused.json()["meta"]}
    assert {"name", "unitary_value", "category_id", "unit_id"} <= fields
    (product_id,) = box.seed("products", 1)
    client.put(f"/api/v3/products/{product_id}", json={"fiscal": {"ncm": "62034200"}},
               headers={"Idempotency-Key": str(uuid.uuid4())}).raise_for_status()
    (product,) = box.records("products")
    assert product["fiscal"]["ncm"] == "62034200" and product["fiscal"]["cfop"] == "5102"


def test_seeded_sales_look_like_a_pos_day(api):
    box, _ = api
    box.seed("sales", 12)
    sales = box.records("sales")
    assert {s["store_id"] for s in sales} == {s["id"] for s in box.records("stores")}
    assert {st["name"] for st in box.records("stores")} == {"Loja Centro", "Loja Shopping"}
    assert any(s["customer_id"] is None for s in sales) and any(s["customer_id"] for s in sales)
    assert {s["source_type"] for s in sales} == {"pdv", "erp"}
    methods = {m["id"]: m for m in box.records("payment_methods")}
    assert {"Dinheiro", "PIX", "Crédito em Loja", "Pontos de Fidelidade", "Vale Presente", "Cheque"} <= {
        m["name"] for m in methods.values()}
    assert all(m["fiscal_code"] in TPAG_CODES for m in methods.values())
    for sale in sales:
        total = sum(Decimal(str(i["amount"])) * Decimal(str(i["unitary_value"]["amount"]))
                    - Decimal(str(i["discount"]["amount"])) for i in sale["items"])
        assert sum(Decimal(str(p["value"]["amount"])) for p in sale["payments"]) == total
        assert all(p["payment_method_id"] in methods for p in sale["payments"])


def test_an_exchange_issues_a_valid_return_note_and_pays_with_store_credit(api):
    box, client = api
    walk_in = box.sale(items=[{"sku": "A", "amount": 1}])
    with pytest.raises(ValueError, match="CPF and a complete address"):
        box.exchange(walk_in, [{"sku": "A"}], [{"sku": "B"}])
    customer = box.create("customers", {"name": "João", "type": "individual",
                                        "documents": [{"type": "cpf", "identify": "11144477735"}],
                                        "addresses": [{"type": "default", "street": "Rua A", "number": "1",
                                                       "neighborhood": "Centro", "city": "Campinas", "state": "SP",
                                                       "zip_code": "13010000"}]})
    original = box.sale(items=[{"sku": "A", "amount": 2, "unitary_value": "30.00"}], customer_id=customer)
    new_id = box.exchange(original, [{"sku": "A", "amount": 1}], [{"sku": "B", "amount": 1, "unitary_value": "45"}])
    sale = client.get(f"/api/v3/sales/{new_id}").json()["data"]["sale"]
    assert sale["exchange_of_sale_id"] == int(original) and sale["customer_id"] == int(customer)
    Invoice(kind="return", access_key=sale["return_invoice"]["access_key"])  # a valid 44-digit key
    credit = next(m["id"] for m in box.records("payment_methods") if m["fiscal_code"] == "05")
    assert (sale["payments"][0]["payment_method_id"], sale["payments"][0]["value"]["amount"]) == (credit, 30.0)
    assert sum(p["value"]["amount"] for p in sale["payments"]) == 45.0
    cancel = client.put(f"/api/v3/sales/{original}/cancel", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert cancel.json()["data"]["sale"]["status"] == "canceled"


def test_faults_and_the_rate_limit_answer_like_cplug(api):
    box, client = api
    box.seed("sellers", 3)
    box.inject_fault("500")
    assert client.get("/api/v3/sellers").status_code == 500
    box.inject_fault("401")
    assert client.get("/api/v3/sellers").status_code == 401
    creds = box.connection("")["credentials"]
    token = client.post("/oauth/token", json={"grant_type": "password", **creds}).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    first = client.get("/api/v3/sellers", params={"per_page": 1}).json()
    box.inject_fault("repeat_page")
    assert client.get("/api/v3/sellers", params={"per_page": 1, "page": 2}).json() == first
    answers = [client.get("/api/v3/sellers") for _ in range(8)]
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.headers["Retry-After"] == "1" and limited.json()["code"] == "too_many_requests"
    assert box.throttled >= 1
