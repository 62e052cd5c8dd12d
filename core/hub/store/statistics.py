"""Planner statistics during a first big sync.

PostgreSQL plans with the statistics of the last ANALYZE. On a first sync the binding and record tables grow from
empty faster than autovacuum re-analyzes them, so the planner keeps believing they are tiny and stops using the
external-id part of the bindings index: each page then scans every binding (seen: 100,000 products slowing to a
crawl). Analyzing after pages 1, 4, 16, 64, ... keeps plans right for the cost of a few cheap, sampled ANALYZEs.
"""

from __future__ import annotations

from sqlalchemy import text
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


def refresh(s: Session, page_number: int, *, full: bool = True) -> None:
    if s.get_bind().dialect.name == "postgresql" and wanted(page_number, full=full):
        s.execute(text(f"ANALYZE {', '.join(TABLES)}"))
