"""The core's conformance kit against the Plugg.to sandbox, stream by stream: products, orders and the NF-e Plugg.to
issued are read;
products (SKU upserts), stock, prices, orders (created once, found by their channel number) and NF-e (attached to an
order's shipment) are written."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from hub.models import (
    Address,
    Canonical,
    Customer,
    Invoice,
    Payment,
    Price,
    Product,
    ProductFiscal,
    Ref,
    Sale,
    SaleItem,
    StockLevel,
    Variation,
    access_key_check_digit,
)
from hub.testing import ConnectorConformance, Harness

PREPARED = 12


def product(i: int) -> Product:
    return Product(sku=f"PUSH-{i}", name=f"Camiseta {i}", price="59.90", gtin="7891000315507",
                   category_path=["Moda", "Camisetas"], images=[f"https://img.example/push-{i}.jpg"],
                   attributes={"Material": "Algodão"},
                   variations=[Variation(sku=f"PUSH-{i}-P", attributes={"Tamanho": "P"})],
                   fiscal=ProductFiscal(ncm="61091000", cest="2806300", nbm="61091000", origin=0))


def stock(i: int) -> StockLevel:
    return StockLevel(sku=f"CONF-{i}", quantity=str(10 + i))


def price(i: int) -> Price:
    return Price(sku=f"CONF-{i}", price=f"{40 + i}.90", list_price=f"{60 + i}.00")


def sale(i: int) -> Sale:
    """An Amazon order going into Plugg.to (the FBA Onsite flow), of a prepared SKU."""
    return Sale(number=f"702-{i:07d}-{i:07d}", channel="amazon", issued_at=datetime(2026, 11, 30, 9, i % 60),
                status="approved", items=[SaleItem(sku=f"CONF-{i % PREPARED}", quantity="1", unit_price="59.90")],
                customer=Customer(name=f"Cliente {i}", document="52998224725", addresses=[Address(
                    street="Rua Augusta", number="100", district="Consolação", city="São Paulo", state="SP",
                    zip="01305000")]),
                payments=[Payment(method="credit", name="Cartão de crédito", amount="59.90")])


def access_key(i: int) -> str:
    first = f"35261211222333000181550010000{i:05d}1{i:08d}"[:43]
    return first + str(access_key_check_digit(first))


def invoice(i: int) -> Invoice:
    """An authorized NF-e of order ORD-i (prepared with one shipment awaiting its note)."""
    return Invoice(number=str(500 + i), series="1", access_key=access_key(i), status="authorized",
                   issued_at=datetime(2026, 11, 30, 12, 0), sale=Ref(external_id=f"ORD-{i}"),
                   xml=f"https://files.example/{i}.xml")


class TestPluggto(ConnectorConformance):
    platform = "pluggto"
    pull_streams = ("products", "sales", "invoices")
    push_streams = {"products": product, "stock": stock, "prices": price, "sales": sale, "invoices": invoice}
    reads_retried = True
    page_size = 25
    """Smaller pages than Plugg.to's 100 (the connection's page_size option follows): the same paging, quicker."""
    sandbox_options = {"rate_per_second": None, "fault_delay": 1.3}

    def start(self, tmp: Path, stream: str, side: str = "pull", options: dict[str, Any] | None = None) -> Harness:
        """The SKUs that stock and prices update exist on Plugg.to for push tests only (a pull counts products)."""
        harness = super().start(tmp, stream, side, {"page_size": self.page_size, **(options or {})})
        if side == "push":
            for i in range(PREPARED):
                harness.sandbox.create_sku(f"CONF-{i}", name=f"Preparado {i}")
                harness.sandbox.create_order(id=f"ORD-{i}")
            taken = [{"id": "SHIP-TAKEN", "status": "shipped", "nfe_key": access_key(99)}]
            harness.sandbox.create_order(id="ORD-TAKEN", shipments=taken)
        return harness

    def write_fault(self, stream: str) -> dict[str, str]:
        """A new order is a POST; every other write to Plugg.to is a PUT (SKU upsert, stock, price, NF-e)."""
        return {"method": "POST" if stream == "sales" else "PUT"}

    def make_refused(self, stream: str) -> tuple[Canonical, str] | None:
        """An NBM that is not 8 digits passes the canonical model (a free text) and Plugg.to refuses it; an NF-e
        for an order whose only shipment holds another note has no shipment to go to; an order whose status is
        none of Plugg.to's (a route without the statuses DE-PARA) is refused on its status; stock for Amazon's FBA
        Onsite warehouse is never written."""
        if stream == "invoices":
            return invoice(98).model_copy(update={"sale": Ref(external_id="ORD-TAKEN")}), "shipments"
        if stream == "sales":
            return sale(97).model_copy(update={"status": "open"}), "status"  # not a Plugg.to status, unmapped
        if stream == "stock":
            return StockLevel(sku="CONF-1", warehouse="amazon_fba", quantity="3"), "warehouse"  # Amazon's FBA stock
        if stream != "products":
            return None
        return Product(sku="BAD-NBM", name="NBM errado", price="10.00",
                       fiscal=ProductFiscal(ncm="61091000", nbm="6109")), "nbm"
