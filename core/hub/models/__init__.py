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
from hub.models.sales import TPAG_CODES, Intermediary, Payment, PaymentMethod, Sale, SaleItem
from hub.models.types import (
    AccessKey,
    Cep,
    Cest,
    Gtin,
    Money,
    Ncm,
    Quantity,
    TaxId,
    access_key_check_digit,
    normalize_document,
)

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
"""The core's streams, with the model their records validate against. Plugins may declare more
(``Platform.streams``): look a stream up with :func:`hub.streams.stream_spec`, never here."""

__all__ = [
    "ENTITY_MODELS", "TPAG_CODES", "AccessKey", "Action", "Address", "Canonical", "Category", "Cep", "Cest",
    "Customer", "FiscalProblem", "Gtin", "Intermediary", "Invoice", "Money", "Ncm", "Payment", "PaymentMethod",
    "Price", "Product", "ProductFiscal", "Quantity", "Ref", "Sale", "SaleItem", "Seller", "StatusTransition",
    "StockLevel", "TaxId", "Variation", "access_key_check_digit", "normalize_document",
]
