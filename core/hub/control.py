"""The operator's switches: pause and resume a connection or a route, uninstall a connection, show and reset a
route's cursors. Nothing here deletes data or queued operations: a paused or uninstalled connection's operations
wait in the outbox and go out once it is resumed (or reinstalled by ``hub routes apply``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hub.errors import Fatal
from hub.store.engine import utcnow
from hub.store.schema import Connection, Cursor, Operation, Route
from hub.sync.loading import PAUSE_FOR_REAUTH, Runtime, find_route

OPERATOR_KINDS = ("operator", "uninstalled")
"""Pause kinds an operator set (``hub pause``, ``hub uninstall``), as opposed to the hub's own (auth, quota)."""


def find_connection(s: Session, tenant: str, name: str) -> Connection:
    conn = s.scalar(select(Connection).where(Connection.tenant_id == tenant, Connection.name == name))
    if conn is None:
        known = ", ".join(s.scalars(select(Connection.name).where(Connection.tenant_id == tenant))) or "none"
        raise Fatal(f"tenant {tenant!r} has no connection {name!r} (connections: {known})",
                    fix="Check the names with `hub status TENANT`.")
    return conn


def _waiting(s: Session, *where: Any) -> int:
    return len(list(s.scalars(select(Operation.id).where(Operation.state.in_(("pending", "running")), *where))))


def pause_connection(rt: Runtime, tenant: str, name: str, kind: str = "operator") -> dict[str, Any]:
    now = utcnow()
    with rt.store.begin() as s:
        conn = find_connection(s, tenant, name)
        if conn.pause_kind == "auth" and conn.paused_until is not None and conn.paused_until > now:
            raise Fatal(f"connection {tenant}/{name} is already paused until it is re-authorized: "
                        f"{conn.pause_reason}", fix=f"Re-authorize it with `hub auth {conn.platform} {tenant}`.")
        what = "uninstalled (hub uninstall)" if kind == "uninstalled" else "paused by the operator (hub pause)"
        conn.paused_until, conn.pause_kind = now + PAUSE_FOR_REAUTH, kind
        conn.pause_reason = f"{what} at {now:%Y-%m-%d %H:%M} UTC"
        routes = list(s.scalars(select(Route).where(Route.tenant_id == tenant,
                                                     or_(Route.source_id == conn.id, Route.sink_id == conn.id))))
        if kind == "uninstalled":
            for route in routes:
                route.enabled = False
        return {"connection": name, "state": kind, "routes": sorted(r.name for r in routes),
                "queued_operations": _waiting(s, Operation.connection_id == conn.id)}


def resume_connection(rt: Runtime, tenant: str, name: str) -> dict[str, Any]:
    with rt.store.begin() as s:
        conn = find_connection(s, tenant, name)
        if conn.pause_kind == "uninstalled":
            raise Fatal(f"connection {tenant}/{name} was uninstalled; its routes are stopped",
                        fix="Apply the route file that declares it again: `hub routes apply FILE` reinstalls it.")
        if conn.pause_kind not in OPERATOR_KINDS:
            raise Fatal(f"connection {tenant}/{name} is not paused by the operator"
                        + (f" (paused: {conn.pause_reason})" if conn.pause_kind else ""),
                        fix="Nothing to resume; `hub status TENANT` shows each connection's state.")
        conn.paused_until = conn.pause_kind = conn.pause_reason = None
        s.execute(update(Operation).where(Operation.connection_id == conn.id, Operation.state == "pending")
                  .values(available_at=utcnow(), dispatched_at=None))
        return {"connection": name, "state": "active", "queued_operations": _waiting(
            s, Operation.connection_id == conn.id)}


def pause_route(rt: Runtime, tenant: str, name: str, paused: bool) -> dict[str, Any]:
    now = utcnow()
    with rt.store.begin() as s:
        route = find_route(s, tenant, name)
        route.paused_at = now if paused else None
        if not paused:
            s.execute(update(Operation).where(Operation.route_id == route.id, Operation.state == "pending")
                      .values(available_at=now, dispatched_at=None))
        return {"route": name, "state": "paused" if paused else "active",
                "queued_operations": _waiting(s, Operation.route_id == route.id)}


def reinstall(conn: Connection) -> bool:
    """Called when a route file declares the connection again: an uninstalled one is active again."""
    if conn.pause_kind != "uninstalled":
        return False
    conn.paused_until = conn.pause_kind = conn.pause_reason = None
    return True


def held(rt: Runtime, route: Route) -> str | None:
    """Why a route may not run now because of the operator (paused route, paused or uninstalled connection)."""
    if route.paused_at is not None:
        return f"route {route.tenant_id}/{route.name} is paused (since {route.paused_at:%Y-%m-%d %H:%M} UTC)"
    with rt.store.sessions() as s:
        for conn_id in (route.source_id, route.sink_id):
            conn = s.get_one(Connection, conn_id)
            if conn.pause_kind in OPERATOR_KINDS:
                return f"connection {conn.tenant_id}/{conn.name} is {conn.pause_reason}"
    return None


def cursors(rt: Runtime, tenant: str, route_name: str, stream: str | None = None,
            reset: bool = False) -> list[dict[str, Any]]:
    """A route's cursors (where each stream's incremental pull resumes); ``reset`` forgets them, so the next sync
    of those streams reads everything again (records already on the sink are matched, not duplicated)."""
    with rt.store.begin() as s:
        route = find_route(s, tenant, route_name)
        streams = list(route.config.get("streams", []))
        if stream is not None and stream not in streams:
            raise Fatal(f"route {tenant}/{route_name} has no stream {stream!r} (its streams: {', '.join(streams)})",
                        fix="Name one of the route's streams.")
        rows = {c.stream: c for c in s.scalars(select(Cursor).where(Cursor.route_id == route.id))}
        out = []
        for name in streams:
            if stream is not None and name != stream:
                continue
            cur = rows.get(name)
            if reset and cur is not None:
                cur.position, cur.updated_at = None, utcnow()
            out.append({"stream": name, "position": cur.position if cur else None,
                        "last_success_at": cur.last_success_at if cur else None,
                        "last_error": cur.last_error if cur else None,
                        "updated_at": cur.updated_at if cur else None})
        return out
