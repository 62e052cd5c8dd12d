"""The Zydon B2B connector: platform registration and hook implementations.

What flows where follows Zydon's help page "Integração Zydon↔Bling": the ERP's active products (with variations
and attributes), customers with CPF/CNPJ or IE/RG, payment methods, stock and prices are written to Zydon; orders
are read from it (with their customer, items and payments); the ERP's order statuses are set on Zydon's orders by
name (statuses are created by hand in Zydon with Bling's names); authorized NF-e are attached to the orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hub import (
    FUTURE_TOLERANCE,
    ConnectorContext,
    Credentials,
    Incoming,
    Page,
    Platform,
    PushResult,
    Rejected,
    WebhookEvent,
    hookimpl,
)
from hub.errors import Fatal, InvalidRecord, NotFound, Retriable
from hub.models import (
    Canonical,
    Customer,
    Invoice,
    Payment,
    PaymentMethod,
    Price,
    Product,
    Sale,
    StockLevel,
    normalize_document,
)
from pydantic import ValidationError

from hub_zydon import auth, mappers, webhooks
from hub_zydon.client import SALES, ZYDON, ZydonOptions, list_all, obj, pages, shared, state, where
from hub_zydon.mappers import fold

PATHS = {"products": f"{SALES}/products", "customers": f"{SALES}/partners",
         "payment_methods": f"{SALES}/payment-methods", "sales": f"{SALES}/sales"}
PULLS = frozenset(PATHS)
ROUTES = Path(__file__).resolve().parent / "routes"
"""The route files this plugin ships: Zydon <-> Bling (bling.yaml) and its demo (bling-demo.yaml)."""
PUSHES = frozenset({"products", "customers", "payment_methods", "stock", "prices", "sales", "invoices"})
OVERLAP = timedelta(minutes=2)
"""Incremental reads start this much before the cursor: a record saved late with an older ``updated_at`` is still
seen (re-reading an unchanged record costs nothing: its content hash matches)."""

DOCS = """Zydon B2B ordering portal (https://docs.zydon.com.br).
Reads products (variations, images, attributes), customers (partners), payment methods and orders (items, payments,
status name); writes products, customers (CPF/CNPJ or IE/RG required), payment methods, stock per warehouse
(absolute balances), product prices, order statuses (by name) and orders, and attaches NF-e to orders.
Options: base_url, solution_id (portal uuid), default_warehouse_id, company_id, page_size (<= 200), first_page (0),
timeout_seconds, rate_per_second. Credentials: key_id and key_secret (Configurações da Organização -> Chaves de API);
webhook_secret (optional) verifies the order webhook "Entrada de Pedido"."""


def _sandbox(**settings: Any) -> Any:
    from hub_zydon.sandbox import ZydonSandbox

    return ZydonSandbox(**settings)


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    register(Platform(
        name="zydon", title="Zydon B2B", pulls=PULLS, pushes=PUSHES, options=ZydonOptions,
        credentials=auth.CREDENTIALS, sandbox=_sandbox, docs=DOCS, reauth_unattended=True,
        demo=str(ROUTES / "bling-demo.yaml"), extra={"consent_url": auth.consent_url},
    ))


@hookimpl
def register_commands(cli: Any) -> None:
    from hub_zydon.cli import install

    install(cli)


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    return auth.authenticate(ctx)


@hookimpl
def parse_webhook(ctx: ConnectorContext, headers: dict[str, str], body: bytes) -> list[WebhookEvent]:
    return webhooks.parse(ctx, headers, body)


# --- lookups shared by pulls and pushes -----------------------------------------------------------------------------


def _statuses(ctx: ConnectorContext, need: str | None = None) -> list[dict[str, Any]]:
    """The organization's order statuses (created by hand in Zydon), re-read at once when ``need`` is missing."""
    return shared(ctx, "statuses", lambda: list_all(ctx, f"{SALES}/status", "statuses"),
                  None if need is None else lambda rows: any(fold(r.get("name")) == fold(need) for r in rows))


@hookimpl
def list_values(ctx: ConnectorContext, table: str) -> dict[str, str] | None:
    """The order statuses made by hand in Zydon (Pedidos > Status), which Bling's situações must match by name."""
    if table != "statuses":
        return None
    return {str(s.get("name")): str(s.get("name")) for s in _statuses(ctx) if s.get("name")}


def _methods(ctx: ConnectorContext, need: str | None = None) -> list[dict[str, Any]]:
    return shared(ctx, "payment_methods", lambda: list_all(ctx, PATHS["payment_methods"], "payment_methods"),
                  None if need is None else lambda rows: any(fold(r.get("name")) == fold(need)
                                                             or str(r.get("id")) == need for r in rows))


def _units(ctx: ConnectorContext, need: str) -> dict[str, Any]:
    """Unit abbreviation (upper-case) -> ``standard_unit_id`` (an integer in demo organizations, a uuid in
    ERP-integrated ones: kept as Zydon gives it)."""
    return shared(ctx, "units", lambda: {str(u.get("abbreviation", "")).upper(): u["id"]
                                         for u in list_all(ctx, f"{SALES}/measure-units", "units") if "id" in u},
                  lambda units: need in units)


# --- pulls ----------------------------------------------------------------------------------------------------------


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterable[Page]:
    if stream not in PULLS or stream == "sales":
        raise Fatal(f"zydon ({where(ctx)}): stream {stream!r} cannot be read from Zydon",
                    fix=f"Remove {stream!r} from the route; Zydon provides {', '.join(sorted(PULLS))}.")
    return _pull(ctx, stream, since)


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    return _pull(ctx, "sales", since)


@hookimpl
def pull_records(ctx: ConnectorContext, stream: str, ids: list[str]) -> Iterable[Page] | None:
    """The orders the "Entrada de Pedido" webhook named, each read once by id (the incremental run stays the
    backstop); other streams have no webhook, so they get the incremental run."""
    return _named_orders(ctx, ids) if stream == "sales" else None


def _named_orders(ctx: ConnectorContext, ids: list[str]) -> Iterator[Page]:
    state(ctx).patient = True
    records: list[Incoming | Rejected] = []
    for order_id in ids:
        try:
            order = obj(ZYDON.get(ctx, f"{SALES}/orders/{quote(order_id, safe='')}"))
        except NotFound:
            continue  # gone since the event; the incremental run reads what there is
        records.append(_incoming(ctx, "sales", order, order=order))
    yield Page(records=records, cursor=None)


def _pull(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    """Sorted by change date, from the cursor (less :data:`OVERLAP`); each page moves the cursor to the newest
    change date read that is not in the future (a record typed in as 2099 still comes through, and the core
    quarantines it, but it must not hide every later change)."""
    state(ctx).patient = True
    try:
        start = mappers.parse_time(since)
    except ValueError:
        raise Fatal(f"zydon ({where(ctx)}): the stored cursor {since!r} is not a timestamp",
                    fix="Run a full sync of the route (hub sync TENANT ROUTE --full).") from None
    params: dict[str, Any] = {"sort": "updated_at", "dir": "asc"}
    if start is not None:
        params["start_date"] = mappers.format_time(start - OVERLAP)
    newest = start
    for paged in pages(ctx, PATHS[stream], stream, params):
        horizon = datetime.now(UTC) + FUTURE_TOLERANCE
        records = [_incoming(ctx, stream, raw) for raw in paged.records]
        for raw in paged.records:
            try:
                stamp = mappers.parse_time(raw.get("updated_at"))
            except ValueError:
                continue
            if stamp is not None and stamp <= horizon and (newest is None or stamp > newest):
                newest = stamp
        yield Page(records=records, cursor=mappers.format_time(newest) if newest is not None else since)


def _field(exc: Exception) -> str | None:
    if isinstance(exc, KeyError):
        return str(exc.args[0])
    if isinstance(exc, ValidationError) and exc.errors():
        return ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
    return None


def _incoming(ctx: ConnectorContext, stream: str, raw: dict[str, Any], order: dict[str, Any] | None = None
              ) -> Incoming | Rejected:
    remote = str(raw.get("id"))
    try:
        data: Canonical
        if stream == "products":
            data = mappers.product(raw)
        elif stream == "customers":
            data = mappers.customer(raw)
        elif stream == "payment_methods":
            data = mappers.payment_method(raw)
        else:
            data = _sale(ctx, raw, order)
        try:
            updated = mappers.parse_time(raw.get("updated_at"))
        except ValueError:
            updated = None
        return Incoming(external_id=remote, data=data, updated_at=updated)
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        field = _field(exc)
        what = {"customers": "customer (parceiro)", "sales": "order", "payment_methods": "payment method"}.get(
            stream, stream[:-1])
        return Rejected(external_id=remote, reason=f"zydon {what} {remote} ({where(ctx)}): {exc}", field=field,
                        raw=raw, fix=f"Correct {field or 'the record'} of {what} {remote} in Zydon; the next sync "
                                     "picks it up.")


def _partner(ctx: ConnectorContext, partner_id: Any) -> dict[str, Any] | None:
    st = state(ctx)
    key = str(partner_id)
    if key not in st.partners:
        try:
            st.partners[key] = obj(ZYDON.get(ctx, f"{PATHS['customers']}/{quote(key, safe='')}"))
        except NotFound:
            st.partners[key] = None
    return st.partners[key]


def _sale(ctx: ConnectorContext, row: dict[str, Any], order: dict[str, Any] | None = None) -> Sale:
    """A row of the sales list, read in full from ``GET /api/sales/orders/{id}`` (the list has no items), unless
    ``order`` is that read already (a webhook's order)."""
    if order is None:
        order = obj(ZYDON.get(ctx, f"{SALES}/orders/{quote(str(row['id']), safe='')}"))
    history = order.get("statuses") or []
    status_id = history[-1].get("status_id") if history else (row.get("status") or {}).get("status_id")
    names = {str(s.get("id")): str(s.get("name") or s.get("title")) for s in _statuses(ctx)}
    status = names.get(str(status_id)) or str((row.get("status") or {}).get("title") or "")
    if not status:
        raise KeyError("status")
    methods = {str(m.get("id")): str(m.get("name")) for m in _methods(ctx)}
    methods.update({str(p.get("id")): str(p.get("name")) for p in row.get("payments") or [] if p.get("name")})
    partner = _partner(ctx, order.get("partner_id")) if order.get("partner_id") is not None else None
    buyer = mappers.customer(partner) if partner else None
    return mappers.sale(order, buyer=buyer, status=status, methods=methods)


# --- pushes: the catalog --------------------------------------------------------------------------------------------


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    if stream == "products" and isinstance(record, Product):
        return _push_product(ctx, record, external_id)
    if stream == "customers" and isinstance(record, Customer):
        return PushResult(external_id=_push_partner(ctx, record, external_id))
    if stream == "payment_methods" and isinstance(record, PaymentMethod):
        return PushResult(external_id=_push_method(ctx, record, external_id))
    raise Fatal(f"zydon ({where(ctx)}): stream {stream!r} cannot be written to Zydon as a catalog record",
                fix=f"Remove {stream!r} from the route; Zydon accepts {', '.join(sorted(PUSHES))}.")


def _search(ctx: ConnectorContext, stream: str, text: str) -> Iterator[dict[str, Any]]:
    """The rows ``search=text`` finds, page by page and only as far as the caller reads (callers match exactly:
    a search for SKU "AB-1" also finds "AB-10")."""
    for paged in pages(ctx, PATHS[stream], stream, {"search": text}):
        yield from paged.records


def _find_product(ctx: ConnectorContext, sku: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The product whose SKU, or one of whose variations' SKU, is ``sku``: (product, variation or None)."""
    for row in _search(ctx, "products", sku):
        if row.get("sku") == sku:
            return row, None
        for variation in row.get("variations") or []:
            if isinstance(variation, dict) and variation.get("sku") == sku:
                return row, variation
    return None


def _unit_id(ctx: ConnectorContext, unit: str, what: str) -> Any:
    wanted = unit.strip().upper()
    units = _units(ctx, wanted)
    if wanted not in units:
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): Zydon has no measure unit {unit!r} (it has "
                            f"{', '.join(sorted(units)) or 'none'})", field="unit", record=what,
                            fix=f"Create the unit {unit!r} in Zydon (Cadastros > Unidades de medida) or give the "
                                "product one of Zydon's units in the ERP, then save it again.")
    return units[wanted]


def _named(ctx: ConnectorContext, name: str, path: str, what: str, extra: dict[str, Any] | None = None) -> Any:
    """The id of the record called ``name`` at ``path`` (categories, variation axes), created when missing."""
    def load() -> dict[str, Any]:
        return {fold(r.get("name")): r["id"] for r in list_all(ctx, path, what) if "id" in r}

    found = shared(ctx, what, load, lambda rows: fold(name) in rows).get(fold(name))
    if found is not None:
        return found
    with ctx.lock(f"{what}:{fold(name)}"):
        found = ctx.cache.refresh(f"zydon:{what}", load, 300.0).get(fold(name))
        if found is None:
            found = obj(ZYDON.post(ctx, path, json={"name": name, "active": True, **(extra or {})},
                                   record=f"{what} {name!r}"))["id"]
            ctx.cache.update(f"zydon:{what}", lambda rows: {**rows, fold(name): found})
    return found


def _push_product(ctx: ConnectorContext, record: Product, external_id: str | None) -> PushResult:
    """Find by SKU before creating, so a retry after a lost answer lands on the same product."""
    what = f"product {record.sku}"
    warnings: list[str] = []
    unit_id = _unit_id(ctx, record.unit, what)
    category = _named(ctx, record.category_path[-1], f"{SALES}/categories", "categories") \
        if record.category_path else None
    names = sorted({name for v in record.variations for name in v.attributes})
    axes = {fold(name): _named(ctx, name, f"{SALES}/variations", "variations",
                               {"values": sorted({v.attributes[name] for v in record.variations
                                                  if name in v.attributes})})
            for name in names}
    if record.images:
        warnings.append(f"{what}: {len(record.images)} image(s) not sent: Zydon takes uploaded files "
                        "(resource files), not URLs; add them in Zydon")
    if external_id is not None:
        current = obj(ZYDON.get(ctx, f"{PATHS['products']}/{quote(external_id, safe='')}", record=what))
        ZYDON.put(ctx, f"{PATHS['products']}/{quote(external_id, safe='')}", record=what,
                  json=mappers.product_body(record, unit_id=unit_id, category_id=category, axes=axes, current=current))
        return PushResult(external_id=external_id, warnings=warnings)
    with ctx.lock(f"product:{record.sku}"):
        found = _find_product(ctx, record.sku)
        if found is not None and found[1] is None:
            remote = str(found[0]["id"])
            ctx.record_remote_id(remote)
            ZYDON.put(ctx, f"{PATHS['products']}/{quote(remote, safe='')}", record=what,
                      json=mappers.product_body(record, unit_id=unit_id, category_id=category, axes=axes,
                                                current=found[0]))
            return PushResult(external_id=remote, warnings=warnings)
        if found is not None:
            raise InvalidRecord(f"zydon ({where(ctx)}, {what}): SKU {record.sku} is a variation of Zydon product "
                                f"{found[0].get('sku')}", field="sku", record=what,
                                fix=f"Give product {record.sku} its own SKU in the ERP (Zydon's SKUs are unique "
                                    "across products and variations), then save it again.")
        created = obj(ZYDON.post(ctx, PATHS["products"], record=what,
                                 json=mappers.product_body(record, unit_id=unit_id, category_id=category, axes=axes)))
        remote = str(created["id"])
        ctx.record_remote_id(remote)
        return PushResult(external_id=remote, warnings=warnings)


def _require_fiscal(ctx: ConnectorContext, record: Customer) -> None:
    if record.document or record.state_registration or record.rg:
        return
    raise InvalidRecord(
        f"zydon ({where(ctx)}): customer {record.name!r} has no CPF/CNPJ and no IE/RG; Zydon requires one of them "
        "(the ERP does not), so it is not sent", field="document", record=f"customer {record.name!r}",
        fix=f"Add the CPF/CNPJ or the IE/RG of customer {record.name!r} in Bling (Cadastros > Contatos) and save "
            f"it; the next sync sends it (or `hub retry {ctx.tenant}`).")


def _find_partner(ctx: ConnectorContext, record: Customer) -> str | None:
    if record.document:
        key, field = record.document, "fiscal_registration_number"
    else:
        key, field = str(record.state_registration or record.rg), "state_registration"
    for row in _search(ctx, "customers", key):
        value = row.get(field) or ""
        if normalize_document(value) == normalize_document(key):
            return str(row["id"])
    return None


def _push_partner(ctx: ConnectorContext, record: Customer, external_id: str | None, *, own: bool = True) -> str:
    """Zydon's rule first (CPF/CNPJ or IE/RG), then update, else find by document, else create. ``own``: the
    partner is the operation's record (its id is recorded at once); False for an order's buyer."""
    _require_fiscal(ctx, record)
    what = f"customer {record.name!r}"
    body = mappers.partner_body(record)
    if external_id is not None:
        ZYDON.put(ctx, f"{PATHS['customers']}/{quote(external_id, safe='')}", json=body, record=what)
        return external_id
    with ctx.lock(f"partner:{record.document or record.state_registration or record.rg}"):
        found = _find_partner(ctx, record)
        if found is not None:
            if own:  # an order's buyer found is used as Zydon has it: a sale's copy may be partial
                ctx.record_remote_id(found)
                ZYDON.put(ctx, f"{PATHS['customers']}/{quote(found, safe='')}", json=body, record=what)
            return found
        remote = str(obj(ZYDON.post(ctx, PATHS["customers"], json=body, record=what))["id"])
        if own:
            ctx.record_remote_id(remote)
        return remote


def _method_id(ctx: ConnectorContext, name: str) -> str | None:
    return next((str(m["id"]) for m in _methods(ctx, name) if fold(m.get("name")) == fold(name)), None)


def _push_method(ctx: ConnectorContext, record: PaymentMethod, external_id: str | None, *, own: bool = True) -> str:
    """Found by name (case and accents folded), created when missing. ``own`` as for :func:`_push_partner`."""
    what = f"payment method {record.name!r}"
    body = {"name": record.name, "active": record.active}
    if external_id is not None:
        ZYDON.put(ctx, f"{PATHS['payment_methods']}/{quote(external_id, safe='')}", json=body, record=what)
        return external_id
    with ctx.lock(f"payment_method:{fold(record.name)}"):
        found = _method_id(ctx, record.name)
        if found is None:
            found = str(obj(ZYDON.post(ctx, PATHS["payment_methods"], json=body, record=what))["id"])
            ctx.cache.forget("zydon:payment_methods")
        if own:
            ctx.record_remote_id(found)
        return found


# --- pushes: stock and prices ---------------------------------------------------------------------------------------


def _located(ctx: ConnectorContext, sku: str, what: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    found = _find_product(ctx, sku)
    if found is None:
        raise Retriable(f"zydon ({where(ctx)}, {what}): no product or variation with SKU {sku} in Zydon yet",
                        fix=f"The product push of SKU {sku} goes first; the hub retries. If it is not in the route, "
                            "add products to the route's streams.")
    return found


@hookimpl
def push_stock(ctx: ConnectorContext, record: StockLevel, external_id: str | None,
               idempotency_key: str) -> PushResult:
    """An absolute balance through the stock override (``PUT /api/sales/stock/override``, assumed): sending it again
    changes nothing, where the documented movement (an increment) would count it twice."""
    what = f"stock of {record.sku} in warehouse {record.warehouse}"
    key = f"stock-target:{record.sku}"
    target: tuple[dict[str, Any], dict[str, Any] | None] | None = ctx.cache.get(key)
    if target is None:
        # Balances change far more often than products: the SKU's ids are kept, so a write costs one call.
        found, found_variation = _located(ctx, record.sku, what)
        target = ({"id": found["id"], "variations": bool(found.get("variations")),
                   "warehouse_default": found.get("warehouse_default")},
                  {"id": found_variation["id"]} if found_variation else None)
        ctx.cache.set(key, target)
    product, variation = target
    if variation is None and product.get("variations"):
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): {record.sku} has variations in Zydon; their stock is "
                            "kept per variation", field="sku", record=what,
                            fix="Send the stock of each variation's SKU (the ERP's grid children), not the parent's.")
    warehouse = record.warehouse
    if warehouse == "default":
        warehouse = state(ctx).options.default_warehouse_id or str(product.get("warehouse_default") or "")
    if not warehouse:
        raise Fatal(f"zydon ({where(ctx)}, {what}): no Zydon warehouse for the stock level",
                    fix=f"Set options.default_warehouse_id of connection {ctx.connection}, or map the ERP's "
                        "warehouses to Zydon's in the route's stores mapping.")
    body = {"type": "PRODUCT", "product_id": product["id"],
            "product_variation_id": variation["id"] if variation else None,
            "warehouse_id": int(warehouse) if warehouse.isdigit() else warehouse, "total": record.quantity,
            "company_id": state(ctx).options.company_id}
    try:
        ZYDON.put(ctx, f"{SALES}/stock/override", json=body, record=what)
    except NotFound:
        ctx.cache.forget(key)  # the product was removed or recreated in Zydon: look it up again
        raise Retriable(f"zydon ({where(ctx)}, {what}): Zydon no longer has the product it had for {record.sku}",
                        fix="The hub looks the SKU up again on the retry.") from None
    return PushResult(external_id=f"{product['id']}:{variation['id'] if variation else '-'}@{warehouse}")


WRITABLE = ("sku", "name", "description", "active", "ean_gtin", "price", "standard_unit_id", "category_id",
            "brand_id", "category_specifications", "variations", "images")


@hookimpl
def push_price(ctx: ConnectorContext, record: Price, external_id: str | None, idempotency_key: str) -> PushResult:
    """The product's (or variation's) own price, in reais; an unchanged price is not written. Price tables stay
    manual in Zydon, as its help page says: a price of another list is refused with the fix."""
    what = f"price of {record.sku}"
    if record.price_list not in ("default", ""):
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): price list {record.price_list!r} has no place in Zydon",
                            field="price_list", record=what,
                            fix="Zydon's price tables are kept by hand (Produtos > Tabelas de preço, as Zydon's help "
                                "page \"Integração Zydon↔Bling\" says); send only the ERP's default price to Zydon.")
    product, variation = _located(ctx, record.sku, what)
    target = variation if variation is not None else product
    remote = f"{product['id']}:{variation['id'] if variation else '-'}"
    if mappers.money(target.get("price")) == record.price:
        return PushResult(external_id=remote)
    body = {k: product.get(k) for k in WRITABLE if k in product}
    if variation is None:
        body["price"] = record.price
    else:
        variations: list[dict[str, Any]] = [{**v, "price": record.price} if v.get("id") == variation["id"] else dict(v)
                                            for v in product.get("variations") or []]
        for v in variations:
            v.pop("stock", None)
        body["variations"] = variations
    ZYDON.put(ctx, f"{PATHS['products']}/{quote(str(product['id']), safe='')}", json=body, record=what)
    return PushResult(external_id=remote)


# --- pushes: orders -------------------------------------------------------------------------------------------------


def _status_id(ctx: ConnectorContext, name: str) -> str | None:
    return next((str(s["id"]) for s in _statuses(ctx, name) if fold(s.get("name")) == fold(name)), None)


def _require_status(ctx: ConnectorContext, name: str, what: str) -> str:
    status = _status_id(ctx, name)
    if status is None:
        known = ", ".join(sorted(str(s.get("name")) for s in _statuses(ctx))) or "none"
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): Zydon has no order status named {name!r} (it has: "
                            f"{known})", field="status", record=what,
                            fix=f"Create the status {name!r} in Zydon (Pedidos > Status) with exactly Bling's name, "
                                f"then `hub retry {ctx.tenant}`.")
    row = next(s for s in _statuses(ctx) if str(s.get("id")) == status)
    if row.get("can_edit_by_api") is False:
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): Zydon's status {row.get('name')!r} may not be set through "
                            "the API", field="status", record=what,
                            fix=f"Allow API changes on the status {row.get('name')!r} in Zydon (Pedidos > Status, "
                                f"\"can_edit_by_api\"), then `hub retry {ctx.tenant}`.")
    return status


def set_status(ctx: ConnectorContext, order_id: str, name: str, what: str) -> None:
    """Set the Zydon status whose name equals ``name`` (case and accents folded) on an order, through the assumed
    ``PUT /api/sales/orders/{id}/status``; nothing is written when the order has it already."""
    status = _require_status(ctx, name, what)
    path = f"{SALES}/orders/{quote(order_id, safe='')}"
    order = obj(ZYDON.get(ctx, path, record=what))
    history = order.get("statuses") or []
    if history and str(history[-1].get("status_id")) == status:
        return
    ZYDON.put(ctx, f"{path}/status", json={"status_id": int(status) if status.isdigit() else status}, record=what)


def _find_order(ctx: ConnectorContext, number: str) -> str | None:
    for row in _search(ctx, "sales", number):
        if str(row.get("external_id") or "") == number:
            return str(row["id"])
    return None


def _payment_method_id(ctx: ConnectorContext, payment: Payment, what: str) -> Any:
    """The Zydon method of a payment: its key when it is a Zydon id, else by name, created when missing."""
    methods = _methods(ctx)
    if any(str(m.get("id")) == payment.method for m in methods):
        return _as_id(payment.method)
    name = payment.name or payment.method
    return _as_id(_push_method(ctx, PaymentMethod(code=payment.method, name=name), None, own=False))


def _as_id(value: Any) -> Any:
    text = str(value)
    return int(text) if text.isdigit() else text


@hookimpl
def push_sale(ctx: ConnectorContext, record: Sale, external_id: str | None, idempotency_key: str) -> PushResult:
    """An order that came from Zydon (``external_id``) gets the sale's status by name. Otherwise the sale is
    written as a Zydon order (``POST /api/sales/sales``), found first by its number (``external_id`` there)."""
    what = f"sale {record.number}"
    if external_id is not None:
        set_status(ctx, external_id, record.status, f"{what} (Zydon order {external_id})")
        return PushResult(external_id=external_id)
    with ctx.lock(f"sale:{record.number}"):
        found = _find_order(ctx, record.number)
        if found is not None:
            ctx.record_remote_id(found)
            set_status(ctx, found, record.status, f"{what} (Zydon order {found})")
            return PushResult(external_id=found)
        body = _order_body(ctx, record, what)
        remote = str(obj(ZYDON.post(ctx, PATHS["sales"], json=body, record=what))["id"])
        ctx.record_remote_id(remote)
        return PushResult(external_id=remote)


def _order_body(ctx: ConnectorContext, record: Sale, what: str) -> dict[str, Any]:
    if record.customer is None:
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): the sale has no customer; every Zydon order belongs to a "
                            "partner", field="customer", record=what,
                            fix=f"Give sale {record.number} a customer with CPF/CNPJ or IE/RG in the ERP.")
    bound = ctx.find_bound("customers", record.customer.document) if record.customer.document else None
    try:
        partner = str(bound) if bound else _push_partner(ctx, record.customer, None, own=False)
    except InvalidRecord as exc:
        raise InvalidRecord(f"{exc.message} (in {what})", field="customer.document", record=what,
                            fix=exc.fix) from None
    items = []
    for item in record.items:
        located = _find_product(ctx, item.sku)
        if located is None:
            raise InvalidRecord(f"zydon ({where(ctx)}, {what}): no product or variation with SKU {item.sku} in "
                                "Zydon", field="items.sku", record=what,
                                fix=f"Sync the product {item.sku} to Zydon (or create it there), then "
                                    f"`hub retry {ctx.tenant}`.")
        product, variation = located
        items.append({"product_id": product["id"], "product_variation_id": variation["id"] if variation else None,
                      "sku": item.sku, "name": item.name, "quantity": item.quantity, "unit_value": item.unit_price,
                      "discount": item.discount})
    payments = [{"payment_method_id": _payment_method_id(ctx, p, what), "amount": p.amount,
                 "installments": p.installments} for p in record.payments]
    status = _require_status(ctx, record.status, what)
    gross = sum((i.quantity * i.unit_price for i in record.items), Decimal("0"))
    return {"external_id": record.number, "company_id": state(ctx).options.company_id, "partner_id": _as_id(partner),
            "seller_id": None, "total_value": record.total, "full_value": gross, "discount_value": record.discount,
            "freight_value": record.freight, "observation": record.notes, "created_at": record.issued_at.isoformat(),
            "items": items, "payments": payments, "status_id": _as_id(status)}


# --- pushes: invoices -----------------------------------------------------------------------------------------------


def _upload_xml(ctx: ConnectorContext, invoice: Invoice, what: str) -> Any:
    """The NF-e XML as a resource file (``POST /api/sales/resource-files``, multipart field ``files``)."""
    name = f"NFe{invoice.access_key}.xml"
    path = f"{SALES}/resource-files"
    budget = ZYDON.budget(ctx, f"POST {path}")
    ctx.throttle(budget.key, budget.rate, burst=budget.burst)
    headers = {**ZYDON.headers_for(ctx), **(ZYDON.auth.headers(ctx) if ZYDON.auth else {})}
    try:
        response = ctx.http.post(f"{ZYDON.base_url(ctx)}{path}", headers=headers,
                                 files={"files": (name, (invoice.xml or "").encode(), "application/xml")})
    except httpx.TransportError as exc:
        raise Retriable(f"zydon POST {path} ({where(ctx)}, {what}): {type(exc).__name__}",
                        fix="The upload did not go through; the hub retries (an orphan file costs nothing).") from exc
    ZYDON.check(ctx, response, record=what, action=f"POST {path}")
    files = (response.json() or {}).get("resourceFiles") or []
    return files[0]["id"] if files else None


@hookimpl
def push_invoice(ctx: ConnectorContext, record: Invoice, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    """Attach an authorized NF-e to its Zydon order (assumed ``POST /api/sales/orders/{id}/invoices``): its key,
    number, series and XML. ``record.sale`` names the order (as the route's source names the sale, or as Zydon's
    own order id when the core sends an ERP's NF-e back to the portal the order came from). An invoice whose key
    the order already lists counts as done."""
    what = f"NF-e {record.number or record.access_key}"
    if record.status != "authorized" or not record.access_key:
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): only an authorized NF-e with its access key is attached "
                            f"(status {record.status})", field="status", record=what,
                            fix="Wait for SEFAZ's authorization in the ERP; the authorized invoice is sent then.")
    if record.sale is None:
        raise InvalidRecord(f"zydon ({where(ctx)}, {what}): the invoice names no sale", field="sale", record=what,
                            fix="Only the NF-e of an order that came from Zydon can be attached to it there.")
    # The sale as this connection knows it: bound through the route's source, or (an NF-e the core sends back to
    # where its sale came from) already this connection's order id.
    order_id = ctx.resolve("sales", record.sale) or record.sale.external_id
    path = f"{SALES}/orders/{quote(order_id, safe='')}"

    def attached() -> str | None:
        try:
            order = obj(ZYDON.get(ctx, path, record=what))
        except NotFound:
            raise Fatal(f"zydon ({where(ctx)}, {what}): Zydon has no order {order_id} for this invoice",
                        fix="Check that the sale came from this Zydon connection (run the sales route's sync), then "
                            f"`hub retry {ctx.tenant}`.") from None
        return next((str(i.get("id") or f"{order_id}:{record.access_key}") for i in order.get("invoices") or []
                     if i.get("invoice_key") == record.access_key), None)

    done = attached()
    if done is not None:
        return PushResult(external_id=done)
    xml_id = _upload_xml(ctx, record, what) if record.xml else None
    body = {"invoice_key": record.access_key, "number": record.number, "series": record.series,
            "xml_resource_id": xml_id, "xml_file_name": f"NFe{record.access_key}.xml" if xml_id else None}
    try:
        created = obj(ZYDON.post(ctx, f"{path}/invoices", json=body, record=what))
    except Retriable:
        done = attached()  # a 409: attached meanwhile
        if done is None:
            raise
        return PushResult(external_id=done)
    remote = str(created.get("id") or f"{order_id}:{record.access_key}")
    ctx.record_remote_id(remote)
    return PushResult(external_id=remote)


__all__ = ["DOCS", "PATHS", "PULLS", "PUSHES", "set_status"]
