"""The core's conformance kit against the CPlug sandbox: a pull stream and a push stream per class."""

from __future__ import annotations

from hub.models import Category, Product, ProductFiscal, Seller
from hub.testing import ConnectorConformance


class TestCPlugSalesAndProducts(ConnectorConformance):
    """POS sales are read (with their customers); the ERP's products are written."""

    platform = "cplug"
    pull_stream = "sales"
    push_stream = "products"

    def make_record(self, i: int) -> Product:
        return Product(sku=f"CONF-{i}", name=f"Conformance {i}", price="10.00", gtin="7891000315507",
                       category_path=["Roupas"], fiscal=ProductFiscal(ncm="61091000", origin=0))


class TestCPlugCustomersAndCategories(ConnectorConformance):
    """Customers are read (a wrong CPF is quarantined); the ERP's categories are written."""

    platform = "cplug"
    pull_stream = "customers"
    push_stream = "categories"

    def make_record(self, i: int) -> Category:
        return Category(path=[f"Conformance {i}"])


class TestCPlugSellers(ConnectorConformance):
    """Sellers both ways: read from the POS, written from the ERP (matched by CPF)."""

    platform = "cplug"
    pull_stream = "sellers"
    push_stream = "sellers"

    def make_record(self, i: int) -> Seller:
        return Seller(name=f"Vendedora {i}", document=["52998224725", "11144477735", "39053344705",
                                                       "15350946056", "86288366757", "71428793860"][i])
