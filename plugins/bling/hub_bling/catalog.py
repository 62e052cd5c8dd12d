"""Reading Bling's catalog page by page, resumable at any page.

Two of Bling's list defaults silently hide data, so every read names them: ``criterio`` (products default to
"últimos incluídos", contacts too) and ``filtroSaldoEstoque`` (default 1: only products with positive stock; there
is no "all", so each read makes three passes: positive, zero, negative).

A first sync reads the active products; later syncs read what changed since the last one, in Bling's local time
(America/Sao_Paulo) at Bling's minute granularity, starting ``overlap_minutes`` early (records read twice are
unchanged and move nothing), and with ``criterio`` 5 so that a product made inactive or deleted is seen.

The cursor is JSON: a run in progress records its pass and page, so a resumed run continues where it stopped and
never skips a page; a finished run records where the next one starts.

A webhook names its record, and :func:`pull_records` reads that record alone (a product's detail, its balances),
sharing a read made after the webhook arrived between the routes that want it. Lists that rarely change
(depósitos, categories) are read once per connection for a while (``ctx.cache``) and read again as soon as a row
names one the cached list lacks; the categories stream always reads them afresh and refreshes the cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub import (
    ConnectorContext,
    Fetched,
    Incoming,
    Page,
    Paged,
    PageNumberPaginator,
    Rejected,
    paginate,
    read_each,
)
from hub.errors import NotFound
from hub.models import Canonical, Category
from pydantic import ValidationError

from hub_bling import mappers
from hub_bling.client import options
from hub_bling.client import read as get
from hub_bling.options import TIME_ZONE

STOCK_FILTERS = (1, 0, 2)
"""``filtroSaldoEstoque``: positive, zero, negative: together, every product."""
CRITERIO_ACTIVE, CRITERIO_ALL = 2, 5
STAMP = "%Y-%m-%d %H:%M:%S"
MAX_RANGE = timedelta(days=360)
"""Bling refuses date ranges over a year; an older cursor means a full sync."""
CATEGORIES_SECONDS = 120.0
"""How long the products stream reuses the categories read by the stream before it (or by its own last run): a
renamed category reaches products within this time, a new one at once (a product naming it forces a re-read)."""
DETAIL_SECONDS = 30.0
"""How long a product's detail, read for one webhook, may serve another route's read of the same announcement."""
BALANCES_BATCH = 100
"""``GET /estoques/saldos`` takes at most 100 ``idsProdutos[]``."""
LISTING_KEY = "bling:active-listing"
LISTING_SECONDS = 90.0
"""How long the stock stream's listing of every active product may stand in for the prices stream's own list."""
SHARED_LISTING = 5_000
"""Larger catalogs keep no listing (memory): their prices stream lists what changed, as always."""
PRICE_FIELDS = ("id", "codigo", "preco", "situacao")


def local_now() -> datetime:
    return datetime.now(ZoneInfo(TIME_ZONE)).replace(tzinfo=None, second=0, microsecond=0)


def _state(since: str | None) -> dict[str, Any]:
    """The run to make from a stored cursor: full (first or too old), incremental, or one in progress."""
    now = local_now()
    state: dict[str, Any] = {}
    if since:
        try:
            state = json.loads(since)
        except ValueError:
            state = {}
    if "pass" in state:
        return state
    recent = state.get("since") and now - datetime.strptime(state["since"], STAMP) < MAX_RANGE
    if state.get("mode") == "incremental" and recent:
        return {"mode": "incremental", "since": state["since"], "started": now.strftime(STAMP), "pass": 0,
                    "page": 1}
    return {"mode": "full", "started": now.strftime(STAMP), "pass": 0, "page": 1}


def _finished(ctx: ConnectorContext, state: dict[str, Any]) -> str:
    started = datetime.strptime(state["started"], STAMP)
    since = started - timedelta(minutes=options(ctx).overlap_minutes)
    return json.dumps({"mode": "incremental", "since": since.strftime(STAMP)})


def _rejected(stream: str, ext: str, exc: Exception, raw: dict[str, Any]) -> Rejected:
    field: str | None = getattr(exc, "field", None)
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ValidationError) and exc.errors():
        field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    elif isinstance(exc, ValueError | KeyError):
        detail = str(exc)
    where = {"products": "Produtos", "customers": "Contatos"}.get(stream, stream)
    return Rejected(external_id=ext, reason=f"Bling {stream} {ext} ({raw.get('codigo') or raw.get('nome') or ''}): "
                                            f"{detail}", field=field, raw={"id": raw.get("id")},
                    fix=f"Correct {field or 'the record'} of {stream[:-1]} {ext} in Bling ({where}); the next sync "
                        "picks it up.")


def _map(stream: str, ext: str, raw: dict[str, Any], build: Callable[[dict[str, Any]], Canonical]
         ) -> Incoming | Rejected:
    try:
        return Incoming(external_id=ext, data=build(raw))
    except Exception as exc:  # whatever one record raises costs that record only
        return _rejected(stream, ext, exc, raw)


def pages(ctx: ConnectorContext, path: str, stream: str, params: dict[str, Any] | None = None, *, start: int = 1,
          size: int | None = None, call: Callable[[ConnectorContext, str, Any], Any] = get) -> Iterator[Paged[int]]:
    """Every page of a Bling list (``pagina``/``limite``) from page ``start``, shape-checked and guarded against
    a repeated page by the core's paginator (the cursor holds page numbers, so the sync's own check cannot see
    one). ``call`` defaults to a pull's read, retried here; an outbox operation passes ``client.get``, as the
    outbox retries."""
    limit = size or options(ctx).page_size

    def fetch(page: int) -> Fetched:
        query = {**(params or {}), "pagina": page, "limite": limit}
        body = call(ctx, path, query)
        return Fetched(records=body.get("data", body) if isinstance(body, dict) else body,
                       url=str(ctx.http.build_request("GET", path, params=query).url))

    return paginate(fetch, PageNumberPaginator(limit, start=start), plugin="bling", stream=stream,
                    about=f"tenant {ctx.tenant}, connection {ctx.connection}")


def _list_pages(ctx: ConnectorContext, state: dict[str, Any], params: dict[str, Any]
                ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any] | None, int]]:
    """Every page of ``/produtos`` in the three stock passes from ``state``; with each, the state after it
    (None after the last) and the pass's ``filtroSaldoEstoque``. Each pass is guarded on its own: two passes may
    start with the same products."""
    for pass_index in range(int(state["pass"]), len(STOCK_FILTERS)):
        start = int(state["page"]) if pass_index == int(state["pass"]) else 1
        query = {**params, "filtroSaldoEstoque": STOCK_FILTERS[pass_index]}
        for paged in pages(ctx, "/produtos", "products", query, start=start):
            if paged.next is not None:
                after: dict[str, Any] | None = {**state, "pass": pass_index, "page": paged.next}
            elif pass_index + 1 < len(STOCK_FILTERS):
                after = {**state, "pass": pass_index + 1, "page": 1}
            else:
                after = None
            yield paged.records, after, STOCK_FILTERS[pass_index]


def _product_params(state: dict[str, Any]) -> dict[str, Any]:
    if state["mode"] == "incremental":
        return {"criterio": CRITERIO_ALL, "tipo": "T", "dataAlteracaoInicial": state["since"]}
    return {"criterio": CRITERIO_ACTIVE, "tipo": "T"}


def all_categories(ctx: ConnectorContext) -> list[dict[str, Any]]:
    rows = [row for paged in pages(ctx, "/categorias/produtos", "categories") for row in paged.records]
    ctx.cache.set("bling:categories", rows, CATEGORIES_SECONDS)
    return rows


class CategoryPaths:
    """Category paths from the cached categories, read again once when a product names one they lack. Nothing is
    read until a product is mapped: an incremental run that finds no change costs its list calls alone."""

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.fresh = False
        self.paths: dict[int, list[str]] | None = None

    def __call__(self, raw: dict[str, Any]) -> dict[int, list[str]]:
        if self.paths is None:
            rows = self.ctx.cache.get("bling:categories")
            if rows is None:
                rows, self.fresh = all_categories(self.ctx), True
            self.paths = mappers.category_paths(rows)
        named = raw.get("categoria")
        category = named.get("id") if isinstance(named, dict) else None
        if category and str(category).isdigit() and int(category) not in self.paths and not self.fresh:
            self.paths, self.fresh = mappers.category_paths(all_categories(self.ctx)), True
        return self.paths


def deposit_names(ctx: ConnectorContext, rows: list[dict[str, Any]] | None = None) -> dict[int, str]:
    """The account's depósitos by id (cached; read again when a balance row names one the cache lacks)."""
    from hub_bling import sales  # it reads its lists with this module's pages

    names = {int(d["id"]): str(d.get("descricao") or d["id"]) for d in sales.deposits(ctx)}
    seen = {int(dep["id"]) for row in rows or [] for dep in row.get("depositos") or [] if dep.get("id")}
    if seen - set(names):
        sales.forget(ctx, "deposits")
        names = {int(d["id"]): str(d.get("descricao") or d["id"]) for d in sales.deposits(ctx)}
    return names


def _product(ctx: ConnectorContext, paths: CategoryPaths, product_id: int | str, raw: dict[str, Any]
             ) -> Incoming | Rejected:
    known = paths(raw)  # outside _map: a failed categories read stops the run, it is no product's fault
    return _map("products", str(product_id), raw, lambda r: mappers.product(r, category_paths=known))


def _detail(ctx: ConnectorContext, product_id: int) -> dict[str, Any] | None:
    """A product's detail; None when it was deleted between the list and the detail (the next sync sees that)."""
    try:
        raw: dict[str, Any] = get(ctx, f"/produtos/{product_id}")["data"]
    except NotFound:
        return None
    return raw


def pull_products(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    state = _state(since)
    paths = CategoryPaths(ctx)
    full = state["mode"] == "full"
    for rows, after, _ in _list_pages(ctx, state, _product_params(state)):
        wanted: dict[int, None] = {}
        for row in rows:
            parent = row.get("idProdutoPai")
            if parent and full:
                continue  # a variation: its parent is listed too, and its detail carries the whole grid
            wanted[int(parent or row["id"])] = None
        details = read_each(wanted, lambda product_id: _detail(ctx, product_id))
        records = [_product(ctx, paths, product_id, raw) for product_id, raw in zip(wanted, details, strict=True)
                   if raw is not None]
        yield Page(records=records, cursor=json.dumps(after) if after else _finished(ctx, state))


def pull_stock(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    """Balances per depósito of every product; balances have no change date, so each run reads them all. A whole
    listing (not a resumed one) of a catalog up to :data:`SHARED_LISTING` rows is kept a moment for the prices
    stream, which then needs no list of its own (:func:`pull_prices`)."""
    state = _state(since if since and "pass" in since else None)
    whole = int(state["pass"]) == 0 and int(state["page"]) == 1
    listed: list[dict[str, Any]] | None = [] if whole else None
    for rows, after, stock_filter in _list_pages(ctx, state, {"criterio": CRITERIO_ACTIVE, "tipo": "T"}):
        if listed is not None:
            listed.extend({k: row.get(k) for k in PRICE_FIELDS} for row in rows)
            if len(listed) > SHARED_LISTING:
                listed = None
        ids = [int(r["id"]) for r in rows if r.get("formato") != "V"]
        records: list[Incoming | Rejected] = []
        if ids:
            # The balances hide zero and negative stock by default too: ask with the pass's own filter.
            balances = get(ctx, "/estoques/saldos", {"idsProdutos[]": ids,
                                                     "filtroSaldoEstoque": stock_filter}).get("data") or []
            records.extend(_levels(ctx, balances))
        if after is None and listed is not None:
            ctx.cache.set(LISTING_KEY, (state["started"], listed), LISTING_SECONDS)
        yield Page(records=records, cursor=json.dumps(after) if after else json.dumps({"mode": "done"}))


def _levels(ctx: ConnectorContext, balances: list[dict[str, Any]]) -> list[Incoming | Rejected]:
    deposits = deposit_names(ctx, balances)
    records: list[Incoming | Rejected] = []
    for row in balances:
        try:
            levels = mappers.stock_levels(row, deposits)
        except Exception as exc:  # whatever one record raises costs that record only
            records.append(_rejected("stock", str((row.get("produto") or {}).get("id")), exc, row))
            continue
        records.extend(Incoming(external_id=ext, data=level) for ext, level in levels)
    return records


def pull_prices(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    """Prices from the ``/produtos`` list pages alone (``preco`` is on each row, variations included): no detail
    call. A first sync reads the active products; later ones what changed since (a price change moves
    ``dataAlteracao``). Inactive and deleted products have no price to send. A grid's parent is priced too (Bling
    applies its price to the variations saved with it), and each variation has its own row.

    When the stock stream has just listed every active product (the route reads stock, then prices), that
    listing is the answer: every active product's price as of when it started, so the next run starts from there
    (unchanged prices move nothing) and this one makes no call."""
    state = _state(since)
    shared = ctx.cache.get(LISTING_KEY)
    if (shared is not None and state["mode"] == "incremental" and int(state["pass"]) == 0
            and int(state["page"]) == 1 and shared[0] >= state["since"]):
        started, rows = shared
        chunks = [rows[i:i + options(ctx).page_size] for i in range(0, len(rows), options(ctx).page_size)] or [[]]
        for n, chunk in enumerate(chunks, 1):
            priced = [_map("prices", str(row["id"]), row, mappers.price) for row in chunk
                      if row.get("situacao", "A") == "A"]
            yield Page(records=priced, cursor=_finished(ctx, {**state, "started": started})
                       if n == len(chunks) else None)
        return
    for rows, after, _ in _list_pages(ctx, state, _product_params(state)):
        records: list[Incoming | Rejected] = []
        for row in rows:
            if row.get("situacao", "A") != "A":
                continue
            records.append(_map("prices", str(row["id"]), row, mappers.price))
        yield Page(records=records, cursor=json.dumps(after) if after else _finished(ctx, state))


def _simple_list(ctx: ConnectorContext, path: str, stream: str, build: Callable[[dict[str, Any]], Canonical],
                 params: dict[str, Any] | None = None) -> Iterator[Page]:
    for paged in pages(ctx, path, stream, params):
        rows = paged.records
        records = [_map(stream, str(r["id"]), r, build) for r in rows]
        yield Page(records=records, cursor=json.dumps({"mode": "done"}) if paged.last else None)


def pull_categories(ctx: ConnectorContext) -> Iterator[Page]:
    rows = all_categories(ctx)
    paths = mappers.category_paths(rows)
    records = [_map("categories", str(r["id"]), r, lambda r: Category(path=paths[int(r["id"])])) for r in rows]
    yield Page(records=records, cursor=json.dumps({"mode": "done"}))


def _keep_contact(ctx: ConnectorContext, state: dict[str, Any], row: dict[str, Any]) -> bool:
    """A first sync sends active contacts only (Zydon's help page "Integração Zydon↔Bling": "clientes ativos"); a
    later one also the contacts made inactive that the hub already has, so the sink learns of it. ``GET
    /contatos`` has no situação filter (its ``criterio`` has no "ativos"): the list row's ``situacao`` decides,
    before the detail call."""
    if row.get("situacao", "A") == "A":
        return True
    if state["mode"] != "incremental":
        return False
    document = "".join(ch for ch in str(row.get("numeroDocumento") or "") if ch.isalnum()).upper()
    return bool(document) and ctx.find_bound("customers", document) is not None


def pull_customers(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    """Contacts (``criterio`` 1: all of them, not the default "últimos incluídos"), with their address."""
    state = _state(since)
    params: dict[str, Any] = {"criterio": 1}
    if state["mode"] == "incremental":
        params["dataAlteracaoInicial"] = state["since"]
    for paged in pages(ctx, "/contatos", "customers", params, start=int(state.get("page", 1))):
        rows = [row for row in paged.records if _keep_contact(ctx, state, row)]
        records = []
        for row in rows:
            try:
                raw = get(ctx, f"/contatos/{row['id']}")["data"]
            except NotFound:
                continue
            records.append(_map("customers", str(row["id"]), raw, mappers.customer))
        yield Page(records=records, cursor=_finished(ctx, state) if paged.last
                   else json.dumps({**state, "page": paged.next}))


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def detail(ctx: ConnectorContext, product_id: str, announced: datetime | None) -> dict[str, Any] | None:
    """A product's detail (None: it no longer exists) read after ``announced``, the webhook's arrival: a read
    another route made since then serves this one too (both routes of one product event cost one call)."""
    key = f"bling:detail:{product_id}"

    def load() -> tuple[datetime, dict[str, Any] | None]:
        read_at = _utcnow()  # taken before the call: the answer is at least this recent
        try:
            return read_at, get(ctx, f"/produtos/{product_id}")["data"]
        except NotFound:
            return read_at, None

    def current(hit: Any) -> bool:
        return hit is not None and announced is not None and hit[0] >= announced

    hit = ctx.cache.get(key)
    if not current(hit):
        hit = ctx.cache.refresh(key, load, DETAIL_SECONDS, stale=hit)  # another thread's fresh read is taken
        if not current(hit):
            hit = ctx.cache.refresh(key, load, DETAIL_SECONDS, stale=hit)
    return hit[1] if hit is not None else None


def _targeted_products(ctx: ConnectorContext, ids: list[str], received: dict[str, datetime]) -> Iterator[Page]:
    paths = CategoryPaths(ctx)
    records: list[Incoming | Rejected] = []
    for product_id in ids:
        raw = detail(ctx, product_id, received.get(product_id))
        if raw is None:
            continue  # deleted since the event; the incremental run sees the deletion
        records.append(_product(ctx, paths, product_id, raw))
    yield Page(records=records, cursor=None)


def _targeted_prices(ctx: ConnectorContext, ids: list[str], received: dict[str, datetime]) -> Iterator[Page]:
    records: list[Incoming | Rejected] = []
    for product_id in ids:
        raw = detail(ctx, product_id, received.get(product_id))
        if raw is None or raw.get("situacao", "A") != "A":
            continue  # gone or inactive: no price to send (as the list read skips it)
        records.append(_map("prices", product_id, raw, mappers.price))
    yield Page(records=records, cursor=None)


def _targeted_stock(ctx: ConnectorContext, ids: list[str]) -> Iterator[Page]:
    """The named products' balances: positive first (nearly always the answer), then zero and negative for the
    ones the filter hid, as ``GET /estoques/saldos`` hides them too by default."""
    wanted = [int(i) for i in ids if i.isdigit()]
    for start in range(0, len(wanted), BALANCES_BATCH):
        missing = wanted[start:start + BALANCES_BATCH]
        balances: list[dict[str, Any]] = []
        for stock_filter in STOCK_FILTERS:
            if not missing:
                break
            rows = get(ctx, "/estoques/saldos", {"idsProdutos[]": missing,
                                                 "filtroSaldoEstoque": stock_filter}).get("data") or []
            balances.extend(rows)
            found = {int((row.get("produto") or {}).get("id") or 0) for row in rows}
            missing = [i for i in missing if i not in found]
        yield Page(records=_levels(ctx, balances), cursor=None)


def pull_records(ctx: ConnectorContext, stream: str, ids: list[str], received: dict[str, datetime]
                 ) -> Iterator[Page] | None:
    """Only the records webhooks named (see ``hub.hookspecs.pull_records``); None for a stream read otherwise."""
    if stream == "products":
        return _targeted_products(ctx, ids, received)
    if stream == "prices":
        return _targeted_prices(ctx, ids, received)
    if stream == "stock":
        return _targeted_stock(ctx, ids)
    return None


def pull(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    if stream == "products":
        return pull_products(ctx, since)
    if stream == "stock":
        return pull_stock(ctx, since)
    if stream == "categories":
        return pull_categories(ctx)
    if stream == "customers":
        return pull_customers(ctx, since)
    if stream == "prices":
        return pull_prices(ctx, since)
    if stream == "sellers":
        return _simple_list(ctx, "/vendedores", stream, mappers.seller, {"situacaoContato": "A"})
    if stream == "payment_methods":
        return _simple_list(ctx, "/formas-pagamentos", stream, mappers.payment_method)
    raise ValueError(f"Bling has no catalog stream {stream!r}")
