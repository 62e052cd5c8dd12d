"""Bling as a source of sales: orders read by change date (list, then one detail per changed order), mapped with
their situação's name, items, payments named after their forma de pagamento, freight and discount; a status
changed by hand in Bling is read by the next pull alone; a sale the hub pushed comes back as the same record."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hub.store.schema import Cursor, Record
from sqlalchemy import select

from tests.bling.conftest import CPF_OK, World, parents, sale


def _sales(world: World) -> dict[str, dict]:
    with world.rt.store.sessions() as s:
        return {r.payload["number"]: r.payload for r in s.scalars(select(Record).where(Record.entity == "sales"))}


def _calls(world: World, since: int) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in world.box.request_log[since:]]


def _typed_order(world: World) -> tuple[str, dict]:
    """An order a person types into Bling: two items (one with 10% off), two formas de pagamento (the card in two
    parcelas), freight and a discount in reais, for a contact with a CPF."""
    world.box.seed("payment_methods", 5)
    world.box.seed("products", 4)
    methods = {m["descricao"]: m for m in world.box.records("payment_methods")}
    cash, card = methods["Dinheiro"], next(m for m in methods.values() if m["tipoPagamento"] == 3)
    first, second = [p for p in parents(world.box) if not p.get("variacoes")][:2]
    contact = world.box.create("customers", {"nome": "Joana Compradora", "tipo": "F", "situacao": "A",
                                             "numeroDocumento": CPF_OK})
    # items: 2 x 50.00 at 10% off = 90.00, 1 x 30.00 = 30.00; discount 5.00; freight 15.00: total 130.00
    body = {"data": "2026-11-20", "dataSaida": "2026-11-20", "dataPrevista": "2026-11-25",
            "contato": {"id": int(contact)}, "numeroLoja": "",
            "itens": [{"produto": {"id": first["id"]}, "codigo": first["codigo"], "descricao": first["nome"],
                       "quantidade": 2.0, "valor": 50.0, "desconto": 10.0},
                      {"produto": {"id": second["id"]}, "codigo": second["codigo"], "descricao": second["nome"],
                       "quantidade": 1.0, "valor": 30.0}],
            "parcelas": [{"dataVencimento": "2026-11-20", "valor": 30.0, "formaPagamento": {"id": cash["id"]}},
                         {"dataVencimento": "2026-12-20", "valor": 50.0, "formaPagamento": {"id": card["id"]}},
                         {"dataVencimento": "2027-01-19", "valor": 50.0, "formaPagamento": {"id": card["id"]}}],
            "desconto": {"valor": 5.0, "unidade": "REAL"}, "transporte": {"frete": 15.0},
            "observacoes": "Digitado no Bling"}
    order_id = world.box.create("sales", body)
    return order_id, {"cash": cash, "card": card, "first": first, "second": second}


def test_an_order_typed_into_bling_arrives_whole_with_its_situacao_by_name(world: World):
    order_id, ref = _typed_order(world)
    world.route("orders", ["sales"], pull=True)
    before = len(world.box.request_log)
    report = world.pull("orders")
    assert report.ok, report
    (order,) = world.box.records("sales")
    got = _sales(world)[str(order["numero"])]
    assert got["channel"] == "bling" and got["status"] == "Em aberto"
    assert got["customer"]["document"] == CPF_OK and got["customer"]["name"] == "Joana Compradora"
    assert [(i["sku"], Decimal(i["quantity"]), Decimal(i["unit_price"]), Decimal(i["discount"]))
            for i in got["items"]] == [(ref["first"]["codigo"], 2, 50, 10), (ref["second"]["codigo"], 1, 30, 0)]
    assert Decimal(got["discount"]) == 5 and Decimal(got["freight"]) == 15
    payments = {p["name"]: p for p in got["payments"]}
    assert set(payments) == {ref["cash"]["descricao"], ref["card"]["descricao"]}
    card = payments[ref["card"]["descricao"]]
    assert card["method"] == str(ref["card"]["id"]) and card["installments"] == 2 and Decimal(card["amount"]) == 100
    assert card["tpag"] == "03"
    assert got["notes"] == "Digitado no Bling" and got["issued_at"].startswith("2026-11-20")
    calls = _calls(world, before)
    assert calls.count(f"GET /pedidos/vendas/{order_id}") == 1, "one detail per changed order"
    listing = next(c for c in world.box.request_log[before:] if c["path"] == "/pedidos/vendas")
    query = dict(listing["query"])
    assert {"dataAlteracaoInicial", "dataAlteracaoFinal"} <= set(query), "read by change date"
    assert len(calls) <= 7, f"a list, a detail and the account's lookups, nothing more: {calls}"


def test_a_status_changed_by_hand_in_bling_is_read_by_the_next_pull_alone(world: World):
    ids = world.box.seed("sales", 30)
    world.route("orders", ["sales"], pull=True)
    assert world.pull("orders").ok
    assert len(_sales(world)) == 30
    with world.rt.store.sessions() as s:
        cursor = json.loads(s.scalar(select(Cursor.position).where(Cursor.stream == "sales")))
    now = datetime.now(ZoneInfo("America/Sao_Paulo")).replace(tzinfo=None)
    assert cursor["mode"] == "incremental" and datetime.strptime(cursor["since"], "%Y-%m-%d %H:%M:%S") <= now, \
        "the cursor never passes now"
    world.box.age("sales", 3600)
    world.box.set_order_status(ids[4], "Em andamento")
    before = len(world.box.request_log)
    again = world.pull("orders")
    counts = again.streams[0].counts
    assert again.ok and counts.changed == 1 and counts.new == 0 and counts.unchanged == 0
    numero = next(o["numero"] for o in world.box.records("sales") if str(o["id"]) == ids[4])
    assert _sales(world)[str(numero)]["status"] == "Em andamento"
    details = [c for c in _calls(world, before) if c.startswith("GET /pedidos/vendas/")]
    assert details == [f"GET /pedidos/vendas/{ids[4]}"], "only the changed order is read in detail"
    # Nothing changed since: the overlap re-reads the one order changed a moment ago, no other.
    third = world.pull("orders")
    assert third.streams[0].counts.new + third.streams[0].counts.changed == 0


def test_a_sale_the_hub_pushed_into_bling_comes_back_as_the_same_record(world: World):
    world.box.seed("products", 4)
    world.box.seed("payment_methods", 5)
    skus = [(p["codigo"], "10.00") for p in parents(world.box) if not p.get("variacoes")][:1]
    world.route("push", ["sales"], mappings={"payment_methods": {"dinheiro": "Dinheiro"}})
    world.stage("push", "sales", sale("Z-77", skus, status="Em aberto"))
    assert world.drain().get("failed", 0) == 0
    (order,) = world.box.records("sales")
    world.box.set_order_status(order["id"], "Atendido")
    typed = world.box.seed("sales", 1)[0]  # typed into Bling by hand: not the route's to carry
    # The route back carries the status only (as Zydon's does): the sale keeps its own number and items.
    world.route("back", ["sales"], pull=True, updates={"sales": ["status"]})
    world.box.request_log.clear()
    report = world.pull("back")
    assert report.ok, report
    details = {r["path"] for r in world.box.request_log if r["path"].startswith("/pedidos/vendas/")}
    assert details == {f"/pedidos/vendas/{order['id']}"}, f"only the hub's order is read in detail, not {typed}"
    with world.rt.store.sessions() as s:
        rows = list(s.scalars(select(Record).where(Record.entity == "sales")))
    assert len(rows) == 1, "the binding made on the push links the order read back: no second sale"
    assert rows[0].payload["status"] == "Atendido" and rows[0].payload["number"] == "Z-77"


def test_an_order_with_an_item_typed_without_a_product_is_quarantined_and_the_rest_arrive(world: World):
    world.box.seed("sales", 5)
    bad = world.box.seed_invalid("sales")
    world.route("orders", ["sales"], pull=True)
    report = world.pull("orders")
    assert report.ok and report.streams[0].counts.new == 5
    (q,) = world.quarantined()
    assert q.record == bad and q.field == "items.0.sku"
    assert "Pedidos de venda" in q.fix and "pedido de venda" in q.reason


def test_a_first_sync_reads_only_the_recent_orders(world: World):
    ids = world.box.seed("sales", 6)
    old = ids[0]
    stamp = (datetime.now(ZoneInfo("America/Sao_Paulo")) - timedelta(days=200)).strftime("%Y-%m-%d %H:%M:%S")
    with world.box.state.lock:
        world.box.state.ometa[int(old)].changed = stamp
        world.box.state.changed()
    world.route("orders", ["sales"], pull=True)
    assert world.pull("orders").ok
    numbers = {str(o["numero"]) for o in world.box.records("sales") if str(o["id"]) != old}
    assert set(_sales(world)) == numbers, "orders untouched for 200 days are left out (sales_history_days: 90)"
