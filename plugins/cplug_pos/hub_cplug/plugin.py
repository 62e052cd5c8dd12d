"""The CPlug / ConnectPlug POS connector: platform registration and hook implementations.

What flows where follows CPlug's own Bling integration (its articles "Integração Bling" and "Dúvidas comuns - Integração
Bling"): POS sales, their customers, sellers and payment methods are read from CPlug; products, categories and sellers
are written to it; stock lives only in the ERP, so it is neither read nor written here, and the ERP's customers are
never brought into CPlug.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
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
    hookimpl,
)
from hub.errors import Fatal, HubError, InvalidRecord, NotFound
from hub.models import Canonical, Category, Product, Seller

from hub_cplug import auth, mappers
from hub_cplug.client import (
    CPlugOptions,
    idempotency_uuid,
    list_all,
    list_page,
    page_size,
    request,
    state,
    unwrap,
    where,
)
from hub_cplug.sandbox import CPlugSandbox

__all__ = ["CPlugOptions", "list_stores", "replace_categories"]

API = "/api/v3"
ROUTES = Path(__file__).resolve().parent / "routes"
"""Route files shipped with the plugin: the CPlug <-> Bling integration of CPlug's articles "Integração Bling" and
"Dúvidas comuns - Integração Bling", and its demo."""
RESOURCES: dict[str, tuple[str, str, str]] = {
    "sales": (f"{API}/sales", "sales", "sale"),
    "customers": (f"{API}/customers", "customers", "customer"),
    "payment_methods": (f"{API}/payments", "payments", "payment"),
    "sellers": (f"{API}/sellers", "sellers", "seller"),
    "categories": (f"{API}/categories", "categories", "category"),
    "products": (f"{API}/products", "products", "product"),
}
"""hub stream -> (list path, key of the list under ``data``, key of a single object under ``data``)."""

PULLS = frozenset(RESOURCES)
PUSHES = frozenset({"products", "categories", "sellers"})
OVERLAP = timedelta(minutes=2)
"""Incremental reads start this much before the cursor: a record committed late with an older ``updated_at``
is still seen (re-reading a record that did not change costs nothing: its content hash matches)."""
FALLBACK_CATEGORY = "Sem categoria"
"""CPlug requires a category on every product; one without any is filed here."""
_MAPPING_ERRORS: tuple[type[Exception], ...] = (Exception,)
"""Whatever mapping one record raises (a list where an object was expected, a string where a list was) costs that
record only: it becomes a Rejected, quarantined with its field, and the rest of the page goes on."""

DOCS = """CPlug / ConnectPlug POS, API v3 (https://cplug.redocly.app/openapi.md).
Reads closed POS sales (cancellations and exchanges included), customers, payment methods, sellers, categories and
products; writes products (name, price, barcode, grid, NCM/CEST/origin only), categories and sellers.
Options: base_url (https://api.connectplug.com.br), company_id (CPlug-Company-Id), timeout_seconds, page_size
(<= 100), sku_as_barcode, rate_per_second (5, assumed), token_url (when /oauth/token lives on another host).
Credentials: client_id and client_secret (issued by CPlug support), username and password of a CPlug user with API
access. Map CPlug's payment-method ids (pull payment_methods to list them) and its statuses closed/canceled in the
sales route."""


def _sandbox(**settings: Any) -> Any:
    return CPlugSandbox(**settings)


@hookimpl
def register_platforms(register: Any) -> None:
    register(Platform(
        name="cplug", title="CPlug / ConnectPlug POS", pulls=PULLS, pushes=PUSHES, options=CPlugOptions,
        credentials=auth.CREDENTIALS, sandbox=_sandbox, docs=DOCS,
        resync_options=frozenset({"sku_as_barcode"}), demo=str(ROUTES / "bling-demo.yaml"),
        demo_rank=0,  # the CPlug <-> Bling demo is the hub's main job (`make demo`)
        required_mappings=frozenset({"payment_methods"}),
        reauth_unattended=True,
    ))


@hookimpl
def prune_catalog(ctx: ConnectorContext, stream: str, keep: set[str]) -> list[str]:
    """Seed 002: CPlug's categories are replaced by the ERP's (the route lists ``categories`` under ``replace``)."""
    if stream != "categories":
        raise Fatal(f"cplug ({where(ctx)}): only categories can be replaced, not {stream}",
                    fix="List only categories under the route's `replace`.")
    if not keep:
        return []
    return replace_categories(ctx, keep)


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    return auth.authenticate(ctx)


# --- pulls --------------------------------------------------------------------------------------------------


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterable[Page]:
    if stream not in PULLS or stream == "sales":
        raise Fatal(f"cplug ({where(ctx)}): stream {stream!r} cannot be read from CPlug",
                    fix=f"Remove {stream!r} from the route; CPlug provides {', '.join(sorted(PULLS))}.")
    return _pull(ctx, stream, since)


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    return _pull(ctx, "sales", since)


def _since(ctx: ConnectorContext, since: str | None) -> datetime | None:
    try:
        return mappers.parse_time(since)
    except ValueError:
        raise Fatal(f"cplug ({where(ctx)}): the stored cursor {since!r} is not a timestamp",
                    fix="Run a full sync of the route (hub sync TENANT ROUTE --full).") from None


def _pull(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    """Page by page with ``updated_from``.

    Every page but the last carries the cursor the run started from: CPlug's list order is not promised to follow
    ``updated_at``, so a run that stops half-way must read the whole window again rather than skip the pages it
    never reached. The last page moves the cursor to the newest ``updated_at`` seen that is not in the future: a
    sale typed in as 2099 still comes through (the core quarantines it) but must not hide every later sale."""
    path, key, _ = RESOURCES[stream]
    state(ctx).patient = True
    start = _since(ctx, since)
    params: dict[str, Any] = {"per_page": page_size(ctx)}
    if start is not None:
        params["updated_from"] = mappers.format_time(start - OVERLAP)
    newest, page = start, 1
    while True:
        rows, meta = list_page(ctx, path, key, {**params, "page": page})
        records = _map_page(ctx, stream, rows)
        horizon = datetime.now(UTC) + FUTURE_TOLERANCE
        for row in rows:
            try:
                stamp = mappers.parse_time(row.get("updated_at"))
            except ValueError:
                continue
            if stamp is not None and stamp <= horizon and (newest is None or stamp > newest):
                newest = stamp
        last = not rows or page >= int(meta.get("last_page") or page)
        cursor = mappers.format_time(newest) if last and newest is not None else since
        yield Page(records=records, cursor=cursor)
        if last:
            return
        page += 1


def _incoming(stream: str, raw: dict[str, Any], data: Canonical) -> Incoming:
    try:
        updated = mappers.parse_time(raw.get("updated_at"))
    except ValueError:
        updated = None
    return Incoming(external_id=str(raw["id"]), data=data, updated_at=updated)


def _map_page(ctx: ConnectorContext, stream: str, rows: list[dict[str, Any]]) -> list[Incoming | Rejected]:
    if stream == "sales":
        return _map_sales(ctx, rows)
    categories: dict[str, dict[str, Any]] = {}
    units: dict[str, str] = {}
    if stream in ("categories", "products"):
        categories = _category_index(ctx)
        if stream == "categories":
            categories.update({str(r["id"]): r for r in rows if "id" in r})
    if stream == "products":
        units = {unit_id: abbr for abbr, unit_id in _units(ctx).items()}
    out: list[Incoming | Rejected] = []
    for raw in rows:
        try:
            data: Canonical
            if stream == "customers":
                data = mappers.customer(raw)
            elif stream == "payment_methods":
                data = mappers.payment_method(raw)
            elif stream == "sellers":
                data = mappers.seller(raw)
            elif stream == "categories":
                data = mappers.category(raw, categories)
            else:
                data = mappers.product(raw, categories, units)
            out.append(_incoming(stream, raw, data))
        except _MAPPING_ERRORS as exc:
            out.append(mappers.rejected(stream, raw, exc))
    return out


def _map_sales(ctx: ConnectorContext, rows: list[dict[str, Any]]) -> list[Incoming | Rejected]:
    st = state(ctx)
    st.sale_numbers.update({str(r["id"]): str(r.get("number")) for r in rows if "id" in r})
    _prefetch_customers(ctx, {str(r["customer_id"]) for r in rows if r.get("customer_id") is not None})
    out: list[Incoming | Rejected] = []
    for raw in rows:
        try:
            out.append(_map_sale(ctx, raw))
        except _MAPPING_ERRORS as exc:
            if isinstance(exc, HubError) and not isinstance(exc, NotFound | InvalidRecord):
                raise  # the platform's trouble (a 5xx, a 401), not this record's
            out.append(mappers.rejected("sales", raw, exc))
    return out


def _map_sale(ctx: ConnectorContext, raw: dict[str, Any]) -> Incoming | Rejected:
    st = state(ctx)
    what = mappers.label("sales", raw)
    buyer = None
    if raw.get("customer_id") is not None:
        buyer = st.customers.get(str(raw["customer_id"]))
        if buyer is None:
            return Rejected(external_id=str(raw.get("id")), field="customer", raw=raw,
                            reason=f"cplug {what}: its customer {raw['customer_id']} is not in CPlug",
                            fix=f"Link {what} to an existing customer in CPlug; the next sync picks it up.")
    original = None
    if raw.get("exchange_of_sale_id") is not None:
        original = _sale_number(ctx, str(raw["exchange_of_sale_id"]))
        if original is None:
            return Rejected(external_id=str(raw.get("id")), field="exchange_of_sale_id", raw=raw,
                            reason=f"cplug {what}: the original sale {raw['exchange_of_sale_id']} of this "
                                   "exchange is not in CPlug",
                            fix=f"Check the exchange {what} in CPlug (Vendas); the next sync picks it up.")
    return _incoming("sales", raw, mappers.sale(raw, buyer=buyer, original_number=original))


def _prefetch_customers(ctx: ConnectorContext, ids: set[str]) -> None:
    """Fetch the page's customers not seen yet in this pull, 100 per request (ids CPlug does not return are
    remembered as missing)."""
    st = state(ctx)
    todo = sorted(ids - st.customers.keys())
    path, key, _ = RESOURCES["customers"]
    for start in range(0, len(todo), 100):
        chunk = todo[start:start + 100]
        for row in list_all(ctx, path, key, {"customers_id": ",".join(chunk), "deleted": "include"}):
            st.customers[str(row.get("id"))] = row
        for cid in chunk:
            st.customers.setdefault(cid, None)


def _sale_number(ctx: ConnectorContext, sale_id: str) -> str | None:
    st = state(ctx)
    if sale_id not in st.sale_numbers:
        try:
            raw = unwrap(request(ctx, "GET", f"{API}/sales/{quote(sale_id, safe='')}"), "sale")
        except NotFound:
            return None
        st.sale_numbers[sale_id] = str(raw.get("number"))
    return st.sale_numbers[sale_id]


# --- lookups shared by pulls and pushes ---------------------------------------------------------------------


def _category_index(ctx: ConnectorContext, refresh: bool = False) -> dict[str, dict[str, Any]]:
    """Every live category by id: this context's copy of the index the connection's contexts share for
    ``CATEGORIES_TTL`` seconds (a category created here is added to the shared one)."""
    from hub_cplug.client import CATEGORIES_TTL, CategoryIndex, shared

    st = state(ctx)
    if st.categories is None or refresh:
        path, key, _ = RESOURCES["categories"]
        st.categories = CategoryIndex(ctx, shared(
            ctx, "categories", lambda: {str(r["id"]): r for r in list_all(ctx, path, key) if "id" in r},
            CATEGORIES_TTL, refresh=refresh))
    return st.categories


def _units(ctx: ConnectorContext, need: str | None = None) -> dict[str, str]:
    """Unit abbreviation (upper-case) -> id (assumed ``GET /api/v3/units``), shared by the connection's contexts
    for ``UNITS_TTL`` seconds; read again at once when ``need`` is not in it (a unit created in CPlug since)."""
    from hub_cplug.client import UNITS_TTL, shared

    return shared(ctx, "units", lambda: {str(u.get("abbreviation", "")).upper(): str(u["id"])
                                         for u in list_all(ctx, f"{API}/units", "units") if "id" in u},
                  UNITS_TTL, None if need is None else lambda units: need in units)


def _same(a: Any, b: Any) -> bool:
    return str(a or "").strip().casefold() == str(b or "").strip().casefold()


def _child(index: dict[str, dict[str, Any]], parent: str | None, name: str) -> str | None:
    matches = [cid for cid, c in index.items() if _same(c.get("name"), name)
               and str(c.get("parent_id") or "") == (parent or "")]
    return min(matches, key=int) if matches else None


def _find_path(index: dict[str, dict[str, Any]], path: list[str]) -> str | None:
    parent: str | None = None
    for name in path:
        parent = _child(index, parent, name)
        if parent is None:
            return None
    return parent


def _ensure_category(ctx: ConnectorContext, path: list[str], key: str, *, refresh: bool = False) -> str:
    """The id of the category at ``path``, creating the missing levels (each with its own idempotency key)."""
    index = _category_index(ctx, refresh)
    parent: str | None = None
    for depth, name in enumerate(path):
        found = _child(index, parent, name)
        if found is None and not refresh:  # the index is shared for a while: read it again before creating
            index, refresh = _category_index(ctx, refresh=True), True
            found = _child(index, parent, name)
        if found is None:
            prefix = " > ".join(path[:depth + 1])
            # Workers find-or-create the same category (every uncategorized product wants "Sem categoria"):
            # one at a time, each reading the index again once it holds the lock.
            with ctx.lock(f"category:{prefix.casefold()}"):
                index, refresh = _category_index(ctx, refresh=True), True
                found = _child(index, parent, name)
                if found is None:
                    response = request(ctx, "POST", RESOURCES["categories"][0],
                                       json=mappers.category_body(name, int(parent) if parent else None),
                                       idempotency_key=idempotency_uuid(key, f"category:{prefix}"),
                                       record=f"category {prefix!r}")
                    raw = unwrap(response, "category")
                    found = str(raw["id"])
                    index[found] = raw
        parent = found
    assert parent is not None, "a category path is never empty"
    return parent


def _bound(ctx: ConnectorContext, entity: str, natural_key: str) -> str | None:
    finder = getattr(ctx, "find_bound", None)
    found = finder(entity, natural_key) if callable(finder) else None
    return str(found) if found else None


def _unit_id(ctx: ConnectorContext, unit: str, what: str) -> int:
    units = _units(ctx, need=unit.strip().upper())
    found = units.get(unit.strip().upper())
    if found is None:
        raise InvalidRecord(f"cplug ({where(ctx)}, {what}): CPlug has no unit {unit!r} "
                            f"(it has {', '.join(sorted(units)) or 'none'})", field="unit", record=what,
                            fix=f"Create the unit {unit!r} in CPlug (Estoque > Unidades) or give the product one of "
                                "CPlug's units in the source, then save it again.")
    return int(found)


# --- pushes -------------------------------------------------------------------------------------------------


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    if stream == "products" and isinstance(record, Product):
        return _push_product(ctx, record, external_id, idempotency_key)
    if stream == "categories" and isinstance(record, Category):
        return _push_category(ctx, record, external_id, idempotency_key)
    if stream == "sellers" and isinstance(record, Seller):
        return _push_seller(ctx, record, external_id, idempotency_key)
    raise Fatal(f"cplug ({where(ctx)}): stream {stream!r} cannot be written to CPlug",
                fix=f"Remove {stream!r} from the route's streams; CPlug accepts {', '.join(sorted(PUSHES))} "
                    "(stock lives only in the ERP, and the ERP's customers are never sent to CPlug).")


def _write(ctx: ConnectorContext, stream: str, external_id: str | None, body: dict[str, Any], key: str,
           what: str) -> str:
    """POST (then report the new id at once) or PUT; each write has its own idempotency UUID."""
    path, _, singular = RESOURCES[stream]
    if external_id is None:
        response = request(ctx, "POST", path, json=body, idempotency_key=idempotency_uuid(key, "create"), record=what)
        created = str(unwrap(response, singular)["id"])
        ctx.record_remote_id(created)
        return created
    request(ctx, "PUT", f"{path}/{external_id}", json=body,
            idempotency_key=idempotency_uuid(key, f"update:{external_id}"), record=what)
    return external_id


SKU_INDEX_AFTER = 10
"""SKU clashes on create a connection meets (per process, within ``SKU_INDEX_TTL``) before it reads CPlug's whole
product list once: a first sync into a CPlug that already holds the merchant's catalog then costs one list page per
100 products and one write per product, instead of a refused create, a lookup and an update each."""
SKU_INDEX_TTL = 300.0
"""Seconds the SKU index is used. It only saves calls: CPlug refuses a second product with a SKU, so a product a
person created since is still found (through the refusal) and never duplicated."""


class SkuIndex(dict[str, str]):
    """SKU -> CPlug product id, read once when creates keep meeting existing SKUs."""


def _find_product(ctx: ConnectorContext, sku: str) -> str | None:
    path, key, _ = RESOURCES["products"]
    rows, _ = list_page(ctx, path, key, {"sku": sku, "page": 1, "per_page": page_size(ctx)})
    return next((str(r["id"]) for r in rows if r.get("sku") == sku), None)


def _indexed_product(ctx: ConnectorContext, sku: str) -> str | None:
    index = ctx.cache.get("cplug:sku-index")
    return index.get(sku) if isinstance(index, SkuIndex) else None


def _existing_product(ctx: ConnectorContext, sku: str) -> str | None:
    """The product holding ``sku`` after CPlug refused to create another: from the SKU index once clashes show a
    populated catalog (read then, once), else one lookup."""
    clashes = int(ctx.cache.get("cplug:sku-clashes", 0)) + 1
    ctx.cache.set("cplug:sku-clashes", clashes, SKU_INDEX_TTL)
    if clashes > SKU_INDEX_AFTER:
        path, key, _ = RESOURCES["products"]

        def load() -> SkuIndex:
            return SkuIndex((str(r["sku"]), str(r["id"])) for r in list_all(ctx, path, key)
                            if r.get("sku") and "id" in r)

        index: SkuIndex = ctx.cache.get_or_set("cplug:sku-index", load, SKU_INDEX_TTL)
        if sku in index:
            return index[sku]
    return _find_product(ctx, sku)


def _push_product(ctx: ConnectorContext, record: Product, external_id: str | None, key: str) -> PushResult:
    """Search by SKU before creating, so a retry after a crash (or a timed-out create) lands on the same product."""
    opts = state(ctx).options
    what = f"product {record.sku}"
    warnings: list[str] = []
    path = record.category_path or [FALLBACK_CATEGORY]
    category = _bound(ctx, "categories", " > ".join(path))
    from_binding = category is not None
    if category is None:
        category = _ensure_category(ctx, path, key)
    unit_id = _unit_id(ctx, record.unit, what)
    if external_id is None:
        # A first attempt creates at once (CPlug refuses a SKU it holds, caught below); a retry asks first, since
        # its earlier attempt may have created the product.
        external_id = _indexed_product(ctx, record.sku) if ctx.first_attempt else _find_product(ctx, record.sku)
        if external_id is not None:
            ctx.record_remote_id(external_id)
    creating = external_id is None
    if creating:
        if not record.category_path:
            warnings.append(f"{what} has no category in the source; CPlug requires one, so it was filed under "
                            f"{FALLBACK_CATEGORY!r}")
        if record.price is None:
            warnings.append(f"{what} has no price in the source; created in CPlug at R$ 0.00")
        if record.images:
            warnings.append(f"{what}: images are not sent to CPlug (its API takes none); add them there by hand")
        if not opts.sku_as_barcode and not record.gtin:
            warnings.append(f"{what} has no GTIN and sku_as_barcode is off: it has no barcode in CPlug")

    def body(category_id: str) -> dict[str, Any]:
        return mappers.product_body(record, category_id=int(category_id), unit_id=unit_id,
                                    sku_as_barcode=opts.sku_as_barcode, creating=creating)

    try:
        remote = _write(ctx, "products", external_id, body(category), key, what)
    except InvalidRecord as exc:
        if creating and exc.field == "sku":
            # CPlug keeps SKUs unique: the merchant's own product (made before the integration) is this one.
            found = _existing_product(ctx, record.sku)
            if found is None:
                raise
            ctx.record_remote_id(found)
            creating = False
            return PushResult(external_id=_write(ctx, "products", found, body(category), key, what),
                              warnings=[w for w in warnings if "created in CPlug" not in w])
        if exc.field != "category_id" or not from_binding:
            raise
        # The bound category was removed in CPlug (e.g. by replace_categories): find or create it again.
        remote = _write(ctx, "products", external_id, body(_ensure_category(ctx, path, key, refresh=True)), key, what)
    return PushResult(external_id=remote, warnings=warnings)


def _push_category(ctx: ConnectorContext, record: Category, external_id: str | None, key: str) -> PushResult:
    what = f"category {record.natural_key()!r}"
    if external_id is not None:
        parent = _ensure_category(ctx, record.path[:-1], key) if len(record.path) > 1 else None
        _write(ctx, "categories", external_id, mappers.category_body(record.name, int(parent) if parent else None),
               key, what)
        return PushResult(external_id=external_id)
    found = _find_path(_category_index(ctx), record.path)
    if found is None:
        found = _ensure_category(ctx, record.path, key)
    ctx.record_remote_id(found)
    return PushResult(external_id=found)


def _find_seller(ctx: ConnectorContext, record: Seller) -> str | None:
    path, key, _ = RESOURCES["sellers"]
    params = {"document": record.document} if record.document else {"name": record.name}
    rows, _ = list_page(ctx, path, key, {**params, "page": 1, "per_page": page_size(ctx)})
    for row in rows:
        if (record.document and "".join(ch for ch in str(row.get("document") or "") if ch.isalnum())
                == record.document) or (not record.document and _same(row.get("name"), record.name)):
            return str(row["id"])
    return None


def _push_seller(ctx: ConnectorContext, record: Seller, external_id: str | None, key: str) -> PushResult:
    """Matched by CPF/CNPJ, or by name when the seller has no document."""
    what = f"seller {record.name!r}"
    if external_id is None:
        external_id = _find_seller(ctx, record)
        if external_id is not None:
            ctx.record_remote_id(external_id)
    return PushResult(external_id=_write(ctx, "sellers", external_id, mappers.seller_body(record), key, what))


# --- helpers for the lead's flows (not hooks) ---------------------------------------------------------------


def replace_categories(ctx: ConnectorContext, keep_ids: set[str]) -> list[str]:
    """Delete CPlug's categories that are not in ``keep_ids`` (nor an ancestor of one); return the removed ids.

    Seed 002: with the Bling integration, CPlug's categories are replaced by Bling's. Run it after the ERP's
    categories were pushed (``keep_ids`` = their CPlug ids). Deepest first; a category CPlug refuses to delete
    (still used by a product) is kept and logged with its fix. The hub's own fallback category ("Sem categoria", which
    products without one are filed under) is kept too; a duplicate of it, left by workers that once created it at the
    same time, is removed when empty and otherwise left alone. An empty ``keep_ids`` is refused: it would wipe
    every category."""
    if not keep_ids:
        raise Fatal(f"cplug ({where(ctx)}): replace_categories was given no category to keep; nothing was deleted",
                    fix="Push the ERP's categories to CPlug first, then replace with their CPlug ids.")
    index = _category_index(ctx, refresh=True)
    keep: set[str] = set()
    fallback = _child(index, None, FALLBACK_CATEGORY)
    duplicates = {cid for cid, c in index.items() if cid != fallback and not c.get("parent_id")
                  and _same(c.get("name"), FALLBACK_CATEGORY)}
    for cid in {*keep_ids, *([fallback] if fallback else [])}:
        current: str | None = str(cid)
        while current and current not in keep:
            keep.add(current)
            parent = index.get(current, {}).get("parent_id")
            current = str(parent) if parent is not None else None
    doomed = sorted((cid for cid in index if cid not in keep),
                    key=lambda cid: (-len(mappers.category_path(index, cid)), int(cid)))
    company = state(ctx).options.company_id
    removed: list[str] = []
    for cid in doomed:
        action = f"DELETE {RESOURCES['categories'][0]}/{cid}"
        try:
            request(ctx, "DELETE", f"{RESOURCES['categories'][0]}/{cid}",
                    idempotency_key=idempotency_uuid(f"cplug:{company}", f"delete-category:{cid}"),
                    record=f"category {index[cid].get('name')!r}")
        except NotFound:
            continue
        except InvalidRecord as exc:
            if cid in duplicates:
                continue  # still holds products filed by the hub: harmless, kept
            ctx.log_failure(action, exc.message,
                            f"Move the products of category {index[cid].get('name')!r} to an ERP category, then "
                            "replace again.")
            continue
        index.pop(cid, None)
        removed.append(cid)
    return removed


def list_stores(ctx: ConnectorContext) -> list[dict[str, Any]]:
    """The company's stores (points of sale) as ``{"id", "name"}``: the keys of a route's ``stores`` mapping."""
    return [{"id": str(s["id"]), "name": s.get("name")} for s in list_all(ctx, f"{API}/stores", "stores")
            if "id" in s]
