"""What a targeted hook is given: its connection, credentials, an API-logged HTTP client and a binder."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from hub.models import Ref
from hub.ratelimit import PROCESS_THROTTLE, Throttle, pace

_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """One TLS context for every client of this process: building one loads the CA bundle (~15 ms of CPU), and
    each operation gets a fresh client."""
    global _tls
    if _tls is None:
        _tls = httpx.create_ssl_context()
    return _tls


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    connection: str
    platform: str


class RouteView(BaseModel):
    """A route as plugins see it: read-only, platform names resolved."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    name: str
    source: Endpoint
    sink: Endpoint
    streams: list[str]
    mappings: dict[str, dict[str, str] | None] = Field(default_factory=dict)
    transitions: list[dict[str, Any]] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    emit_invoices: bool = False
    cancel_replaced: str | None = None
    replace: list[str] = Field(default_factory=list)


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
    """Given to every targeted hook. ``http`` has the connection's ``base_url`` and logs every call."""

    tenant: str
    connection: str
    platform: str
    options: dict[str, Any]
    credentials: dict[str, str]
    route: RouteView | None = None
    stream: str | None = None
    started_at: datetime | None = None
    _resolver: Callable[[str, Ref], str | None] | None = None
    _finder: Callable[[str, str], str | None] | None = None
    _remote_id_sink: Callable[[str], None] | None = None
    calls: list[ApiEntry] = field(default_factory=list)
    budget: Throttle = PROCESS_THROTTLE
    cache: dict[str, Any] = field(default_factory=dict)
    """Scratch space for the plugin during this context's life (parsed options, lookups of this run)."""
    _client: httpx.Client | None = None

    def __post_init__(self) -> None:
        self.credentials = _Secrets(self.credentials)

    @property
    def http(self) -> httpx.Client:
        if self._client is None:
            timeout = float(self.options.get("timeout_seconds", 30))
            self._client = httpx.Client(
                base_url=str(self.options.get("base_url", "")),
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), verify=tls_context(),
                event_hooks={"request": [self._on_request], "response": [self._on_response]},
            )
        return self._client

    def _on_request(self, request: httpx.Request) -> None:
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

    def throttle(self, key: str, per_second: float, *, per_day: int | None = None, day_tz: str = "UTC") -> float:
        """Wait for the account's next request slot, shared by every worker (Redis when configured).

        ``key`` names the account (e.g. ``bling:<company>``). Raises :class:`hub.errors.QuotaExhausted` once
        ``per_day`` requests were made in the current day of ``day_tz``. Returns the seconds waited.
        """
        return pace(self.budget, key, per_second, per_day=per_day, day_tz=day_tz)

    def lock(self, name: str, timeout: float = 60.0) -> AbstractContextManager[Any]:
        """A lock shared by every worker of this connection (Redis when configured), e.g. around a
        search-then-create that must never create the same customer twice."""
        return self.budget.lock(f"{self.tenant}:{self.connection}:{name}", timeout)

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
