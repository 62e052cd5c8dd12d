"""Broker choice: Redis when ``HUB_REDIS_URL`` is set (many ``hub run`` processes share the work), otherwise an
in-process broker. The in-process broker loses nothing on a crash: the outbox in the database is the truth and
the broker only carries operation ids as triggers."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)


def middleware() -> list[dramatiq.Middleware]:
    # Dramatiq's own retries only cover a crash inside the core; business retries and waits live in the DB.
    return [AgeLimit(), TimeLimit(time_limit=15 * 60_000), ShutdownNotifications(), Callbacks(), Pipelines(),
            Retries(max_retries=3, min_backoff=1_000, max_backoff=30_000)]


def make_broker(redis_url: str | None, namespace: str = "hub") -> dramatiq.Broker:
    if redis_url:
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=redis_url, namespace=namespace, middleware=middleware())  # type: ignore[no-untyped-call]
    return StubBroker(middleware=middleware())
