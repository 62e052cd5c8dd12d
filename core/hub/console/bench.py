"""``hub bench console``: page load times of the console for a big tenant (default 100,000 records and 1,000,000
API-log rows), and the query plans of its lists, which must walk indexes (keyset pages, never OFFSET or a scan).

The rows are written straight into a fresh store (SQLite in a temporary folder, or ``--database-url``), then each
page is requested through the ASGI app as a signed-in user, several times; the figure is the median.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import statistics as stats
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import insert, text

from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Binding, Connection, Cursor, Operation, Quarantine, Record, Route, Run, Tenant

TENANT = "grande"
CHUNK = 20_000


def _chunks(total: int, make: Callable[[int], dict[str, Any]]) -> Any:
    for start in range(0, total, CHUNK):
        yield [make(i) for i in range(start, min(start + CHUNK, total))]


def populate(store: Store, records: int, calls: int, say: Callable[[str], None]) -> dict[str, int]:
    """A tenant with two connections and a sales route, ``records`` records (half customers, half sales) bound on
    both ends, an operation per record, ``calls`` API-log rows over 30 days, runs and quarantine; and a small
    second tenant, so every query has another tenant's rows to skip."""
    now = utcnow()
    rng = random.Random(7)
    ids: dict[str, int] = {}
    with store.begin() as s:
        for tenant in (TENANT, "pequeno"):
            s.add(Tenant(id=tenant, name=tenant.title(), created_at=now, time_zone=None))
            s.flush()
            conns = []
            for name, platform in (("cplug", "cplug"), ("bling", "bling")):
                conn = Connection(tenant_id=tenant, name=name, platform=platform, options={}, credentials=None,
                                  credentials_env={}, token_expires_at=now + timedelta(hours=5), paused_until=None,
                                  pause_reason=None, pause_kind=None, renew_by=now + timedelta(days=20),
                                  token_issued_at=now, auth_attempt_at=None, auth_attempt_token=None,
                                  secret_options=None, updated_at=now)
                s.add(conn)
                s.flush()
                conns.append(conn.id)
            route = Route(tenant_id=tenant, name="sales", source_id=conns[0], sink_id=conns[1],
                          config={"streams": ["customers", "sales"], "mappings": {"payment_methods": {"1": "PIX"}}},
                          enabled=True, schedule_seconds=60, next_run_at=now, paused_at=None, updated_at=now)
            s.add(route)
            s.flush()
            for stream in ("customers", "sales"):
                s.add(Cursor(tenant_id=tenant, route_id=route.id, stream=stream, position="x",
                             last_success_at=now - timedelta(minutes=3), last_error=None, updated_at=now))
            ids[tenant], ids[f"{tenant}:source"], ids[f"{tenant}:sink"] = route.id, conns[0], conns[1]
    started = time.perf_counter()
    for tenant, n_records, n_calls in ((TENANT, records, calls), ("pequeno", 1000, 10_000)):
        _fill(store, tenant, ids[tenant], ids[f"{tenant}:source"], ids[f"{tenant}:sink"], n_records, n_calls, rng)
    # A live store's autovacuum has set the visibility map (PostgreSQL's index-only scans rely on it) and the
    # statistics; a store filled a moment ago has neither, so do what autovacuum would.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM ANALYZE" if store.dialect == "postgresql" else "ANALYZE"))
    say(f"populated in {time.perf_counter() - started:.0f}s")
    return ids


def _fill(store: Store, tenant: str, route_id: int, source: int, sink: int, n_records: int, n_calls: int,
          rng: random.Random) -> None:
    now = utcnow()
    span = 30 * 86400

    def entity(i: int) -> str:
        return "customers" if i % 2 else "sales"

    with store.engine.begin() as conn:
        for rows in _chunks(n_records, lambda i: {
                "tenant_id": tenant, "entity": entity(i), "canonical_id": f"{tenant}-{i:08d}", "natural_key": str(i),
                "payload": {"number": str(i), "payments": [{"method": "1"}]}, "content_hash": f"h{i}",
                "version": 1, "updated_at": now}):
            conn.execute(insert(Record), rows)
        for connection_id, origin in ((source, "source"), (sink, "sink")):
            for rows in _chunks(n_records, lambda i, c=connection_id, o=origin: {  # type: ignore[misc]
                    "tenant_id": tenant, "connection_id": c, "entity": entity(i), "external_id": f"{o}-{i}",
                    "canonical_id": f"{tenant}-{i:08d}", "content_hash": f"h{i}", "origin": o, "synced_at": now}):
                conn.execute(insert(Binding), rows)
        for rows in _chunks(n_records, lambda i: {
                "tenant_id": tenant, "route_id": route_id, "connection_id": sink,
                "kind": "push_sale" if i % 2 == 0 else "push_customer", "entity": entity(i),
                "canonical_id": f"{tenant}-{i:08d}", "content_hash": f"h{i}", "params": {},
                "idempotency_key": f"{tenant}-op-{i}",
                "state": "failed" if i % 97 == 0 else "pending" if i % 89 == 0 else "done",
                "attempts": 1, "waits": 0, "available_at": now - timedelta(seconds=i % 600),
                "lease_until": None, "dispatched_at": None, "remote_id": None,
                "last_error": "refused" if i % 97 == 0 else None, "fix": None, "created_at": now, "updated_at": now}):
            conn.execute(insert(Operation), rows)
        for rows in _chunks(n_calls, lambda i: {
                "tenant_id": tenant, "connection_id": source if i % 3 else sink,
                "at": now - timedelta(seconds=span * (1 - i / max(n_calls, 1))),
                "action": "GET /vendas" if i % 3 else "POST /pedidos/vendas", "model": "sales",
                "status": 429 if i % 500 == 0 else 422 if i % 997 == 0 else 200,
                "duration_ms": rng.randint(20, 900), "error": "refused" if i % 997 == 0 else None, "fix": None}):
            conn.execute(insert(ApiCall), rows)
        for rows in _chunks(max(n_records // 100, 1), lambda i: {
                "tenant_id": tenant, "route_id": route_id, "connection_id": None, "entity": "customers",
                "record": f"customer {i}", "field": "document", "reason": "CPF with a wrong check digit",
                "fix": "Correct the CPF at the source", "payload": {}, "created_at": now, "resolved_at": None}):
            conn.execute(insert(Quarantine), rows)
        for rows in _chunks(max(n_records // 10, 1), lambda i: {
                "tenant_id": tenant, "route_id": route_id, "route": "sales", "trigger": "schedule", "status": "ok",
                "started_at": now - timedelta(minutes=i), "ended_at": now - timedelta(minutes=i, seconds=-20),
                "streams": {}, "operations_done": 5, "operations_failed": 0, "quarantined": 0, "api_calls": 10,
                "rate_limited": 0, "error": None}):
            conn.execute(insert(Run), rows)


PLANS = {
    "api log, first page": ("SELECT id FROM api_log WHERE tenant_id = :t ORDER BY at DESC, id DESC LIMIT 50", {}),
    "api log, keyset page": ("SELECT id FROM api_log WHERE tenant_id = :t AND (at, id) < (:at, :id) "
                             "ORDER BY at DESC, id DESC LIMIT 50", {"id": 10**9}),
    "api log, one day": ("SELECT id FROM api_log WHERE tenant_id = :t AND at >= :since AND at < :at "
                         "ORDER BY at DESC, id DESC LIMIT 50", {}),
    "quarantine page": ("SELECT id FROM quarantine WHERE tenant_id = :t AND resolved_at IS NULL "
                        "ORDER BY id DESC LIMIT 50", {}),
    "failed operations": ("SELECT id FROM operations WHERE route_id IN (:r) AND state = 'failed' "
                          "ORDER BY id DESC LIMIT 50", {}),
    "runs page": ("SELECT id FROM runs WHERE tenant_id = :t AND route = 'sales' ORDER BY id DESC LIMIT 50", {}),
    # The routes page's bounded counts (hub.console.overview): one index range each, stopping at the cap.
    "routes page, records": ("SELECT count(*) FROM (SELECT 1 FROM bindings WHERE connection_id = :c "
                             "AND entity = 'sales' LIMIT 10001) AS capped", {}),
    "routes page, failed": ("SELECT entity, count(*) FROM (SELECT entity FROM operations WHERE route_id = :r AND "
                            "state = 'failed' LIMIT 10001) AS capped GROUP BY entity", {}),
}


def plans(store: Store, route_id: int) -> dict[str, str]:
    now = utcnow()
    params = {"t": TENANT, "r": route_id, "at": now, "since": now - timedelta(days=1)}
    out = {}
    with store.engine.connect() as conn:
        params["c"] = conn.execute(text("SELECT source_id FROM routes WHERE id = :r"), {"r": route_id}).scalar_one()
        for name, (sql, extra) in PLANS.items():
            prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
            rows = conn.execute(text(prefix + sql), {**params, **extra}).all()
            out[name] = " | ".join(str(r[-1]) for r in rows)
    return out


def full_scans(plan: dict[str, str]) -> list[str]:
    """Plans that read a whole table (SQLite ``SCAN t`` without an index, PostgreSQL ``Seq Scan``); the scan of a
    bounded count's own subquery (``capped``) reads only the rows its index range gave."""
    bad = []
    for name, text_ in plan.items():
        if re.search(r"\bSCAN (?!capped\b)\w+(?! USING)(?!\s+USING)", text_) \
                and "USING" not in text_.split("SCAN", 1)[1][:60]:
            bad.append(name)
        if "Seq Scan" in text_:
            bad.append(name)
    return bad


def measure(store: Store, route_id: int, repeat: int, say: Callable[[str], None], home: Path) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from hub.console.app import make_app
    from hub.console.users import add_user
    from hub.crypto import Vault
    from hub.registry import get_registry
    from hub.settings import Settings
    from hub.sync.loading import Runtime

    rt = Runtime(store=store, vault=Vault(Settings(home=home)), registry=get_registry())
    add_user(store, "bench@hub.example", "bench password 1", [TENANT])
    pages = ["/t/grande/routes", "/t/grande/connections", "/t/grande/logs", "/t/grande/logs?status=429",
             "/t/grande/logs?connection=bling&action=pedidos", f"/t/grande/logs?date={utcnow():%Y-%m-%d}",
             "/t/grande/quarantine", "/t/grande/failed", "/t/grande/routes/sales/runs", "/metrics"]
    figures: dict[str, Any] = {}
    with TestClient(make_app(rt, b"bench"), follow_redirects=False) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        client.post("/login", data={"email": "bench@hub.example", "password": "bench password 1",
                                    "csrf": token.group(1)})
        for page in pages:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                answer = client.get(page)
                times.append((time.perf_counter() - t0) * 1000)
                assert answer.status_code == 200, (page, answer.status_code)
            figures[page] = {"median_ms": round(stats.median(times), 1), "max_ms": round(max(times), 1)}
            say(f"{page}: median {figures[page]['median_ms']} ms")
        # Deep in the log: follow "next page" 20 times (keyset), timing the last.
        url = "/t/grande/logs"
        for _ in range(20):
            found = re.search(r'href="\?([^"]+)" id="next-page"', client.get(url).text)
            assert found is not None
            url = "/t/grande/logs?" + found.group(1).replace("&amp;", "&")
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            deep = client.get(url)
            times.append((time.perf_counter() - t0) * 1000)
            assert deep.status_code == 200 and deep.text.count("<tr class=") == 50, "a full page, deep in the log"
        figures["/t/grande/logs (page 21, keyset)"] = {"median_ms": round(stats.median(times), 1),
                                                       "max_ms": round(max(times), 1)}
    return figures


@click.command("console")
@click.option("--records", default=100_000, show_default=True)
@click.option("--api-log", "calls", default=1_000_000, show_default=True)
@click.option("--repeat", default=5, show_default=True)
@click.option("--database-url", default=None, help="Default: a fresh SQLite store in a temporary folder.")
def bench_console(records: int, calls: int, repeat: int, database_url: str | None) -> None:
    """Console page load times for a tenant with RECORDS records and API-LOG rows; index use of its lists."""
    def say(line: str) -> None:
        click.echo(line, err=True)

    folder = Path(tempfile.mkdtemp(prefix="hub-bench-console-"))
    url = database_url or f"sqlite:///{folder / 'hub.db'}"
    store = Store.from_url(url)
    if database_url:
        migrate.downgrade(store, "base")
    migrate.upgrade(store)
    ids = populate(store, records, calls, say)
    plan = plans(store, ids[TENANT])
    figures = measure(store, ids[TENANT], repeat, say, folder)
    click.echo(json.dumps({"database": store.dialect, "records": records, "api_log_rows": calls,
                           "pages": figures, "query_plans": plan, "full_scans": full_scans(plan)}, indent=2))
    store.engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)
