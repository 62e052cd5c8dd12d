"""Planner statistics during a first big sync.

PostgreSQL plans with the statistics of the last ANALYZE. On a first sync the binding and record tables grow from
empty faster than autovacuum re-analyzes them, so the planner keeps believing they are tiny and stops using the
external-id part of the bindings index: each page then scans every binding (seen: 100,000 products slowing to a
crawl). Analyzing after pages 1, 4, 16, 64, ... keeps plans right for the cost of a few cheap, sampled ANALYZEs.

Only a table that has grown is analyzed: one whose rows changed since its last ANALYZE outnumber the rows the planner
knows of. A run that updates a big catalog changes no plan, and three ANALYZEs of 100,000-row tables cost it seconds.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

TABLES = ("bindings", "records", "operations")


def due(page_number: int) -> bool:
    """True on pages 1, 4, 16, 64, 256, ..."""
    n = page_number
    while n > 1 and n % 4 == 0:
        n //= 4
    return n == 1


INCREMENTAL_FROM = 4
"""An incremental run analyzes from this page on: its first pages change a handful of rows of tables autovacuum
already analyzes, and an ANALYZE samples up to 30,000 rows of each (seconds on a 100,000-record store: more than
the run itself)."""


def wanted(page_number: int, *, full: bool = True) -> bool:
    """Whether a run analyzes after this page: a full run on every due page, an incremental run (``full=False``)
    only once it has brought many pages."""
    return due(page_number) and (full or page_number >= INCREMENTAL_FROM)


GROWN = text("""
    SELECT t.relname FROM pg_stat_user_tables t
    JOIN pg_class c ON c.oid = t.relid
    LEFT JOIN pg_stat_xact_user_tables x ON x.relid = t.relid
    WHERE t.schemaname = current_schema() AND t.relname IN :tables
      AND t.n_mod_since_analyze + coalesce(x.n_tup_ins + x.n_tup_upd + x.n_tup_del, 0) > greatest(c.reltuples, 0)
""").bindparams(bindparam("tables", expanding=True))
"""The tables whose changes since their last ANALYZE (this transaction's included) outnumber the rows the planner
knows of: a table grown from empty, or doubled since."""


def grown(s: Session) -> list[str]:
    return sorted(s.scalars(GROWN, {"tables": list(TABLES)}))


def refresh(s: Session, page_number: int, *, full: bool = True) -> None:
    if s.get_bind().dialect.name == "postgresql" and wanted(page_number, full=full):
        tables = grown(s)
        if tables:
            s.execute(text(f"ANALYZE {', '.join(tables)}"))
