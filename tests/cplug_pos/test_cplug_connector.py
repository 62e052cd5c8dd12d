"""The CPlug connector against its sandbox over real HTTP: what a shop owner and an operator would notice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hub.config import apply as applying
from hub.config import routes as config
from hub.errors import AuthRevoked, Fatal, InvalidRecord, Retriable
from hub.models import Category, Customer, Product, ProductFiscal, Sale, Variation
from hub.platform import Incoming, Rejected
from hub.sandbox import serve
from hub.sync.context import ConnectorContext
from hub.sync.drain import drain
from hub.sync.pull import sync_route
from hub_cplug import plugin
from hub_cplug.sandbox import CPlugSandbox
from hub_cplug.sandbox.server import BRT
from hub_example.sandbox import LojinhaSandbox


@pytest.fixture
def cplug() -> Iterator[tuple[CPlugSandbox, str]]:
    box = CPlugSandbox()
    served = serve(box.app)
    yield box, served.base_url
    served.stop()


def connect(box: CPlugSandbox, url: str, budget: Any = None, **options: Any) -> ConnectorContext:
    """A context as the core builds it, already authenticated."""
    info = box.connection(url)
    extra = {"budget": budget} if budget is not None else {}
    ctx = ConnectorContext(tenant="loja-demo", connection="pdv", platform="cplug",
                           options={**info["options"], **options}, credentials=dict(info["credentials"]), **extra)
    ctx.credentials.update(plugin.authenticate(ctx).values)
    return ctx


def pull(ctx: ConnectorContext, stream: str, since: str | None = None) -> tuple[list[Incoming], list[Rejected], str]:
    pages = list(plugin.pull_sales(ctx, since) if stream == "sales" else plugin.pull_catalog(ctx, stream, since))
    records = [r for p in pages for r in p.records]
    return ([r for r in records if isinstance(r, Incoming)], [r for r in records if isinstance(r, Rejected)],
            pages[-1].cursor or "")


def stamp(minutes_ago: int) -> str:
    return (datetime.now(BRT) - timedelta(minutes=minutes_ago)).replace(microsecond=0).isoformat()


# --- sales: CPlug -> ERP -------------------------------------------------------------------------------------


def test_pos_sales_reach_the_erp_with_their_customer_payments_cancellation_and_exchange(rt, tmp_path: Path,
                                                                                        cplug, monkeypatch):
    box, url = cplug
    erp = LojinhaSandbox()
    erp_served = serve(erp.app)
    try:
        ids = box.seed("sales", 6)
        methods = {str(m["id"]): ("pix" if m["fiscal_code"] == "17" else "credito" if m["fiscal_code"] == "03"
                                  else "dinheiro") for m in box.records("payment_methods")}
        for key, value in {"CPLUG_CLIENT_ID": box.client_id, "CPLUG_CLIENT_SECRET": box.client_secret,
                           "CPLUG_USER": box.username, "CPLUG_PASSWORD": box.password,
                           "LOJINHA_ERP_ID": erp.client_id, "LOJINHA_ERP_SECRET": erp.client_secret}.items():
            monkeypatch.setenv(key, value)
        routes = {"version": 1, "tenants": {"loja": {"name": "Loja Demo", "connections": {
            "pdv": {"platform": "cplug", "options": {"base_url": url, "company_id": box.company_id},
                    "credentials": {"client_id": {"env": "CPLUG_CLIENT_ID"},
                                    "client_secret": {"env": "CPLUG_CLIENT_SECRET"},
                                    "username": {"env": "CPLUG_USER"}, "password": {"env": "CPLUG_PASSWORD"}}},
            "erp": {"platform": "lojinha", "options": {"base_url": erp_served.base_url},
                    "credentials": {"client_id": {"env": "LOJINHA_ERP_ID"},
                                    "client_secret": {"env": "LOJINHA_ERP_SECRET"}}}},
            "routes": {"vendas": {"source": "pdv", "sink": "erp", "streams": ["sales"], "mappings": {
                "payment_methods": methods, "statuses": {"closed": "atendido", "canceled": "cancelado"}}}}}}}
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(routes))
        parsed = config.load(path)
        errors, _ = applying.check(parsed, rt.registry, str(path))
        assert not errors, errors
        applying.apply(parsed, rt.store, rt.vault)

        assert sync_route(rt, "loja", "vendas").ok
        assert drain(rt) == {"done": 6}
        pos = {s["number"]: s for s in box.records("sales")}
        orders = {o["numero"]: o for o in erp.records("sales")}
        assert set(orders) == set(pos)
        for number, sale in pos.items():
            order = orders[number]
            assert order["situacao"] == "atendido"
            assert {p["forma"] for p in order["pagamentos"]} <= {"pix", "credito", "dinheiro"}
            if sale["customer_id"] is None:
                assert order["cliente"] is None  # the final consumer
            else:
                customer = next(c for c in box.records("customers") if c["id"] == sale["customer_id"])
                cpf = next(d["identify"] for d in customer["documents"] if d["type"] == "cpf")
                assert order["cliente"]["documento"] == cpf and order["cliente"]["endereco"]["cep"]

        with_customer = next(s for s in box.records("sales") if s["customer_id"] is not None)
        first_item = with_customer["items"][0]
        new_id = box.exchange(with_customer["id"], [{"sku": first_item["sku"], "amount": 1}],
                              [{"sku": "PDV-0099", "amount": 1, "unitary_value": "35.00"}])
        box.cancel_sale(ids[0])
        assert sync_route(rt, "loja", "vendas").ok
        assert drain(rt) == {"done": 8}
        orders = {o["numero"]: o for o in erp.records("sales")}
        canceled = next(s for s in box.records("sales") if s["id"] == int(ids[0]))
        assert orders[canceled["number"]]["situacao"] == "cancelado"
        exchange = next(s for s in box.records("sales") if s["id"] == int(new_id))
        assert orders[exchange["number"]]["substitui"] == with_customer["number"]
        assert len(orders) == 7
    finally:
        erp_served.stop()


def test_sales_keep_exact_amounts_cplug_statuses_and_the_exchange_trail(cplug):
    box, url = cplug
    box.seed("payment_methods", 9)
    box.seed("products", 2)
    products = box.records("products")
    customer_id = box.create("customers", {
        "name": "Maria da Silva", "type": "individual",
        "documents": [{"type": "cpf", "identify": "52998224725"}, {"type": "rg", "identify": "123456789"}],
        "contacts": [{"type": "phone", "value": "1133334444"}, {"type": "email", "value": "maria@example.com"}],
        "addresses": [{"type": "default", "street": "Rua Augusta", "number": "1500", "complement": None,
                       "neighborhood": "Consolação", "city": "São Paulo", "state": "sp", "zip_code": "01304-001"}]})
    credit = next(m["id"] for m in box.records("payment_methods") if m["name"] == "Cartão de Crédito")
    sold = box.sale(items=[{"sku": products[0]["sku"], "amount": 3, "unitary_value": "19.99", "discount": "0.97"}],
                    payments=[{"payment_method_id": credit, "value": "59.00", "installments": 3}],
                    customer_id=customer_id)
    walk_in = box.sale(items=[{"sku": products[1]["sku"]}])
    box.cancel_sale(walk_in)
    exchanged = box.exchange(sold, [{"sku": products[0]["sku"], "amount": 1}],
                             [{"sku": products[1]["sku"], "amount": 1}])

    incoming, rejected, _ = pull(connect(box, url), "sales")
    assert not rejected
    sales: dict[str, Sale] = {r.external_id: r.data for r in incoming}  # type: ignore[misc]
    sale = sales[sold]
    assert sale.status == "closed" and sale.channel == "cplug" and sale.issued_at.tzinfo is not None
    assert sale.items[0].quantity == 3 and sale.items[0].unit_price == Decimal("19.99")
    assert sale.items[0].discount == Decimal("0.97") and sale.total == Decimal("59.00")
    assert sale.payments[0].method == str(credit) and sale.payments[0].installments == 3
    assert isinstance(sale.customer, Customer) and sale.customer.person_type == "F"
    assert sale.customer.document == "52998224725" and sale.customer.rg == "123456789"
    assert sale.customer.email == "maria@example.com" and sale.customer.phone == "1133334444"
    address = sale.customer.addresses[0]
    assert address.missing_for_invoice() == [] and (address.state, address.zip) == ("SP", "01304001")
    assert sales[walk_in].status == "canceled" and sales[walk_in].customer is None
    trade = sales[exchanged]
    key = next(s for s in box.records("sales") if s["id"] == int(exchanged))["return_invoice"]["access_key"]
    assert trade.replaces == sale.number and key in (trade.notes or "")
    assert trade.customer == sale.customer


def test_a_wrong_cpf_or_unbalanced_sale_is_refused_naming_field_and_fix(cplug):
    box, url = cplug
    box.seed("customers", 4)
    bad = box.seed_invalid("customers")
    box.create("customers", {"name": "Consumidor sem documento", "type": "individual", "documents": []})
    ctx = connect(box, url)
    incoming, rejected, _ = pull(ctx, "customers")
    (refused,) = rejected
    assert refused.external_id == bad and refused.field == "document"
    assert "documents (CPF/CNPJ)" in refused.fix and "in CPlug" in refused.fix and "check digit" in refused.reason
    customers = {r.data.name: r.data for r in incoming}  # type: ignore[union-attr]
    assert customers["Consumidor sem documento"].document is None  # type: ignore[union-attr]
    company = next(c for c in customers.values() if c.person_type == "J")  # type: ignore[union-attr]
    assert company.state_registration and company.name.endswith("Ltda")  # type: ignore[union-attr]

    unbalanced = box.seed_invalid("sales")
    _, rejected, _ = pull(ctx, "sales")
    (refused,) = rejected
    assert refused.external_id == unbalanced and refused.field == "payments" and "do not cover" in refused.fix


# --- incremental reads ----------------------------------------------------------------------------------------


def test_an_interrupted_pull_resumes_without_skipping_a_record(cplug):
    """CPlug lists by id, not by updated_at: a page may hold newer records than the pages after it."""
    box, url = cplug
    stamps = [stamp(60 - 10 * i) for i in range(6)]
    ids = [box.create("sellers", {"name": f"Vendedor {i}", "document": None, "status": "available",
                                  "updated_at": stamps[i]}) for i in range(6)]
    ctx = connect(box, url, page_size=2)
    first, _, cursor = pull(ctx, "sellers")
    assert len(first) == 6 and cursor == stamps[5]

    for i in (0, 1):
        box.touch("sellers", ids[i])  # now
    edited = {**next(s for s in box.records("sellers") if s["id"] == int(ids[4])), "name": "Vendedora Quatro",
              "updated_at": stamp(5)}
    box.create("sellers", edited)  # an edit at T-5min, listed after a page of newer records

    pages = iter(plugin.pull_catalog(connect(box, url, page_size=2), "sellers", cursor))
    stopped = next(pages)  # the sync dies after its first page: the core stores stopped.cursor
    assert {r.external_id for r in stopped.records} == {ids[0], ids[1]}
    assert stopped.cursor == cursor, "a page that is not the last must not move the cursor"

    box.request_log.clear()
    resumed, _, final = pull(connect(box, url, page_size=2), "sellers", stopped.cursor)
    names = {r.data.name for r in resumed}  # type: ignore[union-attr]
    assert "Vendedora Quatro" in names
    assert final > cursor
    overlap = (datetime.fromisoformat(cursor) - timedelta(minutes=2)).isoformat()
    assert {e["query"].get("updated_from") for e in box.request_log if e["method"] == "GET"} == {overlap}


# --- catalog: ERP -> CPlug ------------------------------------------------------------------------------------


SHIRT = Product(sku="CAM-001", name="Camiseta Básica", price="59.90", gtin="7891000315507",
                category_path=["Roupas", "Camisetas"],
                variations=[Variation(sku="CAM-001-P", gtin="7891000100103", attributes={"Tamanho": "P"}),
                            Variation(sku="CAM-001-M", attributes={"Tamanho": "M"})],
                fiscal=ProductFiscal(ncm="61091000", cest="2806300", origin=0, nbm="x"))


def test_a_product_lands_with_its_category_path_grid_barcode_and_only_ncm_cest_origin(cplug):
    box, url = cplug
    ctx = connect(box, url)
    result = plugin.push_catalog(ctx, "products", SHIRT, None, "op-shirt-1")
    (remote,) = box.records("products")
    categories = {c["id"]: c for c in box.records("categories")}
    leaf = categories[remote["category_id"]]
    assert leaf["name"] == "Camisetas" and categories[leaf["parent_id"]]["name"] == "Roupas"
    assert remote["barcodes"] == ["7891000315507"] and remote["unitary_value"] == {"amount": 59.9, "currency": "BRL"}
    assert remote["option_type"] == {"type": "grid"}
    assert [(v["sku"], v["barcode"], v["attributes"]) for v in remote["variations"]] == [
        ("CAM-001-P", "7891000100103", {"Tamanho": "P"}), ("CAM-001-M", None, {"Tamanho": "M"})]
    assert remote["fiscal"] == {"ncm": "61091000", "cest": "2806300", "origin": 0}
    assert result.external_id == str(remote["id"])

    # The worker died after the create: the same operation runs again and finds the product by SKU.
    again = plugin.push_catalog(connect(box, url), "products", SHIRT, None, "op-shirt-1")
    assert again.external_id == result.external_id and len(box.records("products")) == 1

    # Tax settings made by hand in CPlug survive an update from the ERP.
    box.create("products", {**box.records("products")[0],
                            "fiscal": {**remote["fiscal"], "cfop": "5405", "icms_tax_group_id": 7}})
    cheaper = SHIRT.model_copy(update={"price": Decimal("49.90"), "fiscal": ProductFiscal(ncm="61091000", origin=2)})
    plugin.push_catalog(connect(box, url), "products", cheaper, result.external_id, "op-shirt-2")
    (remote,) = box.records("products")
    assert remote["unitary_value"]["amount"] == 49.9
    assert remote["fiscal"] == {"ncm": "61091000", "cest": None, "origin": 2, "cfop": "5405", "icms_tax_group_id": 7}
    assert len(box.records("categories")) == 2


def test_sku_as_barcode_sends_the_sku_and_a_missing_unit_or_grid_module_is_explained(cplug):
    box, url = cplug
    ctx = connect(box, url, sku_as_barcode=True)
    result = plugin.push_catalog(ctx, "products", SHIRT.model_copy(update={"sku": "AZ-7000", "gtin": None}),
                                 None, "op-az")
    remote = next(p for p in box.records("products") if p["sku"] == "AZ-7000")
    assert remote["barcodes"] == ["AZ-7000"] and [v["barcode"] for v in remote["variations"]] == ["CAM-001-P",
                                                                                                  "CAM-001-M"]
    assert not any("no barcode" in w for w in result.warnings)

    with pytest.raises(InvalidRecord) as refused:
        plugin.push_catalog(ctx, "products", Product(sku="DZ-1", name="Ovos", unit="DZ"), None, "op-dz")
    assert refused.value.field == "unit" and "Create the unit 'DZ' in CPlug" in refused.value.fix

    box.grid_module = False
    with pytest.raises(InvalidRecord) as refused:
        plugin.push_catalog(ctx, "products", SHIRT.model_copy(update={"sku": "GR-1"}), None, "op-grid")
    assert refused.value.field == "option_type" and "Grade de Produtos" in refused.value.message


def test_a_create_that_timed_out_is_found_on_retry_not_duplicated(cplug):
    box, url = cplug
    box.fault_delay = 1.0
    plugin.push_catalog(connect(box, url), "categories", Category(path=["Roupas", "Camisetas"]), None, "op-cat")
    box.inject_fault("timeout", 1, method="POST")
    with pytest.raises(Retriable) as timed_out:
        plugin.push_catalog(connect(box, url, timeout_seconds=0.3), "products", SHIRT, None, "op-slow")
    assert "may or may not have happened" in timed_out.value.message
    time.sleep(1.0)  # CPlug finishes the create after the client gave up
    retry = plugin.push_catalog(connect(box, url), "products", SHIRT, None, "op-slow")
    (remote,) = box.records("products")
    assert retry.external_id == str(remote["id"])


def test_the_erp_categories_replace_cplugs_own(cplug):
    box, url = cplug
    box.seed("categories", 4)
    box.seed("products", 2)  # CPlug's own products keep some of CPlug's own categories in use
    ctx = connect(box, url)
    keep = {plugin.push_catalog(ctx, "categories", Category(path=path), None, f"op-{i}").external_id
            for i, path in enumerate((["Roupas"], ["Roupas", "Camisetas"]))}
    with pytest.raises(Fatal):
        plugin.replace_categories(ctx, set())
    removed = plugin.replace_categories(ctx, keep)
    remaining = {str(c["id"]): c for c in box.records("categories")}
    in_use = {str(p["category_id"]) for p in box.records("products")}
    assert keep <= set(remaining) and removed and not set(removed) & set(remaining)
    assert set(remaining) - keep <= in_use | {str(c["parent_id"]) for c in remaining.values()}
    assert any(call.fix and "Move the products" in call.fix for call in ctx.calls)


def test_customers_and_stock_cannot_be_routed_into_cplug(rt, tmp_path: Path):
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "tenants": {"loja": {"name": "Loja", "connections": {
        "erp": {"platform": "lojinha", "options": {"base_url": "http://erp"}, "credentials": "stored"},
        "pdv": {"platform": "cplug", "options": {"base_url": "http://pdv", "company_id": 7}, "credentials": "stored"}},
        "routes": {"catalogo": {"source": "erp", "sink": "pdv", "streams": ["products", "customers"]}}}}}))
    errors, _ = applying.check(config.load(path), rt.registry, str(path))
    assert any("cannot receive 'customers'" in e for e in errors)
    assert rt.registry.platform("cplug").pulls >= {"sales", "customers", "payment_methods", "sellers"}
    assert "stock" not in rt.registry.platform("cplug").pulls | rt.registry.platform("cplug").pushes


# --- auth, company, rate limit -------------------------------------------------------------------------------


def test_login_refresh_and_fallback_to_the_password_grant(cplug):
    box, url = cplug
    info = box.connection(url)
    wrong = ConnectorContext(tenant="loja-demo", connection="pdv", platform="cplug", options=info["options"],
                             credentials={**info["credentials"], "password": "errada"})
    with pytest.raises(AuthRevoked) as refused:
        plugin.authenticate(wrong)
    assert "connection pdv" in refused.value.fix and "loja-demo" in refused.value.message

    box.request_log.clear()
    ctx = connect(box, url)
    first = dict(ctx.credentials)
    renewed = plugin.authenticate(ctx)
    assert renewed.values["refresh_token"] != first["refresh_token"]
    assert renewed.expires_at is not None and renewed.expires_at.tzinfo is None
    assert [e["grant_type"] for e in box.request_log] == ["password", "refresh_token"]

    box.revoke_refresh_tokens()
    ctx.credentials.update(renewed.values)
    again = plugin.authenticate(ctx)
    assert [(e["grant_type"], e["status"]) for e in box.request_log[-2:]] == [("refresh_token", 400),
                                                                               ("password", 200)]
    ctx.credentials.update(again.values)
    assert pull(ctx, "payment_methods")[0] == []


def test_a_wrong_company_id_is_a_configuration_error_with_its_fix(cplug):
    box, url = cplug
    ctx = connect(box, url, company_id=box.company_id + 1000)
    with pytest.raises(Fatal) as refused:
        pull(ctx, "sellers")
    assert "options.company_id of connection pdv" in refused.value.fix


class CountingBudget:
    """The core's Throttle protocol, without pacing: CPlug's own limit is what the connection then meets."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, float]] = []

    def reserve(self, key: str, interval: float) -> float:
        self.keys.append((key, interval))
        return 0.0

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        return 0


def test_requests_are_paced_per_company_and_a_pull_outlasts_cplugs_429(cplug):
    box, url = cplug
    box.seed("customers", 30)
    paced = connect(box, url, page_size=5)
    assert len(pull(paced, "customers")[0]) == 30
    assert box.throttled == 0

    budget = CountingBudget()
    unpaced = connect(box, url, budget=budget, page_size=5)
    assert len(pull(unpaced, "customers")[0]) == 30
    assert box.throttled >= 1  # CPlug said 429; the pull waited Retry-After and went on
    assert set(budget.keys) == {(f"cplug:{box.company_id}", 1 / 5)}


def test_workers_pushing_products_without_category_share_one_fallback_category(cplug):
    """Four workers (each with its own context, as the runner gives them) push uncategorized products at once."""
    from concurrent.futures import ThreadPoolExecutor

    box, url = cplug
    contexts = [connect(box, url) for _ in range(4)]
    products = [Product(sku=f"SC-{i}", name=f"Produto {i}", price=Decimal("9.90")) for i in range(8)]
    box.inject_fault("slow", 4, method="POST")  # CPlug takes its time to create: the workers overlap

    def push(i: int) -> str:
        return plugin.push_catalog(contexts[i % 4], "products", products[i], None, f"op-sc-{i}").external_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(push, range(8)))
    fallback = [c for c in box.records("categories") if c["name"] == plugin.FALLBACK_CATEGORY]
    assert len(fallback) == 1, f"exactly one {plugin.FALLBACK_CATEGORY!r} category expected, found {len(fallback)}"
    assert {p["category_id"] for p in box.records("products")} == {fallback[0]["id"]}


def test_replacing_categories_keeps_the_fallback_and_removes_an_old_duplicate(cplug):
    box, url = cplug
    ctx = connect(box, url)
    keep = {plugin.push_catalog(ctx, "categories", Category(path=["Roupas"]), None, "op-roupas").external_id}
    plugin.push_catalog(ctx, "products", Product(sku="SC-1", name="Sem nada", price=Decimal("1.00")), None, "op-1")
    box.create("categories", {"name": plugin.FALLBACK_CATEGORY, "code": "SC2", "parent_id": None})  # a leftover
    replacing = connect(box, url)
    removed = plugin.replace_categories(replacing, keep)
    remaining = box.records("categories")
    fallback = [c for c in remaining if c["name"] == plugin.FALLBACK_CATEGORY]
    assert len(fallback) == 1 and removed, f"one {plugin.FALLBACK_CATEGORY!r} kept, the empty duplicate removed"
    assert box.records("products")[0]["category_id"] == fallback[0]["id"]
    assert not [c.error for c in replacing.calls if c.error], "nothing failed while replacing"
