"""Pushing sales to Bling: the contact linked by CPF/CNPJ and never duplicated (or the final consumer), payment
methods through the DE-PARA, the seller only when bound, one order per sale whatever the retries, situações by name
per account, and the stock/accounts actions exactly once, on the store's depósito, never doubling the account's own
transition manager."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from hub.models import Payment, Sale, SaleItem, Seller
from hub.store.schema import ApiCall, Binding, Operation
from hub.sync.context import clear_connection_caches
from hub.sync.operations import execute
from sqlalchemy import delete, select, update

from tests.bling.conftest import CPF_OK, TENANT, World, customer, final_consumer_id, parents, sale

MAPPINGS = {"payment_methods": {"dinheiro": "Dinheiro", "pix": "PIX"},
            "statuses": {"open": "Em aberto", "closed": "Atendido", "canceled": "Cancelado"}}
TRANSITIONS = [{"from": "*", "to": "Atendido", "actions": ["lancar-estoque", "lancar-contas"]},
               {"from": "Atendido", "to": "Cancelado", "actions": ["estornar-estoque", "estornar-contas"]}]


def _catalog(world: World, n: int = 6) -> list[tuple[str, str]]:
    world.box.seed("products", n)
    world.box.seed("payment_methods", 5)
    simple = [p for p in parents(world.box) if not p.get("variacoes")]
    return [(p["codigo"], "10.00") for p in simple]


def _sales_route(world: World, **config) -> None:
    world.route("sales", ["sales"], **{"mappings": MAPPINGS, "transitions": TRANSITIONS, **config})


def _orders(world: World, number: str) -> list[dict]:
    return [o for o in world.box.records("sales") if o.get("numeroLoja") == number]


def test_a_customer_is_linked_by_cpf_never_duplicated_and_anonymous_sales_go_to_the_final_consumer(world: World):
    skus = _catalog(world)
    existing = world.box.create("customers", {"nome": "Maria (cadastrada no Bling)", "tipo": "F", "situacao": "A",
                                              "numeroDocumento": CPF_OK})
    _sales_route(world)
    world.stage("sales", "sales", sale("1001", skus[:1], status="closed", buyer=customer()),
                sale("1002", skus[1:2], status="closed", buyer=customer()),
                sale("1003", skus[2:3], status="closed", buyer=customer("11144477735")),
                sale("1004", skus[3:4], status="closed"))
    assert world.drain().get("failed", 0) == 0
    contacts = [c for c in world.box.records("customers") if c.get("numeroDocumento") == CPF_OK]
    assert len(contacts) == 1 and str(contacts[0]["id"]) == str(existing)
    assert str(_orders(world, "1001")[0]["contato"]["id"]) == str(existing)
    assert str(_orders(world, "1002")[0]["contato"]["id"]) == str(existing)
    assert len([c for c in world.box.records("customers") if c.get("numeroDocumento") == "11144477735"]) == 1
    assert _orders(world, "1004")[0]["contato"]["id"] == final_consumer_id(world.box)


def test_payment_methods_go_through_the_de_para_and_an_unmapped_one_is_quarantined(world: World):
    skus = _catalog(world)
    _sales_route(world)
    world.stage("sales", "sales", sale("2001", skus[:1], status="closed", method="pix"),
                sale("2002", skus[:1], status="closed", method="cheque"))
    world.drain()
    order = _orders(world, "2001")[0]
    pix = next(m for m in world.box.records("payment_methods") if m["descricao"] == "PIX")
    assert order["parcelas"][0]["formaPagamento"]["id"] == pix["id"]
    assert _orders(world, "2002") == []
    (q,) = world.quarantined()
    assert q.field == "payments.0.method" and "cheque" in q.reason and "mappings.payment_methods" in q.fix


def test_the_seller_is_sent_only_when_bound_on_both_sides(world: World):
    skus = _catalog(world)
    world.box.seed("sellers", 2)
    bling_seller = world.box.records("sellers")[0]
    _sales_route(world)
    # The POS seller "v1" is bound to Bling's seller (as a sellers sync leaves it); "v2" is not.
    with world.rt.store.begin() as s:
        for conn, ext in ((world.peer_id, "v1"), (world.bling_id, str(bling_seller["id"]))):
            s.add(Binding(tenant_id=TENANT, connection_id=conn, entity="sellers", external_id=ext,
                          canonical_id="seller-1", content_hash=None, origin="pull", synced_at=world.connection()
                          .updated_at))
    from hub.models import Ref

    world.stage("sales", "sales", sale("3001", skus[:1], status="closed", seller=Ref(external_id="v1")),
                sale("3002", skus[:1], status="closed", seller=Ref(external_id="v2")))
    world.drain()
    assert _orders(world, "3001")[0]["vendedor"]["id"] == bling_seller["id"]
    assert not (_orders(world, "3002")[0].get("vendedor") or {}).get("id")
    assert Seller  # the canonical model the binding stands for


def test_one_order_per_sale_after_a_crash_and_after_a_timeout_on_post(world: World):
    skus = _catalog(world)
    _sales_route(world)
    world.stage("sales", "sales", sale("4001", skus[:1], status="closed"))
    world.drain()
    (push,) = world.ops(kind="push_sale")
    # The worker died after Bling created the order, before anything was recorded: the write runs again.
    with world.rt.store.begin() as s:
        s.execute(delete(Binding).where(Binding.connection_id == world.bling_id, Binding.entity == "sales"))
        s.execute(update(Operation).where(Operation.id == push.id).values(state="pending", remote_id=None))
    world.drain()
    assert len(_orders(world, "4001")) == 1
    # A POST whose answer never came (timeout): it is looked up before any retry.
    world.box.inject_fault("timeout-after-write", 1)
    world.stage("sales", "sales", sale("4002", skus[:1], status="closed"))
    world.drain()
    assert len(_orders(world, "4002")) == 1
    assert all(o.state == "done" for o in world.ops(kind="push_sale"))


def test_a_worker_stalled_past_its_lease_writes_nothing_once_another_worker_took_the_sale_over(world: World):
    skus = _catalog(world)
    _sales_route(world)
    world.stage("sales", "sales", sale("4003", skus[:1], status="closed"))
    (push,) = world.ops(kind="push_sale")
    # Worker A claims the sale with a 0.5 s lease, then its first read stalls for 2 s (an overloaded machine, a
    # long wait for a token): long enough for worker B to take the operation over and create the order.
    world.box.fault_delay = 2.0
    world.box.inject_fault("timeout", 1, method="GET")
    stalled = dataclasses.replace(world.rt, lease_seconds=0.5)
    outcome: list[str] = []
    worker_a = threading.Thread(target=lambda: outcome.append(execute(stalled, push.id)))
    worker_a.start()
    time.sleep(1.0)
    clear_connection_caches()  # B is another process: its own caches, not A's half-loaded ones
    assert execute(world.rt, push.id) == "done"
    worker_a.join(10)
    assert len(_orders(world, "4003")) == 1, "the stalled worker created the order a second time"
    assert outcome == ["taken over"]
    with world.rt.store.sessions() as s:
        errors = [e for e in s.scalars(select(ApiCall.error).where(ApiCall.error.is_not(None)))]
    assert any("another worker took this operation over" in e for e in errors), errors
    (push,) = world.ops(kind="push_sale")
    assert push.state == "done" and push.remote_id


def test_a_sales_first_attempt_costs_one_call_plus_the_routes_actions_with_no_lookup_before_the_create(world: World):
    skus = _catalog(world)
    _sales_route(world)
    world.stage("sales", "sales", sale("4101", skus[:1], status="closed"))  # the final consumer, read once
    world.drain()
    world.box.request_log.clear()
    world.stage("sales", "sales", sale("4102", skus[:1], status="closed"))
    world.drain()
    calls = [f"{r['method']} {r['path']}" for r in world.box.request_log if "oauth" not in r["path"]]
    assert len(_orders(world, "4102")) == 1
    assert not any(c.startswith("GET /pedidos/vendas")
                   for c in calls), f"no lookup of the order: {calls}"
    assert len(calls) == 3, f"one create and the two postings of the route's transition table: {calls}"


def test_a_customer_a_sale_just_created_in_bling_is_not_written_again_when_the_customers_stream_brings_it(
        world: World):
    skus = _catalog(world)
    world.route("sales", ["customers", "sales"], mappings=MAPPINGS, transitions=TRANSITIONS)
    buyer = customer(CPF_OK)
    world.stage("sales", "sales", sale("4201", skus[:1], status="closed", buyer=buyer))
    world.drain()
    world.box.request_log.clear()
    world.stage("sales", "customers", buyer)
    world.drain()
    writes = [f"{r['method']} {r['path']}" for r in world.box.request_log
              if "oauth" not in r["path"] and r["method"] != "GET"]
    assert writes == [], f"the contact the sale created has this data already: {writes}"
    assert len([c for c in world.box.records("customers") if c.get("numeroDocumento") == CPF_OK]) == 1
    assert all(o.state == "done" for o in world.ops(kind="push_catalog"))


def test_situacoes_are_resolved_by_name_per_account(world: World, rt):
    from hub_bling.sandbox import BlingSandbox


    skus = _catalog(world)
    _sales_route(world)
    world.stage("sales", "sales", sale("5001", skus[:1], status="closed"))
    world.drain()
    atendido = next(s for s in world.box.records("situacoes") if s["nome"] == "Atendido")
    assert _orders(world, "5001")[0]["situacao"]["id"] == atendido["id"]
    other = BlingSandbox(account_seed=7)
    assert next(s for s in other.records("situacoes") if s["nome"] == "Atendido")["id"] != atendido["id"]


def test_transition_actions_run_exactly_once_on_the_store_deposit(world: World):
    skus = _catalog(world)
    world.box.seed("stock", 6)
    loja = next(d for d in world.box.records("deposits") if d["descricao"] == "Loja Centro")
    _sales_route(world, **{"mappings": {**MAPPINGS, "stores": {"loja-2": "Loja Centro"}}})
    first = sale("6001", skus[:2], status="closed", store="loja-2")
    world.stage("sales", "sales", first)
    world.stage("sales", "sales", first)  # the same sale delivered twice
    world.drain()
    world.stage("sales", "sales", first.model_copy(update={"status": "canceled"}))
    world.drain()
    world.stage("sales", "sales", first.model_copy(update={"status": "canceled"}))
    world.drain()
    (order,) = _orders(world, "6001")
    moves = [m for m in world.box.records("stock_movements") if str(m["pedido"]["id"]) == str(order["id"])]
    assert sorted(m["operacao"] for m in moves) == ["E", "E", "S", "S"], moves
    assert {m["deposito"]["id"] for m in moves} == {loja["id"]}
    accounts = [a for a in world.box.records("accounts") if str(a["pedido"]["id"]) == str(order["id"])]
    assert len(accounts) == 2, accounts
    cancelado = next(s for s in world.box.records("situacoes") if s["nome"] == "Cancelado")
    assert order["situacao"]["id"] == cancelado["id"]


def test_the_hub_never_doubles_what_the_accounts_transition_manager_posts(world: World):
    skus = _catalog(world)
    world.box.set_transition("Em aberto", "Atendido", ["lancarEstoque", "lancarContas"])
    world.route("sales", ["sales"], mappings=MAPPINGS,
                transitions=[{"from": "Em aberto", "to": "Atendido", "actions": ["lancar-estoque", "lancar-contas"]}])
    open_sale = sale("7001", skus[:1], status="open")
    world.stage("sales", "sales", open_sale)
    world.drain()
    world.stage("sales", "sales", open_sale.model_copy(update={"status": "closed"}))
    world.drain()
    (order,) = _orders(world, "7001")
    moves = [m for m in world.box.records("stock_movements") if str(m["pedido"]["id"]) == str(order["id"])]
    assert [m["operacao"] for m in moves] == ["S"], "posted once, by Bling's own transition manager"
    assert len([a for a in world.box.records("accounts") if str(a["pedido"]["id"]) == str(order["id"])]) == 1
    actions = world.ops(kind="perform_action")
    assert len(actions) == 2 and all(a.state == "done" for a in actions)


def test_the_order_number_setting_that_stops_sales_is_named_in_the_logs(world: World):
    skus = _catalog(world)
    world.box.editar_numero_pedido = True
    _sales_route(world)
    world.stage("sales", "sales", sale("8001", skus[:1], status="closed"))
    world.drain()
    (op,) = world.ops(kind="push_sale")
    assert op.state == "failed" and "Editar número do pedido de venda" in (op.fix or "")
    assert any("Editar número do pedido de venda" in (c.fix or "") for c in world.api_errors())


def test_requests_stay_under_the_accounts_rate_without_a_single_429(rt):
    from hub.sandbox import serve
    from hub_bling.sandbox import BlingSandbox

    from tests.bling.conftest import make_world

    box = BlingSandbox(rate_per_second=3)
    served = serve(box.app)
    world = make_world(rt, box, served, rate=3)
    skus = _catalog(world, 4)
    _sales_route(world)
    started = time.monotonic()
    world.stage("sales", "sales", *[sale(f"R{i}", skus[i % len(skus):][:1], status="closed",
                                         buyer=customer() if i % 2 else None) for i in range(6)])
    world.drain()
    elapsed = time.monotonic() - started
    served.stop()
    # Four worker threads share the account's budget. A request that a busy host sends late can still meet
    # Bling's window: the rare 429 waits without burning an attempt, and nothing is sent twice.
    assert box.throttled <= max(1, box.requests // 50), (box.throttled, box.requests)
    assert len([o for o in box.records("sales") if str(o.get("numeroLoja", "")).startswith("R")]) == 6
    assert all(o.state == "done" and o.attempts <= 1 for o in world.ops(kind="push_sale"))
    assert box.requests / elapsed <= 3.0


def _discounted(number: str, skus: list[tuple[str, str]], **extra) -> Sale:
    """Item discounts that do not divide into round percentages (R$ 1.00 off 3 x 10.00 is 3.333...%)."""
    items = [SaleItem(sku=skus[0][0], name="Camiseta", quantity=Decimal("3"), unit_price=Decimal("10.00"),
                      discount=Decimal("1.00")),
             SaleItem(sku=skus[1][0], name="Meia", quantity=Decimal("7"), unit_price=Decimal("33.33"),
                      discount=Decimal("0.07")),
             SaleItem(sku=skus[2][0], name="Boné", quantity=Decimal("1"), unit_price=Decimal("59.90"))]
    total = sum((i.total for i in items), Decimal("0"))
    return Sale(number=number, channel="pos", issued_at=datetime(2026, 11, 20, 15, 30, tzinfo=UTC), items=items,
                payments=[Payment(method="dinheiro", amount=total)], status="closed", **extra)


def test_item_discounts_land_as_bling_computes_them_with_the_list_price_and_no_parcelas_alert(world: World):
    skus = _catalog(world)
    _sales_route(world)
    sold = _discounted("9101", skus)
    world.stage("sales", "sales", sold)
    world.drain()
    (order,) = _orders(world, "9101")
    assert order["total"] == float(sold.total), f"Bling's total {order['total']} should be the sale's {sold.total}"
    assert sum(p["valor"] for p in order["parcelas"]) == float(sold.total)
    (post,) = [r for r in world.box.request_log if r["method"] == "POST" and r["path"].endswith("/pedidos/vendas")]
    sent = post["body"]["itens"]
    assert [i["valorLista"] for i in sent] == [10.0, 33.33, 59.9], "valorLista is the unit price before discount"
    assert [i["valor"] for i in sent] == [10.0, 33.33, 59.9] and "desconto" not in sent[2]
    alerts = [c.error for c in world.api_errors() if "parcelas" in (c.error or "")]
    assert alerts == [], f"no 'sum of parcelas differs' alert expected, got {alerts}"


def test_an_inactive_payment_method_is_refused_naming_it_and_the_fix(world: World):
    skus = _catalog(world)
    world.box.create("payment_methods", {"descricao": "Cheque pré-datado", "tipoPagamento": 2, "situacao": 0})
    _sales_route(world, mappings={**MAPPINGS, "payment_methods": {**MAPPINGS["payment_methods"],
                                                                   "cheque": "Cheque pré-datado"}})
    world.stage("sales", "sales", sale("9201", skus[:1], status="closed", method="cheque"))
    world.drain()
    assert _orders(world, "9201") == [], "no order may be filed with an inactive forma de pagamento"
    (q,) = world.quarantined()
    assert q.field == "payments.0.method" and "Cheque pré-datado" in q.reason and "inactive" in q.reason, q.reason
    assert "Activate" in (q.fix or "") and "mappings.payment_methods" in (q.fix or ""), q.fix
