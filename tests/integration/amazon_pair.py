"""The shipped Amazon FBA Onsite <-> Bling route file, applied to a Bling sandbox and an SP-API sandbox served on
loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hub.sandbox import Served, serve
from hub.sync.loading import Runtime
from hub.sync.pull import SyncReport
from hub_amazon_fba.plugin import ROUTES
from hub_amazon_fba.sandbox import AmazonSandbox
from hub_bling.sandbox import BlingSandbox

from tests.flows import ShippedPair

ROUTE_FILE = ROUTES / "bling.yaml"
DEMO_FILE = ROUTES / "bling-demo.yaml"
TENANT = "loja"
DEPOSIT = "Amazon FBA Onsite"


@dataclass
class AmazonPair(ShippedPair):
    rt: Runtime
    bling: BlingSandbox
    amazon: AmazonSandbox
    servers: list[Served]
    path: Path
    route_file: ClassVar[Path] = ROUTE_FILE
    tenant: ClassVar[str] = TENANT

    def ends(self) -> dict[str, tuple[Any, str]]:
        return {"bling": (self.bling, self.servers[0].base_url), "amazon": (self.amazon, self.servers[1].base_url)}

    def sync(self, route: str, full: bool = False, wait: float = 30) -> SyncReport:
        return super().sync(route, full, wait)  # NF-e polls and invoice status checks take longer to drain

    def simple_products(self) -> list[dict[str, Any]]:
        """Bling's active products without variations (what an FBA Onsite offer here is)."""
        return [p for p in self.bling.records("products")
                if p["situacao"] == "A" and not p.get("variacoes") and not p.get("variacao")]

    def activate(self, products: int = 6, **changes: Any) -> None:
        """Bling's account as the seller has it (products with NCM and origem, the usual payment methods), the
        route file applied and the offers sent to Amazon."""
        self.bling.seed("products", products)
        self.bling.seed("stock", products)
        self.bling.seed("payment_methods", 12)
        self.apply(**{"connections.bling.options.nfe_poll_seconds": 0.3, **changes})
        report = self.sync("offers")
        assert report.ok, report

    def order(self, *skus: str, **kwargs: Any) -> tuple[str, str]:
        """An Amazon order of Bling products (one of each SKU, at Bling's price); (order id, shipment id)."""
        prices = {p["codigo"]: p["preco"] for p in self.bling.records("products")}
        return self.amazon.create_order([(sku, 1, f"{float(prices[sku]):.2f}") for sku in skus], **kwargs)


@pytest.fixture(name="apair")
def apair_fixture(rt: Runtime, tmp_path: Path) -> Iterator[AmazonPair]:
    bling = BlingSandbox(rate_per_second=60, nfe_delay_seconds=0.1, deposits=("Geral", DEPOSIT))
    amazon = AmazonSandbox(plan_scale=100.0, page_size=20)
    servers = [serve(bling.app), serve(amazon.app)]
    yield AmazonPair(rt, bling, amazon, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()
