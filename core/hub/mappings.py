"""DE-PARA tables side by side with what both platforms offer (``hub mappings``, ``hub routes check``).

Each table of a route is compared with the values the source uses (its list, read online where its plugin pulls
one, and the values the sales it read carry in the store) and with the values the sink offers (read online). A mapping
to a value the sink does not have is caught here, before sales are refused one by one at push time.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from hub.errors import HubError
from hub.models import PaymentMethod
from hub.store.schema import Binding, Connection, Record, Route
from hub.sync.loading import Runtime, find_route, make_context, route_view, write_calls

LISTS = {"payment_methods": "payment_methods"}
"""Tables whose values a platform lists through a stream (the stream's records are the values)."""
FIELDS = {"payment_methods": ("payments", "method"), "statuses": ("status", None), "stores": ("store", None)}
"""Where a sale in the store carries each core table's source value."""


@dataclass
class Side:
    values: dict[str, str] = field(default_factory=dict)
    """value -> its name (or the value itself)."""
    listed: bool = False
    """Whether the platform's list was read (else only stored records speak for it)."""
    error: str | None = None


@dataclass
class TableReport:
    table: str
    entries: dict[str, str] | None
    source: Side
    sink: Side
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "configured": self.entries is not None, "rows": self.rows,
                "sink_offers": sorted(self.sink.values) if self.sink.listed else None,
                "source_listed": self.source.listed, "sink_listed": self.sink.listed,
                "source_error": self.source.error, "sink_error": self.sink.error, "problems": self.problems}


def fold(value: str) -> str:
    """A name as platforms compare it when a value passes by name: case and accents ignored."""
    return "".join(c for c in unicodedata.normalize("NFKD", value.casefold()) if not unicodedata.combining(c)).strip()


def read_list(rt: Runtime, conn: Connection, table: str) -> Side:
    """The platform's values for ``table``, read online through its plugin (nothing when it lists none): from its
    ``list_values`` hook, or from the stream whose records are the values."""
    side = Side()
    stream = LISTS.get(table)
    platform = rt.registry.platforms.get(conn.platform)
    if platform is None:
        return side
    answers = rt.registry.implements(conn.platform, "list_values")
    if not answers and (stream is None or stream not in platform.platform.pulls):
        return side
    from hub.streams import stream_spec

    ctx = None
    try:
        ctx = make_context(rt, conn, None, stream)
        listed = rt.registry.call(conn.platform, "list_values", ctx=ctx, table=table) if answers else None
        if listed is not None:
            side.values.update({str(k): str(v) for k, v in listed.items()})
            side.listed = True
            return side
        if stream is None or stream not in platform.platform.pulls:
            return side
        pages = rt.registry.call(conn.platform, stream_spec(stream, rt.registry).pull_hook, ctx=ctx, stream=stream,
                                 since=None)
        for page in pages:
            for item in page.records:
                data = getattr(item, "data", None)
                try:
                    method = data if isinstance(data, PaymentMethod) else PaymentMethod.model_validate(data)
                except ValidationError:
                    continue
                if method.active:
                    side.values[method.code] = method.name
        side.listed = True
    except HubError as exc:
        side.error = f"{exc.message} (fix: {exc.fix})"
    finally:
        if ctx is not None:
            with rt.store.begin() as s:
                write_calls(s, conn.tenant_id, conn.id, ctx.calls)
            ctx.close()
    return side


def stored_values(rt: Runtime, tenant: str, table: str, source_id: int, limit: int = 5000) -> set[str]:
    """The values for ``table`` that the sales read from the source (``source_id``) carry in the store. Only those:
    a sale another route brought holds that route's words, and a route that updates a sale's status stores the
    status in the sale's own words (``hub.sync.ingest``), so neither speaks for this source."""
    where = FIELDS.get(table)
    if where is None:
        return set()
    key, inner = where
    found: set[str] = set()
    read_here = (Binding.canonical_id == Record.canonical_id) & (Binding.connection_id == source_id) \
        & (Binding.entity == "sales") & (Binding.origin == "pull")
    with rt.store.sessions() as s:
        for payload in s.scalars(select(Record.payload).join(Binding, read_here)
                                 .where(Record.tenant_id == tenant, Record.entity == "sales").limit(limit)):
            value = payload.get(key)
            items = value if isinstance(value, list) else [value]
            for item in items:
                got = item.get(inner) if inner and isinstance(item, dict) else item
                if isinstance(got, str) and got:
                    found.add(got)
    return found


def route_tables(rt: Runtime, tenant: str, route_name: str) -> list[TableReport]:
    with rt.store.sessions() as s:
        route = find_route(s, tenant, route_name)
        view = route_view(s, route)
        source = s.get_one(Connection, route.source_id)
        sink = s.get_one(Connection, route.sink_id)
        s.expunge_all()
    tables: dict[str, dict[str, str] | None] = {name: entries for name, entries in view.mappings.items()
                                               if entries is not None}
    carried = view.updates.get("sales")
    if "sales" in view.streams:
        for name, (key, _) in FIELDS.items():
            if carried is None or key in carried:  # a route that updates fields maps only those
                tables.setdefault(name, None)
    reports = []
    for name, entries in sorted(tables.items()):
        src, dst = read_list(rt, source, name), read_list(rt, sink, name)
        for value in stored_values(rt, tenant, name, source.id):
            src.values.setdefault(value, value)
        report = TableReport(name, dict(entries) if entries is not None else None, src, dst)
        where = f"routes.{route_name}.mappings.{name}"
        # a platform takes a mapped value by its code or by its name (Bling: a forma de pagamento by id or name)
        offered_names = {fold(v) for v in dst.values} | {fold(n) for n in dst.values.values()}
        for value in sorted(set(src.values) | set(entries or {})):
            target = (entries or {}).get(value)
            on_sink = None if not dst.listed or target is None else (
                target in dst.values or fold(target) in offered_names)
            report.rows.append({"source": value, "source_name": src.values.get(value), "sink": target,
                                "sink_name": dst.values.get(target) if target else None, "sink_has_it": on_sink})
            if entries is not None and target is None:
                report.problems.append(f"{where}: the source uses {value!r} ({src.values.get(value)}) and the table "
                                       f"has no entry for it (fix: add `{value}: SINK_VALUE`)")
            elif on_sink is False:
                report.problems.append(f"{where}.{value}: {target!r} is not offered by {sink.name} (fix: use one "
                                       f"of: {', '.join(sorted(dst.values)) or 'none'})")
        if entries is None and src.values and dst.listed:
            report.problems.extend(_passing_by_name(report, where, source.name, sink.name, name in LISTS))
        reports.append(report)
    return reports


def _passing_by_name(report: TableReport, where: str, source: str, sink: str, by_code: bool) -> list[str]:
    """Without a table, values pass as they are: those the sink does not offer (by code for listed records, by
    name, case and accents ignored, for the rest) would be refused one by one at push time."""
    if by_code:
        missing = sorted(set(report.source.values) - set(report.sink.values))
        return [f"{where}: not set, and {source} uses {', '.join(missing)} which {sink} does not offer (fix: add "
                "the DE-PARA table)"] if missing else []
    offered = {fold(v) for v in report.sink.values} | {fold(n) for n in report.sink.values.values()}
    missing = sorted(v for v in report.source.values if fold(v) not in offered)
    if not missing:
        return []
    offers = ", ".join(sorted(report.sink.values.values())) or "none"
    return [f"{where}: not set, so {report.table} pass by name, and {sink} has no {report.table} named "
            f"{', '.join(repr(m) for m in missing)} (it has: {offers}) (fix: create them in {sink} with exactly "
            f"{source}'s names, or add the DE-PARA table)"]


def tenant_check(rt: Runtime, tenant: str) -> dict[str, list[TableReport]]:
    with rt.store.sessions() as s:
        names = list(s.scalars(select(Route.name).where(Route.tenant_id == tenant, Route.enabled.is_(True))
                               .order_by(Route.name)))
    return {name: route_tables(rt, tenant, name) for name in names}


def starter_table(report: TableReport) -> dict[str, str]:
    """A table to paste into the route file: every source value, mapped where the sink has the same value."""
    return {row["source"]: row["sink"] or (row["source"] if row["source"] in report.sink.values else "TODO")
            for row in report.rows}
