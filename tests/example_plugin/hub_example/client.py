"""HTTP to lojinha: the bearer token, and the platform's errors mapped onto hub's taxonomy."""

from __future__ import annotations

from typing import Any

import httpx
from hub.errors import AuthExpired, Fatal, InvalidRecord, NotFound, RateLimited, Retriable
from hub.sync.context import ConnectorContext


def request(ctx: ConnectorContext, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Call lojinha with the connection's token; a 409 is returned (callers reuse ``existing_id``)."""
    headers = {"Authorization": f"Bearer {ctx.credentials.get('access_token', '')}", **kwargs.pop("headers", {})}
    where = f"lojinha {method} {path} (tenant {ctx.tenant}, connection {ctx.connection})"
    try:
        response: httpx.Response = ctx.http.request(method, path, headers=headers, **kwargs)
    except httpx.TimeoutException:
        raise Retriable(f"{where}: timed out", fix="lojinha was slow to answer; the hub retries by itself.") from None
    except httpx.TransportError as exc:
        raise Retriable(f"{where}: {type(exc).__name__}",
                        fix="Check that the connection's base_url is reachable.") from None
    if response.status_code != 409:
        raise_for_error(ctx, response, f"{method} {path}")
    return response


def raise_for_error(ctx: ConnectorContext, response: httpx.Response, action: str) -> None:
    """Raise the hub error a lojinha answer stands for; a 2xx/3xx passes through."""
    if response.status_code < 400:
        return
    where = f"lojinha {action} (tenant {ctx.tenant}, connection {ctx.connection})"
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    message = f"{where}: {response.status_code} {error.get('message', response.reason_phrase)}"
    if response.status_code == 429:
        raise RateLimited(message, retry_after=float(response.headers.get("Retry-After", error.get("retry_after", 1))))
    if response.status_code == 401:
        raise AuthExpired(message, fix="The access token expired or was revoked; the hub renews it. If this repeats, "
                                       "re-authorize: hub auth lojinha TENANT.")
    if response.status_code == 404:
        raise NotFound(message, fix="The record is gone on lojinha; the hub recreates it on the next write.")
    if response.status_code == 422:
        fields = error.get("fields") or [{}]
        detail = "; ".join(f"{f.get('field')}: {f.get('message')}" for f in fields)
        raise InvalidRecord(f"{where}: 422 refused: {detail}", field=fields[0].get("field"),
                            fix=f"Correct {fields[0].get('field')} on the source record; lojinha refuses it as is.")
    if response.status_code >= 500:
        raise Retriable(message, fix="lojinha failed on its side; the hub retries with backoff.")
    raise Fatal(message, fix="The request was refused; check the connection options and the plugin version.")
