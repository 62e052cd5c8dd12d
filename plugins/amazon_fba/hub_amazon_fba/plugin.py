"""The Amazon FBA Onsite ("Enviado pela Amazon") connector: platform registration and hook implementations.

What flows where follows the sellers' manuals for Bling and Plugg.to ("Manual de integração", Enviado pela Amazon):
offers are created and managed from the seller's system (price, NCM and origin; never a stock quantity), Amazon's
orders come in as sales as soon as Amazon creates their shipment, the ERP issues the NF-e, and the authorized note
goes back to Amazon (shipment invoicing) until Amazon accepts it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub import (
    FUTURE_TOLERANCE,
    ConnectorContext,
    Credentials,
    Fetched,
    Incoming,
    NextTokenPaginator,
    Page,
    Platform,
    PushResult,
    Rejected,
    hookimpl,
    paginate,
)
from hub.errors import Fatal, HubError, InvalidRecord, NotFound, RateLimited, Retriable
from hub.models import Canonical, FiscalProblem, Invoice, Price, Product, Sale
from pydantic import ValidationError

from hub_amazon_fba import auth, mappers, nfe_check
from hub_amazon_fba.client import AMAZON, LISTINGS, ORDERS, SHIPMENTS, SQS, AmazonOptions, body_of, options, where

PLATFORM = "amazon_fba"
PULLS = frozenset({"sales"})
PUSHES = frozenset({"products", "prices", "invoices"})
"""No ``stock``: an FBA Onsite offer's stock lives in Amazon's Onsite tool, and a quantity sent through the API
creates a duplicate merchant-fulfilled offer (Amazon LATAM guide "FBA Onsite – passo a passo")."""
ROUTES = Path(__file__).resolve().parent / "routes"
MAX_BATCHES = 100
"""Receive calls per pull (10 messages each): a backlog beyond 1,000 notifications waits for the next run."""
SEEN_TTL = 86400.0
CANCELLED_TTL = 30 * 86400.0
"""How long this process remembers a shipment it read as Cancelled (its note is refused without a call)."""
HISTORY = timedelta(days=30)
"""How far back a first sweep (no cursor) reads orders."""
HYBRID_FIX = ("The SKU {sku} is also offered from the seller's own stock (a hybrid offer: the same product sold by "
              "Amazon's logistics, FBA Onsite, and by the seller's store). Remove the merchant-fulfilled offer in "
              "Seller Central (Inventory > Manage All Inventory: the offer with fulfillment 'Merchant'), keep only the "
              "FBA Onsite one, then `hub retry {tenant}`; the hub never sends stock for FBA Onsite offers.")

DOCS = """Amazon "Enviado pela Amazon" (FBA Onsite, Brazil) over the Selling Partner API
(https://developer-docs.amazon.com/sp-api). Reads sales from the FBA_OUTBOUND_SHIPMENT_STATUS / ORDER_CHANGE
notifications in an SQS queue and a periodic searchOrders sweep (Orders API v2026-01-01); writes offers (listings:
price, NCM, origin; never stock) and NF-e (shipment invoicing). Options: seller_id, queue_url, marketplace_id,
store, sweep_minutes. Credentials: client_id, client_secret, refresh_token (the seller's authorization, 365 days),
sqs_access_key_id, sqs_secret_access_key."""


def _sandbox(**settings: Any) -> Any:
    from hub_amazon_fba.sandbox import AmazonSandbox

    return AmazonSandbox(**settings)


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    demo = ROUTES / "bling-demo.yaml"
    register(Platform(
        name=PLATFORM, title="Amazon FBA Onsite (Enviado pela Amazon)", pulls=PULLS, pushes=PUSHES,
        options=AmazonOptions, credentials=auth.CREDENTIALS, sandbox=_sandbox, docs=DOCS, reauth_unattended=True,
        required_mappings=frozenset({"payment_methods"}), demo=str(demo) if demo.exists() else None,
        extra={"auth_notice": _auth_notice},
    ))


def _auth_notice(credentials: dict[str, str], options: dict[str, Any], now: datetime) -> str | None:
    """For `hub status`: the seller's authorization lapses 365 days after it was granted, the client secret must be
    rotated every 180 days (each warned 30, 7 and 1 day(s) before)."""
    days = int(options.get("authorization_days") or 365)
    said = [n for n in (auth.authorization_notice(credentials, now, days), auth.secret_notice(credentials, now)) if n]
    return "; ".join(said) or None


@hookimpl
def register_commands(cli: Any) -> None:
    from hub_amazon_fba.cli import install

    install(cli)


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    return auth.authenticate(ctx)


# --- pulls ------------------------------------------------------------------------------------------------------


@dataclass
class Position:
    """The cursor: the newest order change the sweep read (``after``) and when the last sweep ran (``swept``).
    Notifications never move ``after``: a sweep starting after an order read through its notification could
    miss an older order whose notification was lost."""

    after: datetime | None = None
    swept: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> Position:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            return cls(after=mappers.parse_time(raw.get("after")), swept=mappers.parse_time(raw.get("swept")))
        except (ValueError, AttributeError):
            raise Fatal(f"amazon_fba: the stored cursor {text!r} is not the connector's",
                        fix="Run a full sync of the route (hub sync TENANT ROUTE --full).") from None

    def dump(self) -> str:
        return json.dumps({"after": mappers.format_time(self.after) if self.after else None,
                           "swept": mappers.format_time(self.swept) if self.swept else None})


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    return _pull(ctx, since)


def _pull(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    ctx.scratch["amazon:patient"] = True
    opts = options(ctx)
    position = Position.parse(since)
    if opts.queue_url:
        yield from _notifications(ctx, position)
    now = datetime.now(UTC)
    if since is None or position.swept is None or now - position.swept >= timedelta(minutes=opts.sweep_minutes):
        yield from _sweep(ctx, position, now)


def _notifications(ctx: ConnectorContext, position: Position) -> Iterator[Page]:
    """The queue, ten messages at a time: the orders they name are read (getOrder, with their items, buyer, tax and
    payments), the page is committed, then the messages are deleted; a message whose page was not committed comes
    back after its visibility timeout. Deduplicated on NotificationId. With ``queue_wait_seconds`` the first
    receive is a long poll: a notification that arrives during it is read at once."""
    wait = options(ctx).queue_wait_seconds  # the first receive may long-poll; the next ones take what is there
    for _ in range(MAX_BATCHES):
        answer = SQS.action(ctx, "ReceiveMessage", {"MaxNumberOfMessages": 10, "VisibilityTimeout": 300,
                                                    "WaitTimeSeconds": wait}, read=True, wait_seconds=wait)
        wait = 0
        messages = [m for m in answer.get("Messages") or [] if isinstance(m, dict)]
        if not messages:
            return
        orders: dict[str, set[str]] = {}
        seen: list[str] = []
        for message in messages:
            try:
                note = json.loads(str(message.get("Body")))
                meta, kind, payload = note["NotificationMetadata"], note["NotificationType"], note["Payload"]
            except (ValueError, KeyError, TypeError):
                ctx.log_failure("sqs:ReceiveMessage", f"warning: message {message.get('MessageId')} is not an SP-API "
                                "notification; deleted", None)
                continue
            notification_id = str(meta.get("NotificationId"))
            if ctx.cache.get(f"amazon:seen:{notification_id}"):
                continue
            seen.append(notification_id)
            if kind == "FBA_OUTBOUND_SHIPMENT_STATUS":
                status = payload.get("FBAOutboundShipmentStatusNotification") or {}
                cancelled = orders.setdefault(str(status.get("AmazonOrderId")), set())
                if status.get("ShipmentStatus") == mappers.CANCELLED:
                    cancelled.add(str(status.get("AmazonShipmentId")))
            elif kind == "ORDER_CHANGE":
                orders.setdefault(str((payload.get("OrderChangeNotification") or {}).get("AmazonOrderId")), set())
        try:
            records = _read_orders(ctx, orders)
        except HubError:
            _release(ctx, messages)
            raise
        yield Page(records=records, cursor=position.dump())
        for message in messages:
            try:
                SQS.action(ctx, "DeleteMessage", {"ReceiptHandle": message.get("ReceiptHandle")}, read=False)
            except HubError as exc:  # it comes back after its visibility timeout; reading it twice is harmless
                ctx.log_failure("sqs:DeleteMessage", f"warning: {exc.message}", exc.fix)
        for notification_id in seen:
            ctx.cache.set(f"amazon:seen:{notification_id}", True, ttl=SEEN_TTL)


def _read_orders(ctx: ConnectorContext, orders: dict[str, set[str]]) -> list[Incoming | Rejected]:
    records: list[Incoming | Rejected] = []
    for order_id, cancelled in orders.items():
        try:
            order = body_of(AMAZON.call(ctx, "GET", f"{ORDERS}/{quote(order_id, safe='')}",
                                        params={"includedData": mappers.INCLUDED}))["order"]
        except NotFound:
            ctx.log_failure("getOrder", f"warning: order {order_id} of a notification is not on Amazon", None)
            continue
        if (order.get("fulfillment") or {}).get("fulfilledBy", "AMAZON") != "AMAZON":
            continue
        records += _incoming(ctx, order, cancelled)
    return records


def _release(ctx: ConnectorContext, messages: list[dict[str, Any]]) -> None:
    """Make messages whose orders could not be read visible again at once (the stream is read again after a token
    renewal or on the next run), rather than hidden for their visibility timeout."""
    for message in messages:
        try:
            SQS.action(ctx, "ChangeMessageVisibility", {"ReceiptHandle": message.get("ReceiptHandle"),
                                                        "VisibilityTimeout": 0}, read=False)
        except HubError:
            return  # they come back after their visibility timeout anyway


def _sweep(ctx: ConnectorContext, position: Position, now: datetime) -> Iterator[Page]:
    """searchOrders, fulfilledBy=AMAZON, changed since the last sweep (less the overlap), items, buyer, tax and
    payments in the same answer (``includedData``): never one call per order. The backstop Amazon recommends for
    notifications, so a lost one never loses an order."""
    opts = options(ctx)
    start = position.after - timedelta(minutes=opts.overlap_minutes) if position.after else now - HISTORY
    params = {"marketplaceIds": opts.marketplace_id, "fulfilledBy": "AMAZON",
              "lastUpdatedAfter": mappers.format_time(start), "includedData": mappers.INCLUDED,
              "maxResultsPerPage": opts.page_size}

    def fetch(token: str | None) -> Fetched:
        query = {**params, "paginationToken": token} if token else params
        response = AMAZON.call(ctx, "GET", ORDERS, params=query)
        found = body_of(response)
        if not isinstance(found, dict):
            return Fetched(records=found, url=str(response.url))
        return Fetched(records=found.get("orders"), url=str(response.url),
                       next_token=(found.get("pagination") or {}).get("nextToken"))

    horizon = now + FUTURE_TOLERANCE
    newest = position.after
    for paged in paginate(fetch, NextTokenPaginator(), plugin=PLATFORM, stream="sales", about=where(ctx)):
        records: list[Incoming | Rejected] = []
        for order in paged.records:
            records += _incoming(ctx, order, set())
            try:
                stamp = mappers.parse_time(order.get("lastUpdatedTime"))
            except ValueError:
                continue
            if stamp is not None and stamp <= horizon and (newest is None or stamp > newest):
                newest = stamp
        position.after = newest
        yield Page(records=records, cursor=position.dump())
    position.swept = now
    yield Page(records=[], cursor=position.dump())


def _field(exc: Exception) -> str | None:
    if isinstance(exc, KeyError):
        return str(exc.args[0])
    if isinstance(exc, ValidationError) and exc.errors():
        return ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
    return None


def _incoming(ctx: ConnectorContext, order: dict[str, Any], cancelled: set[str]) -> list[Incoming | Rejected]:
    """One sale per FBA Onsite shipment of the order (none before Amazon creates the shipment). An order Amazon split
    into several shipments gives each sale only its shipment's items (getShipmentDetails, one call per shipment of
    such an order; an order of one shipment costs nothing more)."""
    order_id = str(order.get("orderId"))
    out: list[Incoming | Rejected] = []
    read: set[tuple[str, str]] = ctx.scratch.setdefault("amazon:read", set())
    shipments = mappers.shipment_ids(order)
    for shipment in shipments:
        version = (shipment, str(order.get("lastUpdatedTime")))
        if version in read and not cancelled:
            continue  # read through its notification in this run already: the sweep does not bring it twice
        read.add(version)
        try:
            updated = mappers.parse_time(order.get("lastUpdatedTime"))
            lines: list[dict[str, Any]] | None = None
            if len(shipments) > 1:
                lines = _shipment_detail(ctx, shipment, f"shipment {shipment} of order {order_id}")\
                    .get("ShipmentItems") or []
            sale = mappers.sale(order, shipment, store=options(ctx).store, seller_id=options(ctx).seller_id,
                                cancelled=shipment in cancelled, lines=lines)
            if sale.status == mappers.CANCELLED:  # push_invoice then refuses its note without asking Amazon again
                ctx.cache.set(f"amazon:cancelled:{shipment}", True, ttl=CANCELLED_TTL)
            out.append(Incoming(external_id=shipment, data=sale, updated_at=updated))
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            name = _field(exc)
            out.append(Rejected(external_id=shipment, field=name, raw=order,
                                reason=f"amazon_fba order {order_id}, shipment {shipment} ({where(ctx)}): {exc}",
                                fix=f"Amazon holds {name or 'a value'} of order {order_id} as the hub cannot use it "
                                    "(a buyer CPF/CNPJ with a wrong check digit, an empty item): correct it with the "
                                    "buyer through Seller Central, or issue this order's note by hand in the ERP."))
    return out


# --- pushes: listings -------------------------------------------------------------------------------------------


def _listing_path(ctx: ConnectorContext, sku: str) -> str:
    seller = options(ctx).seller_id
    if not seller:
        raise Fatal(f"amazon_fba ({where(ctx)}): options.seller_id is not set",
                    fix=f"Set options.seller_id of connection {ctx.connection} (Seller Central > Settings > Account "
                        "Info > Merchant Token) and re-apply the routes.")
    return f"{LISTINGS}/{quote(seller, safe='')}/{quote(sku, safe='')}"


def _current(ctx: ConnectorContext, sku: str, what: str) -> dict[str, Any] | None:
    """The listing as Amazon has it (None: no offer yet); a hybrid offer is refused with the fix."""
    try:
        listing: dict[str, Any] = body_of(AMAZON.call(
            ctx, "GET", _listing_path(ctx, sku), record=what,
            params={"marketplaceIds": options(ctx).marketplace_id,
                    "includedData": "summaries,attributes,fulfillmentAvailability"}))
    except NotFound:
        return None
    channels = mappers.channels(listing)
    if "DEFAULT" in channels and any(c.startswith("AMAZON") for c in channels):
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): SKU {sku} is a hybrid offer (channels "
                            f"{', '.join(sorted(channels))})", field="fulfillment_availability", record=what,
                            fix=HYBRID_FIX.format(sku=sku, tenant=ctx.tenant))
    return listing


def _submit_listing(ctx: ConnectorContext, method: str, sku: str, body: dict[str, Any], what: str) -> list[str]:
    """VALIDATION_PREVIEW first (nothing changes on Amazon), then the write; issues of severity ERROR are refused
    with their attribute names, warnings come back to be logged."""
    path = _listing_path(ctx, sku)
    query = {"marketplaceIds": options(ctx).marketplace_id, "includedData": "issues", "issueLocale": "pt_BR"}
    warnings: list[str] = []
    for mode in ("VALIDATION_PREVIEW", None):
        answer = body_of(AMAZON.call(ctx, method, path, record=what, json=body,
                                     params={**query, "mode": mode} if mode else query))
        issues = [i for i in answer.get("issues") or [] if isinstance(i, dict)]
        errors = [i for i in issues if i.get("severity") == "ERROR"]
        if errors or answer.get("status") == "INVALID":
            names = [n for i in errors for n in i.get("attributeNames") or []]
            listed = "; ".join(f"{', '.join(i.get('attributeNames') or ['?'])}: {i.get('message')}" for i in errors)
            raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): Amazon refuses the offer: {listed}",
                                field=names[0] if names else "attributes", record=what,
                                fix=f"Fill {', '.join(dict.fromkeys(names)) or 'the attributes named'} of product "
                                    f"{sku} in the ERP (NCM: 8 digits; origem: 0-8), save it, and the hub sends the "
                                    "offer again.")
        if mode is None:
            warnings = [f"{', '.join(i.get('attributeNames') or [])}: {i.get('message')}" for i in issues]
    return warnings


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    if stream != "products" or not isinstance(record, Product):
        raise Fatal(f"amazon_fba ({where(ctx)}): stream {stream!r} cannot be written to Amazon",
                    fix=f"Remove {stream!r} from the route; Amazon FBA Onsite takes products, prices and invoices.")
    opts = options(ctx)
    warnings: list[str] = []
    for offer in _offers(record):
        what = f"product {offer.sku}" + (f" (variation of {record.sku})" if offer.sku != record.sku else "")
        current = _current(ctx, offer.sku, what)
        body = {"productType": ((current or {}).get("summaries") or [{}])[0].get("productType") or opts.product_type,
                "requirements": "LISTING",
                "attributes": mappers.listing_attributes(offer, opts.marketplace_id, opts.fulfillment_channel_code,
                                                         offer.price)}
        warnings += _submit_listing(ctx, "PUT", offer.sku, body, what)
    ctx.record_remote_id(record.sku)
    return PushResult(external_id=record.sku, warnings=warnings)


def _offers(record: Product) -> list[Product]:
    """The offers a product makes on Amazon: itself, or one per active variation of a grid (each SKU is an offer
    there, and the ERP sends each variation's price and stock under the variation's SKU)."""
    if not record.variations:
        return [record]
    return [record.model_copy(update={
        "sku": v.sku, "gtin": v.gtin, "price": v.price if v.price is not None else record.price, "variations": [],
        "name": f"{record.name} ({', '.join(f'{k}: {val}' for k, val in v.attributes.items())})"
        if v.attributes else record.name}) for v in record.variations if v.active]


@hookimpl
def push_price(ctx: ConnectorContext, record: Price, external_id: str | None, idempotency_key: str) -> PushResult:
    """The offer's price (``purchasable_offer``), patched; an unchanged price is not written."""
    what = f"price of {record.sku}"
    if record.price_list not in ("default", ""):
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): price list {record.price_list!r} has no place on "
                            "Amazon", field="price_list", record=what,
                            fix="An Amazon offer has one price: send only the ERP's default price list to Amazon.")
    opts = options(ctx)
    current = _current(ctx, record.sku, what)
    if current is None:
        # The offer's own write may still be queued (a route's streams run side by side): retried with backoff,
        # and reported with the fix if the offer never comes.
        raise Retriable(f"amazon_fba ({where(ctx)}, {what}): Amazon has no offer for SKU {record.sku} yet",
                        fix=f"Send the product {record.sku} to Amazon first (the catalog route); if it is there, "
                            f"`hub retry {ctx.tenant}`.")
    offer = (current.get("attributes") or {}).get("purchasable_offer") or [{}]
    schedule = ((offer[0].get("our_price") or [{}])[0].get("schedule") or [{}])[0]
    if schedule.get("value_with_tax") is not None and Decimal(str(schedule["value_with_tax"])) == record.price:
        return PushResult(external_id=record.sku)
    value = [{"currency": "BRL", "marketplace_id": opts.marketplace_id,
              "our_price": [{"schedule": [{"value_with_tax": float(record.price)}]}]}]
    product_type = (current.get("summaries") or [{}])[0].get("productType") or opts.product_type
    body = {"productType": product_type,
            "patches": [{"op": "replace", "path": "/attributes/purchasable_offer", "value": value}]}
    warnings = _submit_listing(ctx, "PATCH", record.sku, body, what)
    return PushResult(external_id=record.sku, warnings=warnings)


# --- pushes: the NF-e back to Amazon ------------------------------------------------------------------------------


def _invoice_status(ctx: ConnectorContext, shipment: str, what: str) -> str:
    answer = body_of(AMAZON.call(ctx, "GET", f"{SHIPMENTS}/{quote(shipment, safe='')}/invoice/status",
                                 record=what))
    return str(((answer.get("payload") or {}).get("Shipments") or {}).get("InvoiceStatus") or "NotFound")


def _errored(ctx: ConnectorContext, what: str, shipment: str, record: Invoice, skus: list[str] | None) -> InvalidRecord:
    """Amazon's ``Errored`` carries no reason: the hub's own checks of the XML (schema, access key, signature's
    digest) and of the note against the shipment (``nfe_check.errored_causes``) name the likely causes."""
    detail = ctx.scratch.get(f"amazon:shipment:{shipment}")
    causes = [str(p) for p in nfe_check.errored_causes(record.xml, record.access_key, detail)]
    if not causes:
        causes = [f"{f}: {p}" for f, p in mappers.xml_problems(record.xml, record.access_key, skus)]
    likely = "; ".join(causes) if causes else (
        "the hub's own checks find nothing wrong in the XML; the usual causes are a recipient or address that is "
        "not the order's exactly, the issuer CNPJ not the one registered in Seller Central, or tax data Amazon "
        "does not accept")
    return InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): Amazon rejected the NF-e of shipment {shipment} "
                         f"(invoice status Errored; Amazon gives no reason). Likely: {likely}",
                         field=causes[0].split(":")[0] if causes else "invoice", record=what,
                         fix="Correct the cause in the ERP, cancel this note and issue a corrected one (SEFAZ "
                             "authorizes it with a new access key); the hub submits the new note for the shipment, "
                             f"after checking its status. Then `hub retry {ctx.tenant}`.")


def _refused(ctx: ConnectorContext, what: str, shipment: str, problems: list[nfe_check.Problem]) -> InvalidRecord:
    """A note failing the NF-e 4.00 schema, its access key or its MD5 (``nfe_check``): never submitted."""
    return InvalidRecord(f"amazon_fba ({where(ctx)}, {what}, shipment {shipment}): the NF-e is not submitted to "
                         "Amazon: " + "; ".join(str(p) for p in problems), field=problems[0].field, record=what,
                         fix=f"{problems[0].fix}. Then `hub retry {ctx.tenant}` (the corrected note is checked "
                             "again before it goes).")


@hookimpl
def push_invoice(ctx: ConnectorContext, record: Invoice, external_id: str | None, idempotency_key: str) -> PushResult:
    """The authorized NF-e to Amazon for its shipment: getInvoiceStatus first (one authorized NF-e per
    AmazonShipmentId: never a second note, never the same one twice), getShipmentDetails (with an RDT) to check the
    note's items, submitInvoice (base64 of the XML and its MD5), then getInvoiceStatus until Accepted (the operation
    waits while Amazon says Processing).

    A cancelled shipment never gets a note, and a note authorized before the cancellation is reported for
    cancellation in the ERP. The cancellation is known from the shipment's Cancelled notification (or the sweep)
    when this process read it, and otherwise from Amazon refusing the submission, when one getOrder tells a
    cancellation from another refusal. No getOrder on the way of every note: the pull already spends one per order,
    and a second one would put getOrder over its usage plan (0.5/s) at 1,000 orders an hour."""
    what = f"NF-e {record.number or record.access_key}"
    if record.status != "authorized" or not record.access_key:
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): only an NF-e authorized by SEFAZ goes to Amazon "
                            f"(status {record.status})", field="status", record=what,
                            fix="Wait for SEFAZ's authorization in the ERP; the authorized note is sent then.")
    if record.sale is None:
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): the invoice names no sale", field="sale", record=what,
                            fix="Only the NF-e of an order that came from Amazon FBA Onsite can go to Amazon.")
    shipment = ctx.resolve("sales", record.sale) or record.sale.external_id
    marker = f"{shipment}:{record.access_key}"
    local = mappers.xml_problems(record.xml, record.access_key)
    if local:
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): the NF-e cannot go to Amazon: "
                            + "; ".join(f"{f}: {p}" for f, p in local), field=local[0][0], record=what,
                            fix="Send the authorized XML (nfeProc) of this note from the ERP; re-issue the note if "
                                f"SEFAZ did not authorize it. Then `hub retry {ctx.tenant}`.")
    unfit = nfe_check.before_submit(record.xml, record.access_key)
    if unfit:
        raise _refused(ctx, what, shipment, unfit)
    poll = options(ctx).invoice_poll_seconds
    status = _invoice_status(ctx, shipment, what)
    ours = external_id == marker
    other = external_id is not None and not ours
    if status in ("Accepted", "Processing") and other:
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): shipment {shipment} already has an NF-e at Amazon "
                            f"({external_id.split(':')[-1] if external_id else '?'}, {status}); access key "
                            f"{record.access_key} would be a second note for it", field="access_key", record=what,
                            fix=f"Cancel NF-e {record.access_key} in the ERP: Amazon takes one authorized note per "
                                "shipment, and the first one stands.")
    if status == "Accepted":
        warnings = [] if ours else [f"Amazon already holds an accepted NF-e for shipment {shipment}; if "
                                    f"{record.access_key} is a second note for it, cancel it in the ERP"]
        return PushResult(external_id=marker, warnings=warnings)
    if status == "Processing":
        raise RateLimited(f"amazon_fba ({where(ctx)}, {what}): Amazon is validating the NF-e of shipment {shipment}",
                          retry_after=poll, fix="Nothing to do: the hub reads the status again shortly (the note "
                                                "is never sent twice).")
    if status == "Errored" and ours:
        raise _errored(ctx, what, shipment, record, _shipment_skus(ctx, shipment, what))
    order_id = mappers.order_id_of(record.sale.name)  # the sale number is ORDER-SHIPMENT (mappers.number)
    if ctx.cache.get(f"amazon:cancelled:{shipment}"):
        raise _cancelled(ctx, what, shipment, order_id, record)
    skus = _shipment_skus(ctx, shipment, what)
    order_id = ctx.scratch.get(f"amazon:order:{shipment}") or order_id
    mismatch = mappers.xml_problems(record.xml, record.access_key, skus)
    if mismatch:
        raise InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): the NF-e does not match shipment {shipment}: "
                            + "; ".join(f"{f}: {p}" for f, p in mismatch), field=mismatch[0][0], record=what,
                            fix="Issue the note for exactly the shipment's items (Amazon's SKUs and quantities), "
                                f"then `hub retry {ctx.tenant}`.")
    body = nfe_check.payload((record.xml or "").encode())
    unfit = nfe_check.md5_problems(body["InvoiceContent"], body["ContentMD5Value"])
    if unfit:
        raise _refused(ctx, what, shipment, unfit)
    ctx.record_remote_id(marker)  # recorded before the call: a retry checks the status, never submits blind
    try:
        AMAZON.call(ctx, "POST", f"{SHIPMENTS}/{quote(shipment, safe='')}/invoice", record=what,
                    json={**body, "MarketplaceId": options(ctx).marketplace_id})
    except InvalidRecord as refused:
        if order_id and _order_cancelled(ctx, str(order_id), what):
            raise _cancelled(ctx, what, shipment, order_id, record) from refused
        raise
    status = _invoice_status(ctx, shipment, what)
    if status == "Accepted":
        return PushResult(external_id=marker)
    if status == "Errored":
        raise _errored(ctx, what, shipment, record, skus)
    raise RateLimited(f"amazon_fba ({where(ctx)}, {what}): NF-e submitted for shipment {shipment}; Amazon says "
                      f"{status}", retry_after=poll,
                      fix="Nothing to do: the hub reads the status again until Amazon accepts the note.")


def _cancelled(ctx: ConnectorContext, what: str, shipment: str, order_id: str | None,
               record: Invoice) -> InvalidRecord:
    order = f" (order {order_id})" if order_id else ""
    return InvalidRecord(f"amazon_fba ({where(ctx)}, {what}): shipment {shipment}{order} was cancelled by Amazon; a "
                         "cancelled shipment never gets a note", field="sale.status", record=what,
                         fix=f"Cancel NF-e {record.access_key} in the ERP (SEFAZ allows it within 24 hours of "
                             "authorization; after that, issue a return note). Nothing goes to Amazon.")


def _order_cancelled(ctx: ConnectorContext, order_id: str, what: str) -> bool:
    """Whether Amazon cancelled the order (asked only once Amazon refused its note: rare, so off the plan)."""
    try:
        order = body_of(AMAZON.call(ctx, "GET", f"{ORDERS}/{quote(order_id, safe='')}", record=what,
                                    params={"includedData": "FULFILLMENT"}))["order"]
    except (HubError, KeyError, TypeError):
        return False
    cancelled = (order.get("fulfillment") or {}).get("fulfillmentStatus") == "CANCELLED"
    return bool(cancelled)


def _shipment_detail(ctx: ConnectorContext, shipment: str, what: str) -> dict[str, Any]:
    """getShipmentDetails (a restricted operation: called with an RDT): the shipment's order, buyer and items."""
    path = f"{SHIPMENTS}/{quote(shipment, safe='')}"
    token = auth.restricted_token(ctx, [path])
    detail: dict[str, Any] = body_of(AMAZON.call(ctx, "GET", path, record=what,
                                                 headers={"x-amz-access-token": token}))["payload"]
    ctx.scratch[f"amazon:order:{shipment}"] = detail.get("AmazonOrderId")
    ctx.scratch[f"amazon:shipment:{shipment}"] = detail  # what nfe_check compares an Errored note with
    return detail


def _shipment_skus(ctx: ConnectorContext, shipment: str, what: str) -> list[str]:
    """The shipment's SKUs, from getShipmentDetails."""
    return [str(i.get("SellerSKU")) for i in _shipment_detail(ctx, shipment, what).get("ShipmentItems") or []]


# --- fiscal checks before a note is attempted ---------------------------------------------------------------------


CATALOG_PLACES = {"bling": "Bling (Produtos > Tributação)", "pluggto": "Plugg.to (the product's fiscal data)"}
"""Where the seller fills a product's fiscal data, by the platform that issues the note (the route's sink)."""


def _catalog_place(route: Any) -> str:
    return CATALOG_PLACES.get(str(getattr(route.sink, "platform", "")), "the ERP (the product's fiscal data)")


@hookimpl
def validate_fiscal(document: Canonical, route: Any, products: dict[str, Product]) -> list[FiscalProblem] | None:
    """What the sellers' manuals list as the usual rejections, for a sale that came from Amazon: products without
    NCM or origem, an incomplete delivery address, and a shipment Amazon cancelled (it never gets a note)."""
    if not isinstance(document, Sale) or getattr(route.source, "platform", None) != PLATFORM:
        return None
    record = f"sale {document.number}"
    found: list[FiscalProblem] = []
    cancelled = {mappers.CANCELLED, *(v for k, v in (route.mappings.get("statuses") or {}).items()
                                      if k == mappers.CANCELLED)}
    if document.status in cancelled:
        found.append(FiscalProblem(record=record, field="status", platform=PLATFORM,
                                   problem="Amazon cancelled the shipment: it never gets an NF-e",
                                   fix="Nothing to issue; cancel the sale in the ERP if it is still open."))
    for i, item in enumerate(document.items):
        product = products.get(item.sku)
        if product is None:
            continue
        missing = [name for name, value in (("NCM", product.fiscal.ncm), ("origem", product.fiscal.origin))
                   if value is None or value == ""]
        if missing:
            found.append(FiscalProblem(record=record, field=f"items[{i}].fiscal", platform=PLATFORM,
                                       problem=f"product {item.sku} has no {' and no '.join(missing)} (the NF-e "
                                               "is not issued without them)",
                                       fix=f"Fill {' and '.join(missing)} of product {item.sku} in "
                                           f"{_catalog_place(route)}, then `hub retry`."))
    address = document.customer.addresses[0] if document.customer and document.customer.addresses else None
    gaps = [name for name in ("street", "number", "district", "city", "state", "zip")
            if address is None or not getattr(address, name)]
    if gaps:
        found.append(FiscalProblem(record=record, field="customer.addresses", platform=PLATFORM,
                                   problem=f"the buyer's address lacks {', '.join(gaps)}",
                                   fix="Complete the customer's address in the ERP from the Amazon order's delivery "
                                       "address (Seller Central > Orders), then `hub retry`."))
    return found or None


__all__ = ["DOCS", "PLATFORM", "PULLS", "PUSHES", "Position"]
