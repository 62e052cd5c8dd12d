"""``hub bench e2e --orders-per-hour N``: a demo scenario's sales route under a steady arrival of orders.

The batch phases of ``hub bench e2e`` seed every sale at once; a marketplace's orders arrive one by one, so this
mode makes one sale on the source sandbox every ``3600 / N`` seconds for ``--duration`` seconds while the hub works
as ``hub run`` would, in this process: the sales route is read every ``--poll-seconds`` (a notification queue is
cheap to read; the usage plans are spent on what the notifications name) and its operations are drained by worker
threads all along. The catalog route is synced first, once, so that orders are of the catalog's products, and the
sales route runs once before the window (its first run sweeps the history: an activation, not the steady state).

Every sandbox runs at its platform's own limits (the scenario's raised limits are dropped) and with the scenario's
other settings; ``--sefaz-delay`` sets ``nfe_delay_seconds`` (how long SEFAZ takes to authorize a note) on every
sandbox the scenario gives one. The figures are read from the sandboxes, as the platforms would see the hub:

* a sandbox whose ``stats`` figures carry ``created_to_submitted_p50_s``/``_p95_s`` (the source marketplace: from
  the moment it created the order to the moment the NF-e reached it) gives the end-to-end latency, and the hub's own
  share of it is that latency less the SEFAZ delay;
* a sandbox whose figures carry ``operations`` (requests per operation) and ``usage_plans`` (each operation's
  rate, requests/s) gives calls per order and the observed rate of each operation as a share of its plan;
* every sandbox gives its 429s (``throttled``) and requests.

The hub's webhook endpoint is served as ``hub run`` serves it, and the sales route's sink sandbox delivers its
webhooks there when it has any (``webhooks_from``): Bling announces each note SEFAZ settled (``invoice.updated``).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hub import webhooks
from hub.bench.e2e import _percentile, plan
from hub.bench.sandboxes import Child, start_sandboxes
from hub.config import apply as applying
from hub.crypto import Vault
from hub.demo import open_scenario
from hub.errors import ConfigError
from hub.registry import get_registry
from hub.sandbox import Served, serve
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store
from hub.store.schema import Operation, Quarantine
from hub.sync.drain import drain, operation_counts
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

LIMITS = frozenset({"rate_per_second", "daily_limit", "plan_scale"})
"""The sandboxes' rate-limit settings (their ``limit_fields``): a demo raises them, the bench keeps each platform's."""
SEFAZ = "nfe_delay_seconds"


class _Calls:
    """Requests by method and path shape, per sandbox, summed over every ``stats`` read (each one empties the
    sandbox's request log)."""

    def __init__(self) -> None:
        self.by_sandbox: dict[str, Counter[str]] = {}
        self.lock = threading.Lock()

    def stats(self, name: str, child: Child) -> dict[str, Any]:
        found: dict[str, Any] = child.call("stats")
        with self.lock:
            self.by_sandbox.setdefault(name, Counter()).update(found.get("calls") or {})
        return found

    def all(self, children: dict[str, Child]) -> dict[str, dict[str, Any]]:
        return {name: self.stats(name, child) for name, child in children.items()}

    def per_order(self, orders: int) -> dict[str, dict[str, float]]:
        return {name: {k: round(n / max(orders, 1), 2) for k, n in calls.most_common()}
                for name, calls in self.by_sandbox.items()}


def _figures(stats: dict[str, Any]) -> dict[str, Any]:
    found = stats.get("figures")
    return found if isinstance(found, dict) else {}


def _latency_source(stats: dict[str, dict[str, Any]]) -> str | None:
    return next((name for name, s in stats.items() if "created_to_submitted_p95_s" in _figures(s)), None)


def _submitted(calls: _Calls, name: str, child: Child) -> tuple[int, int]:
    """(orders the source made, notes that reached it) as the source sandbox counts them."""
    figures = _figures(calls.stats(name, child))
    return int(figures.get("shipments") or 0), int(figures.get("invoices_submitted") or 0)


class _Loop(threading.Thread):
    """Run ``step`` every ``every`` seconds until stopped; the first error is kept for the report."""

    def __init__(self, name: str, step: Any, every: float) -> None:
        super().__init__(name=name, daemon=True)
        self.step, self.every = step, every
        self.halt = threading.Event()
        self.errors: list[str] = []
        self.runs = 0

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                self.step()
                self.runs += 1
            except Exception as exc:  # the bench reports it; the loop goes on as `hub run` would
                if len(self.errors) < 5:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            self.halt.wait(max(0.0, self.every - (time.monotonic() - started)))


def run_steady(path: Path, orders_per_hour: float, duration: float, sefaz_delay: float, *,
               poll_seconds: float = 2.0, threads: int = 4, settle_seconds: float | None = None,
               options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One steady run at ``sefaz_delay``; the figures as a dict (see the module doc). ``options``: connection
    options set over the route file's (``--option amazon.queue_wait_seconds=2``), as an operator would."""
    if orders_per_hour <= 0 or duration <= 0:
        raise ConfigError("--orders-per-hour and --duration must be positive",
                          fix="E.g. --orders-per-hour 1000 --duration 300.")
    registry = get_registry()
    scenario, routes_path, parsed, tenant = open_scenario(path)
    for connection, values in (options or {}).items():
        if connection not in tenant.connections:
            raise ConfigError(f"--option {connection}.…: the scenario's tenant has no connection {connection!r}",
                              fix=f"Use one of: {', '.join(sorted(tenant.connections))}.")
        tenant.connections[connection].options.update(values)
    base = {s.seed.stream: s.seed.count for s in scenario.steps if s.seed is not None}
    catalog, sales = plan(scenario, tenant, base.get("products", 20), 0, base.get("categories", 20))
    kwargs = {name: {k: v for k, v in settings.items() if k not in LIMITS}
              for name, settings in scenario.sandboxes.items()}
    delayed = sorted(name for name, settings in kwargs.items() if SEFAZ in settings)
    for name in delayed:
        kwargs[name][SEFAZ] = sefaz_delay
    interval = 3600.0 / orders_per_hour
    count = max(1, round(duration / interval))
    settle = settle_seconds if settle_seconds is not None else 120.0 + 3 * sefaz_delay
    children: dict[str, Child] = {}
    with tempfile.TemporaryDirectory(prefix="hub-bench-steady-") as tmp:
        settings = Settings(home=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'hub.db'}")
        store = Store.from_url(settings.resolved_database_url())
        loops: list[_Loop] = []
        receiver: Served | None = None
        try:
            migrate.upgrade(store)
            rt = Runtime(store=store, vault=Vault(settings), registry=registry)
            children.update(start_sandboxes(tenant, f"HUB_ENV_BENCH_{scenario.tenant}", kwargs))
            errors, _warnings = applying.check(parsed, registry, str(routes_path))
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, store, rt.vault, registry)
            for seed in catalog.seeds:
                children[seed.connection].call("seed", seed.stream, seed.count)
            # Seeds the scenario makes on the sales route's sink (its payment methods, say), not the sales.
            for seed in sales.seeds:
                if seed.stream != sales.stream:
                    children[seed.connection].call("seed", seed.stream, seed.count)
            report = sync_route(rt, scenario.tenant, catalog.route, full=True)
            if not report.ok:
                raise RuntimeError(f"the first sync of {catalog.route} failed: {report}")
            drain(rt, threads=threads, max_wait=120)
            # The sales route's first run (its first sweep reads the history) is an activation, not the steady state.
            sync_route(rt, scenario.tenant, sales.route)
            with store.sessions() as s:
                route_id = find_route(s, scenario.tenant, sales.route).id
            receiver = serve(webhooks.app(rt))
            webhooks_from = _subscribe(children, receiver, scenario.tenant, sales.sink)
            _Calls().all(children)  # empties the request logs: what they hold next is the window's
            calls = _Calls()
            before = calls.all(children)
            source = children[sales.source]

            def poll() -> None:
                report = sync_route(rt, scenario.tenant, sales.route)
                if not report.ok:
                    raise RuntimeError("; ".join(f"{r.stream}: {r.error}" for r in report.streams if r.error))

            loops = [_Loop("poll", poll, poll_seconds),
                     _Loop("work", lambda: drain(rt, route_id, threads=threads, max_wait=0.5), 0.2)]
            started = time.monotonic()
            for loop in loops:
                loop.start()
            for i in range(count):  # steady arrivals: order i at started + i * interval, never a burst
                wait = started + i * interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                source.call("seed", sales.stream, 1)
            arrived = time.monotonic()
            made, submitted = _submitted(calls, sales.source, source)
            deadline = arrived + settle
            while submitted < made and time.monotonic() < deadline:
                time.sleep(1.0)
                made, submitted = _submitted(calls, sales.source, source)
            window = time.monotonic() - started
            for loop in loops:
                loop.halt.set()
            for loop in loops:
                loop.join(timeout=120)
            after = calls.all(children)
            figures = _report(rt, scenario.tenant, route_id, before, after, count, orders_per_hour, window,
                              arrived - started, sefaz_delay)
            # by path shape for the sandboxes that name no operations (those are in usage_plans)
            figures["calls_per_order"] = {name: shape for name, shape in calls.per_order(count).items()
                                          if name not in figures["usage_plans"]}
            figures.update(sefaz_delay_seconds=sefaz_delay, sefaz_delay_on=delayed, poll_seconds=poll_seconds,
                           options=options or {},
                           webhooks_from=webhooks_from,
                           polls=loops[0].runs, loop_errors={loop.name: loop.errors for loop in loops if loop.errors},
                           sandboxes={c: {"platform": tenant.connections[c].platform, **child.kwargs}
                                      for c, child in children.items()})
            return figures
        finally:
            for loop in loops:
                loop.halt.set()
            for loop in loops:
                loop.join(timeout=30)
            for child in children.values():
                child.stop()
            if receiver is not None:
                receiver.stop()
            store.engine.dispose()


def _subscribe(children: dict[str, Child], receiver: Served, tenant: str, sink: str) -> list[str]:
    """Point the sink's sandbox at the hub's webhook endpoint, as the account's settings would (``hub run`` serves
    it): a note SEFAZ authorizes is announced at once instead of waiting for the next read. A sandbox with no
    webhooks to send (its platform has none) is left as it is."""
    try:
        children[sink].method("subscribe", f"{receiver.base_url}/webhooks/{tenant}/{sink}")
    except RuntimeError:
        return []
    return [sink]


def _report(rt: Runtime, tenant: str, route_id: int, before: dict[str, dict[str, Any]],
            after: dict[str, dict[str, Any]], orders: int, orders_per_hour: float, window: float,
            arrivals: float, sefaz_delay: float) -> dict[str, Any]:
    out: dict[str, Any] = {"orders_per_hour": orders_per_hour, "orders": orders,
                           "arrival_seconds": round(arrivals, 1), "window_seconds": round(window, 1)}
    latency = _latency_source(after)
    if latency is not None:
        figures = _figures(after[latency])
        out["invoices_submitted"] = figures.get("invoices_submitted")
        p50, p95 = figures.get("created_to_submitted_p50_s"), figures.get("created_to_submitted_p95_s")
        out["created_to_submitted_p50_s"], out["created_to_submitted_p95_s"] = p50, p95
        # what the hub adds beyond the platforms' own time: SEFAZ's authorization (the sandboxes answer at once)
        out["hub_added_p50_s"] = round(p50 - sefaz_delay, 3) if p50 is not None else None
        out["hub_added_p95_s"] = round(p95 - sefaz_delay, 3) if p95 is not None else None
    plans: dict[str, Any] = {}
    for name, stats in after.items():
        figures, earlier = _figures(stats), _figures(before[name])
        rates = figures.get("usage_plans") or {}
        calls = {op: int(n) - int((earlier.get("operations") or {}).get(op, 0))
                 for op, n in (figures.get("operations") or {}).items()}
        for op, n in sorted(calls.items()):
            if n <= 0:
                continue
            rate = rates.get(op)
            observed = n / window if window else 0.0
            plans.setdefault(name, {})[op] = {
                "calls": n, "calls_per_order": round(n / max(orders, 1), 3),
                "plan_per_s": rate, "observed_per_s": round(observed, 4),
                "observed_pct_of_plan": round(100 * observed / rate, 1) if rate else None,
                "at_arrival_rate_pct_of_plan": round(100 * n / max(orders, 1) * orders_per_hour / 3600 / rate, 1)
                if rate else None,
            }
    out["usage_plans"] = plans
    out["requests"] = {n: int(after[n].get("requests") or 0) - int(before[n].get("requests") or 0) for n in after}
    out["requests_per_order"] = {n: round(v / max(orders, 1), 2) for n, v in out["requests"].items()}
    out["requests_per_s"] = {n: round(v / window, 3) if window else None for n, v in out["requests"].items()}
    out["throttled"] = {n: int(after[n].get("throttled") or 0) - int(before[n].get("throttled") or 0)
                        for n in after}
    out["http_429"] = sum(out["throttled"].values())
    out["operations"] = operation_counts(rt, route_id)
    with rt.store.sessions() as s:
        spans: dict[str, list[float]] = {}
        for kind, created, done in s.execute(select(Operation.kind, Operation.created_at, Operation.updated_at)
                                             .where(Operation.route_id == route_id, Operation.state == "done")):
            spans.setdefault(kind, []).append((done - created).total_seconds())
        # where the time goes: each write from being recorded to being done (waits for SEFAZ included)
        out["operation_seconds"] = {kind: {"p50": _percentile(v, 50), "p95": _percentile(v, 95)}
                                    for kind, v in sorted(spans.items())}
        out["failed"] = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.tenant_id == tenant, Operation.state == "failed")) or 0
        reasons = s.execute(select(Operation.kind, Operation.last_error, func.count()).where(
            Operation.tenant_id == tenant, Operation.state == "failed")
            .group_by(Operation.kind, Operation.last_error).order_by(func.count().desc()).limit(5))
        out["failures"] = [f"{n} x {kind}: {(error or '')[:300]}" for kind, error, n in reasons]
        out["quarantined"] = s.scalar(select(func.count()).select_from(Quarantine).where(
            Quarantine.tenant_id == tenant, Quarantine.resolved_at.is_(None))) or 0
    return out


def run(path: Path, orders_per_hour: float, duration: float, sefaz_delays: tuple[float, ...], *,
        poll_seconds: float = 2.0, threads: int = 4, options: dict[str, dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    """One steady run per SEFAZ delay, and the goal each is held to."""
    runs = {f"sefaz_delay_{d:g}s": run_steady(path, orders_per_hour, duration, d, poll_seconds=poll_seconds,
                                              threads=threads, options=options) for d in sefaz_delays}
    return {"scenario": str(path), "mode": "steady arrivals", "goal": "hub_added_p95_s <= 5 and http_429 == 0",
            **runs}


__all__ = ["LIMITS", "run", "run_steady"]
