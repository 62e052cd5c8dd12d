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
