"""A route's runs under ``hub run``: claimed with a lease, retried with backoff when they fail.

The scheduler claims a due route by moving ``next_run_at`` to the end of a lease, so a run whose broker message is
lost, or whose worker is killed, is started again once the lease lapses. When the run ends, the route is due again
its schedule after the run began (at once if the run took longer; never, for a route only webhooks trigger) if it
succeeded, or after an exponential backoff
(``sync_failures`` counts the consecutive failures) if it failed. A webhook that marked the route due while it ran
wins: the changes it announced may have come after the run read them.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from hub.privacy import mask_documents
from hub.store.engine import utcnow
from hub.store.schema import Route
from hub.sync.loading import Runtime
from hub.sync.pull import SyncReport, sync_route

log = logging.getLogger("hub.runner")


@dataclass(frozen=True)
class RunPolicy:
    lease_seconds: float = 180.0
    """How long a claim holds without news. A run in progress renews it every third of that (a heartbeat), so a
    long first sync is never started twice, while a run whose worker was killed comes back within minutes."""
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 30 * 60


class Lease:
    """A claimed run's hold on its route, renewed in the background while the run goes on.

    The renewal is a compare-and-set on ``next_run_at``: once a webhook marks the route due (or anything else moves
    it), the lease is no longer ours and the heartbeat stops, leaving that mark in place."""

    def __init__(self, rt: Runtime, tenant: str, name: str, claimed: datetime | None, policy: RunPolicy) -> None:
        self.rt, self.tenant, self.name, self.policy = rt, tenant, name, policy
        self.claimed = claimed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        if self.claimed is not None:
            self._thread = threading.Thread(target=self._beat, name="hub-route-lease", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.policy.lease_seconds / 3):
            try:
                if not self.renew():
                    return
            except Exception:  # the store may be briefly unreachable; the next beat tries again
                log.warning("could not renew the lease of route %s/%s", self.tenant, self.name, exc_info=True)

    def renew(self) -> bool:
        """Move the lease's end forward; False once the route is no longer held by this run."""
        until = utcnow() + timedelta(seconds=self.policy.lease_seconds)
        with self.rt.store.begin() as s:
            moved = s.execute(update(Route).where(Route.tenant_id == self.tenant, Route.name == self.name,
                                                  Route.next_run_at == self.claimed)
                              .values(next_run_at=until)).rowcount  # type: ignore[attr-defined]
        if moved:
            self.claimed = until
        return bool(moved)


def retry_delay(failures: int, policy: RunPolicy) -> float:
    """Seconds before the next try after ``failures`` consecutive failed runs: doubling, jittered, capped."""
    delay = policy.retry_base_seconds * 2.0 ** min(max(failures - 1, 0), 20) * random.uniform(0.8, 1.2)
    return min(policy.retry_cap_seconds, delay)


def claim(rt: Runtime, route_id: int, due_at: datetime, policy: RunPolicy) -> datetime | None:
    """Take a due route for one run; the lease end it now holds, or None when another instance won."""
    lease_until = utcnow() + timedelta(seconds=policy.lease_seconds)
    with rt.store.begin() as s:
        won = s.execute(update(Route).where(Route.id == route_id, Route.next_run_at == due_at)
                        .values(next_run_at=lease_until)).rowcount  # type: ignore[attr-defined]
    return lease_until if won else None


def run_route(rt: Runtime, tenant: str, name: str, claimed: datetime | None,
              policy: RunPolicy | None = None) -> SyncReport:
    """One scheduled or webhook-triggered run of a route, then its next due time (see the module's docstring)."""
    policy = policy or RunPolicy()
    began = utcnow()
    lease = Lease(rt, tenant, name, claimed, policy)
    try:
        with lease:
            report = sync_route(rt, tenant, name, trigger="schedule", targeted=True)
    except BaseException as exc:  # a crash or the actor's time limit: the route must still come back
        finish(rt, tenant, name, lease.claimed, policy, error=mask_documents(f"{type(exc).__name__}: {exc}"))
        raise
    failed = [s for s in report.streams if s.error]
    log.info("sync %s/%s: %s", tenant, name, ", ".join(
        f"{r.stream} +{r.counts.new} new {r.counts.changed} changed {r.counts.quarantined} quarantined"
        + (" FAILED" if r.error else "") for r in report.streams) or "nothing to read",
        extra={"tenant": tenant, "route": name, "operation": "sync", "outcome": "failed" if failed else "done"})
    for stream in failed:
        log.warning("sync %s/%s %s: %s (fix: %s)", tenant, name, stream.stream, mask_documents(stream.error),
                    mask_documents(stream.fix))
    finish(rt, tenant, name, lease.claimed, policy, error=mask_documents(failed[0].error) if failed else None,
           backstop_at=report.backstop_at, began=began)
    return report


def finish(rt: Runtime, tenant: str, name: str, claimed: datetime | None, policy: RunPolicy,
           error: str | None, backstop_at: datetime | None = None, began: datetime | None = None) -> None:
    """Record a run's outcome: reset or count the failures and set when the route is due next (at the latest at
    ``backstop_at``, when a run read only webhook-named records and its incremental run is due then).

    The schedule counts from when the run ``began``: a route read every 2 s whose read takes one second starts every
    2 s, not every 3 (POS sales came to Bling in pairs, the second waiting for the first's writes)."""
    now = utcnow()
    with rt.store.begin() as s:
        row = s.execute(select(Route.id, Route.schedule_seconds, Route.sync_failures)
                        .where(Route.tenant_id == tenant, Route.name == name)).first()
        if row is None:
            return
        route_id, every, failures = row
        failures = 0 if error is None else (failures or 0) + 1
        if error is None:
            due: datetime | None = max(now, (began or now) + timedelta(seconds=every)) if every else None
            if backstop_at is not None:
                due = max(now, min(due, backstop_at) if due is not None else backstop_at)
        else:
            due = now + timedelta(seconds=retry_delay(failures, policy))
        still_ours = (Route.next_run_at == claimed if claimed is not None
                      else Route.next_run_at.is_(None) | (Route.next_run_at > now))
        moved = s.execute(update(Route).where(Route.id == route_id, still_ours)
                          .values(next_run_at=due, sync_failures=failures)).rowcount  # type: ignore[attr-defined]
        if not moved:  # a webhook marked it due meanwhile: keep that, only count
            s.execute(update(Route).where(Route.id == route_id).values(sync_failures=failures))
    if error is not None:
        log.warning("route %s/%s failed %d time(s) in a row: %s; next try at %s UTC", tenant, name, failures,
                    error, due.isoformat(timespec="seconds") if due else "-")
