"""HTTP to CPlug API v3: headers, client-side throttling, paging, and CPlug's errors mapped onto hub's taxonomy."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from hub.errors import AuthExpired, Fatal, InvalidRecord, NotFound, RateLimited, Retriable
from hub.sync.context import ConnectorContext
from pydantic import BaseModel, Field, ValidationError

MAX_PER_PAGE = 100
"""Not published; assumed (README). A larger ``page_size`` option is capped to it."""

MAX_WAITS_ON_429 = 5
MAX_WAIT_SECONDS = 30.0

_KEY_NAMESPACE = uuid.UUID("5b0e7c3e-6a8e-4a55-9d7e-3f1c2a9b8c10")


class CPlugOptions(BaseModel):
    """A CPlug connection's options (``hub routes validate`` checks them)."""

    base_url: str = Field(description="the API host, e.g. https://api.connectplug.com.br (paths carry /api/v3)")
    company_id: int = Field(gt=0, description="sent as CPlug-Company-Id; the ids come from GET /api/v3/companies")
    timeout_seconds: float = Field(default=30, gt=0)
    page_size: int = Field(default=100, ge=1)
    sku_as_barcode: bool = Field(default=False, description="send the SKU as the barcode (seed 002: decide before "
                                                            "the first sync)")
    rate_per_second: float = Field(default=5, gt=0, description="client-side limit per company; 5/s is assumed")
    token_url: str | None = Field(default=None, description="where to POST the OAuth token request when it is not "
                                                            "base_url + /oauth/token (the docs show erp.connectplug)")


@dataclass
class CPlugState:
    """What one hook call remembers between requests (it dies with its context)."""

    options: CPlugOptions
    customers: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    sale_numbers: dict[str, str] = field(default_factory=dict)
    categories: dict[str, dict[str, Any]] | None = None
    units: dict[str, str] | None = None
    patient: bool = False
    """A pull sleeps through short 429s instead of abandoning a sync half-way; a push raises RateLimited so the
    core reschedules it without burning an attempt."""


def where(ctx: ConnectorContext) -> str:
    return f"tenant {ctx.tenant}, connection {ctx.connection}"


def state(ctx: ConnectorContext) -> CPlugState:
    """The per-context state, with the options validated once."""
    current = getattr(ctx, "_hub_cplug", None)
    if isinstance(current, CPlugState):
        return current
    try:
        opts = CPlugOptions.model_validate(ctx.options)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise Fatal(f"cplug ({where(ctx)}): option {name}: {first['msg']}",
                    fix=f"Set options.{name} of connection {ctx.connection} in the route file and re-apply "
                        "it.") from None
    created = CPlugState(options=opts)
    ctx._hub_cplug = created  # type: ignore[attr-defined]
    return created


def idempotency_uuid(key: str, purpose: str) -> str:
    """CPlug wants a UUID; derive it from the operation's key so a true retry sends the same one, and a different
    write (another purpose) never reuses it (a reused key is dropped as a duplicate)."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{key}|{purpose}"))


# --- client-side rate limit ---------------------------------------------------------------------------------

_buckets: dict[str, list[float]] = {}
_buckets_lock = threading.Lock()


def local_throttle(key: str, per_second: float) -> None:
    """A token bucket per key (burst = one second of requests), shared by the threads of this process.

    Used only when the core gives no ``ctx.throttle``; that one spans processes."""
    capacity = max(1.0, per_second)
    while True:
        with _buckets_lock:
            now = time.monotonic()
            tokens, stamp = _buckets.get(key, [capacity, now])
            tokens = min(capacity, tokens + (now - stamp) * per_second)
            if tokens >= 1.0:
                _buckets[key] = [tokens - 1.0, now]
                return
            _buckets[key] = [tokens, now]
            wait = (1.0 - tokens) / per_second
        time.sleep(wait)


def throttle(ctx: ConnectorContext, opts: CPlugOptions) -> None:
    key = f"cplug:{opts.company_id}"
    facility: Callable[[str, float], None] | None = getattr(ctx, "throttle", None)
    if callable(facility):
        facility(key, opts.rate_per_second)
    else:
        local_throttle(key, opts.rate_per_second)


# --- requests -----------------------------------------------------------------------------------------------


def request(ctx: ConnectorContext, method: str, path: str, *, params: dict[str, Any] | None = None,
            json: Any = None, idempotency_key: str | None = None, record: str | None = None) -> httpx.Response:
    """One call to ``/api/v3``; raises the hub error its answer stands for (see ``CPlugState.patient`` for 429)."""
    st = state(ctx)
    opts = st.options
    headers = {"Authorization": f"Bearer {ctx.credentials.get('access_token', '')}",
               "CPlug-Company-Id": str(opts.company_id), "Accept": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    about = f" ({where(ctx)}{', ' + record if record else ''})"
    for waits in range(MAX_WAITS_ON_429 + 1):
        throttle(ctx, opts)
        try:
            response: httpx.Response = ctx.http.request(method, path, headers=headers, params=params, json=json)
        except httpx.TimeoutException:
            outcome = (" the write may or may not have happened; the next attempt looks the record up before "
                       "creating it again" if method != "GET" else "")
            raise Retriable(f"cplug {method} {path}{about}: timed out after {opts.timeout_seconds}s;{outcome}",
                            fix="CPlug was slow to answer; the hub retries by itself. Raise options.timeout_seconds "
                                f"of connection {ctx.connection} if this repeats.") from None
        except httpx.TransportError as exc:
            raise Retriable(f"cplug {method} {path}{about}: {type(exc).__name__}",
                            fix=f"Check that options.base_url of connection {ctx.connection} is reachable.") from None
        if response.status_code == 429 and st.patient and waits < MAX_WAITS_ON_429:
            time.sleep(min(_retry_after(response), MAX_WAIT_SECONDS))
            continue
        raise_for_error(ctx, response, f"{method} {path}", record)
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def raise_for_error(ctx: ConnectorContext, response: httpx.Response, action: str, record: str | None = None) -> None:
    """Raise the hub error a CPlug answer stands for; a 2xx/3xx passes through."""
    status = response.status_code
    if status < 400:
        return
    body = error_body(response)
    about = f"{where(ctx)}{', ' + record if record else ''}"
    message = f"cplug {action} ({about}): {status} {body.get('code', '')} {body.get('message', response.reason_phrase)}"
    if status == 429:
        raise RateLimited(message, retry_after=_retry_after(response))
    if status == 401:
        raise AuthExpired(message, fix="The access token expired or was revoked; the hub renews it. If this repeats, "
                                       f"check the credentials of connection {ctx.connection} and re-apply the routes.")
    if status == 404:
        raise NotFound(message, fix="The record is gone on CPlug; the hub recreates it on the next write.")
    if status == 422:
        problems = [p for p in body.get("meta") or [] if isinstance(p, dict)]
        first = problems[0] if problems else {}
        name = str(first.get("field") or "") or None
        detail = "; ".join(
            f"{p.get('field')}: " + ", ".join(str(v.get("message") or v.get("type"))
                                              for v in p.get("validations") or [])
            for p in problems) or str(body.get("message", ""))
        raise InvalidRecord(f"cplug {action} ({about}): 422 refused: {detail}", field=name, record=record,
                            fix=f"Correct {name or 'the record'} on the source record (see the reason) and save it "
                                "again; CPlug refuses it as is.")
    if status >= 500:
        raise Retriable(message, fix="CPlug failed on its side; the hub retries with backoff.")
    if body.get("code") == "missing_headers" or status == 403:
        raise Fatal(message, fix=f"Check options.company_id of connection {ctx.connection}: it must be the numeric id "
                                 "of a company this CPlug user can access (GET /api/v3/companies).")
    raise Fatal(message, fix="CPlug refused the request; check the connection options and the plugin version.")


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


def list_page(ctx: ConnectorContext, path: str, resource: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                                                 dict[str, Any]]:
    """One page of a list: its rows and its ``meta``."""
    body = error_body(request(ctx, "GET", path, params=params))
    data = body.get("data") or {}
    rows = data.get(resource) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise Fatal(f"cplug GET {path} ({where(ctx)}): the answer has no data.{resource} list",
                    fix="CPlug changed its list format; update the hub-cplug-pos plugin.")
    meta = body.get("meta") or {}
    return [r for r in rows if isinstance(r, dict)], meta if isinstance(meta, dict) else {}


def list_all(ctx: ConnectorContext, path: str, resource: str, params: dict[str, Any] | None = None
             ) -> Iterator[dict[str, Any]]:
    """Every row of a list, page by page (for lookups, not for pulls: those yield pages with cursors)."""
    page = 1
    while True:
        rows, meta = list_page(ctx, path, resource, {**(params or {}), "page": page, "per_page": page_size(ctx)})
        yield from rows
        if not rows or page >= int(meta.get("last_page") or page):
            return
        page += 1
