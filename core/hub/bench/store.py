"""``hub bench store``: how fast pages are upserted into the canonical store, and how much memory it takes."""

from __future__ import annotations

import json
import resource
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import click
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy import insert as sql_insert

from hub.models import Product, ProductFiscal
from hub.platform import Incoming
from hub.registry import get_registry
from hub.store import migrate, statistics
from hub.store.engine import Store, utcnow
from hub.store.schema import (
    ApiCall,
    Binding,
    Connection,
    Operation,
    Quarantine,
    Record,
    Route,
    Tenant,
)
from hub.sync.ingest import BINDINGS, RECORDS, ingest_page, operation_row
from hub.sync.loading import route_view


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _page(start: int, stop: int, version: int) -> list[Incoming]:
    return [
        Incoming(external_id=str(i), data=Product(
            sku=f"SKU-{i:07d}", name=f"Produto {i} v{version}", price=Decimal(i % 500) + Decimal("0.90"),
            category_path=["Roupas", f"Linha {i % 20}"], attributes={"Cor": "Azul"},
            fiscal=ProductFiscal(ncm="61091000", origin=0)))
        for i in range(start, stop)
    ]


def _pages(total: int, size: int, version: int) -> Iterator[list[Incoming]]:
    for start in range(0, total, size):
        yield _page(start, min(start + size, total), version)


def _clear(store: Store) -> None:
    with store.begin() as s:
        for table in (Operation, Binding, Record, Quarantine, ApiCall):
            s.execute(delete(table).where(table.tenant_id == "bench"))  # type: ignore[attr-defined]
        s.execute(delete(Tenant).where(Tenant.id == "bench"))


def _setup(store: Store) -> Route:
    now = utcnow()
    _clear(store)
    with store.begin() as s:
        s.add(Tenant(id="bench", name="Benchmark", created_at=now))
        s.flush()
        conns = []
        for name in ("source", "sink"):
            conn = Connection(tenant_id="bench", name=name, platform=f"bench-{name}", options={}, credentials=None,
                              credentials_env={}, token_expires_at=None, paused_until=None, pause_reason=None,
                              updated_at=now)
            s.add(conn)
            conns.append(conn)
        s.flush()
        route = Route(tenant_id="bench", name="bench", source_id=conns[0].id, sink_id=conns[1].id,
                      config={"streams": ["products"]}, enabled=True, schedule_seconds=None, next_run_at=None,
                      updated_at=now)
        s.add(route)
        s.flush()
        s.expunge_all()
    return route


def run(url: str, records: int, page_size: int) -> dict[str, Any]:
    """Each page is written by the hub, then the same page bare, one after the other, so the two rates are
    measured under the same load of the machine and the same size of the tables (a shared machine drifts by a
    third over a minute, and a bare pass run after the hub's finished saw other conditions)."""
    store = Store.from_url(url)
    migrate.upgrade(store)
    route = _setup(store)
    registry = get_registry()
    with store.sessions() as s:
        s.add(route)
        view = route_view(s, route)
        s.expunge(route)
    figures: dict[str, Any] = {"database": store.dialect, "records": records, "page_size": page_size}
    bare_seconds: dict[str, float] = {"insert": 0.0, "update": 0.0}
    for phase, version in (("insert", 1), ("unchanged", 1), ("update", 2)):
        seconds = 0.0
        ops = 0
        for number, start in enumerate(range(0, records, page_size), start=1):
            stop = min(start + page_size, records)
            began = time.perf_counter()
            page = _page(start, stop, version)
            with store.begin() as s:
                s.add(route)
                ops += ingest_page(s, registry, route, view, "products", page).operations
                s.expunge(route)
                statistics.refresh(s, number)
            _checkpoint(store)
            seconds += time.perf_counter() - began
            if phase in bare_seconds:
                began = time.perf_counter()
                bare_page(store, route, _page(start, stop, version), insert=phase == "insert")
                _checkpoint(store)
                bare_seconds[phase] += time.perf_counter() - began
        figures[phase] = {"seconds": round(seconds, 2), "records_per_s": round(records / seconds),
                          "operations_enqueued": ops}
    with store.sessions() as s:
        states = {state: n for state, n in s.execute(select(Operation.state, func.count())
                                                     .where(Operation.route_id == route.id,
                                                            ~Operation.canonical_id.startswith("bare-"))
                                                     .group_by(Operation.state))}
    figures["update"]["writes_superseded"] = states.get("superseded", 0)
    figures["update"]["writes_pending"] = states.get("pending", 0)
    figures["bare"] = {phase: {"seconds": round(seconds, 2), "records_per_s": round(records / seconds)}
                       for phase, seconds in bare_seconds.items()}
    for phase, seconds in bare_seconds.items():
        figures[phase]["of_bare"] = round(seconds / figures[phase]["seconds"], 2)
    figures["peak_rss_mb"] = peak_rss_mb()
    _clear(store)
    store.engine.dispose()
    return figures


def _checkpoint(store: Store) -> None:
    """On SQLite, copy the write-ahead log into the database now, so each side pays for the log it wrote: SQLite
    checkpoints in whichever commit finds the log past 1,000 pages, and with the two sides taking turns one side
    was billed for the other's pages (either ratio moved by 0.1 with who crossed the line)."""
    if store.dialect != "sqlite":
        return
    conn = store.engine.raw_connection()
    try:
        conn.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
    finally:
        conn.close()


def bare_page(store: Store, route: Route, page: list[Incoming], *, insert: bool) -> None:
    """The rows the hub writes per record (the record, its binding, an outbox operation) written with nothing in
    between: one executemany per table, or executemany UPDATEs by key and the new operations. The ceiling the
    store's rates are compared with (``of_bare``: the hub's speed as a fraction of this), with the same models
    built and hashed on both sides, under keys of their own (``bare-<id>``)."""
    now = utcnow()
    models = [(f"bare-{item.external_id}", cast(Product, item.data)) for item in page]
    hashes = {key: model.content_hash() for key, model in models}
    with store.engine.begin() as conn:
        ops = [operation_row(route, kind="push_catalog", entity="products", canonical_id=key,
                             content_hash=hashes[key]) for key, _ in models]
        if insert:
            conn.execute(sql_insert(Record), [dict(
                tenant_id="bench", entity="products", canonical_id=key, natural_key=model.natural_key(),
                payload=model.model_dump(mode="json"), content_hash=hashes[key], version=1,
                updated_at=now) for key, model in models])
            conn.execute(sql_insert(Binding), [dict(
                tenant_id="bench", connection_id=route.source_id, entity="products", external_id=key,
                canonical_id=key, content_hash=hashes[key], origin="pull", synced_at=now)
                for key, _ in models])
        else:
            conn.execute(update(RECORDS).where(
                Record.tenant_id == "bench", Record.entity == "products",
                Record.canonical_id == bindparam("key")).values(
                payload=bindparam("payload"), content_hash=bindparam("hash"), version=Record.version + 1,
                updated_at=now), [{"key": key, "payload": model.model_dump(mode="json"),
                                   "hash": hashes[key]} for key, model in models])
            conn.execute(update(BINDINGS).where(
                Binding.connection_id == route.source_id, Binding.entity == "products",
                Binding.external_id == bindparam("key")).values(
                content_hash=bindparam("hash"), synced_at=now),
                [{"key": key, "hash": hashes[key]} for key, _ in models])
        conn.execute(sql_insert(Operation), ops)


@click.command("store")
@click.option("--records", default=100_000, show_default=True)
@click.option("--page-size", default=500, show_default=True)
@click.option("--database-url", default=None, envvar="HUB_DATABASE_URL",
              help="Default: HUB_DATABASE_URL, else a fresh SQLite file in a temporary directory.")
@click.option("--json", "as_json", is_flag=True)
def bench_store(records: int, page_size: int, database_url: str | None, as_json: bool) -> None:
    """Upsert RECORDS products through the store (insert, unchanged re-run, update) and report the rates, beside
    the same rows written bare (executemany), page by page in turn."""
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        figures = run(url, records, page_size)
    click.echo(json.dumps(figures, indent=None if as_json else 2))
