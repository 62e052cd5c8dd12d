"""The sandbox's NF-e issuer: Plugg.to issuing the note of an order with the seller's A1 certificate.

Plugg.to's manual for Amazon "Enviado pela Amazon" (FBA Onsite) names why a note is not issued or is rejected: (a)
the product's fiscal attributes (NCM, CEST and NBM) missing, (b) the customer's address incomplete, (c) the
channel's token expired, (d) wrong tax data. The issuer checks the order and the SKUs it holds at the moment the
note is submitted (and again when it is resent), and lists every cause found in ``issues[{code, field,
message}]``. The resource's shape follows the public "create or update an invoice" page (``number``, ``nfe_serie``,
``reference_order``, ``nfe_key``, ``nfe_date``, ``nfe_status``, ``files[{url, type}]``); its path is not public and
is an assumption (plugin README).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.models import Customer

ISSUER_CNPJ = "11222333000181"
UF_CODE = "35"
MISSING_FISCAL, INCOMPLETE_ADDRESS, TOKEN_EXPIRED, TAX_DATA = (
    "missing_fiscal_attributes", "incomplete_address", "token_expired", "tax_data")
ADDRESS_PARTS = ("address", "address_number", "neighborhood", "city", "state", "zipcode")


def check_digit(first43: str) -> int:
    """The NF-e access key's mod-11 check digit (weights 2..9 from the right)."""
    total = sum(int(d) * (2 + i % 8) for i, d in enumerate(reversed(first43)))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def access_key(number: int, issued: datetime, code: int) -> str:
    first43 = f"{UF_CODE}{issued:%y%m}{ISSUER_CNPJ}55001{number:09d}1{code % 10**8:08d}"
    return first43 + str(check_digit(first43))


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def _issue(code: str, field: str, message: str) -> dict[str, str]:
    return {"code": code, "field": field, "message": message}


def problems(order: dict[str, Any], fiscal_of: dict[str, dict[str, Any] | None],
             token_expires: datetime | None, now: datetime) -> list[dict[str, str]]:
    """Every reason Plugg.to would not issue (or SEFAZ would reject) the order's note. ``fiscal_of``: each item's
    SKU -> the product holding it (None: not in the catalog)."""
    found: list[dict[str, str]] = []
    for i, item in enumerate(order.get("items") or []):
        sku = str((item.get("variation") or {}).get("sku") or item.get("sku") or "")
        product = fiscal_of.get(sku)
        if product is None:
            found.append(_issue(MISSING_FISCAL, f"items[{i}].sku", f"SKU {sku} is not in the catalog: no NCM, "
                                                                    "CEST or NBM"))
            continue
        for name in ("ncm", "cest", "nbm"):
            value = product.get(name) or (product.get("nbm") if name == "ncm" else None)
            if not value:
                found.append(_issue(MISSING_FISCAL, f"items[{i}].{name}", f"SKU {sku} has no {name.upper()}"))
        for name, length in (("ncm", 8), ("nbm", 8), ("cest", 7)):
            value = product.get(name)
            if value and not (str(value).isdigit() and len(str(value)) == length):
                found.append(_issue(TAX_DATA, f"items[{i}].{name}", f"SKU {sku}: {name.upper()} {value!r} is not "
                                                                     f"{length} digits"))
        origin = product.get("origin")
        if origin is None or str(origin) not in {str(n) for n in range(9)}:
            found.append(_issue(TAX_DATA, f"items[{i}].origin", f"SKU {sku}: origin {origin!r} is not 0-8"))
    prefix = "receiver" if any(order.get(f"receiver_{p}") for p in ADDRESS_PARTS) else "payer"
    missing = [p for p in ADDRESS_PARTS if not str(order.get(f"{prefix}_{p}") or "").strip()]
    if not missing and len(_digits(order.get(f"{prefix}_zipcode"))) != 8:
        missing = ["zipcode"]
    if missing:
        found.append(_issue(INCOMPLETE_ADDRESS, f"{prefix}_{missing[0]}",
                            f"the customer's address lacks {', '.join(missing)}"))
    document = _digits(order.get("payer_cnpj") or order.get("payer_cpf") or order.get("payer_tax_id")
                       or order.get("payer_document"))
    try:
        valid = bool(document) and Customer(name="-", document=document).document is not None
    except ValueError:
        valid = False
    if not valid:
        found.append(_issue(TAX_DATA, "payer_cpf", f"the buyer's CPF/CNPJ {document or '(none)'} is not valid"))
    if token_expires is not None and token_expires <= now:
        found.append(_issue(TOKEN_EXPIRED, "channel", f"the {order.get('channel')} token expired on "
                                                      f"{token_expires:%Y-%m-%d}"))
    return found


TPAG_WORDS = (("pix", "17"), ("boleto", "15"), ("débito", "04"), ("debit", "04"), ("crédito", "03"),
              ("credit", "03"))
"""Plugg.to carries a payment as the channel's text: the tPag a note prints for it (else 99, Outros)."""


def _party(order: dict[str, Any], prefix: str, document: str) -> Any:
    import hub.sandbox.nfe as nfe

    def part(name: str) -> str:
        return str(order.get(f"{prefix}_{name}") or order.get(f"payer_{name}") or "")

    return nfe.Party(document=document, name=str(order.get(f"{prefix}_name") or order.get("payer_name") or "-"),
                     street=part("address") or "-", number=part("address_number") or "S/N",
                     district=part("neighborhood") or "-", city=part("city") or "-", uf=part("state") or "SP",
                     zip=_digits(part("zipcode")) or "00000000", complement=part("address_complement") or None,
                     email=str(order.get("payer_email") or "") or None)


def nfe_xml(order: dict[str, Any], fiscal_of: dict[str, dict[str, Any] | None], key: str, issued: datetime
            ) -> str:
    """The authorized ``nfeProc`` of an order's note (the shared sandbox NF-e, :mod:`hub.sandbox.nfe`): the payer as
    recipient, the items with their SKU's NCM, CEST and origem, the order's freight, discount and payments."""
    from decimal import Decimal

    import hub.sandbox.nfe as nfe

    document = _digits(order.get("payer_cnpj") or order.get("payer_cpf") or order.get("payer_tax_id")
                       or order.get("payer_document"))
    prefix = "receiver" if any(order.get(f"receiver_{p}") for p in ADDRESS_PARTS) else "payer"
    items = []
    for item in order.get("items") or []:
        sku = str((item.get("variation") or {}).get("sku") or item.get("sku") or "")
        fiscal = fiscal_of.get(sku) or {}
        items.append(nfe.Item(sku=sku, name=str(item.get("name") or sku),
                              ncm=str(fiscal.get("ncm") or fiscal.get("nbm") or ""),
                              quantity=Decimal(str(item.get("quantity") or 1)),
                              unit_price=Decimal(str(item.get("price") or 0)),
                              origin=int(fiscal.get("origin") or 0), cest=fiscal.get("cest") or None))
    payments = []
    for payment in order.get("payments") or []:
        text = f"{payment.get('payment_method') or ''} {payment.get('payment_type') or ''}".lower()
        tpag = next((code for word, code in TPAG_WORDS if word in text), "99")
        payments.append((tpag, Decimal(str(payment.get("payment_total") or 0)), None))
    xml: str = nfe.authorized_nfe(key=key, issued=issued, issuer=nfe.Party(document=ISSUER_CNPJ,
                                                                           name="Loja Modelo Ltda", ie="110042490114"),
                                  recipient=_party(order, prefix, document), items=items, payments=payments,
                                  freight=Decimal(str(order.get("shipping") or 0)),
                                  discount=Decimal(str(order.get("discount") or 0)))
    return xml
