"""Running a route's pending operations in this process (``hub sync``), without a broker."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from hub.store.engine import utcnow
from hub.store.schema import Operation
from hub.sync.loading import Runtime
from hub.sync.operations import due_operations, execute

WAKE_CHECK_SECONDS = 0.25
"""A drain waiting for the next due operation looks again this often: a webhook may make one due earlier."""


def drain(rt: Runtime, route_id: int | None = None, *, threads: int = 4, max_wait: float = 30.0,
          progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Execute due operations until none is left, waiting for short rate-limit pauses (up to ``max_wait``)."""
    here = contextvars.copy_context()  # the run this drain works for (hub.runs.CURRENT_RUN), in every thread
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while True:
            ids = due_operations(rt, limit=200, route_id=route_id)
            if ids:
                for state in pool.map(lambda i: here.copy().run(execute, rt, i), ids):
                    if progress:
                        progress(state)
                continue
            with rt.store.sessions() as s:
                query = select(func.min(Operation.available_at)).where(Operation.state == "pending")
                if route_id is not None:
                    query = query.where(Operation.route_id == route_id)
                next_at = s.scalar(query)
            if next_at is None:
                break
            wait = (next_at - utcnow()).total_seconds()
            if wait > max_wait:
                break
            time.sleep(min(max(wait, 0.01), WAKE_CHECK_SECONDS))
    return operation_counts(rt, route_id)


def operation_counts(rt: Runtime, route_id: int | None = None) -> dict[str, int]:
    with rt.store.sessions() as s:
        query = select(Operation.state, func.count()).group_by(Operation.state)
        if route_id is not None:
            query = query.where(Operation.route_id == route_id)
        return {state: n for state, n in s.execute(query)}
