"""Bling's webhooks: ``X-Bling-Signature-256: sha256=<hex>``, an HMAC-SHA256 of the raw body keyed with the app's
client secret, compared in constant time; then the v1 envelope mapped to the streams to re-read and the record each
names (the core reads that record alone: ``catalog.pull_records``)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from hub import ConnectorContext, WebhookEvent
from hub.errors import BadSignature, ConfigError, InvalidRecord
from pydantic import BaseModel, ConfigDict, Field, ValidationError

STREAMS = {"product": ("products", "prices"), "stock": ("stock",), "virtual_stock": ("stock",),
           "order": ("sales",), "invoice": ("invoices",), "consumer_invoice": ("invoices",),
           "product_supplier": ("products",)}
"""The streams each resource's events make the hub re-read. A product event may be a price change, so it re-reads
both products and prices; as a ``WebhookEvent`` names one stream, it becomes one event per stream."""


class Envelope(BaseModel):
    """Bling's v1 webhook envelope (developer portal, "Webhooks"), as far as the hub reads it."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)
    event_id: str = Field(alias="eventId", min_length=1, max_length=100)
    event: str = Field(min_length=1, max_length=64)
    company_id: str | None = Field(default=None, alias="companyId", max_length=100)
    data: dict[str, Any] | None = None


def parse(ctx: ConnectorContext, headers: dict[str, str], body: bytes) -> list[WebhookEvent]:
    where = f"Bling webhook for {ctx.tenant}/{ctx.connection}"
    secret = ctx.credentials.get("client_secret", "")
    given = headers.get("x-bling-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not secret or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadSignature(f"{where}: signature does not match")
    try:
        envelope = Envelope.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise InvalidRecord(f"{where}: not a v1 envelope ({problems})",
                            fix="Set the webhook's payload version to v1 in Bling's developer portal.") from None
    company = ctx.credentials.get("company_id")
    if not company:
        raise ConfigError(
            f"{where}: the connection does not know its Bling company yet, so the event's companyId "
            f"{envelope.company_id} cannot be checked; refused",
            fix=f"Run `hub auth bling {ctx.tenant}` so the hub reads the account's company (a token renewal reads "
                f"it too); meanwhile `hub sync {ctx.tenant} ROUTE` picks up the changes.")
    if envelope.company_id != company:
        raise BadSignature(f"{where}: event of another company ({envelope.company_id})")
    resource = envelope.event.split(".", 1)[0]
    data = envelope.data or {}
    streams = STREAMS.get(resource) or (None,)
    return [WebhookEvent(event_id=_event_id(envelope.event_id, i, stream), event=envelope.event, stream=stream,
                         external_id=_named(resource, stream, data)) for i, stream in enumerate(streams)]


def _named(resource: str, stream: str | None, data: dict[str, Any]) -> str | None:
    """The record the stream re-reads: the product of a stock or supplier event (``produto.id``, not the event's
    own id), a variation's parent for the products stream (its detail carries the grid), else ``data.id``."""
    product = data.get("produto")
    ref = product.get("id") if isinstance(product, dict) else None
    if resource == "product" and stream == "products":
        ref = data.get("idProdutoPai") or None
    ref = ref or data.get("id")
    return str(ref) if ref not in (None, "", 0) else None


def _event_id(event_id: str, index: int, stream: str | None) -> str:
    """The first stream keeps Bling's ``eventId`` (the core dedupes on it); the others are derived from it, so a
    redelivery repeats them too and they stay within the store's 100 characters."""
    if index == 0:
        return event_id
    derived = f"{event_id}/{stream}"
    return derived if len(derived) <= 100 else hashlib.sha256(derived.encode()).hexdigest()
