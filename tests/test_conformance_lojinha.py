"""The core's conformance kit, run against the example third-party plugin's sandbox."""

from __future__ import annotations

from hub.models import Customer, Product, ProductFiscal, Sale
from hub.testing import ConnectorConformance


class TestLojinhaProducts(ConnectorConformance):
    platform = "lojinha"
    pull_stream = "products"
    push_stream = "products"

    def make_record(self, i: int) -> Product:
        return Product(sku=f"CONF-{i}", name=f"Conformance {i}", price="10.00",
                       fiscal=ProductFiscal(ncm="61091000", origin=0))


class TestLojinhaSales(ConnectorConformance):
    platform = "lojinha"
    pull_stream = "sales"
    push_stream = "sales"

    def make_record(self, i: int) -> Sale:
        return Sale(number=f"PDV-{i}", issued_at="2026-11-01T12:00:00", status="aberto",
                    customer=Customer(name="Maria", document="52998224725"),
                    items=[{"sku": "SKU-1", "quantity": "1", "unit_price": "25.00"}],
                    payments=[{"method": "dinheiro", "amount": "25.00"}])
