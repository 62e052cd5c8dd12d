"""CPlug's lookup lists are shared by a connection's operations (``ctx.cache``) without going stale."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hub.models import Product
from hub.sandbox import serve
from hub.sync.context import ConnectorContext
from hub_cplug import plugin
from hub_cplug.sandbox import CPlugSandbox


@pytest.fixture
def cplug() -> Iterator[tuple[CPlugSandbox, str]]:
    box = CPlugSandbox(rate_per_second=None)  # counts requests here, not the pacing
    served = serve(box.app)
    yield box, served.base_url
    served.stop()


def operation_context(box: CPlugSandbox, url: str, token: dict[str, str]) -> ConnectorContext:
    """A fresh context per operation, as the core builds one, holding the connection's stored token."""
    info = box.connection(url)
    ctx = ConnectorContext(tenant="loja-cache", connection="pdv", platform="cplug", options=dict(info["options"]),
                           credentials={**info["credentials"], **token})
    if not token:
        token.update(access_token=plugin.authenticate(ctx).values["access_token"])
        ctx.credentials.update(token)
    return ctx


def api_requests(box: CPlugSandbox, path: str | None = None) -> list[dict[str, Any]]:
    return [r for r in box.request_log if r["path"] != "/oauth/token" and (path is None or r["path"] == path)]


def test_fifty_product_pushes_read_the_units_once_and_a_unit_created_later_is_found(cplug) -> None:
    box, url = cplug
    token: dict[str, str] = {}
    for i in range(50):
        product = Product(sku=f"CACHE-{i:02d}", name=f"Produto {i}", price=Decimal("9.90"), unit="UN",
                          category_path=["Mercearia"])
        plugin.push_catalog(operation_context(box, url, token), "products", product, None, f"op-{i}")
    assert len(box.records("products")) == 50
    units = api_requests(box, "/api/v3/units")
    assert len(units) == 1, f"50 pushes on one connection should read /units once, read it {len(units)} times"
    per_product = len(api_requests(box)) / 50
    assert per_product <= 2.1, f"CPlug calls per product pushed: {per_product:.2f} (a SKU lookup and the write)"

    box.create("units", {"abbreviation": "DZ", "name": "Dúzia"})
    ovos = Product(sku="OVOS-12", name="Ovos", price=Decimal("12"), unit="DZ", category_path=["Mercearia"])
    result = plugin.push_catalog(operation_context(box, url, token), "products", ovos, None, "op-ovos")
    remote = next(p for p in box.records("products") if p["sku"] == "OVOS-12")
    dz = next(u for u in box.records("units") if u["abbreviation"] == "DZ")
    assert remote["unit_id"] == dz["id"] and result.external_id == str(remote["id"]), \
        "a unit created in CPlug after the list was cached must still be found"
    assert len(api_requests(box, "/api/v3/units")) == 2, "the miss re-read /units once"


def test_a_category_created_in_cplug_meanwhile_is_found_not_duplicated(cplug) -> None:
    box, url = cplug
    token: dict[str, str] = {}
    first = Product(sku="A-1", name="A", price=Decimal("1"), unit="UN", category_path=["Bebidas"])
    plugin.push_catalog(operation_context(box, url, token), "products", first, None, "op-a")
    made_by_hand = box.create("categories", {"name": "Padaria", "parent_id": None})
    bread = Product(sku="B-1", name="Pão", price=Decimal("1"), unit="UN", category_path=["Padaria"])
    plugin.push_catalog(operation_context(box, url, token), "products", bread, None, "op-b")
    assert [c["name"] for c in box.records("categories")].count("Padaria") == 1, "no second 'Padaria' was created"
    remote = next(p for p in box.records("products") if p["sku"] == "B-1")
    assert str(remote["category_id"]) == str(made_by_hand)



def push_first_attempts(box: CPlugSandbox, url: str, skus: list[str]) -> dict[str, str]:
    """Each SKU pushed as a first attempt (no earlier try could have reached CPlug), one context each."""
    token: dict[str, str] = {}
    pushed = {}
    for i, sku in enumerate(skus):
        ctx = operation_context(box, url, token)
        ctx.first_attempt = True
        product = Product(sku=sku, name=f"Produto {i}", price=Decimal("9.90"), unit="UN", category_path=["Mercearia"])
        pushed[sku] = plugin.push_catalog(ctx, "products", product, None, f"bulk-{sku}").external_id
    return pushed


def test_a_first_sync_into_an_empty_cplug_costs_one_call_per_product(cplug) -> None:
    """No lookup before a first attempt's create: CPlug refuses a SKU it already holds, so asking first would only
    spend a call per product."""
    box, url = cplug
    before = len(api_requests(box))
    push_first_attempts(box, url, [f"NEW-{i:03d}" for i in range(200)])
    skus = [p["sku"] for p in box.records("products")]
    assert len(skus) == len(set(skus)) == 200
    per_product = (len(api_requests(box)) - before) / 200
    assert per_product <= 1.05, f"CPlug calls per product pushed: {per_product:.2f}"


def test_a_first_sync_into_a_cplug_holding_the_catalog_matches_every_sku_and_reads_the_list_once(cplug) -> None:
    """The merchant typed the catalog into CPlug before the integration: every SKU is refused on create, so after a
    few refusals the connection reads CPlug's product list once and updates each product in place."""
    box, url = cplug
    unit = next(u for u in box.records("units") if u["abbreviation"].upper() == "UN")
    category = box.create("categories", {"name": "Mercearia", "parent_id": None})
    by_hand = {f"OLD-{i:03d}": box.create("products", {"name": f"Manual {i}", "sku": f"OLD-{i:03d}",
                                                       "unit_id": unit["id"], "category_id": int(category),
                                                       "unitary_value": {"amount": 100, "currency": "BRL"}})
               for i in range(200)}
    before = len(api_requests(box))
    pushed = push_first_attempts(box, url, list(by_hand))
    assert pushed == {sku: str(pid) for sku, pid in by_hand.items()}, "each SKU matched the product made by hand"
    assert len(box.records("products")) == 200, "nothing duplicated"
    assert {p["name"] for p in box.records("products")} == {f"Produto {i}" for i in range(200)}, "updated in place"
    lists = [r for r in api_requests(box, "/api/v3/products") if r["method"] == "GET"]
    assert len(lists) <= plugin.SKU_INDEX_AFTER + 2, f"{len(lists)} product lookups/pages for 200 existing SKUs"
    per_product = (len(api_requests(box)) - before) / 200
    assert per_product <= 1.25, f"CPlug calls per product pushed: {per_product:.2f}"


def test_a_retried_push_looks_its_sku_up_before_writing(cplug) -> None:
    """A retry's earlier attempt may have created the product (a create whose answer was lost): it asks CPlug
    first, so that product is updated, not refused and not created twice."""
    box, url = cplug
    token: dict[str, str] = {}
    push_first_attempts(box, url, [f"R-{i}" for i in range(3)])
    unit = next(u for u in box.records("units") if u["abbreviation"].upper() == "UN")
    landed = box.create("products", {"name": "Timed out", "sku": "LATE-1", "unit_id": unit["id"],
                                     "category_id": box.records("categories")[0]["id"], "price": "1.00"})
    retry = operation_context(box, url, token)  # first_attempt False: an earlier attempt may have landed
    result = plugin.push_catalog(retry, "products", Product(sku="LATE-1", name="Late", price=Decimal("2"),
                                                            unit="UN", category_path=["Mercearia"]), None, "late")
    assert result.external_id == str(landed)
    assert [p["sku"] for p in box.records("products")].count("LATE-1") == 1
