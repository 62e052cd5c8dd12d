"""``hub bench e2e``: a demo scenario's routes end to end, each platform played by its sandbox in its own process.

The route file a demo scenario names (by default the one the installed platforms ship) is applied with every
connection pointed at a sandbox served in a child process, so the figures (wall time, peak RSS, CPU) are the hub's
alone. Two routes are measured, found by what they carry: the *catalog* route (the one whose streams include
``products``) and the *sales* route (``sales``). For each, in the scenario's order, the sandbox of the route's source
is seeded as the scenario seeds it before that route's first sync (products and what is seeded per product scaled to
``--products``, sales to ``--sales``), then the route is synced and its operations drained in this process
(:func:`hub.sync.pull.sync_route` + :func:`hub.sync.drain.drain`).

It runs twice: with each sandbox at its platform's own rate limit (the factory's defaults), on a smaller catalog,
and with the limits off (``rate_per_second=None``, ``daily_limit=None``: whichever the factory takes). Requests and
429s are counted by the sandboxes and fetched through each child's pipe; a sale's latency is how long its
``push_sale`` operation took from being recorded in the store to being done on the sink.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select

from hub.bench.sandboxes import Child, start_sandboxes
from hub.config import apply as applying
from hub.config import routes as config
from hub.crypto import Vault
from hub.demo import Scenario, Seed, default_scenario, open_scenario
from hub.errors import ConfigError
from hub.registry import get_registry
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store
from hub.store.schema import Operation, Quarantine
from hub.sync.drain import drain
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

# --- what to seed and sync ----------------------------------------------------------------------------------


@dataclass
class Leg:
    """One route to measure: its source's seeds, and the stream whose records reach the sink."""

    route: str
    source: str
    sink: str
    stream: str
    seeds: list[Seed] = field(default_factory=list)


def plan(scenario: Scenario, tenant: config.TenantConfig, products: int, sales: int,
         categories: int) -> list[Leg]:
    """The catalog leg (streams with ``products``) then the sales leg (``sales``), each with the seeds the
    scenario makes on the route's source before the route's first sync, scaled."""
    legs = []
    for stream in ("products", "sales"):
        name = next((n for n, r in tenant.routes.items() if stream in r.streams), None)
        if name is None:
            raise ConfigError(f"{scenario.routes}: no route carries {stream}; the e2e bench needs a catalog route "
                              "(products) and a sales route (sales)")
        route = tenant.routes[name]
        legs.append(Leg(name, route.source, route.sink, stream))
    pending: list[Seed] = []
    seen: set[str] = set()
    base = {s.seed.stream: s.seed.count for s in scenario.steps if s.seed is not None}
    for step in scenario.steps:
        if step.seed is not None:
            pending.append(step.seed)
        if step.sync is not None and step.sync not in seen:
            seen.add(step.sync)
            for leg in legs:
                if leg.route == step.sync and not leg.seeds:
                    leg.seeds = [_scaled(s, base, products, sales, categories) for s in pending
                                 if s.connection == leg.source]
            pending = []
    for leg in legs:
        if not leg.seeds:  # the scenario seeds nothing for it: the route's own stream
            leg.seeds = [Seed(connection=leg.source, stream=leg.stream,
                              count=products if leg.stream == "products" else sales)]
    return legs


def copy_tenant(parsed: config.RoutesFile, tenant: str, name: str,
                enabled: Collection[str] | None = None) -> config.TenantConfig:
    """Add to ``parsed`` a deep copy of ``tenant`` as tenant ``name`` (``enabled``: only those routes left enabled)
    and return it. Its connections are its own: give them their own sandboxes with
    ``start_sandboxes(copy, f"HUB_ENV_BENCH_{name}")``, then apply both tenants."""
    if name in parsed.tenants:
        raise ConfigError(f"{parsed.source}: tenant {name!r} is already in the file",
                          fix="Name the copy after no tenant of the file.")
    copy = parsed.tenants[tenant].model_copy(deep=True)
    copy.name = f"{copy.name} ({name})"
    for rname, route in copy.routes.items():
        if enabled is not None and rname not in enabled:
            route.enabled = False
    parsed.tenants[name] = copy
    return copy


def _scaled(seed: Seed, base: dict[str, int], products: int, sales: int, categories: int) -> Seed:
    count = seed.count
    if seed.stream == "products" or (seed.stream != "sales" and count == base.get("products")):
        count = products  # per-product seeds (stock balances) follow the catalog
    elif seed.stream == "sales":
        count = sales
    elif seed.stream == "categories":
        count = categories
    return Seed(connection=seed.connection, stream=seed.stream, count=count)


# --- one phase ----------------------------------------------------------------------------------------------


def _usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, round(usage.ru_maxrss / 1024, 1)


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1], 3)


def _requests(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], key: str) -> dict[str, int]:
    return {name: int((after[name].get(key) or 0) - (before[name].get(key) or 0)) for name in after}


def run_phase(path: Path, limits: bool, products: int, sales: int, categories: int = 20,
              threads: int = 4) -> dict[str, Any]:
    registry = get_registry()
    scenario, routes_path, parsed, tenant = open_scenario(path)
    legs = plan(scenario, tenant, products, sales, categories)
    children: dict[str, Child] = {}
    with tempfile.TemporaryDirectory(prefix="hub-bench-e2e-") as tmp:
        settings = Settings(home=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'hub.db'}")
        store = Store.from_url(settings.resolved_database_url())
        try:
            migrate.upgrade(store)
            rt = Runtime(store=store, vault=Vault(settings), registry=registry)
            children.update(start_sandboxes(tenant, f"HUB_ENV_BENCH_{scenario.tenant}", lift_limits=not limits))
            sandboxes = {c: {"platform": tenant.connections[c].platform, **child.kwargs}
                         for c, child in children.items()}
            errors, _warnings = applying.check(parsed, registry, str(routes_path))
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, store, rt.vault, registry)
            figures: dict[str, Any] = {"rate_limits": "on" if limits else "off", "sandboxes": sandboxes}
            throttled = dict.fromkeys(children, 0)
            for leg in legs:
                seeded = {f"{s.connection}.{s.stream}": children[s.connection].call("seed", s.stream, s.count)
                          for s in leg.seeds}
                figures[leg.route], leg_throttled = _run_leg(rt, scenario.tenant, leg, children, threads)
                figures[leg.route]["seeded"] = seeded
                for name, n in leg_throttled.items():
                    throttled[name] += n
            figures["throttled"] = throttled
            figures["http_429"] = sum(throttled.values())
            with store.sessions() as s:
                figures["failed"] = s.scalar(select(func.count()).select_from(Operation).where(
                    Operation.tenant_id == scenario.tenant, Operation.state == "failed")) or 0
                reasons = s.execute(select(Operation.kind, Operation.last_error, func.count()).where(
                    Operation.tenant_id == scenario.tenant, Operation.state == "failed")
                    .group_by(Operation.kind, Operation.last_error).order_by(func.count().desc()).limit(5))
                figures["failures"] = [f"{n} x {kind}: {(error or '')[:300]}" for kind, error, n in reasons]
                figures["quarantined"] = s.scalar(select(func.count()).select_from(Quarantine).where(
                    Quarantine.tenant_id == scenario.tenant, Quarantine.resolved_at.is_(None))) or 0
            figures["peak_rss_mb"] = _usage()[1]
            return figures
        finally:
            for child in children.values():
                child.stop()
            store.engine.dispose()


def _run_leg(rt: Runtime, tenant: str, leg: Leg, children: dict[str, Child],
             threads: int) -> tuple[dict[str, Any], dict[str, int]]:
    before = {name: child.call("stats") for name, child in children.items()}
    cpu0 = _usage()[0]
    started = time.perf_counter()
    report = sync_route(rt, tenant, leg.route, full=False)
    pulled = time.perf_counter()
    with rt.store.sessions() as s:
        route_id = find_route(s, tenant, leg.route).id
    states = drain(rt, route_id, threads=threads, max_wait=60)
    finished = time.perf_counter()
    after = {name: child.call("stats") for name, child in children.items()}
    calls = _requests(before, after, "requests")
    seconds = finished - started
    delivered = children[leg.sink].call("count", leg.stream)
    unit = "product" if leg.stream == "products" else "sale"
    out: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "pull_seconds": round(pulled - started, 2),
        "drain_seconds": round(finished - pulled, 2),
        f"{leg.stream}_in_sink": delivered,
        f"{leg.stream}_per_s": round(delivered / seconds, 2) if seconds else None,
        "api_calls": calls,
        f"api_calls_per_{unit}": round(sum(calls.values()) / max(delivered, 1), 2),
        "cpu_seconds": round(_usage()[0] - cpu0, 2),
        "operations": states,
        "stream_errors": {r.stream: r.error for r in report.streams if r.error},
        # each `stats` call empties the sandbox's request log, so the second one holds the leg's calls exactly
        "calls_by_kind": {name: dict(sorted((after[name].get("calls") or {}).items(), key=lambda kv: -kv[1]))
                          for name in after},
    }
    for name, figures in after.items():  # what a platform's sandbox measures on its side (Amazon: Created -> NF-e)
        if figures.get("figures"):
            out[f"{name}_figures"] = figures["figures"]
    if leg.stream == "sales":
        with rt.store.sessions() as s:
            rows = s.execute(select(Operation.created_at, Operation.updated_at).where(
                Operation.route_id == route_id, Operation.kind == "push_sale", Operation.state == "done"))
            latencies = [(done - created).total_seconds() for created, done in rows]
        out["latency_p50_s"] = _percentile(latencies, 50)
        out["latency_p95_s"] = _percentile(latencies, 95)
        out["latency_max_s"] = round(max(latencies), 3) if latencies else None
    return out, _requests(before, after, "throttled")


def run(products: int, sales: int, limited_products: int, limited_sales: int, scenario: str | None = None,
        categories: int = 20, phases: tuple[str, ...] = ("on", "off")) -> dict[str, Any]:
    path = Path(scenario) if scenario else default_scenario(get_registry())
    figures: dict[str, Any] = {"scenario": str(path)}
    if "on" in phases:
        figures["rate_limits_on"] = run_phase(path, True, limited_products, limited_sales, categories)
    if "off" in phases:
        figures["rate_limits_off"] = run_phase(path, False, products, sales, categories)
    figures["peak_rss_mb"] = _usage()[1]
    return figures


def _options(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``CONNECTION.KEY=VALUE`` pairs as options per connection (each value read as YAML: 2 is a number)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        connection, dot, key = name.partition(".")
        if not sep or not dot or not connection or not key:
            raise click.BadParameter(f"{value!r} is not CONNECTION.KEY=VALUE (e.g. amazon.queue_wait_seconds=2)",
                                     param_hint="--option")
        out.setdefault(connection, {})[key] = yaml.safe_load(raw)
    return out


@click.command("e2e")
@click.option("--products", default=20_000, show_default=True, help="Catalog size with the sandboxes' limits off.")
@click.option("--sales", default=2_000, show_default=True, help="POS sales with the limits off.")
@click.option("--limited-products", default=200, show_default=True,
              help="Catalog size with each sandbox at its platform's rate limit (0: skip that phase).")
@click.option("--limited-sales", default=40, show_default=True, help="Sales with the rate limits on.")
@click.option("--categories", default=20, show_default=True)
@click.option("--scenario", default=None, help="A demo scenario file; default: the one the installed platforms ship.")
@click.option("--changes", "changes", is_flag=True,
              help="Time single changes instead, through a running `hub run` fed by webhooks (default scenario: "
                   "Zydon <-> Bling): what `hub bench changes` prints, with its defaults.")
@click.option("--orders-per-hour", type=float, default=None,
              help="Steady arrivals instead: one sale on the sales route's source every 3600/N seconds, the routes "
                   "polled and drained all along, every platform at its own limits (hub/bench/arrivals.py).")
@click.option("--duration", type=float, default=300, show_default=True, help="Seconds of steady arrivals.")
@click.option("--sefaz-delay", "sefaz_delays", type=float, multiple=True,
              help="Seconds SEFAZ takes to authorize a note in the sandboxes that issue them, one steady run each "
                   "(default: 0 and 5).")
@click.option("--poll-seconds", type=float, default=2.0, show_default=True,
              help="With --orders-per-hour: how often the sales route is read (its schedule).")
@click.option("--option", "option_values", multiple=True, metavar="CONNECTION.KEY=VALUE",
              help="With --orders-per-hour: a connection option over the route file's (a YAML value), e.g. "
                   "amazon.queue_wait_seconds=2 (SQS long polling).")
@click.option("--json", "as_json", is_flag=True)
def bench_e2e(products: int, sales: int, limited_products: int, limited_sales: int, categories: int,
              scenario: str | None, changes: bool, orders_per_hour: float | None, duration: float,
              sefaz_delays: tuple[float, ...], poll_seconds: float, option_values: tuple[str, ...],
              as_json: bool) -> None:
    """A demo scenario's catalog and sales routes end to end, sandboxes in their own processes: rate limits on
    (a small catalog) and off (PRODUCTS, SALES). With --changes, change -> sink latency and a burst instead; with
    --orders-per-hour, sales arriving steadily (latency from the order's creation to its NF-e, usage plans, 429s)."""
    if orders_per_hour is not None:
        from hub.bench import arrivals

        path = Path(scenario) if scenario else default_scenario(get_registry())
        steady = arrivals.run(path, orders_per_hour, duration, sefaz_delays or (0.0, 5.0),
                              poll_seconds=poll_seconds, options=_options(option_values))
        click.echo(json.dumps(steady, indent=None if as_json else 2))
        return
    if changes:
        from hub.bench.changes import bench_changes

        click.get_current_context().invoke(bench_changes, scenario=scenario, as_json=as_json)
        return
    phases = ("on", "off") if limited_products else ("off",)
    figures = run(products, sales, limited_products, limited_sales, scenario, categories, phases)
    click.echo(json.dumps(figures, indent=None if as_json else 2))
