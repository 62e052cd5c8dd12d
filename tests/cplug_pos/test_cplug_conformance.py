"""The core's conformance kit against the CPlug sandbox, stream by stream: POS sales, customers and sellers are
read; the ERP's products, categories and sellers are written."""

from __future__ import annotations

from hub.models import Canonical, Category, Product, ProductFiscal, Seller
from hub.testing import ConnectorConformance

SELLER_DOCUMENTS = ["52998224725", "11144477735", "39053344705", "15350946056", "86288366757", "71428793860",
                    "24843803480", "12345678909"]


def product(i: int) -> Product:
    return Product(sku=f"CONF-{i}", name=f"Conformance {i}", price="10.00", gtin="7891000315507",
                   category_path=["Roupas"], fiscal=ProductFiscal(ncm="61091000", origin=0))


def category(i: int) -> Category:
    return Category(path=[f"Conformance {i}"])


def seller(i: int) -> Seller:
    return Seller(name=f"Vendedora {i}", document=SELLER_DOCUMENTS[i % len(SELLER_DOCUMENTS)])


class TestCPlug(ConnectorConformance):
    platform = "cplug"
    pull_streams = ("sales", "customers", "sellers")
    reads_retried = True
    push_streams = {"products": product, "categories": category, "sellers": seller}

    def make_refused(self, stream: str) -> tuple[Canonical, str] | None:
        """CPlug requires a category name; a blank path segment passes the canonical model."""
        if stream != "categories":
            return None
        return Category(path=[""]), "name"
