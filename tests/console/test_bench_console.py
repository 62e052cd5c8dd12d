"""`hub bench console`'s plan check, small: the console's lists walk indexes (keyset pages), never a whole table."""

from __future__ import annotations

import pytest
from hub.console.bench import TENANT, full_scans, plans, populate


def test_the_console_lists_are_served_by_indexes(rt):
    if rt.store.dialect != "sqlite":
        pytest.skip("PostgreSQL rightly seq-scans tables this small; `hub bench console --database-url` checks it")
    ids = populate(rt.store, 600, 3000, lambda _line: None)
    plan = plans(rt.store, ids[TENANT])
    assert set(full_scans(plan)) <= {"runs page"}, plan
    assert "ix_api_log_tenant_at" in plan["api log, keyset page"]
    assert "ix_api_log_tenant_at" in plan["api log, one day"]
    assert "ix_operations_route" in plan["failed operations"]
    # The routes page's bounded counts: one index range each (the bindings' unique (connection, entity, id)).
    assert "COVERING INDEX" in plan["routes page, records"] and "bindings" in plan["routes page, records"]
    assert "ix_operations_route" in plan["routes page, failed"]
