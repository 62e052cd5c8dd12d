"""Engines and sessions. SQLite gets foreign keys, WAL and a busy timeout on every connection."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ARRAY, ColumnElement, Engine, any_, bindparam, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker


def utcnow() -> datetime:
    """Naive UTC: what the store keeps (SQLite has no time zones)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _create_private(url: str) -> None:
    """Create a new SQLite file owner-only (0600); SQLite gives its -wal and -shm files the same mode."""
    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path):
        with suppress(FileExistsError, FileNotFoundError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


SQLITE_CACHE_KIB = 32 * 1024
"""Each SQLite connection's page cache. SQLite's default, 2 MiB, holds a sliver of the indexes a catalog's pages
touch: an update of 100,000 products ran at 3,300-3,900 records/s with it and 4,300-4,600 with this (`hub bench
store`). Pages are cached as they are read, so a small store costs only its size."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Row values hold personal data (CPF/CNPJ in payloads): database errors name the statement, never its values.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        _create_private(url)
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: no deadlock between two upgrading readers.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class Store:
    """The database handle the rest of the core is given (never a global)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session


def one_of(s: Session, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """``column IN values`` spelt so the statement's text does not grow with the list: on PostgreSQL one array
    parameter (``= ANY(:values)``), which psycopg converts and caches once per statement instead of once per call
    (a page's 500-key IN list was re-rendered, re-parsed and re-planned on every page); elsewhere a plain IN."""
    if s.get_bind().dialect.name == "postgresql":
        return cast(ColumnElement[bool], column == any_(bindparam(None, list(values), type_=ARRAY(column.type))))
    return cast(ColumnElement[bool], column.in_(list(values)))
