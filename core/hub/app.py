"""Assembling a runtime from settings: the one place that reads the environment."""

from __future__ import annotations

from hub.crypto import Vault
from hub.ratelimit import make_throttle
from hub.registry import get_registry
from hub.settings import Settings, get_settings
from hub.store.engine import Store
from hub.sync.loading import Runtime


def build_runtime(settings: Settings | None = None, store: Store | None = None) -> Runtime:
    """The runtime of ``hub run``, ``hub sync`` and the CLI. It renews strictly rotating tokens in a detached
    process (:mod:`hub.sync.renewal`), which rebuilds it from the same settings, so a worker killed mid-rotation
    does not lose the new pair."""
    settings = settings or get_settings()
    return Runtime(
        store=store or Store.from_url(settings.resolved_database_url()),
        vault=Vault(settings),
        registry=get_registry(),
        lease_seconds=settings.operation_lease_seconds,
        max_attempts=settings.max_attempts,
        max_backoff_seconds=settings.max_backoff_seconds,
        throttle=make_throttle(settings.redis_url),
        detached_renewal=True,
        settings=settings,
    )
