"""What a targeted hook is given: its connection, credentials, an API-logged HTTP client and a binder.

A connector keeps state in one of two places, never in module globals or attributes of its own on the context:

* ``ctx.cache`` (:class:`ConnectionCache`): lookups that outlive a run and are shared by every context of the
  same connection in this process (the platform's units, depósitos, payment methods, parsed options). Each entry
  has a TTL; the cache is bounded, thread-safe, loads each key once when many threads miss it together, and is
  keyed by a fingerprint of the connection's options and credentials, so none of its entries is seen once they
  change (tokens that rotate on renewal excepted: a renewed token is the same account)::

      units = ctx.cache.get_or_set("cplug:units", lambda: read_units(ctx), ttl=300)
      deposit = ctx.cache.find("bling:deposits", lambda: read_deposits(ctx), lambda rows: by_name(rows, wanted))

  ``find`` re-reads the value once when ``match`` finds nothing, so a record created on the platform a minute ago
  is found rather than refused from a stale list.
* ``ctx.scratch``: a plain dict that lives as long as the context (one operation, one pull run): the customers
  already fetched for this page of sales, a run's counters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field

from hub.config.routes import TransitionRule
from hub.errors import Retriable
from hub.models import Ref
from hub.ratelimit import BULK, PROCESS_THROTTLE, URGENT, Throttle, pace

__all__ = ["URGENT_STREAMS", "ApiEntry", "ConnectionCache", "ConnectorContext", "Endpoint", "RouteView",
           "budget_priority", "clear_connection_caches", "connection_cache", "connection_fingerprint", "tls_context"]

T = TypeVar("T")
R = TypeVar("R")
READS = frozenset({"GET", "HEAD", "OPTIONS"})

_tls: ssl.SSLContext | None = None


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: the platforms authenticate with tokens, so a cookie one answer sets has no business
    riding along on the connection's next call, and reading ``Set-Cookie`` on every answer (through urllib's
    request shims) cost about a tenth of a catalog pull's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _Client(httpx.Client):
    """The connection's client: cookie-less (:class:`_NoCookies`)."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("connection clients keep no cookies; send a platform's cookie as a header")


_NO_COOKIES = _NoCookies()
_CLIENT_LOCK = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """One TLS context for every client of this process: building one loads the CA bundle (~15 ms of CPU), and
    each operation gets a fresh client."""
    global _tls
    if _tls is None:
        _tls = httpx.create_ssl_context()
    return _tls


DEFAULT_TTL = 300.0
"""Seconds an entry of ``ctx.cache`` lives unless the caller says otherwise."""
MAX_ENTRIES = 256
"""Entries per connection; the least recently used goes first."""
MAX_CONNECTIONS = 1024
"""Connections whose caches this process keeps; the least recently used goes first."""
FINGERPRINTS_KEPT = 3
"""Caches kept per connection, one per recent set of options and credentials; the oldest goes first."""
ROTATING_CREDENTIALS = frozenset({"access_token", "refresh_token", "id_token", "authorization_code", "token_type",
                                  "expires_in", "expires_at", "scope"})
"""Credentials that change on every renewal without changing the account: left out of the fingerprint."""

_MISSING = object()
_FINGERPRINT_KEY = os.urandom(32)
"""The fingerprint is an HMAC under a key that never leaves this process: it cannot be used to guess a secret."""


def _still_held(name: str, held: Any) -> None:
    """Renew a Redis lock before a write made under it, or stop the write if the lock is no longer this worker's
    (a process lock cannot be lost)."""
    from redis.exceptions import LockError

    reacquire = getattr(held, "reacquire", None)
    if reacquire is None:
        return

    try:
        reacquire()
    except LockError:
        raise Retriable(f"the lock {name!r} was lost before a write made under it (it expired, or Redis lost it), "
                        "so the write was not sent; it is retried with the lock taken again",
                        fix="Nothing to do if this is rare; if frequent, the workers stall for longer than the "
                            "lock's timeout (an overloaded machine).") from None


def connection_fingerprint(options: dict[str, Any], credentials: dict[str, str]) -> str:
    """Identifies what the connection points at (options and stable credentials) without holding any of it."""
    stable = {k: v for k, v in credentials.items() if k not in ROTATING_CREDENTIALS}
    payload = json.dumps([options, stable], sort_keys=True, default=str).encode()
    return hmac.new(_FINGERPRINT_KEY, payload, hashlib.sha256).hexdigest()


class ConnectionCache:
    """Per-connection lookups with a TTL per entry: bounded (LRU), thread-safe, one load per key at a time."""

    def __init__(self, fingerprint: str, max_entries: int = MAX_ENTRIES) -> None:
        self.fingerprint = fingerprint
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        """One lock per key being loaded, so two threads never load the same key at once. Per key, not striped:
        a factory may itself read another key of the cache, and two keys sharing a stripe would then deadlock."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str, default: Any = None) -> Any:
        """The live value of ``key``, or ``default``."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return default
            if hit[0] <= time.monotonic():
                del self._entries[key]
                return default
            self._entries.move_to_end(key)
            return hit[1]

    def set(self, key: str, value: Any, ttl: float = DEFAULT_TTL) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key: str | None = None) -> None:
        """Drop ``key`` (every entry when None), e.g. after the plugin changed what it caches on the platform."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def _loader(self, key: str) -> threading.Lock:
        with self._lock:
            lock = self._loading.get(key)
            if lock is None:
                if len(self._loading) > 4 * self.max_entries:  # bounded: drop the locks nobody holds
                    self._loading = {k: v for k, v in self._loading.items() if v.locked()}
                lock = self._loading[key] = threading.Lock()
            return lock

    def get_or_set(self, key: str, factory: Callable[[], T], ttl: float = DEFAULT_TTL) -> T:
        """The live value of ``key``; else ``factory()``, stored for ``ttl`` seconds. A factory that raises stores
        nothing. Threads that miss the same key together wait for one load."""
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return cast(T, value)
        with self._loader(key):
            value = self.get(key, _MISSING)
            if value is _MISSING:
                value = factory()
                self.set(key, value, ttl)
            return cast(T, value)

    def refresh(self, key: str, factory: Callable[[], T], ttl: float = DEFAULT_TTL, *, stale: Any = _MISSING) -> T:
        """Load ``key`` again. With ``stale`` (the value the caller found wanting), a value another thread stored
        since is returned instead of loading a second time."""
        with self._loader(key):
            current = self.get(key, _MISSING)
            if current is not _MISSING and stale is not _MISSING and current is not stale:
                return cast(T, current)
            value = factory()
            self.set(key, value, ttl)
            return value

    def find(self, key: str, factory: Callable[[], T], match: Callable[[T], R | None],
             ttl: float = DEFAULT_TTL) -> R | None:
        """``match`` applied to the cached value; when it finds nothing the value is re-read once (the record may
        have been created on the platform since) and matched again. None means it is not there now either."""
        value = self.get_or_set(key, factory, ttl)
        found = match(value)
        if found is None:
            found = match(self.refresh(key, factory, ttl, stale=value))
        return found

    def update(self, key: str, change: Callable[[T], T]) -> None:
        """Replace a live value by ``change(value)`` (keeping its expiry); readers holding the old value keep a
        consistent copy. Nothing happens when ``key`` is not cached."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > time.monotonic():
                self._entries[key] = (hit[0], change(hit[1]))


_caches: OrderedDict[tuple[str, str, str], ConnectionCache] = OrderedDict()
_caches_lock = threading.Lock()


def connection_cache(tenant: str, connection: str, fingerprint: str) -> ConnectionCache:
    """This process's cache of a connection as its options and credentials are now (the fingerprint). Changed
    options or credentials find none of the old entries; the caches of earlier fingerprints are dropped after
    :data:`FINGERPRINTS_KEPT` (a token renewal's context, with its longer timeout, does not evict the main one)."""
    with _caches_lock:
        key = (tenant, connection, fingerprint)
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = ConnectionCache(fingerprint)
            same = [k for k in _caches if k[:2] == key[:2]]
            for old in same[:-FINGERPRINTS_KEPT]:
                del _caches[old]
        _caches.move_to_end(key)
        while len(_caches) > MAX_CONNECTIONS:
            _caches.popitem(last=False)
        return cache


def clear_connection_caches() -> None:
    """Forget every connection's cache in this process (tests: a sandbox served again on a port a previous one
    used looks like the same connection)."""
    with _caches_lock:
        _caches.clear()


URGENT_STREAMS = frozenset({"sales", "invoices"})
"""Streams whose calls go first within a shared budget: a sale's push, its cancellation and status actions, its
NF-e, and the pulls of sales (see :mod:`hub.ratelimit`)."""


def budget_priority(stream: str | None, route_streams: Collection[str] = ()) -> str:
    """URGENT for the sales and invoice streams, for every stream of a route that carries them (``route_streams``:
    a sale waits for its customer, which Bling's plugin creates under the lock the customer's own write holds) and
    for calls outside any stream (a token renewal); BULK for the catalog (products, stock, prices, categories, a
    plugin's own catalog streams)."""
    if stream is None or stream in URGENT_STREAMS or not URGENT_STREAMS.isdisjoint(route_streams):
        return URGENT
    return BULK


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    connection: str
    platform: str


class RouteView(BaseModel):
    """A route as plugins see it: read-only, platform names resolved, transition rules typed (the core matches
    them; see :func:`hub.hookspecs.on_status_transition`)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    name: str
    source: Endpoint
    sink: Endpoint
    streams: list[str]
    mappings: dict[str, dict[str, str] | None] = Field(default_factory=dict)
    transitions: list[TransitionRule] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    emit_invoices: bool = False
    cancel_replaced: str | None = None
    replace: list[str] = Field(default_factory=list)
    updates: dict[str, list[str]] = Field(default_factory=dict)
    """Streams this route only updates, with the fields it carries (see :func:`hub.sync.ingest.ingest_updates`)."""


@dataclass
class ApiEntry:
    action: str
    model: str | None
    status: int | None
    duration_ms: int | None
    error: str | None = None
    fix: str | None = None
    at: datetime | None = None


class _Secrets(dict[str, str]):
    """Credentials: a dict that never prints its values."""

    def __repr__(self) -> str:
        return f"<credentials {sorted(self)}>"

    __str__ = __repr__


@dataclass
class ConnectorContext:
    """Given to every targeted hook. ``http`` has the connection's ``base_url`` and logs every call; ``cache`` and
    ``scratch`` hold the plugin's state (module doc)."""

    tenant: str
    connection: str
    platform: str
    options: dict[str, Any]
    credentials: dict[str, str]
    route: RouteView | None = None
    stream: str | None = None
    started_at: datetime | None = None
    first_attempt: bool = False
    """In a push: True when no earlier attempt to write this record here could have reached the platform (no
    retry after a timeout, a 5xx or a crash, no remote id recorded). A push may then create at once, without looking
    the record up by its natural key first; on a retry it must look before creating. False outside pushes."""
    _resolver: Callable[[str, Ref], str | None] | None = None
    _finder: Callable[[str, str], str | None] | None = None
    _carrier: Callable[[str, str], bool] | None = None
    _webhook_clock: Callable[[tuple[str, ...], float], bool] | None = None
    _remote_id_sink: Callable[[str], None] | None = None
    _before_write: Callable[[], None] | None = None
    """In an operation: renews the operation's lease before each write, or raises :class:`hub.errors.LeaseLost`
    when another worker took the operation over (the fence that keeps a stalled worker from writing twice)."""
    calls: list[ApiEntry] = field(default_factory=list)
    budget: Throttle = PROCESS_THROTTLE
    priority: str | None = None
    """The class of this context's calls within a shared budget (``hub.ratelimit.URGENT`` or ``BULK``); None:
    :func:`budget_priority` of ``stream``. The core decides it, never a plugin."""
    scratch: dict[str, Any] = field(default_factory=dict)
    """What the plugin keeps for this context's life only (one operation, one pull run); see the module doc."""
    _client: httpx.Client | None = None
    _cache: ConnectionCache | None = None
    _held: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.credentials = _Secrets(self.credentials)

    @property
    def cache(self) -> ConnectionCache:
        """The connection's cache in this process, shared with its other contexts (see the module doc)."""
        if self._cache is None:
            self._cache = connection_cache(self.tenant, self.connection,
                                           connection_fingerprint(self.options, self.credentials))
        return self._cache

    @property
    def http(self) -> httpx.Client:
        if self._client is None:
            with _CLIENT_LOCK:  # hub.read_each's threads may ask a fresh context for its client together
                if self._client is None:
                    timeout = float(self.options.get("timeout_seconds", 30))
                    self._client = _Client(
                        base_url=str(self.options.get("base_url", "")),
                        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), verify=tls_context(),
                        event_hooks={"request": [self._on_request], "response": [self._on_response]},
                    )
        return self._client

    def _on_request(self, request: httpx.Request) -> None:
        if request.method not in READS:
            if self._before_write is not None:
                self._before_write()
            for name, held in self._held:
                _still_held(name, held)
        request.extensions["hub_started"] = time.perf_counter()

    def _on_response(self, response: httpx.Response) -> None:
        started = response.request.extensions.get("hub_started")
        elapsed = int((time.perf_counter() - started) * 1000) if started else None
        self.calls.append(ApiEntry(
            action=f"{response.request.method} {response.request.url.path}",
            model=self.stream,
            status=response.status_code,
            duration_ms=elapsed,
        ))

    def throttle(self, key: str, per_second: float, *, burst: int = 1, per_day: int | None = None,
                 day_tz: str = "UTC") -> float:
        """Wait for the account's next request slot, shared by every worker (Redis when configured).

        ``key`` names the account (e.g. ``bling:<company>``); ``burst`` calls may go at once after an idle spell.
        Raises :class:`hub.errors.QuotaExhausted` once ``per_day`` requests were made in the current day of
        ``day_tz``. Returns the seconds waited.
        """
        return pace(self.budget, key, per_second, burst=burst, per_day=per_day, day_tz=day_tz,
                    priority=self.priority or budget_priority(self.stream, self.route.streams if self.route else ()))

    @contextmanager
    def lock(self, name: str, timeout: float = 60.0) -> Iterator[Any]:
        """A lock shared by every worker of this connection (Redis when configured), e.g. around a
        search-then-create that must never create the same customer twice. A Redis lock expires after ``timeout``
        (so a killed worker's lock frees itself), and Redis may lose it (a flush, a restart): every write made
        while it is held first renews it, and one made after it was lost is never sent."""
        from redis.exceptions import LockError

        held = self.budget.lock(f"{self.tenant}:{self.connection}:{name}", timeout)
        held.__enter__()
        entry = (name, held)
        self._held.append(entry)
        try:
            yield held
        finally:
            self._held.remove(entry)
            try:
                held.__exit__(None, None, None)
            except LockError:
                pass  # it expired or Redis lost it: nothing is left to release, and no write went out unheld

    def log_failure(self, action: str, error: str, fix: str | None) -> None:
        """Attach an error and its fix to the log (the last call's entry when it is the one that failed)."""
        if self.calls and self.calls[-1].error is None and (self.calls[-1].status or 0) >= 400:
            self.calls[-1].error, self.calls[-1].fix = error, fix
        else:
            self.calls.append(ApiEntry(action=action, model=self.stream, status=None, duration_ms=None,
                                       error=error, fix=fix))

    def resolve(self, entity: str, ref: Ref | None) -> str | None:
        """The id on this connection of a record the source refers to, or None if it is not bound here."""
        if ref is None or self._resolver is None:
            return None
        return self._resolver(entity, ref)

    def find_bound(self, entity: str, natural_key: str) -> str | None:
        """The id on this connection of the store's record with that natural key (e.g. a product by SKU), if
        the two are bound: lets a connector skip a remote lookup for records it already synced."""
        if self._finder is None:
            return None
        return self._finder(entity, natural_key)

    def carries(self, entity: str, external_id: str) -> bool:
        """Whether this pull's route takes the record with this id. Always, except on a route that only updates
        ``entity`` (``updates`` in the route file): it takes only records the hub already exchanged between its two
        ends, so a plugin may skip reading the detail of any other."""
        if self._carrier is None or self.route is None or entity not in self.route.updates:
            return True
        return self._carrier(entity, external_id)

    def webhooks_arrive(self, *events: str, within_seconds: float = 3600.0) -> bool:
        """Whether this connection received a verified webhook named one of ``events`` in the last
        ``within_seconds``: the account's subscription works. A plugin waiting for a remote change that such a
        webhook announces (it wakes the operation whose remote id it names) may then keep its timed reads as a
        slow backstop instead of spending the platform's budget on them."""
        if self._webhook_clock is None or not events:
            return False
        return self._webhook_clock(events, within_seconds)

    def record_remote_id(self, external_id: str) -> None:
        """Call right after a create succeeds: the id is committed before anything else can fail."""
        if self._remote_id_sink is not None:
            self._remote_id_sink(external_id)

    def mapping(self, table: str) -> dict[str, str] | None:
        return self.route.mappings.get(table) if self.route else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
