"""Bling's webhooks: ``X-Bling-Signature-256: sha256=<hex>``, an HMAC-SHA256 of the raw body keyed with the app's
client secret, compared in constant time; then the v1 envelope mapped to the stream to re-read."""

from __future__ import annotations

import hashlib
import hmac
import json

from hub.errors import BadSignature, InvalidRecord
from hub.platform import WebhookEvent
from hub.sync.context import ConnectorContext

STREAMS = {"product": "products", "stock": "stock", "virtual_stock": "stock", "order": "sales",
           "invoice": "invoices", "consumer_invoice": "invoices", "product_supplier": "products"}


def parse(ctx: ConnectorContext, headers: dict[str, str], body: bytes) -> list[WebhookEvent]:
    secret = ctx.credentials.get("client_secret", "")
    given = headers.get("x-bling-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not secret or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadSignature(f"Bling webhook for {ctx.tenant}/{ctx.connection}: signature does not match")
    try:
        envelope = json.loads(body)
        event = str(envelope["event"])
        event_id = str(envelope["eventId"])
    except (ValueError, KeyError, TypeError):
        raise InvalidRecord(f"Bling webhook for {ctx.tenant}/{ctx.connection}: not a v1 envelope",
                            fix="Set the webhook's payload version to v1 in Bling's developer portal.") from None
    company = ctx.credentials.get("company_id")
    if company and str(envelope.get("companyId")) != company:
        raise BadSignature(f"Bling webhook for {ctx.tenant}/{ctx.connection}: event of another company")
    resource = event.split(".", 1)[0]
    data = envelope.get("data") or {}
    ref = data.get("id") or (data.get("produto") or {}).get("id")
    return [WebhookEvent(event_id=event_id, event=event, stream=STREAMS.get(resource),
                         external_id=str(ref) if ref else None)]
