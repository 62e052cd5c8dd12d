"""What a catalog's steady state costs in Bling calls (issue 15): an incremental run must cost what changed, not
what the catalog holds.

The floor is Bling's: ``GET /produtos`` filters by stock with ``filtroSaldoEstoque`` (0 zero, 1 positive,
2 negative), whose default is 1 and which has no "all" (the published spec; research brief §5, §6.1), so a read
that must see every changed product makes one list call per stock filter even when nothing changed. Categories
have no change date (§6.2), so the categories stream reads its list on every run. Webhooks (``pull_records``) are
the way under that floor: an announced product costs its detail alone.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hub.store.engine import utcnow
from hub.store.schema import Route
from hub.sync import targets
from hub.sync.pull import sync_route
from sqlalchemy import select

from tests.bling.conftest import TENANT, World, parents


def _run(world: World, route: str, *, targeted: bool = False) -> Counter[str]:
    """One run of ``route``: the Bling calls it made, by path (``/produtos?filtroSaldoEstoque=N`` for a list)."""
    log = world.box.state.counters.log
    start = len(log)
    report = sync_route(world.rt, TENANT, route, targeted=targeted)
    assert report.ok, report
    calls: Counter[str] = Counter()
    for call in log[start:]:
        query = dict(call["query"])
        path = call["path"]
        if path == "/produtos":
            path += f"?filtroSaldoEstoque={query.get('filtroSaldoEstoque')}"
        elif path.startswith("/produtos/"):
            path = "/produtos/{id}"
        calls[path] += 1
    return calls


LISTS = Counter({"/produtos?filtroSaldoEstoque=1": 1, "/produtos?filtroSaldoEstoque=0": 1,
                 "/produtos?filtroSaldoEstoque=2": 1})


def _catalog(world: World, streams: list[str]) -> list[str]:
    world.box.seed("categories", 8)
    ids = world.box.seed("products", 60)
    world.box.seed("sellers", 2)
    world.box.age("products", 600)  # nothing seeded changed in the overlap window of the runs below
    world.route("catalog", streams, pull=True)
    assert _run(world, "catalog")["/produtos/{id}"] == len([p for p in parents(world.box) if p["situacao"] == "A"])
    return [str(p["id"]) for p in parents(world.box) if str(p["id"]) in ids and not p.get("variacoes")]


def test_an_incremental_run_with_no_change_costs_one_list_call_per_stock_filter_and_nothing_else(world: World):
    _catalog(world, ["products"])
    assert _run(world, "catalog") == LISTS, "no detail, no categories: nothing changed"


def test_a_cold_cache_costs_no_categories_read_when_nothing_changed(world: World):
    from hub.sync.context import clear_connection_caches

    _catalog(world, ["products"])
    clear_connection_caches()  # another process, or the categories' cache expired
    assert _run(world, "catalog") == LISTS


def test_one_changed_product_costs_the_three_list_calls_and_its_detail(world: World):
    products = _catalog(world, ["products"])
    world.box.touch("products", products[0])
    assert _run(world, "catalog") == LISTS + Counter({"/produtos/{id}": 1})


def test_an_incremental_catalog_route_with_no_change_costs_five_calls(world: World):
    """Categories (a full list: no change date), the three product passes, sellers (one page)."""
    _catalog(world, ["categories", "products", "sellers"])
    assert _run(world, "catalog") == LISTS + Counter({"/categorias/produtos": 1, "/vendedores": 1})


def test_a_product_a_webhook_announced_costs_one_bling_call(world: World):
    products = _catalog(world, ["products"])
    world.box.touch("products", products[1])
    with world.rt.store.begin() as s:
        route = s.scalar(select(Route.id).where(Route.tenant_id == TENANT, Route.name == "catalog"))
        assert route is not None
        targets.record(s, world.rt.store.engine.dialect.name, TENANT, route, "products", [products[1]],
                       utcnow() - timedelta(seconds=1))
    assert _run(world, "catalog", targeted=True) == Counter({"/produtos/{id}": 1}), "no list, no categories"
