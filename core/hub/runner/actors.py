"""The core's actors. Plugins define none: a worker without some plugin installed still knows every actor
name, and actors are bound to the broker explicitly rather than at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import dramatiq

from hub.runner.routes import RunPolicy, run_route
from hub.sync.loading import Runtime
from hub.sync.operations import execute

log = logging.getLogger("hub.runner")
QUEUE = "hub"
RUN_TIME_LIMIT_MS = 6 * 3600 * 1000
"""A first sync of a 20,000-product Bling catalog takes about two hours at 3 requests/s; the route's lease is
renewed while it runs (hub.runner.routes.Lease), so dramatiq's default 10-minute limit would only cut it short."""


@dataclass
class Actors:
    execute_operation: dramatiq.Actor[[int], str]
    run_sync: dramatiq.Actor[[str, str, str | None], None]


def declare(broker: dramatiq.Broker, rt: Runtime, policy: RunPolicy | None = None) -> Actors:
    def execute_operation(op_id: int) -> str:
        return execute(rt, op_id)

    def run_sync(tenant: str, route: str, lease_until: str | None = None) -> None:
        # No broker retries: a failed run is retried by the scheduler with backoff (see hub.runner.routes).
        run_route(rt, tenant, route, datetime.fromisoformat(lease_until) if lease_until else None, policy)

    return Actors(
        execute_operation=dramatiq.Actor(execute_operation, broker=broker, actor_name="hub.execute_operation",
                                         queue_name=QUEUE, priority=0, options={}),
        run_sync=dramatiq.Actor(run_sync, broker=broker, actor_name="hub.run_sync", queue_name=QUEUE,
                                priority=10, options={"max_retries": 0, "time_limit": RUN_TIME_LIMIT_MS}),
    )
