"""The core's actors. Plugins define none: a worker without some plugin installed still knows every actor
name, and actors are bound to the broker explicitly rather than at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dramatiq

from hub.sync.loading import Runtime
from hub.sync.operations import execute
from hub.sync.pull import sync_route

log = logging.getLogger("hub.runner")
QUEUE = "hub"


@dataclass
class Actors:
    execute_operation: dramatiq.Actor[[int], str]
    run_sync: dramatiq.Actor[[str, str], None]


def declare(broker: dramatiq.Broker, rt: Runtime) -> Actors:
    def execute_operation(op_id: int) -> str:
        return execute(rt, op_id)

    def run_sync(tenant: str, route: str) -> None:
        report = sync_route(rt, tenant, route)
        for stream in report.streams:
            if stream.error:
                log.warning("sync %s/%s %s: %s (fix: %s)", tenant, route, stream.stream, stream.error, stream.fix)

    return Actors(
        execute_operation=dramatiq.Actor(execute_operation, broker=broker, actor_name="hub.execute_operation",
                                         queue_name=QUEUE, priority=0, options={}),
        run_sync=dramatiq.Actor(run_sync, broker=broker, actor_name="hub.run_sync", queue_name=QUEUE,
                                priority=10, options={"max_retries": 0}),
    )
