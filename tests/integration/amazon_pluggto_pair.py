"""The shipped Amazon FBA Onsite <-> Plugg.to route file, applied to a Plugg.to sandbox and an SP-API sandbox served on
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
from hub_pluggto.sandbox import PluggtoSandbox

from tests.flows import ShippedPair

ROUTE_FILE = ROUTES / "pluggto.yaml"
DEMO_FILE = ROUTES / "pluggto-demo.yaml"
TENANT = "loja"


@dataclass
class AmazonPluggtoPair(ShippedPair):
    rt: Runtime
    pluggto: PluggtoSandbox
    amazon: AmazonSandbox
    servers: list[Served]
    path: Path
    route_file: ClassVar[Path] = ROUTE_FILE
    tenant: ClassVar[str] = TENANT

    def ends(self) -> dict[str, tuple[Any, str]]:
        return {"pluggto": (self.pluggto, self.servers[0].base_url),
                "amazon": (self.amazon, self.servers[1].base_url)}

    def sync(self, route: str, full: bool = False, wait: float = 30) -> SyncReport:
        return super().sync(route, full, wait)  # NF-e polls and invoice status checks take longer to drain

    def simple_products(self) -> list[dict[str, Any]]:
        """Plugg.to's products without variations (what an FBA Onsite offer here is)."""
        return [p for p in self.pluggto.records("products") if not p.get("variations")]

    def activate(self, products: int = 6, **changes: Any) -> None:
        """Plugg.to's catalog as the seller has it (products with NCM, CEST, NBM and origem), the route file applied
        and the offers sent to Amazon."""
        self.pluggto.seed("products", products)
        self.apply(**{"connections.pluggto.options.nfe_poll_seconds": 0.3, **changes})
        report = self.sync("offers")
        assert report.ok, report

    def order(self, *skus: str, **kwargs: Any) -> tuple[str, str]:
        """An Amazon order of Plugg.to products (one of each SKU, at Plugg.to's price); (order id, shipment id)."""
        return self.amazon.create_order([self.line(sku) for sku in skus], **kwargs)

    def line(self, sku: str, quantity: int = 1) -> tuple[str, int, str]:
        prices = {p["sku"]: p["price"] for p in self.pluggto.records("products")}
        return sku, quantity, f"{float(prices[sku]):.2f}"

    def orders_of(self, order_id: str) -> list[dict[str, Any]]:
        """The Plugg.to orders the hub made of an Amazon order (one per shipment: number ORDER-SHIPMENT)."""
        return [o for o in self.pluggto.records("sales") if str(o.get("external", "")).startswith(f"{order_id}-")]

    def notes(self) -> list[dict[str, Any]]:
        """The notes Plugg.to authorized."""
        return [n for n in self.pluggto.records("issued") if n["nfe_status"] == "authorized"]


@pytest.fixture(name="azpair")
def azpair_fixture(rt: Runtime, tmp_path: Path) -> Iterator[AmazonPluggtoPair]:
    pluggto = PluggtoSandbox(rate_per_second=None, nfe_delay_seconds=0.1)
    amazon = AmazonSandbox(plan_scale=100.0, page_size=20)
    servers = [serve(pluggto.app), serve(amazon.app)]
    yield AmazonPluggtoPair(rt, pluggto, amazon, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()
