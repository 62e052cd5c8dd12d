"""HTTP to Bling: the account's request budget, the JWT header, and Bling's errors mapped onto hub's taxonomy.

Every call first waits for the account's slot in the shared budget (3 requests/s, 120,000/day, kept 3% under the
ceiling so a sliding window on Bling's side never sees a fourth request). GETs are safe to repeat and are retried
here on 5xx, timeouts and second-period 429s (tenacity); writes are never retried here: the outbox retries them,
after looking the record up first.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from decimal import Decimal
from typing import Any

import httpx
from hub.errors import (
    AuthExpired,
    Fatal,
    HubError,
    InvalidRecord,
    NotFound,
    QuotaExhausted,
    RateLimited,
    Retriable,
)
from hub.ratelimit import next_midnight
from hub.sync.context import ConnectorContext
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from hub_bling.options import TIME_ZONE, BlingOptions

SAFETY = 0.96
"""Fraction of the published rate actually used: the slack absorbs a request sent a few tens of milliseconds late
(a busy host, a thread scheduled late), so Bling's sliding window never sees a fourth request in a second."""

ERROR_WINDOW, ERROR_CEILING = 10.0, 120
"""Bling blocks an IP after 300 errors in 10 s; the client pauses long before (per process)."""

_errors: deque[float] = deque()
_errors_lock = threading.Lock()


def options(ctx: ConnectorContext) -> BlingOptions:
    parsed = ctx.cache.get("bling_options")
    if not isinstance(parsed, BlingOptions):
        parsed = ctx.cache["bling_options"] = BlingOptions.model_validate(ctx.options)
    return parsed


def account_key(ctx: ConnectorContext) -> str:
    """The budget key: Bling limits the account, and a connection is one account. (Keyed by connection rather
    than by company id, which is only known after the first call: the key must not change under a running sync.)"""
    return f"bling:{ctx.tenant}/{ctx.connection}"


def dumps(body: Any) -> bytes:
    """JSON for Bling, which takes amounts as numbers. A Decimal of up to 15 significant digits survives the trip
    through a double exactly (repr prints the shortest text that round-trips), so "19.90" is written 19.9."""

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return json.dumps(body, default=default, ensure_ascii=False, separators=(",", ":")).encode()


def loads(response: httpx.Response) -> Any:
    if not response.content:
        return None
    return json.loads(response.content, parse_float=Decimal)


def _note_error() -> None:
    now = time.monotonic()
    with _errors_lock:
        _errors.append(now)
        while _errors and _errors[0] < now - ERROR_WINDOW:
            _errors.popleft()
        burst = len(_errors) >= ERROR_CEILING
        wait = ERROR_WINDOW - (now - _errors[0]) if burst else 0.0
    if wait > 0:
        time.sleep(wait)


def _where(ctx: ConnectorContext, method: str, path: str) -> str:
    return f"Bling {method} {path} (tenant {ctx.tenant}, connection {ctx.connection})"


def request(ctx: ConnectorContext, method: str, path: str, *, params: Any = None, json_body: Any = None,
            expect: tuple[int, ...] = ()) -> Any:
    """One call; returns the parsed body (None for 204). ``expect`` lists error statuses returned, not raised."""
    opts = options(ctx)
    ctx.throttle(account_key(ctx), opts.rate_per_second * SAFETY, per_day=opts.daily_limit, day_tz=TIME_ZONE)
    headers = {"Authorization": f"Bearer {ctx.credentials.get('access_token', '')}", "enable-jwt": "1",
               "Accept": "application/json"}
    content = None
    if json_body is not None:
        headers["Content-Type"] = "application/json"
        content = dumps(json_body)
    where = _where(ctx, method, path)
    try:
        response = ctx.http.request(method, path, params=params, content=content, headers=headers)
    except httpx.TimeoutException:
        _note_error()
        outcome = " (the write may have happened: it is looked up before any retry)" if method != "GET" else ""
        raise Retriable(f"{where}: timed out{outcome}",
                        fix="Bling was slow to answer; the hub retries by itself.") from None
    except httpx.TransportError as exc:
        _note_error()
        raise Retriable(f"{where}: {type(exc).__name__}", fix="Check that Bling (base_url) is reachable.") from None
    if response.status_code < 400 or response.status_code in expect:
        return loads(response) if response.status_code < 400 else response
    _note_error()
    raise error_for(ctx, response, where)


def get(ctx: ConnectorContext, path: str, params: Any = None) -> Any:
    """A GET inside an outbox operation: a failure goes to the outbox, which counts the attempt or waits."""
    return request(ctx, "GET", path, params=params)


@retry(retry=retry_if_exception_type(Retriable),
       stop=stop_after_attempt(4), wait=wait_exponential(multiplier=0.5, max=8), reraise=True)
def read(ctx: ConnectorContext, path: str, params: Any = None) -> Any:
    """A GET of a pull, retried here on transient failures (a pull has no outbox; repeating a GET is safe)."""
    try:
        return request(ctx, "GET", path, params=params)
    except QuotaExhausted:
        raise
    except RateLimited as exc:
        time.sleep(min(exc.retry_after, 5.0))
        raise Retriable(exc.message, fix=exc.fix) from None


def error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


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


NUMERO_FIX = ("Bling asks for the order number: disable Configurações > Vendas > \"Editar número do pedido de venda\" "
              "in Bling, then run `hub retry TENANT`.")


def error_for(ctx: ConnectorContext, response: httpx.Response, where: str) -> HubError:
    """The hub error a Bling answer stands for. Branches on ``error.type``/``period``, never on the text."""
    status = response.status_code
    error = error_body(response)
    kind = str(error.get("type", ""))
    text = error.get("description") or error.get("message") or response.reason_phrase
    message = f"{where}: {status} {kind} {text}".rstrip()
    if status == 429:
        if error.get("period") == "day":
            return QuotaExhausted(message, until=next_midnight(TIME_ZONE),
                                  fix="Bling's 120,000 requests/day are spent for this account; the connection "
                                      "resumes at midnight (Brasília time).")
        return RateLimited(message, retry_after=1.0)
    if status == 401:
        return AuthExpired(message, fix="The access token expired or was revoked; the hub renews it. If this "
                                        f"repeats, run `hub auth bling {ctx.tenant}`.")
    if status == 403:
        if kind == "insufficient_scope":
            return Fatal(message, fix="The Bling app lacks a scope this route needs: add it to the app in Bling's "
                                      f"developer portal, then run `hub auth bling {ctx.tenant}` again.")
        return RateLimited(message, retry_after=600.0,
                           fix="Bling blocked requests from this address for a while (too many errors or token "
                               "calls); the hub waits it out.")
    if status == 404:
        return NotFound(message, fix="The record is gone in Bling; the hub recreates it on the next write.")
    if status in (400, 422):
        fields = field_messages(error)
        if any(element == "numero" for element, _ in fields):
            return Fatal(f"{message}: {'; '.join(m for _, m in fields)}", fix=NUMERO_FIX)
        detail = "; ".join(f"{element}: {msg}" for element, msg in fields) or str(text)
        first = fields[0][0] if fields else None
        return InvalidRecord(f"{where}: Bling refused the record: {detail}", field=first,
                             fix=f"Correct {first or 'the record'} on the source platform (Bling says: {detail}).")
    if status >= 500:
        return Retriable(message, fix="Bling failed on its side; the hub retries with backoff.")
    return Fatal(message, fix="The request was refused; check the connection options and the plugin version.")
