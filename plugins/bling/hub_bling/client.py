"""HTTP to Bling on the core's :class:`hub.http.ApiClient`: the account's budget, the JWT header, Bling's errors.

Every call first waits for the account's slot in the shared budget (3 requests/s, 120,000/day, kept 6% under the
ceiling so Bling's sliding window never sees a fourth request in a second). Bling's errors say what they are in
``error.type`` and, for 429s, ``error.period``: the table below branches on those, never on the text. Reads of a
pull (:func:`read`) are retried by the base; a push's lookups (:func:`get`) are not: the outbox retries the
operation, after looking the record up first.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
from hub import ApiClient, Budget, ConnectorContext, ErrorRule, ErrorTable, next_midnight
from hub.errors import AuthExpired, Fatal, HubError, InvalidRecord, NotFound, QuotaExhausted, RateLimited, Retriable

from hub_bling.options import TIME_ZONE, BlingOptions

SAFETY = 0.94
"""Fraction of the published rate actually used: three slots span 1.064 s, so a request may reach Bling 64 ms after
its slot before the sliding window sees a fourth request in a second. At 4% (41 ms) the Amazon -> Bling steady bench
drew a 429 now and then on a busy 2-core host; the send window below covers a thread that wakes later still."""
WINDOW_SECONDS = 1.05
"""Bling's window as the hub keeps it by the moment each call leaves (``Budget.window``), with 50 ms for the way to
Bling."""

NUMERO_FIX = ("Bling asks for the order number: disable Configurações > Vendas > \"Editar número do pedido de venda\" "
              "in Bling, then run `hub retry TENANT`.")


def field_messages(error: dict[str, Any]) -> list[tuple[str, str]]:
    """(element, message) for each field error, nested collections included."""
    out: list[tuple[str, str]] = []
    for f in error.get("fields") or []:
        if not isinstance(f, dict):
            continue
        nested = f.get("collection") or []
        for c in nested:
            if isinstance(c, dict):
                out.append((f"{f.get('element')}[{c.get('index')}].{c.get('element')}", str(c.get("msg"))))
        if not nested:
            out.append((str(f.get("element") or "(record)"), str(f.get("msg"))))
    return out


def _error(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _asks_numero(body: Any) -> bool:
    return any(element == "numero" for element, _ in field_messages(_error(body)))


class Bling(ApiClient):
    platform = "Bling"
    options_model = BlingOptions
    headers = {"Accept": "application/json", "enable-jwt": "1"}
    error_ceiling = (120, 10.0)
    """Bling blocks an IP after 300 errors in 10 s; the client pauses long before (per process)."""
    errors = ErrorTable([
        ErrorRule(429, QuotaExhausted, when=lambda body: _error(body).get("period") == "day",
                  until=lambda: next_midnight(TIME_ZONE), fix="Bling's 120,000 requests/day are spent for this "
                                                              "account; the connection resumes at midnight (Brasília "
                                                              "time)."),
        ErrorRule(429, RateLimited, retry_after=1.0, fix="Bling's requests per second were exceeded; the hub waits a "
                                                         "second and goes on."),
        ErrorRule(401, AuthExpired, fix="The access token expired or was revoked; the hub renews it. If this repeats, "
                                        "run `hub auth bling {tenant}`."),
        ErrorRule(403, Fatal, when=lambda body: _error(body).get("type") == "insufficient_scope",
                  fix="The Bling app lacks a scope this route needs: add it to the app in Bling's developer portal, "
                      "then run `hub auth bling {tenant}` again."),
        ErrorRule(403, RateLimited, retry_after=600.0, fix="Bling blocked requests from this address for a while (too "
                                                           "many errors or token calls); the hub waits it out."),
        ErrorRule(404, NotFound, fix="The record is gone in Bling; the hub recreates it on the next write."),
        ErrorRule((400, 422), Fatal, when=_asks_numero, fix=NUMERO_FIX),
        ErrorRule((400, 422), InvalidRecord, fix="Correct {field} on the source platform (Bling says: {detail}).",
                  message="{platform} {action} ({where}): Bling refused the record: {detail}"),
        ErrorRule(range(500, 600), Retriable, fix="Bling failed on its side; the hub retries with backoff."),
        ErrorRule(range(400, 600), Fatal, fix="The request was refused; check the connection options and the plugin "
                                              "version."),
    ], defaults=False)

    def budget(self, ctx: ConnectorContext, operation: str) -> Budget:
        """Bling limits the account, and a connection is one account. (Keyed by connection rather than by company
        id, which is only known after the first call: the key must not change under a running sync.)"""
        opts = options(ctx)
        return Budget(f"bling:{ctx.tenant}/{ctx.connection}", rate=opts.rate_per_second * SAFETY,
                      per_day=opts.daily_limit, day_tz=TIME_ZONE,
                      window=(max(1, int(opts.rate_per_second)), WINDOW_SECONDS))

    def detail_of(self, body: Any, default: str) -> str:
        error = _error(body)
        fields = field_messages(error)
        if fields:
            return "; ".join(f"{element}: {msg}" for element, msg in fields)
        return f"{error.get('type', '')} {error.get('description') or error.get('message') or default}".strip()

    def field_of(self, body: Any) -> str | None:
        fields = field_messages(_error(body))
        return fields[0][0] if fields else None


BLING = Bling()


def options(ctx: ConnectorContext) -> BlingOptions:
    parsed: BlingOptions = BLING.options(ctx)
    return parsed


def loads(response: httpx.Response) -> Any:
    """Bling's JSON with amounts as Decimals (None for an empty body)."""
    if not response.content:
        return None
    return json.loads(response.content, parse_float=Decimal)


def request(ctx: ConnectorContext, method: str, path: str, *, params: Any = None, json_body: Any = None,
            expect: tuple[int, ...] = (), attempts: int = 1) -> Any:
    """One call; returns the parsed body (None for 204). ``expect`` lists error statuses returned, not raised."""
    response = BLING.request(ctx, method, path, params=params, json=json_body, expect=expect, attempts=attempts)
    return response if response.status_code in expect else loads(response)


def get(ctx: ConnectorContext, path: str, params: Any = None) -> Any:
    """A GET inside an outbox operation: a failure goes to the outbox, which counts the attempt or waits."""
    return request(ctx, "GET", path, params=params)


def read(ctx: ConnectorContext, path: str, params: Any = None) -> Any:
    """A GET of a pull, retried on 5xx and timeouts, second-period 429s waited out (a pull has no outbox)."""
    return request(ctx, "GET", path, params=params, attempts=BLING.read_attempts)


def error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        return _error(json.loads(response.content))
    except ValueError:
        return {}


def error_for(ctx: ConnectorContext, response: httpx.Response, _where: str = "") -> HubError:
    """The hub error a Bling answer of 400 or more stands for (the message names the call by itself)."""
    error = BLING.error_for(ctx, response)
    assert error is not None, f"Bling answered {response.status_code}: not an error"
    return error
