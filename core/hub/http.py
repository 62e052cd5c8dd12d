"""A base for a connector's HTTP client: one declared way to say where, who, how fast, and what errors mean.

A connector subclasses :class:`ApiClient` (one instance serves every context: calls take ``ctx``) and declares

* ``base_url_option``: the option (validated with ``options_model``) that holds the API's base URL;
* ``auth``: how ``ctx.credentials`` becomes a header (:class:`BearerAuth`, :class:`HeaderAuth`, or your own);
  ``headers`` and :meth:`ApiClient.headers_for` add the rest (a company id, an API version);
* :meth:`ApiClient.budget`: the rate budget of a call (:class:`Budget`: a shared key, a rate, a burst and a daily
  quota, per operation where the platform has usage plans), paced through ``ctx.throttle``, in this process or in
  Redis like every other budget;
* ``errors``: an :class:`ErrorTable` of (status, predicate on the JSON body) -> error class with message and fix
  templates, consulted before :data:`DEFAULT_ERRORS` (429 -> RateLimited honouring ``Retry-After`` or
  ``x-amzn-RateLimit-Limit``, 401 -> AuthExpired, 404 -> NotFound, 400/422 with a field -> InvalidRecord,
  408/5xx/timeouts -> Retriable). :meth:`ApiClient.detail_of` and :meth:`ApiClient.field_of` say where the
  platform's body keeps its message and the offending field; override :meth:`ApiClient.classify` for what a
  table cannot say (a 200 whose body says it failed);
* the retry policy of reads: ``read_attempts`` (or :meth:`ApiClient.tries` per context), ``rate_limit_waits``,
  ``max_wait_seconds``; and ``error_ceiling`` for platforms that block an address after a burst of errors.

Reads (GET, HEAD) are retried on Retriable (5xx, timeouts, connection errors) with exponential backoff, at most
``read_attempts`` times, pulls and pushes alike (tenacity). A short 429 (``Retry-After`` up to
``max_wait_seconds``) is slept through up to ``rate_limit_waits`` times without counting as an attempt; a longer
one, and a spent daily quota, is raised for the core to schedule. Writes are never retried here: the outbox retries
them, after looking the record up, so a write that timed out is not sent twice blind (give it an
``idempotency_key`` where the platform takes one). Every call goes through ``ctx.http``, so it lands in the API
log; a failed call carries its error and fix there. An ``AuthExpired`` is raised to the core, which renews the
token single-flight (``refresh_after_expiry``) and calls the hook again.

A worked example, a platform with one budget per account and a daily quota, whose errors say what they are in
``{"error": {"type", "message", "fields": [{"element", "msg"}]}}`` (Bling's shape)::

    def kind(body: Any) -> str:
        return str((body.get("error") or {}).get("type", "")) if isinstance(body, dict) else ""

    class Shop(ApiClient):
        platform = "Shop"
        options_model = ShopOptions            # has base_url: str, rate_per_second: float, daily_limit: int
        headers = {"Accept": "application/json", "enable-jwt": "1"}
        errors = ErrorTable([
            ErrorRule(429, QuotaExhausted, when=lambda body: body["error"].get("period") == "day",
                      until=lambda: next_midnight("America/Sao_Paulo"), fix="The day's requests are spent; the "
                      "connection resumes at midnight."),
            ErrorRule(403, RateLimited, when=lambda body: kind(body) != "insufficient_scope", retry_after=600,
                      fix="Shop blocked this address for a while; the hub waits it out."),
        ])
        error_ceiling = (120, 10.0)            # Shop blocks an address after 300 errors in 10 s

        def budget(self, ctx, operation):
            opts = self.options(ctx)
            return Budget(f"shop:{ctx.tenant}/{ctx.connection}", rate=opts.rate_per_second * 0.96,
                          per_day=opts.daily_limit, day_tz="America/Sao_Paulo")

        def field_of(self, body):
            fields = (body.get("error") or {}).get("fields") or [{}]
            return fields[0].get("element")

    SHOP = Shop()
    products = SHOP.get(ctx, "/produtos", params={"pagina": 1}).json()["data"]
    SHOP.post(ctx, "/pedidos", json=order, record=f"sale {sale.number}", idempotency_key=key)
    answer = SHOP.post(ctx, f"/nfe/{note}/enviar", expect=(400,))   # a 400 returned, not raised: "already sent"

Usage plans per operation (Amazon's SP-API: ``getOrders`` 0.0167/s with a burst of 20) are a budget keyed by
operation, and an expired token that answers 403 is one more rule::

    class SpApi(ApiClient):
        platform = "amazon"
        options_model = AmazonOptions          # has endpoint: str, seller_id: str
        base_url_option = "endpoint"
        auth = HeaderAuth("x-amz-access-token")
        errors = ErrorTable([
            ErrorRule(403, AuthExpired, when=lambda body: body_code(body) == "Unauthorized",
                      fix="The LWA token expired; the hub renews it."),
        ])
        PLANS = {"getOrders": (0.0167, 20), "getOrder": (0.5, 30), "searchOrders": (0.0056, 20)}

        def budget(self, ctx, operation):
            rate, burst = self.PLANS.get(operation, (1.0, 1))
            return Budget(f"amazon:{self.options(ctx).seller_id}:{operation}", rate=rate, burst=burst)

    orders = SpApi().get(ctx, "/orders/v0/orders", operation="getOrders", params={"MarketplaceIds": "A2Q3Y263D00KWC"})
"""

from __future__ import annotations

import json as jsonlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, ClassVar, NoReturn, Protocol

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

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
from hub.ratelimit import SEND_WINDOW
from hub.sync.context import ConnectorContext

__all__ = ["DEFAULT_ERRORS", "READS", "ApiClient", "Auth", "BearerAuth", "Budget", "ErrorRule", "ErrorTable",
           "HeaderAuth", "body_code", "body_detail", "body_field", "retry_after"]

READS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods safe to send again: the only ones the client retries."""


@dataclass(frozen=True)
class Budget:
    """A call's rate budget: ``rate`` calls per second on ``key``, ``burst`` of them at once after an idle spell,
    and at most ``per_day`` a day of ``day_tz`` (then QuotaExhausted pauses the connection until midnight there).
    ``key`` names what the platform limits (an account, an account and an operation), so every worker of every
    process shares it. Keep ``rate`` a few percent under a published limit that the platform counts in a sliding
    window: a request sent a few milliseconds late must not land in the same window as the next one.

    Within one key, calls are served by priority: the core marks each context's calls urgent (sales, their actions
    and invoices) or bulk (the catalog) from what the context is doing (:func:`hub.sync.context.budget_priority`),
    so a plugin declares nothing for it; see :mod:`hub.ratelimit`."""

    key: str
    rate: float
    burst: int = 1
    per_day: int | None = None
    day_tz: str = "UTC"
    window: tuple[int, float] | None = None
    """(N, S): the platform counts at most N calls in any S seconds (a sliding window). The calls of a process then
    also keep that count by the moment each is really sent (:class:`hub.ratelimit.SendWindow`): one that left late
    holds back the next instead of landing in its window."""


class Auth(Protocol):
    def headers(self, ctx: ConnectorContext) -> dict[str, str]:
        """The headers that authenticate a call, from ``ctx.credentials``."""


@dataclass(frozen=True)
class HeaderAuth:
    """A credential sent as is in a header (``x-amz-access-token``, an API key)."""

    header: str
    credential: str = "access_token"
    prefix: str = ""

    def headers(self, ctx: ConnectorContext) -> dict[str, str]:
        value = ctx.credentials.get(self.credential)
        if not value:
            raise AuthExpired(f"{ctx.platform} (tenant {ctx.tenant}, connection {ctx.connection}): no "
                              f"{self.credential} yet", fix="The hub obtains one by itself; if this repeats, "
                              f"re-authorize the connection (hub auth {ctx.platform} {ctx.tenant}).")
        return {self.header: f"{self.prefix}{value}"}


@dataclass(frozen=True)
class BearerAuth(HeaderAuth):
    """``Authorization: Bearer <ctx.credentials[credential]>``."""

    header: str = "Authorization"
    credential: str = "access_token"
    prefix: str = "Bearer "


@dataclass(frozen=True)
class ErrorRule:
    """One line of an :class:`ErrorTable`.

    ``status`` is a code, a tuple or a range; ``when`` a predicate on the JSON body ({} when it is not JSON).
    ``message`` and ``fix`` are :meth:`str.format` templates over ``platform``, ``action`` ("GET /path"),
    ``status``, ``detail`` (:meth:`ApiClient.detail_of`), ``field``, ``record``, ``where`` ("tenant T, connection
    C"), ``tenant``, ``connection`` and ``retry_after``. ``field`` reads the offending field out of the body
    (default: :meth:`ApiClient.field_of`). A RateLimited waits ``retry_after`` seconds when given (else what the
    answer's headers say); a QuotaExhausted lasts ``until()`` when given (e.g. the next midnight of the platform's
    time zone), else ``retry_after``."""

    status: int | tuple[int, ...] | range
    error: type[HubError]
    when: Callable[[Any], bool] | None = None
    message: str = "{platform} {action} ({where}): {status} {detail}"
    fix: str | None = None
    field: Callable[[Any], str | None] | None = None
    retry_after: float | None = None
    until: Callable[[], datetime] | None = None

    def matches(self, status: int, body: Any) -> bool:
        codes = (self.status,) if isinstance(self.status, int) else self.status
        return status in codes and (self.when is None or bool(self.when(body)))


class ErrorTable:
    """A platform's error rules, first match wins; :data:`DEFAULT_ERRORS` follow unless ``defaults=False``."""

    def __init__(self, rules: Iterable[ErrorRule] = (), *, defaults: bool = True) -> None:
        self.rules = list(rules)
        self.defaults = defaults

    def rule_for(self, status: int, body: Any) -> ErrorRule | None:
        rules = [*self.rules, *(DEFAULT_ERRORS.rules if self.defaults else [])]
        return next((rule for rule in rules if rule.matches(status, body)), None)


def _first_error(body: Any) -> dict[str, Any]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    inner = body.get("error") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def body_field(body: Any) -> str | None:
    """The offending field in the usual shapes: ``{"field"}``, ``{"errors": [{"field"|"path"|"element"}]}``,
    ``{"error": {"fields": [{"element"|"field"}]}}``."""
    for source in (body if isinstance(body, dict) else {}, _first_error(body)):
        for name in ("field", "path", "element", "parameter"):
            if isinstance(source.get(name), str | int):
                return str(source[name])
        fields = source.get("fields")
        if isinstance(fields, list) and fields and isinstance(fields[0], dict):
            found = fields[0].get("element") or fields[0].get("field")
            if found:
                return str(found)
    return None


def body_code(body: Any) -> str | None:
    """The machine-readable code of the (first) error: ``{"code"}`` or ``{"errors": [{"code"}]}``."""
    for source in (body if isinstance(body, dict) else {}, _first_error(body)):
        if isinstance(source.get("code"), str | int):
            return str(source["code"])
    return None


def body_detail(body: Any, default: str = "") -> str:
    """The body's human message (``message``, ``error_description``, the first of ``errors``...)."""
    for source in (body if isinstance(body, dict) else {}, _first_error(body)):
        for name in ("message", "error_description", "description", "detail"):
            if isinstance(source.get(name), str) and source[name]:
                return str(source[name])
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return default


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date), else one period of the rate Amazon announces in
    ``x-amzn-RateLimit-Limit``, else ``default``."""
    raw = response.headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                pass
    try:
        rate = float(response.headers.get("x-amzn-ratelimit-limit", ""))
    except ValueError:
        rate = 0.0
    return 1.0 / rate if rate > 0 else default


DEFAULT_ERRORS = ErrorTable([
    ErrorRule(429, RateLimited, fix="The platform's rate limit was reached; the hub waits and resumes by itself."),
    ErrorRule(401, AuthExpired, fix="The access token expired or was revoked; the hub renews it. If this repeats, "
                                    "re-authorize connection {connection} (hub auth {platform} {tenant})."),
    ErrorRule(404, NotFound, fix="The record is gone on {platform}; the hub recreates it on the next write."),
    ErrorRule(422, InvalidRecord, message="{platform} {action} ({where}): {status} refused {field}: {detail}",
              fix="Correct {field} of {record} on the source platform ({detail}) and save it again."),
    ErrorRule(400, InvalidRecord, when=lambda body: body_field(body) is not None,
              message="{platform} {action} ({where}): {status} refused {field}: {detail}",
              fix="Correct {field} of {record} on the source platform ({detail}) and save it again."),
    ErrorRule((408, *range(500, 600)), Retriable, fix="The platform failed on its side; the hub retries with backoff."),
    ErrorRule(403, Fatal, fix="Check that the credentials of connection {connection} may call {action} (scopes, "
                              "permissions, the account's plan)."),
    ErrorRule(range(400, 500), Fatal, fix="The platform refused the request; check the options of connection "
                                          "{connection} and the plugin version."),
], defaults=False)
"""What a status means when the platform's own table says nothing more specific."""


class _Template(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _ErrorBrake:
    """The failed calls of one platform in this process, for ``error_ceiling``."""

    def __init__(self) -> None:
        self.failed: deque[float] = deque()
        self.lock = threading.Lock()

    def note(self, ceiling: int, window: float) -> float:
        """Count a failure; the seconds to pause when ``ceiling`` failures fell within ``window``."""
        now = time.monotonic()
        with self.lock:
            self.failed.append(now)
            while self.failed and self.failed[0] < now - window:
                self.failed.popleft()
            return window - (now - self.failed[0]) if len(self.failed) >= ceiling else 0.0


_brakes: dict[str, _ErrorBrake] = {}
_brakes_lock = threading.Lock()


def _longer(ctx: ConnectorContext, wait_seconds: float) -> httpx.Timeout:
    """The connection's timeout, plus the time a long poll may hold its answer."""
    timeout = float(ctx.options.get("timeout_seconds", 30))
    return httpx.Timeout(timeout + wait_seconds, connect=min(timeout, 10.0))


class ApiClient:
    """Subclass per platform (see the module doc); one instance serves every context, as calls take ``ctx``."""

    platform: ClassVar[str] = "api"
    options_model: ClassVar[type[BaseModel] | None] = None
    base_url_option: ClassVar[str] = "base_url"
    auth: ClassVar[Auth | None] = BearerAuth()
    errors: ClassVar[ErrorTable] = ErrorTable()
    headers: ClassVar[Mapping[str, str]] = {"Accept": "application/json"}
    idempotency_header: ClassVar[str] = "Idempotency-Key"
    read_attempts: ClassVar[int] = 4
    """Tries of a read that fails with a Retriable (5xx, timeout, connection error)."""
    rate_limit_waits: ClassVar[int] = 5
    """Short 429s a read sleeps through on top of its attempts: waiting is not failing."""
    backoff_seconds: ClassVar[float] = 0.5
    max_backoff_seconds: ClassVar[float] = 30.0
    max_wait_seconds: ClassVar[float] = 60.0
    """The longest ``Retry-After`` a read sleeps through; a longer one is raised for the core to schedule."""
    error_ceiling: ClassVar[tuple[int, float] | None] = None
    """(failures, seconds): pause this process's calls when that many failed within the window, for platforms that
    block an address after a burst of errors (Bling: 300 in 10 s). None: no brake."""

    # --- what a subclass declares -------------------------------------------------------------------------

    def budget(self, ctx: ConnectorContext, operation: str) -> Budget | None:
        """The budget of ``operation`` (default: none, no pacing)."""
        return None

    def headers_for(self, ctx: ConnectorContext) -> Mapping[str, str]:
        """Headers of every call on this connection besides ``auth`` (default: ``headers``)."""
        return self.headers

    def tries(self, ctx: ConnectorContext, method: str) -> int:
        """How many times a call may be sent: ``read_attempts`` for reads, once for writes. Override to leave a
        push's lookups to the outbox, say; a call's ``attempts=`` argument overrides both."""
        return self.read_attempts if method in READS else 1

    def classify(self, ctx: ConnectorContext, response: httpx.Response, body: Any) -> HubError | None:
        """The error an odd answer stands for (even a 200 whose body says it failed), or None to use the table."""
        return None

    def detail_of(self, body: Any, default: str) -> str:
        """The human text of an error body, for the ``{detail}`` of messages (default: :func:`body_detail`)."""
        return body_detail(body, default)

    def field_of(self, body: Any) -> str | None:
        """The offending field of an error body (default: :func:`body_field`)."""
        return body_field(body)

    def encode(self, body: Any) -> bytes:
        """A JSON request body. Decimals (amounts) are written as numbers: one of up to 15 significant digits
        survives the trip through a double exactly, so ``Decimal("19.90")`` is sent as 19.9."""
        return jsonlib.dumps(body, default=_plain, ensure_ascii=False, separators=(",", ":")).encode()

    # --- the machinery -------------------------------------------------------------------------------------

    def options(self, ctx: ConnectorContext) -> Any:
        """``ctx.options`` validated by ``options_model`` once per connection (a bad option is Fatal with the fix)."""
        model = self.options_model
        if model is None:
            return ctx.options

        def validate() -> BaseModel:
            try:
                return model.model_validate(ctx.options)
            except ValidationError as exc:
                first = exc.errors()[0]
                name = ".".join(str(p) for p in first["loc"])
                raise Fatal(f"{self.platform} (tenant {ctx.tenant}, connection {ctx.connection}): option {name}: "
                            f"{first['msg']}", fix=f"Set options.{name} of connection {ctx.connection} in the route "
                                                   "file and re-apply it.") from None

        # Not get_or_set: this runs inside other entries' loaders (a lookup's first call), and their load locks are
        # not reentrant; validating twice in a race is harmless.
        key = f"{self.platform}:options:{model.__qualname__}"
        parsed = ctx.cache.get(key)
        if parsed is None:
            parsed = validate()
            ctx.cache.set(key, parsed, ttl=3600)
        return parsed

    def base_url(self, ctx: ConnectorContext) -> str:
        opts = self.options(ctx)
        value = opts.get(self.base_url_option) if isinstance(opts, dict) else getattr(opts, self.base_url_option)
        if not value:
            raise Fatal(f"{self.platform} (tenant {ctx.tenant}, connection {ctx.connection}): option "
                        f"{self.base_url_option} is not set", fix=f"Set options.{self.base_url_option} of connection "
                                                                  f"{ctx.connection} and re-apply the routes.")
        return str(value).rstrip("/")

    def error_for(self, ctx: ConnectorContext, response: httpx.Response, *, record: str | None = None,
                  action: str | None = None) -> HubError | None:
        """The hub error an answer stands for: :meth:`classify`, then ``errors``; None for a success. ``action``
        names the call in the message (default "METHOD /path")."""
        if response.status_code < 400 and type(self).classify is ApiClient.classify:
            return None  # a success no override can turn into an error: its body is the caller's to parse, once
        try:
            body: Any = response.json()
        except ValueError:
            body = {}
        special = self.classify(ctx, response, body)
        if special is not None or response.status_code < 400:
            return special
        rule = self.errors.rule_for(response.status_code, body)
        if rule is None:
            return None
        wait = rule.retry_after if rule.retry_after is not None else retry_after(response)
        field = (rule.field or self.field_of)(body)
        where = f"tenant {ctx.tenant}, connection {ctx.connection}" + (f", {record}" if record else "")
        values = _Template(platform=self.platform, status=response.status_code,
                           action=action or f"{response.request.method} {response.request.url.path}",
                           detail=self.detail_of(body, response.reason_phrase), field=field or "the record",
                           record=record or "the record", where=where, tenant=ctx.tenant,
                           connection=ctx.connection, retry_after=f"{wait:g}")
        message = rule.message.format_map(values)
        fix = rule.fix.format_map(values) if rule.fix else None
        if issubclass(rule.error, QuotaExhausted):
            until = rule.until() if rule.until else datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=wait)
            return rule.error(message, until=until, fix=fix)
        if issubclass(rule.error, RateLimited):
            return rule.error(message, retry_after=wait, fix=fix)
        if issubclass(rule.error, InvalidRecord):
            return rule.error(message, field=field, record=record, fix=fix)
        return rule.error(message, fix=fix)

    def check(self, ctx: ConnectorContext, response: httpx.Response, *, record: str | None = None,
              action: str | None = None) -> httpx.Response:
        """``response`` when it is a success; else its error, logged and raised. For answers the plugin got by
        itself (a token endpoint on another host)."""
        error = self.error_for(ctx, response, record=record, action=action)
        if error is not None:
            self._failed(ctx, action or f"{response.request.method} {response.request.url.path}", error)
        return response

    def request(self, ctx: ConnectorContext, method: str, path: str, *, operation: str | None = None,
                params: Mapping[str, Any] | None = None, json: Any = None, headers: Mapping[str, str] | None = None,
                record: str | None = None, idempotency_key: str | None = None, expect: Collection[int] = (),
                attempts: int | None = None, wait_seconds: float = 0.0) -> httpx.Response:
        """One call (reads retried, see the module doc); raises the hub error its answer stands for.

        ``operation`` names the call for :meth:`budget` (default "METHOD path"); ``record`` names the record in
        errors ("product CAM-001"); ``expect`` lists error statuses returned rather than raised (a 409 whose body
        names the existing record); ``attempts`` overrides :meth:`tries`; ``wait_seconds``: the platform may hold
        the answer this long on purpose (a long poll), so the timeout is that much longer."""
        method = method.upper()
        sent = dict(headers or {})
        if idempotency_key is not None:
            sent[self.idempotency_header] = idempotency_key
        call = partial(self._send, ctx, method, path, operation or f"{method} {path}", params, json, sent, record,
                       frozenset(expect), wait_seconds)
        tries = self.tries(ctx, method) if attempts is None else attempts
        if tries <= 1:
            return call()
        first: BaseException | None
        try:
            return call()  # most reads succeed at once: the retry machinery is built only for one that did not
        except BaseException as exc:
            if not self._retry_read(exc):
                raise
            first = exc
        counted: Counter[str] = Counter()
        backoff = wait_exponential(multiplier=self.backoff_seconds, max=self.max_backoff_seconds)

        def failed(state: RetryCallState) -> BaseException | None:
            return state.outcome.exception() if state.outcome is not None else None

        def give_up(state: RetryCallState) -> bool:
            counted["waits" if isinstance(failed(state), RateLimited) else "errors"] += 1
            return counted["errors"] >= tries or counted["waits"] > self.rate_limit_waits

        def wait(state: RetryCallState) -> float:
            error = failed(state)
            return error.retry_after if isinstance(error, RateLimited) else float(backoff(state))

        def again() -> httpx.Response:
            nonlocal first
            if first is not None:  # the first try's failure, counted and waited on like any other
                failure, first = first, None
                raise failure
            return call()

        retrying = Retrying(stop=give_up, wait=wait, reraise=True, retry=retry_if_exception(self._retry_read))
        response: httpx.Response = retrying(again)
        return response

    def _retry_read(self, exc: BaseException) -> bool:
        if isinstance(exc, QuotaExhausted):
            return False
        if isinstance(exc, RateLimited):
            return exc.retry_after <= self.max_wait_seconds
        return isinstance(exc, Retriable)

    def _failed(self, ctx: ConnectorContext, action: str, error: HubError) -> NoReturn:
        ctx.log_failure(action, error.message, error.fix)
        if self.error_ceiling is not None:
            with _brakes_lock:
                brake = _brakes.setdefault(self.platform, _ErrorBrake())
            pause = brake.note(*self.error_ceiling)
            if pause > 0:
                time.sleep(pause)
        raise error

    def _send(self, ctx: ConnectorContext, method: str, path: str, operation: str, params: Mapping[str, Any] | None,
              json: Any, headers: Mapping[str, str], record: str | None, expect: frozenset[int],
              wait_seconds: float = 0.0) -> httpx.Response:
        url = f"{self.base_url(ctx)}{path}"
        budget = self.budget(ctx, operation)
        if budget is not None:
            ctx.throttle(budget.key, budget.rate, burst=budget.burst, per_day=budget.per_day, day_tz=budget.day_tz)
        sent = {**self.headers_for(ctx), **(self.auth.headers(ctx) if self.auth else {})}
        content = None
        if json is not None:
            content, sent["Content-Type"] = self.encode(json), "application/json"
        sent.update(headers)
        error: HubError | None
        if budget is not None and budget.window is not None:
            SEND_WINDOW.admit(budget.key, *budget.window)
        try:
            timeout = _longer(ctx, wait_seconds) if wait_seconds > 0 else httpx.USE_CLIENT_DEFAULT
            response = ctx.http.request(method, url, params=params, content=content, headers=sent, timeout=timeout)
        except httpx.TimeoutException:
            action, about = self._naming(ctx, method, url, record)
            maybe = "" if method in READS else "; the write may or may not have happened: the hub looks it up first"
            error = Retriable(f"{self.platform} {action} ({about}): no answer in time{maybe}",
                              fix=f"The platform was slow; the hub retries. Raise options.timeout_seconds of "
                                  f"connection {ctx.connection} if this repeats.")
        except httpx.TransportError as exc:
            action, about = self._naming(ctx, method, url, record)
            error = Retriable(f"{self.platform} {action} ({about}): {type(exc).__name__}",
                              fix=f"Check that options.{self.base_url_option} of connection {ctx.connection} is "
                                  "reachable.")
        else:
            if response.status_code in expect:
                return response
            error = self.error_for(ctx, response, record=record)
            if error is None:
                return response
            action = self._naming(ctx, method, url, record)[0]
        self._failed(ctx, action, error)

    @staticmethod
    def _naming(ctx: ConnectorContext, method: str, url: str, record: str | None) -> tuple[str, str]:
        """A failed call's "METHOD /path" and "tenant T, connection C, record" (built for failures only)."""
        about = f"tenant {ctx.tenant}, connection {ctx.connection}" + (f", {record}" if record else "")
        return f"{method} {httpx.URL(url).path}", about

    def get(self, ctx: ConnectorContext, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(ctx, "GET", path, **kwargs)

    def post(self, ctx: ConnectorContext, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(ctx, "POST", path, **kwargs)

    def put(self, ctx: ConnectorContext, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(ctx, "PUT", path, **kwargs)

    def patch(self, ctx: ConnectorContext, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(ctx, "PATCH", path, **kwargs)

    def delete(self, ctx: ConnectorContext, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(ctx, "DELETE", path, **kwargs)
