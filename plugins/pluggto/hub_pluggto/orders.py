"""Orders into Plugg.to (``push_sale``): the Amazon FBA Onsite flow brings Amazon's orders to Plugg.to, which issues
their NF-e; and an ERP's status changes (a cancellation) going back to the Plugg.to order they came from.

``POST /orders`` creates an order and ``PUT /orders/{id}`` changes one partially (developers.plugg.to). Plugg.to takes
no idempotency key, so a create is found first by its ``external`` id (the channel's order number, which the hub
writes on every order it creates) under the connection's lock: an attempt whose answer was lost is found on the
retry, never created twice. A status is only moved the way Plugg.to's order flow goes (forward, or to ``canceled``
before delivery); a change that would move it back is declined with a warning, so an ERP's own status names mapped
onto Plugg.to's never rewind an order the channel has moved on.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from hub import ConnectorContext, PushResult
from hub.errors import InvalidRecord
from hub.models import Address, Sale

from hub_pluggto.client import API, body_of, not_updated, unwrap, where
from hub_pluggto.mappers import STATUSES

FLOW = {"pending": 0, "partial_payment": 1, "paid": 1, "under_review": 2, "approved": 2, "waiting_invoice": 3,
        "invoice_error": 3, "invoiced": 4, "shipping_informed": 5, "shipping_error": 5, "shipped": 6,
        "delivered": 7}
"""Where each status sits in an order's life (assumed from the status names: Plugg.to documents no transitions)."""
CANCELED = "canceled"
KEEP = "keep"
"""A route's status DE-PARA may map an ERP status to ``keep``: the Plugg.to order's status is left as it is (an
ERP's "Em aberto" says nothing Plugg.to's flow needs). Not valid on a new order."""
DEFAULT_CHANNEL = "hub"


def _path(order_id: str) -> str:
    return f"/orders/{quote(order_id, safe='')}"


def _checked_status(ctx: ConnectorContext, sale: Sale, *, creating: bool = False) -> str:
    if sale.status == KEEP and not creating:
        return KEEP
    if sale.status not in STATUSES:
        route = ctx.route.name if ctx.route else "ROUTE"
        raise InvalidRecord(
            f"pluggto ({where(ctx)}): sale {sale.number} has status {sale.status!r}, not one of Plugg.to's",
            field="status", record=f"sale {sale.number}",
            fix=f"Map it to one of {', '.join(sorted(STATUSES))} (or {KEEP!r} to leave an existing order's status as "
                f"it is) under routes.{route}.mappings.statuses and re-apply.")
    return sale.status


def allowed(current: str, wanted: str) -> str | None:
    """None when an order in ``current`` may move to ``wanted``; otherwise why not."""
    if current == wanted:
        return None
    if current == CANCELED:
        return "the order is canceled in Plugg.to; a canceled order does not come back"
    if wanted == CANCELED:
        return "a delivered order is returned on its channel, not canceled" if current == "delivered" else None
    if FLOW.get(wanted, 0) < FLOW.get(current, 0):
        return f"{wanted} would move it back from {current}"
    return None


def _address(prefix: str, address: Address) -> dict[str, Any]:
    return {f"{prefix}_address": address.street, f"{prefix}_address_number": address.number,
            f"{prefix}_address_complement": address.complement, f"{prefix}_neighborhood": address.district,
            f"{prefix}_city": address.city, f"{prefix}_state": address.state, f"{prefix}_zipcode": address.zip,
            f"{prefix}_country": "BR"}


def customer_fields(sale: Sale) -> dict[str, Any]:
    """The payer and receiver: name, CPF or CNPJ (digits), e-mail, phone and the first address for both."""
    customer = sale.customer
    if customer is None:
        return {"payer_name": "Consumidor Final"}
    out: dict[str, Any] = {"payer_name": customer.name, "receiver_name": customer.name,
                           "payer_email": customer.email, "payer_phone": customer.phone}
    document = customer.document or ""
    if len(document) == 11:
        out["payer_cpf"] = document
        out["receiver_cpf"] = document
    elif document:
        out["payer_cnpj"] = document
        out["payer_razao_social"] = customer.name
        out["payer_ie"] = customer.state_registration
    if customer.addresses:
        out.update(_address("payer", customer.addresses[0]))
        out.update(_address("receiver", customer.addresses[0]))
    return {k: v for k, v in out.items() if v not in (None, "")}


def order_out(ctx: ConnectorContext, sale: Sale) -> dict[str, Any]:
    """The ``POST /orders`` body: the channel's number in ``external`` and ``original_id``, amounts, payer and
    receiver, items and payments (methods already translated by the route's DE-PARA)."""
    subtotal = sum((i.total for i in sale.items), Decimal("0"))
    body: dict[str, Any] = {
        "external": sale.number, "original_id": sale.number, "channel": sale.channel or DEFAULT_CHANNEL,
        "status": _checked_status(ctx, sale, creating=True), "subtotal": subtotal, "shipping": sale.freight,
        "discount": sale.discount, "total": sale.total,
        "total_paid": sum((p.amount for p in sale.payments), Decimal("0")), "currency": "BRL",
        "created": sale.issued_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "items": [{"sku": i.sku, "name": i.name or i.sku, "quantity": i.quantity, "price": i.unit_price,
                   "discount": i.discount, "total": i.total} for i in sale.items],
        "payments": [{"payment_type": p.method, "payment_method": p.name or p.method,
                      "payment_installments": p.installments, "payment_total": p.amount} for p in sale.payments],
    }
    if sale.notes:
        body["log_history"] = [{"message": sale.notes[:500]}]
    body.update(customer_fields(sale))
    return body


def find(ctx: ConnectorContext, sale: Sale) -> dict[str, Any] | None:
    """The order already in Plugg.to for this sale: the one the hub created (``external``), else one Plugg.to's own
    channel integration imported (``original_id``, the channel's number). ``GET /orders?external=`` is a filter
    seen in public code and ``original_id`` is assumed (README); what comes back is matched here too, so a filter
    the API ignores cannot match another order."""
    channel = (sale.channel or DEFAULT_CHANNEL).lower()
    for name in ("external", "original_id"):
        response = API.get(ctx, "/orders", params={name: sale.number, "limit": 10}, record=f"sale {sale.number}")
        body = body_of(response)
        rows = body.get("result") if isinstance(body, dict) else None
        for row in rows if isinstance(rows, list) else []:
            order = unwrap(row, "Order")
            same_channel = str(order.get("channel") or channel).lower() == channel
            if str(order.get(name)) == sale.number and same_channel:
                return order
    return None


def push(ctx: ConnectorContext, sale: Sale, external_id: str | None) -> PushResult:
    only = (ctx.route.updates.get("sales") if ctx.route else None) or None
    if external_id is not None:
        return update(ctx, sale, external_id, only)
    with ctx.lock(f"pluggto:order:{sale.channel or DEFAULT_CHANNEL}:{sale.number}"):
        found = find(ctx, sale)
        if found is not None:
            order_id = str(found["id"])
            ctx.record_remote_id(order_id)
            return update(ctx, sale, order_id, only, current=found)
        response = API.post(ctx, "/orders", json=order_out(ctx, sale), record=f"sale {sale.number}")
        order_id = str(unwrap(body_of(response), "Order")["id"])
        ctx.record_remote_id(order_id)
    return PushResult(external_id=order_id)


def update(ctx: ConnectorContext, sale: Sale, order_id: str, only: list[str] | None,
           current: dict[str, Any] | None = None) -> PushResult:
    """A partial update: the status (as the flow allows), and on a route that carries the whole sale the payer and
    receiver (so a corrected address reaches the order before its NF-e is resent). Items stay as created."""
    wanted = _checked_status(ctx, sale)
    if wanted == KEEP and only is not None and "status" in only and len(only) == 1:
        return PushResult(external_id=order_id)  # nothing to change: no call at all
    if current is None:
        current = unwrap(body_of(API.get(ctx, _path(order_id), record=f"order {order_id}")), "Order")
    body: dict[str, Any] = {}
    warnings: list[str] = []
    if wanted != KEEP and (only is None or "status" in only):
        why = allowed(str(current.get("status") or ""), wanted)
        if why is None and wanted != current.get("status"):
            body["status"] = wanted
        elif why is not None:
            warnings.append(f"order {order_id} ({sale.number}) stays {current.get('status')}: {why}")
    if only is None:
        body.update({k: v for k, v in customer_fields(sale).items() if current.get(k) != v})
    if not body:
        return PushResult(external_id=order_id, warnings=warnings)
    response = API.put(ctx, _path(order_id), json=body, record=f"order {order_id}", expect=(400,))
    if response.status_code == 400:
        if not_updated(body_of(response)):
            return PushResult(external_id=order_id, warnings=warnings)
        API.check(ctx, response, record=f"order {order_id}")
    return PushResult(external_id=order_id, warnings=warnings)
