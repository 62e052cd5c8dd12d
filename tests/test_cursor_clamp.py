"""A future-dated record never hides later ones: the core quarantines it and refuses a cursor in the future, and
the CPlug connector does not move its cursor past now (sandboxes over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hub.store.schema import ApiCall, Cursor
from hub.sync.ingest import FUTURE_TOLERANCE
from hub.testing import Harness
from sqlalchemy import select

from tests.cplug_pos.test_cplug_connector import connect, cplug, pull  # noqa: F401  (the fixture)


@pytest.fixture
def lojinha(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.start(tmp_path, "lojinha", "products", "products")
    try:
        yield h
    finally:
        h.stop()


def test_the_cplug_cursor_does_not_jump_to_a_future_sale(cplug):  # noqa: F811
    box, url = cplug
    box.seed("sales", 3)
    future = box.seed_future("sales")
    ctx = connect(box, url)
    incoming, _, cursor = pull(ctx, "sales")
    assert future in {r.external_id for r in incoming}, "the future sale still comes through, for the core to refuse"
    moved_to = datetime.fromisoformat(cursor)
    assert moved_to <= datetime.now(UTC) + FUTURE_TOLERANCE, f"the cursor should stay at now, not {cursor}"
    later = box.seed("sales", 2)
    incoming, _, _ = pull(ctx, "sales", cursor)
    assert set(later) <= {r.external_id for r in incoming}, "sales rung up later must still be read"
    ctx.close()


def test_the_core_refuses_a_future_cursor_and_says_which_plugin_gave_it(lojinha: Harness):
    """The example plugin's cursor is the newest stamp it saw: the core keeps the previous one instead."""
    lojinha.sandbox.seed("products", 3)
    assert lojinha.pull().ok
    with lojinha.rt.store.sessions() as s:
        before = s.scalar(select(Cursor.position).where(Cursor.stream == "products"))
    future = lojinha.sandbox.seed_future("products")

    report = lojinha.pull()

    assert report.ok, report
    with lojinha.rt.store.sessions() as s:
        after = s.scalar(select(Cursor.position).where(Cursor.stream == "products"))
        warnings = [c.error or "" for c in s.scalars(select(ApiCall).where(ApiCall.error.is_not(None)))]
    assert after == before, f"the cursor must not move to the future (was {before}, now {after})"
    assert any("plugin lojinha" in w and "cursor" in w and "2099" in w for w in warnings), warnings
    (q,) = lojinha.quarantined()
    assert q.record == future and q.field == "updated_at", q
    assert "conformance" in q.reason and "lojinha" in q.reason and "2099" in q.reason, q.reason
    assert q.fix.startswith("Correct the record's date/clock on lojinha"), q.fix
