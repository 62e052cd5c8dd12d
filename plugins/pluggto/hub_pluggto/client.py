"""HTTP to Plugg.to's API on the core's :class:`hub.ApiClient`: the options, the per-account budget, Plugg.to's
``{"error": true, "type", "message", "details"}`` bodies mapped onto hub's errors, and paging with ``next``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

import httpx
from hub import (
    READS,
    ApiClient,
    Budget,
    ConnectorContext,
    ErrorRule,
    ErrorTable,
    Fetched,
    NextTokenPaginator,
    Paged,
    paginate,
)
from hub.errors import AuthExpired, Fatal, InvalidRecord, NotFound, RateLimited, Retriable
from pydantic import BaseModel, Field

API_BASE = "https://api.plugg.to"
"""Plugg.to's API host ("Getting started with your API", developers.plugg.to)."""
MAX_LIMIT = 100
"""The ``limit`` every public client uses; Plugg.to publishes no maximum (README)."""

FiscalField = Literal["ncm", "nbm", "cest"]


def _all_fiscal_fields() -> list[FiscalField]:
    return ["ncm", "nbm", "cest"]


class PluggtoOptions(BaseModel):
    """A Plugg.to connection's ``options`` block (``hub routes validate`` checks it)."""

    base_url: str = Field(default=API_BASE, description="the API host (https://api.plugg.to)")
    timeout_seconds: float = Field(default=30, gt=0, description="seconds before a call counts as timed out")
    page_size: int = Field(default=100, ge=1, description="records per list request (capped at 100)")
    rate_per_second: float = Field(default=2, gt=0, description="client-side pace per account: Plugg.to publishes "
                                                                "no limit, so a conservative one is assumed")
    user_id: str | None = Field(default=None, description="the Plugg.to user id (GET /users); when set, a "
                                                          "notification for another user is refused")
    webhook_header: str = Field(default="x-pluggto-token", description="the header carrying the connection's "
                                                                       "webhook_token (Plugg.to signs nothing)")
    webhook_query: str = Field(default="token", description="the query parameter of the notification URL carrying "
                                                            "the connection's webhook_token")
    fiscal_fields: list[FiscalField] = Field(
        default_factory=_all_fiscal_fields,
        description="the product fiscal fields written (read: ncm and nbm both); drop one the live API refuses")
    nfe_poll_seconds: float = Field(default=60, gt=0, description="how often a note Plugg.to is issuing is read "
                                                                   "again while SEFAZ has not settled it")
    fba_warehouses: list[str] = Field(
        default_factory=lambda: ["amazon_fba"],
        description="stock_table codes that hold Amazon's FBA Onsite stock (a SKU with one of them and own stock is "
                    "a hybrid offer)")
    inactive_products: Literal["delete", "unavailable"] = Field(
        default="delete", description="what a product made inactive (or deleted) on the source becomes: deleted "
                                      "from Plugg.to, or kept with available 0")
    xml_url_template: str | None = Field(
        default=None, description="where the NF-e XML is published, e.g. https://files.example/{access_key}.xml; "
                                  "sent as nfe_link so Plugg.to downloads it")


def where(ctx: ConnectorContext) -> str:
    return f"tenant {ctx.tenant}, connection {ctx.connection}"


def body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def error_type(body: Any) -> str:
    """Plugg.to's machine-readable error kind: ``type`` (``not_updated``...) or OAuth's ``error`` string."""
    if not isinstance(body, dict):
        return ""
    kind = body.get("type")
    if isinstance(kind, str):
        return kind
    error = body.get("error")
    return error if isinstance(error, str) else ""


def not_updated(body: Any) -> bool:
    """Plugg.to's answer to a change it already holds (update-invoice page): counts as done."""
    if not isinstance(body, dict):
        return False
    text = f"{body.get('message', '')} {body.get('details', '')}".lower()
    return error_type(body) == "not_updated" or "changes not found" in text


_FIELD = re.compile(r"\bfield[s]?\s+['\"]?([A-Za-z_][\w.\[\]]*)", re.IGNORECASE)


class Pluggto(ApiClient):
    platform = "pluggto"
    options_model = PluggtoOptions
    read_attempts = 4
    max_wait_seconds = 30.0
    headers = {"Accept": "application/json"}
    errors = ErrorTable([
        ErrorRule(429, RateLimited, fix="Plugg.to's rate limit was reached; the hub waits and resumes by itself."),
        ErrorRule(401, AuthExpired, fix="The access token expired (they live 1 h); the hub renews it. If this "
                                        "repeats, check the credentials of connection {connection}."),
        ErrorRule(404, NotFound, fix="The record is gone on Plugg.to; the hub writes it again on the next push."),
        ErrorRule((400, 422), InvalidRecord, when=lambda body: _FIELD.search(_text(body)) is not None
                  or (isinstance(body, dict) and isinstance(body.get("field"), str)),
                  message="{platform} {action} ({where}): {status} refused {field}: {detail}",
                  fix="Correct {field} of {record} on the source platform ({detail}) and save it again."),
        ErrorRule((408, *range(500, 600)), Retriable, fix="Plugg.to failed on its side; the hub retries with "
                                                          "backoff."),
        ErrorRule(403, Fatal, fix="Plugg.to refused the call for these credentials; check that the API user of "
                                  "connection {connection} has access to this resource."),
        ErrorRule(range(400, 500), Fatal, fix="Plugg.to refused the request; check the options of connection "
                                              "{connection} and the plugin version ({detail})."),
    ], defaults=False)

    def budget(self, ctx: ConnectorContext, operation: str) -> Budget:
        opts: PluggtoOptions = self.options(ctx)
        return Budget(f"pluggto:{ctx.tenant}/{ctx.connection}", rate=opts.rate_per_second)

    def tries(self, ctx: ConnectorContext, method: str) -> int:
        """A pull's reads are tried again and sleep through short 429s; a push's lookups are not: the outbox
        retries the whole operation (one attempt counted), and a 429 reschedules it without burning one."""
        return self.read_attempts if ctx.scratch.get("pluggto:pulling") and method in READS else 1

    def detail_of(self, body: Any, default: str) -> str:
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("message", "details", "error_description") if body.get(k)]
            if parts:
                return ": ".join(parts)
        return default

    def field_of(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("field"), str):
            return str(body["field"])
        found = _FIELD.search(_text(body))
        return found.group(1) if found else None


def _text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    return f"{body.get('message', '')} {body.get('details', '')}"


API = Pluggto()


def options(ctx: ConnectorContext) -> PluggtoOptions:
    opts: PluggtoOptions = API.options(ctx)
    return opts


def page_size(ctx: ConnectorContext) -> int:
    return min(options(ctx).page_size, MAX_LIMIT)


def unwrap(body: Any, key: str) -> dict[str, Any]:
    """``{"Product": {...}}`` / ``{"Order": {...}}`` -> the inner object (or the body itself)."""
    if isinstance(body, dict):
        inner = body.get(key)
        if isinstance(inner, dict):
            return inner
        return body
    return {}


def pages(ctx: ConnectorContext, path: str, key: str, params: dict[str, Any], *, stream: str
          ) -> Iterator[Paged[str | None]]:
    """Every page of a list, ``next`` = the last record's id (Plugg.to's cursor paging), checked for shape and
    guarded against a repeated page. ``{"total", "result": [{key: {...}}]}``; a short page is the last."""
    limit = page_size(ctx)

    def fetch(position: str | None) -> Fetched:
        query = {**params, "limit": limit}
        if position:
            query["next"] = position
        response = API.get(ctx, path, params=query)
        body = body_of(response)
        rows = body.get("result") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            return Fetched(records=rows, url=str(response.url), response=response)
        records = [unwrap(row, key) if isinstance(row, dict) else row for row in rows]
        last_id = records[-1].get("id") if records and isinstance(records[-1], dict) else None
        full = len(records) >= limit
        return Fetched(records=records, url=str(response.url), last=not full or not last_id,
                       next_token=str(last_id) if full and last_id else None, response=response)

    return paginate(fetch, NextTokenPaginator(), plugin="pluggto", stream=stream, about=where(ctx))
