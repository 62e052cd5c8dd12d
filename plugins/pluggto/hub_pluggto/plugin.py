"""The Plugg.to connector: platform registration and the hook implementations.

Reads products (SKUs), orders and the NF-e Plugg.to issued; writes products as SKU upserts (``PUT /skus/{sku}``,
deleted when the source deletes or deactivates them), stock (``PUT /skus/{sku}/stock``), prices (the SKU's price or
a ``price_table`` row), orders (``POST /orders``, partial ``PUT /orders/{id}``), the NF-e of an order issued
elsewhere (attached to the order's existing shipment), and issues NF-e itself (``emit_invoice``). Notifications
are accepted on a per-connection secret token in the URL (Plugg.to signs nothing), and the product or order one
names is then read alone (``pull_records``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub import (
    FUTURE_TOLERANCE,
    ConnectorContext,
    Credentials,
    Incoming,
    Page,
    Platform,
    PushResult,
    Rejected,
    RouteView,
    WebhookEvent,
    hookimpl,
)
from hub.errors import Fatal, InvalidRecord, NotFound, Retriable
from hub.models import Canonical, FiscalProblem, Invoice, Price, Product, Sale, StockLevel

from hub_pluggto import auth, fiscal, hybrid, invoices, mappers, orders, webhooks
from hub_pluggto.client import API, PluggtoOptions, body_of, not_updated, options, page_size, pages, unwrap, where
from hub_pluggto.sandbox import PluggtoSandbox

__all__ = ["PluggtoOptions"]

PULLS = frozenset({"products", "sales", "invoices"})
PUSHES = frozenset({"products", "stock", "prices", "sales", "invoices"})
ROUTES = Path(__file__).resolve().parent / "routes"
"""The route files this plugin ships: Plugg.to <-> Bling (bling.yaml) and its demo (bling-demo.yaml)."""
OVERLAP = timedelta(minutes=5)
"""Incremental reads start this much before the cursor (a record saved late with an older ``modified``)."""
DEFAULT_WAREHOUSE = "default"
DEFAULT_PRICE_LIST = "default"

DOCS = """Plugg.to marketplace hub (https://developers.plugg.to).
Reads products (SKUs, with variations and NCM/NBM/CEST), orders (all channels; payer/receiver, payments,
statuses) and the NF-e it issued; writes products as SKU upserts (variations, photos, categories "A > B > C",
attributes, fiscal fields; deleted when the source deletes or deactivates them), stock (the SKU's quantity, or a
stock_table row per warehouse), prices (the SKU's, or a price_table row per price list), orders (created once,
found by their channel number; statuses moved as the order flow allows), the NF-e of an order (attached to the
order's existing shipment), and issues the NF-e of an order itself (emit_invoice). Hybrid offers (Amazon FBA and
own stock on one SKU) are reported with the fix.
Options: base_url, timeout_seconds, page_size (<= 100), rate_per_second (2, assumed), user_id, webhook_header,
fiscal_fields, xml_url_template. Credentials: client_id, client_secret and either username/password (the
account's API user) or authorization_code (an app's pluggtocode); webhook_token for notifications."""


def _sandbox(**settings: Any) -> Any:
    return PluggtoSandbox(**settings)


@hookimpl
def register_platforms(register: Any) -> None:
    register(Platform(
        name="pluggto", title="Plugg.to", pulls=PULLS, pushes=PUSHES, options=PluggtoOptions,
        credentials=auth.CREDENTIALS, sandbox=_sandbox, docs=DOCS,
        resync_options=frozenset({"fiscal_fields", "inactive_products"}),
        required_mappings=frozenset({"payment_methods"}), demo=str(ROUTES / "bling-demo.yaml"),
        # Refresh tokens work once (strict rotation, no grace window). With the password grant a lost rotation is
        # recovered at once by logging in again; see auth.py for app connections.
        refresh_reuse_seconds=0.0, reauth_unattended=True,
    ))


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    return auth.authenticate(ctx)


# --- pulls ------------------------------------------------------------------------------------------------------


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterable[Page]:
    if stream != "products":
        raise Fatal(f"pluggto ({where(ctx)}): stream {stream!r} cannot be read from Plugg.to",
                    fix=f"Remove {stream!r} from the route; Plugg.to provides products and sales.")
    return _pull(ctx, "products", "/products", "Product", since)


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    return _pull(ctx, "sales", "/orders", "Order", since)


@hookimpl
def pull_invoices(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    return invoices.pull(ctx, _since_text(ctx, since))


def _since_text(ctx: ConnectorContext, since: str | None) -> str | None:
    _since(ctx, since)  # a cursor that is not a timestamp is refused with the fix
    return since


def _since(ctx: ConnectorContext, since: str | None) -> datetime | None:
    try:
        return mappers.parse_time(since)
    except ValueError:
        raise Fatal(f"pluggto ({where(ctx)}): the stored cursor {since!r} is not a timestamp",
                    fix="Run a full sync of the route (hub sync TENANT ROUTE --full).") from None


def _pull(ctx: ConnectorContext, stream: str, path: str, key: str, since: str | None) -> Iterator[Page]:
    """Pages of ``?modified=FROMtoTO&limit=&next=<last id>``, oldest change first.

    Plugg.to filters ``modified`` by day, so the window starts on the cursor's day (less the overlap) and records
    changed before the cursor's overlap are dropped here. Every page but the last carries the cursor the run started
    from (the order of a list read with ``next`` is not documented, so a run stopped half-way reads its whole window
    again); the last page moves it to the newest change date seen that is not in the future."""
    ctx.scratch["pluggto:pulling"] = True
    start = _since(ctx, since)
    params: dict[str, Any] = {}
    if start is not None:
        floor = start - OVERLAP
        today = datetime.now(UTC) + timedelta(days=1)
        params["modified"] = f"{floor:%Y-%m-%d}to{today:%Y-%m-%d}"
    if stream == "sales":
        params.update(orderby="modified", orderdirection="asc")
    newest = start
    horizon = datetime.now(UTC).replace(tzinfo=None) + FUTURE_TOLERANCE
    for paged in pages(ctx, path, key, params, stream=stream):
        records: list[Incoming | Rejected] = []
        for raw in paged.records:
            try:
                stamp = mappers.parse_time(raw.get("modified"))
            except ValueError:
                stamp = None
            if start is not None and stamp is not None and stamp < start - OVERLAP:
                continue
            if stamp is not None and stamp <= horizon and (newest is None or stamp > newest):
                newest = stamp
            records.append(_map(stream, raw, stamp, options(ctx).fba_warehouses))
        cursor = mappers.format_time(newest) if paged.last and newest is not None else since
        yield Page(records=records, cursor=cursor)


@hookimpl
def pull_records(ctx: ConnectorContext, stream: str, ids: list[str]) -> Iterable[Page] | None:
    """The products and orders notifications named, each read by id and mapped as the list read maps its rows: one
    call per record instead of the day's whole list (``modified`` filters by day). None for invoices, read by the
    incremental run.

    Reads are not shared between routes through ``ctx.cache``: it is bounded and holds the NF-e submissions the
    hub is waiting on (invoices.py), which a burst of detail reads would evict."""
    if stream not in ("products", "sales"):
        return None
    return _named(ctx, stream, ids)


def _named(ctx: ConnectorContext, stream: str, ids: list[str]) -> Iterator[Page]:
    """Pages of the named records; a record gone since (404) is left out, as the list would leave it out. No
    cursor: the incremental run stays the backstop for a notification that was lost."""
    ctx.scratch["pluggto:pulling"] = True  # reads: retried, short 429s waited out
    fba = options(ctx).fba_warehouses
    size = page_size(ctx)
    for start in range(0, len(ids), size):
        records: list[Incoming | Rejected] = []
        for named in ids[start:start + size]:
            raw = _read_one(ctx, stream, named)
            if raw is None:
                continue
            try:
                stamp = mappers.parse_time(raw.get("modified"))
            except ValueError:
                stamp = None
            records.append(_map(stream, raw, stamp, fba))
        yield Page(records=records, cursor=None)


def _read_one(ctx: ConnectorContext, stream: str, named: str) -> dict[str, Any] | None:
    """``GET /products/{id}`` (``/skus/{sku}`` when a ``skus`` notification named a SKU) or ``GET /orders/{id}``;
    None when Plugg.to no longer has it."""
    sku = named.removeprefix(webhooks.SKU_PREFIX) if stream == "products" else named
    if stream == "sales":
        path, key, what = f"/orders/{quote(named, safe='')}", "Order", f"order {named}"
    elif sku != named:
        path, key, what = _sku_path(sku), "Product", f"product {sku}"
    else:
        path, key, what = f"/products/{quote(named, safe='')}", "Product", f"product {named}"
    try:
        response = API.get(ctx, path, record=what)
    except NotFound:
        return None
    raw = unwrap(body_of(response), key)
    if sku == named and not raw.get("id"):
        raw = {**raw, "id": named}  # asked for by its id, so that is the record's id
    return raw


def _map(stream: str, raw: dict[str, Any], stamp: datetime | None, fba: list[str]) -> Incoming | Rejected:
    external_id = str(raw.get("id") or raw.get("sku") or "?")
    if stream == "products":
        for sku_record in [raw, *[v for v in raw.get("variations") or [] if isinstance(v, dict)]]:
            why = hybrid.problem(sku_record, fba)
            if why is not None:
                return Rejected(external_id=external_id, reason=f"pluggto products {external_id}: {why}",
                                field="stock_table", raw={"id": external_id},
                                fix=hybrid.FIX.format(sku=sku_record.get("sku")))
    try:
        data: Canonical = mappers.product_in(raw) if stream == "products" else mappers.sale_in(raw)
    except mappers.Unmappable as exc:
        return Rejected(external_id=external_id, reason=exc.reason, field=exc.field, fix=exc.fix,
                        raw={"id": external_id})
    except (ValueError, TypeError, KeyError) as exc:
        field = _field_of(exc)
        return Rejected(external_id=external_id, reason=f"pluggto {stream} {external_id}: {_first_line(exc)}",
                        field=field, raw={"id": external_id},
                        fix=f"Correct {field or 'the record'} in the Plugg.to panel; the next sync reads it again.")
    return Incoming(external_id=external_id, data=data, updated_at=stamp)


def _field_of(exc: Exception) -> str | None:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return ".".join(str(p) for p in first["loc"]) or None
        except (IndexError, KeyError, TypeError):
            return None
    return None


def _first_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        except (IndexError, KeyError, TypeError):
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- pushes -----------------------------------------------------------------------------------------------------


def _sku_path(sku: str) -> str:
    """``/skus/{sku}``; Plugg.to's SDK replaces ``/`` in SKUs with ``-``, the rest is URL-quoted."""
    return f"/skus/{quote(sku.replace('/', '-'), safe='')}"


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    if stream != "products" or not isinstance(record, Product):
        raise Fatal(f"pluggto ({where(ctx)}): stream {stream!r} cannot be written to Plugg.to",
                    fix="Plugg.to takes products, stock, prices and invoices; remove the stream from the route.")
    opts = options(ctx)
    if not record.active and opts.inactive_products == "delete":
        gone = _delete_sku(ctx, record.sku)
        return PushResult(external_id=external_id or record.sku,
                          warnings=[] if gone else [f"product {record.sku} was already gone from Plugg.to"])
    nbm_from_ncm = bool((ctx.route.options if ctx.route else {}).get("nbm_from_ncm", True))
    body = mappers.product_out(record, list(opts.fiscal_fields), nbm_from_ncm)
    # An upsert by SKU: running it twice writes the same product, never a second one.
    response = API.put(ctx, _sku_path(record.sku), json=body, record=f"product {record.sku}")
    product = unwrap(body_of(response), "Product")
    remote = str(product.get("id") or external_id or record.sku)
    # Variations the source deleted or deactivated: Plugg.to keeps a variation an upsert does not name.
    keep = {v.sku for v in record.variations if v.active}
    for variation in product.get("variations") or []:
        sku = str(variation.get("sku") or "") if isinstance(variation, dict) else ""
        if sku and sku not in keep:
            _delete_sku(ctx, sku)
    return PushResult(external_id=remote)


def _delete_sku(ctx: ConnectorContext, sku: str) -> bool:
    """``DELETE /skus/{sku}``; a SKU already gone counts as deleted (a redelivery). False when it was gone."""
    try:
        API.delete(ctx, _sku_path(sku), record=f"product {sku}")
    except NotFound:
        return False
    return True


def _missing_sku(exc: NotFound, what: str, sku: str) -> Retriable:
    return Retriable(f"pluggto ({what}): SKU {sku} is not on Plugg.to yet: {exc.message}",
                     fix=f"Push product {sku} to Plugg.to first (the products stream of the route); this "
                         "operation is retried by itself.")


@hookimpl
def push_stock(ctx: ConnectorContext, record: StockLevel, external_id: str | None,
               idempotency_key: str) -> PushResult:
    """``update`` overwrites the quantity (absolute, so a redelivery changes nothing). A negative ERP balance is
    offered as 0. A warehouse other than ``default`` is a ``stock_table`` row matched by its code."""
    quantity = max(Decimal("0"), record.quantity)
    amount: int | Decimal = int(quantity) if quantity == quantity.to_integral_value() else quantity
    what = f"{where(ctx)}, stock of {record.sku}@{record.warehouse}"
    opts = options(ctx)
    if record.warehouse in opts.fba_warehouses:
        raise InvalidRecord(f"pluggto ({what}): warehouse {record.warehouse} is Amazon's FBA Onsite stock, which "
                            "Amazon manages", field="warehouse", record=f"stock of {record.sku}",
                            fix="Map the depósito to one of the seller's own Plugg.to warehouses under the route's "
                                "mappings.stores; FBA Onsite stock is never written by the hub.")
    try:
        if record.warehouse == DEFAULT_WAREHOUSE:
            response = API.put(ctx, f"{_sku_path(record.sku)}/stock", json={"action": "update", "quantity": amount,
                                                                             "sku": record.sku},
                               record=f"stock of {record.sku}")
        else:
            response = API.put(ctx, _sku_path(record.sku), json={"sku": record.sku, "stock_table": [
                {"code": record.warehouse, "type": "own", "quantity": amount}]}, record=f"stock of {record.sku}")
    except NotFound as exc:
        raise _missing_sku(exc, what, record.sku) from None
    written = hybrid.holder(unwrap(body_of(response), "Product"), record.sku)
    why = hybrid.problem(written, opts.fba_warehouses) if amount > 0 else None
    if why is not None:
        # Plugg.to's answer shows the SKU on Amazon's logistics too: reported (quarantined) with the fix.
        raise InvalidRecord(f"pluggto ({what}): {why}", field="stock_table", record=f"stock of {record.sku}",
                            fix=hybrid.FIX.format(sku=record.sku))
    return PushResult(external_id=f"{record.sku}@{record.warehouse}")


@hookimpl
def push_price(ctx: ConnectorContext, record: Price, external_id: str | None, idempotency_key: str) -> PushResult:
    """The default list is the SKU's own price (``price`` the list price, ``special_price`` the one sold at when
    lower); another list is a ``price_table`` row (``action: overwrite``) matched by its code."""
    regular = record.list_price if record.list_price is not None and record.list_price > record.price else None
    prices: dict[str, Any] = ({"price": regular, "special_price": record.price} if regular is not None
                              else {"price": record.price, "special_price": None})
    if record.price_list == DEFAULT_PRICE_LIST:
        body: dict[str, Any] = {"sku": record.sku, **prices}
    else:
        body = {"sku": record.sku, "price_table": [{"code": record.price_list, "label": record.price_list,
                                                    "action": "overwrite", **prices}]}
    try:
        API.put(ctx, _sku_path(record.sku), json=body, record=f"price of {record.sku}")
    except NotFound as exc:
        raise _missing_sku(exc, f"{where(ctx)}, price of {record.sku}@{record.price_list}", record.sku) from None
    return PushResult(external_id=f"{record.sku}@{record.price_list}")


@hookimpl
def push_sale(ctx: ConnectorContext, record: Sale, external_id: str | None, idempotency_key: str) -> PushResult:
    """Create the order once (found by its channel number on a retry) or change its status as Plugg.to's order flow
    allows (orders.py)."""
    return orders.push(ctx, record, external_id)


@hookimpl
def emit_invoice(ctx: ConnectorContext, record: Sale, external_id: str, idempotency_key: str,
                 invoice_id: str | None) -> Invoice:
    """Plugg.to issues the order's NF-e (the Amazon FBA Onsite flow): one note per order, resent after a fix
    (invoices.py)."""
    return invoices.emit(ctx, record, external_id, invoice_id)


@hookimpl
def push_invoice(ctx: ConnectorContext, record: Invoice, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    """Attach an authorized NF-e to the order's EXISTING shipment: ``PUT /orders/{id}`` with the shipment's ``id``
    (without it Plugg.to creates a second delivery). A shipment that already holds this key, or Plugg.to's
    ``not_updated`` answer, counts as done; the lookup first makes a redelivery write nothing."""
    key = record.access_key
    about = f"NF-e {record.number or key or '?'}"
    order_id = record.sale.external_id if record.sale else None
    if not order_id:
        raise InvalidRecord(f"pluggto ({where(ctx)}): {about} names no Plugg.to order", field="sale", record=about,
                            fix="The invoice must come from a sale read from Plugg.to (emit_invoices on the route).")
    if record.status != "authorized" or not key:
        raise InvalidRecord(f"pluggto ({where(ctx)}): {about} of order {order_id} is {record.status}"
                            + ("" if key else " and has no access key"), field="status" if key else "access_key",
                            record=about, fix="Only an NF-e authorized by SEFAZ (with its 44-digit key) is sent to "
                                              "Plugg.to; it goes once the ERP has it authorized.")
    order = unwrap(body_of(API.get(ctx, f"/orders/{quote(order_id, safe='')}", record=f"order {order_id}")), "Order")
    shipments = [s for s in order.get("shipments") or [] if isinstance(s, dict)]
    holder = next((s for s in shipments if str(s.get("nfe_key") or "") == key), None)
    if holder is not None:
        return PushResult(external_id=key, warnings=[f"order {order_id}: shipment {holder.get('id')} already holds "
                                                     f"NF-e {key}"])
    free = [s for s in shipments if s.get("id") and not s.get("nfe_key") and s.get("status") != "canceled"]
    if not free:
        taken = ", ".join(f"{s.get('id')}={s.get('nfe_key')}" for s in shipments) or "none"
        raise InvalidRecord(f"pluggto ({where(ctx)}): order {order_id} has no shipment to attach {about} to "
                            f"(shipments: {taken})", field="shipments", record=about,
                            fix="Plugg.to creates the shipment when the channel's order arrives; attaching the "
                                "NF-e without one would create a duplicate delivery. Check the order in the "
                                "Plugg.to panel, then `hub retry`.")
    shipment: dict[str, Any] = {"id": free[0]["id"], "nfe_key": key, "nfe_number": record.number or "",
                                "nfe_serie": record.series or ""}
    if record.issued_at is not None:
        issued = record.issued_at if record.issued_at.tzinfo else record.issued_at.replace(tzinfo=UTC)
        shipment["nfe_date"] = issued.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    link = _xml_link(ctx, record)
    if link:
        shipment["nfe_link"] = link
    body: dict[str, Any] = {"status": "invoiced", "shipments": [shipment]}
    if link:
        body["documents"] = [{"url": link, "type": "invoice"}]
    response = API.put(ctx, f"/orders/{quote(order_id, safe='')}", json=body, record=f"order {order_id}",
                       expect=(400,))
    answer = body_of(response)
    if response.status_code == 400 or (isinstance(answer, dict) and answer.get("error") is True):
        if not_updated(answer):
            return PushResult(external_id=key, warnings=[f"order {order_id}: Plugg.to already holds NF-e {key}"])
        if response.status_code == 400:
            API.check(ctx, response, record=about)
        raise Fatal(f"pluggto ({where(ctx)}): order {order_id} refused {about}: {API.detail_of(answer, 'error')}",
                    fix="Check the order's shipment in the Plugg.to panel, then `hub retry`.")
    warnings = [] if link else [f"order {order_id}: NF-e {key} attached without its XML (set options."
                                "xml_url_template so Plugg.to can download it)"]
    return PushResult(external_id=key, warnings=warnings)


def _xml_link(ctx: ConnectorContext, record: Invoice) -> str | None:
    xml = (record.xml or "").strip()
    if xml.startswith(("http://", "https://")):
        return xml
    template = options(ctx).xml_url_template
    if template:
        return template.format(access_key=record.access_key, number=record.number or "", series=record.series or "")
    return None


# --- webhooks and fiscal checks ------------------------------------------------------------------------------------


@hookimpl
def parse_webhook(ctx: ConnectorContext, headers: dict[str, str], body: bytes, query: dict[str, str]
                  ) -> list[WebhookEvent]:
    return webhooks.parse(ctx, headers, body, query)


@hookimpl
def validate_fiscal(document: Canonical, route: RouteView, products: dict[str, Product]
                    ) -> list[FiscalProblem] | None:
    return fiscal.validate(document, route, products)
