"""Bug: a 429 is raised as Fatal, so a rate limit fails the pull or the push instead of waiting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub import Incoming, Page, hookimpl
from hub.errors import Fatal, RateLimited
from hub.models import Canonical, Sale
from hub.sync.context import ConnectorContext
from hub_example import plugin as lojinha
from hub_example.client import request
from hub_example.plugin import authenticate, register_platforms  # noqa: F401 (re-exported hooks)


def _fatal(exc: RateLimited) -> Fatal:
    return Fatal(exc.message, fix="lojinha refused the request.")


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    """Its pages are read once, outside the client's retries (which would sleep through the 429)."""
    params = {"per_page": int(ctx.options.get("page_size", 100)), "page": 1}
    try:
        while True:
            body = request(ctx, "GET", lojinha.PATHS[stream], params=params, attempts=1).json()
            yield Page(records=[Incoming(external_id=str(raw["id"]), data=lojinha._to_canonical(stream, raw))
                                for raw in body["data"]])
            if not body["meta"]["has_more"]:
                return
            params["page"] += 1
    except RateLimited as exc:
        raise _fatal(exc) from None


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    yield from pull_catalog(ctx, "sales", since)


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> Any:
    try:
        return lojinha._upsert(ctx, stream, record, external_id, idempotency_key)
    except RateLimited as exc:
        raise _fatal(exc) from None


@hookimpl
def push_sale(ctx: ConnectorContext, record: Sale, external_id: str | None, idempotency_key: str) -> Any:
    try:
        return lojinha.push_sale(ctx, record, external_id, idempotency_key)
    except RateLimited as exc:
        raise _fatal(exc) from None
