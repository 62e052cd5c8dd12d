"""Running a route's pending operations in this process (``hub sync``), without a broker."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from sqlalchemy import func, select

from hub.store.engine import utcnow
from hub.store.schema import Operation
from hub.sync.loading import Runtime
from hub.sync.operations import due_operations, execute

WAKE_CHECK_SECONDS = 0.25
"""A drain waiting for the next due operation looks again this often: a webhook may make one due earlier."""


def drain(rt: Runtime, route_id: int | None = None, *, threads: int = 4, max_wait: float = 30.0,
          progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Execute due operations until none is left, waiting for short rate-limit pauses (up to ``max_wait``).

    A thread that frees up takes the next due operation at once: one slow operation (a write queued for the
    account's budget) never holds back one that became due meanwhile, such as a note a webhook woke."""
    here = contextvars.copy_context()  # the run this drain works for (hub.runs.CURRENT_RUN), in every thread
    running: dict[Future[str], int] = {}
    queued: list[int] = []
    fetched = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while True:
            if len(running) < threads and (not queued or time.monotonic() - fetched >= WAKE_CHECK_SECONDS):
                busy = set(running.values())
                queued = [i for i in due_operations(rt, limit=200, route_id=route_id) if i not in busy]
                fetched = time.monotonic()
            while queued and len(running) < threads:
                op_id = queued.pop(0)
                running[pool.submit(here.copy().run, execute, rt, op_id)] = op_id
            if running:
                done, _ = wait(running, timeout=WAKE_CHECK_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    state = future.result()
                    if progress:
                        progress(state)
                continue
            if queued:
                continue
            with rt.store.sessions() as s:
                query = select(func.min(Operation.available_at)).where(Operation.state == "pending")
                if route_id is not None:
                    query = query.where(Operation.route_id == route_id)
                next_at = s.scalar(query)
            if next_at is None:
                break
            pause = (next_at - utcnow()).total_seconds()
            if pause > max_wait:
                break
            time.sleep(min(max(pause, 0.01), WAKE_CHECK_SECONDS))
    return operation_counts(rt, route_id)


def operation_counts(rt: Runtime, route_id: int | None = None) -> dict[str, int]:
    with rt.store.sessions() as s:
        query = select(Operation.state, func.count()).group_by(Operation.state)
        if route_id is not None:
            query = query.where(Operation.route_id == route_id)
        return {state: n for state, n in s.execute(query)}
