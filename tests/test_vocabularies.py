"""Open vocabularies and typed transitions: a plugin adds DE-PARA tables and streams without a change to the core;
the route's ``stores`` table places stock on the sink's warehouses; the core matches the route's transition rules and
runs every plugin's actions, each once, on the platform that declares it.

"Tabelas" is a test-only plugin (a price-table platform in the spirit of Zydon's price lists), registered on a local
plugin manager and talking real HTTP to a tiny app served on loopback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml
from hub import hookimpl
from hub.config import apply as applying
from hub.config import routes as config
from hub.models import Action, Canonical, StatusTransition, StockLevel
from hub.platform import Incoming, MappingTable, Page, Platform, PushResult, StreamSpec
from hub.plugins import PluginManager
from hub.registry import Registry
from hub.sandbox import Served, serve
from hub.store.schema import Connection, Operation, Quarantine
from hub.sync.context import ConnectorContext, RouteView
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import sync_route
from hub_bling import plugin as bling_plugin
from hub_bling.sandbox import BlingSandbox
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as Path_

from tests.bling.conftest import FAST, TENANT, make_world, parents, sale
from tests.flows import DEMO_ROUTES


class PriceTable(Canonical):
    """One SKU's price in one price list: a stream the core does not know."""

    unique_key: ClassVar[bool] = True
    key_field: ClassVar[str | None] = "sku"
    entity: Literal["price_tables"] = "price_tables"
    sku: str
    price_list: str
    price: Decimal

    def natural_key(self) -> str:
        return f"{self.sku}@{self.price_list}"


class TabelasApp:
    """The platform: stock per warehouse, prices per price list, and stamps on orders (its one action)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stock: dict[str, dict[str, str]] = {}
        self.prices: dict[str, dict[str, str]] = {}
        self.stamps: list[dict[str, str]] = []
        self.app = Starlette(routes=[
            Path_("/stock", self._list_stock), Path_("/price-tables", self._list_prices),
            Path_("/stock/{warehouse}/{sku}", self._put_stock, methods=["PUT"]),
            Path_("/price-tables/{price_list}/{sku}", self._put_price, methods=["PUT"]),
            Path_("/orders/{order}/stamps", self._stamp, methods=["POST"]),
        ])

    async def _list_stock(self, request: Request) -> JSONResponse:
        with self.lock:
            return JSONResponse([{"deposito": w, "sku": s, "saldo": q} for w, rows in self.stock.items()
                                 for s, q in rows.items()])

    async def _list_prices(self, request: Request) -> JSONResponse:
        with self.lock:
            return JSONResponse([{"tabela": t, "sku": s, "preco": p} for t, rows in self.prices.items()
                                 for s, p in rows.items()])

    async def _put_stock(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self.lock:
            self.stock.setdefault(request.path_params["warehouse"], {})[request.path_params["sku"]] = body["saldo"]
        return JSONResponse({"ok": True})

    async def _put_price(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self.lock:
            self.prices.setdefault(request.path_params["price_list"], {})[request.path_params["sku"]] = body["preco"]
        return JSONResponse({"ok": True})

    async def _stamp(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self.lock:
            self.stamps.append({"order": request.path_params["order"], **body})
        return JSONResponse({"ok": True})


class Tabelas:
    """The test plugin: declares the ``price_lists`` table, the ``price_tables`` stream and the ``carimbar`` action."""

    @hookimpl
    def register_platforms(self, register: Callable[[Platform], None]) -> None:
        register(Platform(
            name="tabelas", title="Tabelas (test platform)",
            pulls=frozenset({"stock", "price_tables"}), pushes=frozenset({"stock", "price_tables"}),
            actions=frozenset({"carimbar"}),
            mapping_tables=(MappingTable("price_lists", "price list of a price table", "price_tables", "price_list"),),
            streams=(StreamSpec("price_tables", PriceTable),),
        ))

    @hookimpl
    def pull_catalog(self, ctx: ConnectorContext, stream: str) -> Iterable[Page]:
        if stream == "stock":
            rows = ctx.http.get("/stock").raise_for_status().json()
            yield Page(records=[Incoming(external_id=f"{r['sku']}@{r['deposito']}", data=StockLevel(
                sku=r["sku"], warehouse=r["deposito"], quantity=Decimal(r["saldo"]))) for r in rows])
        else:
            rows = ctx.http.get("/price-tables").raise_for_status().json()
            yield Page(records=[Incoming(external_id=f"{r['sku']}@{r['tabela']}", data=PriceTable(
                sku=r["sku"], price_list=r["tabela"], price=Decimal(r["preco"]))) for r in rows])

    @hookimpl
    def push_stock(self, ctx: ConnectorContext, record: StockLevel) -> PushResult:
        ctx.http.put(f"/stock/{record.warehouse}/{record.sku}", json={"saldo": str(record.quantity)}).raise_for_status()
        return PushResult(external_id=f"{record.sku}@{record.warehouse}")

    @hookimpl
    def push_catalog(self, ctx: ConnectorContext, stream: str, record: Canonical) -> PushResult:
        assert isinstance(record, PriceTable), f"tabelas writes only price tables, not {stream}"
        ctx.http.put(f"/price-tables/{record.price_list}/{record.sku}",
                     json={"preco": str(record.price)}).raise_for_status()
        return PushResult(external_id=record.natural_key())

    @hookimpl
    def on_status_transition(self, transition: StatusTransition, route: RouteView,
                             actions: list[Action]) -> list[Action] | None:
        """Stamp the order on the till whenever a sale is closed, with or without a rule saying so."""
        if route.source.platform == "tabelas" and transition.to_status == "Atendido":
            return [Action(name="carimbar")]
        return None

    @hookimpl
    def perform_action(self, ctx: ConnectorContext, action: Action, external_id: str) -> PushResult:
        ctx.http.post(f"/orders/{external_id}/stamps", json={"action": action.name, **action.params}
                      ).raise_for_status()
        return PushResult(external_id=external_id)


def local_registry() -> Registry:
    manager = PluginManager()
    manager.register_module(bling_plugin, "bling")
    manager.register_module(Tabelas(), "tabelas")
    return Registry(manager)


@pytest.fixture
def tabelas_rt(rt: Runtime) -> Runtime:
    return Runtime(store=rt.store, vault=rt.vault, registry=local_registry(), lease_seconds=5,
                   max_backoff_seconds=0.05)


@pytest.fixture
def two_apps() -> Iterator[tuple[tuple[TabelasApp, Served], tuple[TabelasApp, Served]]]:
    matriz, filial = TabelasApp(), TabelasApp()
    served = serve(matriz.app), serve(filial.app)
    yield (matriz, served[0]), (filial, served[1])
    for one in served:
        one.stop()


@pytest.fixture
def bling_served() -> Iterator[tuple[BlingSandbox, Served]]:
    box = BlingSandbox(rate_per_second=FAST)
    served = serve(box.app)
    yield box, served
    served.stop()


def routes_file(tmp_path: Path, matriz_url: str, filial_url: str, mappings: dict[str, Any]) -> Path:
    data = {"version": 1, "tenants": {"rede": {"name": "Rede de Lojas", "connections": {
        "matriz": {"platform": "tabelas", "options": {"base_url": matriz_url}},
        "filial": {"platform": "tabelas", "options": {"base_url": filial_url}}},
        "routes": {"tabelas": {"source": "matriz", "sink": "filial", "streams": ["stock", "price_tables"],
                               "mappings": mappings}}}}}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_a_mapping_table_or_stream_no_plugin_declares_is_refused_naming_the_key(rt: Runtime, tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch):
    for var in ("LOJINHA_ERP_URL", "LOJINHA_SHOP_URL"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    data = yaml.safe_load(DEMO_ROUTES.read_text())
    data["tenants"]["demo"]["routes"]["sales"]["mappings"]["canais"] = {"loja": "pdv"}
    data["tenants"]["demo"]["routes"]["catalog"]["streams"].append("price_tables")
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    parsed = config.load(path)  # the file's shape is fine: names are checked against the installed plugins
    errors, _ = applying.check(parsed, rt.registry, str(path))
    table = [e for e in errors if "routes.sales.mappings.canais" in e]
    assert table and str(path) in table[0] and "unknown DE-PARA table 'canais'" in table[0] and \
        "fix:" in table[0] and "payment_methods" in table[0], f"the unknown table should be named with a fix: {errors}"
    stream = [e for e in errors if "routes.catalog.streams" in e and "'price_tables'" in e]
    assert stream and "install the plugin that declares it" in stream[0], f"unknown stream, with a fix: {errors}"


def test_a_table_declared_by_a_platform_not_on_the_route_is_refused(tabelas_rt: Runtime, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOJINHA_ERP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LOJINHA_SHOP_URL", "http://127.0.0.1:9")
    manager = PluginManager()
    manager.load_entry_points(allow={"lojinha"})
    manager.register_module(Tabelas(), "tabelas")
    registry = Registry(manager)
    data = yaml.safe_load(DEMO_ROUTES.read_text())
    data["tenants"]["demo"]["routes"]["sales"]["mappings"]["price_lists"] = {"varejo": "Tabela 1"}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    errors, _ = applying.check(config.load(path), registry, str(path))
    assert any("routes.sales.mappings.price_lists" in e and "tabelas, which is not an end of this route" in e
               for e in errors), f"a lojinha route cannot use tabelas's table: {errors}"


def test_a_plugin_declared_table_and_stream_validate_and_sync_and_stock_lands_on_the_mapped_warehouses(
        tabelas_rt: Runtime, tmp_path: Path, two_apps: Any):
    (matriz, matriz_served), (filial, filial_served) = two_apps
    matriz.stock = {"loja-1": {"CAM-P": "7", "CAM-M": "2"}, "loja-2": {"CAM-P": "3"}}
    matriz.prices = {"varejo": {"CAM-P": "59.90"}, "atacado": {"CAM-P": "39.90"}}
    path = routes_file(tmp_path, matriz_served.base_url, filial_served.base_url, {
        "stores": {"loja-1": "Depósito Centro", "loja-2": "Depósito Shopping"},
        "price_lists": {"varejo": "Tabela 1", "atacado": "Tabela 2"}})
    parsed = config.load(path)
    errors, _ = applying.check(parsed, tabelas_rt.registry, str(path))
    assert errors == [], f"a table and a stream the plugin declares should validate: {errors}"
    applying.apply(parsed, tabelas_rt.store, tabelas_rt.vault, tabelas_rt.registry)

    report = sync_route(tabelas_rt, "rede", "tabelas")
    assert report.ok, report
    drain(tabelas_rt, max_wait=5)
    assert filial.stock == {"Depósito Centro": {"CAM-P": "7", "CAM-M": "2"}, "Depósito Shopping": {"CAM-P": "3"}}, \
        f"each store's balance should land on its own mapped warehouse, none overwriting another: {filial.stock}"
    assert filial.prices == {"Tabela 1": {"CAM-P": "59.90"}, "Tabela 2": {"CAM-P": "39.90"}}, \
        f"price tables should land on the mapped price lists: {filial.prices}"

    matriz.stock["loja-3"] = {"CAM-G": "1"}
    sync_route(tabelas_rt, "rede", "tabelas")
    drain(tabelas_rt, max_wait=5)
    assert "loja-3" not in filial.stock, "an unmapped warehouse must not be written under its own name"
    with tabelas_rt.store.sessions() as s:
        refused = list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == "rede",
                                                          Quarantine.field == "warehouse")))
    assert len(refused) == 1 and "'loja-3'" in refused[0].reason and "mappings.stores" in refused[0].fix, \
        [(q.reason, q.fix) for q in refused]


def test_the_core_matches_star_rules_skips_the_others_and_runs_every_plugins_actions_once(
        tabelas_rt: Runtime, bling_served: Any, two_apps: Any):
    box, served = bling_served
    (till, till_served), _ = two_apps
    world = make_world(tabelas_rt, box, served)
    with tabelas_rt.store.begin() as s:  # the point of sale is a tabelas account: its plugin stamps closed orders
        s.execute(update(Connection).where(Connection.id == world.peer_id).values(
            platform="tabelas", options={"base_url": till_served.base_url}))
    box.seed("products", 4)
    box.seed("payment_methods", 5)
    skus = [(p["codigo"], "10.00") for p in parents(box) if not p.get("variacoes")]
    world.route("sales", ["sales"], mappings={
        "payment_methods": {"dinheiro": "Dinheiro"}, "statuses": {"closed": "Atendido", "canceled": "Cancelado"}},
        transitions=[{"from": "*", "to": "atendido", "actions": ["lancar-estoque"]},
                     {"from": "Cancelado", "to": "Atendido", "actions": ["lancar-contas"]}])
    closed = sale("9001", skus[:1], status="closed")
    world.stage("sales", "sales", closed)
    world.stage("sales", "sales", closed)
    assert world.drain().get("failed", 0) == 0
    actions = world.ops(kind="perform_action")
    assert sorted((a.params["action"], a.connection_id) for a in actions) == sorted(
        [("lancar-estoque", world.bling_id), ("carimbar", world.peer_id)]), \
        "'*' matches a new sale, the Cancelado rule does not; the till's plugin's own action runs on the till"
    assert all(a.state == "done" for a in actions), [(a.params, a.state, a.last_error) for a in actions]
    (order,) = [o for o in box.records("sales") if o.get("numeroLoja") == "9001"]
    moves = [m for m in box.records("stock_movements") if str(m["pedido"]["id"]) == str(order["id"])]
    assert [m["operacao"] for m in moves] == ["S"], f"stock posted once on Bling: {moves}"
    assert not [a for a in box.records("accounts") if str(a["pedido"]["id"]) == str(order["id"])], \
        "the non-matching rule's lancar-contas must not run"
    assert till.stamps == [{"order": "pos-9001", "action": "carimbar", "from": "", "to": "Atendido"}], \
        f"the source plugin's answer runs once, on its own connection, with the change: {till.stamps}"
    with tabelas_rt.store.sessions() as s:
        assert s.scalar(select(Operation.id).where(Operation.tenant_id == TENANT, Operation.state != "done")) is None
