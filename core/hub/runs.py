"""The run history (``hub runs``): each run of a route, when it started and ended, and what it moved.

A run's operations, quarantined records, API calls and 429s are its own: while it runs, :data:`CURRENT_RUN` names it
in its thread (and the threads it hands work to), and every API log row and quarantined record it writes and every
operation it queues or runs carries its id (an operation a worker runs stays its queuing run's). Two runs of one
route at once (``hub sync`` beside ``hub run``'s schedule) never count each other's work, which a time window on the
route could not tell apart.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from hub.privacy import mask_documents
from hub.store.engine import utcnow
from hub.store.schema import ApiCall, Operation, Quarantine, Route, Run

if TYPE_CHECKING:
    from hub.sync.loading import Runtime
    from hub.sync.pull import SyncReport


CURRENT_RUN: ContextVar[int | None] = ContextVar("hub_current_run", default=None)
"""The run this thread works for, stamped on the rows it writes (``run_id``); None outside a run (a worker)."""


def start_run(rt: Runtime, route: Route, trigger: str) -> int:
    """Record the run and make it this thread's current run until :func:`end_run`."""
    with rt.store.begin() as s:
        run = Run(tenant_id=route.tenant_id, route_id=route.id, route=route.name, trigger=trigger, status="running",
                  started_at=utcnow(), ended_at=None, streams={}, error=None)
        s.add(run)
        s.flush()
        run_id = run.id
    CURRENT_RUN.set(run_id)
    return run_id


def stream_rows(report: SyncReport) -> dict[str, Any]:
    return {r.stream: {"pages": r.pages, "read": r.counts.new + r.counts.changed + r.counts.unchanged
                       + r.counts.quarantined + r.counts.skipped,
                       "new": r.counts.new, "changed": r.counts.changed, "unchanged": r.counts.unchanged,
                       "quarantined": r.counts.quarantined, "operations": r.counts.operations,
                       "error": mask_documents(r.error)} for r in report.streams}


def run_counts(rt: Runtime, run_id: int) -> dict[str, Any]:
    """What the run itself did: the operations it ran (by outcome), the records it refused, its API calls and 429s."""
    with rt.store.sessions() as s:
        ops = {state: n for state, n in s.execute(
            select(Operation.state, func.count()).where(Operation.run_id == run_id).group_by(Operation.state))}
        refused = s.scalar(select(func.count()).select_from(Quarantine).where(Quarantine.run_id == run_id)) or 0
        calls = s.execute(select(func.count(), func.count().filter(ApiCall.status == 429))
                          .where(ApiCall.run_id == run_id)).one()
    return {"operations": ops, "quarantined": int(refused), "api_calls": int(calls[0]),
            "rate_limited": int(calls[1])}


def end_run(rt: Runtime, run_id: int, report: SyncReport | None, error: str | None = None) -> dict[str, Any]:
    """Close the run with its streams' counts and its own figures; return the figures."""
    if CURRENT_RUN.get() == run_id:
        CURRENT_RUN.set(None)
    now = utcnow()
    figures = run_counts(rt, run_id)
    if report is not None:  # a record refused again keeps one quarantine row, stamped with the latest run
        figures["quarantined"] = max(figures["quarantined"], sum(r.counts.quarantined for r in report.streams))
    failed_streams = [r for r in report.streams if r.error] if report is not None else []
    error = error or (f"{failed_streams[0].stream}: {failed_streams[0].error}" if failed_streams else None)
    ops = figures["operations"]
    status = "failed" if error or ops.get("failed") else "ok"
    with rt.store.begin() as s:
        s.execute(update(Run).where(Run.id == run_id).values(
            ended_at=now, status=status, streams=stream_rows(report) if report is not None else {},
            operations_done=ops.get("done", 0), operations_failed=ops.get("failed", 0),
            quarantined=figures["quarantined"], api_calls=figures["api_calls"],
            rate_limited=figures["rate_limited"], error=mask_documents(error)))
    return {**figures, "status": status}


def list_runs(rt: Runtime, tenant: str, route: str | None = None, limit: int = 20,
              before: int | None = None) -> list[dict[str, Any]]:
    """The newest runs first; a run still going shows its figures so far. ``before`` (a run id) pages on."""
    with rt.store.sessions() as s:
        query = select(Run).where(Run.tenant_id == tenant).order_by(Run.id.desc()).limit(limit)
        if before is not None:
            query = query.where(Run.id < before)
        if route is not None:
            query = query.where(Run.route == route)
        runs = list(s.scalars(query))
        s.expunge_all()
    rows = []
    for run in runs:
        live = run_counts(rt, run.id) if run.ended_at is None else None
        rows.append({
            "id": run.id, "route": run.route, "trigger": run.trigger, "status": run.status,
            "started_at": run.started_at, "ended_at": run.ended_at,
            "seconds": round((run.ended_at - run.started_at).total_seconds(), 1) if run.ended_at else None,
            "streams": run.streams,
            "operations_done": live["operations"].get("done", 0) if live else run.operations_done,
            "operations_failed": live["operations"].get("failed", 0) if live else run.operations_failed,
            "quarantined": live["quarantined"] if live else run.quarantined,
            "api_calls": live["api_calls"] if live else run.api_calls,
            "rate_limited": live["rate_limited"] if live else run.rate_limited,
            "error": run.error,
        })
    return rows
