"""Records a webhook named, read by themselves; and the wake-up that starts their read in every ``hub run``.

A verified event that names its record (``WebhookEvent.external_id``) leaves one row per route, stream and record
in ``webhook_targets`` (committed with the event's dedupe row). When the route runs, a stream with such rows whose
plugin implements ``pull_records`` reads only those records, and the rows it answered are deleted; the stream's
cursor does not move, so the incremental run stays the backstop: it runs on the route's schedule, and picks up
whatever a lost webhook did not announce. A route with no schedule (only webhooks start it) converges as it always
did, at a later webhook: the first run it makes :data:`BACKSTOP_SECONDS` after its last incremental read is
incremental again.

The database is the truth; the wake-up is only a hint. It calls this process's listeners (a ``hub run`` serving the
webhooks itself) and, when the store's processes share a Redis (``HUB_REDIS_URL``), publishes on a channel every
``hub run`` subscribes to (:class:`Subscriber`), so the process that received the webhook need not be the one that
runs the route. A lost message costs a scheduler tick, nothing more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub.store.schema import WebhookTarget

log = logging.getLogger("hub.webhooks")

MAX_TARGETED = 500
"""More records than this waiting for one stream: the incremental run reads them more cheaply than one by one."""
BACKSTOP_SECONDS = 900.0
"""A route with no schedule (only webhooks start it): a webhook-started run this long after the last incremental
read is incremental (what a lost webhook did not announce arrives then)."""
MAX_ID = 100
ANY = "*"
"""Recorded for an event that names no record (or one too long to keep): the stream's next run is incremental."""

LISTENERS: list[Callable[[], object]] = []
"""This process's schedulers (``hub run``): called when a webhook marks routes due."""


# --- the store's rows -----------------------------------------------------------------------------------------


def record(s: Session, dialect: str, tenant: str, route_id: int, stream: str,
           external_ids: Iterable[str | None], now: datetime) -> int:
    """Remember that ``external_ids`` of ``stream`` changed for route ``route_id`` (None: an event that names no
    record); a record already waiting only has its ``received_at`` moved (one row per record however many events).
    An event naming no record, or an id longer than the column, records :data:`ANY`: the incremental run reads it."""
    ids = sorted({i if i and len(i) <= MAX_ID else ANY for i in external_ids})
    if not ids:
        return 0
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(WebhookTarget).values([
        {"tenant_id": tenant, "route_id": route_id, "stream": stream, "external_id": i, "received_at": now}
        for i in ids])
    s.execute(stmt.on_conflict_do_update(index_elements=["route_id", "stream", "external_id"],
                                         set_={"received_at": stmt.excluded.received_at}))
    return len(ids)


def pending(s: Session, route_id: int, stream: str, limit: int = MAX_TARGETED + 1) -> dict[str, datetime]:
    """The records waiting for ``stream`` of the route, oldest first: external id -> when it was last announced."""
    rows = s.execute(select(WebhookTarget.external_id, WebhookTarget.received_at)
                     .where(WebhookTarget.route_id == route_id, WebhookTarget.stream == stream)
                     .order_by(WebhookTarget.received_at, WebhookTarget.id).limit(limit))
    return {ext: at for ext, at in rows}


def clear(s: Session, route_id: int, stream: str, read_from: datetime, ids: Iterable[str] | None = None) -> int:
    """Forget the records a read that started at ``read_from`` answered (``ids``: only those; None: every one).
    A record announced again after the read started stays, for the next run."""
    stmt = delete(WebhookTarget).where(WebhookTarget.route_id == route_id, WebhookTarget.stream == stream,
                                       WebhookTarget.received_at <= read_from)
    if ids is not None:
        chosen = list(ids)
        if not chosen:
            return 0
        stmt = stmt.where(WebhookTarget.external_id.in_(chosen))
    return int(s.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


# --- the wake-up ----------------------------------------------------------------------------------------------


def channel(redis_url: str) -> str:
    """One channel per Redis database: the processes sharing a store share their broker's database too. Redis
    pub/sub ignores database numbers, hence the number in the name."""
    db = (urlparse(redis_url).path or "/0").strip("/") or "0"
    return f"hub:routes-due:{db}"


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client(redis_url: str) -> Any:
    import redis

    with _clients_lock:
        client = _clients.get(redis_url)
        if client is None:
            client = _clients[redis_url] = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        return client


def wake(redis_url: str | None) -> None:
    """Routes are due now: start this process's schedulers, and every other ``hub run``'s through Redis."""
    for listener in list(LISTENERS):
        listener()
    if redis_url:
        try:
            _client(redis_url).publish(channel(redis_url), b"due")
        except Exception as exc:  # a hint only: the other processes' scheduler ticks pick the routes up
            log.warning("could not tell the other hub run processes that routes are due (%s: %s); they start "
                        "them at their next scheduler tick", type(exc).__name__, exc)


class Subscriber:
    """Calls ``on_due`` whenever any process publishes a wake-up on the Redis the ``hub run`` processes share;
    reconnects after an error (meanwhile the scheduler's tick still runs every due route)."""

    def __init__(self, redis_url: str, on_due: Callable[[], object]) -> None:
        self.redis_url = redis_url
        self.on_due = on_due
        self.ready = threading.Event()
        """Set once subscribed (tests wait for it before publishing)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-wakeup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import redis

        while not self._stop.is_set():
            client = None
            try:
                client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(channel(self.redis_url))
                self.ready.set()
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=0.5) is not None:
                        self.on_due()
                pubsub.close()
            except Exception as exc:
                self.ready.clear()
                log.warning("wake-up subscription lost (%s: %s); retrying", type(exc).__name__, exc)
                self._stop.wait(1.0)
            finally:
                if client is not None:
                    client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
