"""The core's conformance kit against the Zydon sandbox, stream by stream: products, customers, payment methods and
orders are read; products, customers, payment methods, stock, prices and orders are written."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hub.models import Canonical, Customer, Payment, PaymentMethod, Price, Product, Sale, SaleItem, StockLevel
from hub.testing import ConnectorConformance, Harness

DOCUMENTS = ["52998224725", "11144477735", "39053344705", "15350946056", "86288366757", "71428793860",
             "24843803480", "12345678909"]
PREPARED = [f"KIT-{i}" for i in range(10)]
"""SKUs the sandbox holds before each test (stock, prices and orders refer to them)."""


def product(i: int) -> Product:
    return Product(sku=f"CONF-{i}", name=f"Conformance {i}", price="10.00", gtin="7891000315507",
                   category_path=["Roupas"])


def customer(i: int) -> Customer:
    return Customer(name=f"Cliente {i}", document=DOCUMENTS[i % len(DOCUMENTS)], email=f"c{i}@example.com.br")


def payment_method(i: int) -> PaymentMethod:
    return PaymentMethod(code=f"bling-{i}", name=f"Forma de pagamento {i}")


def stock(i: int) -> StockLevel:
    return StockLevel(sku=PREPARED[i], quantity=Decimal(10 + i))


def price(i: int) -> Price:
    return Price(sku=PREPARED[i], price=Decimal("20.00") + i)


def sale(i: int) -> Sale:
    return Sale(number=f"BL-{i}", channel="bling", issued_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
                customer=customer(i), status="Em aberto",
                items=[SaleItem(sku=PREPARED[i], quantity=Decimal(2), unit_price=Decimal("15.00"))],
                payments=[Payment(method="pix", name="PIX", amount=Decimal("30.00"))])


class TestZydon(ConnectorConformance):
    platform = "zydon"
    pull_streams = ("products", "customers", "payment_methods", "sales")
    push_streams = {"products": product, "customers": customer, "payment_methods": payment_method,
                    "stock": stock, "prices": price, "sales": sale}
    reads_retried = True
    page_size = 20
    sandbox_options = {"rate_per_second": None, "page_size": 20, "fault_delay": 1.3}

    side = "pull"

    def start(self, tmp: Path, stream: str, side: str = "pull", options: dict[str, Any] | None = None) -> Harness:
        self.side = side
        return super().start(tmp, stream, side, options)

    def prepare(self, sandbox: Any) -> None:
        """The products stock, prices and orders refer to; only for pushes (a pull test counts what it seeded)."""
        if self.side == "push":
            for sku in PREPARED:
                sandbox.create_product(sku=sku, price=9.9)

    def make_refused(self, stream: str) -> tuple[Canonical, str] | None:
        if stream == "products":  # a unit Zydon's organization does not have
            return Product(sku="REFUSED-1", name="Sem unidade", price="1.00", unit="XYZ"), "unit"
        if stream == "customers":  # Zydon requires CPF/CNPJ or IE/RG; the hub and Bling do not
            return Customer(name="Sem documento"), "document"
        if stream == "stock":  # a warehouse the organization does not have
            return StockLevel(sku=PREPARED[0], warehouse="999999", quantity=Decimal(1)), "warehouse"
        if stream == "prices":  # price tables stay manual in Zydon (its help page)
            return Price(sku=PREPARED[0], price=Decimal("5.00"), price_list="Atacado"), "price_list"
        if stream == "sales":
            return sale(1).model_copy(update={"status": "Status que não existe", "number": "BL-X"}), "status"
        return None
