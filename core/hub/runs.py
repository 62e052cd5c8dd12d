"""The run history (``hub runs``): each run of a route, when it started and ended, and what it moved.

A run's operations, quarantined records, API calls and 429s are those of its route inside its time window (from
its start to its end, or now while it runs), so a run records nothing on the hot path beyond its start and end.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from hub.privacy import mask_documents
from hub.store.engine import utcnow
from hub.store.schema import ApiCall, Operation, Quarantine, Route, Run

if TYPE_CHECKING:
    from hub.sync.loading import Runtime
    from hub.sync.pull import SyncReport


def start_run(rt: Runtime, route: Route, trigger: str) -> int:
    with rt.store.begin() as s:
        run = Run(tenant_id=route.tenant_id, route_id=route.id, route=route.name, trigger=trigger, status="running",
                  started_at=utcnow(), ended_at=None, streams={}, error=None)
        s.add(run)
        s.flush()
        return run.id


def stream_rows(report: SyncReport) -> dict[str, Any]:
    return {r.stream: {"pages": r.pages, "read": r.counts.new + r.counts.changed + r.counts.unchanged
                       + r.counts.quarantined + r.counts.skipped,
                       "new": r.counts.new, "changed": r.counts.changed, "unchanged": r.counts.unchanged,
                       "quarantined": r.counts.quarantined, "operations": r.counts.operations,
                       "error": mask_documents(r.error)} for r in report.streams}


def window_counts(rt: Runtime, run: Run, until: datetime | None = None) -> dict[str, Any]:
    """What happened on the run's route between its start and ``until`` (its end, or now)."""
    end = until or run.ended_at or utcnow()
    with rt.store.sessions() as s:
        route = s.get(Route, run.route_id)
        ops = {state: n for state, n in s.execute(
            select(Operation.state, func.count()).where(
                Operation.route_id == run.route_id, Operation.updated_at >= run.started_at,
                Operation.updated_at <= end).group_by(Operation.state))}
        refused = s.scalar(select(func.count()).select_from(Quarantine).where(
            Quarantine.route_id == run.route_id, Quarantine.created_at >= run.started_at,
            Quarantine.created_at <= end)) or 0
        conns = [route.source_id, route.sink_id] if route is not None else []
        calls = s.execute(select(func.count(), func.count().filter(ApiCall.status == 429)).where(
            ApiCall.tenant_id == run.tenant_id, ApiCall.connection_id.in_(conns), ApiCall.at >= run.started_at,
            ApiCall.at <= end)).one()
    return {"operations": ops, "quarantined": int(refused), "api_calls": int(calls[0]),
            "rate_limited": int(calls[1])}


def end_run(rt: Runtime, run_id: int, report: SyncReport | None, error: str | None = None) -> dict[str, Any]:
    """Close the run with its streams' counts and its window's figures; return the figures."""
    now = utcnow()
    with rt.store.sessions() as s:
        run = s.get_one(Run, run_id)
        s.expunge(run)
    figures = window_counts(rt, run, now)
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


def list_runs(rt: Runtime, tenant: str, route: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first; a run still going shows its figures so far."""
    with rt.store.sessions() as s:
        query = select(Run).where(Run.tenant_id == tenant).order_by(Run.id.desc()).limit(limit)
        if route is not None:
            query = query.where(Run.route == route)
        runs = list(s.scalars(query))
        s.expunge_all()
    rows = []
    for run in runs:
        live = window_counts(rt, run) if run.ended_at is None else None
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
