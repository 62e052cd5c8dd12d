"""Shared fixtures: a fresh store per test (SQLite, or PostgreSQL with HUB_TEST_DATABASE_URL) and served sandboxes."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub.crypto import Vault
from hub.ratelimit import PROCESS_THROTTLE
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
    """Each test's sandboxes are new platforms, even on a port an earlier test's sandbox used: no cached lookup, and
    no budget booked by an earlier test (Amazon's searchOrders refills one call per 3 minutes)."""
    clear_connection_caches()
    PROCESS_THROTTLE.reset()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, database_url=fresh_database_url(tmp_path), operation_lease_seconds=5)


@pytest.fixture
def hub(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Invoke `hub ...` (with the installed plugins' commands) on the test's store, as the operator's shell would:
    HUB_* in the environment. ``hub("status", "loja", "--json")`` returns click's result (output, exit code)."""
    from click.testing import CliRunner
    from hub.cli import with_plugins
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("HUB_MAX_BACKOFF_SECONDS", "0.05")
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args, **kw: runner.invoke(with_plugins(), list(args), **kw)
    get_settings.cache_clear()


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


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker of the PostgreSQL + Redis pass gets its own database and Redis number, since
    every store test empties the database it is given."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = os.environ.get("HUB_TEST_DATABASE_URL", "")
    if not worker or not url:
        return
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    import psycopg

    with psycopg.connect(base.set(drivername="postgresql", database="postgres").render_as_string(False),
                         autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["HUB_TEST_DATABASE_URL"] = base.set(database=name).render_as_string(False)
    redis_url = os.environ.get("HUB_TEST_REDIS_URL", "")
    if redis_url:
        head, _, number = redis_url.rpartition("/")
        index = int(worker.removeprefix("gw") or 0)
        os.environ["HUB_TEST_REDIS_URL"] = f"{head}/{int(number) - index}"


BACKEND_WORDS = ("fresh_database_url", "scratch_runtime", "Harness", "hub.store", "HUB_TEST_", "Runtime(")
"""What a test (or one of its fixtures, or its module) says when it touches the store or the broker."""


def _touches_backend(item: pytest.Item) -> bool:
    if item.get_closest_marker("own_store") is not None:
        return False
    if {"rt", "settings"} & set(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    sources = [m for m in (getattr(item, "module", None), inspect.getmodule(function)) if m is not None]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        sources.extend(d.func for d in defs)
    for source in sources:
        try:
            text = inspect.getsource(source)
        except (OSError, TypeError):
            return True
        if any(word in text for word in BACKEND_WORDS):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL + Redis pass runs only the tests that touch the store or the broker: the others (sandboxes,
    mappers, parsers, CLI runs on their own SQLite home) would repeat the SQLite pass exactly."""
    if not os.environ.get("HUB_TEST_DATABASE_URL") or os.environ.get("HUB_TEST_EVERYTHING"):
        return
    keep = [item for item in items if _touches_backend(item)]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
