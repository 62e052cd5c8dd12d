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


def test_a_first_load_analyzes_its_growing_tables_and_an_update_of_the_catalog_analyzes_none(rt):
    """ANALYZE is for tables that grew since the planner last looked: a first load from empty gets it; updating
    1,000 of a 2,000-product catalog changes no plan, and three ANALYZEs of a 100,000-row store cost seconds."""
    if rt.store.dialect != "postgresql":
        pytest.skip("SQLite has no planner statistics to refresh")
    from hub.bench.store import _pages, _setup
    from hub.store import statistics
    from hub.sync.ingest import ingest_page
    from hub.sync.loading import route_view
    from sqlalchemy import event, text

    route = _setup(rt.store)
    with rt.store.sessions() as s:
        s.add(route)
        view = route_view(s, route)
        s.expunge(route)
    analyzed: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("ANALYZE"):
            analyzed.append(statement)

    def load(records: int, version: int) -> list[str]:
        analyzed.clear()
        for number, page in enumerate(_pages(records, 100, version), start=1):
            with rt.store.begin() as s:
                s.add(route)
                ingest_page(s, rt.registry, route, view, "products", page)
                s.expunge(route)
                statistics.refresh(s, number)
                # A page of a real sync takes longer than the server's 1 s between flushes of its counters.
                s.execute(text("SELECT pg_stat_force_next_flush()"))
        return list(analyzed)

    event.listen(rt.store.engine, "before_cursor_execute", seen)
    first = load(2000, 1)
    update = load(1000, 2)
    assert first and first[0] == "ANALYZE bindings, operations, records", "the first page analyzes what it filled"
    assert update == []
