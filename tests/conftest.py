"""Shared fixtures: a fresh store per test (SQLite, or PostgreSQL with HUB_TEST_DATABASE_URL) and served sandboxes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hub.crypto import Vault
from hub.registry import get_registry
from hub.sandbox import serve
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store
from hub.sync.context import clear_connection_caches
from hub.sync.loading import Runtime
from hub.testing import fresh_database_url


@pytest.fixture(autouse=True)
def _fresh_connection_caches() -> None:
    """Each test's sandboxes are new platforms, even on a port an earlier test's sandbox used."""
    clear_connection_caches()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, database_url=fresh_database_url(tmp_path), operation_lease_seconds=5)


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    store = Store.from_url(settings.resolved_database_url())
    migrate.upgrade(store)
    yield Runtime(store=store, vault=Vault(settings), registry=get_registry(), lease_seconds=5,
                  max_backoff_seconds=0.05)
    store.engine.dispose()


@pytest.fixture
def lojinha_pair():
    """Two lojinha sandboxes served on loopback: an 'erp' and a 'shop'."""
    from hub_example.sandbox import LojinhaSandbox

    erp, shop = LojinhaSandbox(), LojinhaSandbox()
    servers = [serve(erp.app), serve(shop.app)]
    yield (erp, servers[0].base_url), (shop, servers[1].base_url)
    for server in servers:
        server.stop()
