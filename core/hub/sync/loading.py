"""Reading routes and connections out of the store, and building a connector context for them."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from hub.crypto import Vault
from hub.errors import AuthRevoked, Fatal, QuotaExhausted, RateLimited
from hub.models import Ref
from hub.platform import Credentials
from hub.ratelimit import PROCESS_THROTTLE, Throttle
from hub.registry import Registry
from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Binding, Connection, Record, Route
from hub.sync.context import ApiEntry, ConnectorContext, Endpoint, RouteView

AUTH_SKEW = timedelta(seconds=60)
PAUSE_FOR_REAUTH = timedelta(days=3650)


@dataclass
class Runtime:
    """Everything the sync and operation code needs, passed explicitly (no globals)."""

    store: Store
    vault: Vault
    registry: Registry
    lease_seconds: float = 60.0
    max_attempts: int = 8
    max_backoff_seconds: float = 3600.0
    throttle: Throttle = PROCESS_THROTTLE


def find_route(s: Session, tenant: str, name: str) -> Route:
    route = s.scalar(select(Route).where(Route.tenant_id == tenant, Route.name == name))
    if route is None:
        known = ", ".join(s.scalars(select(Route.name).where(Route.tenant_id == tenant))) or "none"
        raise Fatal(f"tenant {tenant!r} has no route {name!r} (routes: {known})",
                    fix="Check the names, or apply the route file with `hub routes apply FILE`.")
    return route


def route_view(s: Session, route: Route) -> RouteView:
    source = s.get_one(Connection, route.source_id)
    sink = s.get_one(Connection, route.sink_id)
    cfg = route.config
    return RouteView(
        tenant=route.tenant_id, name=route.name,
        source=Endpoint(connection=source.name, platform=source.platform),
        sink=Endpoint(connection=sink.name, platform=sink.platform),
        streams=list(cfg.get("streams", [])), mappings=dict(cfg.get("mappings") or {}),
        transitions=list(cfg.get("transitions") or []), options=dict(cfg.get("options") or {}),
        emit_invoices=bool(cfg.get("emit_invoices")), cancel_replaced=cfg.get("cancel_replaced"),
        replace=list(cfg.get("replace") or []),
    )


def credentials_of(vault: Vault, conn: Connection) -> dict[str, str]:
    values = vault.decrypt(conn.credentials) if conn.credentials else {}
    for key, var in (conn.credentials_env or {}).items():
        if key not in values and var in os.environ:
            values[key] = os.environ[var]
    return values


def write_calls(s: Session, tenant: str, connection_id: int | None, calls: list[ApiEntry]) -> None:
    now = utcnow()
    if calls:
        s.execute(insert(ApiCall), [
            dict(tenant_id=tenant, connection_id=connection_id, at=c.at or now, action=c.action[:200], model=c.model,
                 status=c.status, duration_ms=c.duration_ms, error=c.error, fix=c.fix) for c in calls])
    calls.clear()


_auth_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)


def ensure_auth(rt: Runtime, connection_id: int, *, stale_token: str | None = None,
                force: bool = False) -> dict[str, str]:
    """Single-flight token renewal: a process lock plus a row lock, a re-read, and the new pair stored before
    the lock is released. With ``stale_token`` it renews only if nobody has replaced that token yet; ``force``
    renews even a fresh token (idle renewal, a new authorization)."""
    with _auth_locks[connection_id]:
        revoked: AuthRevoked | None = None
        with rt.store.begin() as s:
            conn = s.get_one(Connection, connection_id, with_for_update=True)
            creds = credentials_of(rt.vault, conn)
            if not rt.registry.implements(conn.platform, "authenticate"):
                return creds
            now = utcnow()
            fresh = "access_token" in creds and (conn.token_expires_at is None
                                                 or conn.token_expires_at > now + AUTH_SKEW)
            if stale_token is None and fresh and not force:
                return creds
            if stale_token is not None and creds.get("access_token") != stale_token:
                return creds
            ctx = ConnectorContext(tenant=conn.tenant_id, connection=conn.name, platform=conn.platform,
                                   options=conn.options, credentials=creds, stream="auth", budget=rt.throttle)
            try:
                result: Credentials | None = rt.registry.call(conn.platform, "authenticate", ctx=ctx)
            except AuthRevoked as exc:
                ctx.log_failure("authenticate", exc.message, exc.fix)
                revoked, result = exc, None
            finally:
                ctx.close()
            write_calls(s, conn.tenant_id, conn.id, ctx.calls)
            if revoked is None:
                if result is None:
                    return creds
                conn.credentials = rt.vault.encrypt(result.values)
                conn.token_expires_at = _naive(result.expires_at)
                conn.renew_by = _naive(result.renew_by)
                if conn.pause_kind == "auth":
                    conn.paused_until = conn.pause_kind = conn.pause_reason = None
                return dict(result.values)
        # Committed apart, so the pause survives the error it reports.
        with rt.store.begin() as s:
            conn = s.get_one(Connection, connection_id)
            conn.paused_until, conn.pause_kind = now + PAUSE_FOR_REAUTH, "auth"
            conn.pause_reason = f"{revoked.message} (fix: {revoked.fix})"
        raise revoked


def pause_for_quota(rt: Runtime, connection_id: int, exc: QuotaExhausted) -> None:
    """Stop every route of the connection until the quota renews; ``hub status`` shows why and until when."""
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id)
        if conn.pause_kind == "auth":
            return
        conn.paused_until, conn.pause_kind = exc.until, "quota"
        conn.pause_reason = f"{exc.message} (until {exc.until:%Y-%m-%d %H:%M} UTC; fix: {exc.fix})"


def _naive(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.replace(tzinfo=None) - (value.utcoffset() or timedelta())


def make_context(rt: Runtime, conn: Connection, view: RouteView | None, stream: str | None,
                 source_id: int | None = None) -> ConnectorContext:
    now = utcnow()
    if conn.paused_until is not None and conn.paused_until > now:
        if conn.pause_kind == "quota":
            raise RateLimited(f"connection {conn.tenant_id}/{conn.name} is paused: {conn.pause_reason}",
                              retry_after=(conn.paused_until - now).total_seconds())
        raise AuthRevoked(f"connection {conn.tenant_id}/{conn.name} is paused: {conn.pause_reason}",
                          fix=f"Re-authorize it: hub auth {conn.platform} {conn.tenant_id}")
    creds = ensure_auth(rt, conn.id)
    ctx = ConnectorContext(tenant=conn.tenant_id, connection=conn.name, platform=conn.platform,
                           options=conn.options, credentials=creds, route=view, stream=stream,
                           started_at=now, budget=rt.throttle)
    conn_id, tenant = conn.id, conn.tenant_id

    def find(entity: str, natural_key: str) -> str | None:
        with rt.store.sessions() as s:
            return s.scalar(select(Binding.external_id).join(Record, (Record.canonical_id == Binding.canonical_id)
                                                            & (Record.entity == Binding.entity)
                                                            & (Record.tenant_id == tenant))
                            .where(Binding.connection_id == conn_id, Binding.entity == entity,
                                   Record.natural_key == natural_key).limit(1))

    ctx._finder = find
    if source_id is not None:
        sink_id = conn.id

        def resolve(entity: str, ref: Ref) -> str | None:
            with rt.store.sessions() as s:
                canonical = s.scalar(select(Binding.canonical_id).where(
                    Binding.connection_id == source_id, Binding.entity == entity,
                    Binding.external_id == ref.external_id))
                if canonical is None:
                    return None
                return s.scalar(select(Binding.external_id).where(
                    Binding.connection_id == sink_id, Binding.entity == entity,
                    Binding.canonical_id == canonical))

        ctx._resolver = resolve
    return ctx


def refresh_after_expiry(rt: Runtime, conn: Connection, ctx: ConnectorContext) -> None:
    """After AuthExpired: renew (single-flight) and give the context the new token."""
    creds = ensure_auth(rt, conn.id, stale_token=ctx.credentials.get("access_token"))
    ctx.credentials.clear()
    ctx.credentials.update(creds)
