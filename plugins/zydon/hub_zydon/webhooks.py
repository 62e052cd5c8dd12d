"""Zydon's order webhook ("Entrada de Pedido", configured under B2B -> Editar Portal -> perfil -> Configurações).

Zydon's page shows only the start of the payload (``amount_value``, ``automation_fields``...) and says nothing about
signing. The design (README, "Assumptions"): the raw body is signed with HMAC-SHA256 under a secret shared per
connection (credential ``webhook_secret``) and sent as ``X-Zydon-Signature: sha256=<hex>``; the body names the order
(``id`` or ``order_id``). Without a configured secret every delivery is refused: an unsigned endpoint would let
anyone schedule syncs. The event only says "read the order again": the sync re-reads it from the API, so a forged
or stale body could not change data even if it got through.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hub import ConnectorContext, WebhookEvent
from hub.errors import BadSignature, InvalidRecord

SIGNATURE_HEADER = "x-zydon-signature"
DELIVERY_HEADER = "x-zydon-delivery"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse(ctx: ConnectorContext, headers: dict[str, str], body: bytes) -> list[WebhookEvent]:
    where = f"Zydon webhook for {ctx.tenant}/{ctx.connection}"
    secret = ctx.credentials.get("webhook_secret", "")
    if not secret:
        raise BadSignature(f"{where}: no webhook_secret is configured for the connection, so no delivery can be "
                           "verified; refused")
    given = headers.get(SIGNATURE_HEADER, "")
    if not hmac.compare_digest(given.encode(), signature(secret, body).encode()):
        raise BadSignature(f"{where}: the {SIGNATURE_HEADER} signature does not match the body")
    try:
        event: Any = json.loads(body)
    except ValueError:
        event = None
    order = (event.get("id") or event.get("order_id")) if isinstance(event, dict) else None
    if not isinstance(order, str | int) or isinstance(order, bool) or str(order) == "":
        raise InvalidRecord(f"{where}: the event names no order (no id or order_id)", field="id",
                            fix="Check that the portal's \"Entrada de Pedido\" webhook points at this connection.")
    name = str(event.get("event") or "order.created")
    delivery = headers.get(DELIVERY_HEADER) or hashlib.sha256(body).hexdigest()[:32]
    return [WebhookEvent(event_id=f"zydon:{delivery}", event=name, stream="sales", external_id=str(order))]
