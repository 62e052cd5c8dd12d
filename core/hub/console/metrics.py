"""``/metrics`` for Prometheus, read from the store at scrape time.

Several ``hub run`` processes (and hosts) share one store, so the store is where the truth is: each scrape counts
what every process did, with no multiprocess files to share. API calls are append-only rows, so their counters
and latency histogram are aggregated incrementally (only rows past the last id seen); the rest are gauges over
indexed columns (operations by state, the pending queue, cursors, unresolved quarantine).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import case, func, select

from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Connection, Cursor, Operation, Quarantine, Route

BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class StoreCollector:
    """A prometheus_client collector over the hub's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._last_id = 0
        self._calls: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[str, list[float]] = {}
        """platform -> [count per bucket..., count, sum of seconds]."""

    def _platforms(self) -> dict[int, str]:
        with self.store.sessions() as s:
            return {i: p for i, p in s.execute(select(Connection.id, Connection.platform))}

    def _advance_calls(self, platforms: dict[int, str]) -> None:
        """Fold API-log rows added since the last scrape into the counters."""
        with self.store.sessions() as s:
            top = s.scalar(select(func.max(ApiCall.id))) or 0
            if top <= self._last_id:
                return
            buckets = [func.sum(case((ApiCall.duration_ms <= b, 1), else_=0)) for b in BUCKETS_MS]
            rows = s.execute(select(ApiCall.connection_id, ApiCall.status, func.count(),
                                    func.sum(func.coalesce(ApiCall.duration_ms, 0)), *buckets)
                             .where(ApiCall.id > self._last_id, ApiCall.id <= top)
                             .group_by(ApiCall.connection_id, ApiCall.status)).all()
        for conn_id, status, count, total_ms, *in_buckets in rows:
            platform = platforms.get(conn_id, "unknown") if conn_id is not None else "none"
            self._calls[(platform, str(status) if status is not None else "no_answer")] += int(count)
            hist = self._latency.setdefault(platform, [0.0] * (len(BUCKETS_MS) + 2))
            for i, n in enumerate(in_buckets):
                hist[i] += int(n or 0)
            hist[-2] += int(count)
            hist[-1] += float(total_ms or 0) / 1000
        self._last_id = top

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            platforms = self._platforms()
            self._advance_calls(platforms)
            calls = CounterMetricFamily("hub_api_calls", "Remote API calls by platform and HTTP status "
                                        "(no_answer: the call got no response).", labels=["platform", "status"])
            limited = CounterMetricFamily("hub_api_rate_limited", "API calls answered 429 (too many requests).",
                                          labels=["platform"])
            per_platform_429: dict[str, int] = defaultdict(int)
            for (platform, status), n in sorted(self._calls.items()):
                calls.add_metric([platform, status], n)
                if status == "429":
                    per_platform_429[platform] += n
            for platform in sorted({p for p, _ in self._calls}):
                limited.add_metric([platform], per_platform_429.get(platform, 0))
            latency = HistogramMetricFamily("hub_api_call_duration_seconds", "API call latency by platform.",
                                            labels=["platform"])
            for platform, hist in sorted(self._latency.items()):
                bounds = [(str(b / 1000), hist[i]) for i, b in enumerate(BUCKETS_MS)]
                latency.add_metric([platform], [*bounds, ("+Inf", hist[-2])], sum_value=hist[-1])
        yield calls
        yield limited
        yield latency
        yield from self._gauges(platforms)

    def _gauges(self, platforms: dict[int, str]) -> Iterator[Metric]:
        now = utcnow()
        with self.store.sessions() as s:
            ops = s.execute(select(Operation.connection_id, Operation.kind, Operation.state, func.count())
                            .group_by(Operation.connection_id, Operation.kind, Operation.state)).all()
            queued = dict(s.execute(select(Operation.state, func.count())
                                    .where(Operation.state.in_(("pending", "running")))
                                    .group_by(Operation.state)).all())
            oldest = s.scalar(select(func.min(Operation.available_at)).where(Operation.state == "pending"))
            lags = s.execute(select(Route.tenant_id, Route.name, Cursor.stream, Cursor.last_success_at)
                             .join(Route, Route.id == Cursor.route_id)).all()
            refused = s.execute(select(Quarantine.tenant_id, func.count()).where(Quarantine.resolved_at.is_(None))
                                .group_by(Quarantine.tenant_id)).all()
        by_outcome: dict[tuple[str, str, str], int] = defaultdict(int)
        for conn_id, kind, state, n in ops:
            by_outcome[(platforms.get(conn_id, "unknown"), kind, state)] += int(n)
        family = GaugeMetricFamily("hub_operations", "Outbox operations by sink platform, kind and outcome "
                                   "(pending, running, done, failed, superseded).",
                                   labels=["platform", "kind", "outcome"])
        for labels, n in sorted(by_outcome.items()):
            family.add_metric(list(labels), n)
        yield family
        depth = GaugeMetricFamily("hub_queue_depth", "Operations waiting to be sent or being sent.", labels=["state"])
        for state in ("pending", "running"):
            depth.add_metric([state], int(queued.get(state, 0)))
        yield depth
        yield GaugeMetricFamily("hub_oldest_pending_operation_age_seconds",
                                "How long the longest-waiting pending operation has been due (0: none waits).",
                                value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        lag = GaugeMetricFamily("hub_sync_lag_seconds", "Seconds since each stream's last successful sync.",
                                labels=["tenant", "route", "stream"])
        for tenant, route, stream, last in lags:
            if last is not None:
                lag.add_metric([tenant, route, stream], max(0.0, (now - last).total_seconds()))
        yield lag
        quarantine = GaugeMetricFamily("hub_quarantined_records", "Unresolved quarantined records per tenant.",
                                       labels=["tenant"])
        for tenant, n in refused:
            quarantine.add_metric([tenant], int(n))
        yield quarantine


def make_registry(store: Store) -> tuple[CollectorRegistry, StoreCollector]:
    registry = CollectorRegistry(auto_describe=False)
    collector = StoreCollector(store)
    registry.register(collector)  # type: ignore[arg-type]
    return registry, collector


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def describe() -> list[dict[str, Any]]:
    """The metric names, for the README and tests."""
    return [{"name": n} for n in ("hub_api_calls_total", "hub_api_rate_limited_total", "hub_api_call_duration_seconds",
                                   "hub_operations", "hub_queue_depth", "hub_oldest_pending_operation_age_seconds",
                                   "hub_sync_lag_seconds", "hub_quarantined_records")]
