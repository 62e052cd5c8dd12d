"""Plugg.to's JSON <-> hub's canonical model. Field names are Plugg.to's (public docs and the official PHP SDK);
what they mean where those are silent is in the README."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.models import (
    Address,
    Customer,
    Payment,
    Product,
    ProductFiscal,
    Sale,
    SaleItem,
    Variation,
    normalize_document,
)

STATUSES = frozenset({
    "pending", "paid", "approved", "waiting_invoice", "invoiced", "invoice_error", "shipping_informed", "shipped",
    "shipping_error", "delivered", "canceled", "under_review", "partial_payment",
})
"""The order statuses of the official SDK's validator (ValidationOrderPlugg.php), plus ``partial_payment`` that
third-party code sends."""
CATEGORY_SEPARATOR = " > "


class Unmappable(ValueError):
    """A record read from Plugg.to that cannot become a canonical record: its field and the fix."""

    def __init__(self, field: str, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.field, self.reason, self.fix = field, reason, fix


# --- time -------------------------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """Plugg.to's dates (``2024-07-15T18:07:07.000Z``, with an offset, or a bare date) as naive UTC."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace("Z", "+00:00")
    if " " in text and "T" not in text:
        text = text.replace(" ", "T", 1)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def format_time(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


# --- amounts ----------------------------------------------------------------------------------------------------


def money(value: Any) -> Decimal:
    """An amount as Plugg.to writes it (a JSON number): exact from its text, never through a float's bits."""
    if value in (None, ""):
        return Decimal("0")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount") from None


def _opt_money(value: Any) -> Decimal | None:
    return None if value in (None, "") else money(value)


# --- products ---------------------------------------------------------------------------------------------------


def _attributes_in(raw: Any) -> dict[str, str]:
    """``[{"code", "label", "value": {"code", "label"}}]`` -> {label: value label}."""
    found: dict[str, str] = {}
    for attr in raw if isinstance(raw, list) else []:
        if not isinstance(attr, dict):
            continue
        name = attr.get("label") or attr.get("code")
        value = attr.get("value")
        text = (value.get("label") or value.get("code")) if isinstance(value, dict) else value
        if name and text not in (None, ""):
            found[str(name)] = str(text)
    return found


def _attributes_out(attributes: dict[str, str]) -> list[dict[str, Any]]:
    return [{"code": name, "label": name, "value": {"code": value, "label": value}}
            for name, value in attributes.items()]


def fiscal_in(raw: dict[str, Any]) -> ProductFiscal:
    """NCM is read from ``ncm`` or, failing that, ``nbm`` (the official SDK's name for it); NBM the other way
    round; CEST from ``cest``."""
    ncm = raw.get("ncm") or raw.get("nbm")
    nbm = raw.get("nbm") or raw.get("ncm")
    origin = str(raw.get("origin"))
    return ProductFiscal(ncm=str(ncm) if ncm else None, cest=str(raw["cest"]) if raw.get("cest") else None,
                         nbm=str(nbm) if nbm else None,
                         origin=int(origin) if origin.isdigit() and int(origin) <= 8 else None)


def fiscal_out(fiscal: ProductFiscal, fields: list[str], nbm_from_ncm: bool = True) -> dict[str, Any]:
    """The fiscal fields written: ``ncm``, ``nbm`` (NBM, or the NCM when the record has none and the route maps it
    so, ``nbm_from_ncm``: the SDK writes the NCM there) and ``cest``, each only if the connection's
    ``fiscal_fields`` lists it."""
    values = {"ncm": fiscal.ncm, "nbm": fiscal.nbm or (fiscal.ncm if nbm_from_ncm else None), "cest": fiscal.cest}
    out: dict[str, Any] = {name: values[name] for name in fields if values.get(name)}
    if fiscal.origin is not None:
        out["origin"] = fiscal.origin
    return out


def product_in(raw: dict[str, Any]) -> Product:
    categories = [c.get("name") for c in raw.get("categories") or [] if isinstance(c, dict) and c.get("name")]
    path = [part.strip() for part in str(categories[0]).split(">") if part.strip()] if categories else []
    photos = sorted((p for p in raw.get("photos") or [] if isinstance(p, dict) and p.get("url")),
                    key=lambda p: int(p.get("order") or 0))
    variations = [Variation(sku=str(v["sku"]), gtin=v.get("ean") or None, price=_opt_money(v.get("price")),
                            attributes=_attributes_in(v.get("attributes")))
                  for v in raw.get("variations") or [] if isinstance(v, dict) and v.get("sku")]
    price = _opt_money(raw.get("special_price")) or _opt_money(raw.get("price"))
    return Product(sku=str(raw.get("sku") or ""), name=str(raw.get("name") or ""), gtin=raw.get("ean") or None,
                   price=price, active=str(raw.get("available", 1)) not in ("0", "False", "false"),
                   category_path=path, attributes=_attributes_in(raw.get("attributes")), variations=variations,
                   images=[str(p["url"]) for p in photos], fiscal=fiscal_in(raw))


def product_out(record: Product, fiscal_fields: list[str], nbm_from_ncm: bool = True) -> dict[str, Any]:
    """The ``PUT /skus/{sku}`` upsert body. Stock is not sent here (it has its own stream): an upsert leaves the
    quantity Plugg.to holds as it is."""
    body: dict[str, Any] = {"sku": record.sku, "name": record.name, "available": 1 if record.active else 0}
    if record.price is not None:
        body["price"] = record.price
    if record.gtin:
        body["ean"] = record.gtin
    else:
        body["ean_not_mandatory"] = True
    if record.images:
        body["photos"] = [{"url": url, "order": i, "name": f"{record.sku}-{i}"} for i, url in enumerate(record.images)]
    if record.category_path:
        body["categories"] = [{"name": CATEGORY_SEPARATOR.join(record.category_path)}]
    if record.attributes:
        body["attributes"] = _attributes_out(record.attributes)
    if record.variations:
        body["variations"] = [_variation_out(record, v) for v in record.variations if v.active]
    body.update(fiscal_out(record.fiscal, fiscal_fields, nbm_from_ncm))
    return body


def _variation_out(parent: Product, variation: Variation) -> dict[str, Any]:
    label = " ".join(variation.attributes.values())
    out: dict[str, Any] = {"sku": variation.sku, "name": f"{parent.name} {label}".strip(),
                           "attributes": _attributes_out(variation.attributes)}
    price = variation.price if variation.price is not None else parent.price
    if price is not None:
        out["price"] = price
    if variation.gtin:
        out["ean"] = variation.gtin
    return out


# --- orders -----------------------------------------------------------------------------------------------------


def _name(*parts: Any) -> str:
    return " ".join(str(p).strip() for p in parts if p and str(p).strip())


def document_of(raw: dict[str, Any]) -> str | None:
    """The payer's CPF or CNPJ, whichever field carries it, masked or not, as digits (letters kept: the
    alphanumeric CNPJ)."""
    for name in ("payer_cnpj", "payer_cpf", "payer_tax_id", "payer_document", "receiver_cpf"):
        value = raw.get(name)
        if value and normalize_document(str(value)):
            return normalize_document(str(value))
    return None


def _address(raw: dict[str, Any], prefix: str) -> Address | None:
    if not any(raw.get(f"{prefix}_{k}") for k in ("address", "city", "zipcode")):
        return None
    state = str(raw.get(f"{prefix}_state") or "").strip().upper() or None
    zip_code = "".join(ch for ch in str(raw.get(f"{prefix}_zipcode") or "") if ch.isdigit()) or None
    return Address(street=raw.get(f"{prefix}_address") or None, number=str(raw.get(f"{prefix}_address_number") or "")
                   or None, complement=raw.get(f"{prefix}_address_complement") or None,
                   district=raw.get(f"{prefix}_neighborhood") or None, city=raw.get(f"{prefix}_city") or None,
                   state=state, zip=zip_code if zip_code and len(zip_code) == 8 else None)  # type: ignore[arg-type]


def customer_in(raw: dict[str, Any]) -> Customer | None:
    document = document_of(raw)
    name = (raw.get("payer_razao_social") or raw.get("payer_company_name") or raw.get("payer_fullname")
            or _name(raw.get("payer_name"), raw.get("payer_lastname"))
            or _name(raw.get("receiver_name"), raw.get("receiver_lastname")))
    if not name and not document:
        return None
    try:
        customer = Customer(name=name or "Cliente", document=document)
    except ValueError:
        raise Unmappable("customer.document", f"the payer's CPF/CNPJ {document!r} is not valid (wrong check digit "
                                              "or length)",
                         "Correct the buyer's CPF/CNPJ on the order in the Plugg.to panel (or on the channel); "
                         "the next sync reads it again.") from None
    addresses = [a for a in (_address(raw, "payer"), _address(raw, "receiver")) if a is not None]
    phone = _name(raw.get("payer_phone_area"), raw.get("payer_phone")) or _name(raw.get("receiver_phone_area"),
                                                                                 raw.get("receiver_phone"))
    return customer.model_copy(update={
        "state_registration": raw.get("payer_ie") or None, "email": raw.get("payer_email") or
        raw.get("receiver_email") or None, "phone": phone or None,
        "addresses": list(dict.fromkeys(addresses))})


def sale_in(raw: dict[str, Any]) -> Sale:
    status = str(raw.get("status") or "")
    if status not in STATUSES:
        raise Unmappable("status", f"order status {status!r} is not one Plugg.to documents",
                         "Check the order in the Plugg.to panel; if Plugg.to added a status, add it to the plugin.")
    items = []
    for i, item in enumerate(raw.get("items") or []):
        variation = item.get("variation") if isinstance(item.get("variation"), dict) else {}
        sku = variation.get("sku") or item.get("sku")
        if not sku:
            raise Unmappable(f"items[{i}].sku", "an order item has no SKU",
                             "Link the item to a product in the Plugg.to panel; the next sync reads it again.")
        quantity = money(item.get("quantity"))
        price = money(item.get("price"))
        discount = money(item.get("discount"))  # the line's discount (README)
        items.append(SaleItem(sku=str(sku), name=variation.get("name") or item.get("name") or None,
                              quantity=quantity, unit_price=price, discount=discount))
    payments = [Payment(method=str(p.get("payment_method") or p.get("payment_type") or "unknown"),
                        name=str(p.get("payment_method") or p.get("payment_type") or "unknown"),
                        amount=money(p.get("payment_total")),
                        installments=max(1, int(p.get("payment_installments") or 1)))
                for p in raw.get("payments") or [] if isinstance(p, dict)]
    created = parse_time(raw.get("created")) or parse_time(raw.get("modified"))
    if created is None:
        raise Unmappable("created", "the order has no creation date", "Check the order in the Plugg.to panel.")
    channel_id = raw.get("original_id") or raw.get("external")
    notes = f"{raw.get('channel') or 'Plugg.to'} order {channel_id}" if channel_id else None
    return Sale(number=str(raw["id"]), channel=raw.get("channel") or None, issued_at=created,
                customer=customer_in(raw), items=items, discount=money(raw.get("discount")),
                freight=money(raw.get("shipping")), payments=payments, status=status, notes=notes)
