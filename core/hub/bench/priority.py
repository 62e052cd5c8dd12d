"""``hub bench priority``: POS sales while a big first catalog sync runs on the same account, with and without
priority.

The demo scenario's route file (by default CPlug <-> Bling) is applied with every connection pointed at a sandbox in
its own process, at the platforms' own rate limits (Bling: 3 requests/s per account). The catalog route's source
must be the sales route's sink: the catalog's reads and the sales' writes then share one account's budget, and the
catalog's writes share the workers with the sales. Each phase:

1. a small catalog (``--warm`` products) is synced in this process, so the POS has products to sell;
2. the source gets the big catalog (``--products``), the catalog route forgets its cursors (its next run is a first
   sync) and a ``hub run`` is started;
3. for ``--duration`` seconds a sale is rung on the POS every ``--interval`` seconds; the sales route is read every
   ``--read-every`` seconds by the scheduler.

A sale's latency is from the moment the hub read it (its ``push_sale`` operation recorded) to the moment the sink
accepted it (that operation done). Catalog throughput is the catalog route's writes done per second during the
phase, and the share of the shared account's calls the catalog got. ``--priority both`` (the default) runs the
phase with the priority on and off (``HUB_BUDGET_PRIORITY=off``: first come, first served in the budgets and in the
relay, as before), on the same sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import delete, func, select, update

from hub.bench.changes import RUN_SETTINGS, _percentile
from hub.bench.e2e import plan
from hub.bench.sandboxes import Child, exit_on_sigterm, start_sandboxes
from hub.config import apply as applying
from hub.crypto import Vault
from hub.demo import default_scenario, open_scenario
from hub.errors import ConfigError
from hub.registry import get_registry
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Connection, Cursor, Operation, Route, Run
from hub.sync.context import budget_priority
from hub.sync.drain import drain
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

SCENARIO_LIMITS = frozenset({"rate_per_second", "daily_limit"})
"""A demo raises its sandboxes' limits to stay short; the bench measures at the platforms' own."""


def _wait_for(check: Any, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False


def _stop(worker: subprocess.Popen[bytes] | None) -> None:
    if worker is None:
        return
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()


def run_phase(path: Path, priority: bool, products: int, warm: int, duration: float, interval: float,
              read_every: int, rate: float | None = None, settle_timeout: float = 300.0,
              finish: bool = False) -> dict[str, Any]:
    registry = get_registry()
    scenario, routes_path, parsed, tenant = open_scenario(path)
    legs = plan(scenario, tenant, warm, 0, categories=8)
    catalog, sales = legs
    if catalog.source != sales.sink:
        raise ConfigError(f"{routes_path}: the catalog route reads {catalog.source} but the sales go to "
                          f"{sales.sink}; the priority bench needs both on one account",
                          fix="Give a scenario whose catalog source is its sales sink (e.g. CPlug <-> Bling).")
    shared = catalog.source
    tenant.routes[sales.route].schedule = f"{read_every}s"
    children: dict[str, Child] = {}
    worker: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="hub-bench-priority-") as tmp:
        settings = Settings(home=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'hub.db'}")
        store = Store.from_url(settings.resolved_database_url())
        try:
            migrate.upgrade(store)
            rt = Runtime(store=store, vault=Vault(settings), registry=registry)
            kwargs = {name: {k: v for k, v in values.items() if k not in SCENARIO_LIMITS}
                      for name, values in scenario.sandboxes.items()}
            if rate is not None:
                kwargs.setdefault(shared, {})["rate_per_second"] = rate
            children.update(start_sandboxes(tenant, f"HUB_ENV_BENCH_{scenario.tenant}", kwargs))
            errors, _warnings = applying.check(parsed, registry, str(routes_path))
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, store, rt.vault, registry)
            for leg in legs:  # 1. the small catalog, synced here, and a first read of the sales
                for seed in leg.seeds:
                    if seed.stream != "sales":
                        children[seed.connection].call("seed", seed.stream, seed.count)
                if not sync_route(rt, scenario.tenant, leg.route, full=True).ok:
                    raise RuntimeError(f"the first sync of {leg.route} failed")
                drain(rt, threads=4, max_wait=120)
            # 2. the big catalog on the source; the catalog route's next run is a first sync
            for seed in catalog.seeds:
                if seed.stream in ("products", "stock"):
                    children[seed.connection].call("seed", seed.stream, products)
            with store.begin() as s:
                catalog_route = find_route(s, scenario.tenant, catalog.route)
                sales_route = find_route(s, scenario.tenant, sales.route)
                catalog_id, sales_id = catalog_route.id, sales_route.id
                s.execute(delete(Cursor).where(Cursor.route_id == catalog_id))
                s.execute(update(Route).where(Route.id.in_((catalog_id, sales_id))).values(next_run_at=utcnow()))
                shared_id = s.scalar(select(Connection.id).where(Connection.tenant_id == scenario.tenant,
                                                                 Connection.name == shared)) or 0
                mark = s.scalar(select(func.max(Operation.id))) or 0
            env = dict(os.environ, HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=tmp,
                       HUB_BUDGET_PRIORITY="on" if priority else "off",
                       HUB_SCHEDULER_INTERVAL_SECONDS=str(min(5.0, max(0.5, read_every / 2))), **RUN_SETTINGS)
            env.pop("HUB_REDIS_URL", None)
            if settings.secret_key:
                env["HUB_SECRET_KEY"] = settings.secret_key
            hub = os.path.join(os.path.dirname(sys.executable), "hub")
            with (Path(tmp) / "run.log").open("ab") as out:
                worker = subprocess.Popen([hub, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
            started_at, started = utcnow(), time.monotonic()
            # 3. sales at the POS, one every INTERVAL seconds
            rung = 0
            while time.monotonic() - started < duration:
                children[sales.source].call("seed", "sales", 1)
                rung += 1
                time.sleep(max(0.0, started + rung * interval - time.monotonic()))
                if worker.poll() is not None:
                    raise RuntimeError(f"`hub run` exited with {worker.returncode}; see {tmp}/run.log")
            ended_at = utcnow()

            def pushed() -> int:
                with store.sessions() as s:
                    return s.scalar(select(func.count()).select_from(Operation).where(
                        Operation.route_id == sales_id, Operation.kind == "push_sale", Operation.id > mark,
                        Operation.state.in_(("done", "failed")))) or 0

            settled = _wait_for(lambda: pushed() >= rung, settle_timeout)
            figures = _figures(rt, priority, rung, settled, mark, catalog_id, sales_id, shared_id, started_at,
                               ended_at, products, interval, children[sales.sink].call("count", "sales"))
            if finish:  # wait for the first sync to end and its writes to be done (the CI test's counts)

                def synced() -> bool:
                    with store.sessions() as s:
                        ran = s.scalar(select(func.count()).select_from(Run).where(
                            Run.route_id == catalog_id, Run.started_at >= started_at, Run.ended_at.is_not(None)))
                        busy = s.scalar(select(func.count()).select_from(Operation).where(
                            Operation.route_id == catalog_id, Operation.state.in_(("pending", "running"))))
                    return bool(ran) and not busy

                figures["catalog_finished"] = _wait_for(synced, settle_timeout)
                with store.sessions() as s:
                    figures["catalog_writes_done_total"] = s.scalar(select(func.count()).select_from(Operation).where(
                        Operation.route_id == catalog_id, Operation.id > mark, Operation.state == "done")) or 0
                    figures["failed"] = s.scalar(select(func.count()).select_from(Operation).where(
                        Operation.id > mark, Operation.state == "failed")) or 0
            return figures
        finally:
            _stop(worker)
            for child in children.values():
                child.stop()
            store.engine.dispose()


def _figures(rt: Runtime, priority: bool, rung: int, settled: bool, mark: int, catalog_id: int, sales_id: int,
             shared_id: int, started_at: datetime, ended_at: datetime, products: int, interval: float,
             in_sink: int) -> dict[str, Any]:
    seconds = max((ended_at - started_at).total_seconds(), 1e-6)
    with rt.store.sessions() as s:
        rows = s.execute(select(Operation.created_at, Operation.updated_at).where(
            Operation.route_id == sales_id, Operation.kind == "push_sale", Operation.state == "done",
            Operation.id > mark))
        latencies = [(done - read).total_seconds() for read, done in rows]
        catalog_done = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.route_id == catalog_id, Operation.id > mark, Operation.state == "done",
            Operation.updated_at >= started_at, Operation.updated_at <= ended_at)) or 0
        catalog_queued = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.route_id == catalog_id, Operation.id > mark)) or 0
        calls = s.execute(select(ApiCall.model, func.count()).where(
            ApiCall.connection_id == shared_id, ApiCall.at >= started_at, ApiCall.at <= ended_at)
            .group_by(ApiCall.model))
        by_class = {"urgent": 0, "bulk": 0}
        for model, n in calls:
            by_class[budget_priority(model)] += int(n)
        failed = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.id > mark, Operation.state == "failed")) or 0
    shared_calls = sum(by_class.values())
    return {
        "priority": "on" if priority else "off",
        "seconds": round(seconds, 1),
        "sales_rung": rung, "sale_interval_s": interval, "sales_pushed": len(latencies), "sales_in_sink": in_sink,
        "settled": settled,
        "sale_latency_p50_s": _percentile(latencies, 50), "sale_latency_p95_s": _percentile(latencies, 95),
        "sale_latency_max_s": round(max(latencies), 3) if latencies else None,
        "catalog_products": products, "catalog_writes_queued": catalog_queued,
        "catalog_writes_done_in_phase": catalog_done,
        "catalog_writes_per_s": round(catalog_done / seconds, 2),
        "shared_account_calls": by_class,
        "shared_account_calls_per_s": round(shared_calls / seconds, 2),
        "catalog_share_of_shared_calls": round(by_class["bulk"] / shared_calls, 3) if shared_calls else None,
        "failed": failed,
    }


def default_priority_scenario() -> Path:
    """CPlug <-> Bling's demo when the CPlug plugin is installed (the issue's case), else the first demo."""
    registry = get_registry()
    if "cplug" in registry.platforms and registry.platform("cplug").demo:
        return Path(str(registry.platform("cplug").demo))
    return default_scenario(registry)


def run(products: int, warm: int, duration: float, interval: float, read_every: int, modes: tuple[bool, ...],
        scenario: str | None = None, rate: float | None = None, finish: bool = False) -> dict[str, Any]:
    path = Path(scenario) if scenario else default_priority_scenario()
    figures: dict[str, Any] = {"scenario": str(path)}
    for on in modes:
        figures["priority_on" if on else "priority_off"] = run_phase(path, on, products, warm, duration, interval,
                                                                     read_every, rate, finish=finish)
    return figures


@click.command("priority")
@click.option("--products", default=2_000, show_default=True, help="The big catalog of the first sync.")
@click.option("--warm", default=20, show_default=True, help="The small catalog synced before (what the POS sells).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds of sales at the POS per phase.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between two sales.")
@click.option("--read-every", default=2, show_default=True, help="Seconds between two reads of the sales route.")
@click.option("--rate", type=float, default=None,
              help="Requests/s of the shared account's sandbox (default: the platform's own, Bling's 3).")
@click.option("--priority", "mode", type=click.Choice(["both", "on", "off"]), default="both", show_default=True,
              help="off: first come, first served (HUB_BUDGET_PRIORITY=off), as before priorities.")
@click.option("--scenario", default=None, help="A demo scenario file (default: CPlug <-> Bling's).")
@click.option("--finish", is_flag=True, help="Then wait for the first sync to end and its writes to be done.")
@click.option("--json", "as_json", is_flag=True)
def bench_priority(products: int, warm: int, duration: float, interval: float, read_every: int, rate: float | None,
                   mode: str, scenario: str | None, finish: bool, as_json: bool) -> None:
    """POS sales during a big first catalog sync on the same account (a `hub run`, real rate limits): sale
    read -> in the sink p50/p95 and catalog throughput, with the priority on and off."""
    exit_on_sigterm()
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[mode]
    figures = run(products, warm, duration, interval, read_every, modes, scenario, rate, finish)
    click.echo(json.dumps(figures, indent=None if as_json else 2, default=str))
