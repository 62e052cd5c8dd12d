"""The core's conformance kit against the Amazon FBA Onsite sandbox, stream by stream: sales are read (notifications
and the searchOrders sweep); offers (products), prices and NF-e (invoices) are written."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from hub.models import Canonical, Invoice, Price, Product, ProductFiscal, Ref
from hub.testing import ConnectorConformance, Harness

PREPARED = [f"KIT-{i}" for i in range(10)]
"""SKUs with an FBA Onsite offer before each push test (prices change them)."""


def product(i: int) -> Product:
    return Product(sku=f"CONF-{i}", name=f"Conformance {i}", price="49.90", gtin="7891000315507",
                   fiscal=ProductFiscal(ncm="61091000", origin=0))


def price(i: int) -> Price:
    return Price(sku=PREPARED[i], price=Decimal("20.00") + i)


class TestAmazonFba(ConnectorConformance):
    platform = "amazon_fba"
    pull_streams = ("sales",)
    push_streams = {"products": product, "prices": price, "invoices": "invoice"}
    reads_retried = True
    page_size = 20
    sandbox_options = {"plan_scale": None, "page_size": 20, "fault_delay": 1.3}

    shipments: list[str] = []
    side = "pull"

    def start(self, tmp: Path, stream: str, side: str = "pull", options: dict[str, Any] | None = None) -> Harness:
        self.side = side
        return super().start(tmp, stream, side, options)

    def prepare(self, sandbox: Any) -> None:
        """Offers for the price pushes and FBA Onsite shipments (with their authorized notes) for the invoices;
        only for pushes (a pull test counts the orders it seeded)."""
        if self.side != "push":
            return
        for sku in PREPARED:
            sandbox.create_listing(sku)
        self.shipments = [sandbox.create_order(notify=False)[1] for _ in range(10)]
        self.notes = [sandbox.authorized_nfe(s, number=1000 + i) for i, s in enumerate(self.shipments)]

    def invoice(self, i: int) -> Invoice:
        key, xml = self.notes[i]
        return Invoice(number=str(1000 + i), series="1", access_key=key, status="authorized", xml=xml,
                       sale=Ref(external_id=self.shipments[i]))

    def write_fault(self, stream: str) -> dict[str, str]:
        """Listings are written with PUT (products) and PATCH (prices); an invoice's first write is the RDT POST."""
        return {"method": {"products": "PUT", "prices": "PATCH"}.get(stream, "POST")}

    def make_refused(self, stream: str) -> tuple[Canonical, str] | None:
        if stream == "products":  # no NCM: Amazon cannot invoice an FBA offer without it
            return Product(sku="REFUSED-1", name="Sem NCM", price="1.00", fiscal=ProductFiscal(origin=0)), "ncm_code"
        if stream == "prices":  # an Amazon offer has one price
            return Price(sku=PREPARED[0], price=Decimal("5.00"), price_list="Atacado"), "price_list"
        if stream == "invoices":  # a note SEFAZ did not authorize: no protocol in the XML
            key, xml = self.notes[9]
            bare = xml.replace("<cStat>100</cStat>", "<cStat>204</cStat>")
            return Invoice(number="9", series="1", access_key=key, status="authorized", xml=bare,
                           sale=Ref(external_id=self.shipments[9])), "xml"
        return None
