"""The NF-e rules every platform shares (Amazon's "Manual de integração BLING" and "Manual de integração PLUGG.TO"):
fiscal data per item, a complete address, a valid CPF/CNPJ. Platform plugins add their own through the same broadcast
hook."""

from __future__ import annotations

from hub.hookspecs import hookimpl
from hub.models import Canonical, FiscalProblem, Product, Sale


@hookimpl
def validate_fiscal(document: Canonical, products: dict[str, Product]) -> list[FiscalProblem] | None:
    if isinstance(document, Product):
        return product_problems(document, f"product {document.sku}")
    if isinstance(document, Sale):
        return sale_problems(document) + item_problems(document, products)
    return None


def item_problems(sale: Sale, products: dict[str, Product]) -> list[FiscalProblem]:
    """Every item's product needs NCM and origem ("Manual de integração BLING": "atributos fiscais ausentes")."""
    problems: list[FiscalProblem] = []
    for i, item in enumerate(sale.items):
        product = products.get(item.sku)
        if product is None:
            continue
        for p in product_problems(product, f"sale {sale.number}"):
            problems.append(p.model_copy(update={"field": f"items[{i}] ({item.sku}) {p.field}"}))
    return problems


def product_problems(product: Product, record: str) -> list[FiscalProblem]:
    problems = []
    if not product.fiscal.ncm:
        problems.append(FiscalProblem(record=record, field="fiscal.ncm", problem="NCM is missing",
                                      fix="Fill the product's NCM (8 digits) on the source platform."))
    if product.fiscal.origin is None:
        problems.append(FiscalProblem(record=record, field="fiscal.origin", problem="origem is missing",
                                      fix="Fill the product's origem (0 = nacional) on the source platform."))
    return problems


def sale_problems(sale: Sale) -> list[FiscalProblem]:
    record = f"sale {sale.number}"
    problems: list[FiscalProblem] = []
    customer = sale.customer
    if customer is not None:
        if not customer.addresses:
            problems.append(FiscalProblem(record=record, field="customer.addresses", problem="no address",
                                          fix=f"Add a complete address to customer {customer.name}."))
        else:
            missing = customer.addresses[0].missing_for_invoice()
            if missing:
                problems.append(FiscalProblem(
                    record=record, field="customer.addresses[0]",
                    problem=f"address incomplete: missing {', '.join(missing)}",
                    fix=f"Complete {', '.join(missing)} in customer {customer.name}'s address."))
    return problems
