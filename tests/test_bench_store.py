"""``hub bench store`` at CI size: it writes on the store HUB_DATABASE_URL names, counts one write per changed
record (the update's writes replace the first pass's, still queued), and leaves nothing of its own behind."""

from __future__ import annotations

import json

from hub.store.schema import Binding, Operation, Record, Tenant
from sqlalchemy import func, select


def test_bench_store_reports_rates_beside_bare_on_the_configured_store_and_cleans_up(hub, rt) -> None:
    result = hub("bench", "store", "--records", "1200", "--page-size", "300", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["database"] == rt.store.dialect, "the bench runs on HUB_DATABASE_URL's store"
    assert figures["insert"]["operations_enqueued"] == 1200 and figures["unchanged"]["operations_enqueued"] == 0
    update = figures["update"]
    assert update["operations_enqueued"] == 1200, update
    assert update["writes_superseded"] == 1200 and update["writes_pending"] == 1200, \
        f"each product's second write replaces its first, still queued: {update}"
    for phase in ("insert", "update"):
        assert figures[phase]["of_bare"] > 0 and figures["bare"][phase]["records_per_s"] > 0, figures
    with rt.store.sessions() as s:
        left = {table.__name__: s.scalar(select(func.count()).select_from(table).where(
            table.tenant_id == "bench")) for table in (Record, Binding, Operation)}  # type: ignore[attr-defined]
        assert s.get(Tenant, "bench") is None
    assert set(left.values()) == {0}, f"the bench's rows are removed after it: {left}"
