"""Alembic environment: batch mode (SQLite has almost no ALTER), the core's metadata, one tree for both dialects."""

from __future__ import annotations

from alembic import context
from hub.settings import get_settings
from hub.store.engine import make_engine
from hub.store.schema import Base
from sqlalchemy import Connection

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        run(given)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url()
    engine = make_engine(url)
    with engine.connect() as connection:
        run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `hub db upgrade` against the database")
main()
