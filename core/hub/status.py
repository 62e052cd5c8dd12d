"""What ``hub status`` and ``hub logs`` show, as plain data (the CLI formats it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_

from hub.errors import Fatal
from hub.store.engine import utcnow
from hub.store.schema import (
    ApiCall,
    Binding,
    Connection,
    Cursor,
    Operation,
    Quarantine,
    Route,
    Tenant,
)
from hub.sync.loading import Runtime


def tenant_status(rt: Runtime, tenant: str) -> dict[str, Any]:
    with rt.store.sessions() as s:
        if s.get(Tenant, tenant) is None:
            raise Fatal(f"no tenant {tenant!r}", fix="Apply a route file that declares it: hub routes apply FILE")
        conns = {c.id: c for c in s.scalars(select(Connection).where(Connection.tenant_id == tenant))}
        now = utcnow()
        # By connection and route id: the (connection_id, entity, ...) and (route_id, state, ...) indexes serve
        # these counts, where tenant_id has no index of its own on either table.
        bound = dict(((conn, entity), n) for conn, entity, n in s.execute(
            select(Binding.connection_id, Binding.entity, func.count())
            .where(Binding.connection_id.in_(list(conns))).group_by(Binding.connection_id, Binding.entity)))
        ops = dict(((route, entity, state), n) for route, entity, state, n in s.execute(
            select(Operation.route_id, Operation.entity, Operation.state, func.count())
            .where(Operation.route_id.in_(select(Route.id).where(Route.tenant_id == tenant)))
            .group_by(Operation.route_id, Operation.entity, Operation.state)))
        routes = []
        for route in s.scalars(select(Route).where(Route.tenant_id == tenant).order_by(Route.name)):
            cursors = {c.stream: c for c in s.scalars(select(Cursor).where(Cursor.route_id == route.id))}
            streams = []
            listed = list(route.config.get("streams", []))
            # Writes a route makes beyond its streams (an NF-e going back to the sale's source) are followed too.
            listed += sorted({entity for (rid, entity, _state) in ops if rid == route.id} - set(listed))
            for stream in listed:
                cur = cursors.get(stream)
                streams.append({
                    "stream": stream,
                    "last_success_at": cur.last_success_at if cur else None,
                    "last_error": cur.last_error if cur else None,
                    "records": bound.get((route.source_id, stream), 0),
                    "on_sink": bound.get((route.sink_id, stream), 0),
                    "pending": ops.get((route.id, stream, "pending"), 0) + ops.get((route.id, stream, "running"), 0),
                    "failed": ops.get((route.id, stream, "failed"), 0),
                    "done": ops.get((route.id, stream, "done"), 0),
                })
            routes.append({"name": route.name, "enabled": route.enabled, "paused_at": route.paused_at,
                           "source": conns[route.source_id].name,
                           "sink": conns[route.sink_id].name, "streams": streams,
                           "sync_failures": route.sync_failures, "next_run_at": route.next_run_at})
        quarantined = s.scalar(select(func.count()).select_from(Quarantine).where(
            Quarantine.tenant_id == tenant, Quarantine.resolved_at.is_(None))) or 0
        return {
            "tenant": tenant,
            "connections": [{"name": c.name, "platform": c.platform,
                             "paused": bool(c.paused_until and c.paused_until > now), "pause_reason": c.pause_reason,
                             "pause_kind": c.pause_kind, "token_expires_at": c.token_expires_at,
                             "token_issued_at": c.token_issued_at, "auth_attempt_at": c.auth_attempt_at,
                             "auth_attempt_sent_at": c.auth_attempt_sent_at,
                             "notices": auth_notices(rt, c, now)}
                            for c in conns.values()],
            "routes": routes,
            "quarantined": quarantined,
        }


def auth_notices(rt: Runtime, conn: Connection, now: datetime) -> list[str]:
    """What the connection's plugin says about its authorization ahead of time (Amazon: the seller's 365-day
    authorization lapses in 30, 7, 1 days), through ``Platform.extra["auth_notice"]``: a callable of the
    decrypted credentials, the connection's options and now (naive UTC) returning a warning or None."""
    from hub.sync.loading import credentials_of

    try:
        platform = rt.registry.platform(conn.platform)
    except Fatal:  # an uninstalled plugin: hub status still shows the rest
        return []
    notice = platform.extra.get("auth_notice") if platform.extra else None
    if not callable(notice) or not conn.credentials:
        return []
    said = notice(credentials_of(rt.vault, conn), dict(conn.options or {}), now)
    return [str(said)] if said else []


def api_log(rt: Runtime, tenant: str, limit: int = 50, only_errors: bool = False, *, connection: str | None = None,
            status: int | None = None, action: str | None = None, since: datetime | None = None,
            warnings: bool = True, until: datetime | None = None,
            before: tuple[datetime, int] | None = None) -> list[dict[str, Any]]:
    """The newest calls first. ``only_errors`` keeps failed calls; ``warnings=False`` drops the warnings a
    platform sent with a successful write (logged as errors starting with "warning:"), so errors are not buried.
    ``before`` (a row's ``at`` and ``id``) pages on by keyset along the (tenant, at) index, never by OFFSET."""
    with rt.store.sessions() as s:
        names = dict(s.execute(select(Connection.id, Connection.name).where(Connection.tenant_id == tenant)).all())
        query = (select(ApiCall).where(ApiCall.tenant_id == tenant)
                 .order_by(ApiCall.at.desc(), ApiCall.id.desc()).limit(limit))
        if before is not None:
            query = query.where(tuple_(ApiCall.at, ApiCall.id) < tuple_(*before))
        if until is not None:
            query = query.where(ApiCall.at < until)
        if only_errors:
            query = query.where(ApiCall.error.is_not(None))
        if not warnings:
            query = query.where(ApiCall.error.is_(None) | ApiCall.error.not_like("warning:%"))
        if connection is not None:
            ids = [i for i, n in names.items() if n == connection]
            if not ids:
                raise Fatal(f"tenant {tenant!r} has no connection {connection!r} (connections: "
                            f"{', '.join(sorted(names.values())) or 'none'})", fix="Check the name with hub status.")
            query = query.where(ApiCall.connection_id.in_(ids))
        if status is not None:
            query = query.where(ApiCall.status == status)
        if action:
            query = query.where(ApiCall.action.contains(action, autoescape=True))
        if since is not None:
            query = query.where(ApiCall.at >= since)
        return [{"id": c.id, "at": c.at, "connection": names.get(c.connection_id) if c.connection_id else None,
                 "action": c.action, "model": c.model, "status": c.status, "ms": c.duration_ms,
                 "error": c.error, "fix": c.fix} for c in s.scalars(query)]


def quarantined(rt: Runtime, tenant: str, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
    with rt.store.sessions() as s:
        query = (select(Quarantine).where(Quarantine.tenant_id == tenant, Quarantine.resolved_at.is_(None))
                 .order_by(Quarantine.id.desc()).limit(limit))
        if before is not None:
            query = query.where(Quarantine.id < before)
        return [{"id": q.id, "route_id": q.route_id, "entity": q.entity, "record": q.record, "field": q.field,
                 "reason": q.reason, "fix": q.fix, "at": q.created_at} for q in s.scalars(query)]
