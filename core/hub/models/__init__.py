"""The canonical model: platform-neutral, English names, exact money."""

from hub.models.base import Canonical, Ref
from hub.models.catalog import (
    Category,
    Price,
    Product,
    ProductFiscal,
    StockLevel,
    Variation,
)
from hub.models.fiscal import Action, FiscalProblem, Invoice, StatusTransition
from hub.models.parties import Address, Customer, Seller
from hub.models.sales import TPAG_CODES, Payment, PaymentMethod, Sale, SaleItem

ENTITY_MODELS: dict[str, type[Canonical]] = {
    "categories": Category,
    "products": Product,
    "stock": StockLevel,
    "prices": Price,
    "customers": Customer,
    "sellers": Seller,
    "payment_methods": PaymentMethod,
    "sales": Sale,
    "invoices": Invoice,
}
"""Every stream name a route may list, with the model its records validate against."""

__all__ = [
    "ENTITY_MODELS", "TPAG_CODES", "Action", "Address", "Canonical", "Category", "Customer", "FiscalProblem",
    "Invoice", "Payment", "PaymentMethod", "Price", "Product", "ProductFiscal", "Ref", "Sale", "SaleItem",
    "Seller", "StatusTransition", "StockLevel", "Variation",
]
