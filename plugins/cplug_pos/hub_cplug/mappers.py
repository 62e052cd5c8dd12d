"""CPlug API v3 JSON <-> hub's canonical models. Pure functions: no I/O, so every rule here is easy to test.

Money on the wire is ``{"amount": 99.95, "currency": "BRL"}`` with a JSON number; it enters the canonical model
as ``Decimal(str(amount))`` so no float ever reaches a record.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from hub import Rejected
from hub.models import Category, Customer, PaymentMethod, Product, Sale, Seller
from pydantic import ValidationError

BRT = timezone(timedelta(hours=-3))
"""CPlug's timestamps without an offset are read as Brasília time (no daylight saving since 2019)."""

CHANNEL = "cplug"
AVAILABLE, UNAVAILABLE = "available", "unavailable"


class FieldError(ValueError):
    """A CPlug field of the wrong shape (a string where a list of objects belongs), named for the quarantine."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def objects(raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """``raw[name]`` as a list of objects (absent is empty); any other shape names the field."""
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise FieldError(name, f"expected a list of objects, got {_shape(value)}")
    return value


def mapping(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(name, f"expected an object, got {_shape(value)}")
    return value


def _shape(value: Any) -> str:
    return f"{type(value).__name__} {str(value)[:40]!r}"


# --- scalars ------------------------------------------------------------------------------------------------


def money(value: Any) -> Any:
    """``{"amount": 99.95}`` (or a bare number) as an exact Decimal; None when absent. Anything else is handed on
    as is, for the canonical model to refuse with the field's name."""
    if isinstance(value, dict):
        value = value.get("amount")
    if value is None or value == "":
        return None
    if isinstance(value, bool | dict | list):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return value


def money_json(value: Decimal) -> dict[str, Any]:
    """The wire form. A JSON number is all CPlug takes; the float's shortest repr keeps every centavo."""
    return {"amount": float(value), "currency": "BRL"}


def parse_time(value: Any) -> datetime | None:
    """A CPlug timestamp (``YYYY-MM-DDThh:mm:ss+hh:mm``; a space or no offset are tolerated) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=BRT)


def format_time(value: datetime) -> str:
    """The ``updated_from`` format: ``YYYY-MM-DDThh:mm:ss+hh:mm``."""
    return value.replace(microsecond=0).isoformat()


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _digits(value: Any) -> str | None:
    return "".join(ch for ch in str(value or "") if ch.isalnum()).upper() or None


def _looks_like_gtin(code: str | None) -> bool:
    return code is not None and code.isdigit() and len(code) in (8, 12, 13, 14)


def _active(raw: dict[str, Any]) -> bool:
    return raw.get("status", AVAILABLE) not in (UNAVAILABLE, "inactive") and not raw.get("deleted_at")


# --- CPlug -> canonical -------------------------------------------------------------------------------------


def customer_data(raw: dict[str, Any]) -> dict[str, Any]:
    """documents: cpf/cnpj -> document, ie -> state_registration, rg -> rg; the default address first.

    A dict, validated by the caller, so a sale's refusal names ``customer.document`` and not just ``document``."""
    docs: dict[str, str] = {}
    for doc in objects(raw, "documents"):
        kind, ident = str(doc.get("type", "")).lower(), _digits(doc.get("identify"))
        if ident and kind not in docs:
            docs[kind] = ident
    contacts = objects(raw, "contacts")

    def contact(*kinds: str) -> str | None:
        for kind in kinds:
            for c in contacts:
                if c.get("type") == kind and _text(c.get("value")):
                    return _text(c.get("value"))
        return None

    addresses = sorted(objects(raw, "addresses"), key=lambda a: a.get("type") != "default")
    name = raw.get("company_name") if raw.get("type") == "company" and raw.get("company_name") else raw.get("name")
    return {
        "name": str(name or ""), "document": docs.get("cpf") or docs.get("cnpj"),
        "state_registration": docs.get("ie"), "rg": docs.get("rg"),
        "email": contact("email"), "phone": contact("mobile", "phone"),
        "addresses": [{"street": _text(a.get("street")), "number": _text(a.get("number")),
                       "complement": _text(a.get("complement")), "district": _text(a.get("neighborhood")),
                       "city": _text(a.get("city")), "state": (_text(a.get("state")) or "").upper() or None,
                       "zip": _digits(a.get("zip_code"))} for a in addresses],
        "active": _active(raw),
    }


def customer(raw: dict[str, Any]) -> Customer:
    return Customer.model_validate(customer_data(raw))


def payment_method(raw: dict[str, Any]) -> PaymentMethod:
    code = raw.get("fiscal_code")
    tpag = f"{int(code):02d}" if (isinstance(code, int) and not isinstance(code, bool)) or (
        isinstance(code, str) and code.isascii() and code.isdigit()) else None
    return PaymentMethod(code=str(raw["id"]), name=str(raw.get("name") or ""), tpag=tpag, active=_active(raw))


def seller(raw: dict[str, Any]) -> Seller:
    return Seller(name=str(raw.get("name") or ""), document=_digits(raw.get("document")),
                  email=_text(raw.get("email")), active=_active(raw))


def category_path(index: dict[str, dict[str, Any]], category_id: Any) -> list[str]:
    """Names from the root down to ``category_id`` (a broken or cyclic parent chain stops where it breaks)."""
    path: list[str] = []
    seen: set[str] = set()
    current = str(category_id) if category_id is not None else None
    while current and current in index and current not in seen:
        seen.add(current)
        node = index[current]
        path.insert(0, str(node.get("name") or ""))
        parent = node.get("parent_id")
        current = str(parent) if parent is not None else None
    return path


def category(raw: dict[str, Any], index: dict[str, dict[str, Any]]) -> Category:
    return Category(path=category_path(index, raw["id"]) or [str(raw.get("name") or "")])


def _barcode(codes: list[Any], sku: str) -> str | None:
    """The first barcode that is a GTIN; a SKU used as barcode (sku_as_barcode) is not one."""
    for code in codes:
        text = _digits(code)
        if text and text != sku.upper() and _looks_like_gtin(text):
            return text
    return None


def product(raw: dict[str, Any], categories: dict[str, dict[str, Any]], units: dict[str, str]) -> Product:
    """``units`` maps unit id -> abbreviation. Only NCM, CEST and origin are read from ``fiscal``."""
    sku = str(raw.get("sku") or "")
    fiscal = mapping(raw, "fiscal")
    grid = mapping(raw, "option_type").get("type") == "grid"
    barcodes = raw.get("barcodes") or []
    if not isinstance(barcodes, list):
        raise FieldError("barcodes", f"expected a list, got {_shape(barcodes)}")
    return Product.model_validate({
        "sku": sku, "name": str(raw.get("name") or ""), "gtin": _barcode(barcodes, sku),
        "price": money(raw.get("unitary_value")), "active": _active(raw),
        "unit": units.get(str(raw.get("unit_id")), "UN"),
        "category_path": category_path(categories, raw.get("category_id")),
        "variations": [{"sku": str(v.get("sku") or ""), "gtin": _barcode([v.get("barcode")], str(v.get("sku") or "")),
                        "price": money(v.get("unitary_value")), "attributes": dict(v.get("attributes") or {}),
                        "active": _active(v)} for v in objects(raw, "variations")] if grid else [],
        "fiscal": {"ncm": _text(fiscal.get("ncm")), "cest": _text(fiscal.get("cest")), "origin": fiscal.get("origin")},
    })


def exchange_note(original_number: str | None, invoice: dict[str, Any] | None) -> str | None:
    """What the exchange (troca/devolução) left behind, for the sink's notes field."""
    parts = []
    if original_number:
        parts.append(f"Troca da venda {original_number} (CPlug)")
    if invoice:
        parts.append(f"nota de devolução nº {invoice.get('number')} série {invoice.get('series')}, "
                     f"chave {invoice.get('access_key')}")
    return "; ".join(parts) or None


def _number(value: Any) -> str | None:
    return None if value is None else str(value)


def sale(raw: dict[str, Any], *, buyer: dict[str, Any] | None, original_number: str | None) -> Sale:
    """A closed (or canceled) POS sale; ``buyer`` is the CPlug customer, if any.

    ``status`` keeps CPlug's own names (closed, canceled): the route's status table translates them."""
    return Sale.model_validate({
        "number": _number(raw.get("number")), "channel": CHANNEL,
        "store": _number(raw.get("store_id")),
        "issued_at": parse_time(raw.get("created_at")),
        "customer": customer_data(buyer) if buyer is not None else None,
        "seller": {"external_id": str(raw["seller_id"])} if raw.get("seller_id") is not None else None,
        "items": [{"sku": str(i.get("sku") or ""), "name": _text(i.get("name")), "quantity": _number(i.get("amount")),
                   "unit_price": money(i.get("unitary_value")), "discount": money(i.get("discount")) or Decimal("0")}
                  for i in objects(raw, "items")],
        "discount": money(raw.get("discount")) or Decimal("0"),
        "payments": [{"method": str(p.get("payment_method_id")), "amount": money(p.get("value")),
                      "installments": p.get("installments") or 1} for p in objects(raw, "payments")],
        "status": str(raw.get("status") or ""),
        "replaces": original_number if raw.get("exchange_of_sale_id") is not None else None,
        "notes": exchange_note(original_number, mapping(raw, "return_invoice") or None),
    })


# --- refusals -----------------------------------------------------------------------------------------------

_CPLUG_FIELDS = {
    "document": "documents (CPF/CNPJ)", "zip": "zip_code", "district": "neighborhood", "gtin": "barcodes",
    "payments": "payments", "issued_at": "created_at", "price": "unitary_value", "unit_price": "unitary_value",
    "quantity": "amount", "tpag": "fiscal_code",
}


def label(stream: str, raw: dict[str, Any]) -> str:
    """How an operator finds the record in CPlug's screens."""
    rid = raw.get("id")
    if stream == "sales":
        return f"sale {raw.get('number')} (CPlug id {rid})"
    if stream == "products":
        return f"product {raw.get('sku')} (CPlug id {rid})"
    return f"{stream[:-1].replace('_', ' ')} {raw.get('name')!r} (CPlug id {rid})"


def failed_field(exc: Exception) -> str | None:
    """The dotted canonical field a mapping error is about."""
    if isinstance(exc, FieldError):
        return exc.field
    if isinstance(exc, KeyError):
        return str(exc.args[0]) if exc.args else None
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        if not loc and "payments" in str(first.get("msg", "")):
            return "payments"
        return loc or None
    return None


def rejected(stream: str, raw: dict[str, Any], exc: Exception) -> Rejected:
    """A record CPlug holds but hub refuses: named with its field and the fix, and kept raw for the operator."""
    name = failed_field(exc)
    what = label(stream, raw)
    if isinstance(exc, ValidationError):
        reason = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors())
    else:
        reason = f"{type(exc).__name__}: {exc}"
    leaf = (name or "").split(".")[-1]
    where = _CPLUG_FIELDS.get(leaf, leaf) if name else "the record"
    if name and name.startswith("customer."):
        where = f"the customer's {where}"
    fix = f"Correct {where} of {what} in CPlug; the next sync picks it up."
    if name == "payments":
        fix = (f"The payments of {what} do not cover its total: correct them in CPlug (or cancel the sale there); "
               "the next sync picks it up.")
    return Rejected(external_id=str(raw.get("id")), reason=f"cplug {what}: {reason}", field=name, fix=fix, raw=raw)


# --- canonical -> CPlug -------------------------------------------------------------------------------------


def product_body(record: Product, *, category_id: int, unit_id: int, sku_as_barcode: bool,
                 creating: bool) -> dict[str, Any]:
    """The product as CPlug takes it. ``fiscal`` carries only NCM, CEST and origin (CPlug's "Integração Bling"): CPlug
    keeps its other tax settings, which are filled in by hand there. Without a price, an update leaves CPlug's alone."""
    body: dict[str, Any] = {
        "name": record.name, "sku": record.sku, "category_id": category_id, "unit_id": unit_id,
        "barcodes": [record.sku] if sku_as_barcode else [record.gtin] if record.gtin else [],
        "status": AVAILABLE if record.active else UNAVAILABLE,
        "option_type": {"type": "grid" if record.variations else "simple"},
        "variations": [{"sku": v.sku, "barcode": v.sku if sku_as_barcode else v.gtin,
                        "attributes": dict(v.attributes),
                        "unitary_value": money_json(v.price) if v.price is not None else None,
                        "status": AVAILABLE if v.active else UNAVAILABLE} for v in record.variations],
        "fiscal": {"ncm": record.fiscal.ncm, "cest": record.fiscal.cest, "origin": record.fiscal.origin},
    }
    if record.price is not None:
        body["unitary_value"] = money_json(record.price)
    elif creating:
        body["unitary_value"] = money_json(Decimal("0"))
    return body


def seller_body(record: Seller) -> dict[str, Any]:
    return {"name": record.name, "document": record.document, "email": record.email,
            "status": AVAILABLE if record.active else UNAVAILABLE}


def category_body(name: str, parent_id: int | None) -> dict[str, Any]:
    return {"name": name, "parent_id": parent_id, "status": AVAILABLE}
