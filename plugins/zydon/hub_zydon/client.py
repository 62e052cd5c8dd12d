"""HTTP to Zydon's API on the core's :class:`hub.ApiClient`: the options, the bearer JWT, the budget, Zydon's error
bodies mapped onto hub's taxonomy, and paging over the ``{currentPage, perPage, total, items}`` envelope.

Zydon publishes neither its error body nor its rate limit. The plugin assumes ``{"message": "...", "errors":
[{"field": "...", "message": "..."}]}`` (README, "Assumptions"): the field of a 400 comes from ``errors[0].field``
and the text from ``message``, which is what the core's default readers look at, so another shape still gives a
readable (if less precise) error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hub import (
    READS,
    ApiClient,
    BearerAuth,
    Budget,
    ConnectorContext,
    ErrorRule,
    ErrorTable,
    Fetched,
    Paged,
    PageNumberPaginator,
    body_detail,
    paginate,
)
from hub.errors import Fatal, InvalidRecord, NotFound, Retriable
from pydantic import BaseModel, Field

API_HOST = "https://api.zydon.com.br"
"""Zydon's API host (docs.zydon.com.br, every API reference page)."""
SALES = "/api/sales"
MAX_PER_PAGE = 200
"""``perPage`` goes up to 200 (a third party's catalogue of Zydon's API; 200 is what working code sends)."""

T = TypeVar("T")


class ZydonOptions(BaseModel):
    """A Zydon connection's options (``hub routes validate`` checks them, ``hub plugins`` lists them)."""

    base_url: str = Field(default=API_HOST, description="the API host (paths carry /api/sales, /api/account)")
    solution_id: str | None = Field(default=None, description="the portal (solution) uuid the JWT is scoped to; "
                                                              "sent to the key login when set")
    default_warehouse_id: str | None = Field(default=None, description="the Zydon warehouse a stock level of "
                                                                       "warehouse 'default' goes to (else the "
                                                                       "product's own default warehouse)")
    company_id: str | None = Field(default=None, description="the Zydon company orders created by the hub belong to")
    page_size: int = Field(default=MAX_PER_PAGE, ge=1, le=MAX_PER_PAGE, description="records per list request "
                                                                                     "(perPage, at most 200)")
    first_page: int = Field(default=0, ge=0, le=1, description="the index of the first page: 0 as Zydon's docs "
                                                               "say (one third party claims 1)")
    timeout_seconds: float = Field(default=30, gt=0, description="seconds before a call counts as timed out")
    rate_per_second: float = Field(default=5, gt=0, description="client-side pace per organization (Zydon "
                                                                "publishes no limit; its 429s are honoured)")


SHARED_TTL = 300.0
"""Seconds the connection's lookup lists (units, statuses, payment methods) are shared by its contexts; a name
missing from one re-reads it at once (:func:`shared`)."""


@dataclass
class ZydonState:
    """What one context remembers (kept in ``ctx.scratch``: it dies with the context)."""

    options: ZydonOptions
    patient: bool = False
    """Set by pulls: their reads are tried again and sleep through short 429s. A push's lookups are sent once, so
    the outbox counts the failure (or reschedules a 429 without burning an attempt)."""
    partners: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def where(ctx: ConnectorContext) -> str:
    return f"tenant {ctx.tenant}, connection {ctx.connection}"


def state(ctx: ConnectorContext) -> ZydonState:
    current = ctx.scratch.get("zydon")
    if isinstance(current, ZydonState):
        return current
    created = ZydonState(options=ZYDON.options(ctx))
    ctx.scratch["zydon"] = created
    return created


def shared(ctx: ConnectorContext, name: str, load: Callable[[], T], has: Callable[[T], bool] | None = None) -> T:
    """A lookup list the connection's contexts share for :data:`SHARED_TTL` seconds, read again at once when
    ``has`` says it lacks what the caller needs (created in Zydon since) and once per pull run."""
    key = f"zydon:{name}"
    st = state(ctx)
    if st.patient and not ctx.scratch.get(f"reread:{name}"):
        ctx.scratch[f"reread:{name}"] = True
        return ctx.cache.refresh(key, load, SHARED_TTL)
    value = ctx.cache.get_or_set(key, load, SHARED_TTL)
    if has is not None and not has(value):
        value = ctx.cache.refresh(key, load, SHARED_TTL, stale=value)
    return value


def _messages(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        return "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    return ""


class Zydon(ApiClient):
    platform = "zydon"
    options_model = ZydonOptions
    auth = BearerAuth()
    read_attempts = 4
    max_wait_seconds = 30.0
    errors = ErrorTable([
        ErrorRule(409, Retriable, fix="Another write created the record meanwhile (the SKU or document is taken); "
                                      "the retry finds it and updates it."),
        ErrorRule((400, 422), InvalidRecord, when=lambda body: _messages(body) != "",
                  message="{platform} {action} ({where}): {status} refused {field}: {detail}",
                  fix="Correct {field} of {record} on the source ({detail}) and save it again; Zydon refuses it "
                      "as is."),
        ErrorRule(400, Fatal, fix="Zydon refused the request ({detail}); check the options of connection "
                                  "{connection} and the plugin version."),
        ErrorRule(404, NotFound, fix="The record is gone on Zydon; the hub creates it again on the next write."),
    ])

    def budget(self, ctx: ConnectorContext, operation: str) -> Budget:
        opts = state(ctx).options
        return Budget(f"zydon:{ctx.tenant}:{ctx.connection}", rate=opts.rate_per_second,
                      burst=max(1, int(opts.rate_per_second)))

    def tries(self, ctx: ConnectorContext, method: str) -> int:
        return self.read_attempts if state(ctx).patient and method in READS else 1

    def detail_of(self, body: Any, default: str) -> str:
        listed = _messages(body)
        message = body_detail(body, default)
        return f"{message} ({listed})" if listed and listed not in message else message


ZYDON = Zydon()


def body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def obj(response: Any) -> dict[str, Any]:
    """A single resource's JSON object (bare, or under ``data``)."""
    found = body(response)
    if isinstance(found, dict) and isinstance(found.get("data"), dict):
        inner: dict[str, Any] = found["data"]
        return inner
    return found if isinstance(found, dict) else {}


def _fetch(ctx: ConnectorContext, path: str, params: dict[str, Any], page: int) -> Fetched:
    opts = state(ctx).options
    response = ZYDON.get(ctx, path, params={**params, "page": page, "perPage": opts.page_size})
    found = body(response)
    if not isinstance(found, dict):
        return Fetched(records=found, url=str(response.url))
    items = found.get("items")
    try:
        total = int(found.get("total"))  # type: ignore[arg-type]
        per_page = int(found.get("perPage") or opts.page_size)
    except (TypeError, ValueError):
        return Fetched(records=items, url=str(response.url))
    read = (page - opts.first_page + 1) * per_page
    return Fetched(records=items, url=str(response.url), last=read >= total)


def pages(ctx: ConnectorContext, path: str, stream: str, params: dict[str, Any] | None = None
          ) -> Iterator[Paged[int]]:
    """Every page of a list, from ``options.first_page`` (0 by default), shape-checked and guarded against a
    repeated page by :func:`hub.paginate`."""
    opts = state(ctx).options
    query = dict(params or {})
    return paginate(lambda page: _fetch(ctx, path, query, page),
                    PageNumberPaginator(opts.page_size, start=opts.first_page), plugin="zydon", stream=stream,
                    about=where(ctx))


def list_all(ctx: ConnectorContext, path: str, stream: str, params: dict[str, Any] | None = None
             ) -> list[dict[str, Any]]:
    """Every row of a list (lookups; pulls yield pages with cursors instead)."""
    return [row for paged in pages(ctx, path, stream, params) for row in paged.records]


__all__ = ["API_HOST", "MAX_PER_PAGE", "SALES", "ZYDON", "ZydonOptions", "ZydonState", "body", "list_all", "obj",
           "pages", "shared", "state", "where"]
