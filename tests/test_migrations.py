"""Migrations: one head, up and down cleanly, models match the DDL; workers refuse an old schema."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from hub.errors import SchemaOutOfDate
from hub.store import migrate
from hub.store.engine import Store
from hub.store.schema import Base
from sqlalchemy import inspect


@pytest.fixture
def store(settings):
    s = Store.from_url(settings.resolved_database_url())
    yield s
    s.engine.dispose()


def test_single_head(store):
    assert len(ScriptDirectory.from_config(migrate.alembic_config(store)).get_heads()) == 1


def test_up_down_up_and_models_match(store):
    migrate.upgrade(store)
    migrate.downgrade(store, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(store)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_workers_refuse_an_out_of_date_schema(store):
    with pytest.raises(SchemaOutOfDate, match="schema is at") as caught:
        migrate.require_head(store)
    assert "hub db upgrade" in caught.value.fix
    migrate.upgrade(store)
    migrate.require_head(store)


def test_statistics_refresh_schedule():
    from hub.store.statistics import due

    assert [n for n in range(1, 300) if due(n)] == [1, 4, 16, 64, 256]


def test_an_incremental_run_of_a_few_pages_never_analyzes_the_store():
    """An ANALYZE samples 30,000 rows of each table: on a 100,000-record store it cost more than the incremental
    run that found one change. A full run analyzes from its first page (its tables grow from empty)."""
    from hub.store.statistics import wanted

    assert [n for n in range(1, 300) if wanted(n)] == [1, 4, 16, 64, 256]
    assert [n for n in range(1, 300) if wanted(n, full=False)] == [4, 16, 64, 256]
