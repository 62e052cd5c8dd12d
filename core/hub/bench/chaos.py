"""``hub bench chaos``: POS sales through the shipped CPlug -> Bling route while everything that can fail does.

PostgreSQL and Redis are required: three ``hub run`` processes share the store and the broker. The demo scenario's
route file is applied with both connections pointed at sandboxes served in child processes of the bench. A fraction
of the API requests on both sandboxes fail (500, a timeout past the client's, a timeout *after* a completed write,
429). While the workers run, a schedule thread SIGKILLs a random worker every ``kill_every`` seconds (and starts a
new one), ``FLUSHDB``s the broker's Redis database once, terminates every other connection to the store's database
once, and expires every access token on both platforms every ``token_expiry_every`` seconds, so renewals (and
Bling's refresh-token rotation) happen with work in flight.

The sales are created in CPlug and read into the store before the workers start (a CPlug pull that meets a fault
reads its window again; a window of thousands of sales under 20% faults would take hours). Some are cancelled
before that read, more are cancelled and some exchanged while the workers run; the workers' scheduled pulls bring
those in under faults. The chaos stops once the sales read before the workers started are in Bling and each
scheduled fault has happened at least once; the faults stop, the bench waits for convergence (nothing pending in
the store, every sale and cancellation in Bling) and audits Bling's records and the store. Each audit entry counts
violations; any violation makes the run unclean.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from hub.app import build_runtime
from hub.bench.sandboxes import Child, exit_on_sigterm, start_sandboxes
from hub.config import apply as applying
from hub.demo import default_scenario, open_scenario
from hub.errors import ConfigError, HubError
from hub.registry import get_registry
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import Connection, Operation, Quarantine
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import sync_route

FAULT_KINDS = ("500", "timeout", "timeout-after-write", "429")
"""The random faults played on both sandboxes; ``timeout-after-write`` serves the request and answers too late."""
CPLUG_SURE_FAULTS = ("500", "timeout", "429")
"""Queued on CPlug when the chaos starts, so its pulls meet each kind at least once whatever the random draw."""
WORKER_SETTINGS = {"HUB_WORKER_THREADS": "8", "HUB_OPERATION_LEASE_SECONDS": "10",
                   "HUB_RELAY_INTERVAL_SECONDS": "0.2", "HUB_SCHEDULER_INTERVAL_SECONDS": "0.5",
                   "HUB_MAX_ATTEMPTS": "60", "HUB_MAX_BACKOFF_SECONDS": "2"}
"""Short leases and backoffs, so a killed worker's operations and a lost message come back within seconds."""
SANDBOXES: dict[str, dict[str, Any]] = {
    "bling": {"rate_per_second": 100, "daily_limit": None, "nfe_delay_seconds": 0.1, "fault_delay": 1.5},
    "cplug": {"rate_per_second": 100, "fault_delay": 1.5}}
"""~100 requests/s each; an injected timeout (1.5 s) outlasts the clients' (``timeout_seconds: 1``)."""
TOKEN_FAULTS = ("token-timeout",)
"""Bling's fault of the token call after each expiry: the refresh token rotates and the answer comes late, while
the other workers need a token (a rotation in flight)."""
TOKEN_DROP = "token-drop"
"""The answer of a rotation lost mid-way (``--token-drops``). Bling accepts no spent refresh token again
(``refresh_reuse_seconds`` 0), so the hub can only pause the connection until someone re-authorizes: the audit
then reports it paused."""
ACTIVE = ("pending", "running")


# --- workers ------------------------------------------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``hub run`` that shares ``settings``' store, broker and key."""
    env = dict(os.environ, HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=str(settings.home),
               **WORKER_SETTINGS)
    for name, value in (("HUB_REDIS_URL", settings.redis_url), ("HUB_SECRET_KEY", settings.secret_key)):
        if value:
            env[name] = value
    return env


def spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    hub = os.path.join(os.path.dirname(sys.executable), "hub")
    with log.open("ab") as out:  # a file, not a pipe: a long run's log would fill a pipe and block the worker
        return subprocess.Popen([hub, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path, every: float = 0.25,
             stalled: Callable[[], str | None] | None = None) -> None:
    """Poll ``predicate`` until it holds; TimeoutError (with the workers' log) after ``timeout`` seconds, or as soon
    as ``stalled`` names a reason no progress can come (e.g. a connection paused until someone re-authorizes)."""
    deadline = time.monotonic() + timeout
    reason = None
    while time.monotonic() < deadline:
        if predicate():
            return
        reason = stalled() if stalled else None
        if reason:
            break
        time.sleep(every)
    tail = _log_tail(log) if log.exists() else ""
    why = f"stalled ({reason})" if reason else f"timed out after {timeout:.0f}s"
    raise TimeoutError(f"{why} waiting for {what}\n--- worker log (tail) ---\n{tail}")


def operation_counts(store: Store, tenant: str, **where: Any) -> dict[str, int]:
    """Operations per state, for ``tenant`` (and ``where``: column == value)."""
    with store.sessions() as s:
        query = select(Operation.state, func.count()).where(Operation.tenant_id == tenant).group_by(Operation.state)
        for key, value in where.items():
            query = query.where(getattr(Operation, key) == value)
        return {state: n for state, n in s.execute(query)}


def pull_until_ok(rt: Runtime, tenant: str, route: str, tries: int = 20) -> None:
    """A pull that meets a fault stops where it was (the cursor is kept); run it again until it gets through."""
    for _ in range(tries):
        if sync_route(rt, tenant, route).ok:
            return
    raise RuntimeError(f"{tenant}/{route}: the pull did not get through the faults in {tries} runs")


class Pool:
    """The ``hub run`` processes; the schedule thread kills and replaces them."""

    def __init__(self, env: dict[str, str], log: Path, size: int) -> None:
        self.env, self.log = env, log
        self.lock = threading.Lock()
        self.procs = [spawn_worker(env, log) for _ in range(size)]

    def kill_one(self, rng: random.Random) -> int:
        """SIGKILL a random worker and start another in its place; the killed one's pid."""
        with self.lock:
            victim = self.procs.pop(rng.randrange(len(self.procs)))
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            self.procs.append(spawn_worker(self.env, self.log))
            return victim.pid

    def stop(self) -> list[int | None]:
        """SIGTERM all (a graceful stop), their exit codes."""
        with self.lock:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes: list[int | None] = []
            for proc in self.procs:
                try:
                    codes.append(proc.wait(60))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes.append(proc.wait(10))
            return codes


# --- the store: a schema of its own -------------------------------------------------------------------------


def require_shared_backends(database_url: str | None, redis_url: str | None) -> None:
    """Three processes must share the store and the broker: PostgreSQL and Redis, nothing embedded."""
    if not database_url or not make_url(database_url).get_backend_name().startswith("postgresql"):
        raise ConfigError(
            f"hub bench chaos needs PostgreSQL (got {database_url or 'the embedded SQLite default'}): three "
            "`hub run` processes share the store, and pg_terminate_backend is one of the faults",
            fix="Set HUB_DATABASE_URL (or --database-url) to a PostgreSQL database, e.g. "
                "postgresql+psycopg://postgres@127.0.0.1/hub_bench.")
    if not redis_url:
        raise ConfigError(
            "hub bench chaos needs Redis: the in-process broker cannot be shared by three `hub run` processes",
            fix="Set HUB_REDIS_URL (or --redis-url), e.g. redis://127.0.0.1:6379/0; the bench FLUSHDBs that "
                "database once, so give it one nothing else uses.")


@contextmanager
def run_schema(database_url: str, prefix: str = "hub_chaos") -> Iterator[str]:
    """A fresh PostgreSQL schema for one run (dropped afterwards): the database's own tables are left alone. Yields
    the URL whose connections use it (``search_path``), for this process and the workers alike."""
    admin = create_engine(database_url, poolclass=NullPool)
    name = f"{prefix}_{os.getpid()}_{int(time.time())}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        url = make_url(database_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()


def terminate_store_connections(database_url: str) -> int:
    """``pg_terminate_backend`` on every other connection to the store's database (workers' and the bench's)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return int(conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar() or 0)
    finally:
        engine.dispose()


def flush_broker(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


# --- the audit ----------------------------------------------------------------------------------------------


@dataclass
class Audit:
    """Violations per kind, each with its evidence (what was found, per sale, customer or operation)."""

    found: dict[str, list[str]] = field(default_factory=dict)

    KINDS = ("duplicate_sales", "missing_sales", "unexpected_sales", "wrong_status", "double_postings",
             "missing_postings", "double_reversals", "missing_reversals", "duplicate_customers",
             "stuck_operations", "failed_operations", "quarantined", "paused_connections")

    def add(self, kind: str, evidence: str) -> None:
        self.found.setdefault(kind, []).append(evidence)

    @property
    def clean(self) -> bool:
        return not any(self.found.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(self.found.get(kind, [])) for kind in self.KINDS}

    def evidence(self, most: int = 10) -> dict[str, list[str]]:
        return {kind: items[:most] for kind, items in self.found.items() if items}


def cancelled_sales(cplug_sales: list[dict[str, Any]]) -> set[str]:
    """CPlug sale ids Bling must show cancelled: those cancelled at the POS and those an exchange replaced."""
    return ({str(s["id"]) for s in cplug_sales if s["status"] == "canceled"}
            | {str(s["exchange_of_sale_id"]) for s in cplug_sales if s.get("exchange_of_sale_id")})


def audit_bling(cplug_sales: list[dict[str, Any]], bling: Callable[[str], list[dict[str, Any]]],
                situacao: Callable[[str], int], audit: Audit | None = None) -> Audit:
    """Every CPlug sale in Bling exactly once in the right situação, with its stock and accounts posted once and,
    when cancelled, reversed once; no contact twice. ``bling(stream)`` reads the sandbox's records."""
    audit = audit or Audit()
    numbers = {str(s["number"]): str(s["id"]) for s in cplug_sales}
    cancelled = cancelled_sales(cplug_sales)
    orders = bling("sales")
    per_number = Counter(str(o["numeroLoja"]) for o in orders)
    for number, n in sorted(per_number.items()):
        if n > 1:
            audit.add("duplicate_sales", f"sale {number}: {n} orders in Bling")
        if number not in numbers:
            audit.add("unexpected_sales", f"Bling order numeroLoja {number} is no CPlug sale")
    for number in sorted(set(numbers) - set(per_number)):
        audit.add("missing_sales", f"sale {number} (CPlug id {numbers[number]}): no order in Bling")

    wanted_situacao = {True: situacao("Cancelado"), False: situacao("Atendido")}
    grids = {p["id"] for p in bling("products") if p.get("variacoes")}
    moves: dict[str, dict[str, Counter[tuple[Any, Decimal]]]] = {}
    for m in bling("stock_movements"):
        if m.get("pedido"):
            moves.setdefault(str(m["pedido"]["id"]), {}).setdefault(m["operacao"], Counter())[
                (m["produto"]["id"], Decimal(str(m["quantidade"])))] += 1
    booked: dict[str, Counter[str]] = {}
    for a in bling("accounts"):
        booked.setdefault(str(a["pedido"]["id"]), Counter())[a["operacao"]] += 1
    for order in orders:
        number = str(order["numeroLoja"])
        if number not in numbers:
            continue
        was_cancelled = numbers[number] in cancelled
        if order["situacao"]["id"] != wanted_situacao[was_cancelled]:
            audit.add("wrong_status", f"sale {number}: situação {order['situacao']['id']}, expected "
                      f"{'Cancelado' if was_cancelled else 'Atendido'} ({wanted_situacao[was_cancelled]})")
        oid = str(order["id"])
        items = Counter((i["produto"]["id"], Decimal(str(i["quantidade"]))) for i in order["itens"]
                        if (i.get("produto") or {}).get("id") and i["produto"]["id"] not in grids)
        mine = moves.get(oid, {})
        parcels = len(order.get("parcelas") or [])
        accounts = booked.get(oid, Counter())
        checks: list[tuple[str, Counter[Any], Counter[Any], str]] = [
                ("postings", mine.get("S", Counter()), items, "stock exits (S)"),
                ("reversals", mine.get("E", Counter()), items if was_cancelled else Counter(), "stock entries (E)"),
                ("postings", Counter(n=accounts["lancamento"]), Counter(n=parcels), "accounts lancamentos"),
                ("reversals", Counter(n=accounts["estorno"]), Counter(n=parcels if was_cancelled else 0),
                 "accounts estornos")]
        for kind, posted, expected, what in checks:
            if posted - expected:
                audit.add(f"double_{kind}", f"sale {number} (order {oid}): {what} {dict(posted)}, expected "
                          f"{dict(expected)}")
            elif expected - posted:
                audit.add(f"missing_{kind}", f"sale {number} (order {oid}): {what} {dict(posted)}, expected "
                          f"{dict(expected)}")

    documents = Counter(c.get("numeroDocumento") for c in bling("customers") if c.get("numeroDocumento"))
    for document, n in sorted(documents.items()):
        if n > 1:
            audit.add("duplicate_customers", f"document ...{str(document)[-4:]}: {n} contacts in Bling")
    return audit


def paused_for_auth(store: Store, tenant: str) -> str | None:
    """Why a connection of ``tenant`` waits for a re-authorization (nothing moves on it until then), or None."""
    with store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == tenant, Connection.pause_kind == "auth"))
        return f"connection {conn.name} paused: {conn.pause_reason}" if conn is not None else None


def audit_store(store: Store, tenant: str, audit: Audit | None = None) -> Audit:
    """Nothing left pending or running, nothing failed or quarantined, no connection paused."""
    audit = audit or Audit()
    now = utcnow()
    with store.sessions() as s:
        for op in s.scalars(select(Operation).where(Operation.tenant_id == tenant, Operation.state != "done",
                                                    Operation.state != "superseded").order_by(Operation.id)):
            kind = "stuck_operations" if op.state in ACTIVE else "failed_operations"
            audit.add(kind, f"operation {op.id} {op.kind} {op.entity} {op.canonical_id}: {op.state} after "
                      f"{op.attempts} attempts; {(op.last_error or '')[:200]}")
        for q in s.scalars(select(Quarantine).where(Quarantine.tenant_id == tenant, Quarantine.resolved_at.is_(None))):
            audit.add("quarantined", f"{q.entity} {q.record}: {q.field}: {q.reason[:200]}")
        for conn in s.scalars(select(Connection).where(Connection.tenant_id == tenant)):
            if conn.pause_kind or (conn.paused_until is not None and conn.paused_until > now):
                audit.add("paused_connections", f"connection {conn.name}: paused ({conn.pause_kind}) until "
                          f"{conn.paused_until}: {(conn.pause_reason or '')[:200]}")
    return audit


# --- the chaos schedule -------------------------------------------------------------------------------------


class Schedule(threading.Thread):
    """Kills, a broker flush, a store-connection purge and token expiries, on their clocks, until stopped."""

    def __init__(self, pool: Pool, children: dict[str, Child], settings: Settings, kill_every: float,
                 token_expiry_every: float, seed: int, token_drops: bool = False) -> None:
        super().__init__(name="hub-chaos", daemon=True)
        self.token_drops = token_drops
        self.pool, self.children, self.settings = pool, children, settings
        self.kill_every, self.token_expiry_every = kill_every, token_expiry_every
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.events: Counter[str] = Counter()
        self.last_event = time.monotonic()
        self.errors: list[str] = []
        self.terminated_connections = 0
        self.token_faults: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []
        """(seconds since the workers started, event): to read a violation's evidence against."""

    def done_once(self) -> bool:
        """Every kind of scheduled fault has happened at least once."""
        return all(self.events[k] for k in ("kill", "flushdb", "terminate_connections", "token_expiry"))

    def run(self) -> None:
        start = time.monotonic()
        due = {"kill": start + self.kill_every, "token_expiry": start + self.token_expiry_every,
               "flushdb": start + self.kill_every * 1.5, "terminate_connections": start + self.kill_every * 2.5}
        while not self.stopping.is_set():
            now = time.monotonic()
            for event, at in sorted(due.items(), key=lambda kv: kv[1]):
                if at > now:
                    continue
                try:
                    detail = self._play(event)
                    self.events[event] += 1
                    self.last_event = time.monotonic()
                    self.timeline.append((round(self.last_event - start, 1), f"{event} {detail}".strip()))
                except Exception as exc:  # a failed fault is reported, the run goes on
                    self.errors.append(f"{event}: {type(exc).__name__}: {exc}")
                if event == "kill":
                    due[event] = now + self.kill_every
                elif event == "token_expiry":
                    due[event] = now + self.token_expiry_every
                else:
                    due[event] = float("inf")
            self.stopping.wait(0.2)

    def _play(self, event: str) -> str:
        if event == "kill":
            return f"pid {self.pool.kill_one(self.rng)}"
        if event == "flushdb":
            flush_broker(str(self.settings.redis_url))
        elif event == "terminate_connections":
            n = terminate_store_connections(self.settings.resolved_database_url())
            self.terminated_connections += n
            return f"{n} backends"
        elif event == "token_expiry":
            # The renewal that follows rotates Bling's refresh token; its answer comes late (or never).
            kinds = (*TOKEN_FAULTS, TOKEN_DROP) if self.token_drops else TOKEN_FAULTS
            kind = kinds[self.events["token_expiry"] % len(kinds)]
            self.children["bling"].method("inject_fault", kind)
            self.token_faults[f"bling:{kind}"] += 1
            self.children["bling"].method("expire_access_tokens")
            self.children["cplug"].method("expire_tokens")
            return f"(next Bling token call: {kind})"
        return ""


# --- the run ------------------------------------------------------------------------------------------------


def seed_catalog(seed: Callable[[str, int], Any], products: int = 30) -> None:
    """Bling's catalog as the first catalog sync reads it: categories, products, stock, sellers, payment methods."""
    for stream, count in (("categories", 4), ("products", products), ("stock", products), ("sellers", 2),
                          ("payment_methods", 12)):
        seed(stream, count)


def _retrying(step: Callable[[], Any], tries: int = 5) -> Any:
    """The bench's own queries meet the terminated connections too: try again (pool_pre_ping replaces them)."""
    for attempt in range(tries):
        try:
            return step()
        except DBAPIError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def _log_tail(log: Path, lines: int = 30) -> str:
    """The workers' last lines, without Dramatiq's notice about discarded actor results (one per operation)."""
    kept = [line for line in log.read_text(errors="replace").splitlines() if "Results middleware" not in line]
    return "\n".join(kept[-lines:])


def _exchange_some(cplug: Child, sales: list[dict[str, Any]], skip: set[str], count: int) -> list[str]:
    """Exchange up to ``count`` closed sales (their first item for another product); the originals' ids."""
    skus = [p["sku"] for p in cplug.method("records", "products") if p.get("sku")]
    done: list[str] = []
    for sale in sales:
        if len(done) >= count:
            break
        if str(sale["id"]) in skip or sale["status"] != "closed" or not sale.get("customer_id"):
            continue
        first = sale["items"][0]
        other = next((sku for sku in skus if sku != first["sku"]), None)
        if other is None:
            break
        try:
            cplug.method("exchange", sale["id"], [{"sku": first["sku"], "amount": 1}], [{"sku": other}])
        except RuntimeError:
            continue  # the PDV refuses an exchange without a CPF and a full address
        done.append(str(sale["id"]))
    return done


def run_chaos(sales: int, database_url: str | None, redis_url: str | None, *, workers: int = 3,
              fault_rate: float = 0.2, kill_every: float = 20.0, token_expiry_every: float = 60.0, seed: int = 7,
              converge_timeout: float | None = None, token_drops: bool = False,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole run; returns the figures and the audit (``audit_clean`` says whether it passed)."""
    require_shared_backends(database_url, redis_url)
    assert database_url is not None and redis_url is not None
    say = say or (lambda _line: None)
    with run_schema(database_url) as url, tempfile.TemporaryDirectory(prefix="hub-bench-chaos-") as tmp:
        tuning: dict[str, Any] = {k.removeprefix("HUB_").lower(): v for k, v in WORKER_SETTINGS.items()}
        settings = Settings(home=Path(tmp), database_url=url, redis_url=redis_url,
                            secret_key=Fernet.generate_key().decode(), **tuning)
        rt = build_runtime(settings)
        children: dict[str, Child] = {}
        try:
            migrate.upgrade(rt.store)
            flush_broker(redis_url)
            scenario, routes_path, parsed, tenant = open_scenario(default_scenario(rt.registry))
            children = start_sandboxes(tenant, "HUB_ENV_BENCH_CHAOS", SANDBOXES)
            for conn in tenant.connections.values():
                conn.options["timeout_seconds"] = 1
            for route in tenant.routes.values():
                if "sales" in route.streams:
                    route.schedule = "2s"
            errors, _warnings = applying.check(parsed, get_registry(), str(routes_path))
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, rt.store, rt.vault, rt.registry)
            routes = (next(n for n, r in tenant.routes.items() if "products" in r.streams),
                      next(n for n, r in tenant.routes.items() if "sales" in r.streams))
            return _run(rt, settings, scenario.tenant, routes, children, sales, workers, fault_rate, kill_every,
                        token_expiry_every, seed, converge_timeout, token_drops, say, Path(tmp) / "workers.log")
        finally:
            for child in children.values():
                child.stop()
            rt.store.engine.dispose()


def _run(rt: Runtime, settings: Settings, tenant: str, routes: tuple[str, str], children: dict[str, Child],
         sales: int, workers: int, fault_rate: float, kill_every: float, token_expiry_every: float, seed: int,
         converge_timeout: float | None, token_drops: bool, say: Callable[[str], None], log: Path) -> dict[str, Any]:
    bling, cplug = children["bling"], children["cplug"]
    catalog, sales_route = routes
    started = time.monotonic()
    seed_catalog(lambda stream, n: bling.call("seed", stream, n))
    if not sync_route(rt, tenant, catalog).ok:
        raise RuntimeError(f"{tenant}/{catalog}: the catalog sync failed before any fault was injected")
    drain(rt, max_wait=60)
    cplug.call("seed", "sales", sales)
    created = cplug.method("records", "sales")
    say(f"{len(created)} sales created in CPlug; reading them under Bling's faults")
    bling.method("set_fault_rate", fault_rate, FAULT_KINDS, seed=seed)
    pull_until_ok(rt, tenant, sales_route)  # every sale recorded closed; pushes and postings wait in the outbox
    for sale in created[::17]:
        cplug.method("cancel_sale", sale["id"])
    pull_until_ok(rt, tenant, sales_route)  # the cancellations and their reversals, queued behind the pushes
    cplug.method("set_fault_rate", fault_rate, FAULT_KINDS, seed=seed + 4)
    if fault_rate:
        # CPlug serves only the scheduled pulls once the workers run (a few pages a minute): a random rate alone may
        # never draw every kind, so each kind is also queued for the next requests.
        for kind in CPLUG_SURE_FAULTS:
            cplug.method("inject_fault", kind)
    ingested = time.monotonic()

    pool = Pool(worker_env(settings), log, workers)
    workers_started = utcnow()
    schedule = Schedule(pool, children, settings, kill_every, token_expiry_every, seed, token_drops)
    schedule.start()
    say(f"{workers} workers started; chaos: a kill every {kill_every:g}s, tokens expire every {token_expiry_every:g}s")
    late: dict[str, list[str]] = {}
    faults_off = converged_at = None
    gave_up = None

    def in_bling() -> int:
        for child in children.values():
            child.call("stats")  # empties the sandbox's request log, which would grow all run long
        return int(bling.call("count", "sales"))

    def stalled() -> str | None:
        reason: str | None = _retrying(lambda: paused_for_auth(rt.store, tenant))
        return reason

    try:
        wait_for(lambda: in_bling() >= len(created) * 0.4, 3600, "40% of the sales in Bling", log, every=1,
                 stalled=stalled)
        # While the workers run: more cancellations, and exchanges; the scheduled pulls bring them under faults.
        current = cplug.method("records", "sales")
        skip = {str(s["id"]) for s in current if s["status"] != "closed"}
        late["cancelled"] = [str(s["id"]) for s in current if str(s["id"]) not in skip][3::29]
        for sale_id in late["cancelled"]:
            cplug.method("cancel_sale", sale_id)
        late["exchanged"] = _exchange_some(cplug, current[5::31], skip | set(late["cancelled"]),
                                           max(2, sales // 100))
        say(f"cancelled {len(late['cancelled'])} and exchanged {len(late['exchanged'])} more while the workers run")
        final = cplug.method("records", "sales")
        def cplug_played() -> bool:
            played = cplug.call("stats").get("faults_played") or {}
            return not fault_rate or all(played.get(kind) for kind in CPLUG_SURE_FAULTS)

        wait_for(lambda: in_bling() >= len(created) and schedule.done_once() and cplug_played(), 3600,
                 "the sales read before the workers started in Bling, each scheduled fault played once, and CPlug's "
                 "pulls met each kind of fault", log, every=1, stalled=stalled)
        schedule.stopping.set()
        schedule.join(30)
        for child in children.values():
            child.method("set_fault_rate", 0)
        faults_off = time.monotonic()
        say("chaos over; waiting for convergence")
        cancelado = bling.method("situacao_id", "Cancelado")

        def converged() -> bool:
            if set(_retrying(lambda: operation_counts(rt.store, tenant))) & set(ACTIVE):
                return False
            orders = bling.method("records", "sales")
            return (len(orders) >= len(final)
                    and sum(1 for o in orders if o["situacao"]["id"] == cancelado) >= len(cancelled_sales(final)))

        wait_for(converged, converge_timeout or max(1800.0, sales * 0.2), "convergence", log, every=1,
                 stalled=stalled)
        converged_at = time.monotonic()
    except TimeoutError as exc:  # the audit below says what is missing
        gave_up = str(exc).splitlines()[0]
        say(gave_up)
    finally:
        schedule.stopping.set()
        schedule.join(30)
        codes = pool.stop()
        for child in children.values():
            child.method("set_fault_rate", 0)
    finished = time.monotonic()

    final = cplug.method("records", "sales")
    audit = audit_bling(final, lambda stream: bling.method("records", stream),
                        lambda name: bling.method("situacao_id", name))
    audit_store(rt.store, tenant, audit)
    last_fault = max(schedule.last_event, faults_off or finished)
    requests = {name: child.call("stats") for name, child in children.items()}
    played = {f"{name}:{kind}": n for name, stats in requests.items()
              for kind, n in sorted((stats.get("faults_played") or {}).items())}
    ops = _retrying(lambda: operation_counts(rt.store, tenant))
    return {
        "sales": len(final),
        "workers": workers,
        "fault_rate": fault_rate,
        "wall_seconds": round(finished - started, 1),
        "ingest_seconds": round(ingested - started, 1),
        "converged": converged_at is not None,
        "gave_up": gave_up,
        "converge_seconds_after_last_fault": round(converged_at - last_fault, 1) if converged_at else None,
        "faults": {**played, **schedule.token_faults, "kill": schedule.events["kill"],
                   "flushdb": schedule.events["flushdb"],
                   "terminate_connections": schedule.events["terminate_connections"],
                   "token_expiry": schedule.events["token_expiry"]},
        "kills": schedule.events["kill"],
        "terminated_connections": schedule.terminated_connections,
        "fault_errors": schedule.errors,
        "timeline_starts_utc": workers_started.isoformat(timespec="seconds"),
        "timeline": schedule.timeline,
        "cancelled": len(cancelled_sales(final)),
        "exchanged": len(late.get("exchanged", [])),
        "operations": {"done": ops.get("done", 0), "superseded": ops.get("superseded", 0),
                       "failed": ops.get("failed", 0), "pending": sum(ops.get(s, 0) for s in ACTIVE)},
        "worker_exit_codes": codes,
        "requests": {name: {k: v for k, v in stats.items() if k != "faults_played"}
                     for name, stats in requests.items()},
        "audit": audit.counts(),
        "audit_clean": audit.clean,
        "evidence": audit.evidence(),
        "worker_log_tail": None if audit.clean else _log_tail(log),
    }


@click.command("chaos")
@click.option("--sales", default=1000, show_default=True, help="POS sales created in CPlug.")
@click.option("--workers", default=3, show_default=True, help="`hub run` processes.")
@click.option("--fault-rate", default=0.2, show_default=True, help="Share of API requests that fail, both sandboxes.")
@click.option("--kill-every", default=20.0, show_default=True, help="Seconds between SIGKILLs of a random worker.")
@click.option("--token-expiry-every", default=60.0, show_default=True,
              help="Seconds between expiries of every access token on both platforms.")
@click.option("--seed", default=7, show_default=True, help="Seeds the faults and the choice of victims.")
@click.option("--converge-timeout", type=float, default=None,
              help="Seconds to wait for convergence after the chaos (default: max(1800, SALES / 5); a route run "
                   "killed with its worker is started again only after its lease).")
@click.option("--database-url", envvar="HUB_DATABASE_URL", default=None,
              help="PostgreSQL URL (default HUB_DATABASE_URL); the run uses a schema of its own there.")
@click.option("--redis-url", envvar="HUB_REDIS_URL", default=None,
              help="Redis URL (default HUB_REDIS_URL); its database is flushed once during the run.")
@click.option("--token-drops", is_flag=True,
              help="Also drop the answer of every other token rotation (Bling then needs a re-authorization).")
@click.option("--json", "as_json", is_flag=True)
def bench_chaos(sales: int, workers: int, fault_rate: float, kill_every: float, token_expiry_every: float,
                seed: int, converge_timeout: float | None, database_url: str | None, redis_url: str | None,
                token_drops: bool, as_json: bool) -> None:
    """SALES POS sales through the CPlug -> Bling route under faults, kills, a broker flush, a store-connection
    purge and token expiries, then an audit; exits 1 when the audit finds a violation."""
    exit_on_sigterm()
    try:
        figures = run_chaos(sales, database_url, redis_url, workers=workers, fault_rate=fault_rate,
                            kill_every=kill_every, token_expiry_every=token_expiry_every, seed=seed,
                            converge_timeout=converge_timeout, token_drops=token_drops,
                            say=None if as_json else click.echo)
    except HubError as exc:  # hub.cli.common.friendly_errors, which hub.bench cannot import (hub.cli imports it)
        click.secho(f"error: {exc.message}", fg="red", err=True)
        click.echo(f"fix: {exc.fix}", err=True)
        raise SystemExit(1) from None
    click.echo(json.dumps(figures, indent=None if as_json else 2))
    if not figures["audit_clean"]:
        sys.exit(1)
