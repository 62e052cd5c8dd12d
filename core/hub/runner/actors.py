"""The core's actors. Plugins define none: a worker without some plugin installed still knows every actor
name, and actors are bound to the broker explicitly rather than at import time."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import dramatiq
from sqlalchemy import select

from hub.privacy import mask_documents
from hub.runner.routes import RunPolicy, run_route
from hub.store.schema import Operation, Route
from hub.sync.give_way import urgent_work
from hub.sync.loading import Runtime
from hub.sync.operations import execute

log = logging.getLogger("hub.runner")
ops_log = logging.getLogger("hub.runner.operations")
QUEUE = "hub"
URGENT_QUEUE = "hub_urgent"
"""Sales, their actions and invoices (hub.sync.fairness.URGENT_KINDS), and the runs of the routes that read them:
a queue of their own with worker threads of their own (:class:`hub.runner.service.Service`), so a sale is read and
written while another tenant's catalog holds every catalog thread (a first sync's run holds one for hours, a
product write waits for its account's budget in its thread)."""
RUN_TIME_LIMIT_MS = 6 * 3600 * 1000
"""A first sync of a 20,000-product Bling catalog takes about two hours at 3 requests/s; the route's lease is
renewed while it runs (hub.runner.routes.Lease), so dramatiq's default 10-minute limit would only cut it short."""


@dataclass
class Actors:
    execute_operation: dramatiq.Actor[[int], None]
    run_sync: dramatiq.Actor[[str, str, str | None], None]
    execute_urgent: dramatiq.Actor[[int], None]
    run_urgent_sync: dramatiq.Actor[[str, str, str | None], None]
    """The run of a route that reads sales or invoices (:func:`hub.runner.service.reads_urgent`)."""


def log_operation(rt: Runtime, op_id: int, outcome: str, seconds: float) -> None:
    """One line per operation run: tenant, route, operation, record, outcome and duration (its error, if any)."""
    if not ops_log.isEnabledFor(logging.INFO):
        return
    with rt.store.sessions() as s:
        row = s.execute(select(Operation.tenant_id, Route.name, Operation.kind, Operation.entity,
                               Operation.canonical_id, Operation.last_error)
                        .join(Route, Route.id == Operation.route_id).where(Operation.id == op_id)).first()
    if row is None:
        return
    tenant, route, kind, entity, record, error = row
    fields = {"tenant": tenant, "route": route, "operation": kind, "entity": entity, "record": record,
              "outcome": outcome, "duration_ms": int(seconds * 1000),
              "error": mask_documents(error) if outcome != "done" else None}
    level = logging.WARNING if outcome == "failed" else logging.INFO
    ops_log.log(level, "%s/%s %s %s %s: %s in %d ms%s", tenant, route, kind, entity, record, outcome,
                fields["duration_ms"], f" ({fields['error']})" if fields["error"] else "", extra=fields)


def declare(broker: dramatiq.Broker, rt: Runtime, policy: RunPolicy | None = None) -> Actors:
    def execute_operation(op_id: int) -> None:
        # Returns nothing: dramatiq warns on every actor that returns a value without a results backend.
        started = time.monotonic()
        outcome = execute(rt, op_id)
        try:
            log_operation(rt, op_id, outcome, time.monotonic() - started)
        except Exception:  # the log line must never fail the operation
            log.debug("could not log operation %s", op_id, exc_info=True)

    def run_sync(tenant: str, route: str, lease_until: str | None = None) -> None:
        # No broker retries: a failed run is retried by the scheduler with backoff (see hub.runner.routes).
        run_route(rt, tenant, route, datetime.fromisoformat(lease_until) if lease_until else None, policy)

    def execute_urgent(op_id: int) -> None:
        with urgent_work():  # this process's catalog runs give way meanwhile (hub.sync.give_way)
            execute_operation(op_id)

    def run_urgent_sync(tenant: str, route: str, lease_until: str | None = None) -> None:
        with urgent_work():
            run_sync(tenant, route, lease_until)

    return Actors(
        execute_operation=dramatiq.Actor(execute_operation, broker=broker, actor_name="hub.execute_operation",
                                         queue_name=QUEUE, priority=0, options={}),
        # A run comes after the writes already waiting in a worker's queue, but not after every later one: at the
        # lowest priority a route's read never ran while another tenant's catalog kept the queue full.
        run_sync=dramatiq.Actor(run_sync, broker=broker, actor_name="hub.run_sync", queue_name=QUEUE,
                                priority=0, options={"max_retries": 0, "time_limit": RUN_TIME_LIMIT_MS}),
        execute_urgent=dramatiq.Actor(execute_urgent, broker=broker, actor_name="hub.execute_urgent",
                                      queue_name=URGENT_QUEUE, priority=-10, options={}),
        run_urgent_sync=dramatiq.Actor(run_urgent_sync, broker=broker, actor_name="hub.run_urgent_sync",
                                       queue_name=URGENT_QUEUE, priority=-5,
                                       options={"max_retries": 0, "time_limit": RUN_TIME_LIMIT_MS}),
    )
