"""How long the logs that grow with every call are kept: the API log and the webhooks received.

A Bling account at its 3 requests/s writes about 260,000 API-log rows a day; kept for ever they would fill the disk
of a small install and slow every screen that reads them. ``hub run`` deletes rows older than
``HUB_LOG_RETENTION_DAYS`` (default 30; 0 keeps everything) once an hour, a batch at a time so no transaction holds
the tables for long; ``hub db prune`` does it on demand. The outbox is never pruned: its idempotency keys are what
keep a write from being made twice (an NF-e issued once, a sale created once), however old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Connection, Tenant, WebhookEvent

__all__ = ["BATCH", "Pruned", "prune"]

BATCH = 5_000
"""Rows deleted per transaction."""


@dataclass
class Pruned:
    api_log: int = 0
    webhook_events: int = 0
    done: bool = True
    """False when ``max_batches`` stopped it before everything old was gone (the next call goes on)."""


def prune(store: Store, days: int, *, now: datetime | None = None, batch: int = BATCH,
          max_batches: int | None = None) -> Pruned:
    """Delete API-log rows and received webhooks older than ``days`` (nothing when ``days`` <= 0). Each query reads
    an index range: the API log per tenant (``ix_api_log_tenant_at``), webhooks per connection."""
    pruned = Pruned()
    if days <= 0:
        return pruned
    cutoff = (now or utcnow()) - timedelta(days=days)
    with store.sessions() as s:
        tenants = list(s.scalars(select(Tenant.id)))
        connections = list(s.scalars(select(Connection.id)))
    batches = 0
    for table, column, owner, owners in ((ApiCall, ApiCall.at, ApiCall.tenant_id, tenants),
                                         (WebhookEvent, WebhookEvent.received_at, WebhookEvent.connection_id,
                                          connections)):
        for key in owners:
            while True:
                if max_batches is not None and batches >= max_batches:
                    pruned.done = False
                    return pruned
                with store.begin() as s:
                    ids = select(table.id).where(owner == key, column < cutoff).limit(batch).scalar_subquery()
                    n = int(s.execute(delete(table).where(table.id.in_(ids))).rowcount)  # type: ignore[attr-defined]
                batches += 1
                if table is ApiCall:
                    pruned.api_log += n
                else:
                    pruned.webhook_events += n
                if n < batch:
                    break
    return pruned
