"""Amazon's shapes <-> hub's canonical models: an Orders API v2026-01-01 order (with its ``includedData``) as a
:class:`hub.models.Sale`, a product as a listings body, and the checks run on an NF-e XML before it is submitted.

Field meanings come from the models in ``shared/specs/amazon``; what they leave open is assumed here (README,
"Assumptions"): the shipment id is the order's ``fulfillmentOrders[].fulfillmentOrderId`` (the model says it "is
identical to the Shipment ID"), the buyer's CPF/CNPJ is its ``tax.taxRegistrations`` entry of entityType BUYER and the
intermediary's CNPJ the MARKETPLACE one.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hub.models import Address, Customer, Intermediary, Payment, Product, Sale, SaleItem, access_key_check_digit

CREATED, CANCELLED = "Created", "Cancelled"
"""The sale statuses: the FBA_OUTBOUND_SHIPMENT_STATUS values (a route maps them to the ERP's statuses)."""
TPAG = {"CreditCard": "03", "DebitCard": "04", "Pix": "17", "BankSlip": "15", "GiftCard": "05", "Other": "99"}
"""Amazon's PaymentMethod values -> NF-e tPag (the shipment-invoicing model's enum, mapped by hand)."""
INCLUDED = "BUYER,RECIPIENT,PROCEEDS,TAX,PAYMENT,FULFILLMENT,FULFILLMENT_ORDERS"
NFE = "{http://www.portalfiscal.inf.br/nfe}"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(node: Any) -> Decimal:
    if not isinstance(node, dict) or node.get("amount") in (None, ""):
        return Decimal("0")
    return Decimal(str(node["amount"]))


def shipment_ids(order: dict[str, Any]) -> list[str]:
    return [str(f["fulfillmentOrderId"]) for f in order.get("fulfillmentOrders") or []
            if isinstance(f, dict) and f.get("fulfillmentOrderId")]


def registration(order: dict[str, Any], entity: str) -> dict[str, Any] | None:
    for reg in (order.get("tax") or {}).get("taxRegistrations") or []:
        if isinstance(reg, dict) and reg.get("entityType") == entity:
            return reg
    return None


def _address(node: dict[str, Any]) -> Address:
    extended = node.get("extendedFields") or {}
    return Address(street=extended.get("streetName") or node.get("addressLine1"),
                   number=extended.get("streetNumber") or node.get("addressLine2"),
                   complement=extended.get("complement") or node.get("addressLine3"),
                   district=extended.get("neighborhood") or node.get("districtOrCounty"),
                   city=node.get("city") or node.get("municipality"), state=node.get("stateOrRegion") or None,
                   zip=node.get("postalCode") or None, country=node.get("countryCode") or "BR")


def customer(order: dict[str, Any]) -> Customer | None:
    buyer = order.get("buyer") or {}
    delivery = (order.get("recipient") or {}).get("deliveryAddress") or {}
    tax = registration(order, "BUYER") or {}
    name = tax.get("legalName") or buyer.get("buyerCompanyName") or buyer.get("buyerName") or delivery.get("name")
    if not name:
        return None
    document = tax.get("taxRegistrationNumber") if tax.get("taxRegistrationType") in ("CPF", "CNPJ") else None
    return Customer(name=name, document=document, email=buyer.get("buyerEmail"), phone=delivery.get("phone"),
                    addresses=[_address(delivery)] if delivery else [])


def _payments(order: dict[str, Any]) -> tuple[list[Payment], list[str]]:
    payments, notes = [], []
    for execution in (order.get("payment") or {}).get("paymentExecutions") or []:
        method = str(execution.get("paymentMethod") or "Other")
        payments.append(Payment(method=method, name=method, amount=money(execution.get("paymentAmount")),
                                tpag=TPAG.get(method)))
        extra = [f"{k} {execution[k]}" for k in ("cardBrand", "acquirerId", "authorizationCode") if execution.get(k)]
        if extra:
            notes.append(f"{method}: {', '.join(extra)}")
    return payments, notes


def number(order_id: str, shipment_id: str) -> str:
    """The sale number of one FBA Onsite shipment: the Amazon order id and the shipment id. An order Amazon delivers
    in two shipments makes two sales (two NF-e), each with its own number; it depends on nothing else (not on how
    many shipments the order has when it is read, nor in which order Amazon lists them), so it never changes."""
    return f"{order_id}-{shipment_id}"


def order_id_of(sale_number: str | None) -> str | None:
    """The Amazon order id in a sale number made by :func:`number` (``701-1234567-1234567-DxxXxxXxx``)."""
    parts = (sale_number or "").split(":")[-1].split("-")
    return "-".join(parts[:3]) if len(parts) >= 3 else None


def _share(amount: Decimal, ratio: Decimal) -> Decimal:
    return (amount * ratio).quantize(Decimal("0.01"))


def intermediary(order: dict[str, Any], seller_id: str | None) -> Intermediary | None:
    """Amazon as the sale's intermediary (NF-e ``infIntermed``), from the order's MARKETPLACE tax registration;
    None when Amazon sent none (the note then goes without it, and an Errored invoice names that cause)."""
    marketplace = registration(order, "MARKETPLACE") or {}
    cnpj = marketplace.get("taxRegistrationNumber")
    try:
        return Intermediary(tax_id=cnpj, seller_id=seller_id) if cnpj else None
    except ValueError:
        return None


def sale(order: dict[str, Any], shipment_id: str, *, store: str, cancelled: bool = False,
         lines: list[dict[str, Any]] | None = None, seller_id: str | None = None) -> Sale:
    """The sale of one FBA Onsite shipment: number = the order id and the shipment id, status Created or Cancelled.

    ``lines``: the shipment's ``ShipmentItems`` (getShipmentDetails) when Amazon split the order into several
    shipments: the sale then has only those items (their quantities), and the order's freight, discount and
    payments in proportion to the value it carries, so each shipment's NF-e is paid in full."""
    status = (order.get("fulfillment") or {}).get("fulfillmentStatus")
    shipped = None if lines is None else {str(line["OrderItemId"]): Decimal(str(line["QuantityOrdered"]))
                                          for line in lines}
    items: list[SaleItem] = []
    whole = Decimal("0")
    for item in order["orderItems"]:
        quantity = Decimal(str(item["quantityOrdered"]))
        line = SaleItem(sku=str(item["product"]["sellerSku"]), name=item["product"].get("title"),
                        quantity=quantity, unit_price=money((item["product"].get("price") or {}).get("unitPrice")))
        whole += line.total
        if shipped is None:
            items.append(line)
        elif str(item.get("orderItemId")) in shipped:
            items.append(line.model_copy(update={"quantity": shipped[str(item["orderItemId"])]}))
    if shipped is not None and not items:
        raise KeyError("ShipmentItems")
    carried = sum((i.total for i in items), Decimal("0"))
    ratio = Decimal("1") if shipped is None or not whole else carried / whole
    breakdowns = {str(b.get("type")): money(b.get("subtotal"))
                  for b in (order.get("proceeds") or {}).get("breakdowns") or [] if isinstance(b, dict)}
    payments, notes = _payments(order)
    discount = abs(breakdowns.get("DISCOUNT", Decimal("0")))
    freight = breakdowns.get("SHIPPING", Decimal("0"))
    if shipped is not None:
        freight, discount = _share(freight, ratio), _share(discount, ratio)
        due = carried + freight - discount
        split = [p.model_copy(update={"amount": _share(p.amount, ratio)}) for p in payments]
        if split:  # the last payment takes the rounding, so the shipment is paid exactly
            split[-1] = split[-1].model_copy(update={"amount": due - sum((p.amount for p in split[:-1]),
                                                                         Decimal("0"))})
        payments = split
    marketplace = registration(order, "MARKETPLACE") or {}
    header = f"Amazon order {order['orderId']}, FBA Onsite shipment {shipment_id}"
    if shipped is not None:
        header += f" (one of {len(shipment_ids(order))} shipments of the order)"
    if marketplace.get("taxRegistrationNumber"):
        header += (f"; intermediary {marketplace.get('legalName') or 'Amazon'} CNPJ "
                   f"{marketplace['taxRegistrationNumber']}")
    created = parse_time(order["createdTime"])
    assert created is not None
    return Sale(number=number(str(order["orderId"]), shipment_id), channel="amazon", store=store,
                issued_at=created, customer=customer(order), items=items, freight=freight, discount=discount,
                payments=payments, status=CANCELLED if cancelled or status == "CANCELLED" else CREATED,
                notes="; ".join([header, *notes]), intermediary=intermediary(order, seller_id))


# --- listings -----------------------------------------------------------------------------------------------------


def listing_attributes(product: Product, marketplace: str, channel_code: str, price: Decimal | None
                       ) -> dict[str, Any]:
    """The attributes of an FBA Onsite offer: never a quantity (FBA Onsite stock lives in Amazon's Onsite tool;
    sending one creates a duplicate merchant-fulfilled offer)."""
    here = {"marketplace_id": marketplace}
    attributes: dict[str, Any] = {
        "item_name": [{"value": product.name, "language_tag": "pt_BR", **here}],
        "condition_type": [{"value": "new_new", **here}],
        "fulfillment_availability": [{"fulfillment_channel_code": channel_code}],
    }
    if price is not None:
        attributes["purchasable_offer"] = [{"currency": "BRL", **here,
                                            "our_price": [{"schedule": [{"value_with_tax": float(price)}]}]}]
    if product.gtin:
        attributes["externally_assigned_product_identifier"] = [{"type": "ean", "value": product.gtin, **here}]
    if product.fiscal.ncm:
        attributes["ncm_code"] = [{"value": product.fiscal.ncm, **here}]
    if product.fiscal.origin is not None:
        attributes["import_designation"] = [{"value": str(product.fiscal.origin), **here}]
    return attributes


def channels(listing: dict[str, Any]) -> set[str]:
    """The fulfillment channels a listing is offered through (``fulfillmentAvailability``)."""
    return {str(f.get("fulfillmentChannelCode")) for f in listing.get("fulfillmentAvailability") or []
            if isinstance(f, dict)}


# --- the NF-e before it is submitted ---------------------------------------------------------------------------------


def md5_base64(xml: bytes) -> str:
    """Content-MD5 as the shipment-invoicing tutorial computes it: the base64 of the MD5 digest of the file."""
    return base64.b64encode(hashlib.md5(xml).digest()).decode()


def xml_problems(xml: str | None, access_key: str | None, skus: list[str] | None = None) -> list[tuple[str, str]]:
    """(field, problem) for an NF-e XML Amazon would not accept: not SEFAZ-authorized, another access key, a check
    digit that does not match, items that are not the shipment's. ``Errored`` carries no reason from Amazon, so
    these are the hub's own likely causes."""
    if not xml:
        return [("xml", "the invoice carries no XML (Amazon takes the authorized nfeProc file)")]
    try:
        root = ET.fromstring(xml.encode())
    except ET.ParseError as exc:
        return [("xml", f"the XML does not parse ({exc})")]
    problems: list[tuple[str, str]] = []
    if root.tag != f"{NFE}nfeProc":
        problems.append(("xml", f"the root is {root.tag.replace(NFE, '')}, not nfeProc (the NF-e with SEFAZ's "
                                "authorization protocol)"))
    status = root.findtext(f"{NFE}protNFe/{NFE}infProt/{NFE}cStat")
    key = root.findtext(f"{NFE}protNFe/{NFE}infProt/{NFE}chNFe")
    if status not in ("100", "150"):
        problems.append(("xml", f"SEFAZ's protocol says cStat {status or 'none'}: the note is not authorized"))
    if key and access_key and key != access_key:
        problems.append(("access_key", f"the XML's key {key} is not the invoice's {access_key}"))
    key = key or access_key
    if not key or len(key) != 44 or not key.isdigit():
        problems.append(("access_key", f"access key {key!r} is not 44 digits"))
    elif str(access_key_check_digit(key[:43])) != key[43]:
        problems.append(("access_key", f"access key {key}: the check digit does not match"))
    found = [p.findtext(f"{NFE}cProd") for p in root.iter(f"{NFE}prod")]
    for prod in root.iter(f"{NFE}prod"):
        ncm = prod.findtext(f"{NFE}NCM") or ""
        if len(ncm) != 8 or not ncm.isdigit():
            problems.append(("items.ncm", f"item {prod.findtext(f'{NFE}cProd')}: NCM {ncm or 'missing'} is not 8 "
                                          "digits"))
    if skus is not None and sorted(set(skus)) != sorted({f for f in found if f}):
        problems.append(("items", f"the note's products {sorted({f for f in found if f})} are not the shipment's "
                                  f"SKUs {sorted(set(skus))}"))
    return problems


__all__ = ["CANCELLED", "CREATED", "INCLUDED", "TPAG", "channels", "customer", "format_time", "listing_attributes",
           "md5_base64", "money", "number", "order_id_of", "parse_time", "registration", "sale", "shipment_ids",
           "xml_problems"]
