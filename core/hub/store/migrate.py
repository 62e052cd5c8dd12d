"""Schema migrations through Alembic, without an ini file: ``hub db upgrade`` and the at-head check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.errors import SchemaOutOfDate
from hub.store.engine import Store


def migrations_dir() -> Path:
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(store: Store) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # configparser interpolates "%": a URL-encoded password or option (%3D) must be escaped
    cfg.set_main_option("sqlalchemy.url", store.engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(store: Store, revision: str = "head") -> None:
    cfg = alembic_config(store)
    with store.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(store: Store, revision: str) -> None:
    cfg = alembic_config(store)
    with store.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def current_and_heads(store: Store) -> tuple[set[str], set[str]]:
    heads = set(ScriptDirectory.from_config(alembic_config(store)).get_heads())
    with store.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current, heads


def require_head(store: Store) -> None:
    """Workers refuse to start on an out-of-date schema."""
    current, heads = current_and_heads(store)
    if current != heads:
        raise SchemaOutOfDate(
            f"database schema is at {sorted(current) or 'nothing'}, the code expects {sorted(heads)}",
            fix="Run `hub db upgrade` (it is safe to run on every deploy).",
        )
