"""Poison records: one bad record is quarantined with its field while the rest of its page goes through, a number
used twice is never merged, and one stream's surprise does not stop the others (CPlug sandbox over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hub import Page, Platform, hookimpl
from hub.models import Sale, SaleItem
from hub.plugins import PluginManager
from hub.registry import Registry
from hub.store.engine import utcnow
from hub.store.schema import ApiCall, Binding, Connection, Cursor, Record, Route, Tenant
from hub.sync.loading import Runtime
from hub.sync.pull import sync_route
from hub.testing import Harness
from pydantic import ValidationError
from sqlalchemy import select

from tests.integration.conftest import Pair, pair  # noqa: F401  (the fixture)


@pytest.fixture
def sales(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.start(tmp_path, "cplug", "sales", "products", sandbox_options={"rate_per_second": None})
    try:
        yield h
    finally:
        h.stop()


def _variant(h: Harness, **changes: Any) -> str:
    """A copy of a seeded sale, with a new CPlug id and ``changes``, as a user could type it into the POS."""
    base = {k: v for k, v in h.sandbox.records("sales")[0].items() if k not in ("id", "created_at", "updated_at")}
    return str(h.sandbox.create("sales", {**base, **changes}))


def _bound_ids(h: Harness, entity: str) -> set[str]:
    with h.rt.store.sessions() as s:
        return set(s.scalars(select(Binding.external_id).where(Binding.entity == entity,
                                                               Binding.tenant_id == "conformance")))


# --- 2. one poison record does not block its stream --------------------------------------------------------------


def test_poison_sales_are_quarantined_with_their_field_and_the_good_ones_arrive(sales: Harness):
    good = sales.sandbox.seed("sales", 2)
    first = sales.sandbox.records("sales")[0]
    as_text = _variant(sales, number="P-1", items="3x camiseta")
    with_nul = _variant(sales, number="P-2", items=[{**first["items"][0], "name": "Camiseta\u0000azul"}])
    too_long = _variant(sales, number="9" * 300)

    report = sales.pull()

    assert report.ok, f"a poison sale must not stop the pull: {report}"
    assert _bound_ids(sales, "sales") == set(good), "the two good sales were expected in the store"
    quarantined = {q.record: q for q in sales.quarantined()}
    assert set(quarantined) == {as_text, with_nul, too_long}, f"the 3 poison sales should be quarantined: {quarantined}"
    assert quarantined[as_text].field == "items", quarantined[as_text].reason
    assert quarantined[with_nul].field == "items.0.name", quarantined[with_nul].reason
    assert "NUL" in quarantined[with_nul].reason and quarantined[with_nul].fix
    assert quarantined[too_long].field == "number", quarantined[too_long].reason
    assert "200" in quarantined[too_long].reason and "cplug" in quarantined[too_long].reason
    assert all("cplug" in q.fix.lower() for q in quarantined.values()), [q.fix for q in quarantined.values()]


def test_a_page_the_database_refuses_is_written_record_by_record(sales: Harness):
    """A constraint the model does not know (here a trigger refusing one sale number) costs that record only."""
    good = sales.sandbox.seed("sales", 3)
    refused = sales.sandbox.records("sales")[1]
    key = f"cplug:{refused['number']}"
    with sales.rt.store.begin() as s:
        if s.get_bind().dialect.name == "sqlite":
            s.connection().exec_driver_sql(
                f"CREATE TRIGGER refuse_one BEFORE INSERT ON records WHEN NEW.natural_key = '{key}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END")
        else:
            s.connection().exec_driver_sql("CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN "
                              f"IF NEW.natural_key = '{key}' THEN RAISE EXCEPTION 'refused by the database'; END IF; "
                              "RETURN NEW; END $$ LANGUAGE plpgsql")
            s.connection().exec_driver_sql("CREATE TRIGGER refuse_one BEFORE INSERT ON records FOR EACH ROW "
                              "EXECUTE FUNCTION refuse_one()")

    report = sales.pull()

    assert report.ok, f"a write error in one record must not stop the pull: {report}"
    assert _bound_ids(sales, "sales") == set(good) - {str(refused["id"])}, "the other sales were expected stored"
    (q,) = sales.quarantined()
    assert q.record == str(refused["id"]) and "refused by the database" in q.reason, q.reason
    with sales.rt.store.sessions() as s:
        cursor = s.scalar(select(Cursor).where(Cursor.stream == "sales"))
        assert cursor is not None and cursor.position, "the cursor is committed with the rest of the page"


# --- 3. a number used twice is never merged -------------------------------------------------------------------


def test_a_sale_number_used_twice_is_quarantined_never_merged(sales: Harness):
    (first,) = sales.sandbox.seed("sales", 1)
    number = sales.sandbox.records("sales")[0]["number"]
    assert sales.pull().ok
    twin = _variant(sales, status="closed")

    report = sales.pull()

    assert report.ok, report
    assert _bound_ids(sales, "sales") == {first}, "the second sale must not be merged into the first"
    (q,) = sales.quarantined()
    assert q.record == twin and q.field == "number", q
    assert f"sale number {number} is already used by cplug sale {first}" in q.reason, q.reason
    assert "on cplug" in q.fix, q.fix
    with sales.rt.store.sessions() as s:
        assert len(list(s.scalars(select(Record).where(Record.entity == "sales")))) == 1


def test_two_new_sales_with_one_number_in_a_page_keep_only_the_first(sales: Harness):
    (first,) = sales.sandbox.seed("sales", 1)
    twin = _variant(sales)
    assert sales.pull().ok
    assert _bound_ids(sales, "sales") == {first}
    (q,) = sales.quarantined()
    assert q.record == twin and first in q.reason, q.reason


# --- 4. negative quantities and totals ------------------------------------------------------------------------


def _sale(items: list[dict[str, str]], **extra: Any) -> Sale:
    return Sale(number="1", issued_at="2026-01-01T10:00:00", items=items, **extra)


@pytest.mark.parametrize(("items", "extra", "field", "words"), [
    ([{"sku": "A", "quantity": "-3", "unit_price": "10"}], {}, "items.0.quantity", "greater than zero"),
    ([{"sku": "A", "quantity": "0", "unit_price": "10"}], {}, "items.0.quantity", "greater than zero"),
    ([{"sku": "A", "quantity": "1", "unit_price": "10", "discount": "11"}], {}, "items.0.discount", "exceeds"),
    ([{"sku": "A", "quantity": "1", "unit_price": "10"}], {"discount": "99710.30"}, "discount", "exceeds"),
])
def test_a_sale_with_negative_quantity_or_discount_above_the_total_is_refused(items, extra, field, words):
    with pytest.raises(ValidationError) as caught:
        _sale(items, **extra)
    text = str(caught.value)
    assert field in text and words in text and "fix" in text.lower(), f"expected {field} and a fix in: {text}"


def test_a_valid_sale_and_a_negative_stock_level_still_pass():
    sale = _sale([{"sku": "A", "quantity": "2", "unit_price": "10", "discount": "20"}], discount="0", freight="5")
    assert sale.total == Decimal("5")
    from hub.models import StockLevel

    assert StockLevel(sku="A", quantity="-4").quantity == Decimal("-4"), "ERPs allow negative stock"
    assert SaleItem(sku="A", quantity="0.5", unit_price="3").total == Decimal("1.5")


# --- 5. the payment-method preflight renews an expired token -------------------------------------------------------


def test_the_payment_method_preflight_renews_an_expired_token(pair: Pair):  # noqa: F811
    pair.catalog(4)
    pair.apply()
    assert pair.sync("catalog").ok
    sku = next(p["sku"] for p in pair.cplug.records("products") if not p.get("variations"))
    pair.cplug.sale(items=[{"sku": sku, "amount": 1}])
    pair.cplug.inject_fault("401", 1)

    report = pair.sync("sales")

    assert report.ok, f"a 401 on the payment-method check should renew the token and go on: {report}"
    assert len(pair.bling_orders()) == 1, "the sale was expected in Bling"


# --- 6. one stream's surprise does not stop the others -------------------------------------------------------------


class _Surprising:
    """A test-only plugin: ``products`` raises a KeyError, ``customers`` yields a dict, ``sellers`` works."""

    @hookimpl
    def register_platforms(self, register: Any) -> None:
        register(Platform(name="surprising", title="Surprising", pulls=frozenset({"products", "customers",
                                                                                  "sellers"})))

    @hookimpl
    def pull_catalog(self, ctx: Any, stream: str, since: str | None) -> Iterator[Any]:
        if stream == "products":
            raise KeyError("codigo")
        if stream == "customers":
            yield {"records": []}
            return
        from hub import Incoming

        yield Page(records=[Incoming(external_id="1", data={"name": "Vendedora"})], cursor="done")


def test_an_unexpected_error_in_one_stream_is_recorded_and_the_others_run(rt: Runtime):
    manager = PluginManager()
    manager.register_module(_Surprising(), "surprising")
    local = Runtime(store=rt.store, vault=rt.vault, registry=Registry(manager), lease_seconds=5)
    now = utcnow()
    with rt.store.begin() as s:
        s.add(Tenant(id="t", name="T", created_at=now))
        s.flush()
        ids = []
        for name, platform in (("src", "surprising"), ("dst", "nowhere")):
            conn = Connection(tenant_id="t", name=name, platform=platform, options={}, credentials=None,
                              credentials_env={}, token_expires_at=None, paused_until=None, pause_reason=None,
                              updated_at=now)
            s.add(conn)
            s.flush()
            ids.append(conn.id)
        s.add(Route(tenant_id="t", name="r", source_id=ids[0], sink_id=ids[1],
                    config={"streams": ["products", "customers", "sellers"]}, enabled=True, schedule_seconds=None,
                    next_run_at=None, updated_at=now))

    report = sync_route(local, "t", "r")

    by_stream = {r.stream: r for r in report.streams}
    assert by_stream["sellers"].error is None and by_stream["sellers"].counts.new == 1, "sellers should still run"
    assert "KeyError" in (by_stream["products"].error or "") and "surprising" in (by_stream["products"].error or "")
    assert "customers" in (by_stream["customers"].error or "") and "Page" in (by_stream["customers"].error or "")
    with rt.store.sessions() as s:
        cursors = {c.stream: c for c in s.scalars(select(Cursor))}
        assert "KeyError" in (cursors["products"].last_error or ""), "the error is kept on the stream's cursor"
        logged = [c.error or "" for c in s.scalars(select(ApiCall).where(ApiCall.error.is_not(None)))]
    assert any("plugin surprising" in e and "products" in e for e in logged), logged
