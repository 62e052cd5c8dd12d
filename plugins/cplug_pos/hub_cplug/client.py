"""HTTP to CPlug API v3 on the core's :class:`hub.http.ApiClient`: the company header, the per-company budget, CPlug's
errors mapped onto hub's taxonomy, paging, and the lookups a connection's contexts share."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hub import (
    READS,
    ApiClient,
    Budget,
    ConnectorContext,
    ErrorRule,
    ErrorTable,
    Fetched,
    Paged,
    PageNumberPaginator,
    body_code,
    body_detail,
    check_page,
    paginate,
)
from hub.errors import AuthExpired, Fatal, InvalidRecord, NotFound, RateLimited, Retriable
from pydantic import BaseModel, Field

MAX_PER_PAGE = 100
"""Not published; assumed (README). A larger ``page_size`` option is capped to it."""

_KEY_NAMESPACE = uuid.UUID("5b0e7c3e-6a8e-4a55-9d7e-3f1c2a9b8c10")

T = TypeVar("T")


API_HOST = "https://api.connectplug.com.br"
"""CPlug's API host, from its published API reference (cplug.redocly.app)."""


class CPlugOptions(BaseModel):
    """A CPlug connection's options (``hub routes validate`` checks them)."""

    base_url: str = Field(default=API_HOST, description="the API host (paths carry /api/v3)")
    company_id: int = Field(gt=0, description="sent as CPlug-Company-Id; the ids come from GET /api/v3/companies")
    timeout_seconds: float = Field(default=30, gt=0, description="seconds before a call counts as timed out")
    page_size: int = Field(default=100, ge=1, description="records per list request (CPlug serves at most 100)")
    sku_as_barcode: bool = Field(default=False, description="send the SKU as the barcode (CPlug's \"Integração Bling\" "
                                                            "article: decide before the first sync)")
    rate_per_second: float = Field(default=5, gt=0, description="client-side limit per company; 5/s is assumed")
    token_url: str | None = Field(default=None, description="where to POST the OAuth token request when it is not "
                                                            "base_url + /oauth/token (the docs show erp.connectplug)")


UNITS_TTL = 300.0
"""Seconds the connection's units are shared by its contexts (a missing unit re-reads them at once)."""
CATEGORIES_TTL = 30.0
"""Seconds the category index is shared: short, since a category missing from it is created (after one re-read)."""


@dataclass
class CPlugState:
    """What one context remembers between requests (kept in ``ctx.scratch``: it dies with the context)."""

    options: CPlugOptions
    customers: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    sale_numbers: dict[str, str] = field(default_factory=dict)
    categories: dict[str, dict[str, Any]] | None = None
    """This context's copy of the connection's category index (see :class:`CategoryIndex`)."""
    reread: set[str] = field(default_factory=set)
    """The shared lookups a pull already re-read in this run (see :func:`shared`)."""
    patient: bool = False
    """Set by pulls. A pull sleeps through short 429s instead of abandoning a sync half-way; a push raises
    RateLimited so the core reschedules it without burning an attempt."""


def where(ctx: ConnectorContext) -> str:
    return f"tenant {ctx.tenant}, connection {ctx.connection}"


def state(ctx: ConnectorContext) -> CPlugState:
    """This context's state; the options are validated once per connection (``ctx.cache`` forgets them when they
    change)."""
    current = ctx.scratch.get("cplug")
    if isinstance(current, CPlugState):
        return current
    created = CPlugState(options=CPLUG.options(ctx))
    ctx.scratch["cplug"] = created
    return created


def shared(ctx: ConnectorContext, name: str, load: Callable[[], T], ttl: float,
           has: Callable[[T], bool] | None = None, *, refresh: bool = False) -> T:
    """A lookup list shared by the connection's contexts through ``ctx.cache`` for ``ttl`` seconds.

    Read again when ``has`` says the value lacks what the caller needs (created in CPlug since), when ``refresh``
    asks for it, and once per pull run: a pull maps its records onto what CPlug holds now, and a stale list would
    map them wrongly without a word."""
    st = state(ctx)
    key = f"cplug:{name}"
    if refresh or (st.patient and name not in st.reread):
        st.reread.add(name)
        return ctx.cache.refresh(key, load, ttl)
    value = ctx.cache.get_or_set(key, load, ttl)
    if has is not None and not has(value):
        value = ctx.cache.refresh(key, load, ttl, stale=value)
    return value


class CategoryIndex(dict[str, dict[str, Any]]):
    """A context's copy of the shared category index (it may add rows while others read the shared one). A
    category set here, one this context created, is added to the shared index too, so the connection's next push
    finds it instead of creating it again; one popped (deleted in CPlug) leaves the shared index too."""

    def __init__(self, ctx: ConnectorContext, rows: dict[str, dict[str, Any]]) -> None:
        super().__init__(rows)
        self._cache = ctx.cache

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        super().__setitem__(key, value)
        self._cache.update("cplug:categories", lambda index: {**index, key: value})

    def pop(self, key: str, *default: Any) -> Any:
        """Removed here (deleted in CPlug) and from the shared index, so no push files a product under it."""
        self._cache.update("cplug:categories",
                           lambda index: {cid: row for cid, row in index.items() if cid != key})
        return super().pop(key, *default)


def idempotency_uuid(key: str, purpose: str) -> str:
    """CPlug wants a UUID; derive it from the operation's key so a true retry sends the same one, and a different
    write (another purpose) never reuses it (a reused key is dropped as a duplicate)."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{key}|{purpose}"))


# --- requests -----------------------------------------------------------------------------------------------


def _problems(body: Any) -> list[dict[str, Any]]:
    """CPlug's 422: ``{"meta": [{"field", "validations": [{"message"|"type"}]}]}``."""
    meta = body.get("meta") if isinstance(body, dict) else None
    return [p for p in meta or [] if isinstance(p, dict)] if isinstance(meta, list) else []


COMPANY_FIX = ("Check options.company_id of connection {connection}: it must be the numeric id of a company this CPlug "
               "user can access (GET /api/v3/companies).")


class CPlug(ApiClient):
    platform = "cplug"
    options_model = CPlugOptions
    read_attempts = 3
    max_wait_seconds = 30.0
    errors = ErrorTable([
        ErrorRule(429, RateLimited),
        ErrorRule(401, AuthExpired, fix="The access token expired or was revoked; the hub renews it. If this repeats, "
                                        "check the credentials of connection {connection} and re-apply the routes."),
        ErrorRule(404, NotFound, fix="The record is gone on CPlug; the hub recreates it on the next write."),
        ErrorRule(422, InvalidRecord, message="{platform} {action} ({where}): 422 refused: {detail}",
                  fix="Correct {field} on the source record (see the reason) and save it again; CPlug refuses it "
                      "as is."),
        ErrorRule(range(500, 600), Retriable, fix="CPlug failed on its side; the hub retries with backoff."),
        ErrorRule(range(400, 500), Fatal, when=lambda body: body_code(body) == "missing_headers", fix=COMPANY_FIX),
        ErrorRule(403, Fatal, fix=COMPANY_FIX),
        ErrorRule(range(400, 600), Fatal, fix="CPlug refused the request; check the connection options and the plugin "
                                              "version."),
    ], defaults=False)

    def budget(self, ctx: ConnectorContext, operation: str) -> Budget:
        opts = state(ctx).options
        return Budget(f"cplug:{opts.company_id}", rate=opts.rate_per_second)

    def headers_for(self, ctx: ConnectorContext) -> dict[str, str]:
        return {**self.headers, "CPlug-Company-Id": str(state(ctx).options.company_id)}

    def tries(self, ctx: ConnectorContext, method: str) -> int:
        """A pull's reads are tried again (a failed run would re-read its whole window: the cursor moves only on
        the last page) and sleep through short 429s; a push's lookups are not: the outbox retries the operation,
        and a 429 reschedules it without burning an attempt."""
        return self.read_attempts if state(ctx).patient and method in READS else 1

    def detail_of(self, body: Any, default: str) -> str:
        problems = _problems(body)
        if problems:
            return "; ".join(f"{p.get('field')}: " + ", ".join(str(v.get("message") or v.get("type"))
                                                             for v in p.get("validations") or [])
                             for p in problems)
        return f"{body_code(body) or ''} {body_detail(body, default)}".strip()

    def field_of(self, body: Any) -> str | None:
        problems = _problems(body)
        return (str(problems[0].get("field") or "") or None) if problems else None


CPLUG = CPlug()


def request(ctx: ConnectorContext, method: str, path: str, *, params: dict[str, Any] | None = None,
            json: Any = None, idempotency_key: str | None = None, record: str | None = None) -> httpx.Response:
    """One call to ``/api/v3``; raises the hub error its answer stands for (see :meth:`CPlug.tries`)."""
    return CPLUG.request(ctx, method, path, params=params, json=json, idempotency_key=idempotency_key, record=record)


def error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def raise_for_error(ctx: ConnectorContext, response: httpx.Response, action: str, record: str | None = None) -> None:
    """Raise the hub error a CPlug answer stands for; a 2xx/3xx passes through."""
    CPLUG.check(ctx, response, record=record, action=action)


def unwrap(response: httpx.Response, singular: str) -> dict[str, Any]:
    """The object of a single-resource answer: ``{"data": {"product": {...}}}``, ``{"data": {...}}`` or bare."""
    body = error_body(response)
    data = body.get("data", body)
    if isinstance(data, dict) and isinstance(data.get(singular), dict):
        inner: dict[str, Any] = data[singular]
        return inner
    return data if isinstance(data, dict) else {}


def page_size(ctx: ConnectorContext) -> int:
    return min(state(ctx).options.page_size, MAX_PER_PAGE)


def _read_page(ctx: ConnectorContext, path: str, resource: str, params: dict[str, Any]
               ) -> tuple[Fetched, dict[str, Any]]:
    """One page of ``{"data": {resource: [...]}, "meta": {...}}`` (or ``{"data": [...]}``), unchecked, and its
    ``meta``; the page is the last at ``meta.last_page`` (or at once when CPlug sends none)."""
    response = CPLUG.get(ctx, path, params=params)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    data = body.get("data", body) if isinstance(body, dict) else body
    meta = body.get("meta") if isinstance(body, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    page = int(params.get("page") or 1)
    return Fetched(records=data.get(resource, data) if isinstance(data, dict) else data, url=str(response.url),
                   last=page >= int(meta.get("last_page") or page)), meta


def list_page(ctx: ConnectorContext, path: str, resource: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                                                 dict[str, Any]]:
    """One page of a list: its rows (checked: a list of objects) and its ``meta``."""
    fetched, meta = _read_page(ctx, path, resource, params)
    return check_page(fetched, plugin="cplug", stream=resource, about=where(ctx)), meta


def pages(ctx: ConnectorContext, path: str, resource: str, params: dict[str, Any] | None = None, *,
          start: int = 1) -> Iterator[Paged[int]]:
    """Every page of a list from page ``start``, shape-checked and guarded against a repeated page."""
    query = {"per_page": page_size(ctx), **(params or {})}
    return paginate(lambda page: _read_page(ctx, path, resource, {**query, "page": page})[0],
                    PageNumberPaginator(start=start), plugin="cplug", stream=resource, about=where(ctx))


def list_all(ctx: ConnectorContext, path: str, resource: str, params: dict[str, Any] | None = None
             ) -> Iterator[dict[str, Any]]:
    """Every row of a list (for lookups, not for pulls: those yield pages with cursors)."""
    for paged in pages(ctx, path, resource, params):
        yield from paged.records
