"""``hub bench changes``: how long a change on the source takes to reach the sink through a running ``hub run``.

A scenario's route file is applied with every connection pointed at a sandbox in its own process, the source's
catalog is seeded and fully synced, then a ``hub run`` (workers, scheduler, relay and the webhook receiver) is
started and the source sandbox delivers its webhooks to it, as the platform would. Two phases:

* **steady**: ``--changes`` changes, one every ``--interval`` seconds, each to one record of the measured stream
  (a stock movement, a price change: the source sandbox's ``touch``). A change's latency is the time from the change
  to the moment the sink accepted the write that carries it (the push operation's done time in the store); the
  calls per change are both sandboxes' requests in the phase divided by the changes.
* **burst**: ``--burst`` changes as fast as the sandbox takes them, spread over ``--burst-records`` records; the
  figures are the time until every write is done and how many writes reached the sink (coalescing makes it one
  per record, or close: a write already sent is not recalled).

Before the ``hub run`` starts, each route reading the source's catalog runs once more with nothing changed (the
records aged past the incremental overlap first, where the source sandbox can): its calls are the price of a run
with no change (``no_change_run_calls``), the backstop every webhook-driven route still pays on its schedule.

It runs at the platforms' own rate limits and with the limits off. Which platforms and streams is the scenario's
business: the default measures Zydon's help page pair (Bling stock -> Zydon) when the Zydon plugin is installed.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select

from hub.bench.sandboxes import Child, exit_on_sigterm, start_sandboxes
from hub.config import apply as applying
from hub.crypto import Vault
from hub.demo import open_scenario
from hub.errors import ConfigError
from hub.registry import get_registry
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import Operation, Record, Run, WebhookTarget
from hub.sync.drain import drain
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

TOUCHED = {"stock": "stock", "prices": "products", "products": "products"}
"""What the source sandbox's ``touch`` changes to move a record of the measured stream (a price is a product's)."""
SCENARIO_LIMITS = frozenset({"rate_per_second", "daily_limit"})
"""A demo raises its sandboxes' limits to stay short; the bench measures at the platforms' own."""
RUN_SETTINGS = {"HUB_RELAY_INTERVAL_SECONDS": "0.2", "HUB_WORKER_THREADS": "4"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1], 3)


def _requests(children: dict[str, Child]) -> dict[str, int]:
    return {name: int(child.call("stats").get("requests") or 0) for name, child in children.items()}


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`hub run` exited with {proc.returncode} before it listened")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"`hub run` did not listen on {port} within {timeout:g}s")


def _active(rt: Runtime, route_id: int) -> int:
    with rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(Operation).where(
            Operation.route_id == route_id, Operation.state.in_(("pending", "running")))) or 0


def _read_since(rt: Runtime, route_id: int, stream: str, moment: datetime) -> bool:
    """Whether a run of the route that started after ``moment`` has ended and no record a webhook named is still
    waiting for the route (a run that reads only the named records reads a change once its webhook is in)."""
    with rt.store.sessions() as s:
        if s.scalar(select(func.count()).select_from(WebhookTarget).where(WebhookTarget.route_id == route_id)):
            return False
        return s.scalar(select(func.count()).select_from(Run).where(
            Run.route_id == route_id, Run.started_at >= moment, Run.ended_at.is_not(None))) != 0


def _settle(rt: Runtime, route_id: int, stream: str, last_change: datetime, timeout: float,
            quiet: float = 2.0) -> bool:
    """Wait until a run of the route has read the stream after the last change and no write of the route has been
    pending or running for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    calm_since: float | None = None
    while time.monotonic() < deadline:
        if _active(rt, route_id) or not _read_since(rt, route_id, stream, last_change):
            calm_since = None
        else:
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= quiet:
                return True
        time.sleep(0.2)
    return False


def _canonical_ids(rt: Runtime, tenant: str, stream: str, sku: str) -> list[str]:
    with rt.store.sessions() as s:
        return list(s.scalars(select(Record.canonical_id).where(
            Record.tenant_id == tenant, Record.entity == stream,
            (Record.natural_key == sku) | Record.natural_key.like(f"{sku}@%"))))


def _latencies(rt: Runtime, tenant: str, route_id: int, stream: str,
               changes: list[tuple[str, datetime]]) -> tuple[list[float], int]:
    """Per change: the first write of its record done after it; the changes no write carried are counted."""
    latencies, missing = [], 0
    for sku, at in changes:
        ids = _canonical_ids(rt, tenant, stream, sku)
        with rt.store.sessions() as s:
            done = s.scalar(select(func.min(Operation.updated_at)).where(
                Operation.route_id == route_id, Operation.canonical_id.in_(ids), Operation.state == "done",
                Operation.kind.like("push_%"), Operation.created_at >= at)) if ids else None
        if done is None:
            missing += 1
        else:
            latencies.append((done - at).total_seconds())
    return latencies, missing


AGED = ("products", "customers", "sellers")
"""What the source sandbox's ``age`` moves past the incremental overlap before the no-change runs."""


def _no_change_runs(rt: Runtime, tenant: str, routes: list[str], children: dict[str, Child], source: str
                    ) -> dict[str, int]:
    """Both sandboxes' requests for one incremental run of each route when nothing changed since its last run."""
    for stream in AGED:
        try:
            children[source].method("age", stream, 3600)
        except RuntimeError:  # a sandbox without ``age``, or a stream it has no dates for: measured as it is
            pass
    calls: dict[str, int] = {}
    for name in routes:
        before = _requests(children)
        report = sync_route(rt, tenant, name)
        if not report.ok:
            raise RuntimeError(f"the no-change run of {name} failed: {report}")
        calls[name] = sum(_requests(children).values()) - sum(before.values())
    return calls


def run_phase(path: Path, route: str, stream: str, limits: bool, products: int, changes: int, interval: float,
              burst: int, burst_records: int, database_url: str | None = None) -> dict[str, Any]:
    registry = get_registry()
    scenario, routes_path, parsed, tenant = open_scenario(path)
    measured = tenant.routes.get(route)
    if measured is None or stream not in measured.streams:
        raise ConfigError(f"{routes_path}: no route {route!r} carrying {stream!r}",
                          fix=f"Name a route of {routes_path} and one of its streams (--route, --stream).")
    source = measured.source
    children: dict[str, Child] = {}
    worker: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="hub-bench-changes-") as tmp:
        settings = Settings(home=Path(tmp), database_url=database_url or f"sqlite:///{Path(tmp) / 'hub.db'}")
        store = Store.from_url(settings.resolved_database_url())
        log = Path(tmp) / "run.log"
        try:
            migrate.upgrade(store)
            rt = Runtime(store=store, vault=Vault(settings), registry=registry)
            # The scenario's sandbox settings (its accounts' depósitos, say), but each platform's own rate limits.
            kwargs = {name: {k: v for k, v in settings_.items() if k not in SCENARIO_LIMITS}
                      for name, settings_ in scenario.sandboxes.items()}
            children.update(start_sandboxes(tenant, f"HUB_ENV_BENCH_{scenario.tenant}", kwargs,
                                            lift_limits=not limits))
            errors, _warnings = applying.check(parsed, registry, str(routes_path))
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, store, rt.vault, registry)
            for seed in scenario.steps:
                if seed.seed is not None and seed.seed.connection == source:
                    count = products if seed.seed.stream in ("products", "stock", "prices") else seed.seed.count
                    children[source].call("seed", seed.seed.stream, count)
            # The first activation: every route reading the source's catalog, in the file's order.
            catalog_routes = [name for name, rc in tenant.routes.items()
                              if rc.source == source and "sales" not in rc.streams]
            for name in catalog_routes:
                report = sync_route(rt, scenario.tenant, name, full=True)
                if not report.ok:
                    raise RuntimeError(f"the first sync of {name} failed: {report}")
                drain(rt, threads=4, max_wait=120)
            no_change = _no_change_runs(rt, scenario.tenant, catalog_routes, children, source)
            with store.sessions() as s:
                route_id = find_route(s, scenario.tenant, route).id
                first_ops = s.scalar(select(func.max(Operation.id))) or 0
            port = _free_port()
            env = dict(os.environ, HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=tmp,
                       HUB_SECRET_KEY=settings.secret_key or "", **RUN_SETTINGS)
            if not env["HUB_SECRET_KEY"]:
                env.pop("HUB_SECRET_KEY")
            hub = os.path.join(os.path.dirname(sys.executable), "hub")
            with log.open("ab") as out:
                worker = subprocess.Popen([hub, "run", "--webhook-port", str(port)], env=env, stdout=out,
                                          stderr=subprocess.STDOUT)
            _wait_port(port, worker)
            children[source].method("subscribe", f"http://127.0.0.1:{port}/webhooks/{scenario.tenant}/{source}")
            # Simple products only: a grid's parent has no balance or price of its own to move.
            rows = [r for r in children[source].method("records", "products")
                    if (r.get("codigo") or r.get("sku")) and r.get("formato") != "V" and not r.get("variacoes")
                    and not r.get("variations")]
            skus = [(str(r["id"]), str(r.get("codigo") or r.get("sku"))) for r in rows]
            skus = [(pid, sku) for pid, sku in skus if _canonical_ids(rt, scenario.tenant, stream, sku)]
            if not skus:
                raise RuntimeError(f"the {source} sandbox has no product to change")
            figures: dict[str, Any] = {"rate_limits": "on" if limits else "off", "route": route, "stream": stream,
                                       "records": len(skus), "no_change_run_calls": no_change}

            before = _requests(children)
            steady: list[tuple[str, datetime]] = []
            started = time.monotonic()
            for i in range(changes):
                product_id, sku = skus[(i * 7) % len(skus)]
                steady.append((sku, utcnow()))
                children[source].method("touch", TOUCHED[stream], product_id)
                time.sleep(max(0.0, started + (i + 1) * interval - time.monotonic()))
            settled = _settle(rt, route_id, stream, steady[-1][1] if steady else utcnow(),
                              timeout=max(120.0, changes * 2.0))
            calls = {k: v - before[k] for k, v in _requests(children).items()}
            latencies, missing = _latencies(rt, scenario.tenant, route_id, stream, steady)
            figures["steady"] = {
                "changes": changes, "interval_s": interval, "settled": settled,
                "latency_p50_s": _percentile(latencies, 50), "latency_p95_s": _percentile(latencies, 95),
                "latency_max_s": round(max(latencies), 3) if latencies else None, "changes_not_carried": missing,
                "api_calls": calls, "api_calls_per_change": round(sum(calls.values()) / max(changes, 1), 2)}

            if burst:
                with store.sessions() as s:
                    mark = s.scalar(select(func.max(Operation.id))) or 0
                targets = skus[:max(1, min(burst_records, len(skus)))]
                before = _requests(children)
                started = time.monotonic()
                for i in range(burst):
                    children[source].method("touch", TOUCHED[stream], targets[i % len(targets)][0])
                issued, last_change = time.monotonic(), utcnow()
                settled = _settle(rt, route_id, stream, last_change, timeout=max(600.0, burst * 0.5))
                finished = time.monotonic()
                calls = {k: v - before[k] for k, v in _requests(children).items()}
                with store.sessions() as s:
                    states = {state: n for state, n in s.execute(
                        select(Operation.state, func.count()).where(
                            Operation.route_id == route_id, Operation.id > mark, Operation.kind.like("push_%"))
                        .group_by(Operation.state))}
                figures["burst"] = {
                    "changes": burst, "records": len(targets), "settled": settled,
                    "issue_seconds": round(issued - started, 1), "drain_seconds": round(finished - started, 1),
                    "writes_done": states.get("done", 0), "writes_superseded": states.get("superseded", 0),
                    "writes_failed": states.get("failed", 0), "api_calls": calls}
            with store.sessions() as s:
                figures["failed"] = s.scalar(select(func.count()).select_from(Operation).where(
                    Operation.id > first_ops, Operation.state == "failed")) or 0
            return figures
        finally:
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            for child in children.values():
                child.stop()
            store.engine.dispose()


def default_changes_scenario() -> Path:
    registry = get_registry()
    if "zydon" not in registry.platforms:
        raise ConfigError("hub bench changes measures Zydon's pair by default, and the Zydon plugin is not installed",
                          fix="Install hub-zydon, or give --scenario FILE --route R --stream S.")
    demo = registry.platform("zydon").demo
    if not demo:
        raise ConfigError("the Zydon plugin ships no demo scenario", fix="Give --scenario FILE.")
    return Path(demo)


@click.command("changes")
@click.option("--scenario", default=None, help="A demo scenario file (default: Zydon <-> Bling's).")
@click.option("--route", default="stock_prices", show_default=True)
@click.option("--stream", default="stock", show_default=True, type=click.Choice(sorted(TOUCHED)))
@click.option("--products", default=200, show_default=True, help="Products on the source.")
@click.option("--changes", default=60, show_default=True, help="Changes in the steady phase.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between steady changes.")
@click.option("--burst", default=10_000, show_default=True, help="Changes in the burst (0: skip it).")
@click.option("--burst-records", default=100, show_default=True, help="Records the burst's changes are spread over.")
@click.option("--limits", type=click.Choice(["both", "on", "off"]), default="both", show_default=True)
@click.option("--database-url", default=None, help="The store (default: SQLite in a temporary folder).")
@click.option("--json", "as_json", is_flag=True)
def bench_changes(scenario: str | None, route: str, stream: str, products: int, changes: int, interval: float,
                  burst: int, burst_records: int, limits: str, database_url: str | None, as_json: bool) -> None:
    """Change -> sink latency through a running `hub run` fed by the source's webhooks: a steady phase (p50/p95,
    calls per change) and a burst (drain time, writes per record), at the platforms' limits and without them."""
    exit_on_sigterm()
    path = Path(scenario) if scenario else default_changes_scenario()
    figures: dict[str, Any] = {"scenario": str(path)}
    phases = {"both": (True, False), "on": (True,), "off": (False,)}[limits]
    for on in phases:
        figures["rate_limits_on" if on else "rate_limits_off"] = run_phase(
            path, route, stream, on, products, changes, interval, burst if not on else min(burst, 1000),
            burst_records, database_url)
    click.echo(json.dumps(figures, indent=None if as_json else 2, default=str))
