"""Zydon's records <-> hub's canonical model. Zydon's field names stay in this module (and the sandbox).

Money: Zydon's prices and values are reais as JSON numbers (``19.9``), never cents; they are read through ``str`` so
no float reaches the canonical model, and written as numbers by :meth:`hub.ApiClient.encode`.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hub.models import (
    Address,
    Customer,
    Payment,
    PaymentMethod,
    Product,
    Sale,
    SaleItem,
    Variation,
    normalize_document,
)

PERSON, COMPANY = "PF", "PJ"
"""Partner ``type`` values (assumed: Zydon documents the field, not its values)."""


def fold(text: Any) -> str:
    """Case, accents and surrounding spaces folded: how a status or payment method name is compared."""
    decomposed = unicodedata.normalize("NFKD", str(text or "").strip().casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


def money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 stamp as an aware datetime (naive ones are UTC); None when absent; ValueError when garbled."""
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- reads ------------------------------------------------------------------------------------------------------


def _attributes(raw: dict[str, Any]) -> dict[str, str]:
    specs = raw.get("category_specifications") or []
    found = {str(s["name"]): str(s.get("value") or "") for s in specs if isinstance(s, dict) and s.get("name")}
    extra = raw.get("attributes")
    if isinstance(extra, dict):
        found.update({str(k): str(v) for k, v in extra.items()})
    return found


def product(raw: dict[str, Any]) -> Product:
    variations = [Variation(sku=v["sku"], gtin=v.get("ean_gtin") or None, price=money(v.get("price")),
                            attributes={str(x["name"]): str(x.get("value") or "") for x in v.get("values") or []
                                        if isinstance(x, dict) and x.get("name")},
                            active=bool(v.get("active", True)))
                  for v in raw.get("variations") or []]
    category = raw.get("category_name")
    return Product(sku=raw["sku"], name=raw["name"], gtin=raw.get("ean_gtin") or None, price=money(raw.get("price")),
                   active=bool(raw.get("active", True)), unit=raw.get("standard_unit_abbreviation") or "UN",
                   category_path=[str(category)] if category else [], attributes=_attributes(raw),
                   variations=variations,
                   images=[str(i["image_url"]) for i in raw.get("images") or []
                           if isinstance(i, dict) and i.get("image_url")])


def address(raw: dict[str, Any]) -> Address:
    return Address(street=raw.get("street") or None, number=raw.get("number") or None,
                   complement=raw.get("complement") or None, district=raw.get("neighborhood") or None,
                   city=raw.get("city") or None, state=raw.get("state") or None,
                   zip=raw.get("postal_code") or None, country=raw.get("country") or "BR")


def customer(raw: dict[str, Any]) -> Customer:
    document = raw.get("fiscal_registration_number") or None
    registration = raw.get("state_registration") or None
    person = raw.get("type") == PERSON or (document is not None and len(normalize_document(document)) == 11)
    addresses = sorted((a for a in raw.get("addresses") or [] if isinstance(a, dict)),
                       key=lambda a: not a.get("main_address"))
    return Customer(name=raw["name"], document=document,
                    state_registration=None if person else registration, rg=registration if person else None,
                    email=raw.get("email") or None, phone=raw.get("phone") or raw.get("mobile") or None,
                    addresses=[address(a) for a in addresses], active=bool(raw.get("active", True)))


def payment_method(raw: dict[str, Any]) -> PaymentMethod:
    return PaymentMethod(code=str(raw["id"]), name=raw["name"], active=bool(raw.get("active", True)))


def sale(raw: dict[str, Any], *, buyer: Customer | None, status: str, methods: dict[str, str]) -> Sale:
    """An order read by id (``GET /api/sales/orders/{id}``); ``methods`` maps payment method ids to names."""
    items = [SaleItem(sku=i["sku"], name=i.get("name") or None, quantity=Decimal(str(i["quantity"])),
                      unit_price=Decimal(str(i["unitValue"])), discount=Decimal(str(i.get("discount") or 0)))
             for i in raw["items"]]
    payments = [Payment(method=str(p["paymentMethodId"]), name=methods.get(str(p["paymentMethodId"])),
                        amount=Decimal(str(p["amount"])), installments=int(p.get("installments") or 1))
                for p in raw.get("payments") or []]
    issued = parse_time(raw.get("negotiation_date") or raw.get("created_at"))
    if issued is None:
        raise KeyError("negotiation_date")
    return Sale(number=str(raw["id"]), channel="zydon", issued_at=issued, customer=buyer, items=items,
                discount=Decimal(str(raw.get("discount_value") or 0)),
                freight=Decimal(str(raw.get("freight_value") or 0)), payments=payments, status=status,
                notes=raw.get("observation") or None)


# --- writes -----------------------------------------------------------------------------------------------------


def product_body(record: Product, *, unit_id: Any, category_id: Any | None, axes: dict[str, Any],
                 current: dict[str, Any] | None = None) -> dict[str, Any]:
    """``POST|PUT /api/sales/products``: price in reais; variations keep their Zydon ids on update."""
    known = {v.get("sku"): v for v in (current or {}).get("variations") or []}
    out: dict[str, Any] = {
        "sku": record.sku, "name": record.name, "active": record.active, "standard_unit_id": unit_id,
        "ean_gtin": record.gtin, "price": record.price if record.price is not None else Decimal("0"),
        "category_specifications": [{"name": k, "value": v} for k, v in sorted(record.attributes.items())],
        "variations": [{**({"id": known[v.sku]["id"]} if v.sku in known else {}),
                        "sku": v.sku, "ean_gtin": v.gtin, "active": v.active,
                        "price": v.price if v.price is not None else (record.price or Decimal("0")),
                        "values": [{"variation_id": axes.get(fold(name)), "name": name, "value": value}
                                   for name, value in sorted(v.attributes.items())]}
                       for v in record.variations],
    }
    if category_id is not None:
        out["category_id"] = category_id
    if current is None:
        out["stock"] = 0
        out["images"] = []
    return out


def partner_body(record: Customer) -> dict[str, Any]:
    person = record.person_type == "F" or (record.document is None and record.rg is not None)
    addresses = [{"address_type": "BILLING" if i == 0 else "DELIVERY", "street": a.street, "number": a.number,
                  "complement": a.complement, "neighborhood": a.district, "city": a.city, "state": a.state,
                  "country": a.country, "postal_code": a.zip, "main_address": i == 0}
                 for i, a in enumerate(record.addresses)]
    return {"name": record.name, "type": PERSON if person else COMPANY,
            "fiscal_registration_number": record.document,
            "state_registration": record.state_registration or record.rg,
            "email": record.email, "phone": record.phone, "active": record.active, "addresses": addresses}
