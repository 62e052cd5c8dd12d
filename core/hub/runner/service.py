"""``hub run``: workers, the outbox relay and the scheduler in one process; run as many as you like."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq import Worker
from sqlalchemy import ColumnElement, func, select, update

from hub import webhooks
from hub.control import OPERATOR_KINDS
from hub.errors import HubError
from hub.privacy import mask_documents
from hub.ratelimit import priority_enabled
from hub.runner.actors import QUEUE, URGENT_QUEUE, Actors, declare
from hub.runner.broker import make_broker
from hub.runner.routes import RunPolicy, claim
from hub.store.engine import one_of, utcnow
from hub.store.migrate import require_head
from hub.store.retention import prune
from hub.store.schema import Connection, Operation, Route, Tenant
from hub.sync import targets
from hub.sync.context import URGENT_STREAMS
from hub.sync.fairness import URGENT_KINDS, fair_due, in_flight
from hub.sync.loading import Runtime, ensure_auth

log = logging.getLogger("hub.runner")


def _held_connections() -> Any:
    """Connections the operator paused or uninstalled: their routes do not run and their operations wait."""
    return select(Connection.id).where(Connection.pause_kind.in_(OPERATOR_KINDS))


def _schedulable() -> tuple[ColumnElement[bool], ...]:
    """Routes the scheduler may start: enabled, not paused, neither end held by an operator."""
    return (Route.enabled.is_(True), Route.paused_at.is_(None), Route.source_id.not_in(_held_connections()),
            Route.sink_id.not_in(_held_connections()))


PRUNE_EVERY_SECONDS = 3600.0
PRUNE_BATCHES = 20
"""Batches of :data:`hub.store.retention.BATCH` rows per scheduler tick while an old log is pruned."""
MIN_TICK_SECONDS = 0.05
"""The scheduler's shortest sleep, when a route is due again almost at once."""
ROUTE_WINDOW = 32
"""Operations of one route (of each class: urgent, the rest) handed to the broker and not finished yet, across
every process. The broker's queues are first in, first out: a bound per route keeps one tenant's catalog backlog
from filling them ahead of everyone else's work, which the relay then hands out round-robin
(:func:`hub.sync.fairness.fair_due`)."""


REFILL_SECONDS = 0.1
"""While the relay finds work to hand out, it runs again this soon instead of waiting for its next tick."""


def relay_once(rt: Runtime, send: Callable[[int], object], limit: int = 500, *,
               send_urgent: Callable[[int], object] | None = None, window: int | None = ROUTE_WINDOW) -> int:
    """Hand due operations to the broker, urgent kinds first (to ``send_urgent`` when given: their own queue),
    the rest round-robin across tenants and routes, at most ``window`` in flight per route and class. A row is
    re-sent only after a lease without progress, so a lost message is re-sent and a duplicate is harmless (the
    executor's claim lets one through)."""
    now = utcnow()
    stale = now - timedelta(seconds=rt.lease_seconds)
    undispatched = (Operation.dispatched_at.is_(None)) | (Operation.dispatched_at < stale)
    with rt.store.begin() as s:
        room = None
        if window is not None:
            room = {key: max(0, window - n) for key, n in in_flight(s, now, stale).items()}
        ids = fair_due(s, now, limit, window=window, room=room, where=[
            undispatched,
            Operation.route_id.not_in(select(Route.id).where(Route.paused_at.is_not(None))),
            Operation.connection_id.not_in(_held_connections())])
        urgent: set[int] = set()
        if ids:
            # Marked only where still undispatched: of several relays that picked the same rows at once (one per
            # `hub run`), one marks each row and sends it; the others skip it. Without the condition every relay
            # sent it: 1.5 messages per operation with 2 processes, 1.9 with 4 (`hub bench scaleout`).
            marked = set(s.scalars(update(Operation).where(one_of(s, Operation.id, ids), undispatched)
                                   .values(dispatched_at=now).returning(Operation.id)))
            ids = [i for i in ids if i in marked]
        if ids and send_urgent is not None:
            urgent = set(s.scalars(select(Operation.id).where(one_of(s, Operation.id, ids),
                                                        Operation.kind.in_(URGENT_KINDS))))
    for op_id in ids:
        (send_urgent if op_id in urgent and send_urgent is not None else send)(op_id)
    return len(ids)


def reads_urgent(config: dict[str, Any]) -> bool:
    """Whether a route reads sales or invoices (:data:`hub.sync.context.URGENT_STREAMS`): its runs are urgent work."""
    return any(stream in URGENT_STREAMS for stream in config.get("streams") or ())


def schedule_once(rt: Runtime, send: Callable[[str, str, str], object], policy: RunPolicy | None = None, *,
                  send_urgent: Callable[[str, str, str], object] | None = None) -> int:
    """Start every route whose time has come; ``send(tenant, route, lease_until)``, or ``send_urgent`` for a route
    that reads sales or invoices when given. The compare-and-set on next_run_at lets one instance win, and the
    lease it sets brings the route back if the run never reports."""
    policy = policy or RunPolicy()
    now = utcnow()
    started = 0
    with rt.store.sessions() as s:
        due = list(s.execute(select(Route.id, Route.tenant_id, Route.name, Route.next_run_at, Route.config)
                             .join(Tenant, Tenant.id == Route.tenant_id)
                             .where(Route.next_run_at <= now, *_schedulable())))
    for route_id, tenant, name, next_run_at, config in due:
        lease_until = claim(rt, route_id, next_run_at, policy) if next_run_at is not None else None
        if lease_until is not None:
            urgent = send_urgent is not None and reads_urgent(config or {})
            (send_urgent if urgent and send_urgent is not None else send)(tenant, name, lease_until.isoformat())
            started += 1
    return started


def next_due_in(rt: Runtime) -> float | None:
    """Seconds until the next route is due (0 when one is), None when no route is scheduled: the scheduler sleeps
    that long rather than a whole tick, so a route read every 2 s is read every 2 s."""
    with rt.store.sessions() as s:
        due = s.scalar(select(func.min(Route.next_run_at)).join(Tenant, Tenant.id == Route.tenant_id)
                       .where(*_schedulable()))
    return None if due is None else max(0.0, (due - utcnow()).total_seconds())


RENEW_AHEAD = timedelta(days=3)


def renew_idle_once(rt: Runtime) -> int:
    """Renew tokens whose renewal grant would die soon even though nothing used them (idle tenants)."""
    limit = utcnow() + RENEW_AHEAD
    with rt.store.sessions() as s:
        ids = list(s.scalars(select(Connection.id).where(Connection.renew_by.is_not(None), Connection.renew_by < limit,
                                                         (Connection.pause_kind.is_(None))
                                                         | (Connection.pause_kind != "auth"))))
    renewed = 0
    for conn_id in ids:
        try:
            ensure_auth(rt, conn_id, force=True)
            renewed += 1
        except HubError as exc:
            log.warning("idle renewal of connection %s failed: %s (fix: %s)", conn_id, mask_documents(exc.message),
                        mask_documents(exc.fix))
    return renewed


def urgent_threads(threads: int) -> int:
    """Threads of their own for sales and invoices, beside ``threads`` for everything else: as many, since a sale's
    writes mostly wait for their account's budget, and the sales route's read holds one while it runs (with half as
    many, POS sales beside a 20,000-product sync on the same Bling account waited a p95 of 15 s)."""
    return max(2, threads)


class Service:
    def __init__(self, rt: Runtime, redis_url: str | None, threads: int = 4, relay_interval: float = 0.5,
                 scheduler_interval: float = 5.0, broker: dramatiq.Broker | None = None,
                 policy: RunPolicy | None = None, window: int | None = ROUTE_WINDOW,
                 retention_days: int = 0) -> None:
        self.rt = rt
        self.retention_days = retention_days
        """Prune the API log and received webhooks older than this, hourly (:mod:`hub.store.retention`); 0: never."""
        self._pruned_at: float | None = None
        self._renewed_at: float | None = None
        self.prioritized = priority_enabled()
        """HUB_BUDGET_PRIORITY=off: one queue, no window per route (first come, first served, as before)."""
        self.window = window if self.prioritized else None
        self.refill_at = 1
        self.policy = policy or RunPolicy()
        self.broker = broker or make_broker(redis_url)
        self.actors: Actors = declare(self.broker, rt, self.policy)
        self.threads = threads
        self.relay_interval = relay_interval
        self.scheduler_interval = scheduler_interval
        self.stopping = threading.Event()
        self.due_now = threading.Event()
        """Set when a webhook marks a route due: the scheduler runs at once instead of at its next tick. Received in
        this process, the webhook sets it directly; received by another (``hub serve``, another ``hub run``), it
        arrives through Redis publish/subscribe when the processes share a Redis (:mod:`hub.sync.targets`)."""
        self.redis_url = redis_url
        self.wakeups: targets.Subscriber | None = None
        self.worker: Worker | None = None
        self.urgent_worker: Worker | None = None
        """Consumes the urgent queue alone (``urgent_threads``): a thread is always free for a sale, whatever the
        catalogs hold (with the priority off, nothing is sent there)."""
        self._loops: list[threading.Thread] = []
        self._next_tick = scheduler_interval

    def start(self) -> None:
        require_head(self.rt.store)
        self.worker = Worker(self.broker, queues={QUEUE}, worker_threads=self.threads, worker_timeout=100)
        self.urgent_worker = Worker(self.broker, queues={URGENT_QUEUE}, worker_threads=urgent_threads(self.threads),
                                    worker_timeout=100)
        self.worker.start()
        self.urgent_worker.start()
        webhooks.DUE_LISTENERS.append(self.due_now.set)
        if self.redis_url:
            self.wakeups = targets.Subscriber(self.redis_url, self.due_now.set)
            self.wakeups.start()
        self._loops = [
            threading.Thread(target=self._loop, args=(self._relay, self.relay_interval), name="hub-relay", daemon=True),
            threading.Thread(target=self._loop, args=(self._schedule, self.scheduler_interval, self.due_now),
                             name="hub-scheduler", daemon=True),
        ]
        for thread in self._loops:
            thread.start()

    def _relay(self) -> None:
        urgent = (lambda op_id: self.actors.execute_urgent.send(op_id)) if self.prioritized else None
        while relay_once(self.rt, lambda op_id: self.actors.execute_operation.send(op_id), send_urgent=urgent,
                         window=self.window) >= self.refill_at and self.window is not None \
                and not self.stopping.is_set():
            self.stopping.wait(REFILL_SECONDS)  # a busy outbox: top the windows up sooner than every tick

    def _schedule(self) -> None:
        urgent = (lambda tenant, route, lease: self.actors.run_urgent_sync.send(tenant, route, lease)) \
            if self.prioritized else None
        schedule_once(self.rt, lambda tenant, route, lease: self.actors.run_sync.send(tenant, route, lease),
                      self.policy, send_urgent=urgent)
        now = time.monotonic()
        if self._renewed_at is None or now - self._renewed_at >= self.scheduler_interval:
            # Once per interval, as before the scheduler woke for each due route: a grant dies in days, not seconds.
            renew_idle_once(self.rt)
            self._renewed_at = now
        self._prune()
        due_in = next_due_in(self.rt)
        self._next_tick = self.scheduler_interval if due_in is None else \
            min(self.scheduler_interval, max(MIN_TICK_SECONDS, due_in))

    def _prune(self) -> None:
        """At most hourly, and a bounded number of batches at a time: scheduling must not wait on a first prune of a
        years-old log."""
        now = time.monotonic()
        if self.retention_days <= 0 or (self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS):
            return
        pruned = prune(self.rt.store, self.retention_days, max_batches=PRUNE_BATCHES)
        self._pruned_at = now if pruned.done else now - PRUNE_EVERY_SECONDS + self.scheduler_interval
        if pruned.api_log or pruned.webhook_events:
            log.info("pruned %d API-log rows and %d webhook events older than %d days", pruned.api_log,
                     pruned.webhook_events, self.retention_days)

    def _loop(self, step: Callable[[], None], interval: float, wake: threading.Event | None = None) -> None:
        while not self.stopping.is_set():
            if wake is not None:
                wake.clear()
            try:
                step()
            except Exception:
                log.exception("%s failed; retrying in %.1fs", step.__name__, interval)
            if wake is None:
                self.stopping.wait(interval)
            else:
                wake.wait(min(interval, self._next_tick))  # stop() sets it too

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: stop handing out work, let running actors finish, then return."""
        self.stopping.set()
        self.due_now.set()
        if self.due_now.set in webhooks.DUE_LISTENERS:
            webhooks.DUE_LISTENERS.remove(self.due_now.set)
        if self.wakeups is not None:
            self.wakeups.stop()
        for thread in self._loops:
            thread.join(timeout=5)
        stopping = [threading.Thread(target=worker.stop, kwargs={"timeout": int(timeout * 1000)})
                    for worker in (self.worker, self.urgent_worker) if worker is not None]
        for thread in stopping:  # together: a graceful stop takes the longer of the two, not their sum
            thread.start()
        for thread in stopping:
            thread.join()
        self.broker.close()
