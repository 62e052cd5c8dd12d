"""The routes page's figures, bounded so a page load costs the same for 1,000 records as for 1,000,000.

``hub status`` counts every binding and every operation of the tenant (grouped by stream and state, 740 ms on
SQLite at 100,000 records, most of it reading each operation's row for its entity). The page shows the same
columns, but each count stops at :data:`CAP`: bindings with one ``SELECT 1 ... LIMIT CAP + 1`` per stream and
end on the index that leads with the connection (``(connection_id, entity, external_id)``, index only), all in one
statement; operations with one read of at most CAP + 1 rows per route and state on ``(route_id, state)``, grouped by
entity (the entity is not in that index, so each row read costs a lookup: one read per state, not per stream). A
count that reaches the cap is shown as "CAP+", with a link to the exact figures (``?exact=1``), counted without the
limit on demand. Operations already done are not on the page, so they are never read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from hub.errors import Fatal
from hub.store.schema import Binding, Connection, Cursor, Operation, Quarantine, Route, Tenant
from hub.sync.loading import Runtime

CAP = 10_000
"""Counts stop here unless the exact figures are asked for: past it the page shows "10000+". No page load reads
more than this many rows per figure, whatever the planner picks (PostgreSQL seq-scans bindings when a stream holds
a large share of them and the visibility map is not set yet; the limit stops that scan too)."""
OPEN = ("pending", "running")


class Figure(int):
    """A count; ``capped`` when counting stopped at the cap (the true figure is larger)."""

    capped: bool = False

    def __new__(cls, value: int, capped: bool = False) -> Figure:
        made = super().__new__(cls, value)
        made.capped = capped
        return made

    def __str__(self) -> str:
        return f"{int(self)}+" if self.capped else str(int(self))


def _count(where: list[ColumnElement[bool]], table: Any, cap: int | None) -> Any:
    """A scalar subquery counting ``table``'s rows matching ``where``, reading at most ``cap + 1`` of them."""
    rows = select(literal(1).label("x")).select_from(table).where(*where)
    if cap is not None:
        rows = rows.limit(cap + 1)
    return select(func.count()).select_from(rows.subquery()).scalar_subquery()


def routes_overview(rt: Runtime, tenant: str, exact: bool = False) -> dict[str, Any]:
    """Per route and stream: last success, records on the source and the sink, pending and failed operations,
    as ``hub status`` has them (``done`` left out), each count bounded by :data:`CAP` unless ``exact``."""
    cap = None if exact else CAP
    with rt.store.sessions() as s:
        if s.get(Tenant, tenant) is None:
            raise Fatal(f"no tenant {tenant!r}", fix="Apply a route file that declares it: hub routes apply FILE")
        names = dict(s.execute(select(Connection.id, Connection.name).where(Connection.tenant_id == tenant)).all())
        routes = list(s.scalars(select(Route).where(Route.tenant_id == tenant).order_by(Route.name)))
        ids = [r.id for r in routes]
        cursors = {(c.route_id, c.stream): c for c in s.scalars(select(Cursor).where(Cursor.route_id.in_(ids)))}
        # Operations: one read per route and state on the (route_id, state) index, at most CAP + 1 rows, grouped by
        # entity. Its entities are also the writes a route makes beyond its streams (an NF-e going back to the
        # sale's source), shown too. When a state's range reaches the cap, each entity's figure is a lower bound.
        ops: dict[tuple[int, str, str], int] = {}
        full: set[tuple[int, str]] = set()
        for rid in ids:
            for state in (*OPEN, "failed"):
                rows = select(Operation.entity).where(Operation.route_id == rid, Operation.state == state)
                if cap is not None:
                    rows = rows.limit(cap + 1)
                sub = rows.subquery()
                found = s.execute(select(sub.c.entity, func.count()).group_by(sub.c.entity)).all()
                for entity, n in found:
                    ops[(rid, entity, state)] = int(n)
                if cap is not None and sum(n for _, n in found) > cap:
                    full.add((rid, state))
        plan: list[tuple[tuple[Any, ...], Any]] = []
        listed: dict[int, list[str]] = {}
        for route in routes:
            shown = list(route.config.get("streams", []))
            shown += sorted({e for (rid, e, _) in ops if rid == route.id} - set(shown))
            listed[route.id] = shown
            for stream in shown:
                for side, conn in (("records", route.source_id), ("on_sink", route.sink_id)):
                    plan.append(((route.id, stream, side), _count(
                        [Binding.connection_id == conn, Binding.entity == stream], Binding, cap)))
        plan.append((("quarantined",), _count([Quarantine.tenant_id == tenant, Quarantine.resolved_at.is_(None)],
                                              Quarantine, cap)))
        counted = _run(s, plan)

    def operations(rid: int, stream: str, states: tuple[str, ...]) -> Figure:
        return Figure(sum(ops.get((rid, stream, st), 0) for st in states),
                      any((rid, st) in full for st in states))

    out: list[dict[str, Any]] = []
    for route in routes:
        streams = []
        for stream in listed[route.id]:
            cur = cursors.get((route.id, stream))
            streams.append({
                "stream": stream,
                "last_success_at": cur.last_success_at if cur else None,
                "last_error": cur.last_error if cur else None,
                "records": _figure([counted[(route.id, stream, "records")]], cap),
                "on_sink": _figure([counted[(route.id, stream, "on_sink")]], cap),
                "pending": operations(route.id, stream, OPEN),
                "failed": operations(route.id, stream, ("failed",)),
            })
        out.append({"name": route.name, "enabled": route.enabled, "paused_at": route.paused_at,
                    "source": names.get(route.source_id, "?"), "sink": names.get(route.sink_id, "?"),
                    "streams": streams, "listed": list(route.config.get("streams", [])),
                    "sync_failures": route.sync_failures, "next_run_at": route.next_run_at})
    quarantined = _figure([counted[("quarantined",)]], cap)
    capped = quarantined.capped or any(getattr(v, "capped", False) for r in out for st in r["streams"]
                                       for v in st.values())
    return {"tenant": tenant, "routes": out, "quarantined": quarantined, "capped": capped, "exact": exact,
            "cap": CAP}


def _run(s: Session, plan: list[tuple[tuple[Any, ...], Any]]) -> dict[tuple[Any, ...], int]:
    """Every count in one statement (one round trip), in chunks so no statement grows without bound."""
    counted: dict[tuple[Any, ...], int] = {}
    for start in range(0, len(plan), 50):
        chunk = plan[start:start + 50]
        row = s.execute(select(*(query.label(f"c{i}") for i, (_, query) in enumerate(chunk)))).one()
        counted.update({key: int(value or 0) for (key, _), value in zip(chunk, row, strict=True)})
    return counted


def _figure(parts: list[int], cap: int | None) -> Figure:
    """The sum of ``parts``; capped when any part reached the cap (each part counted at most ``cap + 1``)."""
    capped = cap is not None and any(p > cap for p in parts)
    return Figure(sum(min(p, cap) if cap is not None else p for p in parts), capped)
