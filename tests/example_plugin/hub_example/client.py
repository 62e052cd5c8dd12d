"""HTTP to lojinha: the core's :class:`hub.http.ApiClient` does the bearer token, the retries of reads and the
mapping of errors; a connector declares only what is particular to its platform."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from hub import ApiClient, ConnectorContext, ErrorRule, ErrorTable, Fetched, Paged, PageNumberPaginator, paginate
from hub.errors import InvalidRecord, NotFound


class Lojinha(ApiClient):
    platform = "lojinha"
    errors = ErrorTable([
        ErrorRule(404, NotFound, fix="The record is gone on lojinha; the hub recreates it on the next write."),
        ErrorRule(422, InvalidRecord, message="{platform} {action} ({where}): 422 refused: {detail}",
                  fix="Correct {field} on the source record; lojinha refuses it as is."),
    ])


LOJINHA = Lojinha()


def request(ctx: ConnectorContext, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Call lojinha with the connection's token; a 409 is returned (callers reuse ``existing_id``)."""
    return LOJINHA.request(ctx, method, path, expect=(409,), **kwargs)


def raise_for_error(ctx: ConnectorContext, response: httpx.Response, action: str) -> None:
    """Raise the hub error a lojinha answer the plugin got by itself stands for; a 2xx/3xx passes through."""
    LOJINHA.check(ctx, response, action=action)


def pages(ctx: ConnectorContext, path: str, stream: str, params: dict[str, Any]) -> Iterator[Paged[int]]:
    """Every page of a lojinha list (``{"data": [...], "meta": {"has_more": ...}}``), checked by the core."""

    def fetch(page: int) -> Fetched:
        response = request(ctx, "GET", path, params={**params, "page": page})
        body = response.json()
        if not isinstance(body, dict):
            return Fetched(records=body, url=str(response.url))
        return Fetched(records=body.get("data", body), url=str(response.url),
                       last=not (body.get("meta") or {}).get("has_more"))

    return paginate(fetch, PageNumberPaginator(), plugin="lojinha", stream=stream,
                    about=f"tenant {ctx.tenant}, connection {ctx.connection}")
