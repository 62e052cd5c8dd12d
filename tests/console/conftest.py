"""The console against a real store: the shipped CPlug <-> Bling route file on both sandboxes (tenant ``loja``),
a second tenant on the lojinha example (``demo``), users bound to each, and a TestClient on ``hub serve``'s app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub.console.app import make_app
from hub.console.users import add_user
from hub.sandbox import serve
from hub.sync.loading import Runtime
from hub_bling.sandbox import BlingSandbox
from hub_cplug.sandbox import CPlugSandbox
from starlette.testclient import TestClient

from tests.flows import apply_demo_routes
from tests.integration.conftest import Pair

SECRET = b"console-test-secret"
PASSWORD = "correct horse battery"
SHOP_USER, OTHER_USER, INTEGRATOR = "ana@loja.example", "bia@demo.example", "caio@integra.example"
SHIPPED_PAYMENTS = {"101": "Dinheiro", "102": "Cartão de Crédito", "103": "Cartão de Débito", "104": "PIX",
                    "105": "Crédito Loja", "106": "Boleto", "107": "Outros", "108": "Outros", "109": "Cheque"}
BROKEN_PAYMENTS = {**SHIPPED_PAYMENTS, "101": "Dinheiro Vivo"}
"""The shipped DE-PARA with cash pointed at a forma de pagamento Bling does not have: every cash sale is refused."""


@pytest.fixture
def shop(rt: Runtime, tmp_path: Path) -> Iterator[Pair]:
    bling, cplug = BlingSandbox(rate_per_second=60, nfe_delay_seconds=0.1), CPlugSandbox(rate_per_second=60)
    servers = [serve(bling.app), serve(cplug.app)]
    pair = Pair(rt, bling, cplug, servers, tmp_path / "routes.yaml")
    yield pair
    for server in servers:
        server.stop()


def ring(pair: Pair, count: int) -> list[str]:
    """Cash sales at the POS of products the catalog sync brought to CPlug."""
    skus = [p["sku"] for p in pair.cplug.records("products") if not p.get("variations")]
    return [pair.cplug.sale(items=[{"sku": skus[i % len(skus)], "amount": 1}], store_id=1) for i in range(count)]


def refused_sales(pair: Pair, count: int = 3) -> list[str]:
    """Sales that reached the store and were refused by Bling because of the DE-PARA (operations failed)."""
    pair.catalog(6)
    pair.apply(**{"routes.sales.mappings.payment_methods": BROKEN_PAYMENTS})
    pair.sync("catalog")
    ids = ring(pair, count)
    pair.sync("sales")
    return ids


@pytest.fixture
def tenants(rt: Runtime, tmp_path: Path, shop: Pair) -> dict[str, Any]:
    """Tenant ``loja`` (CPlug <-> Bling, sandboxes up) and tenant ``demo`` (lojinha, never synced), with users."""
    shop.apply()
    (tmp_path / "other").mkdir()
    apply_demo_routes(rt, tmp_path / "other", "http://127.0.0.1:9", "http://127.0.0.1:9")
    add_user(rt.store, SHOP_USER, PASSWORD, ["loja"])
    add_user(rt.store, OTHER_USER, PASSWORD, ["demo"])
    add_user(rt.store, INTEGRATOR, PASSWORD, ["loja", "demo"])
    return {"loja": shop}


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(make_app(rt, SECRET), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page carries a CSRF token"
    return found.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf": token})


def form_token(client: TestClient, page: str) -> str:
    answer = client.get(page)
    assert answer.status_code == 200, (page, answer.status_code)
    return csrf_of(answer.text)
