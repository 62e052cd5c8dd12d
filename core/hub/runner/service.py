"""``hub run``: workers, the outbox relay and the scheduler in one process; run as many as you like."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq import Worker
from sqlalchemy import select, update

from hub.control import OPERATOR_KINDS
from hub.errors import HubError
from hub.privacy import mask_documents
from hub.runner.actors import Actors, declare
from hub.runner.broker import make_broker
from hub.runner.routes import RunPolicy, claim
from hub.store.engine import utcnow
from hub.store.migrate import require_head
from hub.store.schema import Connection, Operation, Route, Tenant
from hub.sync.loading import Runtime, ensure_auth
from hub.sync.operations import due_filter

log = logging.getLogger("hub.runner")


def _held_connections() -> Any:
    """Connections the operator paused or uninstalled: their routes do not run and their operations wait."""
    return select(Connection.id).where(Connection.pause_kind.in_(OPERATOR_KINDS))


def relay_once(rt: Runtime, send: Callable[[int], object], limit: int = 500) -> int:
    """Hand due operations to the broker. A row is re-sent only after a lease without progress, so a lost
    message is re-sent and a duplicate is harmless (the executor's claim lets one through)."""
    now = utcnow()
    stale = now - timedelta(seconds=rt.lease_seconds)
    with rt.store.begin() as s:
        ids = list(s.scalars(
            select(Operation.id).where(due_filter(now))
            .where((Operation.dispatched_at.is_(None)) | (Operation.dispatched_at < stale))
            .where(Operation.route_id.not_in(select(Route.id).where(Route.paused_at.is_not(None))),
                   Operation.connection_id.not_in(_held_connections()))
            .order_by(Operation.available_at, Operation.id).limit(limit)))
        if ids:
            s.execute(update(Operation).where(Operation.id.in_(ids)).values(dispatched_at=now))
    for op_id in ids:
        send(op_id)
    return len(ids)


def schedule_once(rt: Runtime, send: Callable[[str, str, str], object], policy: RunPolicy | None = None) -> int:
    """Start every route whose time has come; ``send(tenant, route, lease_until)``. The compare-and-set on
    next_run_at lets one instance win, and the lease it sets brings the route back if the run never reports."""
    policy = policy or RunPolicy()
    now = utcnow()
    started = 0
    with rt.store.sessions() as s:
        due = list(s.execute(select(Route.id, Route.tenant_id, Route.name, Route.next_run_at)
                             .join(Tenant, Tenant.id == Route.tenant_id)
                             .where(Route.enabled.is_(True), Route.next_run_at <= now, Route.paused_at.is_(None),
                                    Route.source_id.not_in(_held_connections()),
                                    Route.sink_id.not_in(_held_connections()))))
    for route_id, tenant, name, next_run_at in due:
        lease_until = claim(rt, route_id, next_run_at, policy) if next_run_at is not None else None
        if lease_until is not None:
            send(tenant, name, lease_until.isoformat())
            started += 1
    return started


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


class Service:
    def __init__(self, rt: Runtime, redis_url: str | None, threads: int = 4, relay_interval: float = 0.5,
                 scheduler_interval: float = 5.0, broker: dramatiq.Broker | None = None,
                 policy: RunPolicy | None = None) -> None:
        self.rt = rt
        self.policy = policy or RunPolicy()
        self.broker = broker or make_broker(redis_url)
        self.actors: Actors = declare(self.broker, rt, self.policy)
        self.threads = threads
        self.relay_interval = relay_interval
        self.scheduler_interval = scheduler_interval
        self.stopping = threading.Event()
        self.worker: Worker | None = None
        self._loops: list[threading.Thread] = []

    def start(self) -> None:
        require_head(self.rt.store)
        self.worker = Worker(self.broker, worker_threads=self.threads, worker_timeout=100)
        self.worker.start()
        self._loops = [
            threading.Thread(target=self._loop, args=(self._relay, self.relay_interval), name="hub-relay", daemon=True),
            threading.Thread(target=self._loop, args=(self._schedule, self.scheduler_interval), name="hub-scheduler",
                             daemon=True),
        ]
        for thread in self._loops:
            thread.start()

    def _relay(self) -> None:
        relay_once(self.rt, lambda op_id: self.actors.execute_operation.send(op_id))

    def _schedule(self) -> None:
        schedule_once(self.rt, lambda tenant, route, lease: self.actors.run_sync.send(tenant, route, lease),
                      self.policy)
        renew_idle_once(self.rt)

    def _loop(self, step: Callable[[], None], interval: float) -> None:
        while not self.stopping.is_set():
            try:
                step()
            except Exception:
                log.exception("%s failed; retrying in %.1fs", step.__name__, interval)
            self.stopping.wait(interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: stop handing out work, let running actors finish, then return."""
        self.stopping.set()
        for thread in self._loops:
            thread.join(timeout=5)
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout * 1000))
        self.broker.close()
