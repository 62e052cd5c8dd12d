"""The core's conformance kit, run against the example third-party plugin's sandbox, stream by stream."""

from __future__ import annotations

from hub.models import Customer, Product, ProductFiscal, Sale
from hub.testing import ConnectorConformance


def product(i: int) -> Product:
    return Product(sku=f"CONF-{i}", name=f"Conformance {i}", price="10.00",
                   fiscal=ProductFiscal(ncm="61091000", origin=0))


def customer(i: int) -> Customer:
    documents = ["52998224725", "11144477735", "39053344705", "86288366757", "71428793860", "12345678909",
                 "15350946056", "24843803480"]
    return Customer(name=f"Cliente {i}", document=documents[i % len(documents)])


def sale(i: int) -> Sale:
    return Sale(number=f"PDV-{i}", issued_at="2026-11-01T12:00:00", status="aberto",
                customer=Customer(name="Maria", document="52998224725"),
                items=[{"sku": "SKU-1", "quantity": "1", "unit_price": "25.00"}],
                payments=[{"method": "dinheiro", "amount": "25.00"}])


class TestLojinha(ConnectorConformance):
    platform = "lojinha"
    pull_streams = ("products", "customers", "sales")
    push_streams = {"products": product, "customers": customer, "sales": sale}
    reads_retried = True

    def make_refused(self, stream: str) -> tuple[Product, str] | None:
        """lojinha requires a price (``preco``); the canonical product leaves it optional."""
        if stream != "products":
            return None
        return Product(sku="CONF-NO-PRICE", name="Sem preço", price=None), "preco"
