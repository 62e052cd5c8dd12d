"""Plugg.to notifications: ``POST {"type", "id", "action", "user", "changes"}`` with no signature (developers.plugg.to,
"Notification information").

Since nothing proves a delivery came from Plugg.to, a connection accepts one only when it carries the
connection's ``webhook_token`` credential: in the URL registered with Plugg.to (``?token=...``, the query parameter
``options.webhook_query``: Plugg.to's notification settings take a URL, not headers), or in the
``options.webhook_header`` header (or as ``Authorization: Bearer``) when a proxy adds it, compared in constant
time; without a token configured every delivery is refused. The body is never trusted: an event only makes the
core re-read the record it names from the API. When ``options.user_id`` is set, a notification for another
Plugg.to user is refused too.

Each event names the record its stream reads by id (``plugin.pull_records``): a product's id, an order's, a SKU
(``sku:`` + the SKU, from a ``skus`` notification) or an NF-e's; an invoice notification also makes the orders'
next run incremental, since it does not name the order.

Plugg.to sends no event id, and re-sends a delivery that was not answered 200. The id given to the core is the
notification's content plus a ten-minute window: repeats within it are deduped, a later change of the same record
(same content, another window) still triggers a sync.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from hub import ConnectorContext, WebhookEvent
from hub.errors import BadSignature, InvalidRecord

from hub_pluggto.client import options, where

STREAMS = {"products": "products", "skus": "products", "orders": "sales", "invoices": "invoices"}
"""Notification type -> the stream whose record it names; ``messages`` trigger nothing."""
SKU_PREFIX = "sku:"
"""Marks the record a ``skus`` notification names: its id is the SKU, not the product id, so the targeted read
(``plugin.pull_records``) reads ``/skus/{sku}`` instead of ``/products/{id}``."""
DEDUPE_WINDOW_SECONDS = 600


def _token(headers: dict[str, str], query: dict[str, str], header: str, parameter: str) -> str:
    given = query.get(parameter, "") or headers.get(header.lower(), "")
    if not given:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        given = value if scheme.lower() == "bearer" else ""
    return given.strip()


def parse(ctx: ConnectorContext, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None, *,
          now: float | None = None) -> list[WebhookEvent]:
    opts = options(ctx)
    expected = ctx.credentials.get("webhook_token", "")
    if not expected:
        raise BadSignature(f"pluggto notification for {where(ctx)}: the connection has no webhook_token",
                           fix=f"Give connection {ctx.connection} a long random credentials.webhook_token and "
                               f"register the notification URL .../webhooks/{ctx.tenant}/{ctx.connection}?"
                               f"{opts.webhook_query}=<that token> in Plugg.to.")
    given = _token(headers, query or {}, opts.webhook_header, opts.webhook_query)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadSignature(f"pluggto notification for {where(ctx)}: the token does not match",
                           fix=f"Register the notification URL with ?{opts.webhook_query}=<the connection's "
                               f"webhook_token> (or send it in the {opts.webhook_header} header).")
    try:
        event: Any = json.loads(body)
    except ValueError:
        raise InvalidRecord(f"pluggto notification for {where(ctx)}: the body is not JSON", field="body",
                            fix="Plugg.to sends JSON notifications; check what posts to this URL.") from None
    events = event if isinstance(event, list) else [event]
    parsed: list[WebhookEvent] = []
    window = int((time.time() if now is None else now) // DEDUPE_WINDOW_SECONDS)
    for item in events:
        if not isinstance(item, dict) or not item.get("type") or not item.get("id"):
            raise InvalidRecord(f"pluggto notification for {where(ctx)}: type and id are required",
                                field="type", fix="Plugg.to sends {type, id, action, user}; check the sender.")
        if opts.user_id and str(item.get("user", "")) != str(opts.user_id):
            raise BadSignature(f"pluggto notification for {where(ctx)}: it is for user {item.get('user')!r}, not "
                               f"{opts.user_id}", fix=f"Check options.user_id of connection {ctx.connection}.")
        kind, action = str(item["type"]), str(item.get("action") or "updated")
        content = json.dumps([kind, str(item["id"]), action, item.get("changes")], sort_keys=True, default=str)
        digest = hashlib.blake2b(content.encode(), digest_size=12).hexdigest()
        event_id, name, named = f"{kind}:{digest}:{window}"[:100], f"{kind}.{action}"[:64], str(item["id"])
        parsed.append(WebhookEvent(event_id=event_id, event=name, stream=STREAMS.get(kind),
                                   external_id=SKU_PREFIX + named if kind == "skus" else named))
        if kind == "invoices":
            # The note's order changed too (invoiced), but the notification names the note, not the order: the
            # orders' next run is incremental. The note's own id stays on the first event, so an NF-e the hub
            # is waiting on (emit_invoice) is read again at once.
            parsed.append(WebhookEvent(event_id=f"{event_id[:94]}:sales", event=name, stream="sales", external_id=None))
    return parsed
