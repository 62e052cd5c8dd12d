"""Plugg.to as the NF-e issuer (Plugg.to's manual for Amazon "Enviado pela Amazon" FBA Onsite): the note is not
issued when an item lacks NCM, CEST or NBM, and is rejected for an incomplete customer address, an expired channel
token or wrong tax data. Each problem names the record, the field and the fix. Checked only on routes whose sink is
Plugg.to (the note's issuer there); correct the record and ``hub retry`` resends the same operation, never a
second note.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hub import RouteView
from hub.models import Canonical, FiscalProblem, Product, Sale

PLATFORM = "pluggto"
TOKEN_OPTION = "channel_token_expires_at"
"""Route option: when the marketplace token Plugg.to uses expires (Amazon's lasts a year), ISO date."""


def validate(document: Canonical, route: RouteView, products: dict[str, Product]) -> list[FiscalProblem] | None:
    if route.sink.platform != PLATFORM or not isinstance(document, Sale):
        return None
    record = f"sale {document.number}"
    problems: list[FiscalProblem] = []
    for i, item in enumerate(document.items):
        product = products.get(item.sku)
        if product is None:
            continue
        fiscal = product.fiscal
        for name, value, what in (("ncm", fiscal.ncm, "NCM (8 digits)"), ("cest", fiscal.cest, "CEST (7 digits)"),
                                  ("nbm", fiscal.nbm or fiscal.ncm, "NBM")):
            if not value:
                problems.append(FiscalProblem(
                    record=record, field=f"items[{i}] ({item.sku}) fiscal.{name}", platform=PLATFORM,
                    problem=f"product {item.sku} has no {name.upper()}: Plugg.to does not issue the NF-e",
                    fix=f"Fill the {what} of product {item.sku} on the source and sync the products to Plugg.to."))
        if fiscal.nbm and not (fiscal.nbm.isdigit() and len(fiscal.nbm) == 8):
            problems.append(FiscalProblem(
                record=record, field=f"items[{i}] ({item.sku}) fiscal.nbm", platform=PLATFORM,
                problem=f"NBM {fiscal.nbm!r} is not 8 digits (wrong tax data)",
                fix=f"Correct the NBM of product {item.sku} (the NCM's 8 digits) on the source."))
        if fiscal.origin is None:
            problems.append(FiscalProblem(
                record=record, field=f"items[{i}] ({item.sku}) fiscal.origin", platform=PLATFORM,
                problem=f"product {item.sku} has no origem (wrong tax data)",
                fix=f"Fill the origem (0 = nacional) of product {item.sku} on the source."))
    customer = document.customer
    if customer is None:
        problems.append(FiscalProblem(record=record, field="customer", platform=PLATFORM,
                                      problem="the order has no customer: Plugg.to cannot address the NF-e",
                                      fix="Check the order's payer on the channel; Plugg.to needs name, CPF/CNPJ "
                                          "and address."))
    else:
        if not customer.document:
            problems.append(FiscalProblem(record=record, field="customer.document", platform=PLATFORM,
                                          problem=f"customer {customer.name} has no CPF/CNPJ (wrong tax data)",
                                          fix="Fill the buyer's CPF/CNPJ on the order (payer_cpf / payer_cnpj)."))
        missing = customer.addresses[0].missing_for_invoice() if customer.addresses else ["address"]
        if missing:
            problems.append(FiscalProblem(
                record=record, field="customer.addresses[0]", platform=PLATFORM,
                problem=f"customer address incomplete: missing {', '.join(missing)}",
                fix=f"Complete {', '.join(missing)} of {customer.name}'s address on the order, then `hub retry`."))
    expires = route.options.get(TOKEN_OPTION)
    if expires:
        try:
            moment = datetime.fromisoformat(str(expires))
        except ValueError:
            moment = None
        now = datetime.now(UTC) if moment is not None and moment.tzinfo else datetime.now()
        if moment is None or moment <= now:
            problems.append(FiscalProblem(
                record=record, field=f"route.options.{TOKEN_OPTION}", platform=PLATFORM,
                problem=f"the channel's integration token expired ({expires}): Plugg.to cannot send the NF-e",
                fix="Renew the marketplace token in the Plugg.to panel (Amazon's lasts 1 year), update "
                    f"{TOKEN_OPTION} in the route file, then `hub retry`."))
    return problems or None
