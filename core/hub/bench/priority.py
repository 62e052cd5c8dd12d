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
accepted it (that operation done); ``sale_rung_to_sink_*`` adds the wait for the read: from the moment the sale was
rung at the POS. Catalog throughput is the catalog route's writes done per second during the phase, and the share
of the shared account's calls the catalog got. ``--priority both`` (the default) runs the phase with the priority on
and off (``HUB_BUDGET_PRIORITY=off``: first come, first served in the budgets and in the relay, as before), on the
same sizes.

``--neighbour-products N`` measures one tenant's first sync against another tenant's sales instead: a copy of the
scenario's tenant named ``<tenant>-neighbour`` is applied in the same store with sandboxes of its own (its own
accounts, so its own budget: Bling's 3 requests/s, or ``--neighbour-rate``), and only its catalog route enabled.
Step 2 then seeds the big catalog (N products) on the neighbour's source instead, and the neighbour's catalog route
makes its first sync in the same ``hub run`` while the first tenant's sales are rung and measured as above; the first
tenant's catalog stays as the warm-up left it (not due during the phase). The figures add the neighbour's catalog
writes done in the phase and per second, its account's calls, and the requests each tenant's shared-account sandbox
served (which account the calls really reached).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import delete, func, select, update

from hub.bench.changes import RUN_SETTINGS, _percentile
from hub.bench.e2e import copy_tenant, plan
from hub.bench.sandboxes import Child, exit_on_sigterm, start_sandboxes
from hub.config import apply as applying
from hub.crypto import Vault
from hub.demo import default_scenario, open_scenario
from hub.errors import ConfigError
from hub.registry import get_registry
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Binding, Connection, Cursor, Operation, Route, Run
from hub.sync.context import budget_priority
from hub.sync.drain import drain
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

SCENARIO_LIMITS = frozenset({"rate_per_second", "daily_limit"})
"""A demo raises its sandboxes' limits to stay short; the bench measures at the platforms' own."""

NEIGHBOUR = "{tenant}-neighbour"
"""The name of the tenant whose first sync runs beside the scenario's tenant's sales (``--neighbour-products``)."""


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
              finish: bool = False, neighbour_products: int = 0,
              neighbour_rate: float | None = None) -> dict[str, Any]:
    registry = get_registry()
    scenario, routes_path, parsed, tenant = open_scenario(path)
    legs = plan(scenario, tenant, warm, 0, categories=8)
    catalog, sales = legs
    if catalog.source != sales.sink:
        raise ConfigError(f"{routes_path}: the catalog route reads {catalog.source} but the sales go to "
                          f"{sales.sink}; the priority bench needs both on one account",
                          fix="Give a scenario whose catalog source is its sales sink (e.g. CPlug <-> Bling).")
    shared = catalog.source
    neighbour = NEIGHBOUR.format(tenant=scenario.tenant) if neighbour_products > 0 else None
    tenants = [scenario.tenant]
    if neighbour is not None:  # a copy of the tenant before its connections are pointed at the sandboxes
        neighbour_cfg = copy_tenant(parsed, scenario.tenant, neighbour, enabled=[catalog.route])
        tenants.append(neighbour)
    tenant.routes[sales.route].schedule = f"{read_every}s"
    children: dict[str, Child] = {}
    neighbours: dict[str, Child] = {}
    worker: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="hub-bench-priority-") as tmp:
        settings = Settings(home=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'hub.db'}")
        store = Store.from_url(settings.resolved_database_url())
        try:
            migrate.upgrade(store)
            rt = Runtime(store=store, vault=Vault(settings), registry=registry)
            base = {name: {k: v for k, v in values.items() if k not in SCENARIO_LIMITS}
                    for name, values in scenario.sandboxes.items()}
            kwargs = {name: dict(values) for name, values in base.items()}
            if rate is not None:
                kwargs.setdefault(shared, {})["rate_per_second"] = rate
            children.update(start_sandboxes(tenant, f"HUB_ENV_BENCH_{scenario.tenant}", kwargs))
            if neighbour is not None:  # its own sandboxes: its own accounts, credentials and budgets
                if neighbour_rate is not None:
                    base.setdefault(shared, {})["rate_per_second"] = neighbour_rate
                neighbours.update(start_sandboxes(neighbour_cfg, f"HUB_ENV_BENCH_{neighbour}", base))
            errors, _warnings = applying.check(parsed, registry, str(routes_path))
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, store, rt.vault, registry, tenants=tenants)
            for leg in legs:  # 1. the small catalog, synced here, and a first read of the sales
                for seed in leg.seeds:
                    if seed.stream != "sales":
                        children[seed.connection].call("seed", seed.stream, seed.count)
                if not sync_route(rt, scenario.tenant, leg.route, full=True).ok:
                    raise RuntimeError(f"the first sync of {leg.route} failed")
                drain(rt, threads=4, max_wait=120)
            # 2. the big catalog on the source (the neighbour's, with one); that catalog route's next run is a
            # first sync
            if neighbour is not None:
                for seed in plan(scenario, neighbour_cfg, neighbour_products, 0, categories=8)[0].seeds:
                    neighbours[seed.connection].call("seed", seed.stream, seed.count)
            else:
                for seed in catalog.seeds:
                    if seed.stream in ("products", "stock"):
                        children[seed.connection].call("seed", seed.stream, products)
            with store.begin() as s:
                catalog_route = find_route(s, scenario.tenant, catalog.route)
                sales_route = find_route(s, scenario.tenant, sales.route)
                catalog_id, sales_id = catalog_route.id, sales_route.id
                sales_streams = tuple((sales_route.config or {}).get("streams") or ())
                due = [sales_id]
                if neighbour is None:
                    s.execute(delete(Cursor).where(Cursor.route_id == catalog_id))
                    due.append(catalog_id)
                else:  # the first tenant's catalog is not due in the phase: the only catalog is the neighbour's
                    later = utcnow() + timedelta(seconds=catalog_route.schedule_seconds or 86400)
                    s.execute(update(Route).where(Route.id == catalog_id).values(next_run_at=later))
                    neighbour_catalog_id = find_route(s, neighbour, catalog.route).id
                    due.append(neighbour_catalog_id)
                s.execute(update(Route).where(Route.id.in_(due)).values(next_run_at=utcnow()))
                accounts = {tid: cid for tid, cid in s.execute(select(Connection.tenant_id, Connection.id).where(
                    Connection.tenant_id.in_(tenants), Connection.name == shared))}
                pos_id = s.scalar(select(Connection.id).where(Connection.tenant_id == scenario.tenant,
                                                              Connection.name == sales.source)) or 0
                mark = s.scalar(select(func.max(Operation.id))) or 0
            sandboxes = {scenario.tenant: children[shared]}
            if neighbour is not None:
                sandboxes[neighbour] = neighbours[shared]
            served_before = {t: _served(child) for t, child in sandboxes.items()}
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
            rung, rung_at = 0, dict[str, datetime]()  # each sale's id at the POS -> when it was rung
            while time.monotonic() - started < duration:
                for sale_id in children[sales.source].method("seed", "sales", 1):
                    rung_at[str(sale_id)] = utcnow()
                rung += 1
                time.sleep(max(0.0, started + rung * interval - time.monotonic()))
                if worker.poll() is not None:
                    raise RuntimeError(f"`hub run` exited with {worker.returncode}; see {tmp}/run.log")
            ended_at = utcnow()
            served = {f"{t}/{shared}": _served(child) - served_before[t] for t, child in sandboxes.items()}

            def pushed() -> int:
                with store.sessions() as s:
                    return s.scalar(select(func.count()).select_from(Operation).where(
                        Operation.route_id == sales_id, Operation.kind == "push_sale", Operation.id > mark,
                        Operation.state.in_(("done", "failed")))) or 0

            settled = _wait_for(lambda: pushed() >= rung, settle_timeout)
            window = (mark, started_at, ended_at)
            figures = _figures(rt, priority, rung, settled, window, catalog_id, sales_id, accounts[scenario.tenant],
                               0 if neighbour else products, interval, children[sales.sink].call("count", "sales"),
                               pos_id, rung_at, sales_streams)
            if neighbour is not None:
                seconds = figures["seconds"]
                done, queued, by_class = _route_figures(rt, neighbour_catalog_id, accounts[neighbour], window)
                calls = sum(by_class.values())
                figures.update({
                    "neighbour": {"tenant": neighbour, "products": neighbour_products,
                                  "rate_per_second": neighbour_rate if neighbour_rate is not None else
                                  neighbours[shared].connection["options"].get("rate_per_second"),
                                  "account": f"{neighbour}/{shared}"},
                    "neighbour_catalog_writes_queued": queued,
                    "neighbour_catalog_writes_done_in_phase": done,
                    "neighbour_catalog_writes_per_s": round(done / seconds, 2),
                    "neighbour_account_calls": by_class,
                    "neighbour_account_calls_per_s": round(calls / seconds, 2),
                    "account_requests_served": served,
                })
            if finish:  # wait for the first sync to end and its writes to be done (the CI test's counts)
                first_sync, prefix = (catalog_id, "") if neighbour is None else (neighbour_catalog_id, "neighbour_")

                def synced() -> bool:
                    with store.sessions() as s:
                        ran = s.scalar(select(func.count()).select_from(Run).where(
                            Run.route_id == first_sync, Run.started_at >= started_at, Run.ended_at.is_not(None)))
                        busy = s.scalar(select(func.count()).select_from(Operation).where(
                            Operation.route_id == first_sync, Operation.state.in_(("pending", "running"))))
                    return bool(ran) and not busy

                figures[f"{prefix}catalog_finished"] = _wait_for(synced, settle_timeout)
                with store.sessions() as s:
                    figures[f"{prefix}catalog_writes_done_total"] = s.scalar(
                        select(func.count()).select_from(Operation).where(
                            Operation.route_id == first_sync, Operation.id > mark, Operation.state == "done")) or 0
                figures["failed"] = _failed(rt, mark)
            return figures
        finally:
            _stop(worker)
            for child in (*children.values(), *neighbours.values()):
                child.stop()
            store.engine.dispose()


def _served(child: Child) -> int:
    """The API requests and token calls a sandbox has served."""
    stats = child.call("stats")
    return int(stats["requests"]) + int(stats.get("token_calls") or 0)


def _failed(rt: Runtime, mark: int) -> int:
    with rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(Operation).where(
            Operation.id > mark, Operation.state == "failed")) or 0


def _route_figures(rt: Runtime, route_id: int, account_id: int, window: tuple[int, datetime, datetime],
                   sales_streams: Sequence[str] = ()) -> tuple[int, int, dict[str, int]]:
    """A route's writes done in the phase and queued since ``mark``, and its account's calls in the phase by
    budget class (``sales_streams``: those of the sales route on the account, whose every call is urgent)."""
    mark, started_at, ended_at = window
    with rt.store.sessions() as s:
        done = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.route_id == route_id, Operation.id > mark, Operation.state == "done",
            Operation.updated_at >= started_at, Operation.updated_at <= ended_at)) or 0
        queued = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.route_id == route_id, Operation.id > mark)) or 0
        calls = s.execute(select(ApiCall.model, func.count()).where(
            ApiCall.connection_id == account_id, ApiCall.at >= started_at, ApiCall.at <= ended_at)
            .group_by(ApiCall.model))
        by_class = {"urgent": 0, "bulk": 0}
        for model, n in calls:
            by_class[budget_priority(model, sales_streams if model in sales_streams else ())] += int(n)
    return done, queued, by_class


def _figures(rt: Runtime, priority: bool, rung: int, settled: bool, window: tuple[int, datetime, datetime],
             catalog_id: int, sales_id: int, shared_id: int, products: int, interval: float,
             in_sink: int, pos_id: int, rung_at: dict[str, datetime],
             sales_streams: Sequence[str] = ()) -> dict[str, Any]:
    mark, started_at, ended_at = window
    seconds = max((ended_at - started_at).total_seconds(), 1e-6)
    with rt.store.sessions() as s:
        rows = list(s.execute(select(Operation.created_at, Operation.updated_at, Binding.external_id)
                              .outerjoin(Binding, (Binding.connection_id == pos_id)
                                         & (Binding.entity == Operation.entity)
                                         & (Binding.canonical_id == Operation.canonical_id))
                              .where(Operation.route_id == sales_id, Operation.kind == "push_sale",
                                     Operation.state == "done", Operation.id > mark)))
        latencies = [(done - read).total_seconds() for read, done, _sale in rows]
        from_ring = [(done - rung_at[sale]).total_seconds() for _read, done, sale in rows if sale in rung_at]
    catalog_done, catalog_queued, by_class = _route_figures(rt, catalog_id, shared_id, window, sales_streams)
    shared_calls = sum(by_class.values())
    return {
        "priority": "on" if priority else "off",
        "seconds": round(seconds, 1),
        "sales_rung": rung, "sale_interval_s": interval, "sales_pushed": len(latencies), "sales_in_sink": in_sink,
        "settled": settled,
        "sale_latency_p50_s": _percentile(latencies, 50), "sale_latency_p95_s": _percentile(latencies, 95),
        "sale_latency_max_s": round(max(latencies), 3) if latencies else None,
        "sale_rung_to_sink_p50_s": _percentile(from_ring, 50), "sale_rung_to_sink_p95_s": _percentile(from_ring, 95),
        "sale_rung_to_sink_max_s": round(max(from_ring), 3) if from_ring else None,
        "catalog_products": products, "catalog_writes_queued": catalog_queued,
        "catalog_writes_done_in_phase": catalog_done,
        "catalog_writes_per_s": round(catalog_done / seconds, 2),
        "shared_account_calls": by_class,
        "shared_account_calls_per_s": round(shared_calls / seconds, 2),
        "catalog_share_of_shared_calls": round(by_class["bulk"] / shared_calls, 3) if shared_calls else None,
        "failed": _failed(rt, mark),
    }


def default_priority_scenario() -> Path:
    """CPlug <-> Bling's demo when the CPlug plugin is installed (the issue's case), else the first demo."""
    registry = get_registry()
    if "cplug" in registry.platforms and registry.platform("cplug").demo:
        return Path(str(registry.platform("cplug").demo))
    return default_scenario(registry)


def run(products: int, warm: int, duration: float, interval: float, read_every: int, modes: tuple[bool, ...],
        scenario: str | None = None, rate: float | None = None, finish: bool = False, neighbour_products: int = 0,
        neighbour_rate: float | None = None) -> dict[str, Any]:
    path = Path(scenario) if scenario else default_priority_scenario()
    figures: dict[str, Any] = {"scenario": str(path)}
    for on in modes:
        figures["priority_on" if on else "priority_off"] = run_phase(
            path, on, products, warm, duration, interval, read_every, rate, finish=finish,
            neighbour_products=neighbour_products, neighbour_rate=neighbour_rate)
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
@click.option("--neighbour-products", type=click.IntRange(min=0), default=0, show_default=True,
              help="Instead of the big catalog on the same account: another tenant (<tenant>-neighbour, its own "
                   "accounts and sandboxes) makes the first sync of this many products in the same `hub run` "
                   "(0: off). --products is then unused.")
@click.option("--neighbour-rate", type=float, default=None,
              help="Requests/s of the neighbour's shared-account sandbox (default: the platform's own, Bling's 3; "
                   "e.g. 1000 to make its sync CPU-bound in the shared worker).")
@click.option("--json", "as_json", is_flag=True)
def bench_priority(products: int, warm: int, duration: float, interval: float, read_every: int, rate: float | None,
                   mode: str, scenario: str | None, finish: bool, neighbour_products: int,
                   neighbour_rate: float | None, as_json: bool) -> None:
    """POS sales during a big first catalog sync on the same account (a `hub run`, real rate limits): sale
    read -> in the sink p50/p95 and catalog throughput, with the priority on and off. With --neighbour-products,
    the first sync is another tenant's, on its own accounts, in the same `hub run`."""
    exit_on_sigterm()
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[mode]
    figures = run(products, warm, duration, interval, read_every, modes, scenario, rate, finish, neighbour_products,
                  neighbour_rate)
    click.echo(json.dumps(figures, indent=None if as_json else 2, default=str))
